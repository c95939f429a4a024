"""A Redis that requires AUTH (the bundled one in deploy/base/redis.yaml does) and a bot
without the right password: every store call fails as StoreAuthFailed with words that say
what to fix, logged as an error, and the password never appears in them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli.checks import live_checks
from bot.config import Settings
from bot.store import RedisStore, StoreAuthFailed, StoreUnavailable
from tests.support.private_redis import PrivateRedis

pytestmark = pytest.mark.integration

PASSWORD = "9f2c0b7e5d1a4c3b8e6f"


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_right_password_works(locked: PrivateRedis) -> None:
    store = RedisStore(locked.url)
    assert store.set_nx(store.key("a"), "1", ttl=10)
    assert store.get(store.key("a")) == "1"
    assert store.ping()
    assert store.check() is None


@pytest.mark.parametrize("auth", ["", ":wrong-password@"], ids=["no password", "wrong password"])
def test_a_refused_password_is_an_error_in_words(locked: PrivateRedis, auth: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore(f"redis://{auth}127.0.0.1:{locked.port}/0", socket_timeout=1)
    with caplog.at_level(logging.ERROR, logger="bot.store"):
        with pytest.raises(StoreAuthFailed) as info:
            store.get(store.key("a"))
        with pytest.raises(StoreAuthFailed):  # every call, but logged once per minute
            store.set_nx(store.key("a"), "1", ttl=10)
    message = str(info.value)
    assert isinstance(info.value, StoreUnavailable)  # alerting pauses and tries again
    assert f"127.0.0.1:{locked.port} refused the bot's authentication" in message
    assert ("carries no password" if not auth else "a password Redis does not accept") in message
    assert "imagepull-bot-redis" in message
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [message]
    assert not store.ping()
    assert "wrong-password" not in message and PASSWORD not in message


def test_check_config_says_why_redis_refuses(locked: PrivateRedis) -> None:
    settings = Settings(REDIS_URL=f"redis://:nope@127.0.0.1:{locked.port}/0",
                        KUBECONFIG="/nonexistent")
    redis_lines = [line for ok, line in live_checks(settings) if "Redis" in line]
    assert len(redis_lines) == 1
    assert "refused the bot's authentication" in redis_lines[0]
    assert "nope" not in redis_lines[0]
