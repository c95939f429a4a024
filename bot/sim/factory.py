"""Objects a real cluster would hold, in the exact shapes of the bundled scenario files.

``scripts/gen_scenarios.py`` wrote ``bot/sim/scenarios/*.yaml`` with ``{{now-Ns}}`` templates;
this module builds the same shapes with real timestamps, for timelines played into a running
``SimCluster`` (``sim.apply(obj)``) and for tests::

    objs = failing_deployment("shop", "web", "nginx:lates",
                              containerd_error("not_found", "nginx:lates"))
    for obj in objs:
        sim.apply(obj)

Texts follow containerd 1.7 + kubelet 1.33 exactly: the CRI error is prefixed with
``rpc error: code = ... desc =``, the ImagePullBackOff waiting message carries the last pull
error (kubelet >= 1.30), the image back-off event is ``Normal`` and CrashLoopBackOff's is
``Warning``. Names and uids are derived from a seed (sha256), so a test can compute them again
(``pod_names(...)``) and two runs build identical objects for the same ``now``.

The text and identity helpers (``normalize``, ``manifest_url``, ``err_*``, ``safe``, ``uid``,
``hex16``, ``owner_ref``, ``pod_condition``) keep the generator's names and signatures so the
generator can import them from here.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

Obj = dict[str, Any]
#: seconds before ``now`` -> timestamp string (RFC 3339 here; ``{{now-Ns}}`` in the generator)
Stamp = Callable[[int], str]

_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # k8s rand.SafeEncodeString alphabet
NODES: Final = {"worker-1": "10.0.1.11", "worker-2": "10.0.1.12", "worker-3": "10.0.1.13"}

#: Docker Hub's 429 body as containerd quotes it.
RATE_LIMIT_TEXT: Final = (
    "429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate "
    "limit. You may increase the limit by authenticating and upgrading: "
    "https://www.docker.com/increase-rate-limit"
)

# A failing pod's history, in seconds before `now` (the scenario files' timeline): created 12
# minutes ago, 7 pulls so far (the last a minute ago), 45 back-off reports (the last 20 s ago).
_CREATED = 12 * 60
_LAST_PULL = 60
_LAST_BACKOFF = 20
_RETRIES = 7
_BACKOFFS = 45


# -- identities ---------------------------------------------------------------------------------
def _hash(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def safe(seed: str, n: int) -> str:
    """``n`` characters of the alphabet Kubernetes uses for generated name suffixes."""
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in _hash(seed)[:n])


def uid(*parts: str) -> str:
    return str(uuid.UUID(bytes=_hash("uid", *parts)[:16], version=4))


def hex16(*parts: str) -> str:
    """The 16 hex digits the event recorder appends to the involved object's name."""
    return _hash("ev", *parts).hex()[:16]


def rfc3339(when: dt.datetime) -> str:
    """As the apiserver writes timestamps: UTC, second precision, ``Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock(now: dt.datetime | None = None) -> Stamp:
    """A Stamp for real timestamps relative to ``now`` (default: the current time)."""
    base = now or dt.datetime.now(dt.UTC)
    return lambda seconds_ago: rfc3339(base - dt.timedelta(seconds=seconds_ago))


# -- image references and containerd 1.7 error texts ---------------------------------------------
def normalize(image: str) -> str:
    """containerd's fully qualified form of an image reference."""
    first = image.split("/")[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def manifest_url(image: str, registry_host: str | None = None) -> str:
    full = normalize(image)
    host, _, rest = full.partition("/")
    repo, _, tag = rest.rpartition(":")
    host = registry_host or ("registry-1.docker.io" if host == "docker.io" else host)
    return f"https://{host}/v2/{repo}/manifests/{tag}"


def err_not_found(image: str) -> str:
    ref = normalize(image)
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
        f'failed to resolve reference "{ref}": {ref}: not found'
    )


def err_resolve(image: str, tail: str, code: str = "Unknown") -> str:
    ref = normalize(image)
    return (
        f'rpc error: code = {code} desc = failed to pull and unpack image "{ref}": '
        f'failed to resolve reference "{ref}": {tail}'
    )


