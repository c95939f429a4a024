"""`python -m bot bundle NS/POD [-o json]` through the real kubernetes client against the
scenario cluster (issue 12, Deliver 2 and Must show 2).

The image-rewritten scenario has a registry mirror's mutating webhook, a Kyverno validating
webhook, an Istio injector that does not select the namespace, and a pull secret whose
password the suite's leak scanner knows (tests/support/leaks.py `scenario_secrets`): the
bundle names the matching webhooks and shows that secret's username, never its password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_OK, main
from bot.sim import SimCluster, load_scenario
from tests.support.leaks import SECRETS, LeakScanner

pytestmark = pytest.mark.integration

POD = "shop/web-7d9f8b6c5d-x2x9q"
PASSWORD = "m1rror-pull-pass-do-not-print"
MIRROR = "image-mirror/rewrite.mirror.corp.example"
KYVERNO = "kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-fail"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PROBE", "false")


def run(sim: SimCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    code = main(["bundle", *args, "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr()
    return code, out.out, out.err


def no_secret_in(text: str) -> None:
    assert PASSWORD in SECRETS  # the scan below knows the scenario's password (and its forms)
    assert PASSWORD not in text
    assert LeakScanner(SECRETS).check(text) == []
    secret = next(o for o in load_scenario("image-rewritten").objects if o["kind"] == "Secret")
    assert secret["data"][".dockerconfigjson"] not in text  # nor the encoded secret


def test_text_names_the_webhooks_and_the_rewrite_and_no_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["image-rewritten"]) as sim:
        code, out, err = run(sim, tmp_path, capsys, POD)
    assert code == EXIT_OK, err
    assert f"{MIRROR}: mutating, failurePolicy Ignore" in out
    assert f"{KYVERNO}: validating, failurePolicy Fail" in out
    assert "istio" not in out  # its namespaceSelector does not select shop
    assert ("template (replicaset/web-7d9f8b6c5d): registry.internal/shop/web:2.1  ← REWRITTEN"
            in out)
    assert "image_rewritten" in out
    assert "registry.internal: username shop-puller" in out
    assert "kubelet v1.33.1 · runtime containerd://1.7.27" in out
    assert "Kubernetes (API server): v1.33.1" in out
    assert "$ sudo crictl pull mirror.corp.example/shop/web:2.1" in out
    assert "$ df -h /var/lib/containerd" in out
    assert "$ curl -v https://mirror.corp.example/v2/" in out
    no_secret_in(out + err)


def test_json_is_the_same_bundle_with_stable_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["image-rewritten"]) as sim:
        code, out, err = run(sim, tmp_path, capsys, POD, "-o", "json")
    assert code == EXIT_OK, err
    no_secret_in(out)
    bundle: dict[str, Any] = json.loads(out)
    assert list(bundle) == ["namespace", "pod", "phase", "node_name", "service_account",
                            "workload", "template_source", "containers", "events",
                            "events_omitted", "node", "disk_pressure", "server_version",
                            "pull_secrets", "webhooks", "diagnoses", "commands", "unavailable"]
    assert [f"{w['configuration']}/{w['name']}" for w in bundle["webhooks"]] == [MIRROR, KYVERNO]
    assert [w["mutating"] for w in bundle["webhooks"]] == [True, False]
    [web] = bundle["containers"]
    assert web["image_rewritten"] and web["template_image"] == "registry.internal/shop/web:2.1"
    assert web["workload_image"] == "registry.internal/shop/web:2.1"  # the Deployment's
    assert bundle["workload"] == {"kind": "Deployment", "name": "web"}
    assert bundle["node"]["container_runtime"] == "containerd://1.7.27"
    assert bundle["disk_pressure"] is False
    [secret] = bundle["pull_secrets"]
    assert secret["usernames"] == [{"registry": "registry.internal", "username": "shop-puller"}]
    [diagnosis] = bundle["diagnoses"]
    assert diagnosis["cause"] == "auth_required"
    assert diagnosis["findings"] == ["pull_secret_wrong_registry", "image_rewritten"]
    assert any(MIRROR in e for e in diagnosis["evidence"])
    assert bundle["unavailable"] == {}


def test_refused_parts_degrade_in_words(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """As a namespaced install sees it: nodes and webhook configurations refused (403)."""
    with SimCluster(["image-rewritten"]) as sim:
        sim.forbid("nodes")
        sim.forbid("mutatingwebhookconfigurations")
        sim.forbid("validatingwebhookconfigurations")
        code, out, err = run(sim, tmp_path, capsys, POD, "-o", "json")
    assert code == EXIT_OK, err
    bundle = json.loads(out)
    assert bundle["node"] is None and bundle["webhooks"] is None
    assert "Roles cannot grant cluster-scoped reads" in bundle["unavailable"]["node"]
    assert "kubectl get mutatingwebhookconfigurations" in bundle["unavailable"]["webhooks"]
    # the finding still stands on the template; the evidence says the webhooks were not read
    [diagnosis] = bundle["diagnoses"]
    assert "image_rewritten" in diagnosis["findings"]
    assert any("could not be read" in e for e in diagnosis["evidence"])


def test_an_install_that_reads_no_secret_shows_names_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READ_SECRETS", "false")
    with SimCluster(["image-rewritten"]) as sim:
        code, out, err = run(sim, tmp_path, capsys, POD, "-o", "json")
        secret_calls = [r for r in sim.requests if "/secrets" in r.path]
    assert code == EXIT_OK, err
    bundle = json.loads(out)
    assert bundle["pull_secrets"] == [{"name": "regcred", "source": "pod", "exists": None,
                                       "registries": [], "usernames": []}]
    assert "READ_SECRETS=false" in bundle["unavailable"]["pull_secrets"]
    assert secret_calls == []


def test_hostile_event_text_is_shown_not_obeyed(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["image-rewritten"]) as sim:
        [event] = [e for e in sim.list("Event", "shop") if e["reason"] == "Pulling"]
        sim.patch("Event", event["metadata"]["name"],
                  {"message": "Pulling \x1b]0;pwned\x07 \u202eevil\nEvents (0 shown)"}, "shop")
        code, out, _ = run(sim, tmp_path, capsys, POD)
    assert code == EXIT_OK
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    assert [line for line in out.splitlines() if line.startswith("Events (")] == [
        "Events (6 shown)"]


def test_an_unknown_pod_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["image-rewritten"]) as sim:
        code, _, err = run(sim, tmp_path, capsys, "shop/nope")
        bad, _, bad_err = run(sim, tmp_path, capsys, "Shop/x")
    assert code == EXIT_BAD_INPUT and "not found" in err
    assert bad == EXIT_BAD_INPUT and "DNS-1123" in bad_err


def _first_pod(scenario: str) -> dict[str, Any]:
    return next(o for o in load_scenario(scenario).objects if o["kind"] == "Pod")


def test_a_statefulset_pod_of_the_current_revision_is_compared_with_its_template(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = _first_pod("statefulset")
    ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    with SimCluster(["statefulset"]) as sim:
        sim.patch("Pod", pod["metadata"]["name"], {"spec": {"containers": [
            {"name": pod["spec"]["containers"][0]["name"], "image": "mirror.example/pg:16"}]}},
            pod["metadata"]["namespace"])
        code, out, err = run(sim, tmp_path, capsys, ref, "-o", "json")
    assert code == EXIT_OK, err
    bundle = json.loads(out)
    assert bundle["template_source"]["kind"] == "StatefulSet"
    assert bundle["containers"][0]["image_rewritten"] is True


def test_a_daemonset_template_is_shown_but_never_called_a_rewrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DaemonSet does not say which revision is current: an old pod mid-rollout runs the old
    image legitimately, so the bundle shows the template and claims nothing."""
    pod = _first_pod("daemonset")
    ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    with SimCluster(["daemonset"]) as sim:
        sim.patch("Pod", pod["metadata"]["name"], {"spec": {"containers": [
            {"name": pod["spec"]["containers"][0]["name"], "image": "fluent/fluent-bit:3.0"}]}},
            pod["metadata"]["namespace"])
        code, out, err = run(sim, tmp_path, capsys, ref, "-o", "json")
    assert code == EXIT_OK, err
    [container] = json.loads(out)["containers"][:1]
    assert container["image"] == "fluent/fluent-bit:3.0"
    assert container["workload_image"] and container["workload_image"] != container["image"]
    assert container["image_rewritten"] is False
