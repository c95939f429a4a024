"""Generator of the bundled scenario files (``python scripts/gen_scenarios.py [--force]``).

The YAML files in ``bot/sim/scenarios`` are the source of truth and may be edited by hand; this
script produced the initial set so that every scenario carries the same, consistent cluster
furniture (nodes, namespaces, service accounts, owner chains, the kubelet's event sequence)
without copy-paste drift. It refuses to overwrite existing files unless ``--force``.

Texts follow containerd 1.7 + kubelet 1.33 exactly (the CRI error is prefixed with
``rpc error: code = ... desc =``; the ImagePullBackOff waiting message carries the last pull
error since kubelet 1.30; the scheduler's event is an events.k8s.io event seen through core/v1,
so its firstTimestamp/lastTimestamp are null and eventTime is set).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parents[1] / "bot" / "sim" / "scenarios"
Obj = dict[str, Any]
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s rand.SafeEncodeString alphabet
NODES = {"worker-1": "10.0.1.11", "worker-2": "10.0.1.12", "worker-3": "10.0.1.13"}
DUMMY_PASSWORD = "s3cr3t-do-not-print"


def ago(seconds: int) -> str:
    """A ``{{now-Ns}}`` template in the largest exact unit, so files stay readable."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{{{{now-{seconds // size}{unit}}}}}"
    return f"{{{{now-{seconds}s}}}}"


def _hash(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def safe(seed: str, n: int) -> str:
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in _hash(seed)[:n])


def uid(*parts: str) -> str:
    return str(uuid.UUID(bytes=_hash("uid", *parts)[:16], version=4))


def hex16(*parts: str) -> str:
    return _hash("ev", *parts).hex()[:16]


def dockerconfigjson(registry: str, username: str, password: str = DUMMY_PASSWORD) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    cfg = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    return base64.b64encode(json.dumps(cfg, separators=(",", ":")).encode()).decode()


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


# -- containerd 1.7 error texts (as the kubelet reports them) -----------------------------------
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


def err_request(image: str, tail: str) -> str:
    return err_resolve(image, f'failed to do request: Head "{manifest_url(image)}": {tail}')


@dataclass
class Pull:
    """How one container's pull fails (or succeeds)."""

    error: str | None  # None: the pull succeeds
    state: str = "ImagePullBackOff"  # or ErrImagePull
    retries: int = 7
    backoffs: int = 45


