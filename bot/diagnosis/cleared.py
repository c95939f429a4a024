"""Has an incident's cause gone away, and when would the kubelet notice on its own?

Issue 12, Deliver 1: after a person fixes the cause, the kubelet still waits out its image-pull
back-off (10 s doubling, capped at 300 s: the field guide's "up to 5 minutes") before it tries
again. The bot notices the fix from what it already watches and offers to retry now.

Pure, like the rest of bot/diagnosis: it reads the facts the watches already hold (the pod's
``imagePullSecrets``, its service account's, the namespace's pull secrets by name and registry)
and the diagnosis the incident was opened with; nothing here talks to a server.

Two fixes of a missing pull secret are told apart, because they differ in what the kubelet
does next:

* the secret the pod references now exists: the kubelet reads pull secrets at each attempt, so
  its next scheduled pull succeeds by itself (`CauseCleared.kubelet_retries` is True);
* the pod referenced no secret and its service account now does: admission copies a service
  account's ``imagePullSecrets`` into a pod only when the pod is created, so the failing pods
  never get it; only new pods do (a rollout restart, or deleting a bare pod).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import BACKOFF_INITIAL_SECONDS, BACKOFF_MAX_SECONDS
from bot.diagnosis.facts import PullSecretInfo
from bot.diagnosis.imageref import registry_matches, try_parse_image

#: The findings whose fix this module can see: a referenced secret that did not exist, and
#: no secret referenced at all.
SECRET_FINDINGS = frozenset({Finding.PULL_SECRET_MISSING, Finding.NO_PULL_SECRET})

SECRET_CREATED = "secret_created"
ACCOUNT_REFERENCES = "account_references"
#: the image's manifest now answers in its registry (a tag pushed, a repository created)
IMAGE_EXISTS = "image_exists"
#: Causes whose fix only the registry can show: while their incident is open, the image's
#: manifest is asked again (HEAD only) on the kubelet's own schedule (`pull_delay`): never
#: more often than the kubelet itself pulls.
REPROBED_CAUSES = frozenset({Cause.TAG_NOT_FOUND, Cause.REPOSITORY_NOT_FOUND})
#: the registry host resolves and answers again (from the bot's network: the nodes' path to
#: it may differ, and the line says whose view it is)
REGISTRY_ANSWERS = "registry_answers"
#: Causes of the path to the registry: asked again the same way, with `GET /v2/` (no image,
#: no credentials needed: any HTTP answer, 401 included, means the host answers).
NETWORK_CAUSES = frozenset({Cause.DNS_FAILURE, Cause.NETWORK_UNREACHABLE})
#: the node the pods failed on no longer reports DiskPressure
DISK_PRESSURE_CLEARED = "disk_pressure_cleared"
#: the Docker Hub pull quota the failing pods use has pulls left again (its window reset)
QUOTA_BACK = "quota_back"
#: Causes whose fix is a quota coming back: asked (Docker Hub's quota check, HEAD only) on
#: the kubelet's own schedule, like the re-probed ones.
QUOTA_CAUSES = frozenset({Cause.RATE_LIMITED})


@dataclass(frozen=True)
class QuotaFigure:
    """One Docker Hub quota as last read: an account's (`account`: its username) or the bot's
    own outbound IP's (`account` ""). `remaining` None: Docker Hub does not limit it."""

    account: str
    remaining: int | None
    limit: int | None
    #: how many failing pods pull with it (the pulls a retry needs)
    pods: int = 1

    @property
    def back(self) -> bool:
        """Enough pulls left for every failing pod that uses it to pull once."""
        return self.remaining is None or self.remaining >= max(1, self.pods)


@dataclass(frozen=True)
class CauseCleared:
    """What changed, in data (the Slack layer words it and escapes every name)."""

    #: SECRET_CREATED, ACCOUNT_REFERENCES, IMAGE_EXISTS, REGISTRY_ANSWERS,
    #: DISK_PRESSURE_CLEARED or QUOTA_BACK
    kind: str
    namespace: str
    #: the pull secret that now exists (and serves the image's registry)
    secret: str
    #: the service account that now references it (ACCOUNT_REFERENCES only)
    account: str = ""
    #: the image that now answers (IMAGE_EXISTS only)
    image: str = ""
    #: the registry host that answers again (REGISTRY_ANSWERS only)
    registry: str = ""
    #: the node whose DiskPressure cleared (DISK_PRESSURE_CLEARED only)
    node: str = ""
    #: the Docker Hub quotas the failing pods use, every one back (QUOTA_BACK only)
    quotas: tuple[QuotaFigure, ...] = ()

    @property
    def kubelet_retries(self) -> bool:
        """Whether the kubelet's own next pull uses the fix (False: only new pods get it)."""
        return self.kind != ACCOUNT_REFERENCES