def err_anonymous_401(image: str) -> str:
    ref = normalize(image)
    host, _, rest = ref.partition("/")
    repo = rest.rpartition(":")[0]
    scope = f"repository%3A{repo.replace('/', '%2F')}%3Apull"
    return err_resolve(
        image,
        "failed to authorize: failed to fetch anonymous token: unexpected status from GET "
        f"request to https://{host}/token?scope={scope}&service={host}: 401 Unauthorized",
    )


def err_request(image: str, tail: str, registry_host: str | None = None) -> str:
    return err_resolve(
        image, f'failed to do request: Head "{manifest_url(image, registry_host)}": {tail}'
    )


ERROR_KINDS: Final = ("not_found", "unauthorized", "rate_limited", "dns", "timeout", "refused",
                      "x509")


def containerd_error(kind: str, image: str, host: str | None = None) -> str:
    """The error containerd 1.7 returns for a pull of ``image`` failing in the way ``kind``
    says, as the kubelet quotes it after ``Failed to pull image "x": ``.

    ``host`` is the registry host the node talks to (default: the image's, Docker Hub's API
    host for docker.io images); the network kinds name it (``lookup HOST``) in their URLs.
    """
    if kind == "not_found":
        return err_not_found(image)
    if kind == "unauthorized":
        return err_anonymous_401(image)
    if kind == "rate_limited":
        return err_resolve(
            image, f"unexpected status from HEAD request to {manifest_url(image, host)}: "
            f"{RATE_LIMIT_TEXT}")
    tails = {
        "dns": "dial tcp: lookup {host} on 10.96.0.10:53: no such host",
        "timeout": "dial tcp 10.0.12.7:443: i/o timeout",
        "refused": "dial tcp 10.0.12.7:443: connect: connection refused",
        "x509": "tls: failed to verify certificate: x509: certificate signed by unknown "
                "authority",
    }
    if kind not in tails:
        raise ValueError(f"unknown error kind {kind!r}; one of {', '.join(ERROR_KINDS)}")
    api_host = manifest_url(image, host).split("/")[2]
    return err_request(image, tails[kind].format(host=api_host), host)


# -- object pieces -------------------------------------------------------------------------------
def owner_ref(api_version: str, kind: str, name: str, owner_uid: str) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": owner_uid,
            "controller": True, "blockOwnerDeletion": True}


def pod_condition(stamp: Stamp, type_: str, status: str, at: int, reason: str | None = None,
                  message: str | None = None) -> Obj:
    c: Obj = {"type": type_, "status": status, "lastProbeTime": None,
              "lastTransitionTime": stamp(at)}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def container_spec(name: str, image: str, policy: str | None = None) -> Obj:
    """A container as the apiserver defaults it (``:latest`` or no tag -> ``Always``)."""
    if policy is None:
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else "latest"
        policy = "Always" if tag == "latest" else "IfNotPresent"
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": policy,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def pod_spec(containers: list[Obj], pull_secrets: Sequence[str] = (),
             init: list[Obj] | None = None, restart: str = "Always") -> Obj:
    spec: Obj = {"containers": containers}
    if init:
        spec["initContainers"] = init
    spec.update({
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": restart,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    })
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    return spec


def _meta(seed: str, kind: str, name: str, ns: str, created: str, **extra: Any) -> Obj:
    m: Obj = {"name": name, "namespace": ns, "uid": uid(seed, kind, ns, name),
              "creationTimestamp": created}
    m.update({k: v for k, v in extra.items() if v})
    return m


def kubelet_event(pod: Mapping[str, Any], field_path: str | None, type_: str, reason: str,
                  message: str, count: int, first: str, last: str, *, seed: str = "") -> Obj:
    """A core/v1 Event written by the kubelet (classic dialect: count, first/lastTimestamp)."""
    meta = pod["metadata"]
    ns, name = meta["namespace"], meta["name"]
    node = str((pod.get("spec") or {}).get("nodeName") or "worker-1")
    involved: Obj = {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                     "uid": meta["uid"]}
    if field_path:
        involved["fieldPath"] = field_path
    ev_name = f"{name}.{hex16(seed, name, reason, message)}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": ev_name, "namespace": ns, "uid": uid(seed, "Event", ns, ev_name),
                     "creationTimestamp": first},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": count,
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    }