@dataclass
class Builder:
    scenario: str
    description: str
    expected: Obj
    version: str | None = None
    forbidden: list[str] = field(default_factory=list)
    docs: list[Obj] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)

    # -- furniture -----------------------------------------------------------------------------
    def header(self) -> Obj:
        doc: Obj = {"kind": "Scenario", "name": self.scenario, "description": self.description}
        if self.version:
            doc["kubernetesVersion"] = self.version
        if self.forbidden:
            doc["forbidden"] = self.forbidden
        doc["expected"] = self.expected
        return doc

    def meta(self, kind: str, name: str, ns: str | None, created: int, **extra: Any) -> Obj:
        m: Obj = {"name": name}
        if ns:
            m["namespace"] = ns
        m["uid"] = uid(self.scenario, kind, ns or "", name)
        m["creationTimestamp"] = ago(created)
        m.update({k: v for k, v in extra.items() if v})
        return m

    def namespace(self, name: str) -> None:
        if name in self.namespaces:
            return
        self.namespaces.add(name)
        self.docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": self.meta(
                    "Namespace", name, None, 90 * 86400,
                    labels={"kubernetes.io/metadata.name": name},
                ),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )
        self.docs.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": self.meta("ServiceAccount", "default", name, 90 * 86400),
            }
        )

    def service_account_secrets(self, ns: str, secrets: list[str]) -> None:
        for doc in self.docs:
            if doc["kind"] == "ServiceAccount" and doc["metadata"]["namespace"] == ns:
                doc["imagePullSecrets"] = [{"name": s} for s in secrets]

    def node(
        self,
        name: str,
        disk_pressure: bool = False,
        images: list[str] | None = None,
    ) -> None:
        since = ago(40 * 86400)

        def cond(type_: str, status: str, reason: str, message: str, at: str = since) -> Obj:
            return {
                "type": type_,
                "status": status,
                "lastHeartbeatTime": ago(40),
                "lastTransitionTime": at,
                "reason": reason,
                "message": message,
            }

        disk = (
            cond("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure",
                 ago(8 * 60))
            if disk_pressure
            else cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                      "kubelet has no disk pressure")
        )
        spec: Obj = {"podCIDR": f"10.244.{name[-1]}.0/24", "providerID": f"kind://docker/sim/{name}"}
        if disk_pressure:
            spec["taints"] = [
                {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule",
                 "timeAdded": ago(8 * 60)}
            ]
        status: Obj = {
            "addresses": [
                {"type": "InternalIP", "address": NODES[name]},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": {"cpu": "4", "ephemeral-storage": "47227284Ki" if not disk_pressure
                            else "1024Mi", "memory": "16179472Ki", "pods": "110"},
            "capacity": {"cpu": "4", "ephemeral-storage": "51255784Ki", "memory": "16281872Ki",
                         "pods": "110"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                disk,
                cond("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": uid(self.scenario, "boot", name),
                "containerRuntimeVersion": "containerd://1.7.27",
                "kernelVersion": "6.8.0-1021-aws",
                "kubeProxyVersion": self.version or "v1.33.1",
                "kubeletVersion": self.version or "v1.33.1",
                "machineID": hex16(self.scenario, "machine", name) * 2,
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.2 LTS",
                "systemUUID": uid(self.scenario, "system", name),
            },
        }
        if images:
            status["images"] = [
                {"names": [normalize(i)], "sizeBytes": 48213377} for i in images
            ]
        labels = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
        }
        self.docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": self.meta("Node", name, None, 40 * 86400, labels=labels),
                "spec": spec,
                "status": status,
            }
        )

    def docker_secret(
        self, ns: str, name: str, registry: str, username: str, created: int = 30 * 86400
    ) -> None:
        self.namespace(ns)
        self.docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": self.meta("Secret", name, ns, created),
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": dockerconfigjson(registry, username)},
            }
        )

    # -- workloads -----------------------------------------------------------------------------
    @staticmethod
    def container(name: str, image: str, policy: str | None = None) -> Obj:
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

    @staticmethod
    def pod_spec(containers: list[Obj], pull_secrets: list[str], init: list[Obj] | None = None,
                 restart: str = "Always") -> Obj:
        spec: Obj = {"containers": containers}
        if init:
            spec["initContainers"] = init
        spec.update(
            {
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": restart,
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30,
            }
        )
        if pull_secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
        return spec

    def deployment(
        self,
        ns: str,
        name: str,
        containers: list[Obj],
        pulls: dict[str, Pull],
        *,
        node: str = "worker-1",
        pull_secrets: list[str] | None = None,
        init: list[Obj] | None = None,
        template_hash: str | None = None,
        pod_suffix: str | None = None,
        created: int = 12 * 60,
        running: bool = False,
    ) -> None:
        self.namespace(ns)
        secrets = pull_secrets or []
        labels = {"app.kubernetes.io/name": name, "app": name}
        template = {
            "metadata": {"labels": dict(labels)},
            "spec": self.pod_spec(containers, secrets, init),
        }
        dep_uid = uid(self.scenario, "Deployment", ns, name)
        h = template_hash or safe(f"{self.scenario}/{name}/hash", 10)
        rs_name = f"{name}-{h}"
        dep_status: Obj = {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if running else "False",
                    "reason": "MinimumReplicasAvailable" if running
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability." if running
                    else "Deployment does not have minimum availability.",
                    "lastUpdateTime": ago(created),
                    "lastTransitionTime": ago(created),
                },
                {
                    "type": "Progressing",
                    "status": "True" if running else "False",
                    "reason": "NewReplicaSetAvailable" if running else "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{rs_name}" has successfully progressed.' if running
                    else f'ReplicaSet "{rs_name}" has timed out progressing.',
                    "lastUpdateTime": ago(created - 600 if not running else created),
                    "lastTransitionTime": ago(created - 600 if not running else created),
                },
            ],
        }
        if running:
            dep_status.update({"readyReplicas": 1, "availableReplicas": 1})
        else:
            dep_status["unavailableReplicas"] = 1
        self.docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": self.meta(
                    "Deployment", name, ns, created, generation=1, labels=dict(labels),
                    annotations={"deployment.kubernetes.io/revision": "1"},
                ),
                "spec": {
                    "progressDeadlineSeconds": 600,
                    "replicas": 1,
                    "revisionHistoryLimit": 10,
                    "selector": {"matchLabels": dict(labels)},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    },
                    "template": template,
                },
                "status": dep_status,
            }
        )
        rs_labels = {**labels, "pod-template-hash": h}
        rs_uid = uid(self.scenario, "ReplicaSet", ns, rs_name)
        rs_status: Obj = {"replicas": 1, "fullyLabeledReplicas": 1, "observedGeneration": 1}
        if running:
            rs_status.update({"readyReplicas": 1, "availableReplicas": 1})
        self.docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": self.meta(
                    "ReplicaSet", rs_name, ns, created, generation=1, labels=rs_labels,
                    annotations={
                        "deployment.kubernetes.io/desired-replicas": "1",
                        "deployment.kubernetes.io/max-replicas": "2",
                        "deployment.kubernetes.io/revision": "1",
                    },
                    ownerReferences=[_owner("apps/v1", "Deployment", name, dep_uid)],
                ),
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": dict(rs_labels)},
                    "template": {"metadata": {"labels": dict(rs_labels)}, "spec": template["spec"]},
                },
                "status": rs_status,
            }
        )
        pod_name = f"{rs_name}-{pod_suffix or safe(f'{self.scenario}/{rs_name}/pod', 5)}"
        self.pod(
            ns, pod_name, rs_labels, _owner("apps/v1", "ReplicaSet", rs_name, rs_uid),
            containers, pulls, node=node, pull_secrets=secrets, init=init, created=created,
        )

    def pod(
        self,
        ns: str,
        name: str,
        labels: Obj,
        owner: Obj,
        containers: list[Obj],
        pulls: dict[str, Pull],
        *,
        node: str,
        pull_secrets: list[str],
        init: list[Obj] | None = None,
        created: int = 12 * 60,
        restart: str = "Always",
        extra_spec: Obj | None = None,
        kubelet_prelude: list[tuple[str, str, str]] | None = None,
        events: bool = True,
    ) -> Obj:
        pod_uid = uid(self.scenario, "Pod", ns, name)
        spec = self.pod_spec(containers, pull_secrets, init, restart)
        spec.update(
            {
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
            }
        )
        spec.update(extra_spec or {})
        init_failing = any(pulls.get(c["name"], Pull(None)).error for c in init or [])
        all_ok = not any(p.error for p in pulls.values())
        statuses = [
            self._status(c, pulls.get(c["name"], Pull(None)),
                         blocked_by_init=init_failing, created=created)
            for c in containers
        ]
        unready = [c["name"] for c in containers if not all_ok or init_failing]
        conditions = [
            _pcond("PodReadyToStartContainers", "True", created - 2),
            _pcond("Initialized", "False" if init_failing else "True", created,
                   "ContainersNotInitialized" if init_failing else None,
                   f"containers with incomplete status: [{init[0]['name']}]"
                   if init_failing and init else None),
            _pcond("Ready", "False" if unready else "True", created,
                   "ContainersNotReady" if unready else None,
                   f"containers with unready status: [{' '.join(unready)}]" if unready else None),
            _pcond("ContainersReady", "False" if unready else "True", created,
                   "ContainersNotReady" if unready else None,
                   f"containers with unready status: [{' '.join(unready)}]" if unready else None),
            _pcond("PodScheduled", "True", created),
        ]
        ip_last = int(hashlib.sha256(name.encode()).hexdigest()[:2], 16) % 250 + 2
        status: Obj = {
            "phase": "Running" if all_ok else "Pending",
            "conditions": conditions,
            "hostIP": NODES[node],
            "hostIPs": [{"ip": NODES[node]}],
            "podIP": f"10.244.{node[-1]}.{ip_last}",
            "podIPs": [{"ip": f"10.244.{node[-1]}.{ip_last}"}],
            "qosClass": "Burstable",
            "startTime": ago(created - 1),
        }
        if init:
            status["initContainerStatuses"] = [
                self._status(c, pulls.get(c["name"], Pull(None)), created=created, init=True)
                for c in init
            ]
        status["containerStatuses"] = statuses
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self.meta("Pod", name, ns, created, labels=labels,
                                  ownerReferences=[owner]),
            "spec": spec,
            "status": status,
        }
        self.docs.append(pod)
        if events:
            self.scheduled_event(ns, name, pod_uid, node, created)
            for kind_, reason, message in kubelet_prelude or []:
                self.event(ns, name, pod_uid, node, None, kind_, reason, message, 1,
                           created - 1, created - 1)
            for group, cs in (("initContainers", init or []), ("containers", containers)):
                for c in cs:
                    pull = pulls.get(c["name"])
                    if pull is not None and not (group == "containers" and init_failing):
                        self.pull_events(ns, name, pod_uid, node, f"spec.{group}{{{c['name']}}}",
                                         c["image"], pull, created)
        return pod

    def _status(self, c: Obj, pull: Pull, *, blocked_by_init: bool = False, created: int,
                init: bool = False) -> Obj:
        st: Obj = {"name": c["name"], "image": c["image"], "imageID": "", "lastState": {},
                   "ready": False, "restartCount": 0}
        if not init:
            st["started"] = False
        if blocked_by_init:
            st["state"] = {"waiting": {"reason": "PodInitializing"}}
        elif pull.error is None:
            st.update({"ready": not init, "imageID": f"{normalize(c['image']).rpartition(':')[0]}"
                       f"@sha256:{hashlib.sha256(c['image'].encode()).hexdigest()}"})
            st["containerID"] = f"containerd://{hashlib.sha256(c['name'].encode()).hexdigest()}"
            if init:
                st["state"] = {"terminated": {"exitCode": 0, "reason": "Completed",
                                              "startedAt": ago(created - 5),
                                              "finishedAt": ago(created - 9)}}
            else:
                st["started"] = True
                st["state"] = {"running": {"startedAt": ago(created - 5)}}
        else:
            st["state"] = {"waiting": {"reason": pull.state, "message": _waiting(c, pull)}}
        return st

    def scheduled_event(self, ns: str, pod: str, pod_uid: str, node: str, created: int) -> None:
        self.docs.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": self.meta("Event", f"{pod}.{hex16(self.scenario, pod, 'sched')}",
                                      ns, created),
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod,
                                   "namespace": ns, "uid": pod_uid},
                "reason": "Scheduled",
                "message": f"Successfully assigned {ns}/{pod} to {node}",
                "type": "Normal",
                "source": {},
                "firstTimestamp": None,
                "lastTimestamp": None,
                "eventTime": ago(created),
                "action": "Binding",
                "reportingComponent": "default-scheduler",
                "reportingInstance": "default-scheduler-control-plane",
            }
        )

    def event(
        self, ns: str, pod: str, pod_uid: str, node: str, field_path: str | None, type_: str,
        reason: str, message: str, count: int, first: int, last: int,
    ) -> None:
        involved: Obj = {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns,
                         "uid": pod_uid}
        if field_path:
            involved["fieldPath"] = field_path
        self.docs.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": self.meta(
                    "Event", f"{pod}.{hex16(self.scenario, pod, reason, message)}", ns, first
                ),
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": "kubelet", "host": node},
                "firstTimestamp": ago(first),
                "lastTimestamp": ago(last),
                "count": count,
                "eventTime": None,
                "reportingComponent": "kubelet",
                "reportingInstance": node,
            }
        )

    def pull_events(self, ns: str, pod: str, pod_uid: str, node: str, fp: str, image: str,
                    pull: Pull, created: int) -> None:
        def ev(type_: str, reason: str, msg: str, count: int, first: int, last: int) -> None:
            self.event(ns, pod, pod_uid, node, fp, type_, reason, msg, count, first, last)

        start = created - 2
        if pull.error is None:
            ev("Normal", "Pulling", f'Pulling image "{image}"', 1, start, start)
            ev("Normal", "Pulled", f'Successfully pulled image "{image}" in 3.912s (3.912s '
               "including waiting). Image size: 72195292 bytes.", 1, start - 4, start - 4)
            ev("Normal", "Created", f"Created container: {fp.split('{')[1][:-1]}", 1,
               start - 4, start - 4)
            ev("Normal", "Started", f"Started container {fp.split('{')[1][:-1]}", 1,
               start - 5, start - 5)
            return
        if pull.state == "ErrImageNeverPull":
            ev("Warning", "ErrImageNeverPull", pull.error, pull.backoffs, start, 15)
            return
        if pull.state == "InvalidImageName":
            ev("Warning", "InspectFailed", pull.error, pull.backoffs, start, 15)
            ev("Warning", "Failed", "Error: InvalidImageName", pull.backoffs, start, 15)
            return
        last_pull = 60 if pull.state == "ImagePullBackOff" else 5
        ev("Normal", "Pulling", f'Pulling image "{image}"', pull.retries, start, last_pull)
        ev("Warning", "Failed", f'Failed to pull image "{image}": {pull.error}', pull.retries,
           start - 1, last_pull - 1)
        ev("Warning", "Failed", "Error: ErrImagePull", pull.retries, start - 1, last_pull - 1)
        if pull.backoffs:
            ev("Normal", "BackOff", f'Back-off pulling image "{image}"', pull.backoffs,
               start - 2, 20)
            ev("Warning", "Failed", "Error: ImagePullBackOff", pull.backoffs, start - 2, 20)

    def dump(self, force: bool) -> Path:
        path = OUT / f"{self.scenario}.yaml"
        if path.exists() and not force:
            print(f"skip {path} (exists; --force to overwrite)", file=sys.stderr)
            return path
        text = yaml.safe_dump_all([self.header(), *self.docs], sort_keys=False, width=100000)
        path.write_text(text, encoding="utf-8")
        return path


