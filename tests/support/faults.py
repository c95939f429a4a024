"""What the fault suites (tests/faults/) share.

* what the channel shows: roots, thread replies, resolutions, no duplicates;
* the workload: a Deployment whose image tag does not exist (`bad_tag`), its recovery;
* the bot: the settings every fault test gives it (`bot_environment`), the in-process bot with
  its WSGI app (`Bot`), and `python -m bot serve` as a real process on its own port (`serve`);
* `/readyz`: asked through the WSGI app (`Bot.readyz`) or over real HTTP (`http_readyz`),
  polled in the foreground (`watch_readyz`) or in a background thread for a whole fault window
  (`ReadyzPoller`). Readiness is `bot.app.Runtime.ready()`: the store answers and every watch is
  in contact with the API server; Slack trouble is not a readiness failure.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import wsgiref.util
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.app import Runtime, build_bolt_app, build_runtime
from bot.config import load_settings
from bot.kube.client import KubeClient
from bot.server import wsgi_app
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import Message, SlackStandIn
from bot.store import Store
from tests.support.serve import free_port, start_serving
from tests.support.waiting import wait_for

ROOT = Path(__file__).parents[2]
CHANNEL = "imagepull-alerts"
Readiness = tuple[int, str]  # (HTTP status, body without its newline)
Answer = tuple[float, int, str]  # (time.monotonic(), status, body); status 0: no HTTP answer
OK: Readiness = (200, "ok")
STALE_AFTER = 8.0  # the watch's no-contact window of the in-process bot (production: 45 s)


# -- what the channel shows -----------------------------------------------------------------------
def roots(slack: SlackStandIn) -> list[Message]:
    return slack.channel_history(CHANNEL)


def replies(slack: SlackStandIn) -> list[Message]:
    return [r for m in roots(slack) for r in m.replies]


def resolved(slack: SlackStandIn) -> list[Message]:
    return [r for r in replies(slack) if "Resolved after" in r.text]


def assert_no_duplicate_replies(slack: SlackStandIn) -> None:
    texts = Counter((r.thread_ts, r.text) for r in replies(slack))
    assert all(n == 1 for n in texts.values()), texts


def wait_in_channel(slack: SlackStandIn, condition: Callable[[], Any], timeout: float,
                    what: str) -> None:
    """wait_for, failing with what the channel shows (duplicates are the usual reason)."""
    try:
        wait_for(condition, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the channel has {len(roots(slack))} roots and "
                             f"{len(replies(slack))} replies") from None


# -- the workload ---------------------------------------------------------------------------------
def bad_tag(name: str, replicas: int = 1) -> list[dict[str, Any]]:
    """Deployment `shop/<name>` whose tag does not exist: its ReplicaSet, pods and events."""
    image = f"registry.internal/shop/{name}:v3"
    return factory.failing_deployment("shop", name, image,
                                      factory.containerd_error("not_found", image),
                                      replicas=replicas)


def pods_of(objects: list[dict[str, Any]]) -> set[str]:
    return {f"shop/{o['metadata']['name']}" for o in objects if o["kind"] == "Pod"}


def apply(sim: SimCluster, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        sim.apply(obj)


def recover(sim: SimCluster, objects: list[dict[str, Any]]) -> None:
    """Every pod of `objects` pulls its image after all (the kubelet's Pulled/Started)."""
    for obj in objects:
        if obj["kind"] == "Pod":
            pod_obj, events = factory.recovered(obj)
            apply(sim, [pod_obj, *events])


# -- the bot --------------------------------------------------------------------------------------
def bot_environment(sim: SimCluster, slack: SlackStandIn, kubeconfig: Path,
                    **overrides: str) -> dict[str, str]:
    """The settings every fault test runs the bot with (short grouping windows, no registry
    probe); `overrides` adds or replaces some (REDIS_URL, CLUSTER_NAME, CLAIM_TTL_SECONDS...)."""
    return {"KUBECONFIG": str(sim.write_kubeconfig(kubeconfig)),
            "SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.api_url,
            "SLACK_SIGNING_SECRET": "faults-signing-secret",
            "SLACK_ALERT_CHANNEL": f"#{CHANNEL}", "CLUSTER_NAME": "faults",
            "GROUP_WAIT_SECONDS": "1", "GROUP_INTERVAL_SECONDS": "2",
            "SWEEP_INTERVAL_SECONDS": "1", "REGISTRY_PROBE": "false", **overrides}


class Bot:
    """The runtime plus its HTTP app, as `python -m bot serve` wires them, from the process
    environment (`bot_environment`). `store` replaces the one REDIS_URL would open. The watch
    reopens a quiet stream every 0.5 s and retries within 2 s, so `/readyz` turns 503 after
    STALE_AFTER s without contact, within a test's time (production: 5 s, 30 s, 45 s)."""

    def __init__(self, *, store: Store | None = None) -> None:
        settings = load_settings()
        self.runtime: Runtime = build_runtime(
            settings, kube=KubeClient.from_environment(settings.kubeconfig), store=store)
        for watcher in self.runtime.watchers:
            watcher.idle_timeout = 0.5
            watcher.backoff_max = 2.0
            watcher.stale_after = STALE_AFTER
        self.app = wsgi_app(build_bolt_app(settings, self.runtime), self.runtime)
        self.runtime.start()

    def readyz(self) -> Readiness:
        """GET /readyz through the bot's WSGI application."""
        environ: dict[str, Any] = {}
        wsgiref.util.setup_testing_defaults(environ)
        environ["PATH_INFO"] = "/readyz"
        status: list[str] = []
        body = b"".join(self.app(environ, lambda s, h, exc_info=None: status.append(s)))
        return int(status[0].split()[0]), body.decode().strip()

    def announced_pods(self) -> dict[str, set[str]]:
        """Incident scope -> the pods Slack was told about (root or thread updates)."""
        manager = self.runtime.manager
        out: dict[str, set[str]] = {}
        for incident_id in manager.active_ids():
            incident = manager.load(incident_id)
            if incident is not None:
                out.setdefault(incident.scope, set()).update(
                    m.rsplit("/", 1)[0] for m in incident.announced)
        return out

    def stop(self) -> None:
        self.runtime.stop()


_PORTS_TAKEN: set[int] = set()


class Replica:
    """`python -m bot serve` as the Procfile runs it, on its own port (never one an earlier
    replica had: a killed replica's port must keep refusing connections)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        while self.port in _PORTS_TAKEN:
            self.port = free_port()
        _PORTS_TAKEN.add(self.port)
        with log.open("ab") as out:
            self.process = start_serving(env, self.port, out)

    def readyz(self) -> Readiness:
        """GET /readyz over HTTP; OSError (e.g. ConnectionRefusedError) when nothing answers."""
        return http_readyz(self.port)

    def refuses_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def http_readyz(port: int, timeout: float = 2.0) -> Readiness:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        connection.close()


# -- /readyz over time ----------------------------------------------------------------------------
def watch_readyz(probe: Callable[[], Readiness], until: Callable[[], bool],
                 interval: float = 0.25) -> list[Answer]:
    """Ask `probe` every `interval` s until `until()`; (time, status, body) of each answer."""
    seen: list[Answer] = []
    while not until():
        seen.append((time.monotonic(), *probe()))
        time.sleep(interval)
    return seen


class ReadyzPoller:
    """Asks `probe` every `interval` s in a background thread for as long as the `with` block
    runs: a whole fault window, however the test spends it. A probe that raises (nothing
    listening, connection reset) is recorded as status 0 with the error, not swallowed."""

    def __init__(self, probe: Callable[[], Readiness], interval: float = 0.25) -> None:
        self.probe = probe
        self.interval = interval
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readyz-poller", daemon=True)

    def _run(self) -> None:
        while True:
            at = time.monotonic()
            try:
                status, body = self.probe()
            except Exception as exc:
                status, body = 0, f"{type(exc).__name__}: {exc}"
            self.answers.append((at, status, body))
            if self._stop.wait(self.interval):
                return

    def start(self) -> ReadyzPoller:
        self._thread.start()
        return self

    def __enter__(self) -> ReadyzPoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(10)
        return self.answers

    def between(self, start: float = 0.0, end: float = float("inf")) -> list[Answer]:
        """The answers asked for between two time.monotonic() readings."""
        return [a for a in list(self.answers) if start <= a[0] <= end]

    def assert_ok_throughout(self, what: str, *, start: float = 0.0, end: float = float("inf"),
                             after_first_ok: bool = False, min_answers: int = 4) -> None:
        """Every answer (between `start` and `end`) was 200 "ok"; with `after_first_ok`, every
        answer from the first 200 on, for a process still starting when polling began.
        Failures name the first wrong answers and when they came."""
        answers = self.between(start, end)
        if after_first_ok:
            first = next((i for i, a in enumerate(answers) if a[1:] == OK), len(answers))
            answers = answers[first:]
        assert len(answers) >= min_answers, \
            f"{what}: {len(answers)} /readyz answers to check: {self.between(start, end)[-3:]}"
        t0 = answers[0][0]
        wrong = [(round(at - t0, 2), status, body) for at, status, body in answers
                 if (status, body) != OK]
        assert not wrong, (f"{what}: /readyz was not 200 ok at {len(wrong)} of "
                           f"{len(answers)} polls (seconds in, status, body): {wrong[:3]}")

    def assert_refused_throughout(self, what: str, *, start: float,
                                  min_answers: int = 4) -> None:
        """Every answer since `start` was a refused connection: nothing listens any more."""
        answers = self.between(start)
        assert len(answers) >= min_answers, f"{what}: {len(answers)} /readyz answers to check"
        wrong = [(round(at - answers[0][0], 2), status, body) for at, status, body in answers
                 if status != 0 or not body.startswith("ConnectionRefusedError")]
        assert not wrong, (f"{what}: /readyz still answered at {len(wrong)} of "
                           f"{len(answers)} polls: {wrong[:3]}")
