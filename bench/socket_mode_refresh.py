"""Ack latency across a Socket Mode refresh, per client adapter: prints measured figures.

    .venv/bin/python bench/socket_mode_refresh.py [ROUNDS] [HOLD_S]

Each candidate that works with the bot's sync Bolt `App` connects to the Socket Mode stand-in
(bot/sim/socket_mode.py): a slash command on the first connection (baseline), then Slack's
`disconnect`/`refresh_requested` with the old connection held open HOLD_S seconds (default 5),
and a command sent on the new connection as soon as it is open, or when none opens within
0.5 s, anyway (Slack then holds it until a connection opens). Latency = from the moment the
stand-in had the command to its ack, as Slack's 3 s limit counts it.

Candidates: slack_bolt.adapter.socket_mode (slack_sdk's built-in client),
slack_bolt.adapter.socket_mode.websocket_client, and bot/slack/socket_mode.py.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.sim.slack import SlackStandIn
from bot.sim.socket_mode import SocketModeStandIn, form_fields
from tests.support.slack_requests import slash_command


def builtin(app: App, token: str) -> Any:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    return SocketModeHandler(app, token)


def websocket_client(app: App, token: str) -> Any:
    from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler

    return SocketModeHandler(app, token)


def prompt(app: App, token: str) -> Any:
    from bot.slack.socket_mode import SocketModeHandler

    return SocketModeHandler(app, token)


CANDIDATES: dict[str, Callable[[App, str], Any]] = {
    "slack_bolt builtin": builtin,
    "slack_bolt websocket_client": websocket_client,
    "bot.slack.socket_mode": prompt,
}


def command(socket_mode: SocketModeStandIn, slack: SlackStandIn, n: int) -> Any:
    url = slack.response_url(f"bench-{n}")
    return socket_mode.slash_command(form_fields(slash_command("help", response_url=url)))


def measure(name: str, make: Callable[[App, str], Any], rounds: int, hold: float) -> None:
    with SlackStandIn() as slack, SocketModeStandIn(slack, hold_open=hold) as socket_mode:
        client = WebClient(token=slack.token, base_url=slack.api_url)
        app = App(client=client, token_verification_enabled=False, signing_secret="unused")

        @app.command("/imagepull")
        def on_command(ack: Ack) -> None:
            ack("ok")

        handler = make(app, socket_mode.app_token)
        handler.connect()
        try:
            socket_mode.wait_connections(1)
            base = command(socket_mode, slack, 0)
            socket_mode.wait_ack(base, 10)
            latencies = []
            for n in range(rounds):
                before = len(socket_mode.connections)
                socket_mode.refresh(hold)
                # a client that opens the new one later: Slack holds the command meanwhile
                with contextlib.suppress(TimeoutError):
                    socket_mode.wait_connections(before + 1, timeout=0.5)
                envelope = command(socket_mode, slack, n + 1)
                ack = socket_mode.wait_ack(envelope, 20)
                latencies.append(ack.at - envelope.created_at)
                socket_mode.wait_connections(before + 1, timeout=10)
                time.sleep(0.2)
            print(f"{name:30s} baseline {base.ack_latency * 1000:7.1f} ms   after refresh: "
                  f"median {statistics.median(latencies) * 1000:7.1f} ms, "
                  f"max {max(latencies) * 1000:7.1f} ms over {rounds}")
        finally:
            handler.close()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    hold = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    for name, make in CANDIDATES.items():
        measure(name, make, rounds, hold)


if __name__ == "__main__":
    main()
