"""Issue 13, Must show: Slack requests routed between clusters over Redis Streams.

Two scenario clusters, one real Redis, one Slack stand-in, the agents as `serve` runs them
(tests/support/fleet.py), requests signed as Slack signs them and posted over HTTP to cluster
A's agent. What each cluster did is counted at its own scenario cluster (GETs, PATCHes), what
people were told at the Slack stand-in's response_urls; nothing of the bot is replaced.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.chatops.bus import GROUP
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.slack import actions
from tests.support.fleet import Fleet, Replica, fleet
from tests.support.slack_requests import (
    ALERTS,
    FORM_TYPE,
    SIGNING_SECRET,
    block_action,
    sign,
    slash_command,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALICE = "U0ALICE001"  # an approver on cluster A only
CAROL = "U0CAROL001"  # an approver on cluster B
IMAGE = "registry.internal/shop/web:v9"


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as running:
        yield running


@pytest.fixture
def sims() -> Iterator[tuple[SimCluster, SimCluster]]:
    with SimCluster() as a, SimCluster() as b:
        yield a, b


def failing_web(sim: SimCluster) -> str:
    """shop/web, whose tag was never pushed; its first pod's name."""
    for obj in factory.failing_deployment("shop", "web", IMAGE,
                                          factory.containerd_error("not_found", IMAGE)):
        sim.apply(obj)
    return factory.pod_names("shop", "web", IMAGE)[0]


def command(agent: Replica, slack: Any, text: str, user: str = ALICE) -> tuple[Any, str]:
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = agent.client.form(slash_command(text, user_id=user, channel_id=ALERTS[0],
                                            response_url=slack.response_url(name)))
    return reply, name


def click(agent: Replica, slack: Any, action_id: str, value: str, message: Any,
          user: str) -> str:
    name = f"click-{uuid.uuid4().hex[:6]}"
    payload = {"ts": message.ts, "type": "message", "text": message.text,
               "blocks": message.blocks, "user": "U0IMGBOT01"}
    reply = agent.client.form(block_action(action_id, value, message=payload, user_id=user,
                                           response_url=slack.response_url(name),
                                           channel_id=message.channel))
    assert reply.status == 200, reply.text
    return name


def texts(slack: Any, name: str) -> list[str]:
    return [str(p.body.get("text") or "") for p in slack.responses(name)]


def gets_of(sim: SimCluster, pod: str) -> list[Any]:
    return [r for r in sim.requests_matching("GET") if r.path.endswith(f"/pods/{pod}")]


def two_clusters(agents: Fleet, sims: tuple[SimCluster, SimCluster], replicas: int = 2,
                 **b_env: str) -> tuple[str, str, list[Replica], list[Replica]]:
    a, b = agents.name("eu"), agents.name("us")
    agents.beat(a)
    agents.beat(b)
    a_agents = [agents.replica(a, sims[0], APPROVERS=ALICE) for _ in range(replicas)]
    b_agents = [agents.replica(b, sims[1], **{"APPROVERS": CAROL, **b_env})
                for _ in range(replicas)]
    return a, b, a_agents, b_agents


def test_a_command_received_by_a_for_b_is_answered_by_b_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    a, b, a_agents, _ = two_clusters(agents, sims)
    pod = failing_web(sims[1])
    reply, name = command(a_agents[0], agents.slack, f"diagnose {b}/shop/{pod}")
    assert reply.status == 200 and reply.elapsed < 3, reply
    assert f"Sent to `{b}`" in reply.json()["text"], reply.text
    wait_for(lambda: len(texts(agents.slack, name)) >= 2, 20, "B's answer")
    time.sleep(2)  # a second execution (the other replica, a redelivery) would show by now
    answers = texts(agents.slack, name)
    assert len(answers) == 2, answers  # B's "working on it" and B's diagnosis, once each
    assert "working on it" in answers[0], answers
    assert pod in str(agents.slack.responses(name)[1].body), answers
    assert gets_of(sims[1], pod) and not gets_of(sims[0], pod)


def test_without_a_cluster_named_several_clusters_ask_which(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    a, b, a_agents, _ = two_clusters(agents, sims, replicas=1)
    reply, _ = command(a_agents[0], agents.slack, "diagnose shop/web-1")
    said = reply.json()["text"]
    assert "Several clusters answer here" in said and a in said and b in said, said