def _serving(secrets: Sequence[PullSecretInfo], name: str, registry: str | None
             ) -> PullSecretInfo | None:
    """The pull secret `name`, if it exists and holds credentials for `registry` (any
    registry when the image's cannot be parsed)."""
    for secret in secrets:
        if secret.name != name:
            continue
        if registry is None or any(registry_matches(key, registry) for key in secret.registries):
            return secret
    return None


def secret_cause_cleared(findings: Sequence[Finding], image: str, namespace: str, *,
                         pod_secrets: Sequence[str], account: str,
                         account_secrets: Sequence[str] | None,
                         namespace_secrets: Sequence[PullSecretInfo] | None
                         ) -> CauseCleared | None:
    """The fix of a missing pull secret, if the facts show it now; None otherwise (or when
    the facts are not known: `namespace_secrets` None means the secrets are not watched)."""
    if namespace_secrets is None or not SECRET_FINDINGS & set(findings):
        return None
    ref = try_parse_image(image)
    registry = ref.registry if ref is not None else None
    if pod_secrets:
        # every referenced secret exists now, and one of them is for the image's registry
        if not all(any(s.name == name for s in namespace_secrets) for name in pod_secrets):
            return None
        for name in pod_secrets:
            if _serving(namespace_secrets, name, registry) is not None:
                return CauseCleared(SECRET_CREATED, namespace, name)
        return None
    for name in account_secrets or ():
        if _serving(namespace_secrets, name, registry) is not None:
            return CauseCleared(ACCOUNT_REFERENCES, namespace, name, account=account)
    return None


def disk_pressure_cleared(findings: Sequence[Finding], namespace: str,
                          node: Mapping[str, Any] | None) -> CauseCleared | None:
    """The node the diagnosis saw under DiskPressure reports it no longer (its condition is
    there and False: a node whose conditions cannot be read says nothing)."""
    if node is None or Finding.NODE_DISK_PRESSURE not in findings:
        return None
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "DiskPressure" and condition.get("status") == "False":
            name = str((node.get("metadata") or {}).get("name") or "")
            return CauseCleared(DISK_PRESSURE_CLEARED, namespace, "", node=name)
    return None


def quota_cause_cleared(namespace: str, figures: Sequence[QuotaFigure]
                        ) -> CauseCleared | None:
    """A rate-limited incident's fix: every quota its failing pods pull with has a pull left
    for each of them again (a quota with fewer pulls than pods would be spent half-way through
    a retry). None while one is not back, or when no quota is known (nothing to say)."""
    if not figures or not all(f.back for f in figures):
        return None
    return CauseCleared(QUOTA_BACK, namespace, "", quotas=tuple(figures))


# -- the kubelet's schedule -------------------------------------------------------------------


def pull_delay(failures: int) -> float:
    """The kubelet's wait after the `failures`-th failed pull in a row (10 s doubling, capped
    at 300 s), as bot/diagnosis/engine.py `estimate_backoff` counts it."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_INITIAL_SECONDS * 2 ** min(failures - 1, 30), BACKOFF_MAX_SECONDS))


def next_reprobe(opened_at: float, probes: int, last_probe_at: float | None) -> float:
    """When to ask the registry again about an open incident's image: 10 s after it opened,
    then after each answer the kubelet's own wait (10 s doubling to 300 s)."""
    if last_probe_at is None or probes <= 0:
        return opened_at + pull_delay(1)
    return last_probe_at + pull_delay(probes + 1)


def kubelet_next_pull(attempts: int, next_pull_at: float | None, after: float) -> float | None:
    """The first pull the kubelet makes at or after `after` (the moment of the fix), from a
    diagnosis that saw `attempts` failed pulls and the next one due at `next_pull_at`: each
    pull before the fix failed too and doubled the wait. None when the schedule is unknown
    (no failed pull counted, or a cause the kubelet does not pull for)."""
    if next_pull_at is None or attempts <= 0:
        return None
    at, failures = next_pull_at, attempts
    while at < after:
        failures += 1
        delay = pull_delay(failures)
        if delay >= BACKOFF_MAX_SECONDS:  # capped: the rest is arithmetic, not a loop
            return at + math.ceil((after - at) / delay) * delay
        at += delay
    return at
