"""`make demo DEMO_ARGS=--fleet`: several clusters behind one Slack app, as a newcomer sees it.

Two scenario clusters (prod-eu, prod-us), each with its own agent built exactly as `python -m
bot serve` builds it (`build_runtime`, `build_bolt_app`, `make_http_server`: the bus, presence
and shared causes come with it), one Redis they share, and one Slack stand-in whose Request URL
reaches prod-eu's agent (Slack hands every request to one endpoint; bot/chatops/bus/ routes
it). The story: a registry outage hits both clusters (two alerts that name and link each
other), `/imagepull clusters`, a diagnose for prod-us received by prod-eu, a Rollout restart on
prod-us's alert pressed through prod-eu (prod-us's approvers decide; one PATCH), then prod-us's
agent stops and the next command for it is answered at once.

It lives in bot/cli, not beside the single-cluster story in bot/sim: it serves the agents'
HTTP endpoints (bot/server.py), which the sim layer may not import (import-linter layers). It
prints with that story's printer (bot/sim/demo_story.py). Every key is under a per-run root
(`ipb-demo-<hex>:<cluster>:…`, `ipb-demo-<hex>-fleet:…`), never a production `ipb:` or
`ipb-fleet:` key, and deleted at the end, so the demo may point at any Redis.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.alerts.presence import read_presence
from bot.app import Runtime, build_bolt_app, build_runtime
from bot.config import Settings
from bot.diagnosis.terminal import write, write_error
from bot.kube.client import KubeClient
from bot.server import HttpServer, make_http_server
from bot.sim import factory
from bot.sim.delivery import Delivered, Person, RequestUrl
from bot.sim.demo_story import save_messages, say, show_channels, wait_until
from bot.sim.server import SimCluster
from bot.sim.slack import Message, SlackStandIn, render_blocks
from bot.slack import actions
from bot.store import RedisStore

#: what the demo uses when REDIS_URL is not set (the default `redis-server` address)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: every agent of one Slack app shares its signing secret; the bus's proof is made with it
SIGNING_SECRET = "fleet-demo-signing-secret"
HEARTBEAT = 1.0  # seconds: a stopped agent is silent after three of them (bot/alerts/presence)
EU, US = "prod-eu", "prod-us"
CHANNELS = {EU: ("alerts-prod-eu", "C0PRODEU01"), US: ("alerts-prod-us", "C0PRODUS01")}
ALICE = Person("U0ALICE001", "alice")  # on call in Europe: an approver on prod-eu only
CAROL = Person("U0CAROL001", "carol")  # prod-us's approver
APPROVERS = {EU: ALICE, US: CAROL}
NS = "shop"
REGISTRY = "registry.internal"
#: the registry outage each cluster sees (deployment, replicas), and prod-us's late tag
OUTAGE = {EU: (("web", 2), ("api", 1)), US: (("web", 2),)}
CHECKOUT = f"{REGISTRY}/shop/checkout:v2.2"


class RedisMissing(Exception):
    """No Redis answers: the fleet needs one (the CLI says how to start one; exit 2)."""


class StoryFailed(RuntimeError):
    """Something the story waits for did not happen: said in one line, exit 1."""


@dataclass
class Agent:
    """One cluster's agent as `serve` runs it, and Slack's way to its endpoint."""

    cluster: str
    sim: SimCluster
    runtime: Runtime
    server: HttpServer
    thread: threading.Thread
    endpoint: RequestUrl
    stopped: bool = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.runtime.stop()


def open_redis(url: str, root: str) -> RedisStore:
    """The store the demo cleans up with; RedisMissing when nothing answers at `url`."""
    store = RedisStore(url, f"{root}:-", socket_timeout=1.0,
                       ca_bundle=os.environ.get("REDIS_CA_BUNDLE") or None)
    problem = store.check()
    if problem is not None:
        store.client.close()
        raise RedisMissing(
            f"the fleet demo needs a Redis its agents share, and none answers at "
            f"{_redacted(url)} ({problem}): start one with `redis-server --daemonize yes` "
            "(or `docker run -d -p 6379:6379 redis:7`), or set REDIS_URL to yours")
    return store


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}…@{rest.rsplit('@', 1)[1]}" if "@" in rest else url


def run_fleet_story(out_dir: Path = Path("demo-out") / "fleet") -> int:
    """The story; 0 when it was told, 1 when it stopped short, 2 without a Redis."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    root = f"ipb-demo-{uuid.uuid4().hex[:8]}"
    try:
        keys = open_redis(url, root)
    except RedisMissing as exc:
        write_error(str(exc))
        return 2
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="imagepull-fleet-") as tmp, \
                SlackStandIn() as slack, _agents(slack, url, root, Path(tmp)) as agents:
            say(started, f"two clusters, one agent each, one Redis ({_redacted(url)}, keys "
                         f"under {root}), one Slack app whose Request URL reaches prod-eu's "
                         "agent")
            try:
                _play(slack, agents, keys, started)
            except StoryFailed as exc:
                write_error(f"the fleet demo stopped: {exc}")
                return 1
            show_channels(slack, "Slack after the story (both alert channels, and what each "
                                 "person was answered)")
            save_messages(slack, out_dir)
    finally:
        deleted = _delete_keys(keys, root)
        write(f"Redis: {deleted} key(s) under {root} deleted.")
    return 0


