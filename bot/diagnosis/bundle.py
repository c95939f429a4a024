"""The escalation bundle: the field guide's "When to escalate" list, gathered for one pod.

Why: when the cause is not obvious, the guide says what to collect before asking for help —
the pod's events, the exact image reference, whether the node can pull it, the Kubernetes
version, the container runtime and its version, the node's conditions, its disk, and whether
a proxy, firewall or admission webhook might interfere. People collect that by hand from six
commands on two machines; the bundle is all of it in one message, plus the node-side commands
that only a person on the node can run (built by bot/diagnosis/fixes.py, shell-quoted).

Pure: `assemble(BundleFacts)` → `Bundle`. The facts are gathered by bot/kube/bundle.py (and the
pull secrets' usernames by bot/alerts/bundle.py, the layer that may decode a secret); a part
that could not be read is None in the bundle and its reason is in `unavailable`, so the
bundle says in words what it could not look at instead of silently leaving it out.

Pull secrets appear as names, registries and usernames: never a password, token or `auth`.
`Bundle.to_json()` is a contract like the diagnosis JSON: every key is always present (null
when unavailable), keys are only ever added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.diagnosis.events import KubeletEvent, read_event
from bot.diagnosis.facts import TemplateImages, WorkloadRef
from bot.diagnosis.fixes import bundle_commands
from bot.diagnosis.model import Fix, PodDiagnosis
from bot.diagnosis.webhooks import MatchedWebhook

#: Events kept in a bundle (newest last); the rest are counted.
MAX_EVENTS = 30
#: The node conditions the guide asks for, in the order `kubectl describe node` prints them.
CONDITION_ORDER = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable",
                   "Ready")


@dataclass(frozen=True)
class SecretFacts:
    """One pull secret as gathered: metadata and usernames only."""

    name: str
    #: "pod" (the pod's imagePullSecrets) or "service account"
    source: str
    #: False: referenced but absent; None: not read (READ_SECRETS=false, refused)
    exists: bool | None
    registries: tuple[str, ...] = ()
    #: (auths key, username) — the username only, never the password, token or auth
    usernames: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "exists": self.exists,
                "registries": list(self.registries),
                "usernames": [{"registry": r, "username": u} for r, u in self.usernames]}


@dataclass(frozen=True)
class BundleFacts:
    """What the gatherers found; None for a part not read (its reason in `unavailable`)."""

    pod: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]] = ()
    workload: WorkloadRef | None = None
    #: the template the pod was stamped from (ReplicaSet, Job, StatefulSet, DaemonSet)
    template: TemplateImages | None = None
    #: the workload a person edits (a Deployment, a CronJob), when it is not `template`'s
    workload_template: TemplateImages | None = None
    node: Mapping[str, Any] | None = None
    server_version: str | None = None
    secrets: Sequence[SecretFacts] | None = None
    webhooks: Sequence[MatchedWebhook] | None = None
    diagnosis: PodDiagnosis | None = None
    #: part → why it is missing ("node", "webhooks", "pull_secrets", "server_version", ...)
    unavailable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BundleContainer:
    name: str
    init: bool
    image: str
    #: the image of the template the pod was stamped from (None: not known)
    template_image: str | None
    #: the image of the workload a person edits, when that is another object (None: same)
    workload_image: str | None
    #: the runtime's resolved image (status.imageID; "" before a successful pull)
    image_id: str
    #: waiting reason, "running" or "terminated"
    state: str
    message: str

    @property
    def rewritten(self) -> bool:
        return self.template_image is not None and self.template_image != self.image

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "init_container": self.init, "image": self.image,
                "template_image": self.template_image, "workload_image": self.workload_image,
                "image_rewritten": self.rewritten, "image_id": self.image_id,
                "state": self.state, "message": self.message}


@dataclass(frozen=True)
class NodeCondition:
    type: str
    status: str
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "status": self.status, "reason": self.reason,
                "message": self.message}


@dataclass(frozen=True)
class BundleNode:
    name: str
    kubelet_version: str
    container_runtime: str
    os_image: str
    operating_system: str
    architecture: str
    kernel_version: str
    conditions: tuple[NodeCondition, ...]

    @property
    def disk_pressure(self) -> bool | None:
        for condition in self.conditions:
            if condition.type == "DiskPressure":
                return condition.status == "True"
        return None

    @property
    def runtime_name(self) -> str:
        """`containerd`, `cri-o`, `docker` (from `containerd://1.7.27`)."""
        return self.container_runtime.partition("://")[0].lower()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kubelet_version": self.kubelet_version,
                "container_runtime": self.container_runtime, "os_image": self.os_image,
                "operating_system": self.operating_system, "architecture": self.architecture,
                "kernel_version": self.kernel_version,
                "conditions": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class BundleEvent:
    type: str
    reason: str
    message: str
    count: int
    last_seen: str | None
    container: str | None

    @classmethod
    def of(cls, event: KubeletEvent) -> BundleEvent:
        stamp = event.last_seen or event.first_seen
        return cls(event.type, event.reason, event.message, event.count,
                   stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None, event.container)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, "message": self.message,
                "count": self.count, "last_seen": self.last_seen, "container": self.container}


@dataclass(frozen=True)
class Bundle:
    namespace: str
    pod: str
    phase: str
    node_name: str | None
    service_account: str
    workload: WorkloadRef
    template_source: WorkloadRef | None
    containers: tuple[BundleContainer, ...]
    events: tuple[BundleEvent, ...]
    #: events left out beyond MAX_EVENTS (the oldest)
    events_omitted: int
    node: BundleNode | None
    server_version: str | None
    pull_secrets: tuple[SecretFacts, ...] | None
    webhooks: tuple[MatchedWebhook, ...] | None
    diagnosis: PodDiagnosis | None
    commands: tuple[Fix, ...]
    unavailable: Mapping[str, str]

    @property
    def disk_pressure(self) -> bool | None:
        return self.node.disk_pressure if self.node else None

    @property
    def mutating_webhooks(self) -> tuple[MatchedWebhook, ...]:
        return tuple(w for w in self.webhooks or () if w.mutating)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "phase": self.phase,
            "node_name": self.node_name,
            "service_account": self.service_account,
            "workload": {"kind": self.workload.kind, "name": self.workload.name},
            "template_source": ({"kind": self.template_source.kind,
                                 "name": self.template_source.name}
                                if self.template_source else None),
            "containers": [c.to_json() for c in self.containers],
            "events": [e.to_json() for e in self.events],
            "events_omitted": self.events_omitted,
            "node": self.node.to_json() if self.node else None,
            "disk_pressure": self.disk_pressure,
            "server_version": self.server_version,
            "pull_secrets": ([s.to_json() for s in self.pull_secrets]
                             if self.pull_secrets is not None else None),
            "webhooks": ([w.to_json() for w in self.webhooks]
                         if self.webhooks is not None else None),
            "diagnoses": ([d.to_json() for d in self.diagnosis.diagnoses]
                          if self.diagnosis is not None else None),
            "commands": [c.to_json() for c in self.commands],
            "unavailable": dict(sorted(self.unavailable.items())),
        }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _containers(facts: BundleFacts) -> tuple[BundleContainer, ...]:
    spec = facts.pod.get("spec") or {}
    status = facts.pod.get("status") or {}
    out: list[BundleContainer] = []
    template = facts.template.images if facts.template else None
    edited = facts.workload_template.images if facts.workload_template else None
    for key, status_key, init in (("initContainers", "initContainerStatuses", True),
                                  ("containers", "containerStatuses", False)):
        statuses = {s.get("name"): s for s in status.get(status_key) or []
                    if isinstance(s, Mapping)}
        for c in spec.get(key) or []:
            if not isinstance(c, Mapping):
                continue
            name = _text(c.get("name"))
            own = statuses.get(name) or {}
            state = own.get("state") or {}
            waiting = state.get("waiting") if isinstance(state.get("waiting"), Mapping) else None
            if waiting is not None:
                word, message = _text(waiting.get("reason")) or "waiting", \
                    _text(waiting.get("message"))
            elif "running" in state:
                word, message = "running", ""
            elif "terminated" in state:
                word, message = "terminated", _text((state["terminated"] or {}).get("reason"))
            else:
                word, message = "unknown", ""
            image = _text(c.get("image"))
            workload_image = edited.get(name) if edited is not None else None
            out.append(BundleContainer(
                name=name, init=init, image=image,
                template_image=template.get(name) if template is not None else None,
                workload_image=workload_image,
                image_id=_text(own.get("imageID")), state=word, message=message))
    return tuple(out)


def _node(node: Mapping[str, Any] | None) -> BundleNode | None:
    if node is None:
        return None
    status = node.get("status") or {}
    info = status.get("nodeInfo") or {}
    order = {name: i for i, name in enumerate(CONDITION_ORDER)}
    conditions = sorted(
        (NodeCondition(_text(c.get("type")), _text(c.get("status")), _text(c.get("reason")),
                       _text(c.get("message")))
         for c in status.get("conditions") or [] if isinstance(c, Mapping)),
        key=lambda c: (order.get(c.type, len(order)), c.type))
    return BundleNode(
        name=_text((node.get("metadata") or {}).get("name")),
        kubelet_version=_text(info.get("kubeletVersion")),
        container_runtime=_text(info.get("containerRuntimeVersion")),
        os_image=_text(info.get("osImage")),
        operating_system=_text(info.get("operatingSystem")),
        architecture=_text(info.get("architecture")),
        kernel_version=_text(info.get("kernelVersion")),
        conditions=tuple(conditions))


def _events(raw: Sequence[Mapping[str, Any]]) -> tuple[tuple[BundleEvent, ...], int]:
    def when(event: KubeletEvent) -> float:
        stamp = event.last_seen or event.first_seen
        return stamp.timestamp() if stamp is not None else 0.0

    events = sorted((read_event(e) for e in raw), key=when)
    kept = events[-MAX_EVENTS:]
    return tuple(BundleEvent.of(e) for e in kept), len(events) - len(kept)


def assemble(facts: BundleFacts) -> Bundle:
    """The bundle of one pod from what was gathered (nothing is read here)."""
    meta = facts.pod.get("metadata") or {}
    spec = facts.pod.get("spec") or {}
    namespace = _text(meta.get("namespace")) or "default"
    name = _text(meta.get("name"))
    node_name = _text(spec.get("nodeName")) or None
    containers = _containers(facts)
    node = _node(facts.node)
    events, omitted = _events(facts.events)
    unavailable = dict(facts.unavailable)
    if node_name is None:
        unavailable.setdefault("node", "the pod is not scheduled on a node yet")
    commands = bundle_commands(
        namespace=namespace, pod=name, node=node_name,
        images=[c.image for c in containers],
        runtime=node.runtime_name if node else "")
    return Bundle(
        namespace=namespace, pod=name, phase=_text((facts.pod.get("status") or {}).get("phase")),
        node_name=node_name,
        service_account=_text(spec.get("serviceAccountName")) or "default",
        workload=facts.workload or WorkloadRef("Pod", name),
        template_source=facts.template.source if facts.template else None,
        containers=containers, events=events, events_omitted=omitted, node=node,
        server_version=facts.server_version,
        pull_secrets=tuple(facts.secrets) if facts.secrets is not None else None,
        webhooks=tuple(facts.webhooks) if facts.webhooks is not None else None,
        diagnosis=facts.diagnosis, commands=commands, unavailable=unavailable)
