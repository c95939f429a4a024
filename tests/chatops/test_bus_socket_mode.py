"""Issue 13 over Socket Mode: a request Slack hands to A's socket for cluster B crosses the bus.

The same fleet as tests/chatops/test_bus.py (two scenario clusters, one real Redis, one Slack
stand-in, tests/support/fleet.py), but the agents run as `python -m bot socket` does: each
replica holds its own connection to the one Slack app's Socket Mode stand-in
(bot/sim/socket_mode.py), and the stand-in delivers each envelope to the connection the test
names, as Slack picks one at random. Slack signs nothing sent over a socket, so what crosses is
the payload under the receiving agent's signature (bot/chatops/bus/); what each cluster did is
counted at its own scenario cluster, what people were told at the Slack stand-in.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.chatops.bus import GROUP, JSON_TYPE, SOCKET_MODE, agent_signature
from bot.sim.server import SimCluster
from bot.sim.socket_mode import Envelope, form_fields, interaction_payload
from bot.slack import actions
from tests.support.fleet import Fleet, Replica
from tests.support.fleet_checks import (
    ALICE,
    CAROL,
    alert_with,
    approval_message,
    bus_counts,
    failing_web,
    gets_of,
    restarts,
    texts,
)
from tests.support.slack_requests import (
    ALERTS,
    FORM_TYPE,
    SIGNING_SECRET,
    block_action,
    button_value,
    pressed_message,
    sign,
    slash_command,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ACK_DEADLINE = 3.0


def socket_clusters(agents: Fleet, sims: tuple[SimCluster, SimCluster], replicas: int = 2,
                    b_over_http: bool = False) -> tuple[str, str, list[Replica], list[Replica]]:
    """A (approver ALICE) and B (approver CAROL), each with `replicas` Socket Mode agents, or
    B with HTTP agents (`b_over_http`: the executing agent may run either way)."""
    a, b = agents.name("eu"), agents.name("us")
    agents.beat(a)
    agents.beat(b)
    a_agents = [agents.socket_replica(a, sims[0], APPROVERS=ALICE) for _ in range(replicas)]
    b_replica = agents.replica if b_over_http else agents.socket_replica
    b_agents = [b_replica(b, sims[1], APPROVERS=CAROL) for _ in range(replicas)]
    return a, b, a_agents, b_agents


def command(agents: Fleet, agent: Replica, text: str, user: str = ALICE) -> tuple[Envelope, str]:
    """`/imagepull <text>` delivered to `agent`'s Socket Mode connection."""
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    body = slash_command(text, user_id=user, channel_id=ALERTS[0],
                         response_url=agents.slack.response_url(name))
    return agents.socket_mode.slash_command(form_fields(body), connection=agent.connection), name


def click_payload(agents: Fleet, action_id: str, value: str, message: Any, user: str,
                  name: str) -> bytes:
    return block_action(action_id, value, message=pressed_message(message), user_id=user,
                        response_url=agents.slack.response_url(name),
                        channel_id=message.channel)


def click(agents: Fleet, agent: Replica, action_id: str, value: str, message: Any,
          user: str) -> str:
    """A button press delivered to `agent`'s connection, acked in time; its response_url."""
    name = f"click-{uuid.uuid4().hex[:6]}"
    body = click_payload(agents, action_id, value, message, user, name)
    envelope = agents.socket_mode.interactive(interaction_payload(body),
                                              connection=agent.connection)
    acked(agents, envelope)
    return name


def acked(agents: Fleet, envelope: Envelope) -> dict[str, Any]:
    """The ack's payload ({} for a bare ack), asserted within Slack's 3 s."""
    ack = agents.socket_mode.wait_ack(envelope, timeout=10)
    latency = ack.at - envelope.created_at
    assert latency < ACK_DEADLINE, f"ack after {latency:.2f}s"
    return ack.payload or {}


def entries(agents: Fleet, cluster: str) -> list[dict[str, str]]:
    return [fields for _id, fields in agents.redis.xrange(agents.fleet_key("bus", cluster))]