def scheduled_event(pod: Mapping[str, Any], at: str, *, seed: str = "") -> Obj:
    """The scheduler's event: events.k8s.io seen through core/v1 (null first/lastTimestamp)."""
    meta = pod["metadata"]
    ns, name = meta["namespace"], meta["name"]
    node = (pod.get("spec") or {}).get("nodeName")
    ev_name = f"{name}.{hex16(seed, name, 'sched')}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": ev_name, "namespace": ns, "uid": uid(seed, "Event", ns, ev_name),
                     "creationTimestamp": at},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                           "uid": meta["uid"]},
        "reason": "Scheduled",
        "message": f"Successfully assigned {ns}/{name} to {node}",
        "type": "Normal",
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": at,
        "action": "Binding",
        "reportingComponent": "default-scheduler",
        "reportingInstance": "default-scheduler-control-plane",
    }


def pull_failure_events(pod: Mapping[str, Any], container_name: str, image: str, error: str,
                        stamp: Stamp, *, init: bool = False, seed: str = "") -> list[Obj]:
    """The kubelet's sequence for a container stuck in ImagePullBackOff, oldest first:
    Pulling, Failed (the runtime's error), Failed ``Error: ErrImagePull``, BackOff (Normal),
    Failed ``Error: ImagePullBackOff``."""
    fp = f"spec.{'initContainers' if init else 'containers'}{{{container_name}}}"
    start = _CREATED - 2

    def ev(type_: str, reason: str, msg: str, count: int, first: int, last: int) -> Obj:
        return kubelet_event(pod, fp, type_, reason, msg, count, stamp(first), stamp(last),
                             seed=seed)

    return [
        ev("Normal", "Pulling", f'Pulling image "{image}"', _RETRIES, start, _LAST_PULL),
        ev("Warning", "Failed", f'Failed to pull image "{image}": {error}', _RETRIES,
           start - 1, _LAST_PULL - 1),
        ev("Warning", "Failed", "Error: ErrImagePull", _RETRIES, start - 1, _LAST_PULL - 1),
        ev("Normal", "BackOff", f'Back-off pulling image "{image}"', _BACKOFFS, start - 2,
           _LAST_BACKOFF),
        ev("Warning", "Failed", "Error: ImagePullBackOff", _BACKOFFS, start - 2, _LAST_BACKOFF),
    ]


def _image_id(image: str) -> str:
    return (f"{normalize(image).rpartition(':')[0]}"
            f"@sha256:{hashlib.sha256(image.encode()).hexdigest()}")


def _container_id(seed: str, name: str) -> str:
    return f"containerd://{hashlib.sha256(f'{seed}/{name}'.encode()).hexdigest()}"


def _pod(seed: str, ns: str, name: str, labels: Obj, owner: Obj, spec: Obj, status: Obj,
         stamp: Stamp) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(seed, "Pod", name, ns, stamp(_CREATED), labels=dict(labels),
                          ownerReferences=[owner]),
        "spec": spec,
        "status": status,
    }


def _full_pod_spec(containers: list[Obj], pull_secrets: Sequence[str], node: str,
                   init: list[Obj] | None = None) -> Obj:
    spec = pod_spec(containers, pull_secrets, init)
    spec.update({
        "nodeName": node,
        "serviceAccount": "default",
        "serviceAccountName": "default",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
        ],
    })
    return spec


