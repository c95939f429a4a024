"""A redis-server of the test's own, on its own port: outage tests stop, kill and restart it
(the shared one on 6379 must stay up for every other test)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis

from bot.store import RedisStore
from tests.support.tls import TlsMaterial
from tests.support.waiting import wait_for


class PrivateRedis:
    """``persistent``: an append-only file written on every command, so a server killed with
    SIGKILL comes back with its data, as a production Redis with AOF (or a managed one) does.
    Without it the server comes back empty."""

    def __init__(self, workdir: Path, *, persistent: bool = False,
                 password: str | None = None, tls: TlsMaterial | None = None,
                 args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.persistent = persistent
        #: with a password the server requires AUTH (`--requirepass`), as the bundled one does
        self.password = password
        #: with TLS material the server speaks only TLS (`--tls-port`, plain port 0): rediss://
        self.tls = tls
        #: more redis-server arguments (e.g. `--cluster-enabled yes`)
        self.args = args
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent \
            else ["--appendonly", "no"]
        ports = ["--port", str(self.port)] if self.tls is None else [
            "--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
            "--tls-cert-file", str(self.tls.cert_path), "--tls-key-file", str(self.tls.key_path),
            "--tls-ca-cert-file", str(self.tls.ca_path)]
        self.proc = subprocess.Popen(
            [self.binary, *ports, "--bind", "127.0.0.1", "--save", "",
             *aof, "--dir", str(self.workdir),
             *(["--requirepass", self.password] if self.password else []), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ca = str(self.tls.ca_path) if self.tls else None
        wait_for(lambda: RedisStore(self.url, socket_timeout=0.2, ca_bundle=ca).ping(), 5,
                 "redis to start")

    def pause_writes(self, seconds: float) -> None:
        """CLIENT PAUSE WRITE: reads go on, writes wait (a store write lost mid-operation)."""
        client = redis.Redis.from_url(self.url)
        try:
            client.execute_command("CLIENT", "PAUSE", str(int(seconds * 1000)), "WRITE")
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing flushed that was not yet."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
