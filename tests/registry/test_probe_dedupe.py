"""The same registry question asked by several threads at once is asked once (bot/registry/
cache.py's claim): a storm's workers must not multiply the probes of one image."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.registry.cache import ResultCache
from bot.registry.client import RegistryClient
from bot.registry.model import Outcome, Probe, RegistryCredentials, RegistrySettings, Target

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

HOST = "slow.registry.test"
DIGEST = "sha256:" + "a" * 64


class SlowRegistry:
    """A loopback registry that answers every manifest HEAD after `delay` seconds, counting."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                outer.requests.append(("HEAD", self.path))
                time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Docker-Content-Digest", DIGEST)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[SlowRegistry]:
    server = SlowRegistry(delay=0.3)
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def client_for(registry: SlowRegistry, cache_ttl: float = 60) -> RegistryClient:
    return RegistryClient(RegistrySettings(endpoints={HOST: registry.url},
                                           insecure_hosts=frozenset({HOST}),
                                           cache_ttl=cache_ttl))


def ask_at_once(client: RegistryClient, count: int,
                credentials: RegistryCredentials | None = None) -> list[Probe]:
    results: list[Probe] = []
    lock = threading.Lock()

    def ask() -> None:
        probe = client.head_manifest(f"{HOST}/team/app:1.0", credentials)
        with lock:
            results.append(probe)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_concurrent_identical_probes_reach_the_registry_once(registry: SlowRegistry) -> None:
    with client_for(registry) as client:
        results = ask_at_once(client, 8)
    assert len(results) == 8 and all(p.ok and p.digest == DIGEST for p in results)
    assert registry.requests == [("HEAD", "/v2/team/app/manifests/1.0")]


def test_other_credentials_are_another_question(registry: SlowRegistry) -> None:
    with client_for(registry) as client:
        ask_at_once(client, 4, RegistryCredentials("deploy", "one"))
        ask_at_once(client, 4, RegistryCredentials("deploy", "two"))
    assert len(registry.requests) == 2


def test_with_the_cache_off_every_caller_asks(registry: SlowRegistry) -> None:
    with client_for(registry, cache_ttl=0) as client:
        ask_at_once(client, 3)
    assert len(registry.requests) == 3


def test_a_prober_that_fails_releases_its_waiters() -> None:
    cache = ResultCache(60, wait_seconds=5)
    key = cache.key("head_manifest:True", Target(HOST, "team/app", "1.0"), None)
    assert cache.claim(key) is None  # this thread probes
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(cache.claim(key)))
    waiter.start()
    time.sleep(0.1)
    cache.release(key)  # failed without an answer
    waiter.join(5)
    assert got == [None]  # the waiter probes itself instead of hanging
    cache.release(key)
    probe = Probe(Outcome.OK, HOST, "team/app", digest=DIGEST)
    assert cache.claim(key) is None
    cache.put(key, probe, probe)
    cache.release(key)
    assert cache.claim(key) == probe
