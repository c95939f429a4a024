"""bot/kube/remediation.py through the real kubernetes client against the scenario cluster: the
exact PATCH on the wire (one request, its content type, its body), the object afterwards, and the
refusals that send nothing that changes anything."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.kube.client import KubeClient, KubeError, KubeForbidden, KubeNotFound
from bot.kube.remediation import (
    RemediationRefused,
    RemediationResult,
    check_target,
    read_only_refusal,
    retry_now,
    rollout_restart,
    set_image,
)
from bot.sim import SimCluster, factory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

SMP = "application/strategic-merge-patch+json"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
NOW = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)
WEB_PATH = "/apis/apps/v1/namespaces/shop/deployments/web"


def web_objects(*, sidecar: bool = False, paused: bool = False) -> list[dict[str, Any]]:
    """A Deployment web (container web: nginx:lates), its ReplicaSet, pod and events;
    optionally with a sidecar and an init container in its template."""
    objs = factory.failing_deployment(
        "shop", "web", "nginx:lates", factory.containerd_error("not_found", "nginx:lates"),
        now=NOW)
    deployment = objs[0]
    assert deployment["kind"] == "Deployment"
    spec = deployment["spec"]["template"]["spec"]
    if sidecar:
        spec["containers"].append(factory.container_spec("proxy", "envoyproxy/envoy:v1.31.0"))
        spec["initContainers"] = [factory.container_spec("migrate", "shop/migrate:1.0")]
    if paused:
        deployment["spec"]["paused"] = True
    return objs


def client_for(sim: SimCluster, tmp_path: Path) -> KubeClient:
    return KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[SimCluster, KubeClient]]:
    with SimCluster(objects=web_objects(sidecar=True)) as sim:
        yield sim, client_for(sim, tmp_path)


@pytest.fixture
def scenarios(tmp_path: Path) -> Iterator[tuple[SimCluster, KubeClient]]:
    with SimCluster(["statefulset", "daemonset", "cronjob"]) as sim:
        yield sim, client_for(sim, tmp_path)


def only_patch(sim: SimCluster) -> Any:
    """The one PATCH the action sent: its path, content type and body."""
    patches = sim.requests_matching("PATCH")
    assert len(patches) == 1, [(p.path, p.body) for p in patches]
    return patches[0]


def template_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"])


# -- rollout restart ----------------------------------------------------------------------------
def test_rollout_restart_sends_kubectls_patch_and_bumps_the_generation(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    before = sim.get("Deployment", "web", "shop")

    result = rollout_restart(kube, "shop", "deployment", "web", now=NOW)

    patch = only_patch(sim)
    assert patch.path == WEB_PATH
    assert patch.content_type == SMP
    assert patch.body == {"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: "2026-11-28T15:00:00Z"}}}}}
    after = sim.get("Deployment", "web", "shop")
    assert after["spec"]["template"]["metadata"]["annotations"] == {
        RESTARTED_AT: "2026-11-28T15:00:00Z"}
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1 == 2
    # nothing else in the template changed: labels, containers
    assert after["spec"]["template"]["metadata"]["labels"] == \
        before["spec"]["template"]["metadata"]["labels"]
    assert after["spec"]["template"]["spec"] == before["spec"]["template"]["spec"]
    assert result == RemediationResult(
        action="rollout_restart", namespace="shop", kind="Deployment", name="web",
        summary="deployment/web restarted (generation 1 → 2, restartedAt 2026-11-28T15:00:00Z)",
        generation=2, previous_image=None, new_image=None, note=None)


def test_rollout_restart_stamps_the_current_time_in_rfc3339_utc(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    start = datetime.now(UTC).replace(microsecond=0)
    rollout_restart(kube, "shop", "Deployment", "web")
    stamp = only_patch(sim).body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert start <= when <= datetime.now(UTC)


def test_rollout_restart_converts_an_aware_time_to_utc(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    berlin = NOW.astimezone(timezone(timedelta(hours=1)))
    rollout_restart(kube, "shop", "deploy", "web", now=berlin)
    annotations = only_patch(sim).body["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {RESTARTED_AT: "2026-11-28T15:00:00Z"}


@pytest.mark.parametrize(("kind", "name", "plural"), [
    ("sts", "db", "statefulsets"),
    ("StatefulSet", "db", "statefulsets"),
    ("DS", "log-agent", "daemonsets"),
    ("daemonsets", "log-agent", "daemonsets"),
])
def test_rollout_restart_statefulsets_and_daemonsets(
        scenarios: tuple[SimCluster, KubeClient], kind: str, name: str, plural: str) -> None:
    sim, kube = scenarios
    before = sim.get(plural, name, "shop")
    result = rollout_restart(kube, "shop", kind, name, now=NOW)
    patch = only_patch(sim)
    assert patch.path == f"/apis/apps/v1/namespaces/shop/{plural}/{name}"
    assert patch.content_type == SMP
    assert patch.body == {"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: "2026-11-28T15:00:00Z"}}}}}
    after = sim.get(plural, name, "shop")
    assert after["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == \
        "2026-11-28T15:00:00Z"
    assert after["spec"]["template"]["spec"] == before["spec"]["template"]["spec"]
    assert result.generation == after["metadata"]["generation"]
    assert result.summary.startswith(f"{result.kind.lower()}/{name} restarted (generation ")
    if result.kind == "StatefulSet":
        assert result.note is not None and "delete" in result.note


def test_rollout_restart_refuses_a_paused_deployment(tmp_path: Path) -> None:
    with SimCluster(objects=web_objects(paused=True)) as sim:
        kube = client_for(sim, tmp_path)
        with pytest.raises(RemediationRefused, match=r"paused.*rollout resume deployment/web"):
            rollout_restart(kube, "shop", "deployment", "web", now=NOW)
        assert sim.requests_matching("PATCH") == []


def test_rollout_restart_refuses_a_cronjob(scenarios: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = scenarios
    with pytest.raises(RemediationRefused, match="cronjob/nightly-report cannot be restarted"):
        rollout_restart(kube, "shop", "cj", "nightly-report", now=NOW)
    assert sim.requests == []


# -- set image ----------------------------------------------------------------------------------
def test_set_image_patches_only_that_containers_image(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    before = sim.get("Deployment", "web", "shop")

    result = set_image(kube, "shop", "deployment", "web", "web", "nginx:latest")

    patch = only_patch(sim)
    assert patch.path == WEB_PATH
    assert patch.content_type == SMP
    assert patch.body == {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:latest"}]}}}}
    after = sim.get("Deployment", "web", "shop")
    containers = after["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "proxy"]  # order kept
    expected_web = dict(before["spec"]["template"]["spec"]["containers"][0], image="nginx:latest")
    assert containers[0] == expected_web  # only the image changed
    assert containers[1] == before["spec"]["template"]["spec"]["containers"][1]
    assert after["spec"]["template"]["spec"]["initContainers"] == \
        before["spec"]["template"]["spec"]["initContainers"]
    assert after["metadata"]["generation"] == 2
    assert result == RemediationResult(
        action="set_image", namespace="shop", kind="Deployment", name="web",
        summary="deployment/web container web: nginx:lates → nginx:latest (generation 1 → 2)",
        generation=2, previous_image="nginx:lates", new_image="nginx:latest", note=None)


def test_set_image_of_an_init_container(web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    before = sim.get("Deployment", "web", "shop")
    result = set_image(kube, "shop", "deploy", "web", "migrate", "shop/migrate:1.1")
    assert only_patch(sim).body == {"spec": {"template": {"spec": {"initContainers": [
        {"name": "migrate", "image": "shop/migrate:1.1"}]}}}}
    after = sim.get("Deployment", "web", "shop")
    assert after["spec"]["template"]["spec"]["initContainers"][0]["image"] == "shop/migrate:1.1"
    assert after["spec"]["template"]["spec"]["containers"] == \
        before["spec"]["template"]["spec"]["containers"]
    assert result.previous_image == "shop/migrate:1.0"
    assert result.summary.startswith("deployment/web init container migrate: shop/migrate:1.0 → ")


def test_set_image_of_a_cronjob_patches_the_job_template(
        scenarios: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = scenarios
    before = sim.get("CronJob", "nightly-report", "shop")
    result = set_image(kube, "shop", "CJ", "nightly-report", "report", "python:3.12-slim-bookworm")
    patch = only_patch(sim)
    assert patch.path == "/apis/batch/v1/namespaces/shop/cronjobs/nightly-report"
    assert patch.content_type == SMP
    assert patch.body == {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "report", "image": "python:3.12-slim-bookworm"}]}}}}}}
    after = sim.get("CronJob", "nightly-report", "shop")
    (container,) = template_of(after)["spec"]["containers"]
    assert container == dict(template_of(before)["spec"]["containers"][0],
                             image="python:3.12-slim-bookworm")
    assert after["spec"]["schedule"] == before["spec"]["schedule"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert result.previous_image == "python:3.12-slim-bookwrom"
    assert result.kind == "CronJob"


@pytest.mark.parametrize(("kind", "name", "container", "plural"), [
    ("statefulset", "db", "postgres", "statefulsets"),
    ("ds", "log-agent", "fluent-bit", "daemonsets"),
])
def test_set_image_statefulset_and_daemonset(
        scenarios: tuple[SimCluster, KubeClient], kind: str, name: str, container: str,
        plural: str) -> None:
    sim, kube = scenarios
    result = set_image(kube, "shop", kind, name, container, "registry.internal/x/y:1")
    patch = only_patch(sim)
    assert patch.path == f"/apis/apps/v1/namespaces/shop/{plural}/{name}"
    assert patch.body == {"spec": {"template": {"spec": {"containers": [
        {"name": container, "image": "registry.internal/x/y:1"}]}}}}
    after = sim.get(plural, name, "shop")
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.internal/x/y:1"
    assert result.new_image == "registry.internal/x/y:1"


def test_set_image_refuses_an_unknown_container_and_names_the_real_ones(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    with pytest.raises(RemediationRefused) as info:
        set_image(kube, "shop", "deployment", "web", "nginx", "nginx:latest")
    message = str(info.value)
    assert "no container 'nginx'" in message
    assert "its containers are web, proxy" in message
    assert "init containers are migrate" in message
    assert sim.requests_matching("PATCH") == []


def test_set_image_refuses_the_image_it_already_has(web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    with pytest.raises(RemediationRefused, match="already uses nginx:lates"):
        set_image(kube, "shop", "deployment", "web", "web", "nginx:lates")
    assert sim.requests_matching("PATCH") == []


@pytest.mark.parametrize(
    "image", ["nginx:LATEST!", "Nginx:1", "shop/Web:1", "nginx@sha256:abc", "", " "])
def test_set_image_validates_the_image_before_any_call(
        web: tuple[SimCluster, KubeClient], image: str) -> None:
    sim, kube = web
    with pytest.raises(RemediationRefused, match="image"):
        set_image(kube, "shop", "deployment", "web", "web", image)
    assert sim.requests == []


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("namespace", "kind", "name", "allowed", "reason"), [
    ("shop", "pod", "web-x", None,
     "a bare pod is not managed by a controller: fix its manifest and re-create it"),
    ("shop", "Po", "web-x", None, "bare pod"),
    ("shop", "service", "web", None, "unknown kind 'service'"),
    ("shop", "deployment.batch", "web", None, "unknown kind"),
    ("Shop", "deployment", "web", None, "not a valid DNS-1123 label"),
    ("shop", "deployment", "web_1", None, "not a valid DNS-1123 subdomain"),
    ("shop", "deployment", "-web", None, "not a valid DNS-1123 subdomain"),
    ("shop", "deployment", "web", ["prod", "staging"],
     "namespace 'shop' is outside WATCH_NAMESPACES (prod, staging)"),
])
def test_refusals_make_no_call_at_all(
        web: tuple[SimCluster, KubeClient], namespace: str, kind: str, name: str,
        allowed: list[str] | None, reason: str) -> None:
    sim, kube = web
    with pytest.raises(RemediationRefused, match=re.escape(reason)):
        rollout_restart(kube, namespace, kind, name, allowed_namespaces=allowed, now=NOW)
    with pytest.raises(RemediationRefused, match=re.escape(reason)):
        set_image(kube, namespace, kind, name, "web", "nginx:latest",
                  allowed_namespaces=allowed)
    with pytest.raises(RemediationRefused, match=re.escape(reason)):
        check_target("set_image", namespace, kind, name, allowed_namespaces=allowed)
    assert sim.requests == []


def test_an_allowed_namespace_is_acted_on(web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    rollout_restart(kube, "shop", "deployment", "web", allowed_namespaces=["prod", "shop"],
                    now=NOW)
    assert only_patch(sim).path == WEB_PATH


def test_a_replicaset_of_a_deployment_is_refused_naming_the_deployment(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    rs = next(o for o in sim.list("ReplicaSet", "shop"))["metadata"]["name"]
    with pytest.raises(RemediationRefused,
                       match=rf"replicaset/{rs} is managed by deployment/web.*"
                             r"restart deployment/web instead"):
        rollout_restart(kube, "shop", "rs", rs, now=NOW)
    with pytest.raises(RemediationRefused, match="set image on deployment/web instead"):
        set_image(kube, "shop", "replicaset", rs, "web", "nginx:latest")
    assert sim.requests_matching("PATCH") == []
    assert {r.method for r in sim.requests} == {"GET"}


def test_a_job_is_refused_naming_its_cronjob(scenarios: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = scenarios
    job = "nightly-report-29383920"
    with pytest.raises(RemediationRefused) as info:
        set_image(kube, "shop", "job", job, "report", "python:3.12-slim-bookworm")
    assert "pod template is immutable" in str(info.value)
    assert "cronjob/nightly-report" in str(info.value)
    assert f"kubectl delete job {job} -n shop" in str(info.value)
    with pytest.raises(RemediationRefused, match="immutable"):
        rollout_restart(kube, "shop", "jobs", job, now=NOW)
    assert sim.requests_matching("PATCH") == []


def test_check_target_is_pure() -> None:
    assert check_target("rollout_restart", "shop", "sts", "db") == "StatefulSet"
    assert check_target("set_image", "shop", "CJ", "nightly-report") == "CronJob"
    assert check_target("set_image", "shop", "deployments.apps", "web",
                        allowed_namespaces=[]) == "Deployment"  # empty: the whole cluster
    with pytest.raises(RemediationRefused, match="cannot be restarted"):
        check_target("rollout_restart", "shop", "cronjob", "nightly-report")
    with pytest.raises(RemediationRefused, match="Job's pod template is immutable"):
        check_target("set_image", "shop", "job", "x")
    with pytest.raises(RemediationRefused, match="Deployment that owns it"):
        check_target("rollout_restart", "shop", "replicaset", "web-abc")
    with pytest.raises(RemediationRefused, match="unknown remediation"):
        check_target("scale", "shop", "deployment", "web")


# -- retry now (issue 12) -----------------------------------------------------------------------
def test_retry_now_restarts_a_workload_with_kubectls_patch(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    result = retry_now(kube, "shop", "Deployment", "web", now=NOW)
    patch = only_patch(sim)
    assert patch.path == WEB_PATH and patch.content_type == SMP
    assert patch.body == {"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: "2026-11-28T15:00:00Z"}}}}}
    assert result.action == "retry" and result.summary.startswith("deployment/web restarted")
    assert sim.requests_matching("DELETE") == []


def test_retry_now_deletes_a_bare_pod_and_nothing_else(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    [pod] = [p["metadata"]["name"] for p in sim.list("Pod", "shop")]
    result = retry_now(kube, "shop", "Pod", pod)
    [delete] = sim.requests_matching("DELETE")
    assert delete.path == f"/api/v1/namespaces/shop/pods/{pod}"
    assert sim.list("Pod", "shop") == [] and sim.requests_matching("PATCH") == []
    assert result.action == "retry" and "re-create it" in result.summary
    with pytest.raises(KubeNotFound):
        retry_now(kube, "shop", "Pod", pod)


def test_retry_now_is_refused_where_it_cannot_help() -> None:
    assert check_target("retry", "shop", "pod", "web-1") == "Pod"
    assert check_target("retry", "shop", "ds", "agent") == "DaemonSet"
    with pytest.raises(RemediationRefused, match="CronJob's next run"):
        check_target("retry", "shop", "cronjob", "nightly-report")
    with pytest.raises(RemediationRefused, match="a bare pod is not managed"):
        check_target("rollout_restart", "shop", "pod", "web-1")  # only retry deletes pods
    refusal = str(read_only_refusal("retry", "shop", "Pod", "web-1"))
    assert refusal.endswith("run the command yourself: kubectl delete pod web-1 -n shop")
    refusal = str(read_only_refusal("retry", "shop", "deployment", "web"))
    assert refusal.endswith("kubectl rollout restart deployment/web -n shop")


# -- API errors ---------------------------------------------------------------------------------
def test_a_forbidden_patch_raises_kube_forbidden_with_a_readable_message(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    sim.forbid("deployments", ["patch"])
    before = sim.get("Deployment", "web", "shop")
    with pytest.raises(KubeForbidden) as info:
        rollout_restart(kube, "shop", "deployment", "web", now=NOW)
    message = str(info.value)
    assert 'refused to let this identity patch deployment "shop/web" (403 Forbidden' in message
    assert 'cannot patch resource "deployments" in API group "apps"' in message
    assert "deploy/rbac/" in message
    assert len(sim.requests_matching("PATCH")) == 1  # tried once, refused
    assert sim.get("Deployment", "web", "shop") == before
    with pytest.raises(KubeForbidden):
        set_image(kube, "shop", "deployment", "web", "web", "nginx:latest")


def test_a_missing_workload_is_kube_not_found(web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    with pytest.raises(KubeNotFound, match='deployment "shop/nope" not found'):
        rollout_restart(kube, "shop", "deployment", "nope", now=NOW)
    with pytest.raises(KubeNotFound):
        set_image(kube, "shop", "statefulset", "nope", "web", "nginx:latest")
    assert sim.requests_matching("PATCH") == []


def test_patch_workload_maps_a_conflict_to_a_kube_error_with_the_apis_message(
        web: tuple[SimCluster, KubeClient]) -> None:
    sim, kube = web
    rv = sim.get("Deployment", "web", "shop")["metadata"]["resourceVersion"]
    sim.patch("Deployment", "web", {"spec": {"replicas": 2}}, "shop")  # someone else wrote
    sim.clear_requests()
    stale = {"metadata": {"resourceVersion": rv},
             "spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}}
    with pytest.raises(KubeError, match=r"changed in the meantime \(409 Conflict: "):
        kube.patch_workload("shop", "Deployment", "web", copy.deepcopy(stale))
    assert only_patch(sim).content_type == SMP
