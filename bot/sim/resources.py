"""The resource types the scenario cluster serves, and what the real apiserver allows on them.

The field-selector tables mirror the apiserver's per-type ``GetAttrs``/field-label conversion
functions (pkg/registry/*/strategy.go): asking for any other field yields the same
``400 field label not supported`` the real cluster answers with, so client code that works
here does not rely on a selector production would reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_META_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (plural) in one group/version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    #: Field selector label -> dotted path in the object (paths may differ from labels).
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise (as in objects' apiVersion)."""
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def qualified(self) -> str:
        """``pods`` / ``deployments.apps``: how the apiserver names the resource in messages."""
        return self.plural if not self.group else f"{self.plural}.{self.group}"

    def field_value(self, obj: dict[str, Any], label: str) -> str | None:
        """Value of a supported field label as the apiserver stringifies it; None: unsupported."""
        if label in _META_FIELDS:
            path = label
        elif label in self.fields:
            path = self.fields[label]
        else:
            return None
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            # The apiserver fills absent booleans with "false" and absent strings with "".
            return "false" if label == "spec.hostNetwork" else ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)


def _rt(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short_names: tuple[str, ...] = (),
    fields: dict[str, str] | None = None,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short_names,
        fields=fields or {},
    )


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", False, ("ns",), {"status.phase": "status.phase"}),
    _rt("", "v1", "nodes", "Node", False, ("no",), {"spec.unschedulable": "spec.unschedulable"}),
    _rt(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        fields={
            "spec.nodeName": "spec.nodeName",
            "spec.restartPolicy": "spec.restartPolicy",
            "spec.schedulerName": "spec.schedulerName",
            "spec.serviceAccountName": "spec.serviceAccountName",
            "spec.hostNetwork": "spec.hostNetwork",
            "status.phase": "status.phase",
            "status.podIP": "status.podIP",
            "status.nominatedNodeName": "status.nominatedNodeName",
        },
    ),
    _rt(
        "",
        "v1",
        "events",
        "Event",
        short_names=("ev",),
        fields={
            "involvedObject.kind": "involvedObject.kind",
            "involvedObject.namespace": "involvedObject.namespace",
            "involvedObject.name": "involvedObject.name",
            "involvedObject.uid": "involvedObject.uid",
            "involvedObject.apiVersion": "involvedObject.apiVersion",
            "involvedObject.resourceVersion": "involvedObject.resourceVersion",
            "involvedObject.fieldPath": "involvedObject.fieldPath",
            "reason": "reason",
            "reportingComponent": "reportingComponent",
            "source": "source.component",
            "type": "type",
        },
    ),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _rt("", "v1", "secrets", "Secret", fields={"type": "type"}),
    _rt("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _rt("apps", "v1", "deployments", "Deployment", short_names=("deploy",)),
    _rt(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        short_names=("rs",),
        fields={"status.replicas": "status.replicas"},
    ),
    _rt("apps", "v1", "statefulsets", "StatefulSet", short_names=("sts",)),
    _rt("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",)),
    _rt("batch", "v1", "jobs", "Job", fields={"status.successful": "status.successful"}),
    _rt("batch", "v1", "cronjobs", "CronJob", short_names=("cj",)),
    # admission webhooks (cluster-scoped): the escalation bundle names the ones that match pods
    _rt("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration", False),
    _rt("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration", False),
)

#: Kinds whose spec changes bump metadata.generation (the apiserver's PrepareForUpdate).
GENERATION_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"}
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {
    (rt.group, rt.version, rt.plural): rt for rt in RESOURCE_TYPES
}
BY_KIND: dict[tuple[str, str], ResourceType] = {
    (rt.api_version, rt.kind): rt for rt in RESOURCE_TYPES
}
BY_PLURAL: dict[str, ResourceType] = {rt.plural: rt for rt in RESOURCE_TYPES}


def for_object(obj: dict[str, Any]) -> ResourceType:
    """The resource type of an object by its apiVersion/kind; KeyError if not served."""
    key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    try:
        return BY_KIND[key]
    except KeyError:
        raise KeyError(f"the scenario cluster does not serve {key[0]} {key[1]}") from None
