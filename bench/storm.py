"""`make bench`: what one image-pull storm costs the bot, end to end (prints figures, not a test).

    .venv/bin/python bench/storm.py [SIZE ...] [--deployments D] [--ramp S] [--json] ...

For each SIZE, one run: the real bot (`python -m bot serve`, a subprocess, so its CPU time and
peak RSS are its own; `run_serve` builds it with `bot.app.build_runtime`, nothing patched)
against the scenario cluster (bot/sim SimCluster: the Kubernetes wire format, list/watch,
every request recorded), real Redis (``REDIS_URL``, default 127.0.0.1:6379, under a unique
``CLUSTER_NAME`` prefix whose keys are deleted afterwards) and the Slack stand-in.

The storm is the issue-10 measurement: SIZE pods in D Deployments (default SIZE/20) start
failing, 90 % behind one unreachable registry (i/o timeout: one shared-scope incident), 10 %
with a tag that does not exist (one incident per Deployment); the kubelet then repeats each
pod's Failed/BackOff events (``--repeats`` times, MODIFIED with a higher count). Then every pod
recovers as the kubelet reports it (status Running plus ``Pulled``/``Created``/``Started``).

Reported per run: pods failing, events written, time to the first root alert (from the first
failing pod), time until every failing pod is shown in the alerts (the pod counts in roots,
root edits and thread updates, summed over incidents), API requests by verb and resource per
failing pod (counted at the scenario cluster), Slack calls by method, the bot's CPU seconds
(utime + stime of its process, from /proc) and peak RSS (VmHWM), time until every root says
resolved; and the one-message-per-event baseline (kubewatch's model) computed from the same
event writes: how many messages it would post, and how long Slack's 1 message/s per channel
would take to deliver them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.diagnosis.engine import diagnose  # noqa: E402
from bot.kube.watch import pull_signal  # noqa: E402
from bot.sim import factory  # noqa: E402
from bot.sim.server import RecordedRequest, SimCluster  # noqa: E402
from bot.sim.slack import SlackCall, SlackStandIn  # noqa: E402
from tests.support.slack_requests import sign, slash_command  # noqa: E402

CHANNEL = "imagepull-alerts"
UNREACHABLE = "registry.corp.example:5000"  # the registry every node times out on
RESOURCES = ("pods", "events", "secrets", "serviceaccounts", "replicasets", "deployments",
             "nodes", "version")
VERBS = ("list", "watch", "get", "patch")
_CLK = os.sysconf("SC_CLK_TCK")


# -- the bot process ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """`python -m bot serve` with the bench's environment; CPU and memory read from /proc."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = int(env["PORT"])
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"], cwd=ROOT,
            env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT)
        self.rusage: Any = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the bot exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                            timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the bot was not ready within {timeout:.0f} s; see {self.log.name}")

    def cpu(self) -> float:
        """utime + stime of the bot process so far, in seconds (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK

    def memory(self) -> tuple[float, float]:
        """(RSS now, peak RSS) in MB."""
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    def stop(self) -> None:
        """SIGTERM (the bot stops cleanly), then reap it with its rusage."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(ChildProcessError):
                _, _, self.rusage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = 0
        self.log.close()


# -- slash-command acks during the storm --------------------------------------------------------
class AckProbe:
    """Signed `/imagepull` slash commands, as Slack sends them, every `interval` seconds
    while the storm and its resolution run; records how long the bot takes to answer each
    HTTP request (the ack Slack waits 3 s for). The command is `help`: it goes through the
    same gate, Bolt, middleware and ack as `diagnose` (whose work follows the ack on the
    response_url) but reads nothing from the cluster, so the API counts stay the alerting's."""

    def __init__(self, port: int, secret: str, slack: SlackStandIn, interval: float = 0.5
                 ) -> None:
        self.port = port
        self.secret, self.slack, self.interval = secret, slack, interval
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ack-probe", daemon=True)

    def start(self) -> AckProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            body = slash_command("help",
                                 response_url=self.slack.response_url(f"ack{n}"))
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       **sign(body, self.secret)}
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("POST", "/slack/events", body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except OSError:
                ok = False
            finally:
                conn.close()
            if ok:
                self.latencies.append(time.monotonic() - started)
            else:
                self.failures += 1

    def quantile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- what the alerts show -------------------------------------------------------------------------
_ROOT_PODS = re.compile(r"\*Pods failing\*\n(\d+)")
_UPDATE_PODS = re.compile(r"now (\d+) pods in")


def _texts(blocks: Any) -> Iterable[str]:
    for block in blocks or []:
        text = block.get("text")
        if isinstance(text, dict):
            yield str(text.get("text") or "")
        for item in block.get("fields") or []:
            yield str(item.get("text") or "")


def _pods_shown(call: SlackCall) -> int | None:
    for text in _texts(call.params.get("blocks")):
        m = _ROOT_PODS.search(text) or _UPDATE_PODS.search(text)
        if m:
            return int(m[1])
    return None


def _part(call: SlackCall) -> tuple[str, str] | None:
    meta = call.params.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta)
    payload = (meta or {}).get("event_payload") or {}
    if not payload.get("incident_id"):
        return None
    return str(payload["incident_id"]), str(payload.get("part"))


