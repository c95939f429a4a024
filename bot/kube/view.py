"""A watch-fed view of the pods that may be failing to pull, kept slim.

Only a pod that is ``Pending`` can be waiting for its first image, so the view lists and then
watches pods with ``fieldSelector=status.phase=Pending`` (per watched namespace, or
cluster-wide) through the shared `Reflector` (resume from resourceVersion, relist on 410,
bookmarks, back-off, health). Each pod is kept as a `SlimPod` — the handful of fields the
alerting needs, not the object (a Pending pod's JSON is 5-15 KB; its projection a few hundred
bytes), so memory grows with Pending pods, not with the cluster.

Why a pod leaves the view, and what that means:

* A pod that stops matching the field selector (it left Pending: it runs) arrives as
  ``DELETED``, carrying its last Pending state — the apiserver's cacheWatcher sends exactly
  that, with the resourceVersion of the change. So does a pod that is deleted. Either way it
  no longer waits for an image: if the view last saw it waiting on a pull, `on_recovered` is
  called at once (the alerting removes it from its incidents; no re-diagnosis, no sweep).
* A pod still Pending whose containers stopped waiting on a pull (``ContainerCreating``, or
  running while another container starts) has recovered too: same call.
* A relist (first start, 410 Gone) replaces the whole scope: a pod that was failing and is no
  longer listed, or no longer failing, recovered during the gap — called for it as well, so a
  gap loses nothing.

A pod that is not Pending can still fail a pull (a container of a running pod restarted with
``imagePullPolicy: Always``, or a pod whose image was edited stays ``Running``). Those are
named by the kubelet's events, not by this watch: `refresh` reads such a pod once (GET) and
keeps it as *tracked* until it runs cleanly or is deleted (bounded: at most
``tracked_limit``, oldest dropped first).

Memory (bench/view_memory.py; README "Performance"): a `SlimPod` per Pending pod, and for a
pod failing a pull also its diagnosis document, so the pipeline diagnoses it without a GET.
Documents are the bulk and are capped (``max_documents``, the ``VIEW_MAX_DOCUMENTS`` setting):
beyond the cap a failing pod is still held — the view knows it fails, recovers it, the sweep
sees it — but without its document, and its diagnosis reads the pod (one GET) as it would
without a view. Nothing is dropped; the cost beyond the cap is API reads, not memory. The first
time the cap is reached is logged; `documents` and `without_document` say where the view
stands (gauges in bot/app.py).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.diagnosis.events import PULL_WAITING_REASONS
from bot.kube.client import KubeClient, KubeNotFound
from bot.kube.reflector import Reflector

log = logging.getLogger(__name__)

__all__ = ["MAX_DOCUMENTS", "PENDING", "PodView", "SlimPod", "diagnosis_document"]

#: The pods that can be waiting for their first image.
PENDING = "status.phase=Pending"

Key = tuple[str, str]  # (namespace, name)

#: Diagnosis documents the view holds at most by default (``VIEW_MAX_DOCUMENTS``): 10,000
#: failing pods cost about 20 MB with theirs (README "Performance").
MAX_DOCUMENTS = 10_000

#: The parts of a pod the diagnosis reads (bot/diagnosis/engine.py, owners.py, facts.py and
#: SharedDiagnoses): nothing else is kept, so a failing pod costs about 1-2 KB, not 5-15 KB.
_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
_SPEC_KEYS = ("imagePullSecrets", "serviceAccountName", "serviceAccount", "nodeName")
_CONTAINER_KEYS = ("name", "image", "imagePullPolicy")
_STATUS_ENTRY_KEYS = ("name", "image", "imageID", "state", "lastState", "ready", "restartCount")
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
#: The one label the diagnosis reads (a ReplicaSet's Deployment inferred from its name).
_LABELS = ("pod-template-hash",)


def diagnosis_document(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod reduced to what a diagnosis reads, in the pod's own JSON shape (so
    `KubeClient.pod_facts` and the engine take it as they take a pod read by GET): name,
    namespace, uid, the controller owner reference, the pod-template-hash label; containers'
    names, images and pull policies, pull secrets, service account, node; phase and the
    containers' statuses. Volumes, env, probes, managed fields, annotations are dropped."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    doc_meta: dict[str, Any] = {k: meta[k] for k in _META_KEYS if k in meta}
    owners = [ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")][:1]
    if owners:
        doc_meta["ownerReferences"] = owners
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in _LABELS}
    if labels:
        doc_meta["labels"] = labels
    doc_spec: dict[str, Any] = {k: spec[k] for k in _SPEC_KEYS if k in spec}
    for key in ("initContainers", "containers"):
        if spec.get(key):
            doc_spec[key] = [{k: c[k] for k in _CONTAINER_KEYS if k in c} for c in spec[key]]
    doc_status: dict[str, Any] = {"phase": status.get("phase")} if "phase" in status else {}
    for key in _STATUS_LISTS:
        if status.get(key):
            doc_status[key] = [{k: st[k] for k in _STATUS_ENTRY_KEYS if k in st}
                               for st in status[key]]
    return {"metadata": doc_meta, "spec": doc_spec, "status": doc_status}


def _shared(value: object) -> str:
    """The string, interned: what pods of one workload, node or namespace have in common
    (namespace, owner, images, node, kubelet reason and message) is held once, not per pod.
    Interned strings are freed with their last reference."""
    return sys.intern(str(value))


@dataclass(frozen=True, slots=True)
class SlimPod:
    """What the alerting needs of one pod; nothing else of the object is kept."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    phase: str
    owner: tuple[str, str, str] | None  # the controller's (kind, name, uid)
    images: tuple[tuple[str, str], ...]  # (container, image), init containers first
    pull_secrets: tuple[str, ...]
    service_account: str
    node: str
    waiting: tuple[tuple[str, str, str], ...]  # (container, reason, message)
    #: what the diagnosis reads of the pod (`diagnosis_document`) as compact JSON, kept only
    #: while the pod fails a pull (and the view's cap allows): the diagnosis of a failing pod
    #: in the view needs no GET (issue 10). JSON text costs about a third of the parsed dicts.
    packed: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def failing(self) -> bool:
        """A container waits on its image (ErrImagePull, ImagePullBackOff, ...)."""
        return any(reason in PULL_WAITING_REASONS for _, reason, _ in self.waiting)

    @property
    def document(self) -> dict[str, Any] | None:
        """The diagnosis document (a fresh dict each time), or None when not kept."""
        return json.loads(self.packed) if self.packed is not None else None

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> SlimPod:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        owner = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")),
                     None)
        images = tuple((_shared(c.get("name")), _shared(c.get("image") or ""))
                       for key in ("initContainers", "containers")
                       for c in spec.get(key) or [])
        waiting = []
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for st in status.get(key) or []:
                state = (st.get("state") or {}).get("waiting")
                if state is not None:
                    waiting.append((_shared(st.get("name")), _shared(state.get("reason") or ""),
                                    _shared(state.get("message") or "")))
        failing = any(reason in PULL_WAITING_REASONS for _, reason, _ in waiting)
        return cls(
            namespace=_shared(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            phase=_shared(status.get("phase") or ""),
            owner=(_shared(owner.get("kind")), _shared(owner.get("name")),
                   _shared(owner.get("uid") or "")) if owner else None,
            images=images,
            pull_secrets=tuple(_shared(r.get("name")) for r in spec.get("imagePullSecrets") or []
                               if r.get("name")),
            service_account=_shared(spec.get("serviceAccountName") or "default"),
            node=_shared(spec.get("nodeName") or ""),
            waiting=tuple(waiting),
            packed=json.dumps(diagnosis_document(pod), separators=(",", ":")).encode()
            if failing else None,
        )


class _PodScope(Reflector):
    """The list+watch of Pending pods in one namespace (or all): feeds its `PodView`."""

    thread_name = "pod-view"

    def __init__(self, view: PodView, namespace: str | None, **options: Any) -> None:
        super().__init__(**options)
        self.view = view
        self.namespace = namespace
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        self.what = f"pending pods {where}"
        self.pods: dict[Key, SlimPod] = {}
        self.synced = threading.Event()  # the first list is in

    def list_objects(self) -> tuple[list[SlimPod], str]:
        # projected page by page: a relist of 10,000 Pending pods never holds them all whole
        return self.view.kube.list_pods_projected(self.namespace, SlimPod.of,
                                                  field_selector=self.view.selector)

    def open_watch(self, resource_version: str | None) -> Iterator[dict[str, Any]]:
        return self.view.kube.watch_pods(self.namespace, resource_version, self.watch_timeout,
                                         idle_timeout=self.idle_timeout,
                                         field_selector=self.view.selector)

    def replace(self, items: Sequence[SlimPod | Mapping[str, Any]],
                resource_version: str) -> None:
        listed = [item if isinstance(item, SlimPod) else SlimPod.of(item) for item in items]
        view = self.view
        with view.lock:
            old, new = self.pods, dict[Key, SlimPod]()
            for pod in old.values():
                view._release(pod)
            for pod in listed:
                view._release(view.tracked.pop(pod.key, None))
                view._release(new.get(pod.key))
                new[pod.key] = view._admit(pod)
            self.pods = new
        recovered = [key for key, pod in old.items()
                     if pod.failing and (key not in new or not new[key].failing)]
        self.synced.set()
        log.info("listed %d %s at resourceVersion %s (%d failing); %d recovered since the "
                 "last list", len(new), self.what, resource_version,
                 sum(p.failing for p in new.values()), len(recovered))
        self.view.recovered(recovered)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        pod = SlimPod.of(obj)
        view = self.view
        with view.lock:
            if kind == "DELETED":  # deleted, or no longer Pending: it does not wait to pull
                old = self.pods.pop(pod.key, None)
                view._release(old)
                was = old.failing if old is not None else pod.failing
                now = False
            else:
                old = self.pods.get(pod.key)
                view._release(old)
                view._release(view.tracked.pop(pod.key, None))
                self.pods[pod.key] = view._admit(pod)
                was, now = old is not None and old.failing, pod.failing
        if was and not now:
            self.view.recovered([pod.key])


class PodView:
    """Pending pods (slim), per watched namespace or cluster-wide, plus tracked non-Pending
    pods that fail a pull. Thread-safe: the reflectors write, the sweep and others read.

    `on_recovered(namespace, name)` is called on a reflector's thread when a pod that was
    waiting on a pull stops doing so or leaves (runs, is deleted); an exception in it is
    logged and the watch goes on.

    At most `max_documents` failing pods keep their diagnosis document (0: none does); the
    others are held without it (see the module's docstring).
    """

    def __init__(self, kube: KubeClient, *, namespaces: Sequence[str] | None = None,
                 on_recovered: Callable[[str, str], None] | None = None,
                 selector: str = PENDING, tracked_limit: int = 10_000,
                 max_documents: int = MAX_DOCUMENTS, **reflector_options: Any) -> None:
        self.kube = kube
        self.selector = selector
        self.on_recovered = on_recovered
        self.tracked_limit = tracked_limit
        self.max_documents = max_documents
        self.lock = threading.Lock()
        self.tracked: OrderedDict[Key, SlimPod] = OrderedDict()
        #: diagnosis documents held (Pending and tracked pods), at most `max_documents`
        self.documents = 0
        #: failing pods held without their document because the cap was reached
        self.without_document = 0
        self._cap_logged = False
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.scopes = [_PodScope(self, ns, **reflector_options) for ns in scopes]
        self._by_namespace = {s.namespace: s for s in self.scopes}

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def reflectors(self) -> list[Reflector]:
        """One per scope, for readiness (`health()`) and metrics."""
        return list(self.scopes)

    def start(self) -> None:
        for scope in self.scopes:
            scope.start()

    def stop(self, timeout: float = 5) -> None:
        for scope in self.scopes:
            scope.stop(timeout)

    @property
    def synced(self) -> bool:
        """Every scope has completed its first list: absence from the view means something."""
        return all(scope.synced.is_set() for scope in self.scopes)

    @property
    def current(self) -> bool:
        """Synced and every watch in contact with the API server (`Reflector.health`): what
        the view says can be trusted. A view that lost contact may be stale; then the sweep
        falls back to reading the API."""
        return self.synced and all(scope.health()[0] for scope in self.scopes)

    def wait_synced(self, timeout: float) -> bool:
        return all(scope.synced.wait(timeout) for scope in self.scopes)

    # -- reading --------------------------------------------------------------------------------
    def covers(self, namespace: str) -> bool:
        """The view watches this namespace and has listed it."""
        scope = self._by_namespace.get(namespace) or self._by_namespace.get(None)
        return scope is not None and scope.synced.is_set()

    def get(self, namespace: str, name: str) -> SlimPod | None:
        """The pod as last seen (Pending, or tracked), or None when the view does not hold it."""
        key = (namespace, name)
        scope = self._by_namespace.get(namespace) or self._by_namespace.get(None)
        with self.lock:
            pod = scope.pods.get(key) if scope is not None else None
            return pod if pod is not None else self.tracked.get(key)

    def document(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The failing pod as the diagnosis reads it (`diagnosis_document`), from the view:
        None when the view is not current (not listed yet, or its watch out of contact: it
        may be stale) or does not hold the pod failing a pull — then the caller reads the pod.
        The watch keeps it as fresh as a GET would be: the pod's change and the kubelet's
        event are written together and both reach the bot by watch."""
        if not self.current:
            return None
        pod = self.get(namespace, name)
        return pod.document if pod is not None and pod.failing else None

    def failing(self) -> list[SlimPod]:
        """Every pod of the view with a container waiting on a pull."""
        with self.lock:
            pods = [p for scope in self.scopes for p in scope.pods.values() if p.failing]
            pods.extend(p for p in self.tracked.values() if p.failing)
        return pods

    def __len__(self) -> int:
        with self.lock:
            return sum(len(scope.pods) for scope in self.scopes) + len(self.tracked)

    # -- the document cap (called with the lock held) -------------------------------------------
    def _admit(self, pod: SlimPod) -> SlimPod:
        """`pod` as the view keeps it: with its document while fewer than `max_documents` are
        held, else without (counted in `without_document`)."""
        if pod.packed is None:
            return pod
        if self.documents < self.max_documents:
            self.documents += 1
            return pod
        self.without_document += 1
        if not self._cap_logged:
            self._cap_logged = True
            log.warning("the pod view holds %d diagnosis documents (VIEW_MAX_DOCUMENTS): "
                        "further failing pods are kept without theirs and read from the API "
                        "(one GET each) when diagnosed; gauge "
                        "imagepull_bot_view_pods_without_document counts them",
                        self.max_documents)
        return replace(pod, packed=None)

    def _release(self, pod: SlimPod | None) -> None:
        """`pod` leaves the view (or is replaced)."""
        if pod is None:
            return
        if pod.packed is not None:
            self.documents -= 1
        elif pod.failing:
            self.without_document -= 1

    # -- pods the watch does not cover ----------------------------------------------------------
    def refresh(self, namespace: str, name: str) -> SlimPod | None:
        """Read one pod (GET) the Pending watch does not hold, e.g. a running pod that the
        kubelet's events say fails a pull. Kept as tracked while it fails a pull outside
        Pending; None (and forgotten) when it is gone. Raises KubeError for other failures."""
        key = (namespace, name)
        try:
            pod = SlimPod.of(self.kube.read_pod(namespace, name))
        except KubeNotFound:
            with self.lock:
                self._release(self.tracked.pop(key, None))
            return None
        with self.lock:
            self._release(self.tracked.pop(key, None))
            if pod.failing and pod.phase != "Pending":
                self.tracked[key] = self._admit(pod)
                while len(self.tracked) > self.tracked_limit:
                    self._release(self.tracked.popitem(last=False)[1])
            # else: Pending ones are the watch's; a pod that does not fail is not kept
        return pod

    def forget(self, keep: Iterable[Key]) -> int:
        """Drop tracked pods not in `keep` (no longer in any incident); how many went."""
        keep = set(keep)
        with self.lock:
            gone = [key for key in self.tracked if key not in keep]
            for key in gone:
                self._release(self.tracked.pop(key))
        return len(gone)

    # -- to the alerting ------------------------------------------------------------------------
    def recovered(self, keys: Iterable[Key]) -> None:
        if self.on_recovered is None:
            return
        for namespace, name in keys:
            try:
                self.on_recovered(namespace, name)
            except Exception:
                log.exception("recovery handler failed for pod %s/%s", namespace, name)
