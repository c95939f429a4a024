"""What the prevention audit and the credentials watch look at: the cluster's pod templates,
namespaces, service accounts and pull-secret metadata, reduced to the fields the rules read.

Pure: bot/kube/inventory.py lists the objects and projects each one here as its page arrives
(`pod_template`, `namespace_info`, `service_account_info`), so a large cluster is never held as
whole objects. Secrets arrive already reduced to `PullSecretInfo` (bot/diagnosis/secrets.py):
names, types, registry hosts and update times, never a credential.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from bot.diagnosis.facts import PullSecretInfo

#: The namespace label that asks for images pinned by digest (issue 11).
PIN_DIGESTS_LABEL = "imagepull-bot/pin-digests"

@dataclass(frozen=True)
class ContainerSpec:
    """One container of a pod template; `pull_policy` is what the manifest says ("" if unset:
    the apiserver's default applies, see `effective_pull_policy`)."""

    name: str
    image: str
    pull_policy: str = ""
    init: bool = False


@dataclass(frozen=True)
class PodTemplate:
    """A workload a person edits (Deployment, StatefulSet, DaemonSet, CronJob, or a Pod that no
    controller owns), reduced to what decides how its images are pulled."""

    namespace: str
    kind: str
    name: str
    service_account: str
    pull_secrets: tuple[str, ...]
    containers: tuple[ContainerSpec, ...]


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    pin_digests: bool = False


@dataclass(frozen=True)
class ServiceAccountInfo:
    namespace: str
    name: str
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """Everything the rules read, gathered at one moment.

    `pull_secrets` is None when the bot may not list secrets (the checks that need them are
    skipped and `skipped` says so). `pod_pull_secrets` are the imagePullSecrets of every pod,
    whatever owns it: they decide whether a secret is in use (and `pod_images` whether its
    registry is). `secret_exists` answers, for a
    referenced name that is not a pull secret, whether a secret of another type has it
    (None: could not be read)."""

    namespaces: tuple[NamespaceInfo, ...] = ()
    workloads: tuple[PodTemplate, ...] = ()
    service_accounts: tuple[ServiceAccountInfo, ...] = ()
    pull_secrets: Mapping[str, tuple[PullSecretInfo, ...]] | None = None
    pod_pull_secrets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: namespace → the images of its pods, whoever owns them (an operator's pods included)
    pod_images: Mapping[str, frozenset[str]] = field(default_factory=dict)
    secret_exists: Mapping[tuple[str, str], bool | None] = field(default_factory=dict)
    cluster_version: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    skipped: tuple[str, ...] = ()

    @cached_property
    def _namespaces(self) -> dict[str, NamespaceInfo]:
        return {info.name: info for info in self.namespaces}

    @cached_property
    def _accounts(self) -> dict[tuple[str, str], ServiceAccountInfo]:
        return {(a.namespace, a.name): a for a in self.service_accounts}

    def namespace(self, name: str) -> NamespaceInfo:
        return self._namespaces.get(name) or NamespaceInfo(name)

    def account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        return self._accounts.get((namespace, name))

    def secrets_in(self, namespace: str) -> tuple[PullSecretInfo, ...]:
        return (self.pull_secrets or {}).get(namespace, ())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _names(refs: Any) -> tuple[str, ...]:
    if not isinstance(refs, list):
        return ()
    return tuple(str(r["name"]) for r in refs if isinstance(r, Mapping) and r.get("name"))


def _containers(spec: Mapping[str, Any]) -> tuple[ContainerSpec, ...]:
    out: list[ContainerSpec] = []
    for key, init in (("initContainers", True), ("containers", False)):
        items = spec.get(key)
        for c in items if isinstance(items, list) else []:
            if isinstance(c, Mapping):
                out.append(ContainerSpec(_text(c.get("name")), _text(c.get("image")),
                                         _text(c.get("imagePullPolicy")), init))
    return tuple(out)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _template_spec(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = _mapping(obj.get("spec"))
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = _mapping(_mapping(spec.get("jobTemplate")).get("spec"))
    return _mapping(_mapping(spec.get("template")).get("spec"))


def controlled(obj: Mapping[str, Any]) -> bool:
    """Whether a Pod has a controller (a ReplicaSet, Job, StatefulSet, DaemonSet, or an
    operator's own kind): its images are audited once, in the template a person edits, and a
    fix aimed at the pod itself would be undone by the controller."""
    refs = _mapping(obj.get("metadata")).get("ownerReferences")
    return any(isinstance(r, Mapping) and r.get("controller")
               for r in (refs if isinstance(refs, list) else []))


def pod_template(kind: str, obj: Mapping[str, Any]) -> PodTemplate:
    """A Deployment, StatefulSet, DaemonSet, CronJob or Pod as the audit reads it."""
    meta = _mapping(obj.get("metadata"))
    spec = _template_spec(kind, obj)
    account = _text(spec.get("serviceAccountName")) or _text(spec.get("serviceAccount"))
    return PodTemplate(
        namespace=_text(meta.get("namespace")) or "default",
        kind=kind,
        name=_text(meta.get("name")),
        service_account=account or "default",
        pull_secrets=_names(spec.get("imagePullSecrets")),
        containers=_containers(spec),
    )


@dataclass(frozen=True)
class PodUse:
    """What any pod uses, whoever owns it: its pull secrets and images; `template` is set
    for a pod no controller owns (it is a workload of its own)."""

    namespace: str
    pull_secrets: tuple[str, ...]
    images: tuple[str, ...]
    template: PodTemplate | None = None


def pod_use(obj: Mapping[str, Any]) -> PodUse:
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    return PodUse(_text(meta.get("namespace")) or "default",
                  _names(spec.get("imagePullSecrets")),
                  tuple(c.image for c in _containers(spec)),
                  None if controlled(obj) else pod_template("Pod", obj))


def namespace_info(obj: Mapping[str, Any]) -> NamespaceInfo:
    meta = _mapping(obj.get("metadata"))
    labels = _mapping(meta.get("labels"))
    return NamespaceInfo(_text(meta.get("name")),
                         str(labels.get(PIN_DIGESTS_LABEL, "")).lower() == "true")


def service_account_info(obj: Mapping[str, Any]) -> ServiceAccountInfo:
    meta = _mapping(obj.get("metadata"))
    return ServiceAccountInfo(_text(meta.get("namespace")) or "default",
                              _text(meta.get("name")), _names(obj.get("imagePullSecrets")))


def group_secrets(infos: Sequence[tuple[str, PullSecretInfo]]
                  ) -> dict[str, tuple[PullSecretInfo, ...]]:
    """(namespace, info) pairs → namespace → its pull secrets, sorted by name."""
    grouped: dict[str, list[PullSecretInfo]] = {}
    for namespace, info in infos:
        grouped.setdefault(namespace, []).append(info)
    return {ns: tuple(sorted(items, key=lambda i: (i.name, i.type)))
            for ns, items in sorted(grouped.items())}