@contextmanager
def _agents(slack: SlackStandIn, url: str, root: str, tmp: Path) -> Iterator[dict[str, Agent]]:
    with ExitStack() as stack:
        agents: dict[str, Agent] = {}
        for cluster, (channel, channel_id) in CHANNELS.items():
            slack.add_channel(channel, channel_id)
            sim = stack.enter_context(SimCluster())
            agents[cluster] = _start_agent(cluster, sim, slack, url, root, tmp)
            stack.callback(agents[cluster].stop)
        yield agents


def _start_agent(cluster: str, sim: SimCluster, slack: SlackStandIn, url: str, root: str,
                 tmp: Path) -> Agent:
    """What `python -m bot serve` does, with the settings a newcomer would set for it."""
    settings = Settings.model_validate({
        "SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.api_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "CLUSTER_NAME": cluster,
        "SLACK_ALERT_CHANNEL": f"#{CHANNELS[cluster][0]}", "REDIS_URL": url,
        "REDIS_CA_BUNDLE": os.environ.get("REDIS_CA_BUNDLE") or None,
        "APPROVERS": APPROVERS[cluster].id, "HEARTBEAT_SECONDS": HEARTBEAT,
        "GROUP_WAIT_SECONDS": 1, "GROUP_INTERVAL_SECONDS": 2, "SWEEP_INTERVAL_SECONDS": 1,
        # the demo never leaves loopback: no registry questions, no Docker Hub quota reads
        "REGISTRY_PROBE": False, "QUOTA_CHECK_INTERVAL_SECONDS": 0,
    })
    kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp / f"{cluster}.kubeconfig")))
    store = RedisStore(url, f"{root}:{cluster}", ca_bundle=settings.redis_ca_bundle)
    runtime = build_runtime(settings, kube=kube, store=store)
    for watcher in runtime.watchers:
        watcher.idle_timeout = 0.5  # so stopping takes half a second, not the watch timeout
    server = make_http_server(build_bolt_app(settings, runtime), runtime, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"http-{cluster}", daemon=True)
    thread.start()
    runtime.start()
    endpoint = RequestUrl(slack, f"http://127.0.0.1:{server.server_address[1]}",
                          SIGNING_SECRET)
    return Agent(cluster, sim, runtime, server, thread, endpoint)


def _delete_keys(keys: RedisStore, root: str) -> int:
    """Every key of this run: the clusters' (`<root>:…`) and the fleet's (`<root>-fleet:…`)."""
    try:
        found = {*keys.client.scan_iter(f"{root}:*"),
                 *keys.client.scan_iter(keys.fleet().key("*"))}
        for key in found:  # one by one: on a Redis Cluster they live in different slots
            keys.client.delete(key)
        return len(found)
    finally:
        keys.client.close()


