"""Fault suite: Redis killed and the Kubernetes API refusing connections, mid-incident.

The real bot (watch → pipeline → incidents → Slack) against the scenario cluster, the Slack
stand-in and a private redis-server. For each outage: zero lost incidents (every failing pod
is announced in Slack), zero duplicate roots, recovery without help, `/readyz` telling the
truth throughout (503 naming the part that is down, 200 after), and a bounded load on the
API while it lasts (issue 8, defects 6 and 7).

The load bound is a formula, not a stopwatch: the pipeline's outage gate lets one probe
diagnosis through per back-off step, and each step waits at least half its length
(bot.alerts.pipeline.OUTAGE_BACKOFF), so an outage of T seconds sees at most `max_attempts(T)`
diagnoses, each reading its pod once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.alerts.pipeline import OUTAGE_BACKOFF
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.faults import (
    STALE_AFTER,
    Bot,
    apply,
    bad_tag,
    bot_environment,
    pods_of,
    roots,
    watch_readyz,
)
from tests.support.private_redis import PrivateRedis
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(90)]

POD_READS = r"^/api/v1/namespaces/shop/pods/[^/]+$"  # one per diagnosis (bench/storm.py)


def max_attempts(seconds: float, workers: int = 2) -> int:
    """Most diagnoses an outage of `seconds` can start: the ones in flight when it began
    (one per worker), then one probe per gate step, each step at least half its length."""
    attempts, elapsed = 1, 0.0
    while True:
        elapsed += OUTAGE_BACKOFF.step(attempts) / 2
        if elapsed > seconds:
            return attempts + workers - 1
        attempts += 1


class Kubelet:
    """Repeats every BackOff event of the cluster each second, as kubelets do: signals keep
    arriving during the outage (while the watch sees them)."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for ev in self.sim.list("Event", "shop"):
                if ev.get("reason") == "BackOff":
                    self.sim.bump_event("shop", ev["metadata"]["name"])

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        redis_server: PrivateRedis) -> Iterator[dict[str, Any]]:
    with SimCluster() as sim, SlackStandIn() as slack:
        settings = bot_environment(sim, slack, tmp_path / "kc", REDIS_URL=redis_server.url)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield {"sim": sim, "slack": slack, "redis": redis_server}


@pytest.fixture
def bot(env: dict[str, Any]) -> Iterator[Bot]:
    running = Bot()
    yield running
    running.stop()


def pod_reads(sim: SimCluster, start: float, end: float) -> int:
    return sum(1 for r in sim.requests_matching("GET", POD_READS) if start <= r.at <= end)


def test_redis_killed_mid_incident_loses_nothing(env: dict[str, Any], bot: Bot) -> None:
    sim, slack, redis_server = env["sim"], env["slack"], env["redis"]
    web = bad_tag("web", 3)
    apply(sim, web)
    wait_for(lambda: bot.announced_pods().get("shop/deployment/web") == pods_of(web),
             20, "the web incident posted with its 3 pods")
    assert bot.readyz() == (200, "ok")

    with Kubelet(sim):
        outage = 20.0
        redis_server.kill()
        down_at, t0 = time.monotonic(), time.time()
        api = bad_tag("api", 2)  # a new incident during the outage
        web4 = bad_tag("web", 4)  # and a fourth pod for the open one
        apply(sim, [*api, *web4])
        answers = watch_readyz(bot.readyz, lambda: time.monotonic() - down_at >= outage)
        t1 = time.time()
        # readyz: 503 naming the store once the kill is seen, for the rest of the outage
        late = [(status, body) for at, status, body in answers if at - down_at > 2.5]
        assert late and all(status == 503 and "store unreachable" in body
                            for status, body in late), late[:3]
        reads, bound = pod_reads(sim, t0, t1), max_attempts(t1 - t0)
        assert reads <= bound, (reads, bound)
        pending = bot.runtime.pipeline.pending_retries()
        assert len(pending) == len(set(pending))  # one retry per pod, never a chain
        assert b"imagepull_bot_diagnoses_paused 1.0" in bot.runtime.metrics.render()
        assert len(roots(slack)) == 1  # nothing posted without the store
        redis_server.start()  # same port, same data (append-only file)
        up_at = time.monotonic()

        wait_for(lambda: bot.announced_pods().get("shop/deployment/api") == pods_of(api),
                 30, "the api incident posted after Redis is back")
        # (20 s: the update waits for group_interval after the gate's probe, and on 2 busy
        # cores the five diagnoses due at once can take several seconds)
        wait_for(lambda: bot.announced_pods().get("shop/deployment/web") == pods_of(web4),
                 20, "the web incident's fourth pod announced")
        wait_for(lambda: bot.readyz() == (200, "ok"), 10, "/readyz 200 after the outage")
        print(f"redis outage {outage:.0f} s: {reads} pod reads (bound {bound}); "
              f"recovered in {time.monotonic() - up_at:.1f} s")
    time.sleep(2.5)  # more than group_interval: a duplicate root would show up now
    assert len(roots(slack)) == 2


