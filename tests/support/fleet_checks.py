"""What a fleet of agents did, read from the real servers (tests/support/fleet.py runs them):
the scenario clusters' request logs, the Slack stand-in's messages and response_urls, each
replica's /metrics. Shared by the bus tests over HTTP and over Socket Mode."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bot.sim import factory
from bot.sim.server import SimCluster
from tests.support.fleet import Replica
from tests.support.slack_requests import ALERTS
from tests.support.waiting import wait_for

ALICE = "U0ALICE001"  # an approver on cluster A only
CAROL = "U0CAROL001"  # an approver on cluster B
IMAGE = "registry.internal/shop/web:v9"


def failing_web(sim: SimCluster) -> str:
    """shop/web, whose tag was never pushed; its first pod's name."""
    for obj in factory.failing_deployment("shop", "web", IMAGE,
                                          factory.containerd_error("not_found", IMAGE)):
        sim.apply(obj)
    return factory.pod_names("shop", "web", IMAGE)[0]


def texts(slack: Any, name: str) -> list[str]:
    return [str(p.body.get("text") or "") for p in slack.responses(name)]


def gets_of(sim: SimCluster, pod: str) -> list[Any]:
    return [r for r in sim.requests_matching("GET") if r.path.endswith(f"/pods/{pod}")]


def scrape(agent: Replica) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The replica's /metrics, as Prometheus reads it: (sample name, labels) -> value."""
    port = agent.server.server_address[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def bus_counts(agents: list[Replica]) -> dict[str, float]:
    """The bus's counters summed over replicas: outcomes by name, and take-overs."""
    counts: dict[str, float] = {}
    for agent in agents:
        for (name, labels), value in scrape(agent).items():
            if name == "imagepull_bot_bus_entries_total":
                outcome = dict(labels)["outcome"]
                counts[outcome] = counts.get(outcome, 0) + value
            elif name == "imagepull_bot_bus_takeovers_total":
                counts["takeovers"] = counts.get("takeovers", 0) + value
    return counts


def alert_with(slack: Any, action_id: str) -> Any:
    def find() -> Any:
        for root in slack.channel_history(ALERTS[0]):
            if any(e.get("action_id") == action_id
                   for block in root.blocks for e in block.get("elements", [])):
                return root
        return None

    return wait_for(find, 30, f"the alert with its {action_id} button")


def approval_message(slack: Any) -> Any:
    def find() -> Any:
        for root in slack.channel_history(ALERTS[0]):
            for message in [root, *root.replies]:
                if "Approval needed" in message.text:
                    return message
        return None

    return wait_for(find, 15, "the approval request message")


def restarts(sim: SimCluster) -> list[Any]:
    return [r for r in sim.requests_matching("PATCH") if "/deployments/web" in r.path]
