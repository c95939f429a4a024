"""`make demo DEMO_ARGS=--fleet` (`python -m bot demo --fleet`), run as a newcomer runs it: a
process of its own, against real Redis. Its timeline says each thing the README promises of
several clusters, with the figures it measured at the scenario clusters (GETs, PATCHes) and the
Slack stand-in, and it leaves no key behind.

It writes demo-out/ under its working directory: the test's tmp_path, never the repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.redis import REDIS_URL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def fleet_demo(cwd: Path, redis_url: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "REDIS_URL": redis_url}
    env.pop("LOG_LEVEL", None)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bot", "demo", "--fleet"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=80, check=False)
    return done, time.monotonic() - started


def line(out: str, pattern: str) -> re.Match[str]:
    found = re.search(pattern, out, re.MULTILINE)
    assert found, f"no line matching {pattern!r} in:\n{out[:6000]}"
    return found


def test_the_fleet_demo_says_each_thing_and_cleans_up(tmp_path: Path) -> None:
    done, took = fleet_demo(tmp_path, REDIS_URL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    out = done.stdout
    story, _, transcript = out.partition("Slack after the story")
    # one registry outage in both clusters: two alerts, each naming and linking the other
    line(story, r"prod-eu's outage alert says: :link: Also failing in: "
                r"<https://\S+/archives/C0PRODUS01/p\d+\|prod-us>")
    line(story, r"prod-us's outage alert says: :link: Also failing in: "
                r"<https://\S+/archives/C0PRODEU01/p\d+\|prod-eu>")
    # /imagepull clusters lists both, with their health
    line(story, r"/imagepull clusters in #alerts-prod-eu .*2 cluster\(s\), 0 silent"
                r".*✅ \*prod-eu\* reporting.*✅ \*prod-us\* reporting")
    # a diagnose for prod-us received by prod-eu's agent is answered by prod-us's
    line(story, r"delivers it to prod-eu's agent, which acks in \d+ ms: ➡️ Sent to `prod-us`")
    line(story, r"answered by prod-us's agent: \*Registry unreachable\* — `shop/web-")
    reads = line(story, r"read from prod-us's Kubernetes API \((\d+) GET\), never from "
                        r"prod-eu's \(0 GET\)")
    assert int(reads.group(1)) >= 1
    # a Rollout restart on prod-us's alert, pressed through prod-eu: prod-us's approvers, once
    line(story, r"Slack delivers the click to prod-eu's endpoint \(HTTP 200\); prod-us answers: "
                r"🛂 Asked for approval of the rollout restart of `deployment/checkout`")
    line(story, r"prod-us's approval request, in its alert's thread: .*Approvers: <@U0CAROL001>")
    line(story, r"alice \(an approver on prod-eu only\) presses \[Approve\].*: You are not an "
                r"approver")
    line(story, r"carol .* twice, through prod-eu: Done: deployment/checkout restarted "
                r"\(generation 1 → 2.*\| Already approved by <@U0CAROL001>")
    line(story, r"restarted 1 time\(s\) \(PATCHes at prod-us's API: 1; at prod-eu's: 0\)")
    # prod-us's agent stopped: the next command for it is answered at once, and not sent
    ms = line(story, r"prod-eu's agent answers in (\d+) ms: ⚠️ `prod-us` has not reported for "
                     r"\d+ s; nothing was sent\.")
    assert int(ms.group(1)) < 3000
    line(story, r"/imagepull clusters: .*1 silent.*⚠️ \*prod-us\* silent for")
    # printed by the single-cluster demo's transcript printer: both channels, every answer
    assert "#alerts-prod-eu (C0PRODEU01)" in transcript and \
        "#alerts-prod-us (C0PRODUS01)" in transcript
    assert transcript.count("🔴 Registry unreachable") == 2
    saved = json.loads((tmp_path / "demo-out" / "fleet" / "slack-messages.json").read_text())
    assert {c["name"] for c in saved["channels"] if c["messages"]} == {"alerts-prod-eu",
                                                                       "alerts-prod-us"}
    # every key of the run was under its own root, and is gone
    root = line(out, r"^Redis: \d+ key\(s\) under (ipb-demo-[0-9a-f]{8}) deleted\.$").group(1)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert [*client.scan_iter(f"{root}:*"), *client.scan_iter(f"{root}-fleet:*")] == []
    finally:
        client.close()
    assert took < 45, f"the fleet demo took {took:.1f} s"


def test_without_redis_it_says_how_to_start_one_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        done, took = fleet_demo(tmp_path, f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    [said] = done.stderr.splitlines()
    assert f"none answers at redis://127.0.0.1:{port}/0" in said, said
    assert "start one with `redis-server --daemonize yes`" in said, said
    assert took < 15, took
