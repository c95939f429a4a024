"""`make demo`: a short incident timeline, played against the real pipeline.

The scenario cluster plays what a real cluster would show (a Docker Hub rate limit hitting
several deployments, a tag that was never pushed, a pull secret that exists only in another
namespace, then the fixes); the bot runs exactly as in production — watcher, sweep,
diagnosis, registry probe, incidents, Slack — against local stand-ins, and the channel is
printed as a person would read it and saved as Block Kit JSON.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.app import Runtime, build_runtime
from bot.config import Settings
from bot.diagnosis.terminal import write
from bot.kube.client import KubeClient
from bot.sim import factory
from bot.sim.registry import scenario_registries
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.store import MemoryStore

Obj = dict[str, Any]
NS = "shop"
REGISTRIES = {"registry.internal": {"shop/checkout": ["v2.1", "v2.0", "v1.9"],
                                    "shop/billing": {"tags": ["4.2"],
                                                     "users": {"ci-puller": "demo-only"}}}}


# -- the printer: the `--fleet` story (bot/cli/fleet_demo.py) tells its story with these too ---
def say(started: float, text: str) -> None:
    """One line of the timeline, stamped with the seconds since the story began."""
    write(f"[t+{time.monotonic() - started:4.1f}s] {text}")


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def show_channels(slack: SlackStandIn, title: str) -> None:
    """The channel(s) as a person reads them, under a banner saying which moment it is."""
    write("\n" + "═" * 100 + f"\n{title}:\n" + "═" * 100)
    write(slack.render_transcript())


def save_messages(slack: SlackStandIn, out_dir: Path) -> Path:
    """The messages as Block Kit JSON and Slack's calls with their status, in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = slack.save_blocks(out_dir / "slack-messages.json")
    calls = [{"method": c.method, "status": c.status, "at": round(c.at - time.time(), 1)}
             for c in slack.calls]
    (out_dir / "slack-calls.json").write_text(json.dumps(calls, indent=2))
    write(f"\nBlock Kit JSON saved to {path} (paste a message into Block Kit Builder).")
    return path


def _pods(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "Pod"]


