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
from typing import Any

import pytest

from bot.chatops.bus import GROUP, BusConsumer, FleetBus, request_id_of, request_of
from bot.sim.server import SimCluster
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
    scrape,
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]



def command(agent: Replica, slack: Any, text: str, user: str = ALICE) -> tuple[Any, str]:
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = agent.client.form(slash_command(text, user_id=user, channel_id=ALERTS[0],
                                            response_url=slack.response_url(name)))
    return reply, name


def click(agent: Replica, slack: Any, action_id: str, value: str, message: Any,
          user: str) -> str:
    name = f"click-{uuid.uuid4().hex[:6]}"
    payload = pressed_message(message)
    reply = agent.client.form(block_action(action_id, value, message=payload, user_id=user,
                                           response_url=slack.response_url(name),
                                           channel_id=message.channel))
    assert reply.status == 200, reply.text
    return name


def two_clusters(agents: Fleet, sims: tuple[SimCluster, SimCluster], replicas: int = 2,
                 **b_env: str) -> tuple[str, str, list[Replica], list[Replica]]:
    a, b = agents.name("eu"), agents.name("us")
    if agents.keys.hash_tagged:  # a Redis Cluster: A's, B's and the fleet's keys, one node each
        a, b = on_three_nodes(agents)
    agents.beat(a)
    agents.beat(b)
    a_agents = [agents.replica(a, sims[0], APPROVERS=ALICE) for _ in range(replicas)]
    b_agents = [agents.replica(b, sims[1], **{"APPROVERS": CAROL, **b_env})
                for _ in range(replicas)]
    return a, b, a_agents, b_agents


def on_three_nodes(agents: Fleet) -> tuple[str, str]:
    """Names for A and B whose keys land on other nodes than each other's and the fleet's (the
    request bus): a round trip then crosses three nodes of the cluster."""
    def node_of(key: str) -> str:
        return str(agents.redis.get_node_from_key(key).name)  # type: ignore[attr-defined]

    taken = {node_of(agents.fleet_key("bus", "x"))}
    names = []
    for base in ("eu", "us"):
        name = agents.name(base)
        while node_of(agents.cluster_key(name, "x")) in taken:
            name = agents.name(base)
        taken.add(node_of(agents.cluster_key(name, "x")))
        names.append(name)
    return names[0], names[1]


@pytest.mark.parametrize("agents", ["redis", "cluster"], indirect=True)
def test_a_command_received_by_a_for_b_is_answered_by_b_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    _a, b, a_agents, _ = two_clusters(agents, sims)
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


