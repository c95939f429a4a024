"""Which object a person edits to fix a pod, inferred from the pod alone.

The live path (bot/kube/client.py) walks the real owner chain through the API. Offline input
only has the pod, so the chain is inferred the way the controllers name things: a Deployment's
ReplicaSet is `<deployment>-<pod-template-hash>`, a CronJob's Job is `<cronjob>-<scheduled
minutes>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.diagnosis.facts import WorkloadRef

#: CronJob controller names Jobs `<cronjob>-<scheduled time in minutes since the epoch>`.
_CRONJOB_JOB_SUFFIX = re.compile(r"^(?P<cronjob>.+)-(?P<minutes>\d{8,9})$")
#: Scheduled minutes a CronJob can carry (2020-01-01 .. 2100-01-01): keeps a date-stamped
#: Job such as `backup-20261128` from being taken for a CronJob's.
_PLAUSIBLE_MINUTES = range(26_297_280, 68_374_080)


def controller_of(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference with controller: true (or the only owner)."""
    owners = [o for o in meta.get("ownerReferences") or [] if isinstance(o, Mapping)]
    for owner in owners:
        if owner.get("controller"):
            return owner
    return owners[0] if len(owners) == 1 else None


def deployment_name_from_replicaset(rs_name: str, template_hash: str | None) -> str | None:
    if template_hash and rs_name.endswith(f"-{template_hash}"):
        return rs_name[: -len(template_hash) - 1]
    return None


def cronjob_name_from_job(job_name: str) -> str | None:
    match = _CRONJOB_JOB_SUFFIX.match(job_name)
    if match is None or int(match.group("minutes")) not in _PLAUSIBLE_MINUTES:
        return None
    return match.group("cronjob")


def infer_workload(pod: Mapping[str, Any]) -> WorkloadRef:
    """Best offline guess of the pod's top-level workload (the pod itself when bare)."""
    meta = pod.get("metadata") or {}
    owner = controller_of(meta)
    if owner is None:
        return WorkloadRef("Pod", str(meta.get("name") or ""))
    kind, name = str(owner.get("kind")), str(owner.get("name"))
    if kind == "ReplicaSet":
        labels = meta.get("labels") or {}
        deployment = deployment_name_from_replicaset(name, labels.get("pod-template-hash"))
        return WorkloadRef("Deployment", deployment) if deployment else WorkloadRef(kind, name)
    if kind == "Job":
        cronjob = cronjob_name_from_job(name)
        return WorkloadRef("CronJob", cronjob) if cronjob else WorkloadRef(kind, name)
    return WorkloadRef(kind, name)