def _owner(api_version: str, kind: str, name: str, owner_uid: str) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": owner_uid,
            "controller": True, "blockOwnerDeletion": True}


def _pcond(type_: str, status: str, at: int, reason: str | None = None,
           message: str | None = None) -> Obj:
    c: Obj = {"type": type_, "status": status, "lastProbeTime": None,
              "lastTransitionTime": ago(at)}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _waiting(c: Obj, pull: Pull) -> str:
    assert pull.error is not None
    if pull.state == "ImagePullBackOff":
        return f'Back-off pulling image "{c["image"]}": ErrImagePull: {pull.error}'
    return pull.error


# -- the scenarios --------------------------------------------------------------------------------
def simple(
    scenario: str,
    description: str,
    expected: Obj,
    deploy: str,
    image: str,
    error: str | None,
    *,
    container: str | None = None,
    ns: str = "shop",
    pull_secrets: list[str] | None = None,
    state: str = "ImagePullBackOff",
    policy: str | None = None,
    node: str = "worker-1",
    template_hash: str | None = None,
    pod_suffix: str | None = None,
    version: str | None = None,
) -> Builder:
    b = Builder(scenario, description, expected, version=version)
    for n in ("worker-1", "worker-2"):
        b.node(n)
    b.namespace("default")
    b.namespace(ns)
    name = container or deploy
    pull = Pull(error, state=state)
    if state == "ErrImagePull":
        pull.backoffs = 0
        pull.retries = 1
    b.deployment(ns, deploy, [b.container(name, image, policy)], {name: pull}, node=node,
                 pull_secrets=pull_secrets, template_hash=template_hash, pod_suffix=pod_suffix)
    return b


