"""How the bot copes with an event storm: prints measured figures (not a test).

    .venv/bin/python bench/storm.py [PODS] [DEPLOYMENTS]

A registry outage makes PODS pods across DEPLOYMENTS deployments fail; the kubelet repeats each
pod's events (MODIFIED with higher counts). Measured end to end through the real pipeline
(scenario cluster → watcher → diagnosis → Redis or in-process store → Slack stand-in):
events written, diagnoses run, Slack messages sent, time to the first alert.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import build_runtime
from bot.config import Settings
from bot.diagnosis.engine import diagnose
from bot.kube.client import KubeClient
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.store import MemoryStore, open_store


def main(pods: int = 200, deployments: int = 20) -> None:
    per = max(1, pods // deployments)
    with tempfile.TemporaryDirectory() as tmp, SimCluster() as sim, SlackStandIn() as slack:
        settings = Settings.model_validate({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": "#imagepull-alerts", "GROUP_WAIT_SECONDS": 2,
            "GROUP_INTERVAL_SECONDS": 5, "REGISTRY_PROBE": "false"})
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(Path(tmp) / "kc")))
        redis_url = os.environ.get("REDIS_URL")
        store = open_store(redis_url, prefix=f"bench{os.getpid()}") if redis_url \
            else MemoryStore()
        runtime = build_runtime(settings, kube=kube, store=store)
        runtime.start()
        started = time.monotonic()
        events = 0
        for d in range(deployments):
            image = f"docker.io/library/svc{d}:1.0"
            for obj in factory.failing_deployment(
                    "shop", f"svc{d}", image, factory.containerd_error("rate_limited", image),
                    replicas=per):
                sim.apply(obj)
                events += obj["kind"] == "Event"
        for ev in sim.list("Event", "shop"):  # the kubelet repeating itself
            if ev.get("reason") in ("BackOff", "Failed"):
                for count in range(2, 5):
                    sim.bump_event("shop", ev["metadata"]["name"], count=count)
                    events += 1
        first = None
        while time.monotonic() - started < 60:
            if slack.channel_history("imagepull-alerts"):
                first = first or time.monotonic() - started
                if runtime.pipeline.drain(0.1) and not runtime.pipeline._queue:
                    break
            time.sleep(0.05)
        time.sleep(settings.group_interval_seconds + 1.5)
        runtime.stop()
        # every diagnosis reads its pod once: count those reads at the cluster
        diagnosed = len(sim.requests_matching("GET", r"/namespaces/shop/pods/[^/]+$"))
        posts = slack.calls_to("chat.postMessage")
        print(f"pods failing           {per * deployments} in {deployments} deployments")
        print(f"events written         {events} (ADDED + MODIFIED repeats)")
        print(f"diagnoses run          {diagnosed} (coalesced per pod)")
        print(f"root alerts            {len(slack.channel_history('imagepull-alerts'))}")
        print(f"Slack messages total   {len(posts)} postMessage + "
              f"{len(slack.calls_to('chat.update'))} update")
        print(f"first alert after      {first:.2f} s (group_wait {settings.group_wait_seconds} s)"
              if first else "first alert after      (none within 60 s)")
        print(f"store                  {'Redis' if redis_url else 'in-process'}")
        if redis_url:  # leave the server as we found it
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(f"{store.prefix}:*"))
            if keys:
                client.delete(*keys)


def bench_diagnose(n: int = 2000) -> None:
    """Pure diagnosis throughput on one realistic pod (no I/O)."""
    image = "registry.internal/shop/web:v3"
    objs = factory.failing_deployment("shop", "web", image,
                                      factory.containerd_error("not_found", image))
    from bot.diagnosis.facts import PodFacts

    pod = next(o for o in objs if o["kind"] == "Pod")
    events = [o for o in objs if o["kind"] == "Event"]
    started = time.perf_counter()
    for _ in range(n):
        diagnose(PodFacts(pod=pod, events=events))
    took = time.perf_counter() - started
    print(f"diagnose()             {n / took:,.0f} pods/s ({took / n * 1e6:.0f} µs each)")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    bench_diagnose()
    main(*args)