def _pod_status(name: str, node: str, stamp: Stamp, phase: str, ready: bool,
                unready: Sequence[str]) -> Obj:
    ip = f"10.244.{node[-1]}.{int(hashlib.sha256(name.encode()).hexdigest()[:2], 16) % 250 + 2}"
    why = f"containers with unready status: [{' '.join(unready)}]"
    state = "True" if ready else "False"
    reason = None if ready else "ContainersNotReady"
    return {
        "phase": phase,
        "conditions": [
            pod_condition(stamp, "PodReadyToStartContainers", "True", _CREATED - 2),
            pod_condition(stamp, "Initialized", "True", _CREATED),
            pod_condition(stamp, "Ready", state, _CREATED, reason, None if ready else why),
            pod_condition(stamp, "ContainersReady", state, _CREATED, reason,
                          None if ready else why),
            pod_condition(stamp, "PodScheduled", "True", _CREATED),
        ],
        "hostIP": NODES.get(node, "10.0.1.10"),
        "hostIPs": [{"ip": NODES.get(node, "10.0.1.10")}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "qosClass": "Burstable",
        "startTime": stamp(_CREATED - 1),
    }


def _deployment_and_rs(seed: str, ns: str, name: str, template_spec: Obj, replicas: int,
                       stamp: Stamp, *, running: bool) -> tuple[Obj, Obj, Obj]:
    """Deployment, its ReplicaSet ``<name>-<hash>``, and the owner ref pods point at."""
    labels = {"app.kubernetes.io/name": name, "app": name}
    h = safe(f"{seed}/{name}/hash", 10)
    rs_name = f"{name}-{h}"
    rs_labels = {**labels, "pod-template-hash": h}
    dep_uid = uid(seed, "Deployment", ns, name)
    rs_uid = uid(seed, "ReplicaSet", ns, rs_name)
    progressing = (
        {"status": "True", "reason": "NewReplicaSetAvailable",
         "message": f'ReplicaSet "{rs_name}" has successfully progressed.'}
        if running else
        {"status": "False", "reason": "ProgressDeadlineExceeded",
         "message": f'ReplicaSet "{rs_name}" has timed out progressing.'}
    )
    available = (
        {"status": "True", "reason": "MinimumReplicasAvailable",
         "message": "Deployment has minimum availability."}
        if running else
        {"status": "False", "reason": "MinimumReplicasUnavailable",
         "message": "Deployment does not have minimum availability."}
    )
    changed = stamp(_CREATED if running else _CREATED - 600)
    dep_status: Obj = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "conditions": [
            {"type": "Available", **available, "lastUpdateTime": stamp(_CREATED),
             "lastTransitionTime": stamp(_CREATED)},
            {"type": "Progressing", **progressing, "lastUpdateTime": changed,
             "lastTransitionTime": changed},
        ],
    }
    if running:
        dep_status.update({"readyReplicas": replicas, "availableReplicas": replicas})
    else:
        dep_status["unavailableReplicas"] = replicas
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(seed, "Deployment", name, ns, stamp(_CREATED), generation=1,
                          labels=dict(labels),
                          annotations={"deployment.kubernetes.io/revision": "1"}),
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": template_spec},
        },
        "status": dep_status,
    }
    rs_status: Obj = {"replicas": replicas, "fullyLabeledReplicas": replicas,
                      "observedGeneration": 1}
    if running:
        rs_status.update({"readyReplicas": replicas, "availableReplicas": replicas})
    replica_set = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": _meta(
            seed, "ReplicaSet", rs_name, ns, stamp(_CREATED), generation=1, labels=rs_labels,
            annotations={
                "deployment.kubernetes.io/desired-replicas": str(replicas),
                "deployment.kubernetes.io/max-replicas": str(replicas + max(1, replicas // 4)),
                "deployment.kubernetes.io/revision": "1",
            },
            ownerReferences=[owner_ref("apps/v1", "Deployment", name, dep_uid)],
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(rs_labels)},
            "template": {"metadata": {"labels": dict(rs_labels)},
                         "spec": copy.deepcopy(template_spec)},
        },
        "status": rs_status,
    }
    return deployment, replica_set, owner_ref("apps/v1", "ReplicaSet", rs_name, rs_uid)


def default_seed(namespace: str, name: str, image: str) -> str:
    return f"{namespace}/{name}/{image}"


def pod_names(namespace: str, name: str, image: str, replicas: int = 1,
              seed: str | None = None) -> list[str]:
    """The pod names ``failing_deployment`` / ``crashloop_deployment`` give these arguments."""
    seed = seed or default_seed(namespace, name, image)
    rs = f"{name}-{safe(f'{seed}/{name}/hash', 10)}"
    return [f"{rs}-{safe(f'{seed}/{rs}/pod/{i}', 5)}" for i in range(replicas)]


# -- whole timelines -----------------------------------------------------------------------------
def failing_deployment(
    namespace: str,
    name: str,
    image: str,
    error: str,
    *,
    replicas: int = 1,
    node: str = "worker-1",
    container: str | None = None,
    pull_secrets: Sequence[str] = (),
    now: dt.datetime | None = None,
    seed: str | None = None,
) -> list[Obj]:
    """A Deployment whose pods cannot pull ``image``: ``[Deployment, ReplicaSet, then per pod
    the Pod and its events]`` (Scheduled, Pulling, Failed, Failed ``Error: ErrImagePull``,
    BackOff, Failed ``Error: ImagePullBackOff``), the pods 12 minutes old and the last back-off
    20 s before ``now``. ``error`` is the runtime's text (see ``containerd_error``)."""
    stamp = clock(now)
    seed = seed or default_seed(namespace, name, image)
    cname = container or name
    c = container_spec(cname, image)
    deployment, replica_set, owner = _deployment_and_rs(
        seed, namespace, name, pod_spec([c], pull_secrets), replicas, stamp, running=False)
    rs_labels = replica_set["metadata"]["labels"]
    out: list[Obj] = [deployment, replica_set]
    for pod_name in pod_names(namespace, name, image, replicas, seed):
        status = _pod_status(pod_name, node, stamp, "Pending", False, [cname])
        status["containerStatuses"] = [{
            "name": cname, "image": image, "imageID": "", "lastState": {}, "ready": False,
            "restartCount": 0, "started": False,
            "state": {"waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}": ErrImagePull: {error}'}},
        }]
        pod = _pod(seed, namespace, pod_name, rs_labels, owner,
                   _full_pod_spec([copy.deepcopy(c)], pull_secrets, node), status, stamp)
        out.append(pod)
        out.append(scheduled_event(pod, stamp(_CREATED), seed=seed))
        out.extend(pull_failure_events(pod, cname, image, error, stamp, seed=seed))
    return out


def recovered(pod: Mapping[str, Any], *, now: dt.datetime | None = None
              ) -> tuple[Obj, list[Obj]]:
    """The same pod after a successful pull: Running and ready, plus the kubelet's
    ``Pulled`` / ``Created`` / ``Started`` events for each container that was not running."""
    stamp = clock(now)
    new = copy.deepcopy(dict(pod))
    meta = new["metadata"]
    seed = f"recovered/{meta.get('uid')}"
    new["metadata"].pop("resourceVersion", None)
    spec = new.get("spec") or {}
    status = new.setdefault("status", {})
    events: list[Obj] = []
    by_name = {c["name"]: c for c in spec.get("initContainers") or []}
    by_name.update({c["name"]: c for c in spec.get("containers") or []})
    for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
        for st in status.get(key) or []:
            was_running = "running" in (st.get("state") or {})
            image = st.get("image") or by_name.get(st["name"], {}).get("image", "")
            st.update({"imageID": _image_id(image), "lastState": {},
                       "containerID": _container_id(seed, st["name"])})
            if init:
                st.update({"ready": True, "state": {"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": stamp(3),
                    "finishedAt": stamp(2), "containerID": st["containerID"]}}})
            else:
                st.update({"ready": True, "started": True,
                           "state": {"running": {"startedAt": stamp(0)}}})
            if was_running:
                continue
            fp = f"spec.{'initContainers' if init else 'containers'}{{{st['name']}}}"
            at = stamp(0)
            events += [
                kubelet_event(new, fp, "Normal", "Pulled",
                              f'Successfully pulled image "{image}" in 1.2s (1.2s including '
                              "waiting). Image size: 72195292 bytes.", 1, at, at, seed=seed),
                kubelet_event(new, fp, "Normal", "Created", f"Created container: {st['name']}",
                              1, at, at, seed=seed),
                kubelet_event(new, fp, "Normal", "Started", f"Started container {st['name']}",
                              1, at, at, seed=seed),
            ]
    status["phase"] = "Running"
    for cond in status.get("conditions") or []:
        cond["status"] = "True"
        cond.pop("reason", None)
        cond.pop("message", None)
        if cond["type"] in ("Ready", "ContainersReady", "Initialized"):
            cond["lastTransitionTime"] = stamp(0)
    return new, events


