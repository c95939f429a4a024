"""The scenario cluster speaks the apiserver's wire format to the real ``kubernetes`` client.

Every test goes through a kubeconfig written by the sim and the official client (or raw HTTP
where the client would hide the shape under test), so a regression in the wire format fails
here rather than in a bot test that happens to use it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from bot.sim import SimCluster, bundled_scenarios, load_scenario
from bot.sim.scenario import render_time, scenario

pytest_plugins = ["bot.sim.testing"]  # fixtures sim_cluster, sim_kubeconfig, sim_api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

TAG_POD = "web-7d9f8b6c5d-x2x9q"
SCENARIO_IDS = [p.stem for p in bundled_scenarios()]


def _raw(sim: SimCluster, path: str) -> tuple[int, Any]:
    """GET without the client, to see the exact JSON (the client's models hide shapes)."""
    try:
        with urllib.request.urlopen(sim.url + path, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _in_background(fn: Callable[[], None]) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    yield thread
    thread.join(timeout=10)


def _event(sim: SimCluster, pod: str, reason: str, message_part: str = "") -> dict[str, Any]:
    return next(
        e
        for e in sim.list("events", "shop")
        if e["involvedObject"]["name"] == pod
        and e["reason"] == reason
        and message_part in e["message"]
    )


# -- scenarios -------------------------------------------------------------------------------------
def test_the_26_original_scenarios_are_still_bundled() -> None:
    assert len(SCENARIO_IDS) >= 26, SCENARIO_IDS


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_scenario_loads_and_is_consistent(scenario_id: str, tmp_path: Path) -> None:
    """Each file loads, serves through the client, and its owner chains/events/nodes resolve."""
    scenario = load_scenario(scenario_id)
    assert scenario.name == scenario_id and scenario.description and "cause" in scenario.expected
    with SimCluster([scenario_id]) as sim:
        api = config.new_client_from_config(str(sim.write_kubeconfig(tmp_path / "kc")))
        v1 = client.CoreV1Api(api)
        pods = v1.list_pod_for_all_namespaces().items
        assert pods, "every scenario has at least one pod"
        nodes = {n.metadata.name for n in v1.list_node().items}
        uids = {
            (o["kind"], o["metadata"]["uid"])
            for kind in ("Pod", "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job",
                         "CronJob")
            for o in sim.list(kind)
        }
        for pod in pods:
            assert pod.spec.node_name in nodes
            for ref in pod.metadata.owner_references or []:
                assert ref.controller and (ref.kind, ref.uid) in uids
            if pod.spec.image_pull_secrets:  # referenced secrets exist unless the scenario says
                for ref in pod.spec.image_pull_secrets:
                    exists = any(
                        s["metadata"]["name"] == ref.name
                        for s in sim.list("secrets", pod.metadata.namespace)
                    )
                    assert exists or scenario_id == "missing-secret"
        pod_uids = {p.metadata.uid for p in pods}
        for ev in v1.list_event_for_all_namespaces().items:
            assert ev.involved_object.uid in pod_uids
            assert ev.last_timestamp is None or ev.last_timestamp.year > 2000
        client.VersionApi(api).get_code()
        api.close()


def test_time_templates_render_rfc3339() -> None:
    assert render_time("{{now-5m}}") != "{{now-5m}}"
    assert len(render_time("{{now-5m}}")) == len("2026-11-28T15:00:00Z")
    ecr = load_scenario("ecr-expired")
    secret = next(o for o in ecr.objects if o["kind"] == "Secret")
    created = dt.datetime.strptime(secret["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%S%z")
    age = dt.datetime.now(dt.UTC) - created
    assert dt.timedelta(hours=19, minutes=59) < age < dt.timedelta(hours=20, minutes=1)


# -- reads -----------------------------------------------------------------------------------------
@scenario("tag-not-found")
def test_get_one_pod_and_nodes(sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    pod = v1.read_namespaced_pod(TAG_POD, "shop")
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff" and "nginx:lates: not found" in waiting.message
    assert v1.read_node(pod.spec.node_name).status.node_info.container_runtime_version.startswith(
        "containerd://1.7"
    )
    rs = client.AppsV1Api(sim_api).read_namespaced_replica_set("web-7d9f8b6c5d", "shop")
    assert rs.metadata.owner_references[0].name == "web"


@scenario("rate-limited")
def test_list_with_label_selectors(sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)

    def names(**kw: Any) -> list[str]:
        return sorted(p.metadata.labels["app"] for p in v1.list_namespaced_pod("shop", **kw).items)

    assert names() == ["cache", "frontend", "queue"]
    assert names(label_selector="app=cache") == ["cache"]
    assert names(label_selector="app==cache") == ["cache"]
    assert names(label_selector="app!=cache") == ["frontend", "queue"]
    assert names(label_selector="app in (cache, queue)") == ["cache", "queue"]
    assert names(label_selector="app notin (cache)") == ["frontend", "queue"]
    assert names(label_selector="pod-template-hash") == ["cache", "frontend", "queue"]
    assert names(label_selector="!pod-template-hash") == []
    assert names(label_selector="app in (cache,queue),app!=queue") == ["cache"]


@scenario("rate-limited")
def test_list_with_field_selectors(sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    on_2 = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=worker-2").items
    assert [p.metadata.labels["app"] for p in on_2] == ["cache"]
    cache_pod = on_2[0].metadata.name
    evs = v1.list_namespaced_event(
        "shop",
        field_selector=f"involvedObject.name={cache_pod},involvedObject.kind=Pod,type=Warning",
    ).items
    assert evs and all(e.type == "Warning" and e.involved_object.name == cache_pod for e in evs)
    assert not any(e.reason == "Scheduled" for e in evs)
    by_uid = v1.list_event_for_all_namespaces(
        field_selector=f"involvedObject.uid={on_2[0].metadata.uid},reason!=Failed"
    ).items
    assert {e.reason for e in by_uid} == {"Scheduled", "Pulling"}
    fp = v1.list_namespaced_event(
        "shop", field_selector="involvedObject.fieldPath==spec.containers{cache}"
    )
    assert {e.involved_object.name for e in fp.items} == {cache_pod}
    assert v1.list_namespaced_pod("shop", field_selector="status.phase=Running").items == []
    assert v1.list_namespaced_pod("shop", field_selector="metadata.name=" + cache_pod).items


@scenario("wrong-registry-secret")
def test_secret_type_field_selector(sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    docker = v1.list_namespaced_secret("shop", field_selector="type=kubernetes.io/dockerconfigjson")
    assert [s.metadata.name for s in docker.items] == ["regcred"]
    assert v1.list_namespaced_secret("shop", field_selector="type=Opaque").items == []


@scenario("tag-not-found")
def test_unsupported_field_selector_is_400_status(sim_api: Any) -> None:
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(sim_api).list_namespaced_pod("shop", field_selector="spec.image=x")
    assert info.value.status == 400
    body = json.loads(info.value.body)
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert body["message"] == "field label not supported: spec.image"


@scenario("tag-not-found")
def test_list_shape_matches_the_apiserver(sim_cluster: SimCluster) -> None:
    code, body = _raw(sim_cluster, "/api/v1/namespaces/shop/pods?limit=500")
    assert code == 200
    assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) == sim_cluster.store.rv
    item = body["items"][0]
    assert "kind" not in item and "apiVersion" not in item  # as the real apiserver
    assert item["metadata"]["resourceVersion"]
    code, one = _raw(sim_cluster, f"/api/v1/namespaces/shop/pods/{TAG_POD}")
    assert (one["kind"], one["apiVersion"]) == ("Pod", "v1")
    code, deps = _raw(sim_cluster, "/apis/apps/v1/deployments")
    assert (deps["kind"], deps["apiVersion"]) == ("DeploymentList", "apps/v1")


@scenario("rate-limited")
def test_limit_and_continue_paginate(sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    first = v1.list_namespaced_pod("shop", limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    rest = v1.list_namespaced_pod("shop", limit=2, _continue=first.metadata._continue)
    assert len(rest.items) == 1 and not rest.metadata._continue


@scenario("tag-not-found")
def test_not_found_is_api_exception_with_status(sim_api: Any) -> None:
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(sim_api).read_namespaced_pod("nope", "shop")
    assert info.value.status == 404
    assert json.loads(info.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }
    with pytest.raises(ApiException) as info:
        client.AppsV1Api(sim_api).read_namespaced_deployment("nope", "shop")
    body = json.loads(info.value.body)
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


@scenario("missing-secret", forbidden=["secrets", "patch deployments"])
def test_forbidden_resources_are_403(sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    with pytest.raises(ApiException) as info:
        v1.read_namespaced_secret("regcred", "default")
    assert info.value.status == 403
    body = json.loads(info.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"].startswith('secrets "regcred" is forbidden: User "system:')
    assert 'cannot get resource "secrets" in API group "" in the namespace "default"' in (
        body["message"]
    )
    with pytest.raises(ApiException) as info:
        v1.list_secret_for_all_namespaces()
    assert info.value.status == 403 and "at the cluster scope" in json.loads(info.value.body)[
        "message"]
    apps = client.AppsV1Api(sim_api)
    assert apps.read_namespaced_deployment("orders", "shop")  # get allowed, patch denied
    with pytest.raises(ApiException) as info:
        apps.patch_namespaced_deployment("orders", "shop", {"metadata": {"labels": {"a": "b"}}})
    assert info.value.status == 403
    assert v1.list_namespaced_pod("shop").items  # everything else still allowed


@scenario("tag-not-found", token="let-me-in")
def test_scenario_token_is_enforced(sim_cluster: SimCluster, sim_api: Any) -> None:
    assert client.CoreV1Api(sim_api).list_namespaced_pod("shop").items  # kubeconfig has it
    code, body = _raw(sim_cluster, "/api/v1/pods")
    assert code == 401 and body["reason"] == "Unauthorized"


@scenario("ensure-secret-pulled-images")
def test_version_and_discovery(sim_cluster: SimCluster, sim_api: Any) -> None:
    info = client.VersionApi(sim_api).get_code()
    assert (info.git_version, info.major, info.minor) == ("v1.33.2", "1", "33")
    groups = client.ApisApi(sim_api).get_api_versions()
    assert {g.name for g in groups.groups} >= {"apps", "batch"}
    resources = client.CoreV1Api(sim_api).get_api_resources()
    assert {"pods", "events", "secrets", "nodes"} <= {r.name for r in resources.resources}
    assert _raw(sim_cluster, "/apis/batch/v1")[1]["groupVersion"] == "batch/v1"


def test_default_version_is_1_33_1() -> None:
    with SimCluster() as sim:
        assert _raw(sim, "/version")[1]["gitVersion"] == "v1.33.1"


# -- watch -----------------------------------------------------------------------------------------
@scenario("tag-not-found")
def test_watch_streams_modified_on_bump_event(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    backoff = _event(sim_cluster, TAG_POD, "BackOff")
    name = backoff["metadata"]["name"]

    def kubelet_repeats() -> None:
        sim_cluster.wait_for_watches(1)
        sim_cluster.bump_event("shop", name, last_timestamp="2030-01-01T00:00:00Z")

    seen: list[tuple[str, str, int | None]] = []
    w = watch.Watch()
    for _ in _in_background(kubelet_repeats):
        for ev in w.stream(v1.list_namespaced_event, "shop",
                           field_selector=f"involvedObject.name={TAG_POD}", timeout_seconds=5):
            seen.append((ev["type"], ev["object"].metadata.name, ev["object"].count))
            if ev["type"] == "MODIFIED":
                w.stop()
    added = [s for s in seen if s[0] == "ADDED"]
    assert len(added) == 6  # Scheduled, Pulling, Failed x2, BackOff, Failed (initial state)
    assert seen[-1] == ("MODIFIED", name, backoff["count"] + 1)
    assert sim_cluster.get("events", name, "shop")["lastTimestamp"] == "2030-01-01T00:00:00Z"
    watch_req = sim_cluster.requests_matching("GET", "/events$")[-1]
    assert watch_req.param("watch") == "True"  # what the Python client sends


@scenario("tag-not-found")
def test_watch_resumes_from_resource_version(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    listed = v1.list_namespaced_event("shop")
    rv = listed.metadata.resource_version
    backoff = _event(sim_cluster, TAG_POD, "BackOff")["metadata"]["name"]
    failed = _event(sim_cluster, TAG_POD, "Failed", "ImagePullBackOff")["metadata"]["name"]
    sim_cluster.bump_event("shop", backoff)  # happen while nobody watches
    sim_cluster.bump_event("shop", failed)
    sim_cluster.patch("pods", TAG_POD, {"metadata": {"labels": {"x": "y"}}}, "shop")  # other type
    w = watch.Watch()
    seen = [(e["type"], e["object"].metadata.name)
            for e in w.stream(v1.list_namespaced_event, "shop", resource_version=rv,
                              timeout_seconds=1)]
    assert seen == [("MODIFIED", backoff), ("MODIFIED", failed)]  # no replay of ADDED


@scenario("tag-not-found")
def test_watch_from_compacted_rv_raises_410(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    rv = v1.list_namespaced_event("shop").metadata.resource_version
    sim_cluster.bump_event("shop", _event(sim_cluster, TAG_POD, "BackOff")["metadata"]["name"])
    sim_cluster.compact()
    code, body = _raw(sim_cluster, f"/api/v1/namespaces/shop/events?watch=1&resourceVersion={rv}")
    assert code == 200  # the apiserver reports expiry inside the stream
    assert body["type"] == "ERROR"
    assert body["object"]["code"] == 410 and body["object"]["reason"] == "Expired"
    assert body["object"]["message"] == f"too old resource version: {rv} ({sim_cluster.store.rv})"
    sim_cluster.clear_requests()
    with pytest.raises(ApiException) as info:
        list(watch.Watch().stream(v1.list_namespaced_event, "shop", resource_version=rv))
    assert info.value.status == 410
    assert len(sim_cluster.requests_matching("GET", "/events$")) == 2  # the helper retried once


@scenario("tag-not-found", default_watch_timeout=10)
def test_dropped_watch_reconnects_without_duplicates(
    sim_cluster: SimCluster, sim_api: Any
) -> None:
    v1 = client.CoreV1Api(sim_api)
    backoff = _event(sim_cluster, TAG_POD, "BackOff")["metadata"]["name"]
    watch_paths = "/namespaces/shop/events$"

    def connections() -> int:
        return len(sim_cluster.requests_matching("GET", watch_paths))

    def driver() -> None:
        sim_cluster.wait_for_watches(1)
        sim_cluster.bump_event("shop", backoff, count=100)
        time.sleep(0.2)
        assert sim_cluster.drop_watches() == 1
        deadline = time.monotonic() + 5
        while connections() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        sim_cluster.wait_for_watches(1)
        sim_cluster.bump_event("shop", backoff, count=101)

    w = watch.Watch()
    seen: list[tuple[str, int]] = []
    for _ in _in_background(driver):
        for ev in w.stream(v1.list_namespaced_event, "shop"):
            seen.append((ev["type"], ev["object"].count))
            if ev["object"].count == 101:
                w.stop()
    assert connections() == 2
    assert [s for s in seen if s[0] != "ADDED"] == [("MODIFIED", 100), ("MODIFIED", 101)]
    assert len([s for s in seen if s[0] == "ADDED"]) == 6  # not re-listed after the reconnect


@scenario("tag-not-found")
def test_abruptly_dropped_watch_is_a_protocol_error(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)

    def driver() -> None:
        sim_cluster.wait_for_watches(1)
        sim_cluster.drop_watches(abrupt=True)

    with pytest.raises(urllib3.exceptions.ProtocolError):
        for _ in _in_background(driver):
            for _ev in watch.Watch().stream(v1.list_namespaced_pod, "shop", timeout_seconds=5):
                pass


@scenario("tag-not-found", bookmark_interval=0.2)
def test_watch_bookmarks_and_timeout(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    started = time.monotonic()
    events = list(watch.Watch().stream(v1.list_namespaced_pod, "shop", timeout_seconds=1,
                                       allow_watch_bookmarks=True))
    assert 0.9 < time.monotonic() - started < 3
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and types.count("BOOKMARK") >= 3
    bookmark = events[-1]["raw_object"]
    assert bookmark["kind"] == "Pod"
    assert bookmark["metadata"]["resourceVersion"] == str(sim_cluster.store.rv)


@scenario("tag-not-found")
def test_watch_single_object_sees_delete(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)

    def driver() -> None:
        sim_cluster.wait_for_watches(1)
        v1.delete_namespaced_pod(TAG_POD, "shop")

    seen = []
    for _ in _in_background(driver):
        for ev in watch.Watch().stream(v1.list_namespaced_pod, "shop",
                                       field_selector=f"metadata.name={TAG_POD}",
                                       timeout_seconds=2):
            seen.append(ev["type"])
            if ev["type"] == "DELETED":
                break
    assert seen == ["ADDED", "DELETED"]
    with pytest.raises(ApiException):
        v1.read_namespaced_pod(TAG_POD, "shop")


# -- writes ----------------------------------------------------------------------------------------
@scenario("tag-not-found")
def test_patch_deployment_via_client(sim_cluster: SimCluster, sim_api: Any) -> None:
    apps = client.AppsV1Api(sim_api)
    before = apps.read_namespaced_deployment("web", "shop")
    sim_cluster.apply(sim_cluster.get("deploy", "web", "shop"))  # no-op: nothing emitted
    assert sim_cluster.get("deploy", "web", "shop")["metadata"]["resourceVersion"] == (
        before.metadata.resource_version
    )
    sim_cluster.clear_requests()
    patched = apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {
        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2030-01-01T00:00:00Z"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:latest"}]},
    }}})
    patches = sim_cluster.requests_matching("PATCH")
    assert len(patches) == 1
    assert patches[0].content_type == "application/strategic-merge-patch+json"  # dict body
    container = patched.spec.template.spec.containers[0]
    assert (container.name, container.image) == ("web", "nginx:latest")
    assert container.image_pull_policy == "IfNotPresent"  # merged by name, not replaced
    assert patched.metadata.generation == before.metadata.generation + 1
    assert int(patched.metadata.resource_version) > int(before.metadata.resource_version)
    # A list body is sent as JSON patch (RFC 6902).
    apps.patch_namespaced_deployment("web", "shop", [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.27"}
    ])
    assert sim_cluster.requests_matching("PATCH")[-1].content_type == "application/json-patch+json"
    assert sim_cluster.get("deploy", "web", "shop")["spec"]["template"]["spec"]["containers"][0][
        "image"] == "nginx:1.27"


@scenario("secret-not-referenced")
def test_patch_service_account_and_watch_sees_it(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)

    def driver() -> None:
        sim_cluster.wait_for_watches(1)
        v1.patch_namespaced_service_account(
            "default", "shop", {"imagePullSecrets": [{"name": "regcred"}]}
        )

    seen = []
    for _ in _in_background(driver):
        for ev in watch.Watch().stream(v1.list_namespaced_service_account, "shop",
                                       timeout_seconds=3):
            seen.append(ev["type"])
            if ev["type"] == "MODIFIED":
                assert [s.name for s in ev["object"].image_pull_secrets] == ["regcred"]
                break
    assert seen == ["ADDED", "MODIFIED"]


def test_merge_patch_and_unsupported_apply_patch(tmp_path: Path) -> None:
    with SimCluster(["tag-not-found"]) as sim:
        url = f"{sim.url}/apis/apps/v1/namespaces/shop/deployments/web"

        def patch(ctype: str, body: Any) -> int:
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PATCH",
                                         headers={"Content-Type": ctype})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x:1"}]}}}}
        assert patch("application/merge-patch+json", body) == 200
        container = sim.get("deploy", "web", "shop")["spec"]["template"]["spec"]["containers"][0]
        assert container == {"name": "web", "image": "x:1"}  # merge-patch replaces lists
        assert patch("application/apply-patch+yaml", body) == 415


@scenario("tag-not-found")
def test_create_and_delete_via_client(sim_cluster: SimCluster, sim_api: Any) -> None:
    v1 = client.CoreV1Api(sim_api)
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="new", namespace="shop"),
                             type="Opaque", string_data={"a": "b"})
    created = v1.create_namespaced_secret("shop", secret)
    assert created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as info:
        v1.create_namespaced_secret("shop", secret)
    assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "AlreadyExists"
    v1.delete_namespaced_secret("new", "shop")
    with pytest.raises(ApiException):
        v1.read_namespaced_secret("new", "shop")


# -- test-side API and CLI -------------------------------------------------------------------------
@scenario("tag-not-found")
def test_artificial_latency(sim_cluster: SimCluster, sim_api: Any) -> None:
    sim_cluster.set_latency(r"/events$", 0.3)
    v1 = client.CoreV1Api(sim_api)
    started = time.monotonic()
    v1.list_namespaced_pod("shop")
    fast = time.monotonic() - started
    started = time.monotonic()
    v1.list_namespaced_event("shop")
    assert time.monotonic() - started >= 0.3 > fast


def test_kubeconfig_is_valid_and_loads_globally_too(tmp_path: Path) -> None:
    with SimCluster(["healthy"]) as sim:
        path = sim.write_kubeconfig(tmp_path / "kc", namespace="shop")
        doc = yaml.safe_load(path.read_text())
        assert doc["current-context"] == "sim"
        assert doc["contexts"][0]["context"]["namespace"] == "shop"
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(path), client_configuration=cfg)
        assert cfg.host == sim.url
        with client.ApiClient(cfg) as api:
            assert client.CoreV1Api(api).read_namespaced_pod_status(
                sim.list("pods", "shop")[0]["metadata"]["name"], "shop"
            ).status.phase == "Running"


def test_cli_serves_until_killed(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.sim", "--scenario", "tag-not-found", "--kubeconfig",
         str(kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert proc.stdout.readline().strip() == str(kubeconfig)
        api = config.new_client_from_config(str(kubeconfig))
        assert client.CoreV1Api(api).read_namespaced_pod(TAG_POD, "shop").spec.node_name
        api.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# -- outages ---------------------------------------------------------------------------------------
def _refused(sim: SimCluster) -> bool:
    import socket

    try:
        socket.create_connection((sim.host, sim.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@scenario("tag-not-found")
def test_stop_cuts_keep_alive_connections_and_watches(sim_api: Any, sim_cluster: SimCluster
                                                      ) -> None:
    """An outage test must cut what is already open: the client's pooled keep-alive
    connection and a watch stream (issue 8, defect 13)."""
    v1 = client.CoreV1Api(sim_api)
    v1.read_namespaced_pod(TAG_POD, "shop")  # one keep-alive connection now in the pool
    watch_ended = threading.Event()

    def watch_until_cut() -> None:
        try:
            for _ in watch.Watch().stream(v1.list_namespaced_pod, "shop", timeout_seconds=60):
                pass
        except Exception:  # noqa: S110 - a cut stream may end either way
            pass
        watch_ended.set()

    threading.Thread(target=watch_until_cut, daemon=True).start()
    sim_cluster.wait_for_watches(1)
    sim_cluster.stop()
    assert watch_ended.wait(3), "the watch stream outlived the server"
    with pytest.raises(urllib3.exceptions.HTTPError):  # refused, not served by a leftover
        v1.read_namespaced_pod(TAG_POD, "shop", _request_timeout=2)


@scenario("tag-not-found")
def test_refuse_then_up_serves_again_on_the_same_port(sim_api: Any,
                                                      sim_cluster: SimCluster) -> None:
    v1 = client.CoreV1Api(sim_api)
    v1.read_namespaced_pod(TAG_POD, "shop")
    port = sim_cluster.port
    sim_cluster.down(refuse=True)
    assert sim_cluster.refusing and sim_cluster.port == port and _refused(sim_cluster)
    with pytest.raises(urllib3.exceptions.HTTPError):  # the pooled connection was cut too
        v1.read_namespaced_pod(TAG_POD, "shop", _request_timeout=2)
    sim_cluster.up()
    assert sim_cluster.port == port
    assert v1.read_namespaced_pod(TAG_POD, "shop").metadata.name == TAG_POD

    sim_cluster.down(refuse=True, seconds=0.5)  # comes back by itself
    assert _refused(sim_cluster)
    deadline = time.monotonic() + 5
    while sim_cluster.refusing and time.monotonic() < deadline:
        time.sleep(0.05)
    assert v1.read_namespaced_pod(TAG_POD, "shop").metadata.name == TAG_POD


@scenario("tag-not-found")
def test_down_answers_503_and_records_the_requests(sim_api: Any,
                                                   sim_cluster: SimCluster) -> None:
    v1 = client.CoreV1Api(sim_api)
    sim_cluster.down()
    sim_cluster.clear_requests()
    with pytest.raises(ApiException) as info:
        v1.read_namespaced_pod(TAG_POD, "shop")
    assert info.value.status == 503
    assert len(sim_cluster.requests_matching("GET", "/pods/")) == 1
    sim_cluster.up()
    assert v1.read_namespaced_pod(TAG_POD, "shop").metadata.name == TAG_POD
