"""The bot as `python -m bot socket` runs it, against the Socket Mode stand-in.

Same parts as `running_bot` (scenario cluster, Slack stand-in, real Redis, settings from the
environment), but Slack reaches the bot over a websocket: bot/sim/socket_mode.py delivers the
envelopes, the bot's own Socket Mode handler (bot/slack/socket_mode.py) acks them, and the ops
endpoints answer on their own port as in production."""

from __future__ import annotations

import os
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slack_bolt import App

from bot.app import Runtime, build_bolt_app, build_runtime
from bot.config import Settings, load_settings
from bot.kube.client import KubeClient
from bot.server import HttpServer, make_ops_server, socket_mode_handler
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.sim.socket_mode import (
    Envelope,
    SocketModeStandIn,
    form_fields,
    interaction_payload,
    new_app_token,
)
from bot.slack.socket_mode import SocketModeHandler
from bot.store import RedisStore
from tests.support.leaks import SECRETS
from tests.support.redis import redis_store
from tests.support.slack_requests import (
    ALERTS,
    block_action,
    environment,
    pressed_message,
    slash_command,
)

ALICE = "U0ALICE001"


@dataclass
class SocketBot:
    """The bot connected over Socket Mode, plus everything it talks to."""

    sim: SimCluster
    slack: SlackStandIn
    socket_mode: SocketModeStandIn
    store: RedisStore
    settings: Settings
    runtime: Runtime
    bolt: App
    handler: SocketModeHandler
    ops: HttpServer
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops.server_address[1]}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.ops_url + path, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def command(self, text: str, user: str = ALICE) -> tuple[Envelope, str]:
        """`/imagepull <text>` as Slack delivers it over Socket Mode; returns the envelope and
        the name of its response_url on the Slack stand-in."""
        name = f"cmd-{uuid.uuid4().hex[:6]}"
        body = slash_command(text, user_id=user, response_url=self.slack.response_url(name))
        return self.socket_mode.slash_command(form_fields(body)), name

    def click(self, action_id: str, value: str, message: Any,
              user: str = ALICE) -> tuple[Envelope, str]:
        """A button press on `message` (a stand-in Message) as an `interactive` envelope."""
        name = f"click-{uuid.uuid4().hex[:6]}"
        stored = pressed_message(message)
        body = block_action(action_id, value, message=stored, user_id=user,
                            channel_id=message.channel,
                            response_url=self.slack.response_url(name))
        return self.socket_mode.interactive(interaction_payload(body)), name

    def answer(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        from tests.support.waiting import wait_for

        posts = wait_for(lambda: self.slack.responses(name), timeout, f"the answer to {name}")
        return dict(posts[0].body)


@contextmanager
def running_socket_bot(*, env: Mapping[str, str] | None = None, hold_open: float = 5.0,
                       ping_interval: float = 10.0) -> Iterator[SocketBot]:
    """Start the whole bot over Socket Mode; stop all of it afterwards."""
    with ExitStack() as stack:
        sim = stack.enter_context(SimCluster())
        slack = stack.enter_context(SlackStandIn())
        socket_mode = stack.enter_context(SocketModeStandIn(slack, new_app_token(),
                                                            hold_open=hold_open))
        SECRETS.add(socket_mode.app_token, "Socket Mode app-level token")
        store = stack.enter_context(redis_store())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ipb-sock-")))
        kubeconfig = sim.write_kubeconfig(workdir / "kubeconfig")
        values = {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_APP_TOKEN": socket_mode.app_token, "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": f"#{ALERTS[1]}", "CLUSTER_NAME": "test",
            "GROUP_WAIT_SECONDS": "1", "GROUP_INTERVAL_SECONDS": "2",
            "SWEEP_INTERVAL_SECONDS": "1", "REGISTRY_PROBE": "false", "PORT": "3000",
            **(env or {}),
        }
        stack.enter_context(environment(values))
        stack.enter_context(_without("SLACK_SIGNING_SECRET"))  # Socket Mode needs none
        settings = load_settings()
        runtime = build_runtime(settings, kube=KubeClient.from_environment(str(kubeconfig)),
                                store=store)
        for watcher in runtime.watchers:
            watcher.idle_timeout = 0.5
        stack.callback(runtime.stop)
        bolt = build_bolt_app(settings, runtime)
        ops = make_ops_server(runtime, "127.0.0.1", 0)
        stack.callback(ops.server_close)
        thread = threading.Thread(target=ops.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="ops-http", daemon=True)
        thread.start()
        stack.callback(thread.join, 5)
        stack.callback(ops.shutdown)
        runtime.start()
        handler = socket_mode_handler(bolt, runtime, socket_mode.app_token,
                                      ping_interval=ping_interval)
        stack.callback(handler.close)
        handler.client.connect_to_new_endpoint()
        socket_mode.wait_connections(1)
        yield SocketBot(sim=sim, slack=slack, socket_mode=socket_mode, store=store,
                        settings=settings, runtime=runtime, bolt=bolt, handler=handler, ops=ops,
                        env=values)


@contextmanager
def _without(name: str) -> Iterator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved
