"""Gather the escalation bundle's Kubernetes facts for one pod (bot/diagnosis/bundle.py).

Why here: every read goes through KubeClient, under the bot's roles, and each part that the
install may not read degrades into a sentence in `unavailable` instead of failing the bundle:
a namespaced install cannot read nodes or webhook configurations (cluster-scoped), an install
with READ_SECRETS=false reads no secret (the names still come from the pod and its service
account), and a workload the role cannot list is simply not compared.

Secrets are reduced to metadata here (names, registries); their usernames are added one layer
up (bot/alerts/bundle.py) by bot/registry/pullsecrets.py, the one module that decodes them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from bot.diagnosis.bundle import BundleFacts, SecretFacts
from bot.diagnosis.facts import PodFacts, TemplateImages, WorkloadRef
from bot.diagnosis.owners import controller_of
from bot.diagnosis.webhooks import namespace_labels_or_name
from bot.kube.client import (
    SECRETS_NOT_READ,
    KubeClient,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    template_images,
)

log = logging.getLogger(__name__)

#: Workloads whose template the bundle reads by a list with a name selector.
_LISTED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")

NODES_NOT_READ = ("nodes are not readable by this install (a namespaced install: Roles cannot "
                  "grant cluster-scoped reads)")
WEBHOOKS_NOT_READ = ("admission webhook configurations are not readable by this install (a "
                     "namespaced install: Roles cannot grant cluster-scoped reads); list them "
                     "with `kubectl get mutatingwebhookconfigurations,"
                     "validatingwebhookconfigurations`")


def _read_template(kube: KubeClient, namespace: str, kind: str, name: str
                   ) -> tuple[TemplateImages | None, str | None, dict[str, Any]]:
    """A listed workload's template images (None and why not), and the workload itself."""
    if kind not in _LISTED_KINDS:
        return None, None, {}
    try:
        found = kube.find_workload(kind, namespace, name)
    except KubeForbidden:
        return None, f"the {kind} may not be listed by this install", {}
    except KubeError as exc:
        return None, f"the {kind} could not be read: {exc}", {}
    if found is None:
        return None, f"{kind.lower()}/{name} not found", {}
    return template_images(kind, found), None, found


def _template(kube: KubeClient, namespace: str, kind: str, name: str
              ) -> tuple[TemplateImages | None, str | None]:
    found, why, _ = _read_template(kube, namespace, kind, name)
    return found, why


def _stamped_from(workload: dict[str, Any], pod_meta: dict[str, Any]) -> bool:
    """Whether a StatefulSet's current template is the one the pod was made from (its
    `controller-revision-hash` is the set's updateRevision). A DaemonSet does not say which
    revision is current, and during a rollout a pod of the previous revision runs the old
    image legitimately: there the template is shown, never called a rewrite."""
    if workload.get("kind", "StatefulSet") != "StatefulSet" or "updateRevision" not in (
            workload.get("status") or {}):
        return False
    revision = (pod_meta.get("labels") or {}).get("controller-revision-hash")
    return bool(revision) and revision == workload["status"]["updateRevision"]


def _secrets(kube: KubeClient, facts: PodFacts) -> list[SecretFacts]:
    """The pod's and its service account's pull secrets (names always; registries when
    read). Secrets of the service account are those the pod would inherit (admission copies
    them into the pod when it has none of its own)."""
    found: list[SecretFacts] = []
    named = [(n, "pod") for n in facts.pod_pull_secret_names]
    named += [(n, "service account") for n in facts.service_account_pull_secrets or ()
              if n not in facts.pod_pull_secret_names]
    infos = kube.referenced_secrets(facts.namespace, tuple(n for n, _ in named),
                                    list(facts.namespace_pull_secrets or ())
                                    if facts.namespace_pull_secrets is not None else None)
    for name, source in named:
        if infos is None:
            found.append(SecretFacts(name, source, None))
            continue
        info = infos.get(name)
        found.append(SecretFacts(name, source, info is not None,
                                 info.registries if info is not None else ()))
    return found


def gather(fresh: KubeClient, facts: PodFacts) -> tuple[BundleFacts, PodFacts]:
    """The bundle's facts beyond the diagnosis's `facts` (read by the one diagnosis path,
    bot/alerts/investigate.py, with `fresh`, the client of that look: a person asks for a
    bundle to see the present), and the diagnosis's facts completed with a StatefulSet's or
    DaemonSet's template and the matching mutating webhooks. Raises KubeError only when the
    API cannot be read at all; every refusal is a sentence in `unavailable`."""
    namespace, pod = facts.namespace, facts.name
    unavailable: dict[str, str] = {}
    meta = facts.pod.get("metadata") or {}
    workload_template: TemplateImages | None = None
    node_name = facts.spec.get("nodeName")
    if node_name and facts.node is None:
        unavailable["node"] = (NODES_NOT_READ if fresh.nodes_refused else
                               f"node {node_name} could not be read (it may have been removed)")
    if facts.cluster_version is None:
        unavailable["server_version"] = "the API server's /version could not be read"
    if not fresh.read_secrets:
        unavailable["pull_secrets"] = (f"registries and usernames not shown: "
                                       f"{SECRETS_NOT_READ}")
    elif facts.referenced_secrets is None and facts.pod_pull_secret_names:
        unavailable["pull_secrets"] = "the pull secrets may not be read by this install"
    template = facts.template
    owner = controller_of(meta)
    if template is None and owner is not None:
        # StatefulSet and DaemonSet pods: their controller is the workload a person edits;
        # its template is the pod's own only when the pod is of the current revision
        kind = str(owner.get("kind"))
        current, why, found = _read_template(fresh, namespace, kind, str(owner.get("name")))
        if why:
            unavailable["template"] = why
        elif current is not None and _stamped_from({"kind": kind, **found}, meta):
            template = current
        else:
            workload_template = current
    workload = facts.workload or WorkloadRef("Pod", pod)
    if template is not None and workload != template.source and workload_template is None:
        workload_template, why = _template(fresh, namespace, workload.kind, workload.name)
        if why:
            unavailable["workload_template"] = why
    pod_labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    webhooks = None
    labels = fresh.namespace_labels(namespace)  # read once for both kinds
    selected = namespace_labels_or_name(namespace, labels)
    mutating = fresh.matching_webhooks(namespace, pod_labels, mutating=True,
                                       namespace_labels=selected)
    validating = fresh.matching_webhooks(namespace, pod_labels, mutating=False,
                                         namespace_labels=selected)
    if mutating is None or validating is None:
        unavailable["webhooks"] = WEBHOOKS_NOT_READ
    else:
        webhooks = [*mutating, *validating]
        if labels is None:
            unavailable["namespace_labels"] = (
                "the namespace's labels could not be read: webhooks' namespaceSelectors were "
                "matched on kubernetes.io/metadata.name only")
    if template is not None and facts.template is None:
        facts = replace(facts, template=template)
    if facts.template is not None and facts.mutating_webhooks is None and mutating is not None:
        facts = replace(facts, mutating_webhooks=tuple(
            f"{w.configuration}/{w.name}" for w in mutating))
    try:
        secrets: list[SecretFacts] | None = _secrets(fresh, facts)
    except KubeNotFound:
        secrets = None
    bundle = BundleFacts(
        pod=facts.pod, events=facts.events, workload=workload, template=template,
        workload_template=workload_template, node=facts.node,
        server_version=facts.cluster_version, secrets=secrets, webhooks=webhooks,
        unavailable=unavailable)
    return bundle, facts
