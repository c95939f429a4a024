"""Builders for pods and events shaped exactly like the API server returns them.

Only the values a test cares about are parameters; the rest is what a real kubelet writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    image: str = "nginx:lates",
    *,
    name: str = "web-7d9f8b6c5d-x2x9q",
    namespace: str = "shop",
    container: str = "web",
    waiting_reason: str | None = "ImagePullBackOff",
    waiting_message: str | None = None,
    pull_policy: str | None = "IfNotPresent",
    pull_secrets: tuple[str, ...] = (),
    owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9f8b6c5d"),
    template_hash: str | None = "7d9f8b6c5d",
    init_image: str | None = None,
    init_waiting_reason: str | None = None,
    node: str = "worker-1",
    service_account: str = "default",
) -> dict[str, Any]:
    labels = {"app": container}
    if template_hash:
        labels["pod-template-hash"] = template_hash
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": "uid-" + name,
                            "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": "owner-uid", "controller": True,
                                    "blockOwnerDeletion": True}]
    spec_container: dict[str, Any] = {"name": container, "image": image}
    if pull_policy:
        spec_container["imagePullPolicy"] = pull_policy
    spec: dict[str, Any] = {"containers": [spec_container], "nodeName": node,
                            "serviceAccountName": service_account}
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    status: dict[str, Any] = {"phase": "Pending"}
    if waiting_reason:
        message = waiting_message or f'Back-off pulling image "{image}"'
        state: dict[str, Any] = {"waiting": {"reason": waiting_reason, "message": message}}
    else:
        state = {"running": {"startedAt": stamp(30)}}
    status["containerStatuses"] = [{"name": container, "image": image, "imageID": "",
                                    "ready": False, "restartCount": 0, "state": state}]
    if init_image:
        spec["initContainers"] = [{"name": "migrate", "image": init_image,
                                   "imagePullPolicy": "IfNotPresent"}]
        init_state: dict[str, Any] = (
            {"waiting": {"reason": init_waiting_reason,
                         "message": f'Back-off pulling image "{init_image}"'}}
            if init_waiting_reason else {"terminated": {"exitCode": 0, "reason": "Completed"}}
        )
        status["initContainerStatuses"] = [{"name": "migrate", "image": init_image,
                                            "ready": False, "restartCount": 0,
                                            "state": init_state}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def event(
    reason: str,
    message: str,
    *,
    type_: str = "Warning",
    pod_name: str = "web-7d9f8b6c5d-x2x9q",
    namespace: str = "shop",
    container: str | None = "web",
    count: int = 1,
    first_ago: float = 120,
    last_ago: float = 10,
    init: bool = False,
) -> dict[str, Any]:
    involved: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                "namespace": namespace, "uid": "uid-" + pod_name}
    if container:
        key = "initContainers" if init else "containers"
        involved["fieldPath"] = f"spec.{key}{{{container}}}"
    return {
        "apiVersion": "v1", "kind": "Event", "type": type_, "reason": reason,
        "message": message, "count": count, "involvedObject": involved,
        "firstTimestamp": stamp(first_ago), "lastTimestamp": stamp(last_ago),
        "metadata": {"name": f"{pod_name}.{abs(hash((reason, message))):x}",
                     "namespace": namespace},
        "source": {"component": "kubelet", "host": "worker-1"},
    }


def pull_failure(image: str, error: str, *, count: int = 3, last_ago: float = 10,
                 container: str = "web", init: bool = False,
                 pod_name: str = "web-7d9f8b6c5d-x2x9q") -> list[dict[str, Any]]:
    """The kubelet's sequence for a failing pull (Pulling, Failed, Error, BackOff, Error)."""
    kw: dict[str, Any] = {"container": container, "init": init, "pod_name": pod_name}
    return [
        event("Pulling", f'Pulling image "{image}"', type_="Normal", count=count,
              last_ago=last_ago + 1, **kw),
        event("Failed", f'Failed to pull image "{image}": {error}', count=count,
              last_ago=last_ago, **kw),
        event("Failed", "Error: ErrImagePull", count=count, last_ago=last_ago, **kw),
        event("BackOff", f'Back-off pulling image "{image}"', type_="Normal", count=count + 2,
              last_ago=last_ago - 5, **kw),
        event("Failed", "Error: ImagePullBackOff", count=count + 2, last_ago=last_ago - 5, **kw),
    ]