def test_a_command_over_as_socket_for_b_is_answered_by_b_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    _a, b, a_agents, b_agents = socket_clusters(agents, sims)
    pod = failing_web(sims[1])
    envelope, name = command(agents, a_agents[0], f"diagnose {b}/shop/{pod}")
    said = acked(agents, envelope)
    assert said.get("text") == f"➡️ Sent to `{b}`'s agent; it answers here.", said
    wait_for(lambda: len(texts(agents.slack, name)) >= 2, 20, "B's answer")
    time.sleep(2)  # a second execution (the other replica, a redelivery) would show by now
    answers = texts(agents.slack, name)
    assert len(answers) == 2, answers  # B's "working on it" and B's diagnosis, once each
    assert "working on it" in answers[0], answers
    assert pod in str(agents.slack.responses(name)[1].body), answers
    assert gets_of(sims[1], pod) and not gets_of(sims[0], pod)
    counts = bus_counts(b_agents)  # at each replica's /metrics (the ops port in Socket Mode)
    assert (counts.get("executed"), counts.get("duplicate", 0)) == (1, 0), counts
    [entry] = entries(agents, b)
    assert entry["transport"] == SOCKET_MODE and entry["signature"].startswith("s1=")
    assert SIGNING_SECRET not in json.dumps(entry)  # a signature crosses, never the secret


def test_a_button_on_bs_alert_over_as_socket_restarts_bs_deployment_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """And A's approver (ALICE) cannot approve on B, whose APPROVERS is CAROL alone. B's agents
    run in HTTP mode: they run the forwarded Socket Mode requests all the same."""
    _a, b, a_agents, _ = socket_clusters(agents, sims, b_over_http=True)
    failing_web(sims[1])
    alert = alert_with(agents.slack, actions.RESTART)
    incident_id = button_value(alert, actions.RESTART)
    asked = click(agents, a_agents[0], actions.RESTART, incident_id, alert, ALICE)
    wait_for(lambda: texts(agents.slack, asked), 15, "B's answer to the restart button")
    assert "Asked for approval" in texts(agents.slack, asked)[0], texts(agents.slack, asked)
    request = approval_message(agents.slack)
    request_id = button_value(request, actions.APPROVE)

    refused = click(agents, a_agents[1], actions.APPROVE, request_id, request, ALICE)
    wait_for(lambda: texts(agents.slack, refused), 15, "B's answer to A's approver")
    assert "not an approver" in texts(agents.slack, refused)[0], texts(agents.slack, refused)
    assert restarts(sims[1]) == []

    approved = [click(agents, a_agents[n % 2], actions.APPROVE, request_id, request, CAROL)
                for n in range(2)]  # a double click, through both of A's connections
    wait_for(lambda: all(texts(agents.slack, n) for n in approved), 15, "B's answers")
    time.sleep(1.5)
    assert len(restarts(sims[1])) == 1, restarts(sims[1])
    assert restarts(sims[0]) == []
    said = [t for n in approved for t in texts(agents.slack, n)]
    assert len(said) == 2 and any("Already approved" in t for t in said), said
    crossed = entries(agents, b)
    assert len(crossed) == 4 and all(e["transport"] == SOCKET_MODE for e in crossed)
    assert entries(agents, _a) == []


def test_forged_socket_mode_entries_change_nothing_and_are_logged(
        agents: Fleet, sims: tuple[SimCluster, SimCluster],
        caplog: pytest.LogCaptureFixture) -> None:
    """Someone with write access to Redis XADDs CAROL's approval into B's stream as a Socket
    Mode entry: with an agent signature made with another secret, with none, with Slack's own
    `v0` signature of the same bytes (Slack's HMAC offered as an agent's), as an HTTP entry
    carrying a genuine agent signature (an agent's HMAC offered as Slack's), and with a
    genuine agent signature made for another cluster. B's agents refuse all five; the same
    approval, signed by an agent for B, then restarts B's Deployment once (the control).
    And an agent signature presented at an HTTP endpoint as Slack's is refused there (401)."""
    a, b, _, b_agents = socket_clusters(agents, sims, replicas=1)
    failing_web(sims[1])
    envelope, _ = command(agents, b_agents[0], f"restart {b}/shop/deployment/web", user=CAROL)
    acked(agents, envelope)
    request = approval_message(agents.slack)
    request_id = button_value(request, actions.APPROVE)
    form = click_payload(agents, actions.APPROVE, request_id, request, CAROL, "forged")
    body = json.dumps(interaction_payload(form), separators=(",", ":"))
    now = str(int(time.time()))

    def agent_signed(secret: str, target: str, signed: str = body) -> str:
        return agent_signature(secret, timestamp=now, sender=a, target=target, body=signed)

    socket_entry = {"transport": SOCKET_MODE, "body": body, "content_type": JSON_TYPE}
    http_entry = {"body": form.decode(), "content_type": FORM_TYPE}
    forgeries = [
        {**socket_entry, "signature": agent_signed("not-the-signing-secret", b)},
        {**socket_entry, "signature": ""},
        {**socket_entry, "signature": sign(body.encode(), SIGNING_SECRET, int(now))[
            "X-Slack-Signature"]},
        {**http_entry, "signature": agent_signed(SIGNING_SECRET, b, form.decode())},
        {**socket_entry, "signature": agent_signed(SIGNING_SECRET, a)},
    ]
    stream = agents.fleet_key("bus", b)
    with caplog.at_level(logging.WARNING, logger="bot.chatops.bus"):
        for forged in forgeries:
            agents.redis.xadd(stream, {**forged, "timestamp": now, "from": a,
                                       "sent_at": repr(time.time())})

        def refused() -> list[str]:
            return [r.getMessage() for r in caplog.records if "refused: no valid" in
                    r.getMessage()]

        wait_for(lambda: not agents.redis.xpending(stream, GROUP)["pending"]
                 and len(refused()) == 5, 10, "all five entries refused and acknowledged")
    assert sum("no valid agent signature" in m for m in refused()) == 4, refused()
    assert sum("no valid Slack signature" in m for m in refused()) == 1, refused()
    counts = bus_counts(b_agents)
    assert counts.get("refused_forged") == 5 and not counts.get("executed"), counts
    time.sleep(1)
    assert restarts(sims[1]) == []
    assert agents.slack.responses("forged") == []

    http = agents.replica(b, sims[1], APPROVERS=CAROL)  # an HTTP agent of the same app
    reply = http.client.post(form, FORM_TYPE, headers={
        "X-Slack-Request-Timestamp": now,
        "X-Slack-Signature": agent_signed(SIGNING_SECRET, b, form.decode())})
    assert reply.status == 401, reply
    assert SignatureVerifier(SIGNING_SECRET).is_valid(
        form, now, agent_signed(SIGNING_SECRET, b, form.decode())) is False

    agents.redis.xadd(stream, {**socket_entry, "signature": agent_signed(SIGNING_SECRET, b),
                               "timestamp": now, "from": a, "sent_at": repr(time.time())})
    wait_for(lambda: restarts(sims[1]), 15, "the genuine entry's restart")
    time.sleep(1)
    assert len(restarts(sims[1])) == 1


