"""Notice an open incident's cause going away (issue 12, Deliver 1), at the sweep's pace.

Cost follows incidents, not pods. A missing pull secret's fix costs no API read: the fact
watches (bot/kube/fact_watch.py) see a pull secret created or a service account patched at
once, and the pod view (bot/kube/view.py) holds the failing pod's ``imagePullSecrets`` and
service account. A missing tag or repository can only be seen in the registry: the image's
manifest is asked again (one HEAD, with the pod's pull secrets) per incident, not per pod; a
registry host that did not resolve or answer (DNS, network) is asked `GET /v2/`; both on
the kubelet's own schedule (10 s after the incident opened, then doubling to 300 s), so the
bot never asks more often than the kubelet pulls. (The registry client reuses an answer for up
to a minute: a push is seen at most that much later.) A node's DiskPressure clearing is read
from the node facts the diagnosis already reads (cached for their freshness window, 30 s).
A Docker Hub 429's window resetting is read from Docker Hub's quota check (HEAD only) on the
same schedule, for the quota the failing pods pull with (`CauseWatch.quota_back`).

Once per sweep interval, across replicas, each open incident of such a cause is checked
(bot/diagnosis/cleared.py decides, pure). A fix is recorded in the incident once (the first
sighting: HSETNX), with when the kubelet would pull again on its own (its back-off schedule
projected from the incident's diagnosis); the incident's tick then posts the one thread line
with its Retry now button (bot/alerts/incidents.py, part ``cleared``).

What it cannot see, it does not guess: without the secrets watched (READ_SECRETS=false) or
before the watches vouch for the namespace, or when the view does not hold a failing pod's
document (beyond VIEW_MAX_DOCUMENTS), the incident is simply not checked this time; an image
whose pull secrets may not be read is not asked about anonymously.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bot.alerts.incidents import Incident, IncidentManager
from bot.diagnosis.causes import CAUSES, Cause
from bot.diagnosis.cleared import (
    IMAGE_EXISTS,
    NETWORK_CAUSES,
    QUOTA_CAUSES,
    REGISTRY_ANSWERS,
    REPROBED_CAUSES,
    SECRET_FINDINGS,
    CauseCleared,
    QuotaFigure,
    disk_pressure_cleared,
    kubelet_next_pull,
    next_reprobe,
    quota_cause_cleared,
    secret_cause_cleared,
)
from bot.diagnosis.facts import PullSecretInfo
from bot.diagnosis.imageref import DOCKER_HUB, registry_matches, try_parse_image
from bot.kube.client import KubeClient, KubeError
from bot.kube.view import PodView
from bot.registry.client import RegistryClient
from bot.registry.dockerhub import Quota
from bot.registry.model import RegistryCredentials
from bot.registry.pullsecrets import for_registry, pod_credentials

QuotaReader = Callable[[RegistryCredentials | None], Quota]

log = logging.getLogger(__name__)


class PullSecretFacts(Protocol):
    """What the fact watches answer (bot/kube/fact_watch.py `WatchedFacts`): None / (False,
    None) while they cannot vouch for the namespace."""

    def pull_secrets(self, namespace: str) -> tuple[PullSecretInfo, ...] | None: ...

    def service_account(self, namespace: str, name: str
                        ) -> tuple[bool, tuple[str, ...] | None]: ...


def _names(refs: object) -> tuple[str, ...]:
    if not isinstance(refs, list):
        return ()
    return tuple(str(r.get("name")) for r in refs if isinstance(r, dict) and r.get("name"))


class CauseWatch:
    """The routine: `run` checks every open incident whose cause this version can see go
    away: a missing pull secret (created, or referenced by the service account), from the
    watches; a missing tag or repository, or a registry host that did not resolve or answer,
    by asking the registry again (with a registry client: REGISTRY_PROBE); a node's
    DiskPressure clearing, from its node facts."""

    def __init__(self, manager: IncidentManager, facts: PullSecretFacts, view: PodView, *,
                 kube: KubeClient | None = None, registry: RegistryClient | None = None,
                 read_quota: QuotaReader | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.manager = manager
        #: Docker Hub's quota check (bot/routines/quota.py `QuotaReadings.reusing`: a fresh
        #: reading of the quota watch is reused); None: rate-limited incidents are not checked
        self.read_quota = read_quota
        self.facts = facts
        self.view = view
        self.kube = kube
        self.registry = registry
        self.clock = clock

    def run(self) -> None:
        now = self.clock()
        for incident_id in sorted(self.manager.active_ids()):
            head = self.manager.head(incident_id, "state", "cause", "cleared", "reprobe",
                                     "created_at")
            if head is None or head.get("state") != "open" or head.get("cleared"):
                continue
            cause = _cause(head.get("cause"))
            if cause is not None and CAUSES[cause].credentials_refused:
                self._check(incident_id, now, self.cleared)
            elif cause is Cause.DISK_FULL and self.kube is not None:
                self._check(incident_id, now, self.disk_pressure)
            elif ((cause in REPROBED_CAUSES | NETWORK_CAUSES and self.registry is not None)
                  or (cause in QUOTA_CAUSES and self.read_quota is not None)):
                probes, last = _reprobe(head.get("reprobe"))
                opened = float(head.get("created_at") or now)
                if now >= next_reprobe(opened, probes, last):
                    self._check(incident_id, now, self.image_answers if cause in
                                REPROBED_CAUSES else self.quota_back if cause in QUOTA_CAUSES
                                else self.registry_answers)
                    self.manager.reprobed(incident_id, probes + 1, now)

    def _check(self, incident_id: str, now: float,
               look: Callable[[Incident], CauseCleared | None]) -> None:
        incident = self.manager.load(incident_id, members=False)  # its size costs nothing
        if incident is None:
            return
        change = look(incident)
        if change is None:
            return
        d = incident.diagnosis
        retry_at = None
        if change.kubelet_retries and d.backoff.next_retry_seconds is not None:
            # the diagnosis was made when the incident opened: project its schedule on
            retry_at = kubelet_next_pull(
                d.backoff.attempts, incident.created_at + d.backoff.next_retry_seconds, now)
        self.manager.cause_cleared(incident_id, change, retry_at, now)

    def _document(self, incident: Incident) -> Mapping[str, Any] | None:
        """A failing pod's document from the view: the incident's first pod, else (that one
        gone or beyond the view's cap) a member's, read from the members only then."""
        d = incident.diagnosis
        first = self.view.document(d.namespace, d.pod)
        if first is not None:
            return first
        full = self.manager.load(incident.id)
        members = sorted({(m.namespace, m.pod) for m in (full.members if full else {}).values()})
        return next((doc for key in members if (doc := self.view.document(*key)) is not None),
                    None)

    def cleared(self, incident: Incident) -> CauseCleared | None:
        """A missing pull secret's fix, read from the watches (None: not fixed, or not
        visible from here)."""
        d = incident.diagnosis
        if not SECRET_FINDINGS & set(d.findings):
            return None
        document = self._document(incident)
        if document is None:
            return None
        spec = document.get("spec") or {}
        account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        known, account_secrets = self.facts.service_account(d.namespace, account)
        return secret_cause_cleared(
            d.findings, d.image, d.namespace, pod_secrets=_names(spec.get("imagePullSecrets")),
            account=account, account_secrets=account_secrets if known else None,
            namespace_secrets=self.facts.pull_secrets(d.namespace))

    def image_answers(self, incident: Incident) -> CauseCleared | None:
        """Ask the registry whether the incident's image exists now: one HEAD of its manifest
        (Docker Hub does not count a HEAD as a pull), with the pod's own pull secrets as the
        kubelet would use them, or anonymously when it has none. Without the right to read
        them (READ_SECRETS=false) it is not asked: an anonymous answer would mislead."""
        d = incident.diagnosis
        ref = try_parse_image(d.image)
        if ref is None or self.registry is None:
            return None
        credentials = None
        document = self._document(incident)
        names = _names((document or {}).get("spec", {}).get("imagePullSecrets"))
        if names:
            if self.kube is None or document is None:
                return None
            try:
                match = for_registry(pod_credentials(self.kube, d.namespace, names),
                                     ref.registry)
            except KubeError as exc:
                log.debug("incident %s: image not asked again (%s)", incident.id, exc)
                return None
            credentials = match[1] if match else None
        probe = self.registry.head_manifest(ref, credentials, check_repository=False)
        if not probe.ok:
            return None
        return CauseCleared(IMAGE_EXISTS, d.namespace, "", image=d.image)


    def disk_pressure(self, incident: Incident) -> CauseCleared | None:
        """The node's DiskPressure, from the node facts the diagnosis reads anyway (one read
        per node per freshness window, shared with every diagnosis on that node; none in a
        namespaced install, which cannot read nodes)."""
        document = self._document(incident)
        name = str(((document or {}).get("spec") or {}).get("nodeName") or "")
        if not name or self.kube is None:
            return None
        return disk_pressure_cleared(incident.diagnosis.findings, incident.diagnosis.namespace,
                                     self.kube.node(name))

    def registry_answers(self, incident: Incident) -> CauseCleared | None:
        """Ask the registry host whether it resolves and answers again (`GET /v2/`, no image,
        no credentials: any HTTP answer, a 401 included, is an answer)."""
        ref = try_parse_image(incident.diagnosis.image)
        if ref is None or self.registry is None:
            return None
        if not self.registry.ping(ref.registry).reachable:
            return None
        return CauseCleared(REGISTRY_ANSWERS, incident.diagnosis.namespace, "",
                            registry=ref.registry)


    def quota_back(self, incident: Incident) -> CauseCleared | None:
        """Whether the Docker Hub quotas a rate-limited incident's failing pods pull with have
        pulls left again: one check per quota (an account's, or the bot's IP's for pods that
        pull anonymously), a fresh reading of the quota watch reused.

        Whose quota: the Docker Hub credentials among each failing pod's own
        ``imagePullSecrets`` (admission copied its service account's there when the pod was
        made; the kubelet uses nothing else). An account's figure is exact. The bot's own IP's
        figure is the nodes' only if they leave through the same NAT: it is believed only
        after it was read spent while this incident was open (the same quota, spent with the
        nodes'); an IP that had pulls left all along says nothing about the nodes."""
        d = incident.diagnosis
        ref = try_parse_image(d.image)
        if ref is None or not ref.is_docker_hub or self.read_quota is None:
            return None
        owners = self._quota_owners(incident)
        if owners is None:
            return None
        figures: list[QuotaFigure] = []
        anonymous_low = False
        for username, (credentials, pods) in sorted(owners.items()):
            quota = self.read_quota(credentials)
            if not quota.ok:
                log.debug("incident %s: quota of %s not read (%s)", incident.id,
                          username or "the bot's IP", quota.error)
                return None
            figure = QuotaFigure(username, None if quota.unlimited else quota.remaining or 0,
                                 quota.limit, pods)
            if not username and not figure.back:
                anonymous_low = True
            figures.append(figure)
        if anonymous_low:
            self.manager.quota_seen_low(incident.id)
            return None
        if any(not f.account for f in figures):
            seen = self.manager.head(incident.id, "quota_low") or {}
            if not seen.get("quota_low"):
                return None  # the bot's IP was never spent: nothing known of the nodes'
        return quota_cause_cleared(d.namespace, figures)

    def _quota_owners(self, incident: Incident
                      ) -> dict[str, tuple[RegistryCredentials | None, int]] | None:
        """username ("" for anonymous pulls) → (credentials, failing pods pulling with them),
        over the incident's members; None when a pod's credentials cannot be known (its
        document not in the view, its secrets not readable: READ_SECRETS=false)."""
        full = self.manager.load(incident.id)
        d = incident.diagnosis
        pods = sorted({(m.namespace, m.pod) for m in (full.members if full else {}).values()}
                      or {(d.namespace, d.pod)})
        owners: dict[str, tuple[RegistryCredentials | None, int]] = {}
        known: dict[tuple[str, tuple[str, ...]], RegistryCredentials | None] = {}
        for namespace, pod in pods:
            document = self.view.document(namespace, pod)
            if document is None:
                return None
            names = self._hub_secrets(namespace, _names((document.get("spec") or {})
                                                        .get("imagePullSecrets")))
            if (namespace, names) not in known:
                credentials = None
                if names:
                    if self.kube is None:
                        return None
                    try:
                        match = for_registry(pod_credentials(self.kube, namespace, names),
                                             DOCKER_HUB)
                    except KubeError as exc:
                        log.debug("incident %s: quota not checked (%s)", incident.id, exc)
                        return None
                    credentials = match[1] if match else None
                known[(namespace, names)] = credentials
            credentials = known[(namespace, names)]
            username = credentials.username if credentials else ""
            first, count = owners.get(username, (credentials, 0))
            owners[username] = (first, count + 1)  # one check per account, its pods counted
        return owners

    def _hub_secrets(self, namespace: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """Of a pod's pull secrets, those that may hold Docker Hub credentials: the ones the
        fact watches know with a Docker Hub key (none read for nothing), or all of them when
        the watches cannot vouch for the namespace."""
        secrets = self.facts.pull_secrets(namespace) if names else None
        if secrets is None:
            return names
        hub = {s.name for s in secrets
               if any(registry_matches(key, DOCKER_HUB) for key in s.registries)}
        return tuple(n for n in names if n in hub)


def _cause(value: str | None) -> Cause | None:
    return next((c for c in Cause if c.value == value), None)


def _reprobe(value: str | None) -> tuple[int, float | None]:
    """(questions asked so far, when the last was) from the incident's `reprobe` field."""
    try:
        probes, at = (value or "").split()
        return int(probes), float(at)
    except ValueError:
        return 0, None
