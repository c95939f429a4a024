"""`make demo` plays its story end to end and leaves the channel as a person would expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sim.demo_story import run_story

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_demo_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_story(tmp_path) == 0
    out = capsys.readouterr().out
    before, _, after = out.partition("after the fixes")
    for title in ("Registry rate limit (429)", "Image tag not found",
                  "Registry credentials missing or wrong"):
        assert f"🔴 {title}" in before and f"✅ Resolved: {title}" in after
    assert before.count("🔴 ") == 3  # one alert per incident, not per pod
    assert "kubectl set image deployment/checkout checkout=registry.internal/shop/checkout:v2.1" \
        in before
    assert "kubectl create secret docker-registry regcred" in before
    assert "2 more failing" in before
    assert after.count("Resolved after") == 3
    saved = json.loads((tmp_path / "slack-messages.json").read_text())
    assert saved["channels"][0]["messages"]


def test_demo_story_over_socket_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bot demo --socket`: the same story, plus `/imagepull diagnose` over the
    Socket Mode stand-in before and right after a connection refresh."""
    import re

    assert run_story(tmp_path, socket=True) == 0
    out = capsys.readouterr().out
    acks = re.findall(r"over Socket Mode.*?: acked in (\d+) ms; answer: (.*)", out)
    assert len(acks) == 2, out[:3000]
    for ms, answer in acks:
        assert int(ms) < 3000 and "cannot pull their image" in answer
    assert "refresh_requested" in out
    assert out.count("✅ Resolved: ") == 3