@dataclass
class AlertTimeline:
    """The alert channel read back from the stand-in's recorded calls."""

    first_root: float | None = None
    roots: dict[str, float] = field(default_factory=dict)  # incident → root posted at
    resolved: dict[str, float] = field(default_factory=dict)  # incident → resolved posted at
    all_shown: float | None = None  # when the pod counts first summed to the failing pods
    shown: int = 0  # the most pods shown at once

    @classmethod
    def read(cls, calls: list[SlackCall], failing: int, until: float) -> AlertTimeline:
        out = cls()
        by_ts: dict[str, str] = {}
        counts: dict[str, int] = {}
        for call in sorted(calls, key=lambda c: c.at):
            if not call.ok:
                continue
            incident: str | None = None
            if call.method == "chat.postMessage":
                named = _part(call)
                if named is None:
                    continue
                incident, part = named
                if part == "root":
                    by_ts[str(call.response.get("ts"))] = incident
                    out.roots.setdefault(incident, call.at)
                    out.first_root = out.first_root or call.at
                elif part == "resolved":
                    out.resolved.setdefault(incident, call.at)
            elif call.method == "chat.update":
                incident = by_ts.get(str(call.params.get("ts")))
            if incident is None or call.at > until:
                continue
            pods = _pods_shown(call)
            if pods is not None:
                counts[incident] = max(counts.get(incident, 0), pods)
                out.shown = max(out.shown, sum(counts.values()))
                if out.all_shown is None and out.shown >= failing:
                    out.all_shown = call.at
        return out


# -- API requests ---------------------------------------------------------------------------------
def classify(request: RecordedRequest) -> tuple[str, str]:
    """(verb, resource) of one request as RBAC would name them."""
    path = request.path
    if path == "/version":
        return "get", "version"
    parts = [p for p in path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]  # /api/v1 or /apis/G/V
    watch = parts[:1] == ["watch"] or request.param("watch") in ("true", "1")
    if parts[:1] == ["watch"]:
        parts = parts[1:]
    if parts[:1] == ["namespaces"] and len(parts) >= 3:
        parts = parts[2:]
    resource = parts[0] if parts else "discovery"
    method = request.method
    if method == "GET":
        verb = "watch" if watch else ("get" if len(parts) > 1 else "list")
    else:
        verb = {"PATCH": "patch", "POST": "create", "PUT": "update",
                "DELETE": "delete"}.get(method, method.lower())
    return verb, resource


def count_requests(requests: list[RecordedRequest], start: float, end: float) -> Counter[str]:
    return Counter("{} {}".format(*classify(r)) for r in requests if start <= r.at < end)


# -- the storm ------------------------------------------------------------------------------------
@dataclass
class Storm:
    pods: list[dict[str, Any]]
    writes: int = 0  # event writes (ADDED + MODIFIED)
    baseline_messages: int = 0  # one Slack message per pull-failure event write
    first_pod_at: float = 0.0
    last_failure_at: float = 0.0


def _deployments(size: int, deployments: int) -> list[tuple[str, str, str, int]]:
    """(namespace, name, image, replicas): 90 % of the pods behind the unreachable registry,
    10 % with a tag that does not exist, spread over up to ten namespaces."""
    bad = {d for d in range(deployments) if d % 10 == 9} or \
        ({deployments - 1} if deployments > 1 else set())
    out = []
    for d in range(deployments):
        replicas = size // deployments + (1 if d < size % deployments else 0)
        namespace = f"team-{d % 10}"
        if d in bad:  # every tenth Deployment
            out.append((namespace, f"app{d}", f"{UNREACHABLE}/shop/app{d}:v2-typo", replicas))
        else:
            out.append((namespace, f"svc{d}", f"{UNREACHABLE}/shop/svc{d}:1.0", replicas))
    return out


