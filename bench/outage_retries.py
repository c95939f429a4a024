"""API load while the Kubernetes API or Redis is down: prints measured figures (not a test).

    .venv/bin/python bench/outage_retries.py [redis|api503|refuse] [PODS] [SECONDS] [SWEEP_S]

PODS failing pods (bad tags, three per deployment) are posted as incidents; then Redis is
killed (a private redis-server with an append-only file, restarted with its data), or the
scenario cluster answers 503, or refuses connections, for SECONDS while the kubelet keeps
repeating the pods' BackOff events every 2 s. Measured at the scenario cluster: API requests
per second before, during and right after the outage; in the bot: the most retry timers or
waiting retries one pod had at once, and the diagnoses tried during the outage (where the
pipeline counts them); after it: roots posted per incident.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import build_runtime
from bot.config import Settings
from bot.kube.client import KubeClient
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.store import RedisStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "always", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    deadline = time.monotonic() + 5
    while not store.ping() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def _retries_per_pod(runtime: object) -> int:
    """Most retries one pod has pending: threading.Timer chains (before the fix) or the
    pipeline's own count (after)."""
    pipeline = runtime.pipeline  # type: ignore[attr-defined]
    timers = Counter(tuple(t.args) for t in threading.enumerate()
                     if isinstance(t, threading.Timer)
                     and getattr(t, "function", None) == pipeline.submit)
    most = max(timers.values(), default=0)
    pending = getattr(pipeline, "pending_retries", None)
    if pending is not None:
        most = max(most, max(Counter(pending()).values(), default=0))
    return most


def main(mode: str = "redis", pods: int = 6, seconds: float = 25.0, sweep: int = 30) -> None:
    per = 3
    deployments = max(1, pods // per)
    with tempfile.TemporaryDirectory() as tmp, SimCluster() as sim, SlackStandIn() as slack:
        port = _free_port()
        redis_proc = _redis(port, tmp)
        settings = Settings.model_validate({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": "#imagepull-alerts", "GROUP_WAIT_SECONDS": 1,
            "GROUP_INTERVAL_SECONDS": 2, "SWEEP_INTERVAL_SECONDS": sweep,
            "REGISTRY_PROBE": "false", "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "CLUSTER_NAME": f"bench{os.getpid()}"})
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(Path(tmp) / "kc")))
        runtime = build_runtime(settings, kube=kube)
        runtime.start()
        backoffs: list[str] = []
        for d in range(deployments):
            image = f"registry.internal/shop/svc{d}:v9"
            for obj in factory.failing_deployment(
                    "shop", f"svc{d}", image, factory.containerd_error("not_found", image),
                    replicas=per):
                sim.apply(obj)
                if obj["kind"] == "Event" and obj["reason"] == "BackOff":
                    backoffs.append(obj["metadata"]["name"])
        deadline = time.monotonic() + 30
        while len(slack.channel_history("imagepull-alerts")) < deployments:
            if time.monotonic() > deadline:
                raise SystemExit("no alerts within 30 s")
            time.sleep(0.1)
        kubelet_stop = threading.Event()

        def kubelet() -> None:  # BackOff repeats, as the kubelet writes them
            while not kubelet_stop.wait(2.0):
                for name in backoffs:
                    sim.bump_event("shop", name)

        threading.Thread(target=kubelet, daemon=True).start()
        time.sleep(5)
        t0 = time.time()
        time.sleep(10)
        t1 = time.time()
        if mode == "redis":
            redis_proc.kill()
            redis_proc.wait()
        elif mode == "api503":
            sim.down()
        else:
            sim.down(refuse=True)
        most = 0
        tried = getattr(runtime.pipeline, "attempts", None)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            most = max(most, _retries_per_pod(runtime))
            time.sleep(0.2)
        t2 = time.time()
        if tried is not None:
            tried = runtime.pipeline.attempts - tried
        if mode == "redis":
            redis_proc = _redis(port, tmp)
        else:
            sim.up()
        time.sleep(5)
        t3 = time.time()
        time.sleep(max(10, 2 * settings.group_interval_seconds))
        kubelet_stop.set()
        runtime.stop()
        redis_proc.kill()

        def rate(a: float, b: float) -> tuple[int, float]:
            n = sum(1 for r in list(sim.requests) if a <= r.at < b)
            return n, n / (b - a)

        roots = slack.channel_history("imagepull-alerts")
        print(f"mode                     {mode}, {per * deployments} failing pods in "
              f"{deployments} deployments, sweep every {sweep} s")
        print("API requests before      {} ({:.1f}/s over 10 s)".format(*rate(t0, t1)))
        print("API requests during      {} ({:.1f}/s over {:.0f} s outage)".format(
            *rate(t1, t2), t2 - t1))
        print("API requests after       {} ({:.1f}/s in the first 5 s)".format(*rate(t2, t3)))
        print(f"retries pending, 1 pod   at most {most} at once")
        print(f"diagnoses tried during   {tried if tried is not None else 'not counted'}")
        print(f"roots posted             {len(roots)} for {deployments} incidents")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "redis"
    nums = [float(a) for a in sys.argv[2:5]]
    main(mode, int(nums[0]) if nums else 6, nums[1] if len(nums) > 1 else 25.0,
         int(nums[2]) if len(nums) > 2 else 30)