def build_all() -> list[Builder]:
    out: list[Builder] = []
    reg = "registry.internal"

    b = simple("tag-not-found", "Deployment web pulls nginx:lates (typo of latest): the tag does "
               "not exist on Docker Hub.", {"cause": "tag_not_found", "findings": []},
               "web", "nginx:lates", err_not_found("nginx:lates"),
               template_hash="7d9f8b6c5d", pod_suffix="x2x9q")
    out.append(b)

    img = f"{reg}/myapp/myorg:v1"
    b = simple("repository-not-found", "Deployment api pulls registry.internal/myapp/myorg:v1 "
               "(org and app swapped; the real repository is myorg/myapp) with a valid pull "
               "secret. containerd reports a registry 404 the same way for a missing repository "
               "and a missing tag; only the repository path distinguishes them.",
               {"cause": "repository_not_found", "findings": []}, "api", img,
               err_not_found(img), pull_secrets=["regcred"])
    b.docker_secret("shop", "regcred", reg, "ci-puller")
    out.append(b)

    img = f"{reg}/team/billing:v2.1"
    out.append(simple("auth-required", "Private registry image without any pull secret: the "
                      "anonymous token request gets 401.",
                      {"cause": "auth_required", "findings": ["no_pull_secret"]},
                      "billing", img, err_anonymous_401(img)))

    img = "acme/private-api:1.4"
    out.append(simple(
        "dockerhub-private-no-secret", "Private Docker Hub repository pulled without a secret: "
        "Docker Hub answers insufficient_scope (indistinguishable from a missing repository).",
        {"cause": "auth_required", "findings": ["no_pull_secret"]}, "private-api", img,
        err_resolve(img, "pull access denied, repository does not exist or may require "
                    "authorization: server message: insufficient_scope: authorization failed")))

    img = "europe-docker.pkg.dev/acme-prod/apps/checkout:3.2"
    b = simple("forbidden", "Artifact Registry image with a pull secret whose service account "
               "lacks roles/artifactregistry.reader: 403 Forbidden.",
               {"cause": "forbidden", "findings": []}, "checkout", img,
               err_resolve(img, f"unexpected status from HEAD request to {manifest_url(img)}: "
                           "403 Forbidden"), pull_secrets=["gar-pull"])
    b.docker_secret("shop", "gar-pull", "europe-docker.pkg.dev", "_json_key")
    out.append(b)

    b = Builder("rate-limited", "Three Deployments pulling from Docker Hub anonymously hit the "
                "pull rate limit (429 toomanyrequests).",
                {"cause": "rate_limited", "findings": []})
    for n in ("worker-1", "worker-2"):
        b.node(n)
    b.namespace("default")
    limit = ("429 Too Many Requests - Server message: toomanyrequests: You have reached your "
             "pull rate limit. You may increase the limit by authenticating and upgrading: "
             "https://www.docker.com/increase-rate-limit")
    for deploy, image, node, state in (
        ("frontend", "nginx:1.27.3", "worker-1", "ImagePullBackOff"),
        ("cache", "redis:7.2.5", "worker-2", "ErrImagePull"),
        ("queue", "rabbitmq:3.13-management", "worker-1", "ImagePullBackOff"),
    ):
        if deploy == "cache":
            digest = hashlib.sha256(image.encode()).hexdigest()
            repo = normalize(image).partition("/")[2].rpartition(":")[0]
            error = (f'rpc error: code = Unknown desc = failed to pull and unpack image '
                     f'"{normalize(image)}": failed to copy: httpReadSeeker: failed open: '
                     f"unexpected status code https://registry-1.docker.io/v2/{repo}/manifests/"
                     f"sha256:{digest}: {limit}")
        else:
            error = err_resolve(image, f"unexpected status from HEAD request to "
                                f"{manifest_url(image)}: {limit}")
        pull = Pull(error, state=state, retries=4 if state == "ImagePullBackOff" else 1,
                    backoffs=12 if state == "ImagePullBackOff" else 0)
        b.deployment("shop", deploy, [b.container(deploy, image)], {deploy: pull}, node=node)
    out.append(b)

    img = "registy.internal/payments:1.0"
    out.append(simple("dns-failure", "Typo in the registry host (registy.internal): the name "
                      "does not resolve.", {"cause": "dns_failure", "findings": []},
                      "payments", img, err_request(
                          img, "dial tcp: lookup registy.internal on 10.96.0.10:53: no such host"),
                      state="ErrImagePull"))

    img = f"{reg}/shop/search:2.3"
    out.append(simple("network-timeout", "The registry's address is unreachable from the node "
                      "(firewall / security group drops packets): dial i/o timeout.",
                      {"cause": "network_unreachable", "findings": []}, "search", img,
                      err_request(img, "dial tcp 10.0.12.7:443: i/o timeout"),
                      pull_secrets=["regcred"]))
    out[-1].docker_secret("shop", "regcred", reg, "ci-puller")

    img = f"{reg}/shop/inventory:4.1"
    out.append(simple("connection-refused", "The registry host resolves but nothing listens on "
                      "443 (registry down): connection refused.",
                      {"cause": "network_unreachable", "findings": []}, "inventory", img,
                      err_request(img, "dial tcp 10.0.12.7:443: connect: connection refused"),
                      pull_secrets=["regcred"]))
    out[-1].docker_secret("shop", "regcred", reg, "ci-puller")

    img = f"{reg}/shop/ledger:1.8"
    out.append(simple("tls-untrusted", "The registry's certificate is signed by a private CA "
                      "the node's containerd does not trust.",
                      {"cause": "tls_untrusted", "findings": []}, "ledger", img,
                      err_request(img, "tls: failed to verify certificate: x509: certificate "
                                  "signed by unknown authority"), pull_secrets=["regcred"]))
    out[-1].docker_secret("shop", "regcred", reg, "ci-puller")

    img = f"{reg}/shop/worker:1.0"
    b = simple("never-pull", "imagePullPolicy: Never and the image is not on the node.",
               {"cause": "never_pull", "findings": ["policy_never"]}, "worker", img,
               f'Container image "{img}" is not present with pull policy of Never',
               state="ErrImageNeverPull", policy="Never")
    out.append(b)

    img = "Shop/Web:1.0"
    out.append(simple("invalid-image-name", "Upper-case repository name: the kubelet cannot "
                      "parse the reference and never contacts a registry.",
                      {"cause": "invalid_image_name", "findings": []}, "storefront", img,
                      f'Failed to apply default image tag "{img}": couldn\'t parse image '
                      f'reference "{img}": invalid reference format: repository name must be '
                      "lowercase", state="InvalidImageName"))

    img = "postgres:16.4"
    b = Builder("disk-full", "Layer extraction fails with no space left on device; the node "
                "reports DiskPressure.", {"cause": "disk_full",
                                          "findings": ["node_disk_pressure"]})
    b.node("worker-1")
    b.node("worker-3", disk_pressure=True)
    b.namespace("default")
    layer = hashlib.sha256(b"pg-layer").hexdigest()
    err = (f'rpc error: code = Unknown desc = failed to pull and unpack image '
           f'"{normalize(img)}": failed to extract layer sha256:{layer}: mount callback failed on '
           "/var/lib/containerd/tmpmounts/containerd-mount2871461950: write /var/lib/containerd/"
           "tmpmounts/containerd-mount2871461950/usr/lib/postgresql/16/lib/llvmjit.so: no space "
           "left on device: unknown")
    b.deployment("shop", "reporting-db", [b.container("postgres", img)], {"postgres": Pull(err)},
                 node="worker-3")
    out.append(b)

    img = f"{reg}/ml/inference:2.0"
    b = simple("platform-mismatch", "The image index has only linux/arm64; the node is "
               "linux/amd64.", {"cause": "platform_mismatch", "findings": []}, "inference", img,
               f'rpc error: code = NotFound desc = failed to pull and unpack image "{img}": no '
               "match for platform in manifest: not found", pull_secrets=["regcred"])
    b.docker_secret("shop", "regcred", reg, "ci-puller")
    out.append(b)

    img = f"{reg}/shop/orders:3.0"
    b = Builder("missing-secret", "The pod references imagePullSecret regcred, which exists only "
                "in namespace default (secrets are namespace-scoped): the pull is anonymous.",
                {"cause": "auth_required", "findings": ["pull_secret_missing"]})
    for n in ("worker-1", "worker-2"):
        b.node(n)
    b.docker_secret("default", "regcred", reg, "ci-puller")
    b.namespace("shop")
    b.deployment("shop", "orders", [b.container("orders", img)],
                 {"orders": Pull(err_anonymous_401(img))}, pull_secrets=["regcred"])
    pod = next(d for d in b.docs if d["kind"] == "Pod")
    b.event("shop", pod["metadata"]["name"], pod["metadata"]["uid"], "worker-1", None, "Warning",
            "FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets "
            "(regcred); attempting to pull the image may not succeed.", 52, 12 * 60 - 2, 20)
    out.append(b)

    img = f"{reg}/shop/catalog:1.2"
    b = simple("wrong-registry-secret", "The referenced secret regcred holds credentials for "
               "registry.example.com, but the image is on registry.internal.",
               {"cause": "auth_required", "findings": ["pull_secret_wrong_registry"]},
               "catalog", img, err_anonymous_401(img), pull_secrets=["regcred"])
    b.docker_secret("shop", "regcred", "registry.example.com", "ci-puller")
    out.append(b)

    img = f"{reg}/shop/notifications:2.4"
    b = simple("secret-not-referenced", "A fitting secret regcred exists in the namespace, but "
               "neither the pod nor its service account references it.",
               {"cause": "auth_required",
                "findings": ["no_pull_secret", "pull_secret_not_referenced"]},
               "notifications", img, err_anonymous_401(img))
    b.docker_secret("shop", "regcred", reg, "ci-puller")
    out.append(b)

    ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    img = f"{ecr}/shop/cart:5.0"
    b = simple("ecr-expired", "ECR pull secret created 20 h ago by a one-off `aws ecr "
               "get-login-password` (ECR tokens last 12 h): the registry rejects it with 401.",
               {"cause": "auth_required", "findings": ["ecr_token_expired"]}, "cart", img,
               err_resolve(img, f"unexpected status from HEAD request to {manifest_url(img)}: "
                           "401 Unauthorized"), pull_secrets=["ecr-registry"])
    b.docker_secret("shop", "ecr-registry", ecr, "AWS", created=20 * 3600)
    out.append(b)

    out.append(_statefulset())
    out.append(_daemonset())
    out.append(_cronjob())
    out.append(_crashloop())

    img = f"{reg}/shop/legacy:0.9"
    b = simple("expired-events", "Hours into the back-off only a BackOff event is left and the "
               "waiting message has no pull error: the cause cannot be read from text.",
               {"cause": "unknown", "findings": []}, "legacy", img, "x",
               pull_secrets=["regcred"])
    b.docker_secret("shop", "regcred", reg, "ci-puller")
    pod = next(d for d in b.docs if d["kind"] == "Pod")
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = (
        f'Back-off pulling image "{img}"')
    b.docs = [d for d in b.docs if d["kind"] != "Event" or d["reason"] == "BackOff"]
    for d in b.docs:
        if d["kind"] == "Event":
            d["count"], d["firstTimestamp"] = 412, ago(3 * 3600)
            d["metadata"]["creationTimestamp"] = ago(3 * 3600)
    out.append(b)

    out.append(_init_container())

    b = simple("healthy", "A running pod whose image pulled fine: nothing to diagnose.",
               {"cause": None, "findings": []}, "web", "nginx:1.27.3", None,
               template_hash="5c6b8d9f7b")
    for d in b.docs:
        if d["kind"] == "Deployment":
            d["status"] = _running_deploy_status(d["status"])
        if d["kind"] == "ReplicaSet":
            d["status"].update({"readyReplicas": 1, "availableReplicas": 1})
    out.append(b)

    img = f"{reg}/team/billing:v2.1"
    b = simple("ensure-secret-pulled-images", "Kubernetes v1.33.2 with "
               "KubeletEnsureSecretPulledImages: the image is already on the node (pulled by "
               "another namespace's pod with credentials), but this IfNotPresent pod has no "
               "pull secret, so the kubelet re-verifies with the registry and gets 401.",
               {"cause": "auth_required",
                "findings": ["no_pull_secret", "ensure_secret_pulled_images"]},
               "billing-worker", img, err_anonymous_401(img), version="v1.33.2")
    b.docs = [d for d in b.docs if not (d["kind"] == "Node" and d["metadata"]["name"] ==
                                        "worker-1")]
    b.node("worker-1", images=[img, "registry.k8s.io/pause:3.10"])
    b.docker_secret("billing", "regcred", reg, "billing-ci")
    b.deployment("billing", "billing", [b.container("billing", img)], {"billing": Pull(None)},
                 pull_secrets=["regcred"], created=3 * 86400, running=True)
    out.append(b)
    return out


