"""`python -m bot serve` as the Procfile runs it: a real process, its port, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.sim import SimCluster
from bot.sim.slack import SlackStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_alerts_answers_probes_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with SimCluster(["tag-not-found"]) as sim, SlackStandIn() as slack:
        env = {**os.environ, "KUBECONFIG": str(sim.write_kubeconfig(tmp_path / "kc")),
               "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": "secret",
               "SLACK_API_URL": slack.api_url, "SLACK_ALERT_CHANNEL": "#imagepull-alerts",
               "PORT": str(port), "GROUP_WAIT_SECONDS": "1", "REGISTRY_PROBE": "false",
               "LOG_LEVEL": "WARNING"}
        env.pop("REDIS_URL", None)
        process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"],
                                   env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            assert get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok\n")
            while time.monotonic() < deadline and not slack.channel_history("imagepull-alerts"):
                time.sleep(0.1)
            [alert] = slack.channel_history("imagepull-alerts")
            assert "Image tag not found" in alert.text
            assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
            assert get(f"http://127.0.0.1:{port}/nope")[0] == 404
            status, metrics = get(f"http://127.0.0.1:{port}/metrics")
            text = metrics.decode()
            assert status == 200
            assert 'imagepull_bot_slack_posts_total{kind="root"} 1.0' in text
            assert 'imagepull_bot_diagnoses_total{cause="tag_not_found"}' in text
            assert "imagepull_bot_incidents_open 1.0" in text
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=15)[0].decode()
        assert process.returncode == 0, output
        assert "Traceback" not in output
