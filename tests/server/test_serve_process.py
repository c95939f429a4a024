"""`python -m bot serve` as the Procfile runs it: a real process, its port, SIGTERM."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import pytest

from bot.sim import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.serve import free_port, serve_environment, start_serving, wait_until_healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
ROOT = Path(__file__).parents[2]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_alerts_answers_probes_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with SimCluster(["tag-not-found"]) as sim, SlackStandIn() as slack:
        env = serve_environment(sim.write_kubeconfig(tmp_path / "kc"), slack.token,
                                slack.api_url, GROUP_WAIT_SECONDS="1")
        process = start_serving(env, port)
        try:
            deadline = time.monotonic() + 20
            wait_until_healthy(port)
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
