"""Notice an open incident's cause going away (issue 12, Deliver 1), at the sweep's pace.

Cost follows incidents, not pods, and no API is read: everything comes from what the bot
already watches. The fact watches (bot/kube/fact_watch.py) see a pull secret created or a
service account patched at once; the pod view (bot/kube/view.py) holds the failing pod's
``imagePullSecrets`` and service account. Once per sweep interval, across replicas, each open
incident of a credentials cause whose diagnosis found a missing pull secret is checked
against them (bot/diagnosis/cleared.py, pure). A fix is recorded in the incident once (the
first sighting: HSETNX), with when the kubelet would pull again on its own (its back-off
schedule projected from the incident's diagnosis); the incident's tick then posts the one
thread line with its Retry now button (bot/alerts/incidents.py, part ``cleared``).

What it cannot see, it does not guess: without the secrets watched (READ_SECRETS=false) or
before the watches vouch for the namespace, or when the view does not hold a failing pod's
document (beyond VIEW_MAX_DOCUMENTS), the incident is simply not checked this time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from bot.alerts.incidents import Incident, IncidentManager
from bot.diagnosis.causes import CAUSES
from bot.diagnosis.cleared import (
    SECRET_FINDINGS,
    CauseCleared,
    kubelet_next_pull,
    secret_cause_cleared,
)
from bot.diagnosis.facts import PullSecretInfo
from bot.kube.view import PodView

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
    away (today: a missing pull secret, created or referenced by the service account)."""

    def __init__(self, manager: IncidentManager, facts: PullSecretFacts, view: PodView, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.manager = manager
        self.facts = facts
        self.view = view
        self.clock = clock

    def run(self) -> None:
        now = self.clock()
        for incident_id in sorted(self.manager.active_ids()):
            incident = self._candidate(incident_id)
            if incident is None:
                continue
            change = self.cleared(incident)
            if change is None:
                continue
            d = incident.diagnosis
            retry_at = None
            if change.kubelet_retries and d.backoff.next_retry_seconds is not None:
                # the diagnosis was made when the incident opened: project its schedule on
                retry_at = kubelet_next_pull(
                    d.backoff.attempts, incident.created_at + d.backoff.next_retry_seconds, now)
            self.manager.cause_cleared(incident_id, change, retry_at, now)

    def _candidate(self, incident_id: str) -> Incident | None:
        """The incident, if it is open, unfixed so far, and of a kind this watch can see
        fixed: a few fields are read first, so other incidents cost one small read."""
        head = self.manager.head(incident_id, "state", "cause", "cleared")
        if head is None or head.get("state") != "open" or head.get("cleared"):
            return None
        cause = head.get("cause") or ""
        if not any(cause == c.value and info.credentials_refused for c, info in CAUSES.items()):
            return None
        incident = self.manager.load(incident_id)
        if incident is None or not SECRET_FINDINGS & set(incident.diagnosis.findings):
            return None
        return incident

    def cleared(self, incident: Incident) -> CauseCleared | None:
        """The fix, read from the watches (None: not fixed, or not visible from here)."""
        d = incident.diagnosis
        members = sorted({(m.namespace, m.pod) for m in incident.members.values()})
        pods = [(d.namespace, d.pod), *members]
        document = next((doc for key in pods if (doc := self.view.document(*key)) is not None),
                        None)
        if document is None:
            return None
        spec = document.get("spec") or {}
        account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        known, account_secrets = self.facts.service_account(d.namespace, account)
        return secret_cause_cleared(
            d.findings, d.image, d.namespace, pod_secrets=_names(spec.get("imagePullSecrets")),
            account=account, account_secrets=account_secrets if known else None,
            namespace_secrets=self.facts.pull_secrets(d.namespace))
