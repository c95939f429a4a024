"""`make demo`: the real diagnosis path against the built-in scenario cluster.

The scenario cluster (bot/sim) speaks the Kubernetes API wire format, so this runs exactly the
code a real cluster would: kubeconfig → official client → bot.kube.client → diagnosis → rendering.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot.alerts.investigate import diagnose_pod
from bot.diagnosis.render import render_text
from bot.diagnosis.terminal import write, write_json
from bot.kube.client import KubeClient
from bot.registry.client import RegistryClient
from bot.registry.model import RegistrySettings
from bot.sim.registry import scenario_registries
from bot.sim.scenario import SCENARIO_DIR, Scenario, load_scenario
from bot.sim.server import SimCluster

_RULE = "─" * 100


def scenario_ids() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _pods(scenario: Scenario) -> list[tuple[str, str]]:
    return [(str(o["metadata"].get("namespace") or "default"), str(o["metadata"]["name"]))
            for o in scenario.objects if o.get("kind") == "Pod"]


class UnknownScenario(ValueError):
    """Scenario ids that do not exist; the CLI answers it as bad input (exit 2)."""


def run_demo(ids: Sequence[str], output: str = "text") -> int:
    """Diagnose every pod of every chosen scenario, each in a cluster of its own."""
    unknown = sorted(set(ids) - set(scenario_ids()))
    if unknown:
        raise UnknownScenario(f"unknown scenario(s) {', '.join(unknown)}; "
                         f"known: {', '.join(scenario_ids())}")
    results = []
    with tempfile.TemporaryDirectory(prefix="imagepull-demo-") as tmp:
        for scenario_id in ids or scenario_ids():
            scenario = load_scenario(SCENARIO_DIR / f"{scenario_id}.yaml")
            with SimCluster([scenario]) as sim, \
                    scenario_registries(scenario.registries) as endpoints, \
                    RegistryClient(RegistrySettings(endpoints=endpoints,
                                                    insecure_hosts=set(endpoints))) as client:
                kube = KubeClient.from_environment(
                    str(sim.write_kubeconfig(Path(tmp) / f"{scenario_id}.kubeconfig")))
                if output == "text":
                    served = "".join(f"\nregistry {h} at {u}" for h, u in endpoints.items())
                    write(f"{_RULE}\nscenario {scenario_id}: {scenario.description}\n"
                          f"cluster  {sim.url} (Kubernetes {sim.kubernetes_version}){served}\n")
                # only the scenario's own registries are asked: the demo never leaves loopback
                registry = client if endpoints else None
                for namespace, pod in _pods(scenario):
                    result = diagnose_pod(kube, namespace, pod, registry, list(endpoints))
                    if output == "text":
                        write(render_text(result))
                    else:
                        results.append({"scenario": scenario_id, **result.to_json()})
    if output == "json":
        write_json(results)
    return 0