def write_storm(sim: SimCluster, size: int, deployments: int, ramp: float,
                repeats: int) -> Storm:
    storm = Storm(pods=[])
    started = time.monotonic()
    plan = _deployments(size, deployments)
    failing_events: list[tuple[str, str]] = []

    def event_written(obj: dict[str, Any]) -> None:
        storm.writes += 1
        signal = pull_signal(obj)
        if signal is not None and signal.kind == "pull_failure":
            storm.baseline_messages += 1

    for i, (namespace, name, image, replicas) in enumerate(plan):
        kind = "not_found" if name.startswith("app") else "timeout"
        error = factory.containerd_error(kind, image)
        for obj in factory.failing_deployment(namespace, name, image, error, replicas=replicas):
            sim.apply(obj)
            if obj["kind"] == "Pod":
                storm.pods.append(obj)
                storm.first_pod_at = storm.first_pod_at or time.time()
            elif obj["kind"] == "Event":
                event_written(obj)
                if obj.get("reason") in ("BackOff", "Failed"):
                    failing_events.append((namespace, obj["metadata"]["name"]))
        storm.last_failure_at = time.time()
        if ramp:
            time.sleep(max(0.0, started + ramp * (i + 1) / len(plan) - time.monotonic()))
    for _ in range(repeats):  # the kubelet repeating itself
        for namespace, name in failing_events:
            event_written(sim.bump_event(namespace, name))
    if repeats:
        storm.last_failure_at = time.time()
    return storm


def recover(sim: SimCluster, pods: list[dict[str, Any]]) -> float:
    """Every pod pulls its image: Running, with the kubelet's Pulled/Created/Started events."""
    first = time.time()
    for pod in pods:
        new, events = factory.recovered(pod)
        sim.apply(new)
        for event in events:
            sim.apply(event)
    return first


# -- one run --------------------------------------------------------------------------------------
@dataclass
class Result:
    pods_failing: int
    deployments: int
    namespaces: int
    settings: dict[str, Any]
    events_written: int
    storm_written_s: float
    incidents: int
    first_root_s: float | None
    all_shown_s: float | None
    all_shown_after_last_event_s: float | None
    pods_shown: int
    resolved_s: float | None
    recovery_written_s: float  # how long the stand-in took to write every pod's recovery
    resolved_after_last_recovery_s: float | None  # from the last pod's recovery write
    roots_resolved: int
    api_storm: dict[str, int]
    api_storm_per_pod: float
    api_resolution: dict[str, int]
    slack_calls: dict[str, int]
    cpu_start_s: float
    cpu_storm_s: float
    cpu_resolution_s: float
    hold_s: float  # the storm stays this long after every pod is shown
    cpu_hold_s: float
    api_hold: dict[str, int]
    cpu_total_s: float
    rss_idle_mb: float
    rss_storm_mb: float
    peak_rss_mb: float
    baseline_messages: int
    baseline_delivery_s: float
    ack_p50_s: float | None  # slash-command HTTP answer during storm and resolution
    ack_p99_s: float | None
    ack_max_s: float | None
    acks: int
    ack_failures: int
    harness_cpu_s: float  # CPU of the stand-ins (this process), for comparison
    wall_s: float


def _wait(until: Any, deadline: float, step: float = 0.25) -> bool:
    while time.monotonic() < deadline:
        if until():
            return True
        time.sleep(step)
    return bool(until())