def test_without_a_signing_secret_a_socket_agent_forwards_nothing_and_says_what_to_set(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """And, with the secret, a command for a silent cluster is answered at once, unsent."""
    a, b = agents.name("eu"), agents.name("us")
    agents.beat(a)
    agents.beat(b)
    unsigned = agents.socket_replica(a, sims[0], SLACK_SIGNING_SECRET="")
    envelope, _ = command(agents, unsigned, f"diagnose {b}/shop/web-1")
    said = acked(agents, envelope).get("text", "")
    assert f"watches `{a}`, not `{b}`" in said and "without SLACK_SIGNING_SECRET" in said, said
    assert entries(agents, b) == []

    signed = agents.socket_replica(a, sims[0])
    agents.beat(b, ago=125)  # B's agents stopped beating two minutes ago
    envelope, _ = command(agents, signed, f"diagnose {b}/shop/web-1")
    said = acked(agents, envelope).get("text", "")
    assert said == f"⚠️ `{b}` has not reported for 2 min; nothing was sent.", said
    assert entries(agents, b) == []


def test_an_agent_signed_entry_older_than_slacks_window_is_dropped_with_a_note(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """The receiving time an agent signs is judged like Slack's timestamp: a Socket Mode
    request that waited 6 minutes is not run (its response_url hears why), one of 5 s is."""
    a, b = agents.name("eu"), agents.name("us")
    agents.beat(a)
    agents.beat(b)
    pod = failing_web(sims[1])
    stream = agents.fleet_key("bus", b)
    for age, label in ((360, "old"), (5, "new")):
        fields = form_fields(slash_command(f"diagnose {b}/shop/{pod}", user_id=ALICE,
                                           channel_id=ALERTS[0],
                                           response_url=agents.slack.response_url(label)))
        body = json.dumps(fields, separators=(",", ":"))
        at = str(int(time.time()) - age)
        agents.redis.xadd(stream, {
            "transport": SOCKET_MODE, "body": body, "content_type": JSON_TYPE, "timestamp": at,
            "signature": agent_signature(SIGNING_SECRET, timestamp=at, sender=a, target=b,
                                         body=body),
            "from": a, "sent_at": repr(time.time())})
    b_agents = [agents.socket_replica(b, sims[1], APPROVERS=CAROL)]
    wait_for(lambda: texts(agents.slack, "old") and len(texts(agents.slack, "new")) >= 2, 20,
             "the note and the answer")
    time.sleep(1)
    [note] = texts(agents.slack, "old")
    assert "waited 6 min" in note and "so nothing was done" in note, note
    assert len(texts(agents.slack, "new")) == 2, texts(agents.slack, "new")
    counts = bus_counts(b_agents)
    assert (counts.get("dropped_stale"), counts.get("executed")) == (1, 1), counts