def _running_deploy_status(status: Obj) -> Obj:
    status = dict(status)
    status.pop("unavailableReplicas", None)
    status.update({"readyReplicas": 1, "availableReplicas": 1})
    for c in status["conditions"]:
        c["status"] = "True"
        if c["type"] == "Available":
            c["reason"], c["message"] = "MinimumReplicasAvailable", "Deployment has minimum " \
                "availability."
        else:
            c["reason"] = "NewReplicaSetAvailable"
            c["message"] = c["message"].replace("has timed out progressing",
                                                "has successfully progressed")
    return status


def _base(name: str, description: str, expected: Obj) -> Builder:
    b = Builder(name, description, expected)
    for n in ("worker-1", "worker-2"):
        b.node(n)
    b.namespace("default")
    b.namespace("shop")
    return b


def _statefulset() -> Builder:
    img = "postgres:16.44"
    b = _base("statefulset", "StatefulSet db pulls postgres:16.44 (no such tag); owner chain "
              "Pod db-0 -> StatefulSet.", {"cause": "tag_not_found", "findings": []})
    labels = {"app": "db"}
    c = b.container("postgres", img)
    sts_uid = uid(b.scenario, "StatefulSet", "shop", "db")
    rev = f"db-{safe('sts-rev', 10)}"
    b.docs.append({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": b.meta("StatefulSet", "db", "shop", 12 * 60, generation=1, labels=labels),
        "spec": {"replicas": 1, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                 "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": b.pod_spec([c], [])},
                 "updateStrategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"partition": 0}}},
        "status": {"replicas": 1, "availableReplicas": 0, "currentReplicas": 1,
                   "updatedReplicas": 1, "observedGeneration": 1, "currentRevision": rev,
                   "updateRevision": rev, "collisionCount": 0},
    })
    pod_labels = {**labels, "apps.kubernetes.io/pod-index": "0", "controller-revision-hash": rev,
                  "statefulset.kubernetes.io/pod-name": "db-0"}
    b.pod("shop", "db-0", pod_labels, _owner("apps/v1", "StatefulSet", "db", sts_uid), [c],
          {"postgres": Pull(err_not_found(img))}, node="worker-2", pull_secrets=[],
          extra_spec={"hostname": "db-0", "subdomain": "db"})
    return b


