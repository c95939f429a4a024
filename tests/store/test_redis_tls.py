"""Redis as managed services offer it (issue 13): `rediss://` (TLS) with AUTH, against a real
redis-server speaking only TLS on loopback with a certificate from a private CA
(REDIS_CA_BUNDLE); Sentinel (`redis+sentinel://`) against a real Sentinel. Redis Cluster:
tests/store/test_redis_cluster.py."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.config import Settings
from bot.store import RedisStore, StoreAuthFailed, StoreUnavailable, open_store
from tests.support.private_redis import PrivateRedis
from tests.support.tls import TlsMaterial, make_tls_material
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def tls(tmp_path: Path) -> TlsMaterial:
    return make_tls_material(tmp_path / "tls")


@pytest.fixture
def server(tmp_path: Path, tls: TlsMaterial) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path, password="s3cret-pw", tls=tls)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def test_rediss_with_auth_and_a_private_ca_works_end_to_end(
        server: PrivateRedis, tls: TlsMaterial) -> None:
    assert server.url.startswith("rediss://:s3cret-pw@127.0.0.1:")
    settings = Settings(REDIS_URL=server.url, REDIS_CA_BUNDLE=str(tls.ca_path))
    store = open_store(settings.redis_url, "ipb:prod-eu", ca_bundle=settings.redis_ca_bundle)
    assert isinstance(store, RedisStore)
    assert store.check() is None
    # the atomic primitives (Lua scripts included) work over TLS
    assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"}, ttl=5)
    assert store.delete_if_equals(store.key("claim"), "me")
    assert store.hgetall(store.key("record")) == {"a": "1"}


def test_rediss_without_the_ca_is_refused_in_words(server: PrivateRedis) -> None:
    store = RedisStore(server.url, "ipb:x", socket_timeout=1.0)  # system CAs only
    problem = store.check()
    assert problem is not None and "unreachable" in problem
    with pytest.raises(StoreUnavailable):
        store.get("k")


def test_rediss_with_the_wrong_password_says_so(server: PrivateRedis, tls: TlsMaterial) -> None:
    wrong = server.url.replace("s3cret-pw", "nope")
    store = RedisStore(wrong, "ipb:x", ca_bundle=str(tls.ca_path))
    with pytest.raises(StoreAuthFailed, match="does not accept"):
        store.get("k")


def test_a_ca_bundle_without_tls_is_a_mistake_said_at_start(tls: TlsMaterial) -> None:
    with pytest.raises(ValueError, match="not rediss://"):
        RedisStore("redis://127.0.0.1:6379/15", ca_bundle=str(tls.ca_path))
    with pytest.raises(ValueError, match="CA bundle file not found"):
        Settings(REDIS_CA_BUNDLE="/nonexistent/ca.pem")


def test_sentinel_names_the_primary_and_the_store_works_through_it(tmp_path: Path) -> None:
    """`redis+sentinel://:PASSWORD@HOST:PORT/MASTER/DB`: a real redis-server as the primary
    (with AUTH) and a real Sentinel (`redis-server --sentinel`) monitoring it."""
    primary = PrivateRedis(tmp_path, password="s3cret-pw")
    primary.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\n"
                    f"sentinel monitor primary-one 127.0.0.1 {primary.port} 1\n"
                    "sentinel auth-pass primary-one s3cret-pw\n")
    sentinel = subprocess.Popen([primary.binary, str(conf), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis+sentinel://:s3cret-pw@127.0.0.1:{port}/primary-one/2"
        store = RedisStore(url, "ipb:sentinel")
        wait_for(lambda: store.ping(), 10, "the sentinel to name the primary")
        assert store.check() is None
        assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"})
        assert store.get(store.key("claim")) == "me"
        direct = redis.Redis.from_url(primary.url.replace("/0", "/2"), decode_responses=True)
        assert direct.get("ipb:sentinel:claim") == "me"  # the primary, database 2
        direct.close()
        wrong = RedisStore(url.replace("s3cret-pw", "nope"), "ipb:sentinel")
        with pytest.raises(StoreAuthFailed):
            wrong.get("k")
        with pytest.raises(ValueError, match="MASTER_NAME"):
            RedisStore(f"redis+sentinel://127.0.0.1:{port}", "ipb:x")
    finally:
        sentinel.terminate()
        sentinel.wait(5)
        primary.stop()
