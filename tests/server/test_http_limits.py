"""Stalled clients cannot exhaust `python -m bot serve` (a real process, as the Procfile runs it).

300 connections send headers and part of a body, then stall. The bot must keep answering
probes and signed Slack requests at once, must not grow a thread per stalled connection, and
must close the stalled ones after its read timeout (bot.server.HttpLimits.read_timeout).
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.server import HttpLimits
from bot.sim import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.serve import free_port, serve_environment, start_serving, wait_until_healthy
from tests.support.slack_requests import SlackClientForTests, url_verification

pytestmark = [pytest.mark.integration, pytest.mark.security, pytest.mark.timeout(120)]
ROOT = Path(__file__).parents[2]
STALLED = 300
SECRET = "limits-signing-secret"


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as response:
        response.read()
        return response.status, time.monotonic() - started


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    with SimCluster() as sim, SlackStandIn() as slack:
        env = serve_environment(sim.write_kubeconfig(tmp_path / "kc"), slack.token,
                                slack.api_url, SLACK_SIGNING_SECRET=SECRET)
        process = start_serving(env, port)
        try:
            wait_until_healthy(port)
            yield process, port
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=20)[0].decode()
        assert process.returncode == 0, output
        assert "Traceback" not in output, output


def stall(port: int, partial_headers: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if partial_headers:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Ty")
    else:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"a\":")
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        while chunk := sock.recv(65536):  # an error page, if any, then EOF
            if not select.select([sock], [], [], 0.5)[0]:
                return False
            del chunk
    except (ConnectionResetError, TimeoutError):
        return True
    return True


def test_stalled_clients_hold_no_threads_and_are_cut_after_the_read_timeout(
        serving: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = serving
    base = f"http://127.0.0.1:{port}"
    slack = SlackClientForTests(base, SECRET, timeout=5)
    assert timed_get(f"{base}/healthz")[0] == 200
    time.sleep(1.0)  # let the runtime's own threads (watch, scheduler, workers) start
    idle_threads = threads_of(process.pid)

    sockets = [stall(port, partial_headers=i % 6 == 0) for i in range(STALLED)]
    try:
        time.sleep(0.5)
        status, elapsed = timed_get(f"{base}/healthz")
        assert status == 200 and elapsed < 2.0, elapsed
        reply = slack.event(url_verification("still-here"))
        assert reply.status == 200 and reply.elapsed < 2.0, reply
        assert reply.json() == {"challenge": "still-here"}
        busy_threads = threads_of(process.pid)
        assert busy_threads <= idle_threads + 10, (idle_threads, busy_threads)

        limits = HttpLimits()
        deadline = time.monotonic() + limits.read_timeout + limits.check_interval + 10
        open_ = list(sockets)
        while open_ and time.monotonic() < deadline:
            open_ = [s for s in open_ if not closed_by_server(s)]
            time.sleep(0.5)
        assert open_ == [], f"{len(open_)} stalled connections still open after the timeout"
        assert timed_get(f"{base}/healthz")[0] == 200
    finally:
        for s in sockets:
            s.close()
