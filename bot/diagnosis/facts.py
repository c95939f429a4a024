"""What the diagnosis is allowed to know, gathered elsewhere (bot/kube/client.py,
bot/cli/offline.py).

Objects are kept in the Kubernetes JSON shape (camelCase dicts, as `kubectl get -o json` prints
them) so the live API, offline files and the scenario cluster feed the same code. Secrets are
reduced to what diagnosis needs before they get here: registry keys and age, never a password.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.diagnosis.causes import Cause, Finding

JSON = Mapping[str, Any]

#: Workload kinds that `kubectl rollout restart` understands.
RESTARTABLE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


@dataclass(frozen=True)
class WorkloadRef:
    """The object a person edits to fix a pod: its top-most controller (or the pod itself)."""

    kind: str
    name: str

    @property
    def kubectl_ref(self) -> str:
        """`deployment/web` — the form kubectl's set image / rollout take."""
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class PullSecretInfo:
    """A docker-registry secret, reduced to what a diagnosis may show.

    `registries` are the raw `auths` keys (hosts, not credentials). `updated_at` is the newest of
    creation and managed-field update times: an ECR token is as old as its last write.
    """

    name: str
    type: str
    registries: tuple[str, ...]
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RegistryFacts:
    """What the registry said about one image, asked with the pod's own pull credentials.

    Gathered by bot/registry/investigator.py; every suggestion in here was confirmed to exist.
    """

    #: the cause the registry itself gives for the image (None: the image pulls fine)
    probe_cause: Cause | None = None
    #: one line on what was asked and answered, for the evidence list
    probe_summary: str | None = None
    #: whether the repository exists (None: could not tell)
    repository_exists: bool | None = None
    #: an existing image reference to use instead (a close tag, a swapped path, a fixed host)
    suggested_image: str | None = None
    #: why that suggestion: TAG_SUGGESTION, SWAPPED_PATH or REGISTRY_HOST_TYPO
    suggestion_kind: Finding | None = None
    #: the manifest digest of the suggested (or, when it pulls, the current) reference
    digest: str | None = None
    #: tags the repository has, newest listing first (only for the record; may be truncated)
    tags: tuple[str, ...] = ()

    @property
    def answered(self) -> bool:
        """Whether the registry itself answered (not only: the bot could not reach it)."""
        return (self.probe_cause is not None or self.repository_exists is not None
                or self.suggested_image is not None or self.digest is not None)


@dataclass(frozen=True)
class NodePull:
    """One image the pod's node pulled successfully (its kubelet's `Pulled` event): proof
    the node had a way to that image's registry at that time."""

    image: str
    #: "namespace/pod" the image was pulled for
    pod: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class PodFacts:
    """Everything known about one pod when it is diagnosed.

    `None` means "not known" (offline input, or the bot's role may not read it) and turns the
    findings that depend on it off; an empty container means "known to be empty".
    """

    pod: JSON
    events: Sequence[JSON] = ()
    workload: WorkloadRef | None = None
    #: imagePullSecrets of the pod's service account; None when the account was not read.
    service_account_pull_secrets: tuple[str, ...] | None = None
    #: referenced secret name -> info, or None when that secret does not exist in the namespace.
    referenced_secrets: Mapping[str, PullSecretInfo | None] | None = None
    #: every docker-registry secret in the pod's namespace.
    namespace_pull_secrets: Sequence[PullSecretInfo] | None = None
    node: JSON | None = None
    cluster_version: str | None = None
    #: False: the install reads no secrets (READ_SECRETS=false), so `referenced_secrets` and
    #: `namespace_pull_secrets` are None by choice, and the diagnosis says what it skipped
    secrets_read: bool = True
    #: image string (as in the pod spec) → what its registry said; empty when not asked
    registry: Mapping[str, RegistryFacts] = field(default_factory=dict)
    #: the node's recent successful pulls (newest last), as the event watch saw them; None when
    #: nobody watched (offline input, the CLI): the findings that need them stay off
    node_pulls: Sequence[NodePull] | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def namespace(self) -> str:
        return str(self.pod.get("metadata", {}).get("namespace") or "default")

    @property
    def name(self) -> str:
        return str(self.pod.get("metadata", {}).get("name") or "")

    @property
    def spec(self) -> JSON:
        spec = self.pod.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @property
    def pod_pull_secret_names(self) -> tuple[str, ...]:
        """imagePullSecrets on the pod (admission already copied the service account's in)."""
        refs = self.spec.get("imagePullSecrets") or []
        return tuple(str(r.get("name")) for r in refs if isinstance(r, Mapping) and r.get("name"))

    @property
    def service_account_name(self) -> str:
        return str(
            self.spec.get("serviceAccountName") or self.spec.get("serviceAccount") or "default"
        )


#: Times the diagnosis believes. Anything outside is a broken clock or hostile input, and a
#: datetime near year 9999 overflows the first `+ timedelta` (the back-off estimate adds 300 s).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)


class TimeOutOfRange(ValueError):
    """A well-formed time outside EARLIEST_TIME..LATEST_TIME."""


def read_k8s_time(text: str) -> datetime:
    """An RFC 3339 timestamp as the API writes it (`Z`, optional fraction), timezone-aware.

    Raises ValueError when it is not one, TimeOutOfRange when it is not a believable time.
    """
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not EARLIEST_TIME <= parsed < LATEST_TIME:
        raise TimeOutOfRange(f"{text} is outside {EARLIEST_TIME.year}..{LATEST_TIME.year - 1}")
    return parsed


def parse_k8s_time(value: object) -> datetime | None:
    """`read_k8s_time`, or None for anything that is not a believable timestamp string."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return read_k8s_time(value)
    except ValueError:  # also TimeOutOfRange: an unbelievable time is an unknown time
        return None
