"""Hostile data in the shared Redis (issue 13's attack surface).

The attacker can write anything to the Redis every cluster's agent shares (another team's
compromised agent, a misconfigured client) but does not hold the Slack signing secret. What
they write is read back by real agents (tests/support/fleet.py: `serve` over real Redis and
the Slack stand-in) and must stay text: escaped, bounded to Slack's limits, never a crash,
never a routing target, never a command, never a way to capture a click.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import pytest

from bot.alerts.presence import MAX_CLUSTERS
from bot.alerts.shared_causes import MAX_KEPT, MAX_READ, SharedCauses, SharedEntry, elsewhere
from bot.chatops.bus import GROUP, MAX_BODY
from bot.diagnosis.causes import Cause
from bot.diagnosis.names import is_dns1123_label
from bot.sim.server import SimCluster
from bot.slack import actions
from bot.slack.blocks import MAX_BLOCKS, MAX_SECTION_TEXT, elsewhere_line
from bot.slack.text import date
from bot.store import RedisStore
from tests.security.test_slack_escaping import markup_problems, text_objects
from tests.support.fleet import Fleet, Replica
from tests.support.fleet_checks import (
    ALICE,
    CAROL,
    alert_with,
    bus_counts,
    failing_web,
    scrape,
    texts,
)
from tests.support.redis import REDIS_URL
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

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.timeout(120)]

MARKUP = "<https://evil.example/sso|Re-authenticate> `<!channel>` <@U0EVIL0001> *x* &"
HUGE = "A" * 1_000_000  # 1 MB


# -- helpers ------------------------------------------------------------------------------------
def command(agent: Replica, slack: Any, text: str) -> tuple[Any, list[dict[str, Any]]]:
    """A slash command to `agent`; (the HTTP reply, every message the person got: the ack and
    whatever reached the response_url)."""
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = agent.client.form(slash_command(text, user_id=ALICE, channel_id=ALERTS[0],
                                            response_url=slack.response_url(name)))
    said: list[dict[str, Any]] = []
    if reply.status == 200 and reply.text.strip():
        said.append(reply.json())
    said += [dict(p.body) for p in slack.responses(name)]
    return reply, said


def mrkdwn_of(message: dict[str, Any]) -> list[str]:
    found = [str(message.get("text") or "")]
    found += [text for kind, text in text_objects(message.get("blocks") or [], [])
              if kind == "mrkdwn"]
    return found


def assert_slack_safe(message: dict[str, Any]) -> None:
    """Inert mrkdwn, within Slack's limits (50 blocks, 3000 characters per section, 40 000
    for the top-level text)."""
    blocks = message.get("blocks") or []
    assert len(blocks) <= MAX_BLOCKS, len(blocks)
    assert len(str(message.get("text") or "")) <= 40_000
    for text in mrkdwn_of(message):
        assert len(text) <= MAX_SECTION_TEXT, len(text)
        assert not markup_problems(text), (markup_problems(text), text[:500])


def hostile_beat(agents: Fleet, cluster: str | bytes, score: float,
                 **fields: str | bytes) -> None:
    """Write `cluster` into the fleet's list and its presence hash, as anyone can."""
    name = cluster.decode("utf-8", "replace") if isinstance(cluster, bytes) else cluster
    if fields:
        key = agents.fleet_key("presence", name) if isinstance(cluster, str) else \
            agents.fleet_key("presence").encode() + b":" + cluster
        agents.redis.hset(key, mapping=fields)  # type: ignore[arg-type]
    agents.redis.zadd(agents.fleet_key("clusters"), {cluster: score})