def _daemonset() -> Builder:
    img = "fluent/fluent-bit:3.1.99"
    b = _base("daemonset", "DaemonSet log-agent pulls fluent/fluent-bit:3.1.99 (no such tag); "
              "one failing pod per node.", {"cause": "tag_not_found", "findings": []})
    labels = {"app": "log-agent"}
    c = b.container("fluent-bit", img)
    ds_uid = uid(b.scenario, "DaemonSet", "shop", "log-agent")
    rev = safe("ds-rev", 10)
    b.docs.append({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": b.meta("DaemonSet", "log-agent", "shop", 12 * 60, generation=1,
                           labels=labels),
        "spec": {"selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": b.pod_spec([c], [])},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {
                     "maxSurge": 0, "maxUnavailable": 1}}},
        "status": {"currentNumberScheduled": 2, "desiredNumberScheduled": 2,
                   "numberMisscheduled": 0, "numberReady": 0, "numberUnavailable": 2,
                   "observedGeneration": 1,
                   "updatedNumberScheduled": 2},
    })
    for node in ("worker-1", "worker-2"):
        name = f"log-agent-{safe('ds-pod-' + node, 5)}"
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
        b.pod("shop", name, {**labels, "controller-revision-hash": rev,
                             "pod-template-generation": "1"},
              _owner("apps/v1", "DaemonSet", "log-agent", ds_uid), [c],
              {"fluent-bit": Pull(err_not_found(img))}, node=node, pull_secrets=[],
              extra_spec={"affinity": affinity})
    return b