# -- the story ----------------------------------------------------------------------------------
def _play(slack: SlackStandIn, agents: dict[str, Agent], keys: RedisStore,
          started: float) -> None:
    eu, us = agents[EU], agents[US]
    _outage(slack, agents, started)
    _clusters(slack, eu, started)
    pod = factory.pod_names(NS, "web", _image("web"), 2, seed=US)[0]
    _diagnose_across(slack, eu, us, pod, started)
    _restart_across(slack, eu, us, started)
    _silent(slack, eu, us, keys, pod, started)


def _image(name: str) -> str:
    return f"{REGISTRY}/shop/{name}:4.1"


def _outage(slack: SlackStandIn, agents: dict[str, Agent], started: float) -> None:
    say(started, f"{REGISTRY} stops answering (i/o timeout) in both regions: prod-eu's web "
                 "and api, prod-us's web cannot pull; on prod-us a rollout also ships "
                 "checkout:v2.2 before CI pushed it")
    for cluster, deployments in OUTAGE.items():
        for name, replicas in deployments:
            _apply(agents[cluster].sim, factory.failing_deployment(
                NS, name, _image(name), factory.containerd_error("timeout", _image(name)),
                replicas=replicas, seed=cluster))
    _apply(agents[US].sim, factory.failing_deployment(
        NS, "checkout", CHECKOUT, factory.containerd_error("not_found", CHECKOUT), seed=US))

    def linked() -> bool:
        return all(other in _also_line(slack, cluster)
                   for cluster, other in ((EU, US), (US, EU)))

    if not wait_until(linked, timeout=25):
        raise StoryFailed("the two outage alerts did not name each other within 25 s")
    for cluster in (EU, US):
        channel = CHANNELS[cluster][0]
        say(started, f"#{channel}: {len(slack.channel_history(channel))} alert(s); "
                     f"{cluster}'s outage alert says: {_also_line(slack, cluster)}")