# -- presence -----------------------------------------------------------------------------------
def test_hostile_presence_is_listed_escaped_bounded_and_never_crashes(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """`/imagepull clusters` with the fleet's list and presence hashes full of what anyone can
    write: markup, 1 MB strings, non-UTF-8 bytes, non-numbers, NaN, inf, negative and
    far-future timestamps, a trailing newline in a name."""
    a = agents.name("eu")
    agents.beat(a)
    agent = agents.replica(a, sims[0])
    now = time.time()
    good = agents.name("ok")
    hostile_beat(agents, good, now, heartbeat_at=repr(now), version=MARKUP + HUGE,
                 uid=HUGE, replicas="-5", open_incidents="1e308",
                 last_watch_event_at="9e18", heartbeat_seconds="inf")
    future = agents.name("future")  # beats "from the future": a dead cluster kept reporting
    hostile_beat(agents, future, now, heartbeat_at="1e18", version="v")
    ancient = agents.name("ancient")  # gmtime of this crashed the message
    hostile_beat(agents, ancient, -1e17)
    nan = agents.name("nan")
    hostile_beat(agents, nan, now - 4000, heartbeat_at="nan", open_incidents="NaN",
                 replicas="lots")
    for name in (MARKUP, "evil\n✅ *prod* reporting", "prod\n", HUGE, "UPPER:x"):
        hostile_beat(agents, name, now)
    hostile_beat(agents, b"bad-\xff\xfe", now, version=b"\xff\xfe\xfd")

    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = agent.client.form(slash_command("clusters", user_id=ALICE, channel_id=ALERTS[0],
                                            response_url=agents.slack.response_url(name)))
    assert reply.status == 200 and reply.elapsed < 3, (reply.status, reply.text[:500])
    [listing] = wait_for(lambda: [dict(p.body) for p in agents.slack.responses(name)
                                  if "cluster(s)" in str(p.body.get("text"))], 10,
                         "the clusters list")
    assert_slack_safe(listing)
    shown = "\n".join(mrkdwn_of(listing))
    assert "<!channel>" not in shown and "<@U0EVIL0001>" not in shown and "<https" not in shown
    for name in ("*prod* reporting", "prod\n", "UPPER", "bad-", "AAAA", "evil\n"):
        assert name not in shown, name
    assert f"*{future}* silent for over an hour" in shown, shown[:3000]
    assert f"*{ancient}* silent for over an hour" in shown, shown[:3000]
    assert "1e308" not in shown and "-5 replica" not in shown
    assert f"*{good}* reporting" in shown and "? replica(s)" in shown
    # the one rendering of a time: what no clock could say is words, not an exception
    assert date(-1e17) == "an unknown time" and date(float("nan")) == "an unknown time"


def test_a_silent_cluster_beating_from_the_future_is_refused_at_once(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """A presence hash saying the last beat is in a year: before, the cluster counted as
    reporting for ever, so a command for it was put in a stream nobody reads."""
    a = agents.name("eu")
    agents.beat(a)
    agent = agents.replica(a, sims[0])
    dead = agents.name("dead")
    hostile_beat(agents, dead, time.time() + 365 * 86400,
                 heartbeat_at=repr(time.time() + 365 * 86400))
    reply, said = command(agent, agents.slack, f"diagnose {dead}/shop/web-1")
    assert reply.status == 200 and reply.elapsed < 3, reply
    assert said[0]["text"] == f"⚠️ `{dead}` has never reported; nothing was sent.", said
    assert agents.redis.xlen(agents.fleet_key("bus", dead)) == 0


def test_a_flood_of_clusters_keeps_routing_answers_short_and_garbage_out(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """300 reporting fake clusters and names that are no cluster names: the "which cluster?"
    answer stays a few lines and in time; a garbage name is never a target or a label."""
    a = agents.name("eu")
    agents.beat(a)
    agent = agents.replica(a, sims[0])
    now = time.time()
    pipe = agents.redis.pipeline(transaction=False)
    fakes = [f"{agents.root}-fake-{n:03d}" for n in range(300)]
    for name in fakes:
        key = agents.fleet_key("presence", name)
        pipe.hset(key, mapping={"heartbeat_at": repr(now), "version": "x" * 64})
    pipe.zadd(agents.fleet_key("clusters"), {name: now for name in fakes})
    for garbage_name in ("Not_A_Name", "x:y{z}"):  # reporting, as far as its hash says
        pipe.hset(agents.fleet_key("presence", garbage_name), "heartbeat_at", repr(now))
    pipe.zadd(agents.fleet_key("clusters"), {"Not_A_Name": now + 1, "x:y{z}": now + 1})
    pipe.execute()

    reply, said = command(agent, agents.slack, "diagnose shop/web-1")
    assert reply.status == 200 and reply.elapsed < 3, reply
    text = said[0]["text"]
    assert "Several clusters answer here" in text, text
    assert len(text) < 1500 and "more" in text, len(text)
    assert "Not_A_Name" not in text and "x:y" not in text

    # a garbage name holding a button's incident id is not where the click goes
    incident = "inc-0123456789ab"
    garbage = agents.keys.of_cluster("Not_A_Name")
    garbage.hset(garbage.key("incident", incident), {"id": incident})
    message = {"ts": "1700000000.000100", "type": "message", "text": "x", "blocks": [],
               "user": "U0IMGBOT01"}
    clicked = agent.client.form(block_action(actions.RESTART, incident, message=message,
                                             response_url=agents.slack.response_url("g"),
                                             user_id=ALICE))
    assert clicked.status == 200
    assert agents.redis.xlen(agents.fleet_key("bus", "Not_A_Name")) == 0
    labels = {dict(lbl).get("cluster") for (_, lbl), _ in scrape(agent).items()}
    assert "Not_A_Name" not in labels and "x:y{z}" not in labels
    assert len(fakes) > MAX_CLUSTERS


# -- shared causes ------------------------------------------------------------------------------
def test_shared_cause_entries_from_other_clusters_stay_text_and_bounded() -> None:
    """Another "cluster" writes the fleet index of a shared cause: links that are not this
    kind of Slack permalink, markup in names, a 1 MB name, non-UTF-8, 500 fake clusters. The
    root's "Also failing in" line shows only cluster names, links only Slack permalinks, and
    stays one short line; the incident keeps a bounded map."""
    root = f"t-{uuid.uuid4().hex[:8]}"
    store = RedisStore(REDIS_URL, f"{root}:me")
    fleet = store.fleet()
    shared = SharedCauses(fleet, "me")
    key = shared.key(Cause.RATE_LIMITED, "docker.io")
    now = time.time()

    def entry(link: str) -> str:
        return SharedEntry(channel="C1", thread_ts="1.2", permalink=link, opened_at=now,
                           pods=1, seen_at=now).to_json()

    good = "https://acme.slack.com/archives/C0123/p1700000000000100"
    hostile = {
        "prod-us": entry(good),
        "phish": entry("https://evil.example/archives/C1/p1|Re-authenticate"),
        "plain-http": entry("http://acme.slack.com/archives/C1/p1"),
        "lookalike": entry("https://acme.slack.com.evil.example/archives/C1/p1"),
        "markup-link": entry("https://acme.slack.com/x|<!channel>"),
        "huge-link": entry("https://acme.slack.com/" + "a" * 100_000),
        MARKUP: entry(good),
        "evil\nline": entry(good),
        HUGE: entry(good),
    }
    try:
        store.client.hset(key, mapping=hostile)
        store.client.hset(key, b"bad-\xff", b"\xff{")
        few = elsewhere(shared.entries(Cause.RATE_LIMITED, "docker.io", now), "me")
        assert sorted(few) == ["lookalike", "markup-link", "phish", "plain-http", "prod-us"], few
        only = str(elsewhere_line(few))
        for bad in ("evil.example", "http://", "a" * 600, "<!channel>", "Re-authenticate"):
            assert bad not in only, (bad, only)
        assert f"<{good}|prod-us>" in only and only.count("<https://") == 1, only

        # a flood of 500 fake clusters: a bounded read, a bounded map, one short line
        store.client.hset(key, mapping={f"fake-{n:03d}": entry(good) for n in range(500)})
        entries = shared.entries(Cause.RATE_LIMITED, "docker.io", now)
        assert len(entries) <= MAX_READ, len(entries)
        others = elsewhere(entries, "me")
        assert len(others) == MAX_KEPT, len(others)
        assert all(is_dns1123_label(n) for n in others)
        assert len(json.dumps(others)) < 20_000
        line = str(elsewhere_line(others))
        assert len(line) < 3000 and "…and 40 more" in line, line
        assert not markup_problems(re.sub(rf"<{re.escape(good)}\|[a-z0-9-]+>", "", line)), line
    finally:
        store.client.delete(key)
        store.client.close()


# -- the request bus ----------------------------------------------------------------------------
def _genuine(agents: Fleet, b: str, name: str, age: float = 0) -> dict[str, str]:
    body = slash_command(f"clusters --cluster {b}", user_id=CAROL, channel_id=ALERTS[0],
                         response_url=agents.slack.response_url(name))
    headers = sign(body, SIGNING_SECRET, int(time.time() - age))
    return {"body": body.decode(), "content_type": FORM_TYPE, "from": "eu",
            "timestamp": headers["X-Slack-Request-Timestamp"],
            "signature": headers["X-Slack-Signature"], "sent_at": repr(time.time())}


def test_hostile_bus_entries_never_stop_the_consumer_nor_fill_its_log(
        agents: Fleet, sims: tuple[SimCluster, SimCluster],
        caplog: pytest.LogCaptureFixture) -> None:
    """Into B's stream: a 10 MB body, an entry of no fields it knows, non-UTF-8 bytes, a
    genuine signature over another body; then a genuine request, which still runs."""
    b = agents.name("us")
    agents.beat(b)
    b_agent = agents.replica(b, sims[1], APPROVERS=CAROL, BUS_CLAIM_IDLE_SECONDS="1")
    stream = agents.fleet_key("bus", b)
    genuine = _genuine(agents, b, "genuine")
    other = _genuine(agents, b, "other")
    with caplog.at_level(logging.INFO, logger="bot.chatops.bus"):
        agents.redis.xadd(stream, {**genuine, "body": "payload=" + "x" * 10_000_000})
        agents.redis.xadd(stream, {"junk": "1"})
        agents.redis.xadd(stream, {"body": b"\xff\xfe" + genuine["body"].encode(),
                                   "timestamp": genuine["timestamp"].encode(),
                                   "signature": genuine["signature"].encode(),
                                   "from": b"\xff\xfe", "content_type": FORM_TYPE})
        agents.redis.xadd(stream, {**genuine, "body": other["body"]})
        time.sleep(0.5)
        agents.redis.xadd(stream, genuine)
        wait_for(lambda: texts(agents.slack, "genuine"), 20, "the genuine request's answer")
        wait_for(lambda: not agents.redis.xpending(stream, GROUP)["pending"], 10,
                 "every entry acknowledged")
    counts = bus_counts([b_agent])
    assert counts.get("refused_forged") == 4 and counts.get("executed") == 1, counts
    assert agents.slack.responses("other") == []
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.chatops.bus"]
    assert lines and max(len(line) for line in lines) < 500, max(map(len, lines))
    assert not any(genuine["signature"][3:] in line for line in lines)
    assert not any("payload=" in line for line in lines)
    assert MAX_BODY < 10_000_000


def test_a_genuine_entry_replayed_after_it_ran_is_a_duplicate_even_past_slacks_window(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """A genuine entry copied back into the stream after it ran: within Slack's window and
    after it. Before, the late copy told the person "nothing was done, send it again" about
    a request that had run; a stale one replayed told them again every time."""
    b = agents.name("us")
    agents.beat(b)
    b_agent = agents.replica(b, sims[1], APPROVERS=CAROL)
    bus = b_agent.runtime.bus
    assert bus is not None
    stream = agents.fleet_key("bus", b)
    ran = _genuine(agents, b, "ran", age=280)  # inside Slack's window, by 20 s
    agents.redis.xadd(stream, ran)
    wait_for(lambda: texts(agents.slack, "ran"), 20, "the request's answer")
    answers = len(texts(agents.slack, "ran"))
    agents.redis.xadd(stream, ran)  # inside the window
    wait_for(lambda: bus_counts([b_agent]).get("duplicate") == 1, 10, "the first replay")
    bus.clock = lambda: time.time() + 60  # B's agent reads on a minute later: past the window
    agents.redis.xadd(stream, ran)
    stale = _genuine(agents, b, "stale", age=400)  # never ran: its person hears it once
    for _ in range(3):
        agents.redis.xadd(stream, stale)
    wait_for(lambda: bus_counts([b_agent]).get("duplicate") == 4, 10, "every replay handled")
    time.sleep(0.5)
    assert len(texts(agents.slack, "ran")) == answers, texts(agents.slack, "ran")
    assert not any("nothing was done" in t for t in texts(agents.slack, "ran"))
    assert len(texts(agents.slack, "stale")) == 1, texts(agents.slack, "stale")
    counts = bus_counts([b_agent])
    assert (counts.get("executed"), counts.get("dropped_stale")) == (1, 1), counts


# -- button routing -----------------------------------------------------------------------------
def test_a_copied_incident_does_not_capture_the_click(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """A hostile agent ("aaa-…", listed first) copies B's incident record under its own
    prefix, to have the click on B's alert (a signed Slack request, its response_url able to
    rewrite the alert) delivered to its stream. A copy of the id alone: the click goes where
    the message was posted, B. A copy down to channel and ts: nobody can tell, so the click
    is refused in words and logged, and the hostile stream gets nothing either way."""
    a, b = agents.name("eu"), agents.name("us")
    mallory = f"aaa-{uuid.uuid4().hex[:6]}"
    agents.clusters.add(mallory)
    for name in (a, b, mallory):
        agents.beat(name)
    a_agent = agents.replica(a, sims[0], APPROVERS=ALICE)
    agents.replica(b, sims[1], APPROVERS=CAROL)
    failing_web(sims[1])
    alert = alert_with(agents.slack, actions.RESTART)
    incident_id = button_value(alert, actions.RESTART)
    b_key = agents.cluster_key(b, "incident", incident_id)
    # Slack shows the alert before the bot records where it went: copy the finished record
    original = wait_for(lambda: (lambda r: r if r.get("channel") and r.get("thread_ts") else None)(
        agents.redis.hgetall(b_key)), 10, "B's incident record with its channel and thread")
    copy_key = agents.cluster_key(mallory, "incident", incident_id)

    def click(name: str) -> None:
        reply = a_agent.client.form(block_action(
            actions.RESTART, incident_id, message=pressed_message(alert), user_id=CAROL,
            response_url=agents.slack.response_url(name), channel_id=alert.channel))
        assert reply.status == 200, reply.text

    agents.redis.hset(copy_key, mapping={"id": incident_id, "channel": "C0EVIL", "thread_ts":
                                         "1.1"})
    click("id-only")
    wait_for(lambda: agents.redis.xlen(agents.fleet_key("bus", b)) == 1, 10, "B's stream")
    assert agents.redis.xlen(agents.fleet_key("bus", mallory)) == 0

    agents.redis.hset(copy_key, mapping=original)
    click("full-copy")
    [said] = wait_for(lambda: texts(agents.slack, "full-copy"), 10, "the refusal")
    assert "claimed by several clusters" in said and f"`{mallory}`" in said, said
    assert agents.redis.xlen(agents.fleet_key("bus", mallory)) == 0
    assert agents.redis.xlen(agents.fleet_key("bus", b)) == 1