def _cronjob() -> Builder:
    img = "python:3.12-slim-bookwrom"
    b = _base("cronjob", "CronJob nightly-report -> Job nightly-report-29383920 -> Pod; the "
              "image tag has a typo (bookwrom).", {"cause": "tag_not_found", "findings": []})
    c = b.container("report", img)
    cj_uid = uid(b.scenario, "CronJob", "shop", "nightly-report")
    job = "nightly-report-29383920"
    job_uid = uid(b.scenario, "Job", "shop", job)
    job_spec: Obj = {"backoffLimit": 2, "template": {"metadata": {}, "spec": b.pod_spec(
        [c], [], restart="Never")}}
    b.docs.append({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": b.meta("CronJob", "nightly-report", "shop", 20 * 86400, generation=1),
        "spec": {"schedule": "0 2 * * *", "concurrencyPolicy": "Forbid", "suspend": False,
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"metadata": {}, "spec": job_spec}},
        "status": {"active": [{"apiVersion": "batch/v1", "kind": "Job", "name": job,
                               "namespace": "shop", "uid": job_uid}],
                   "lastScheduleTime": ago(12 * 60)},
    })
    job_labels = {"batch.kubernetes.io/controller-uid": job_uid,
                  "batch.kubernetes.io/job-name": job, "controller-uid": job_uid,
                  "job-name": job}
    b.docs.append({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": b.meta("Job", job, "shop", 12 * 60, generation=1, labels=job_labels,
                           ownerReferences=[_owner("batch/v1", "CronJob", "nightly-report",
                                                   cj_uid)]),
        "spec": {**job_spec, "completionMode": "NonIndexed", "completions": 1,
                 "parallelism": 1, "selector": {"matchLabels": {
                     "batch.kubernetes.io/controller-uid": job_uid}},
                 "template": {"metadata": {"labels": job_labels},
                              "spec": job_spec["template"]["spec"]}},
        "status": {"active": 1, "ready": 0, "startTime": ago(12 * 60),
                   "uncountedTerminatedPods": {}},
    })
    b.pod("shop", f"{job}-{safe('cj-pod', 5)}", job_labels,
          _owner("batch/v1", "Job", job, job_uid), [c],
          {"report": Pull(err_not_found(img))}, node="worker-2", pull_secrets=[],
          restart="Never")
    return b


