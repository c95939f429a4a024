"""A hostile storm keeps the bot's memory bounded (issue 10: "a hostile storm (pods created and
deleted in a loop) keeps RSS bounded").

The bot is `python -m bot serve` as the Procfile runs it (a subprocess, so its VmRSS in
/proc/PID/status is its own and nothing of the test's), against the scenario cluster, the
Slack stand-in and real Redis. Round after round, new pods (new Deployments, so new pod, owner
and image names each round) fail to pull with the kubelet's events, are alerted, and are
deleted; the events expire two rounds after their pods (the apiserver's hour, compressed), so
the event watch sees its events both kept and deleted. After every round the test reads the
bot's RSS and its own gauges at `/metrics` (the pod view, the pipeline, the event watch's
processed map, open incidents).
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.faults import (
    CHANNEL,
    Replica,
    assert_no_duplicate_replies,
    bot_environment,
    resolved,
    roots,
)
from tests.support.redis import REDIS_URL
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROUNDS = 6
#: per round: one incident each (a tag that does not exist). Few incidents, many pods: the
#: Slack stand-in paces posts at Slack's 1 message/s per channel, pods cost no posts.
DEPLOYMENTS = 2
REPLICAS = 100  # pods per Deployment: 200 failing pods a round, 1,200 in all
EVENTS_KEPT_ROUNDS = 2  # a round's events are deleted (expire) two rounds after its pods
#: RSS growth allowed from after round 2 (warm: every code path has run, the caches and the
#: processed map have filled once) to after the last round, over the 800 pods of rounds 3-6.
#: Measured on 2 shared cores: 0.1-0.3 MB a round (1.1 MB over six rounds of 150 pods;
#: Python's allocator does not hand every freed arena back). A leak of the pods themselves
#: (5-15 KB each as the API sends them) would add 4-12 MB; 5 MB is several times the noise
#: seen. Smaller leaks (a SlimPod is 0.7 KB, an event entry 0.3 KB) hide in that noise,
#: which is why the structures themselves are checked through the bot's gauges too.
RSS_MARGIN_KB = 5 * 1024


def vm_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def gauges(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in
            re.findall(r"^(imagepull_bot_\w+) (\S+)$", text, re.MULTILINE)}


def round_objects(n: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for d in range(DEPLOYMENTS):
        image = f"registry.internal/storm/r{n}-app{d}:v{n}"
        objects += factory.failing_deployment("storm", f"r{n}-app{d}", image,
                                              factory.containerd_error("not_found", image),
                                              replicas=REPLICAS)
    return objects


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[tuple[SimCluster, SlackStandIn, Replica]]:
    cluster = f"storm-{uuid.uuid4().hex[:8]}"
    with SimCluster() as sim, SlackStandIn() as slack:
        env = {**os.environ, **bot_environment(sim, slack, tmp_path / "kubeconfig",
                                               REDIS_URL=REDIS_URL, CLUSTER_NAME=cluster,
                                               LOG_LEVEL="WARNING")}
        bot = Replica(env, tmp_path / "bot.log")
        try:
            wait_for(lambda: _ready(bot), 30, "the bot ready")
            yield sim, slack, bot
        finally:
            bot.stop()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"ipb:{cluster}:*"))
            if keys:
                client.delete(*keys)
            client.close()
            print((tmp_path / "bot.log").read_text()[-3000:])


def _ready(bot: Replica) -> bool:
    try:
        return bot.readyz()[0] == 200
    except OSError:
        return False


def test_a_hostile_storm_keeps_memory_bounded(
        stage: tuple[SimCluster, SlackStandIn, Replica],
        capsys: pytest.CaptureFixture[str]) -> None:
    """RSS after the last round is within RSS_MARGIN_KB of RSS after round 2 (bounds chosen
    from measurement, see there), and every per-pod structure is back to what the cluster
    holds now: nothing in the pod view or the pipeline, no open incident, the processed map
    no larger than the events still in the cluster (at most EVENTS_KEPT_ROUNDS + 1 rounds'
    worth, whatever the number of rounds). The channel: one root per Deployment, each
    resolved exactly once, no reply posted twice."""
    sim, slack, bot = stage
    pid = bot.process.pid
    start = time.monotonic()
    rss: list[int] = []
    events_by_round: list[list[str]] = []
    events_per_round = 0
    for n in range(ROUNDS):
        objects = round_objects(n)
        pods = [o for o in objects if o["kind"] == "Pod"]
        events = [o for o in objects if o["kind"] == "Event"]
        events_per_round = len(events)
        for obj in objects:
            sim.apply(obj)
        expected_roots = DEPLOYMENTS * (n + 1)
        wait_for(lambda want=expected_roots: len(roots(slack)) >= want, 30,
                 f"round {n}: {expected_roots} roots")
        wait_for(lambda: gauges(bot.port).get("imagepull_bot_pipeline_pods") == 0, 30,
                 f"round {n}: the pipeline drained")
        for pod in pods:
            sim.delete("Pod", pod["metadata"]["name"], "storm")
        events_by_round.append([e["metadata"]["name"] for e in events])
        if n >= EVENTS_KEPT_ROUNDS:  # the events of an older round expire
            for name in events_by_round[n - EVENTS_KEPT_ROUNDS]:
                sim.delete("Event", name, "storm")
        wait_for(lambda want=expected_roots: len(resolved(slack)) >= want, 30,
                 f"round {n}: {expected_roots} resolutions")
        wait_for(lambda: gauges(bot.port)["imagepull_bot_incidents_open"] == 0, 15,
                 f"round {n}: no open incident")
        rss.append(vm_rss_kb(pid))
    took = time.monotonic() - start
    final = gauges(bot.port)
    shown = {k.removeprefix("imagepull_bot_"): v for k, v in final.items()
             if any(part in k for part in ("view", "pipeline", "processed", "open"))}
    with capsys.disabled():
        print(f"\n{ROUNDS} rounds of {DEPLOYMENTS * REPLICAS} failing pods in {took:.1f} s; "
              f"VmRSS after each round (MB): {[round(kb / 1024, 1) for kb in rss]}; "
              f"growth after round 2: {(rss[-1] - rss[1]) / 1024:.1f} MB; gauges: {shown}")

    # memory does not grow with rounds
    assert rss[-1] - rss[1] <= RSS_MARGIN_KB, rss
    # every per-pod structure is back to what the cluster holds now
    assert final["imagepull_bot_view_pods"] == 0
    assert final["imagepull_bot_view_documents"] == 0
    assert final["imagepull_bot_view_pods_without_document"] == 0
    assert final["imagepull_bot_pipeline_pods"] == 0
    assert final["imagepull_bot_retries_pending"] == 0
    assert final["imagepull_bot_incidents_open"] == 0
    assert final["imagepull_bot_watch_processed_events"] <= \
        events_per_round * (EVENTS_KEPT_ROUNDS + 1)
    # the channel stays sane: one root per Deployment, each resolved once, nothing twice
    messages = roots(slack)
    assert len(messages) == DEPLOYMENTS * ROUNDS
    for n in range(ROUNDS):
        for d in range(DEPLOYMENTS):
            name = f"r{n}-app{d}"
            assert sum(name in m.text for m in messages) == 1, name
    for message in messages:
        assert sum("Resolved after" in r.text for r in message.replies) == 1, message.text
    assert_no_duplicate_replies(slack)
    assert slack.channel_history(CHANNEL) == messages