def test_api_refusing_connections_for_40_s_loses_nothing(env: dict[str, Any], bot: Bot
                                                         ) -> None:
    sim, slack = env["sim"], env["slack"]
    web = bad_tag("web", 3)
    apply(sim, web)
    wait_for(lambda: bot.announced_pods().get("shop/deployment/web") == pods_of(web),
             20, "the web incident posted with its 3 pods")
    assert bot.readyz() == (200, "ok")
    pipeline = bot.runtime.pipeline

    outage = 40.0
    attempts_before = pipeline.attempts
    sim.down(refuse=True)  # every open connection cut; the port refuses until up()
    down_at = time.monotonic()
    api = bad_tag("api", 2)  # written meanwhile; served once the API is back
    web4 = bad_tag("web", 4)
    apply(sim, [*api, *web4])
    answers = watch_readyz(bot.readyz, lambda: time.monotonic() - down_at >= outage)

    # readyz: 200 while within the watch's window, then 503 naming the watch and why
    grace = [status for at, status, _ in answers if at - down_at < STALE_AFTER - 3]
    stale = [(status, body) for at, status, body in answers
             if at - down_at > STALE_AFTER + 3]
    assert grace and set(grace) == {200}, grace
    assert stale and all(
        status == 503 and "watch of events in all namespaces: no contact for" in body
        and "is unreachable" in body and "store" not in body for status, body in stale), \
        stale[:3]
    # the refused connections never reach the server: the pipeline counts its diagnoses
    attempts = pipeline.attempts - attempts_before
    bound = max_attempts(time.monotonic() - down_at)
    assert attempts <= bound, (attempts, bound)
    pending = pipeline.pending_retries()
    assert len(pending) == len(set(pending))
    sim.up()  # the same port: the bot's kubeconfig is still right
    up_at = time.monotonic()

    wait_for(lambda: bot.announced_pods().get("shop/deployment/api") == pods_of(api),
             25, "the api incident posted after the API is back")
    wait_for(lambda: bot.announced_pods().get("shop/deployment/web") == pods_of(web4),
             10, "the web incident's fourth pod announced")
    wait_for(lambda: bot.readyz() == (200, "ok"), 10, "/readyz 200 after the outage")
    print(f"API refused {outage:.0f} s: {attempts} diagnoses tried (bound {bound}); "
          f"recovered in {time.monotonic() - up_at:.1f} s")
    time.sleep(2.5)
    assert len(roots(slack)) == 2


def test_api_answering_503_is_probed_not_hammered(env: dict[str, Any], bot: Bot) -> None:
    """The same bound, counted at the server: an apiserver that answers 503 for 20 s while
    the kubelets keep writing (the watch is cut, the sweep and incident re-checks go on)."""
    sim, slack = env["sim"], env["slack"]
    objects = [*bad_tag("web", 3), *bad_tag("api", 3)]
    apply(sim, objects)
    wait_for(lambda: len(bot.announced_pods()) == 2 and all(
        len(p) == 3 for p in bot.announced_pods().values()), 20, "two incidents, 6 pods")
    with Kubelet(sim):
        outage = 20.0
        sim.down()
        t0 = time.time()
        time.sleep(outage)
        t1 = time.time()
        sim.up()
    reads, bound = pod_reads(sim, t0, t1), max_attempts(t1 - t0)
    assert 0 < reads <= bound, (reads, bound)
    wait_for(lambda: bot.readyz() == (200, "ok"), 15, "/readyz 200 after the outage")
    time.sleep(2.5)
    assert len(roots(slack)) == 2