def test_a_request_is_recorded_done_only_after_its_listener_finished(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """`done` (what a redelivery trusts) means the answer went out, not just the ack: with B's
    API slow, the moment B's done key appears the diagnosis is already at the response_url."""
    _a, b, a_agents, _ = two_clusters(agents, sims, replicas=1)
    pod = failing_web(sims[1])
    sims[1].set_latency(f"/pods/{pod}$", 1.5)
    reply, name = command(a_agents[0], agents.slack, f"diagnose {b}/shop/{pod}")
    assert reply.status == 200 and reply.elapsed < 3, reply
    done_keys = agents.fleet_key("bus-done", b, "*")

    def done() -> bool:
        return any(str(agents.redis.get(key) or "").startswith("done")
                   for key in agents.redis.scan_iter(done_keys))

    wait_for(done, 20, "B's request recorded done")
    answers = texts(agents.slack, name)
    assert len(answers) == 2 and "working on it" in answers[0], answers
    assert pod in str(agents.slack.responses(name)[1].body), answers


def test_without_a_cluster_named_several_clusters_ask_which(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    a, b, a_agents, _ = two_clusters(agents, sims, replicas=1)
    reply, _ = command(a_agents[0], agents.slack, "diagnose shop/web-1")
    said = reply.json()["text"]
    assert "Several clusters answer here" in said and a in said and b in said, said


@pytest.mark.parametrize("agents", ["redis", "cluster"], indirect=True)
def test_a_button_on_bs_alert_clicked_through_a_restarts_bs_deployment_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """And A's approver (ALICE) cannot approve on B, whose APPROVERS is CAROL alone."""
    a, b, a_agents, _ = two_clusters(agents, sims)
    failing_web(sims[1])
    alert = alert_with(agents.slack, actions.RESTART)
    incident_id = button_value(alert, actions.RESTART)
    assert agents.redis.exists(agents.cluster_key(b, "incident", incident_id))  # B's keys
    asked = click(a_agents[0], agents.slack, actions.RESTART, incident_id, alert, ALICE)
    wait_for(lambda: texts(agents.slack, asked), 15, "B's answer to the restart button")
    assert "Asked for approval" in texts(agents.slack, asked)[0], texts(agents.slack, asked)
    request = approval_message(agents.slack)
    request_id = button_value(request, actions.APPROVE)

    refused = click(a_agents[1], agents.slack, actions.APPROVE, request_id, request, ALICE)
    wait_for(lambda: texts(agents.slack, refused), 15, "B's answer to A's approver")
    assert "not an approver" in texts(agents.slack, refused)[0], texts(agents.slack, refused)
    assert restarts(sims[1]) == []

    approved = [click(a_agents[n % 2], agents.slack, actions.APPROVE, request_id, request,
                      CAROL) for n in range(2)]  # a double click, through both A replicas
    wait_for(lambda: all(texts(agents.slack, n) for n in approved), 15, "B's answers")
    time.sleep(1.5)
    assert len(restarts(sims[1])) == 1, restarts(sims[1])
    assert restarts(sims[0]) == []
    said = [t for n in approved for t in texts(agents.slack, n)]
    assert len(said) == 2 and any("Already approved" in t for t in said), said
    assert agents.redis.xlen(agents.fleet_key("bus", b)) == 4  # every click crossed the bus
    assert agents.redis.xlen(agents.fleet_key("bus", a)) == 0


def test_a_forged_entry_in_bs_stream_changes_nothing_and_is_logged(
        agents: Fleet, sims: tuple[SimCluster, SimCluster],
        caplog: pytest.LogCaptureFixture) -> None:
    """Someone with write access to Redis XADDs a restart approval as B's approver: signed with
    a secret that is not the Slack app's, or not signed at all. B's agents refuse both."""
    _, b, _, b_agents = two_clusters(agents, sims, replicas=1)
    failing_web(sims[1])
    command(b_agents[0], agents.slack, f"restart {b}/shop/deployment/web", user=CAROL)
    request = approval_message(agents.slack)
    request_id = button_value(request, actions.APPROVE)
    payload = pressed_message(request)
    forged = block_action(actions.APPROVE, request_id, message=payload, user_id=CAROL,
                          response_url=agents.slack.response_url("forged"),
                          channel_id=request.channel)
    stream = agents.fleet_key("bus", b)
    with caplog.at_level(logging.WARNING, logger="bot.chatops.bus"):
        for headers in (sign(forged, "not-the-signing-secret"),
                        {"X-Slack-Request-Timestamp": str(int(time.time())),
                         "X-Slack-Signature": "v0=" + "0" * 64}):
            agents.redis.xadd(stream, {
                "body": forged.decode(), "content_type": FORM_TYPE, "from": "mallory",
                "timestamp": headers["X-Slack-Request-Timestamp"],
                "signature": headers["X-Slack-Signature"], "sent_at": repr(time.time())})
        wait_for(lambda: not agents.redis.xpending(stream, GROUP)["pending"]
                 and len([r for r in caplog.records if "no valid Slack signature" in
                          r.getMessage()]) == 2, 10, "both entries refused and acknowledged")
    time.sleep(1)
    assert restarts(sims[1]) == []
    assert agents.slack.responses("forged") == []
    assert "mallory" in caplog.text
    counts = bus_counts(b_agents)
    assert counts["refused_forged"] == 2 and counts["executed"] == 0, counts


def test_a_command_for_a_silent_cluster_is_answered_at_once_and_not_sent(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    _a, b, a_agents, b_agents = two_clusters(agents, sims, replicas=1)
    for agent in b_agents:
        agent.stop()
    agents.beat(b, ago=125)  # B's agents stopped beating two minutes ago
    reply, _name = command(a_agents[0], agents.slack, f"diagnose {b}/shop/web-1")
    assert reply.status == 200 and reply.elapsed < 3, reply
    assert reply.json()["text"] == f"⚠️ `{b}` has not reported for 2 min; nothing was sent.", \
        reply.text
    assert agents.redis.xlen(agents.fleet_key("bus", b)) == 0
    agents.redis.delete(agents.fleet_key("presence", b))  # never reported (or its key expired)
    reply, _ = command(a_agents[0], agents.slack, f"diagnose {b}/shop/web-1")
    assert "has never reported; nothing was sent" in reply.json()["text"], reply.text


def test_on_restart_entries_older_than_slacks_window_are_dropped_with_a_note(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """B's agents were down while A sent them two requests: one 6 minutes ago, one just now.
    When B's agents start again the old one is not run (its response_url hears why), the new
    one is."""
    a, b, _a_agents, _ = two_clusters(agents, sims, replicas=0)
    pod = failing_web(sims[1])
    a_agent = agents.replica(a, sims[0])
    assert a_agent.runtime.bus is not None
    sent = {}
    for age, label in ((360, "old"), (5, "new")):
        body = slash_command(f"diagnose {b}/shop/{pod}", user_id=ALICE, channel_id=ALERTS[0],
                             response_url=agents.slack.response_url(label))
        headers = sign(body, SIGNING_SECRET, int(time.time()) - age)
        sent[label] = a_agent.runtime.bus.send(
            b, body, timestamp=headers["X-Slack-Request-Timestamp"],
            signature=headers["X-Slack-Signature"], content_type=FORM_TYPE)
    b_agents = [agents.replica(b, sims[1], APPROVERS=CAROL) for _ in range(2)]
    wait_for(lambda: texts(agents.slack, "old") and len(texts(agents.slack, "new")) >= 2, 20,
             "the note and the answer")
    time.sleep(1.5)
    [note] = texts(agents.slack, "old")
    assert "longer than Slack's 5-minute window, so nothing was done" in note, note
    assert "waited 6 min" in note, note
    assert len(texts(agents.slack, "new")) == 2, texts(agents.slack, "new")
    assert len(gets_of(sims[1], pod)) >= 1
    counts = bus_counts(b_agents)
    assert (counts["dropped_stale"], counts["executed"]) == (1, 1), counts


def test_a_consumer_killed_after_reading_leaves_its_entry_to_the_other_replica(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """A replica of B read an entry (it is pending, owned by that consumer) and died before
    running it. The live replica takes it over (XAUTOCLAIM after BUS_CLAIM_IDLE_SECONDS) and
    runs it once."""
    a, b, _, _ = two_clusters(agents, sims, replicas=0)
    pod = failing_web(sims[1])
    a_agent = agents.replica(a, sims[0])
    assert a_agent.runtime.bus is not None
    stream = agents.fleet_key("bus", b)
    agents.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    body = slash_command(f"diagnose {b}/shop/{pod}", user_id=ALICE, channel_id=ALERTS[0],
                         response_url=agents.slack.response_url("pending"))
    headers = sign(body, SIGNING_SECRET)
    a_agent.runtime.bus.send(b, body, timestamp=headers["X-Slack-Request-Timestamp"],
                             signature=headers["X-Slack-Signature"], content_type=FORM_TYPE)
    read = agents.redis.xreadgroup(GROUP, "us-replica-that-died", {stream: ">"}, count=10)
    assert len(read[0][1]) == 1
    assert agents.redis.xpending(stream, GROUP)["pending"] == 1
    # the first live replica would take it over only after the default 30 s: until the
    # second (1 s) does, the entry is pending, and its gauge says so
    b_agents = [agents.replica(b, sims[1], APPROVERS=CAROL)]
    assert scrape(b_agents[0])[("imagepull_bot_bus_pending", ())] == 1  # XPENDING, scraped
    b_agents.append(agents.replica(b, sims[1], APPROVERS=CAROL, BUS_CLAIM_IDLE_SECONDS="1"))
    wait_for(lambda: len(texts(agents.slack, "pending")) >= 2, 20, "the answer")
    time.sleep(2)
    assert len(texts(agents.slack, "pending")) == 2, texts(agents.slack, "pending")
    assert agents.redis.xpending(stream, GROUP)["pending"] == 0
    counts = bus_counts(b_agents)
    assert (counts["takeovers"], counts["executed"], counts["duplicate"]) == (1, 1, 0), counts
    assert scrape(b_agents[0])[("imagepull_bot_bus_pending", ())] == 0
    assert scrape(a_agent)[("imagepull_bot_bus_requests_sent_total", (("cluster", b),))] == 1


def test_an_entry_run_but_not_acknowledged_is_not_run_again(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """A replica of B ran an entry (its request id claimed, the answer sent) and died before
    XACK. The replica that takes the entry over finds the claim and only acknowledges it."""
    a, b, _, _ = two_clusters(agents, sims, replicas=0)
    pod = failing_web(sims[1])
    a_agent = agents.replica(a, sims[0])
    assert a_agent.runtime.bus is not None
    first = agents.replica(b, sims[1], APPROVERS=CAROL)
    stream = agents.fleet_key("bus", b)
    wait_for(lambda: agents.redis.exists(stream), 5, "B's consumer group")
    first.stop()  # its consumer stops reading; what follows plays its last moments
    body = slash_command(f"diagnose {b}/shop/{pod}", user_id=ALICE, channel_id=ALERTS[0],
                         response_url=agents.slack.response_url("ran"))
    headers = sign(body, SIGNING_SECRET)
    a_agent.runtime.bus.send(b, body, timestamp=headers["X-Slack-Request-Timestamp"],
                             signature=headers["X-Slack-Signature"], content_type=FORM_TYPE)
    [consumer] = first.runtime.consumers
    [[_, [(entry_id, fields)]]] = agents.redis.xreadgroup(GROUP, consumer.consumer,
                                                          {stream: ">"}, count=1)
    consumer._handle(entry_id, fields)  # ran it; the process died before `handle` acked
    wait_for(lambda: len(texts(agents.slack, "ran")) >= 2, 20, "the first run's answer")
    assert agents.redis.xpending(stream, GROUP)["pending"] == 1
    live = agents.replica(b, sims[1], APPROVERS=CAROL, BUS_CLAIM_IDLE_SECONDS="1")
    wait_for(lambda: agents.redis.xpending(stream, GROUP)["pending"] == 0, 15,
             "the entry taken over and acknowledged")
    time.sleep(1)
    assert len(texts(agents.slack, "ran")) == 2, texts(agents.slack, "ran")
    counts = bus_counts([live])
    assert (counts["takeovers"], counts["duplicate"], counts["executed"]) == (1, 1, 0), counts


def test_an_approval_run_twice_after_its_consumer_died_restarts_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """A replica of B took the lease of Carol's Approve click and ran it (the Deployment is
    restarted), then died before recording `done` or acknowledging. Its lease runs out, a live
    replica takes the entry over and runs the click again: the approval's own atomic decision
    makes that second run a no-op ("Already approved"), so B's Deployment restarts once."""
    _a, b, a_agents, b_agents = two_clusters(agents, sims, replicas=1,
                                             BUS_CLAIM_IDLE_SECONDS="1")
    failing_web(sims[1])
    alert = alert_with(agents.slack, actions.RESTART)
    asked = click(a_agents[0], agents.slack, actions.RESTART,
                  button_value(alert, actions.RESTART), alert, ALICE)
    wait_for(lambda: texts(agents.slack, asked), 15, "B's approval request")
    request = approval_message(agents.slack)
    [consumer] = b_agents[0].runtime.consumers
    b_agents[0].stop()  # its consumer reads no more; the dead replica below plays its part
    dead = BusConsumer(consumer.bus, signing_secret=SIGNING_SECRET, consumer="us-died",
                       dispatch=consumer.dispatch, claim_idle=1.0)
    approved = click(a_agents[0], agents.slack, actions.APPROVE,
                     button_value(request, actions.APPROVE), request, CAROL)
    stream = agents.fleet_key("bus", b)
    [[_, [(_, fields)]]] = agents.redis.xreadgroup(GROUP, dead.consumer, {stream: ">"},
                                                   count=1)
    key = consumer.bus.done_key(b, request_id_of(fields["signature"]))
    assert dead.lease(key) == "run"
    assert dead.lease(key) == "running"  # while it lives, nobody else runs it
    dead.dispatch(request_of(fields))
    wait_for(lambda: len(restarts(sims[1])) == 1 and texts(agents.slack, approved), 15,
             "the first run's restart")
    # ...and the replica dies here: no `done`, no XACK
    assert agents.redis.xpending(stream, GROUP)["pending"] == 1
    live = agents.replica(b, sims[1], APPROVERS=CAROL, BUS_CLAIM_IDLE_SECONDS="1")
    wait_for(lambda: agents.redis.xpending(stream, GROUP)["pending"] == 0, 15,
             "the entry taken over, run again and acknowledged")
    wait_for(lambda: len(texts(agents.slack, approved)) >= 2, 10, "the second run's answer")
    time.sleep(1.5)
    assert len(restarts(sims[1])) == 1, restarts(sims[1])
    first, second = texts(agents.slack, approved)
    assert "restarted" in first and "Already approved" in second, (first, second)
    assert agents.redis.get(key).startswith("done "), agents.redis.get(key)
    counts = bus_counts([live])
    assert (counts["takeovers"], counts["executed"], counts["duplicate"]) == (1, 1, 0), counts


def test_answers_to_a_button_on_bs_alert_land_in_bs_incident_thread(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """Restart on B's alert, clicked through A, approved through A by B's approver: the
    approval request, its audit line and the restart's result are replies in the alert's
    thread (what the Slack stand-in stores: chat.postMessage with the alert's thread_ts)."""
    _a, b, a_agents, _ = two_clusters(agents, sims, replicas=1)
    failing_web(sims[1])
    alert = alert_with(agents.slack, actions.RESTART)
    click(a_agents[0], agents.slack, actions.RESTART, button_value(alert, actions.RESTART),
          alert, ALICE)
    request = approval_message(agents.slack)
    assert (request.channel, request.thread_ts) == (alert.channel, alert.ts)
    click(a_agents[0], agents.slack, actions.APPROVE, button_value(request, actions.APPROVE),
          request, CAROL)

    def thread() -> dict[str, str]:
        [root] = [m for m in agents.slack.channel_history(ALERTS[0]) if m.ts == alert.ts]
        return {reply.ts: reply.text for reply in root.replies}

    def audited() -> list[str]:
        return [t for t in thread().values()
                if f"<@{CAROL}> approved the rollout restart" in t]

    [line] = wait_for(audited, 15, "the audit line in B's incident thread")
    assert "deployment/web" in line and "restarted" in line, line
    # the request itself is a reply there too, edited to its outcome (its buttons gone)
    assert f"Approved by <@{CAROL}>" in thread()[request.ts], thread()
    assert len(restarts(sims[1])) == 1 and restarts(sims[0]) == []
    assert agents.redis.xlen(agents.fleet_key("bus", b)) == 2  # both clicks crossed the bus
    for root in agents.slack.channel_history(ALERTS[0]):
        assert root.ts == alert.ts or "Approval needed" not in root.text  # none outside


def test_a_target_cluster_name_from_redis_keeps_the_metrics_bounded(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """The target of a request can come from other agents' presence (hostile text): only
    DNS-1123 names, and only the first 50, get a series of their own."""
    a = agents.name("eu")
    agent = agents.replica(a, sims[0], start=False)
    bus = agent.runtime.bus
    assert isinstance(bus, FleetBus)
    names = ['x"} 1\nfake_metric{a="', "UPPER", *(f"c-{n}" for n in range(60))]
    for name in names:
        bus.send(name, b"{}", timestamp="0", signature="v0=0", content_type="")
    sent = {dict(labels)["cluster"]: value for (name, labels), value in scrape(agent).items()
            if name == "imagepull_bot_bus_requests_sent_total"}
    assert sent["other"] == 12 and len(sent) == 51, sent
    assert not any(k[0] == "fake_metric" for k in scrape(agent))
    agents.redis.delete(*(agents.fleet_key("bus", name) for name in names))
