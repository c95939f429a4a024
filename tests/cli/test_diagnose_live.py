"""`python -m bot diagnose NS/POD` through the real kubernetes client, against every scenario.

Each scenario file states the author's intent (`expected: {cause, findings}`); this runs the
live path — kubeconfig → official client → bot.kube.client → diagnosis — and holds the bot to it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_KUBE, EXIT_OK, main
from bot.sim import SimCluster, bundled_scenarios, load_scenario
from bot.sim.registry import scenario_registries
from bot.sim.scenario import Scenario

pytestmark = pytest.mark.integration

SCENARIOS = {p.stem: load_scenario(p) for p in bundled_scenarios()}


@pytest.fixture(autouse=True)
def _no_internet_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never ask real registries; a test that serves some turns probing back on."""
    monkeypatch.setenv("REGISTRY_PROBE", "false")


def _serve_to_bot(endpoints: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the bot's registry settings at the scenario's registries (as an operator would)."""
    if endpoints:
        monkeypatch.setenv("REGISTRY_PROBE", "true")
        monkeypatch.setenv("REGISTRY_ENDPOINTS", ",".join(f"{h}={u}" for h, u in endpoints.items()))
        monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", ",".join(endpoints))


def _pods(s: Scenario) -> list[tuple[str, str, bool]]:
    """(namespace, name, failing) for each pod: a pod whose containers all run is healthy."""
    pods = []
    for obj in s.objects:
        if obj.get("kind") != "Pod":
            continue
        statuses = [*(obj["status"].get("initContainerStatuses") or []),
                    *(obj["status"].get("containerStatuses") or [])]
        healthy = obj["status"].get("phase") == "Running" and all(
            "running" in st.get("state", {}) or "terminated" in st.get("state", {})
            for st in statuses)
        pods.append((obj["metadata"]["namespace"], obj["metadata"]["name"], not healthy))
    return pods


def _diagnose(sim: SimCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
              ref: str) -> dict[str, Any]:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    code = main(["diagnose", ref, "--kubeconfig", str(kubeconfig), "-o", "json"])
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    result: dict[str, Any] = json.loads(out.out)
    return result


def test_every_cause_has_a_scenario() -> None:
    from bot.diagnosis.causes import Cause

    covered = {s.expected.get("cause") for s in SCENARIOS.values()}
    # repository_not_found needs the registry probe: containerd words it like a missing tag
    assert set(Cause) - {Cause.REPOSITORY_NOT_FOUND} <= covered


@pytest.mark.parametrize("scenario_id", sorted(SCENARIOS))
def test_scenario_diagnosis_matches_its_stated_intent(
        scenario_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = SCENARIOS[scenario_id]
    expected = scenario.expected
    with SimCluster([scenario]) as sim, scenario_registries(scenario.registries) as endpoints:
        _serve_to_bot(endpoints, monkeypatch)
        for namespace, pod, failing in _pods(scenario):
            result = _diagnose(sim, tmp_path, capsys, f"{namespace}/{pod}")
            assert (result["namespace"], result["pod"]) == (namespace, pod)
            if not failing or expected.get("cause") is None:
                assert result["diagnoses"] == [], pod
                continue
            assert result["diagnoses"], pod
            for entry in result["diagnoses"]:
                assert entry["cause"] == expected["cause"], (pod, entry["evidence"])
                assert entry["findings"] == expected.get("findings", []), pod
                assert entry["workload"]["kind"] != "ReplicaSet"
                for fix in entry["fixes"]:
                    shlex.split(fix["command"].split("<<")[0])  # every command is well quoted


def test_tag_not_found_names_the_deployment_and_the_exact_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["tag-not-found"]) as sim:
        result = _diagnose(sim, tmp_path, capsys, "shop/web-7d9f8b6c5d-x2x9q")
    [entry] = result["diagnoses"]
    assert entry["workload"] == {"kind": "Deployment", "name": "web"}
    assert entry["image"] == "nginx:lates"
    assert entry["suggested_image"] is None  # no registry asked: nothing confirmed
    commands = [f["command"] for f in entry["fixes"]]
    assert "kubectl set image deployment/web 'web=nginx:<tag>' -n shop" in commands
    assert entry["backoff"]["attempts"] >= 1


def test_lates_suggests_latest_from_the_scenarios_registry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = SCENARIOS["tag-not-found"]
    with SimCluster([scenario]) as sim, scenario_registries(scenario.registries) as endpoints:
        _serve_to_bot(endpoints, monkeypatch)
        result = _diagnose(sim, tmp_path, capsys, "shop/web-7d9f8b6c5d-x2x9q")
    [entry] = result["diagnoses"]
    assert entry["findings"] == ["tag_suggestion"]
    assert entry["suggested_image"] == "nginx:latest"  # as data, not only inside a command
    assert entry["fixes"][0]["command"] == (
        "kubectl set image deployment/web web=nginx:latest -n shop")
    pin = [f["command"] for f in entry["fixes"] if "@sha256:" in f["command"]]
    assert len(pin) == 1 and pin[0].startswith("kubectl set image deployment/web web=nginx@sha256:")
    assert entry["evidence"][-1].startswith("registry: asked docker.io for library/nginx:lates")


@pytest.mark.parametrize(("scenario_id", "pod", "workload", "restart"), [
    ("statefulset", "shop/db-0", {"kind": "StatefulSet", "name": "db"}, None),
    ("daemonset", "shop/log-agent-wzf4p", {"kind": "DaemonSet", "name": "log-agent"}, None),
    ("cronjob", "shop/nightly-report-29383920-nvhmn",
     {"kind": "CronJob", "name": "nightly-report"}, None),
    ("auth-required", "shop/billing-pvjdct9wbn-tmp5p", {"kind": "Deployment", "name": "billing"},
     "kubectl rollout restart deployment/billing -n shop"),
])
def test_owner_chain_is_walked_through_the_api(
        scenario_id: str, pod: str, workload: dict[str, str], restart: str | None,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([scenario_id]) as sim:
        result = _diagnose(sim, tmp_path, capsys, pod)
        reads = {r.path for r in sim.requests if r.method == "GET"}
    entry = result["diagnoses"][0]
    assert entry["workload"] == workload
    if restart:
        assert restart in [f["command"] for f in entry["fixes"]]
    if workload["kind"] == "CronJob":  # found by reading the Job, not by guessing from names
        assert any(p.endswith("/jobs/nightly-report-29383920") for p in reads)


def test_missing_secret_is_read_from_the_namespace_not_guessed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["missing-secret"]) as sim:
        sim.delete("Event", _event_named(sim, "FailedToRetrieveImagePullSecret"), "shop")
        result = _diagnose(sim, tmp_path, capsys, "shop/orders-cp2xb6twwj-9zt8l")
    entry = result["diagnoses"][0]
    assert "pull_secret_missing" in entry["findings"]
    assert entry["fixes"][0]["command"].startswith(
        "kubectl create secret docker-registry regcred --docker-server=registry.internal ")
    assert entry["fixes"][0]["command"].endswith("-n shop")


def _event_named(sim: SimCluster, reason: str) -> str:
    for ev in sim.list("Event", "shop"):
        if ev.get("reason") == reason:
            return str(ev["metadata"]["name"])
    raise AssertionError(f"scenario has no {reason} event")


def test_secret_passwords_never_reach_the_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for scenario_id in ("wrong-registry-secret", "secret-not-referenced", "ecr-expired",
                        "missing-secret"):
        with SimCluster([scenario_id]) as sim:
            passwords = _secret_values(sim)
            assert passwords, scenario_id
            for namespace, pod, _ in _pods(SCENARIOS[scenario_id]):
                for output in ("json", "text"):
                    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
                    main(["diagnose", f"{namespace}/{pod}", "--kubeconfig", str(kubeconfig),
                          "-o", output])
                    out = capsys.readouterr()
                    for secret in passwords:
                        assert secret not in out.out and secret not in out.err


def _secret_values(sim: SimCluster) -> set[str]:
    import base64

    values: set[str] = set()
    for namespace in ("shop", "default"):
        for secret in sim.list("Secret", namespace):
            for encoded in (secret.get("data") or {}).values():
                config = json.loads(base64.b64decode(encoded))
                for entry in (config.get("auths") or config).values():
                    values.update(str(v) for k, v in entry.items() if k in ("password", "auth"))
    return values


def test_forbidden_secrets_skip_the_secret_findings_but_still_diagnose(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["wrong-registry-secret"], forbidden=["secrets"]) as sim:
        result = _diagnose(sim, tmp_path, capsys, "shop/catalog-xlrwkfkkl4-v7j67")
    entry = result["diagnoses"][0]
    assert entry["cause"] == "auth_required"
    assert "pull_secret_wrong_registry" not in entry["findings"]


def test_forbidden_pod_read_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["tag-not-found"], forbidden=["pods"]) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        code = main(["diagnose", "shop/web-7d9f8b6c5d-x2x9q", "--kubeconfig", str(kubeconfig)])
    assert code == EXIT_KUBE
    assert "403" in capsys.readouterr().err


def test_unknown_pod_exits_2_with_a_hint(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["tag-not-found"]) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        code = main(["diagnose", "shop/nope", "--kubeconfig", str(kubeconfig)])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert 'pod "shop/nope" not found' in err and "kubectl get pods -n shop" in err


def test_scenarios_command_runs_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == EXIT_OK
    out = capsys.readouterr().out
    for scenario_id in SCENARIOS:
        assert f"scenario {scenario_id}:" in out
    assert "cause     tag_not_found" in out and "Deployment/web" in out