def _apply(sim: SimCluster, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        sim.apply(obj)


def _outage_alert(slack: SlackStandIn, cluster: str) -> Message | None:
    for root in slack.channel_history(CHANNELS[cluster][0]):
        if REGISTRY in root.text and "Also failing in" in render_blocks(root.blocks):
            return root
    return None


def _also_line(slack: SlackStandIn, cluster: str) -> str:
    alert = _outage_alert(slack, cluster)
    lines = render_blocks(alert.blocks).splitlines() if alert else []
    return next((line.strip() for line in lines if "Also failing in" in line), "")


def _answer(endpoint: RequestUrl, delivered: Delivered, count: int = 1,
            timeout: float = 15) -> str:
    """The `count`-th post to the request's response_url (the listener's answer), first line."""
    wait_until(lambda: len(endpoint.answers(delivered)) >= count, timeout)
    posts = endpoint.answers(delivered)
    if len(posts) < count:
        return "(no answer)"
    body = posts[count - 1].body
    text = render_blocks(body["blocks"]) if body.get("blocks") else str(body.get("text", ""))
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def _clusters(slack: SlackStandIn, eu: Agent, started: float) -> None:
    channel = CHANNELS[EU][1]
    delivered = eu.endpoint.command("clusters", person=ALICE, channel=channel)
    say(started, f"alice types /imagepull clusters in #{CHANNELS[EU][0]} (received by prod-eu's "
                 f"agent, acked in {delivered.elapsed * 1000:.0f} ms): "
                 f"{_answer(eu.endpoint, delivered)}")


def _pod_reads(sim: SimCluster, pod: str) -> int:
    return len(sim.requests_matching("GET", f"/pods/{pod}$"))


def _diagnose_across(slack: SlackStandIn, eu: Agent, us: Agent, pod: str,
                     started: float) -> None:
    text = f"diagnose {US}/{NS}/{pod}"
    delivered = eu.endpoint.command(text, person=ALICE, channel=CHANNELS[EU][1])
    say(started, f"alice types /imagepull {text} in #{CHANNELS[EU][0]}; Slack delivers it to "
                 f"prod-eu's agent, which acks in {delivered.elapsed * 1000:.0f} ms: "
                 f"{delivered.text()}")
    answer = _answer(eu.endpoint, delivered, count=2)  # "working on it", then the diagnosis
    say(started, f"answered by prod-us's agent: {answer[:160]}")
    say(started, f"the pod was read from prod-us's Kubernetes API ({_pod_reads(us.sim, pod)} "
                 f"GET), never from prod-eu's ({_pod_reads(eu.sim, pod)} GET)")


def _restarts(sim: SimCluster) -> int:
    return len(sim.requests_matching("PATCH", "/deployments/checkout$"))


def _restart_across(slack: SlackStandIn, eu: Agent, us: Agent, started: float) -> None:
    us_channel = CHANNELS[US][0]
    alert: Message | None = None

    def restart_alert() -> bool:
        nonlocal alert
        alert = next((m for m in slack.channel_history(us_channel)
                      if "checkout" in m.text and _has_button(m, actions.RESTART)), None)
        return alert is not None

    if not wait_until(restart_alert, timeout=15) or alert is None:
        raise StoryFailed("prod-us's checkout alert with its Rollout restart button is missing")
    asked = eu.endpoint.click(alert, actions.RESTART, person=ALICE)
    say(started, f"CI pushes checkout:v2.2; alice presses [Rollout restart] on prod-us's "
                 f"checkout alert in #{us_channel}, and Slack delivers the click to prod-eu's "
                 f"endpoint (HTTP {asked.status}); prod-us answers: "
                 f"{_answer(eu.endpoint, asked)}")
    request = _approval_request(slack, alert)
    say(started, f"prod-us's approval request, in its alert's thread: "
                 f"{_flat(render_blocks(request.blocks))}")
    refused = eu.endpoint.click(request, actions.APPROVE, person=ALICE)
    say(started, f"alice (an approver on prod-eu only) presses [Approve], through prod-eu: "
                 f"{_answer(eu.endpoint, refused)}")
    clicks = [eu.endpoint.click(request, actions.APPROVE, person=CAROL) for _ in range(2)]
    answers = [_answer(eu.endpoint, c) for c in clicks]
    wait_until(lambda: _restarts(us.sim) >= 1, timeout=10)
    time.sleep(1.0)  # a second PATCH, were there one, would be out by now
    say(started, f"carol (prod-us's approver) presses [Approve] twice, through prod-eu: "
                 f"{' | '.join(answers)}")
    say(started, f"prod-us's Deployment shop/checkout restarted {_restarts(us.sim)} time(s) "
                 f"(PATCHes at prod-us's API: {_restarts(us.sim)}; at prod-eu's: "
                 f"{_restarts(eu.sim)})")


def _has_button(message: Message, action_id: str) -> bool:
    return any(e.get("action_id") == action_id for block in message.blocks
               for e in block.get("elements") or [] if isinstance(e, dict))


def _approval_request(slack: SlackStandIn, alert: Message) -> Message:
    found: list[Message] = []

    def posted() -> bool:
        [root] = [m for m in slack.channel_history(alert.channel) if m.ts == alert.ts]
        found[:] = [r for r in root.replies if _has_button(r, actions.APPROVE)]
        return bool(found)

    if not wait_until(posted, timeout=15):
        raise StoryFailed("prod-us's approval request did not reach its alert's thread")
    return found[0]


def _flat(text: str) -> str:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def _silent(slack: SlackStandIn, eu: Agent, us: Agent, keys: RedisStore, pod: str,
            started: float) -> None:
    us.stop()
    say(started, f"prod-us's agent stops (its heartbeat every {HEARTBEAT:.0f} s stops with it)")

    def silent() -> bool:
        return read_presence(keys, US).silence(time.time(), HEARTBEAT) is not None

    if not wait_until(silent, timeout=10):
        raise StoryFailed("prod-us still counts as reporting 10 s after its agent stopped")
    text = f"diagnose {US}/{NS}/{pod}"
    delivered = eu.endpoint.command(text, person=ALICE, channel=CHANNELS[EU][1])
    say(started, f"alice types /imagepull {text}; prod-eu's agent answers in "
                 f"{delivered.elapsed * 1000:.0f} ms: {delivered.text()}")
    listed = eu.endpoint.command("clusters", person=ALICE, channel=CHANNELS[EU][1])
    say(started, f"/imagepull clusters: {_answer(eu.endpoint, listed)}")