def _crashloop() -> Builder:
    img = "registry.internal/shop/app:1.4.2"
    b = _base("crashloop", "The image pulled fine; the container exits 1 and is in "
              "CrashLoopBackOff. Not an image-pull problem.", {"cause": None, "findings": []})
    b.docker_secret("shop", "regcred", "registry.internal", "ci-puller")
    b.deployment("shop", "app", [b.container("app", img)], {"app": Pull(None)},
                 pull_secrets=["regcred"])
    pod = next(d for d in b.docs if d["kind"] == "Pod")
    name, puid = pod["metadata"]["name"], pod["metadata"]["uid"]
    st = pod["status"]["containerStatuses"][0]
    st.update({"ready": False, "started": False, "restartCount": 6,
               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": (
                   f"back-off 5m0s restarting failed container=app pod={name}_shop({puid})")}},
               "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                            "startedAt": ago(190), "finishedAt": ago(188),
                                            "containerID": st["containerID"]}}})
    pod["status"]["phase"] = "Running"
    for cond in pod["status"]["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update({"status": "False", "reason": "ContainersNotReady",
                         "message": "containers with unready status: [app]"})
    b.docs = [d for d in b.docs if not (d["kind"] == "Event" and d["reason"] in
                                        ("Pulling", "Pulled", "Created", "Started"))]
    fp = "spec.containers{app}"
    b.event("shop", name, puid, "worker-1", fp, "Normal", "Pulled",
            f'Container image "{img}" already present on machine', 7, 12 * 60 - 2, 190)
    b.event("shop", name, puid, "worker-1", fp, "Normal", "Created", "Created container: app",
            7, 12 * 60 - 2, 190)
    b.event("shop", name, puid, "worker-1", fp, "Normal", "Started", "Started container app",
            7, 12 * 60 - 3, 190)
    b.event("shop", name, puid, "worker-1", fp, "Warning", "BackOff",
            f"Back-off restarting failed container app in pod {name}_shop({puid})",
            31, 12 * 60 - 10, 25)
    return b


def _init_container() -> Builder:
    reg = "registry.internal"
    b = _base("init-container", "Init container migrate pulls a tag that does not exist "
              "(2.0.1-rc); the main container api is fine but waits in PodInitializing.",
              {"cause": "tag_not_found", "findings": []})
    b.docker_secret("shop", "regcred", reg, "ci-puller")
    init_img = f"{reg}/shop/migrations:2.0.1-rc"
    b.deployment("shop", "orders-api", [b.container("api", f"{reg}/shop/orders-api:2.0.1")],
                 {"migrate": Pull(err_not_found(init_img))},
                 init=[b.container("migrate", init_img)], pull_secrets=["regcred"])
    return b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="(Re)generate bot/sim/scenarios/*.yaml")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("only", nargs="*", help="scenario ids (default: all)")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    for b in build_all():
        if not args.only or b.scenario in args.only:
            print(b.dump(args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