def crashloop_deployment(namespace: str, name: str, image: str, *, container: str | None = None,
                         node: str = "worker-1", now: dt.datetime | None = None,
                         seed: str | None = None) -> list[Obj]:
    """A Deployment whose image pulled fine but whose container keeps exiting: the pod waits in
    CrashLoopBackOff and the kubelet reports ``Warning BackOff Back-off restarting failed
    container ...`` (not an image-pull problem)."""
    stamp = clock(now)
    seed = seed or default_seed(namespace, name, image)
    cname = container or name
    c = container_spec(cname, image)
    deployment, replica_set, owner = _deployment_and_rs(
        seed, namespace, name, pod_spec([c]), 1, stamp, running=False)
    out: list[Obj] = [deployment, replica_set]
    pod_name = pod_names(namespace, name, image, 1, seed)[0]
    pod_uid = uid(seed, "Pod", namespace, pod_name)
    cid = _container_id(seed, cname)
    status = _pod_status(pod_name, node, stamp, "Running", False, [cname])
    status["containerStatuses"] = [{
        "name": cname, "image": image, "imageID": _image_id(image), "containerID": cid,
        "ready": False, "started": False, "restartCount": 6,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": (
            f"back-off 5m0s restarting failed container={cname} "
            f"pod={pod_name}_{namespace}({pod_uid})")}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                     "startedAt": stamp(190), "finishedAt": stamp(188),
                                     "containerID": cid}},
    }]
    pod = _pod(seed, namespace, pod_name, replica_set["metadata"]["labels"], owner,
               _full_pod_spec([copy.deepcopy(c)], (), node), status, stamp)
    fp = f"spec.containers{{{cname}}}"
    first = _CREATED - 2

    def ev(type_: str, reason: str, msg: str, count: int, first_: int, last: int) -> Obj:
        return kubelet_event(pod, fp, type_, reason, msg, count, stamp(first_),
                             stamp(last), seed=seed)

    out += [
        pod,
        scheduled_event(pod, stamp(_CREATED), seed=seed),
        ev("Normal", "Pulled", f'Container image "{image}" already present on machine', 7,
           first, 190),
        ev("Normal", "Created", f"Created container: {cname}", 7, first, 190),
        ev("Normal", "Started", f"Started container {cname}", 7, first - 1, 190),
        ev("Warning", "BackOff", f"Back-off restarting failed container {cname} in pod "
           f"{pod_name}_{namespace}({pod_uid})", 31, first - 8, 25),
    ]
    return out


def repeat(event: Mapping[str, Any], count: int | None = None,
           now: dt.datetime | None = None) -> Obj:
    """The kubelet reporting ``event`` again: the same object with a higher count and a new
    last-seen time (applied to a cluster it is a MODIFIED, never an ADDED). Classic events
    get ``count``/``lastTimestamp``; events.k8s.io-style ones (``series``) get
    ``series.count``/``series.lastObservedTime``."""
    new = copy.deepcopy(dict(event))
    new.get("metadata", {}).pop("resourceVersion", None)
    at = rfc3339(now or dt.datetime.now(dt.UTC))
    series = new.get("series")
    if isinstance(series, dict):
        old = int(series.get("count") or new.get("count") or 1)
        series["count"] = count if count is not None else old + 1
        series["lastObservedTime"] = at.replace("Z", ".000000Z")
        return new
    new["count"] = count if count is not None else int(new.get("count") or 1) + 1
    new["lastTimestamp"] = at
    return new
