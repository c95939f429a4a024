"""Fault suite, Slack side: a slow Slack, 429/5xx bursts, a lost store write, a SIGKILLed replica.

Every test runs the real pipeline (scenario cluster → watch → diagnosis → incidents in real
Redis → slack_sdk → Slack stand-in) and checks the promises under the fault: zero lost
incidents (the alert and its resolution arrive), zero duplicate roots or thread replies,
recovery without help, and `/readyz` telling the truth throughout. Here the store and the
watch stay healthy, so the truth is 200 "ok" at every poll of the fault window: Slack trouble
is not a readiness failure (a pod that cannot reach Slack must stay in the Service to answer
Slack's requests), and the watch's window is short (tests.support.faults.STALE_AFTER) so a 200
cannot hide a watch that lost the API. A SIGKILLed replica's port refuses connections.

The stand-in's `set_latency` stores a message at once and answers late, and
`fail_next(..., effect=True)` stores it and then answers 5xx: both are "Slack has it, the bot
was not told", the case that used to double-post.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.alerts.incidents import IncidentManager, Timing
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.slack.notifier import SlackNotifier, web_client
from bot.store import RedisStore, StoreUnavailable
from tests.diagnosis.kubelet import NOW, pod, pull_failure
from tests.support.faults import (
    CHANNEL,
    Bot,
    ReadyzPoller,
    Replica,
    apply,
    assert_no_duplicate_replies,
    bad_tag,
    bot_environment,
    recover,
    replies,
    resolved,
    roots,
    wait_in_channel,
)
from tests.support.private_redis import PrivateRedis
from tests.support.redis import REDIS_URL, redis_store
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(60)]


# -- the in-process bot (a and b) ---------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store:
        for name, value in bot_environment(sim, slack, tmp_path / "kubeconfig").items():
            monkeypatch.setenv(name, value)
        yield {"sim": sim, "slack": slack, "store": store}


def test_slow_slack_answering_after_the_client_timeout_posts_root_and_replies_once(
        env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """(a) Slack stores every chat.postMessage at once and answers after 3 s; the client gives
    up after 2 s. The bot must find its own messages instead of posting them again, and stay
    ready all along: its posts hang, its store and watch do not."""
    sim, slack = env["sim"], env["slack"]
    slack.set_latency("chat.postMessage", 3.0)
    monkeypatch.setenv("SLACK_TIMEOUT_SECONDS", "2")
    bot = Bot(store=env["store"])
    try:
        with ReadyzPoller(bot.readyz) as readiness:
            apply(sim, bad_tag("web"))
            wait_in_channel(slack, lambda: roots(slack), 20, "the root message")
            apply(sim, bad_tag("web", replicas=2))  # a second pod joins: one thread update
            wait_in_channel(slack, lambda: any("2 pods" in r.text for r in replies(slack)), 25,
                            "the thread update")
            recover(sim, bad_tag("web", replicas=2))
            wait_in_channel(slack, lambda: resolved(slack), 25, "the resolution")
            time.sleep(4)  # longer than one slow post: a duplicate would land now
        assert len(roots(slack)) == 1, [m.text for m in roots(slack)]
        assert_no_duplicate_replies(slack)
        assert len(resolved(slack)) == 1
        assert bot.runtime.manager.active_ids() == set()  # nothing lost, nothing left pending
        readiness.assert_ok_throughout("slow Slack", min_answers=20)
    finally:
        bot.stop()


def test_429_and_5xx_bursts_deliver_each_message_once_after_the_wait(
        env: dict[str, Any]) -> None:
    """(b) Two 429s (Retry-After 1 s), two 500s before Slack stored anything, then a 503 that
    Slack answered after storing the message; the same for the thread update. The bot stays
    ready through every burst."""
    sim, slack = env["sim"], env["slack"]

    def burst() -> None:
        slack.fail_next("chat.postMessage", status=429, retry_after=1, count=2)
        slack.fail_next("chat.postMessage", status=500, count=2)
        slack.fail_next("chat.postMessage", status=503, count=1, effect=True)

    burst()
    bot = Bot(store=env["store"])
    try:
        with ReadyzPoller(bot.readyz) as readiness:
            apply(sim, bad_tag("api"))
            wait_in_channel(slack, lambda: roots(slack), 20, "the root message")
            first = min(c.at for c in slack.calls_to("chat.postMessage"))
            original = roots(slack)[0].original
            assert original is not None and original.at - first >= 2.0  # waited Retry-After
            burst()
            apply(sim, bad_tag("api", replicas=2))
            wait_in_channel(slack, lambda: any("2 pods" in r.text for r in replies(slack)), 25,
                            "the thread update")
            recover(sim, bad_tag("api", replicas=2))
            wait_in_channel(slack, lambda: resolved(slack), 20, "the resolution")
            time.sleep(2)
        assert len(roots(slack)) == 1, [m.text for m in roots(slack)]
        assert_no_duplicate_replies(slack)
        assert bot.runtime.manager.active_ids() == set()
        failed = [c.status for c in slack.calls_to("chat.postMessage") if c.status >= 429]
        assert sorted(failed) == [429] * 4 + [500] * 4 + [503] * 2, failed  # both bursts seen
        readiness.assert_ok_throughout("429/5xx bursts", min_answers=20)
    finally:
        bot.stop()


# -- a store write lost right after the post (defect 4) --------------------------------------------
def test_root_posted_but_not_recorded_is_found_not_posted_again(tmp_path: Path) -> None:
    """Redis stops taking writes while chat.postMessage is in flight: the post succeeds, the
    bot cannot record it, its claim expires. The next tick (here a second replica) must adopt
    the message Slack already shows, not post a second root."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        with SlackStandIn() as slack:
            store = RedisStore(server.url, prefix="d4", socket_timeout=0.3)
            timing = Timing(group_wait=10, group_interval=60, repeat_interval=3600,
                            claim_ttl=1.0)

            def bot() -> IncidentManager:
                notifier = SlackNotifier(web_client(slack.token, slack.api_url), CHANNEL,
                                         store, min_interval=0.01)
                return IncidentManager(store, notifier, cluster="prod", timing=timing)

            name = "web-7d9f8b6c5d-00000"
            image = "web:lates"
            error = ('rpc error: code = NotFound desc = failed to pull and unpack image '
                     '"docker.io/library/web:lates": not found')
            result = diagnose(PodFacts(
                pod=pod(image, name=name, container="web",
                        owner=("ReplicaSet", "web-7d9f8b6c5d")),
                events=pull_failure(image, error, pod_name=name, container="web"), now=NOW))
            first = bot()
            first.observe(result, now=NOW.timestamp())
            slack.set_latency("chat.postMessage", 1.0)

            def cut_redis_once_posted() -> None:
                wait_for(lambda: roots(slack), 10, "the post to reach Slack")
                server.pause_writes(3.0)

            cutter = threading.Thread(target=cut_redis_once_posted)
            cutter.start()
            with pytest.raises(StoreUnavailable):
                first.tick(now=NOW.timestamp() + 11)
            cutter.join()
            assert len(roots(slack)) == 1
            slack.clear_latency()
            second = bot()  # another replica (or the same one, later)
            wait_for(lambda: second.store.ping() and _writable(server), 10, "writes back")
            time.sleep(timing.claim_ttl)  # the first replica's claim runs out
            second.tick(now=NOW.timestamp() + 12)
            second.tick(now=NOW.timestamp() + 13)
            assert len(roots(slack)) == 1, [m.text for m in roots(slack)]
            [incident_id] = second.active_ids()
            incident = second.load(incident_id)
            assert incident is not None and incident.state == "open"
            assert incident.thread_ts == roots(slack)[0].ts
    finally:
        server.stop()


