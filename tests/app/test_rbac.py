"""deploy/base/rbac.yaml grants exactly what the bot uses: no call is refused, no rule unused.

The scenario cluster enforces the ClusterRole's rules like the apiserver's RBAC authorizer;
then the bot does everything it does in production: diagnose every scenario (owner chains,
secrets, nodes), verify a pull secret, run the watcher, the pod view and the sweep, and run
every approved remediation on every workload (rollout restart, set image, and the refusals
that read a ReplicaSet's or Job's owner), and the prevention audit (cluster-wide and of one
namespace: the same inventory the weekly digest and the credentials watch gather).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli.main import EXIT_FINDINGS, EXIT_OK, main
from bot.kube.client import KubeClient
from bot.kube.fact_watch import WatchedFacts
from bot.kube.remediation import RemediationRefused, rollout_restart, set_image
from bot.kube.view import PodView
from bot.kube.watch import EventWatcher, PodSweeper
from bot.sim import SimCluster, bundled_scenarios, load_scenario
from bot.store import MemoryStore

pytestmark = pytest.mark.integration

RBAC = Path(__file__).parents[2] / "deploy" / "base" / "rbac.yaml"


def cluster_role_rules() -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc and doc.get("kind") == "ClusterRole":
            return list(doc["rules"])
    raise AssertionError("no ClusterRole in deploy/base/rbac.yaml")


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(verb, group, resource) for r in rules for group in r["apiGroups"]
            for resource in r["resources"] for verb in r["verbs"]}


def test_the_bot_needs_every_granted_permission_and_no_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PROBE", "false")
    rules = cluster_role_rules()
    used: set[tuple[str, str, str]] = set()
    denied: list[tuple[str, str, str]] = []
    remediated: list[str] = []
    for path in bundled_scenarios():
        scenario = load_scenario(path)
        with SimCluster([scenario]) as sim:
            sim.enforce_rbac(rules)
            kubeconfig = str(sim.write_kubeconfig(tmp_path / "kubeconfig"))
            for obj in scenario.objects:
                if obj["kind"] == "Pod":
                    ref = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                    assert main(["diagnose", ref, "--kubeconfig", kubeconfig]) == 0
                if obj["kind"] == "Secret" and obj["metadata"]["namespace"] == "shop":
                    main(["verify-secret", f"shop/{obj['metadata']['name']}", "--image",
                          "127.0.0.1:1/team/app:1", "--kubeconfig", kubeconfig])
            # the prevention audit, cluster-wide (lists) and of one namespace (a read)
            assert main(["audit", "--kubeconfig", kubeconfig]) in (EXIT_OK, EXIT_FINDINGS)
            for ns in [o["metadata"]["name"] for o in scenario.objects
                       if o["kind"] == "Namespace"][:1]:
                assert main(["audit", "-n", ns, "--kubeconfig", kubeconfig]) in (
                    EXIT_OK, EXIT_FINDINGS)
            kube = KubeClient.from_environment(kubeconfig)
            watcher = EventWatcher(kube, MemoryStore(), lambda s: None, idle_timeout=0.3)
            view = PodView(kube, idle_timeout=0.3)
            facts = WatchedFacts(kube, idle_timeout=0.3)
            watcher.start()
            view.start()
            facts.start()
            PodSweeper(kube, lambda s: None).sweep()
            assert view.wait_synced(5)
            assert facts.wait_synced(5)
            for pod in view.failing()[:1]:
                view.refresh(pod.namespace, pod.name)
            time.sleep(0.4)
            watcher.stop()
            view.stop()
            facts.stop()
            assert not [w.what for w in facts.secrets + facts.accounts if w.refused]
            remediated += remediate_everything(kube, scenario.objects)
            used |= set(sim.access_log)
            denied += sim.denied
    capsys.readouterr()
    assert {"Deployment", "StatefulSet", "DaemonSet", "CronJob", "ReplicaSet", "Job"} <= {
        line.split()[0] for line in remediated}, remediated
    assert denied == [], f"the code needs more than deploy/base/rbac.yaml grants: {denied}"
    unused = granted(rules) - used
    assert unused == set(), f"deploy/base/rbac.yaml grants what the code never uses: {unused}"


def remediate_everything(kube: KubeClient, objects: list[dict[str, Any]]) -> list[str]:
    """Every remediation call on every workload of a scenario; what was done, for the test."""
    done: list[str] = []
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob"):
            template = obj["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else obj["spec"]
            container = template["template"]["spec"]["containers"][0]["name"]
            if kind != "CronJob":
                rollout_restart(kube, namespace, kind, name)
            set_image(kube, namespace, kind, name, container, "registry.internal/fixed/app:1")
            done.append(f"{kind} {namespace}/{name}")
        elif kind in ("ReplicaSet", "Job"):  # refused, after reading the owner to name it
            with pytest.raises(RemediationRefused, match=r"(deployment|cronjob)/"):
                set_image(kube, namespace, kind, name, "app", "registry.internal/fixed/app:1")
            done.append(f"{kind} {namespace}/{name}")
    return done
