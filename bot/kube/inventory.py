"""Gather the audit's `Inventory` from the API: one paginated list per resource and scope.

What is listed (every list paginated with `limit`/`continue`, each object reduced as its page
arrives, so a large cluster is never held as whole objects):

* Deployments, StatefulSets, DaemonSets and CronJobs: their pod templates;
* Pods: each one's pull secrets and images (whether a secret or a registry is in use), and a
  pod no controller owns as a workload of its own (pods of ReplicaSets, Jobs and the like are
  counted through their workload's template);
* namespaces, for the `imagepull-bot/pin-digests=true` label: listed, or with
  WATCH_NAMESPACES each one read (a namespaced install may not list the cluster's);
* service accounts (their imagePullSecrets names) and the pull secrets' metadata (names,
  types, registry hosts, update times: bot/diagnosis/secrets.py drops the credentials on the
  page they arrive with).

A referenced pull secret missing from the lists is read once to tell "absent" from "another
type". A kind the bot may not list is skipped and the report says so; an unreachable API
raises KubeUnreachable.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.diagnosis.facts import PullSecretInfo
from bot.diagnosis.secrets import PULL_SECRET_TYPES, pull_secret_info
from bot.diagnosis.workloads import (
    Inventory,
    NamespaceInfo,
    PodTemplate,
    PodUse,
    ServiceAccountInfo,
    group_secrets,
    namespace_info,
    pod_template,
    pod_use,
    service_account_info,
)
from bot.kube.client import KubeClient, KubeForbidden

log = logging.getLogger(__name__)

#: The workload kinds whose pod templates are audited (bare Pods come from the pod list).
TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")


def _secret_entry(secret: dict[str, Any]) -> tuple[str, PullSecretInfo]:
    meta = secret.get("metadata") or {}
    return str(meta.get("namespace") or "default"), pull_secret_info(secret)


class _Gathering:
    def __init__(self, kube: KubeClient, namespaces: Sequence[str] | None) -> None:
        self.kube = kube
        self.explicit = list(namespaces or ())
        self.scopes: list[str | None] = list(self.explicit) or [None]
        self.skipped: list[str] = []

    def refused(self, what: str, exc: KubeForbidden) -> None:
        log.warning("audit without %s: %s", what, exc)
        self.skipped.append(f"{what}: not permitted ({exc})")

    def namespaces(self) -> list[NamespaceInfo]:
        try:
            if self.explicit:
                return [namespace_info(self.kube.read_namespace(n)) for n in self.explicit]
            return self.kube.list_namespaces(namespace_info)
        except KubeForbidden as exc:
            self.refused("namespace labels (pin-digests)", exc)
            return [NamespaceInfo(n) for n in self.explicit]

    def workloads(self) -> list[PodTemplate]:
        found: list[PodTemplate] = []
        for kind in TEMPLATE_KINDS:
            project = functools.partial(pod_template, kind)
            try:
                for scope in self.scopes:
                    found += self.kube.list_workloads(kind, scope, project)
            except KubeForbidden as exc:
                self.refused(f"{kind.lower()}s", exc)
        return found

    def pods(self) -> list[PodUse]:
        return [use for scope in self.scopes
                for use in self.kube.list_pods_projected(scope, pod_use)[0]]

    def accounts(self) -> list[ServiceAccountInfo]:
        try:
            return [a for scope in self.scopes for a in self.kube.list_resource_projected(
                "serviceaccounts", scope, service_account_info)]
        except KubeForbidden as exc:
            self.refused("service accounts", exc)
            return []

    def pull_secrets(self) -> list[tuple[str, PullSecretInfo]] | None:
        try:
            return [entry for scope in self.scopes for kind in PULL_SECRET_TYPES
                    for entry in self.kube.list_resource_projected(
                        "secrets", scope, _secret_entry, field_selector=f"type={kind}")]
        except KubeForbidden as exc:
            self.refused("pull secrets (the credentials checks)", exc)
            return None


def gather(kube: KubeClient, namespaces: Sequence[str] | None = None, *,
           now: datetime | None = None) -> Inventory:
    """The inventory of `namespaces` (None or empty: the whole cluster)."""
    g = _Gathering(kube, namespaces)
    namespace_infos = g.namespaces()  # first: an unknown namespace stops here
    pods = g.pods()
    workloads = g.workloads() + [p.template for p in pods if p.template is not None]
    accounts = g.accounts()
    listed = g.pull_secrets()
    secrets = group_secrets(listed) if listed is not None else None
    exists: dict[tuple[str, str], bool | None] = {}
    if secrets is not None:
        referenced = {(w.namespace, n) for w in workloads for n in w.pull_secrets}
        referenced |= {(a.namespace, n) for a in accounts for n in a.pull_secrets}
        for namespace, name in sorted(referenced):
            if not any(s.name == name for s in secrets.get(namespace, ())):
                exists[(namespace, name)] = kube.secret_exists(namespace, name)
    pod_secrets: dict[str, set[str]] = {}
    pod_images: dict[str, set[str]] = {}
    for p in pods:
        pod_secrets.setdefault(p.namespace, set()).update(p.pull_secrets)
        pod_images.setdefault(p.namespace, set()).update(p.images)
    return Inventory(
        namespaces=tuple(namespace_infos),
        workloads=tuple(workloads),
        service_accounts=tuple(accounts),
        pull_secrets=secrets,
        pod_pull_secrets={ns: frozenset(v) for ns, v in pod_secrets.items()},
        pod_images={ns: frozenset(v) for ns, v in pod_images.items()},
        secret_exists=exists,
        cluster_version=kube.server_version(),
        now=now or datetime.now(UTC),
        skipped=tuple(g.skipped),
    )