def run_story(out_dir: Path = Path("demo-out"), socket: bool = False) -> int:
    """The timeline; with `socket`, people also ask the bot over Socket Mode (the Socket Mode
    stand-in, the bot's own handler) before the fixes, across a connection refresh."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imagepull-demo-") as tmp, \
            SimCluster() as sim, SlackStandIn() as slack, \
            scenario_registries(REGISTRIES) as endpoints:
        settings = Settings.model_validate({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": "#imagepull-alerts", "CLUSTER_NAME": "demo",
            "GROUP_WAIT_SECONDS": 2, "GROUP_INTERVAL_SECONDS": 3, "SWEEP_INTERVAL_SECONDS": 2,
            "REGISTRY_ENDPOINTS": ",".join(f"{h}={u}" for h, u in endpoints.items()),
            "REGISTRY_INSECURE_HOSTS": ",".join(endpoints),
        })
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(Path(tmp) / "kubeconfig")))
        runtime = build_runtime(settings, kube=kube, store=MemoryStore(prefix="demo"))
        for watcher in runtime.watchers:
            watcher.idle_timeout = 0.5
        runtime.start()
        try:
            tour = (lambda: _socket_mode_tour(slack, settings, runtime, started)) if socket \
                else None
            _play(sim, slack, runtime, started, tour)
        finally:
            runtime.stop()
        show_channels(slack, "#imagepull-alerts after the fixes (roots edited, threads "
                             "resolved)")
        save_messages(slack, out_dir)
    return 0


def _roots(slack: SlackStandIn) -> int:
    return len(slack.channel_history("imagepull-alerts"))


def _socket_mode_tour(slack: SlackStandIn, settings: Settings, runtime: Runtime,
                      started: float) -> None:
    """`/imagepull diagnose` over Socket Mode, then again right after Slack asks for a
    connection refresh while it keeps the old connection open 5 s: both acks well under 3 s."""
    from bot.app import build_bolt_app
    from bot.sim.socket_mode import SocketModeStandIn
    from bot.slack.socket_mode import SocketModeHandler

    pod = factory.pod_names(NS, "checkout", "registry.internal/shop/checkout:v2.2")[0]
    with SocketModeStandIn(slack, hold_open=5.0) as socket_mode:
        handler = SocketModeHandler(build_bolt_app(settings, runtime), socket_mode.app_token)
        try:
            handler.client.connect_to_new_endpoint()
            socket_mode.wait_connections(1)
            for round_, note in enumerate(("", " (new connection; the old one held open)")):
                if round_:
                    socket_mode.refresh()
                    say(started, "Slack asks for a Socket Mode refresh (disconnect, "
                                 "refresh_requested)")
                    socket_mode.wait_connections(2)
                name = f"socket-{round_}"
                url = slack.response_url(name, channel="C0ALERTS01", user="U0ALICE001")
                envelope = socket_mode.slash_command({
                    "team_id": slack.team_id, "channel_id": "C0ALERTS01",
                    "channel_name": "imagepull-alerts", "user_id": "U0ALICE001",
                    "user_name": "alice", "command": "/imagepull",
                    "text": f"diagnose {NS}/{pod}", "response_url": url,
                    "trigger_id": f"{round_}.1.demo", "api_app_id": slack.app_id})
                ack = socket_mode.wait_ack(envelope)
                answers = _answers(slack, name)
                first = str(answers[0].body.get("text", "")).splitlines()[0] if answers else "-"
                say(started, f"/imagepull diagnose {NS}/{pod} over Socket Mode{note}: acked "
                             f"in {(ack.at - envelope.created_at) * 1000:.0f} ms; answer: "
                             f"{first[:90]}")
        finally:
            handler.close()


def _answers(slack: SlackStandIn, name: str) -> list[Any]:
    """The posts to response_url `name`, once there is one (or none after 15 s)."""
    wait_until(lambda: bool(slack.responses(name)), timeout=15)
    return slack.responses(name)


def _play(sim: SimCluster, slack: SlackStandIn, runtime: Runtime, started: float,
          tour: Callable[[], None] | None = None) -> None:
    def apply(objects: list[Obj]) -> None:
        for obj in objects:
            sim.apply(obj)

    def recover(objects: list[Obj]) -> None:
        for pod in _pods(objects):
            fixed, events = factory.recovered(pod)
            apply([fixed, *events])

    outage: list[list[Obj]] = []
    for name, image in (("web", "nginx:1.27.3"), ("cache", "redis:7.2.5"),
                        ("queue", "rabbitmq:3.13-management")):
        outage.append(factory.failing_deployment(
            NS, name, image, factory.containerd_error("rate_limited", image), replicas=2))
    say(started, "Docker Hub starts answering 429 to the cluster's NAT IP: web, cache and "
                 "queue (2 pods each) cannot pull")
    for objects in outage:
        apply(objects)
    wait_until(lambda: _roots(slack) >= 1)
    say(started, f"alerts in the channel: {_roots(slack)} (one incident for the registry)")

    checkout_image = "registry.internal/shop/checkout:v2.2"
    checkout = factory.failing_deployment(
        NS, "checkout", checkout_image, factory.containerd_error("not_found", checkout_image))
    billing_image = "registry.internal/shop/billing:4.2"
    billing = factory.failing_deployment(
        NS, "billing", billing_image, factory.containerd_error("unauthorized", billing_image),
        pull_secrets=["regcred"])
    say(started, "a deploy ships checkout:v2.2 (only v2.1 was pushed), and billing "
                 "references pull secret regcred, which exists only in namespace default")
    apply(checkout)
    apply(billing)
    search_image = "elasticsearch:8.15.0"
    search = factory.failing_deployment(NS, "search", search_image, factory.containerd_error(
        "rate_limited", search_image), replicas=2)
    say(started, "the rate limit also hits search (2 pods)")
    apply(search)
    outage.append(search)
    wait_until(lambda: _roots(slack) >= 3)
    wait_until(lambda: any("more failing" in c.params.get("text", "")
                           for c in slack.calls_to("chat.postMessage")), timeout=8)
    say(started, f"alerts in the channel: {_roots(slack)}; later pods went into the thread")
    if tour is not None:
        tour()
    show_channels(slack, "#imagepull-alerts before the fixes")

    say(started, "fixes: the rate-limit window resets, checkout is set to v2.1, regcred is "
                 "created in shop")
    for objects in outage:
        recover(objects)
    recover(checkout)
    recover(billing)
    wait_until(lambda: not runtime.manager.active_ids(), timeout=25)
    wait_until(lambda: len(slack.calls_to("chat.update")) >= 3, timeout=5)
    say(started, f"open incidents: {len(runtime.manager.active_ids())}")