def run(size: int, args: argparse.Namespace) -> Result:
    deployments = args.deployments or max(1, size // 20)
    began = time.monotonic()
    harness0 = time.process_time()  # this process: the scenario cluster and Slack stand-in
    cluster = f"bench{os.getpid()}x{size}"
    settings = {"GROUP_WAIT_SECONDS": args.group_wait, "GROUP_INTERVAL_SECONDS":
                args.group_interval, "SWEEP_INTERVAL_SECONDS": args.sweep,
                "REGISTRY_PROBE": "false", "CLUSTER_NAME": cluster}
    # etcd keeps ~5 minutes of history for watches to resume from; the stand-in keeps changes
    history = max(1000, 40 * size)
    with tempfile.TemporaryDirectory() as tmp, \
            SimCluster(history_limit=history) as sim, SlackStandIn() as slack:
        env = {"KUBECONFIG": str(sim.write_kubeconfig(Path(tmp) / "kubeconfig")),
               "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": "bench-signing-secret",
               "SLACK_API_URL": slack.api_url, "SLACK_ALERT_CHANNEL": f"#{CHANNEL}",
               "REDIS_URL": args.redis, "PORT": str(_free_port()),
               "LOG_LEVEL": args.log_level, **{k: str(v) for k, v in settings.items()}}
        bot = BotProcess(env, Path(tmp) / "bot.log")
        try:
            bot.wait_ready()
            sim.wait_for_watches(1, timeout=30)
            time.sleep(1.0)  # the first sweep and the initial list are done
            cpu0 = bot.cpu()
            rss_idle = bot.memory()[0]
            probe = AckProbe(bot.port, env["SLACK_SIGNING_SECRET"], slack).start()
            t_start = time.time()
            storm = write_storm(sim, size, deployments, args.ramp, args.repeats)
            written = time.time() - t_start
            deadline = time.monotonic() + args.deadline
            failing = len(storm.pods)

            def timeline(until: float = float("inf")) -> AlertTimeline:
                return AlertTimeline.read(list(slack.calls), failing, until)

            _wait(lambda: timeline().all_shown is not None, deadline, 1.0)
            storm_end = time.time()
            shown = timeline()
            cpu1 = bot.cpu()
            rss_storm = bot.memory()[0]
            api_storm = count_requests(sim.requests, t_start, storm_end)
            time.sleep(args.hold)  # the outage goes on: what does an open incident cost?
            hold_end = time.time()
            cpu_hold = bot.cpu()
            api_hold = count_requests(sim.requests, storm_end, hold_end)

            rec_start = recover(sim, storm.pods)
            rec_written = time.time()
            deadline = time.monotonic() + args.deadline
            def all_resolved() -> bool:
                now = timeline()
                return bool(now.roots) and set(now.roots) <= set(now.resolved)

            _wait(all_resolved, deadline, 1.0)
            end = timeline()
            rec_end = time.time()
            cpu2 = bot.cpu()
            peak = bot.memory()[1]
            api_res = count_requests(sim.requests, rec_start, rec_end)
            probe.stop()
        finally:
            bot.stop()
            _clean_redis(args.redis, f"ipb:{cluster}")
            if args.keep_log:
                print(Path(tmp, "bot.log").read_text()[-20000:], file=sys.stderr)
            if args.save_log:
                Path(args.save_log).write_bytes(Path(tmp, "bot.log").read_bytes())
        if bot.rusage is not None:
            peak = max(peak, bot.rusage.ru_maxrss / 1024)
        done = [end.resolved[i] for i in end.roots if i in end.resolved]
        return Result(
            pods_failing=failing, deployments=deployments,
            namespaces=len({p["metadata"]["namespace"] for p in storm.pods}),
            settings=settings, events_written=storm.writes, storm_written_s=written,
            incidents=len(end.roots),
            first_root_s=_since(shown.first_root, storm.first_pod_at),
            all_shown_s=_since(shown.all_shown, storm.first_pod_at),
            all_shown_after_last_event_s=_since(shown.all_shown, storm.last_failure_at),
            pods_shown=shown.shown,
            resolved_s=_since(max(done), rec_start)
            if done and len(done) == len(end.roots) else None,
            recovery_written_s=rec_written - rec_start,
            resolved_after_last_recovery_s=_since(max(done), rec_written)
            if done and len(done) == len(end.roots) else None,
            roots_resolved=len(done),
            api_storm=dict(sorted(api_storm.items())),
            api_storm_per_pod=sum(api_storm.values()) / max(1, failing),
            api_resolution=dict(sorted(api_res.items())),
            slack_calls=dict(sorted(Counter(c.method for c in slack.calls).items())),
            cpu_start_s=cpu0, cpu_storm_s=cpu1 - cpu0, cpu_resolution_s=cpu2 - cpu_hold,
            cpu_hold_s=cpu_hold - cpu1, hold_s=args.hold,
            api_hold=dict(sorted(api_hold.items())),
            cpu_total_s=(bot.rusage.ru_utime + bot.rusage.ru_stime) if bot.rusage else cpu2,
            rss_idle_mb=rss_idle, rss_storm_mb=rss_storm, peak_rss_mb=peak,
            baseline_messages=storm.baseline_messages,
            baseline_delivery_s=float(storm.baseline_messages),  # Slack: ~1 message/s/channel
            ack_p50_s=probe.quantile(0.5), ack_p99_s=probe.quantile(0.99),
            ack_max_s=max(probe.latencies, default=None), acks=len(probe.latencies),
            ack_failures=probe.failures,
            harness_cpu_s=time.process_time() - harness0, wall_s=time.monotonic() - began)


def _since(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin


def _clean_redis(url: str, prefix: str) -> None:
    """Leave the server as we found it: delete every key under the run's prefix."""
    import redis

    client = redis.Redis.from_url(url)
    batch: list[bytes] = []
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


# -- output ---------------------------------------------------------------------------------------
def _s(value: float | None, deadline: float) -> str:
    return f"{value:.1f} s" if value is not None else f"not within {deadline:.0f} s"


def table(results: list[Result], args: argparse.Namespace) -> str:
    heads = [f"{r.pods_failing:,} pods" for r in results]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: Iterable[str]) -> None:
        rows.append((label, list(values)))

    row("deployments / namespaces", (f"{r.deployments} / {r.namespaces}" for r in results))
    row("events written (ADDED+MODIFIED)", (f"{r.events_written:,} in {r.storm_written_s:.1f} s"
                                            for r in results))
    row("incidents (roots posted)", (str(r.incidents) for r in results))
    row("first root after first failing pod", (_s(r.first_root_s, args.deadline)
                                               for r in results))
    row("every failing pod in the alerts", (
        _s(r.all_shown_s, args.deadline) if r.all_shown_s is not None
        else f"{r.pods_shown:,} shown at {args.deadline:.0f} s" for r in results))
    row("  … after the last failure event", (_s(r.all_shown_after_last_event_s, args.deadline)
                                            for r in results))
    row("every root says resolved", (
        _s(r.resolved_s, args.deadline) if r.resolved_s is not None
        else f"{r.roots_resolved}/{r.incidents} at {args.deadline:.0f} s" for r in results))
    row("  … recoveries written in", (f"{r.recovery_written_s:.1f} s" for r in results))
    row("  … after the last pod runs", (_s(r.resolved_after_last_recovery_s, args.deadline)
                                        for r in results))
    row("API requests per failing pod (storm)", (f"{r.api_storm_per_pod:.2f}" for r in results))
    keys = sorted({k for r in results for k in r.api_storm}, key=_request_order)
    for key in keys:
        row(f"  {key}", (f"{r.api_storm.get(key, 0):,} ({r.api_storm.get(key, 0) / max(1, r.pods_failing):.2f}/pod)"  # noqa: E501
                         for r in results))
    row("while it lasts: API req./pod/min", (
        f"{sum(r.api_hold.values()) / max(1, r.pods_failing) / max(r.hold_s, 1e-9) * 60:.2f}"
        if r.hold_s else "-" for r in results))
    row("while it lasts: bot CPU s/min", (
        f"{r.cpu_hold_s / r.hold_s * 60:.1f}" if r.hold_s else "-" for r in results))
    row("API requests (resolution)", (f"{sum(r.api_resolution.values()):,} "
                                      f"({sum(r.api_resolution.values()) / max(1, r.pods_failing):.2f}/pod)"  # noqa: E501
                                      for r in results))
    for method in sorted({m for r in results for m in r.slack_calls}):
        row(f"Slack {method}", (str(r.slack_calls.get(method, 0)) for r in results))
    row("slash-command ack p50 / p99 / max", (
        f"{r.ack_p50_s * 1000:.0f} / {r.ack_p99_s * 1000:.0f} / {r.ack_max_s * 1000:.0f} ms"
        f" ({r.acks} acks, {r.ack_failures} failed)" if r.ack_p50_s is not None
        and r.ack_p99_s is not None and r.ack_max_s is not None else "no ack"
        for r in results))
    row("bot CPU: storm / resolution", (f"{r.cpu_storm_s:.1f} s / {r.cpu_resolution_s:.1f} s"
                                        for r in results))
    row("bot CPU: whole process life", (f"{r.cpu_total_s:.1f} s (start {r.cpu_start_s:.1f})"
                                        for r in results))
    row("bot RSS: idle / after storm / peak", (
        f"{r.rss_idle_mb:.0f} / {r.rss_storm_mb:.0f} / {r.peak_rss_mb:.0f} MB" for r in results))
    row("baseline (1 msg per event): messages", (f"{r.baseline_messages:,}" for r in results))
    row("  … to deliver at 1 msg/s/channel", (f"{r.baseline_delivery_s / 60:.0f} min"
                                             for r in results))
    row("stand-ins' CPU (cluster + Slack)", (f"{r.harness_cpu_s:.0f} s" for r in results))
    row("wall time of the run", (f"{r.wall_s:.0f} s" for r in results))
    width = max(len(label) for label, _ in rows) + 2
    cols = [max(len(h), *(len(v[i]) for _, v in rows)) + 2 for i, h in enumerate(heads)]
    lines = ["".ljust(width) + "".join(h.rjust(c) for h, c in zip(heads, cols, strict=True))]
    lines += [label.ljust(width) + "".join(v.rjust(c) for v, c in zip(values, cols,
                                                                      strict=True))
              for label, values in rows]
    return "\n".join(lines)


def _request_order(key: str) -> tuple[int, int, str]:
    verb, _, resource = key.partition(" ")
    return (RESOURCES.index(resource) if resource in RESOURCES else len(RESOURCES),
            VERBS.index(verb) if verb in VERBS else len(VERBS), key)


def bench_diagnose(n: int = 2000) -> float:
    """Pure diagnosis throughput on one realistic pod (no I/O), pods per second."""
    from bot.diagnosis.facts import PodFacts

    image = "registry.internal/shop/web:v3"
    objs = factory.failing_deployment("shop", "web", image,
                                      factory.containerd_error("not_found", image))
    pod = next(o for o in objs if o["kind"] == "Pod")
    events = [o for o in objs if o["kind"] == "Event"]
    started = time.perf_counter()
    for _ in range(n):
        diagnose(PodFacts(pod=pod, events=events))
    return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[200, 2000],
                        help="failing pods per run (default: 200 2000)")
    parser.add_argument("--deployments", type=int, default=0,
                        help="Deployments per run (default: pods / 20, as 2,000 in 100)")
    parser.add_argument("--ramp", type=float, default=0.0,
                        help="spread the failing Deployments over this many seconds "
                             "(default 0: as fast as the stand-in takes them)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="times the kubelet repeats each Failed/BackOff event (default 2)")
    parser.add_argument("--group-wait", type=float, default=10.0, help="GROUP_WAIT_SECONDS")
    parser.add_argument("--group-interval", type=float, default=10.0,
                        help="GROUP_INTERVAL_SECONDS")
    parser.add_argument("--sweep", type=float, default=30.0, help="SWEEP_INTERVAL_SECONDS")
    parser.add_argument("--hold", type=float, default=60.0,
                        help="seconds the outage goes on after every pod is shown, to measure "
                             "what an open incident costs (default 60: two sweeps)")
    parser.add_argument("--deadline", type=float, default=600.0,
                        help="give up waiting for a phase (storm, resolution) after this long")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))
    parser.add_argument("--log-level", default="WARNING", help="the bot's LOG_LEVEL")
    parser.add_argument("--keep-log", action="store_true", help="print the bot's log tail")
    parser.add_argument("--save-log", metavar="PATH", help="copy the bot's whole log there")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)

    rate = bench_diagnose()
    if not args.json:
        print(f"settings: GROUP_WAIT_SECONDS={args.group_wait:g} "
              f"GROUP_INTERVAL_SECONDS={args.group_interval:g} "
              f"SWEEP_INTERVAL_SECONDS={args.sweep:g} REGISTRY_PROBE=false; "
              f"kubelet repeats {args.repeats}x; ramp {args.ramp:g} s; "
              f"hold {args.hold:g} s; phase deadline {args.deadline:.0f} s; Redis {args.redis}")
        print(f"pure diagnose(): {rate:,.0f} pods/s\n", flush=True)
    results = []
    for size in args.sizes:
        result = run(size, args)
        results.append(result)
        if not args.json:
            print(f"... {size} pods done in {result.wall_s:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"diagnose_pods_per_s": rate,
                          "runs": [asdict(r) for r in results]}, indent=2))
    else:
        print(table(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
