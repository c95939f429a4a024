"""`python -m bot audit` through the real kubernetes client against scenarios made for each check.

Each scenario under tests/data/audit states what the audit must find (`expected.audit`: check,
kind, name, container); the test runs kubeconfig → official client → bot.kube.inventory →
the rules → the CLI's JSON and exit code, and holds the bot to exactly that: every listed
problem found, nothing else, and nothing at all in the clean scenario.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, main
from bot.kube.client import KubeClient
from bot.kube.inventory import gather
from bot.sim import SimCluster, load_scenario
from tests.support.leaks import SECRETS, scenario_secrets

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "audit"
SCENARIOS = sorted(DATA.glob("*.yaml"))

# the audit reads these secrets' registry hosts only: their passwords must never show anywhere
for _value, _label in scenario_secrets(SCENARIOS):
    SECRETS.add(_value, _label)


def run(sim: SimCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    code = main(["audit", "--kubeconfig", str(kubeconfig), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return sorted((f["check"], f["kind"], f["name"], f["container"])
                  for ns in report["namespaces"] for f in ns["findings"])


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_each_scenario_finds_exactly_what_it_was_made_for(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = load_scenario(path)
    expected = sorted((e["check"], e["kind"], e["name"], e["container"])
                      for e in scenario.expected["audit"])
    with SimCluster([scenario]) as sim:
        code, out, err = run(sim, tmp_path, capsys, "-o", "json")
    report = json.loads(out)
    assert rows(report) == expected, json.dumps(report, indent=1)
    assert code == (EXIT_FINDINGS if expected else EXIT_OK), err
    assert report["clean"] is (not expected) and report["total"] == len(expected)
    assert sum(report["counts"].values()) == len(expected)
    for ns in report["namespaces"]:  # every finding carries the commands that fix it
        assert all(f["fixes"] and all(x["command"] for x in f["fixes"]) for f in ns["findings"])


def test_text_output_groups_by_namespace_with_counts_and_fix_commands(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([load_scenario(DATA / "credentials.yaml")]) as sim:
        sim.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "quiet"}})
        sim.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": "quiet"}})
        code, out, _ = run(sim, tmp_path, capsys)
    assert code == EXIT_FINDINGS
    assert out.startswith("Audit: 5 findings in 1 namespace (2 namespaces, 1 workloads "
                          "checked)\n"), out
    assert "\nquiet" not in out  # nothing to say about it: no heading
    assert "\nshop — 5 findings (cloud_registry_static_secret 1, ecr_token_expired 1, " \
           "pull_secret_missing 1, pull_secret_registry_unused 1, pull_secret_unused 1)\n" in out
    assert "$ kubectl create secret docker-registry ecr-pull --docker-server=" \
           "123456789012.dkr.ecr.us-east-1.amazonaws.com --docker-username=AWS " \
           "--docker-password=\"$(aws ecr get-login-password --region us-east-1)\"" in out
    assert "$ kubectl create secret docker-registry gone" in out
    assert "$ kubectl delete secret old-creds -n shop" in out


def test_clean_cluster_exits_0_in_text_too(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([load_scenario(DATA / "clean.yaml")]) as sim:
        code, out, _ = run(sim, tmp_path, capsys)
    assert code == EXIT_OK
    assert out.startswith("Audit: no findings (3 namespaces, 5 workloads checked)"), out


def test_one_namespace_is_read_not_listed(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([load_scenario(DATA / "ensure-secret-pulled.yaml")]) as sim:
        code, out, _ = run(sim, tmp_path, capsys, "-n", "billing", "-o", "json")
        read = sim.requests_matching("GET", r"/api/v1/namespaces/billing$")
        listed = sim.requests_matching("GET", r"/api/v1/namespaces$")
        everywhere = sim.requests_matching("GET", r"^/apis?/[^n]*/(deployments|pods)$")
    report = json.loads(out)
    assert code == EXIT_OK and report["clean"]  # shop's problem is not billing's
    assert report["checked"] == {"namespaces": 1, "workloads": 1}
    assert read and not listed and not everywhere


def test_unknown_namespace_and_unreachable_api_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([load_scenario(DATA / "clean.yaml")]) as sim:
        code, _, err = run(sim, tmp_path, capsys, "-n", "nope")
        assert code == EXIT_BAD_INPUT and 'namespace "nope" not found' in err, err
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    code = main(["audit", "--kubeconfig", str(kubeconfig)])  # the server is gone now
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "unreachable" in err and "Traceback" not in err


def test_hostile_names_are_never_live_arguments(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([load_scenario(DATA / "hostile.yaml")]) as sim:
        code, out, _ = run(sim, tmp_path, capsys, "-o", "json")
    assert code == EXIT_FINDINGS
    commands = [x["command"] for ns in json.loads(out)["namespaces"] for f in ns["findings"]
                for x in f["fixes"]]
    assert commands == [
        "kubectl set image 'deployment/<workload-name>' 'web=registry.internal/shop/web:<tag>' "
        "-n shop",
        "kubectl set image deployment/web 'web=<image>' -n shop"]
    titles = [x["title"] for ns in json.loads(out)["namespaces"] for f in ns["findings"]
              for x in f["fixes"]]
    assert "workload name '$(rm -rf /)' is not a valid Kubernetes name" in titles[0]


def test_lists_are_paginated(tmp_path: Path) -> None:
    """Every list goes page by page (limit + continue): a cluster of any size is read."""
    docs = [load_scenario(DATA / "latest-tag.yaml")]
    with SimCluster(docs) as sim:
        for i in range(7):
            sim.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": f"extra-{i}", "namespace": "shop"},
                       "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {
                           "metadata": {"labels": {"app": "x"}},
                           "spec": {"containers": [{"name": "c",
                                                    "image": "registry.internal/x:1.0.0"}]}}}})
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        kube.LIST_PAGE_SIZE = 3  # type: ignore[misc]  # smaller pages, same code path
        inventory = gather(kube)
        pages = [r for r in sim.requests_matching("GET", r"/deployments")
                 if r.param("continue")]
    assert len(inventory.workloads) == 8
    assert len(pages) == 2  # 3 + 3 + 2


def test_without_secrets_the_credential_checks_are_skipped_and_say_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster([load_scenario(DATA / "credentials.yaml")], forbidden=["secrets"]) as sim:
        code, out, _ = run(sim, tmp_path, capsys, "-o", "json")
    report = json.loads(out)
    assert code == EXIT_OK and report["clean"]
    assert report["skipped"] and "pull secrets" in report["skipped"][0]
    assert "not permitted" in report["skipped"][0]