def _writable(server: PrivateRedis) -> bool:
    try:
        return bool(redis.Redis.from_url(server.url, socket_timeout=0.2).set("probe", "1"))
    except redis.RedisError:
        return False


# -- a replica SIGKILLed while its post is in flight (c) -----------------------------------------
def recorded_thread(cluster: str) -> str | None:
    """The thread_ts the store holds for the (only) incident of `cluster`, if open."""
    store = RedisStore(REDIS_URL, prefix=f"ipb:{cluster}")
    for incident_id in store.smembers(store.key("incidents", "active")):
        fields = store.hgetall(store.key("incident", incident_id))
        if fields.get("state") == "open":
            return fields.get("thread_ts") or None
    return None


@pytest.mark.parametrize("pods_recover", ["after the takeover", "before the takeover"])
def test_replica_killed_between_claim_and_record_is_recovered_by_the_next(
        tmp_path: Path, pods_recover: str) -> None:
    """(c) Replica A claims the incident and posts the root; Slack stores it but answers late;
    A is SIGKILLed before it can record the post. Replica B, started afterwards, must take
    over by itself once A's claim expires: one root, and the resolution in its thread. When
    the pods recover before B takes over, the incident must not be discarded as "never
    posted": the root is in the channel and needs its resolution.

    `/readyz` over HTTP, polled all along: A is 200 ok while its post hangs on Slack, and its
    port refuses connections from the kill on (it is really gone); B, the surviving replica,
    is 200 ok from its first ready answer to the end (taking over is not being unready)."""
    cluster = f"faults-{uuid.uuid4().hex[:8]}"
    objects = bad_tag("web")
    log = tmp_path / "bot.log"
    with SimCluster() as sim, SlackStandIn() as slack:
        env = {**os.environ, **bot_environment(
            sim, slack, tmp_path / "kc", REDIS_URL=REDIS_URL, CLUSTER_NAME=cluster,
            CLAIM_TTL_SECONDS="4", LOG_LEVEL="WARNING")}
        slack.set_latency("chat.postMessage", 8.0)  # stored at once, answered in 8 s
        a = Replica(env, log)
        b: Replica | None = None
        a_ready = ReadyzPoller(a.readyz).start()
        b_ready: ReadyzPoller | None = None
        try:
            wait_for(lambda: any(answer[1:] == (200, "ok") for answer in a_ready.answers),
                     20, "replica A ready")
            apply(sim, objects)
            wait_for(lambda: roots(slack), timeout=30, what="replica A's root reaching Slack")
            posted_at = time.monotonic()
            time.sleep(1.5)  # A's post hangs on Slack (answer in 8 s): A is still ready
            kill_at = time.monotonic()
            a.process.send_signal(signal.SIGKILL)  # "Slack stored it", "A recorded it"
            a.process.wait(5)
            killed_at = time.monotonic()
            slack.clear_latency()
            if pods_recover == "before the takeover":
                recover(sim, objects)
            b = Replica(env, log)
            b_ready = ReadyzPoller(b.readyz).start()
            if pods_recover == "after the takeover":
                [root] = roots(slack)
                wait_in_channel(slack, lambda: recorded_thread(cluster) == root.ts, 20,
                                "replica B adopting the root Slack already has")
                recover(sim, objects)
            try:
                wait_for(lambda: resolved(slack), timeout=30,
                         what="replica B resolving the incident in the thread")
            except AssertionError as exc:
                calls = [(c.method, c.status, c.error) for c in slack.calls]
                raise AssertionError(f"{exc}\ncalls: {calls}\n"
                                     f"{log.read_text(errors='replace')[-4000:]}") from None
            time.sleep(2)
            a_ready.stop()
            b_ready.stop()
            [root] = roots(slack)
            [resolution] = resolved(slack)
            assert resolution.thread_ts == root.ts
            assert root.edited and root.text.startswith("Resolved:")
            a_ready.assert_ok_throughout("replica A until SIGKILL", end=kill_at - 0.3,
                                         after_first_ok=True)
            a_ready.assert_ok_throughout("replica A while its post hangs on Slack",
                                         start=posted_at, end=kill_at - 0.3)
            a_ready.assert_refused_throughout("replica A after SIGKILL", start=killed_at)
            assert a.refuses_connections()
            b_ready.assert_ok_throughout("replica B, the survivor", after_first_ok=True)
        finally:
            for poller in (a_ready, b_ready):
                if poller is not None:
                    poller.stop()
            for replica in (a, b):
                if replica is not None:
                    replica.stop()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"ipb:{cluster}:*"))
            if keys:
                client.delete(*keys)
            client.close()
        output = log.read_text(errors="replace")
        assert "Traceback" not in output, output
