"""`python -m bot check-config` tells a newcomer what is missing, then tests the connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_OK, main
from bot.sim import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.redis import REDIS_URL

pytestmark = pytest.mark.integration

SETTINGS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_ALERT_CHANNEL",
            "REDIS_URL", "SLACK_API_URL", "KUBECONFIG")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_nothing_set_lists_every_missing_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--offline"]) == EXIT_BAD_INPUT
    out = capsys.readouterr().out
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_ALERT_CHANNEL", "REDIS_URL"):
        assert name in out
    assert main(["check-config", "--offline", "--mode", "socket"]) == EXIT_BAD_INPUT
    assert "SLACK_APP_TOKEN is not set" in capsys.readouterr().out


def test_wrong_token_shapes_are_named(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxp-a-user-token")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-not-an-app-token")
    main(["check-config", "--offline", "--mode", "socket"])
    out = capsys.readouterr().out
    assert "starting with xoxb-" in out and "starting with xapp-" in out
    assert "xoxp-a-user-token" not in out  # tokens are never echoed


def test_everything_set_and_reachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with SimCluster(["tag-not-found"]) as sim, SlackStandIn() as slack:
        monkeypatch.setenv("KUBECONFIG", str(sim.write_kubeconfig(tmp_path / "kc")))
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
        monkeypatch.setenv("SLACK_ALERT_CHANNEL", "#imagepull-alerts")
        monkeypatch.setenv("REDIS_URL", REDIS_URL)
        assert main(["check-config"]) == EXIT_OK
        out = capsys.readouterr().out
        assert "✓ Kubernetes API" in out and "✓ Redis answers" in out
        assert "✓ Slack accepts the bot token" in out and "ready to run" in out
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")
        assert main(["check-config"]) == EXIT_BAD_INPUT
        assert "Slack refuses the bot token: invalid_auth" in capsys.readouterr().out


def test_socket_mode_with_a_shared_redis_is_advised_to_set_the_signing_secret(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Advice, not a refusal: one cluster's Socket Mode install with Redis needs no secret; with
    other clusters' agents on that Redis it cannot forward (or run forwarded) requests."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test")
    monkeypatch.setenv("SLACK_ALERT_CHANNEL", "#imagepull-alerts")
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    assert main(["check-config", "--offline", "--mode", "socket"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "REDIS_URL is set but SLACK_SIGNING_SECRET is not" in out, out
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    assert main(["check-config", "--offline", "--mode", "socket"]) == EXIT_OK
    assert "SLACK_SIGNING_SECRET" not in capsys.readouterr().out
