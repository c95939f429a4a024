"""`python -m bot serve` as the Procfile runs it, for the tests that need a real process
(signals, threads, SIGKILL): one way to pick a port, start it and wait for it to answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_environment(kubeconfig: Path, slack_token: str, slack_api_url: str,
                      **overrides: str) -> dict[str, str]:
    """The process environment every served bot in the tests starts from: this process's,
    minus a REDIS_URL the test did not ask for, plus the stand-ins' addresses."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack_token,
           "SLACK_SIGNING_SECRET": "secret", "SLACK_API_URL": slack_api_url,
           "SLACK_ALERT_CHANNEL": "#imagepull-alerts", "REGISTRY_PROBE": "false",
           "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    env.update(overrides)
    return env


def start_serving(env: Mapping[str, str], port: int,
                  output: int | IO[bytes] = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """Start `python -m bot serve` on `port`; its stdout and stderr go to `output`."""
    return subprocess.Popen([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"],
                            env={**env, "PORT": str(port)}, cwd=ROOT, stdout=output,
                            stderr=subprocess.STDOUT)


def wait_until_healthy(port: int, timeout: float = 20.0) -> bool:
    """True once GET /healthz answers 200, False if it never did within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                        timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False
