"""bot.registry's own shape: its modules form no cycle, the bot's settings reach the client, and
the pieces that hold secrets cannot print them (pure, no server)."""

from __future__ import annotations

import itertools
from pathlib import Path

import grimp
import pytest

from bot.config import Settings
from bot.registry.auth import Challenge
from bot.registry.cache import ResultCache
from bot.registry.client import client_from_settings
from bot.registry.model import Outcome, RegistryCredentials, Target

PASSWORD = "s3cret-registry-pw"


def test_registry_modules_import_each_other_in_one_direction() -> None:
    """model ← transport ← auth ← client (and cache): a cycle here fails the build."""
    graph = grimp.build_graph("bot")
    modules = sorted(m for m in graph.modules if m.startswith("bot.registry."))
    assert {"bot.registry.model", "bot.registry.auth", "bot.registry.client"} <= set(modules)
    cycles = [
        (a, b)
        for a, b in itertools.combinations(modules, 2)
        if graph.chain_exists(a, b) and graph.chain_exists(b, a)
    ]
    assert cycles == []
    assert not graph.chain_exists("bot.registry.model", "bot.registry.client")
    assert not graph.chain_exists("bot.registry.auth", "bot.registry.client")


def test_client_from_settings_carries_every_registry_setting(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not read until a request is made\n")
    settings = Settings.model_validate(
        {
            "REGISTRY_ENDPOINTS": "reg.local:5000=http://127.0.0.1:5999",
            "REGISTRY_INSECURE_HOSTS": "reg.local:5000",
            "REGISTRY_CA_BUNDLES": f"secure.local={ca}",
            "REGISTRY_TIMEOUT_SECONDS": 2.5,
        }
    )
    with client_from_settings(settings) as client:
        rs = client.settings
        assert rs.base_url("reg.local:5000") == "http://127.0.0.1:5999"
        assert rs.base_url("secure.local") == "https://secure.local"
        assert rs.ca_bundle_for("secure.local:443") == str(ca)
        assert rs.http_timeout.read == 2.5
        assert rs.http_timeout.connect == 2.5


def test_cache_key_tells_passwords_apart_without_holding_them() -> None:
    cache = ResultCache(ttl=60)
    target = Target("reg.local", "team/app", "v1")
    old = cache.key("ping", target, RegistryCredentials("deploy", PASSWORD))
    new = cache.key("ping", target, RegistryCredentials("deploy", PASSWORD + "2"))
    assert old != new
    assert not any(PASSWORD in part for part in old)


@pytest.mark.parametrize("ttl", [0, -1])
def test_cache_disabled_stores_nothing(ttl: float) -> None:
    cache = ResultCache(ttl=ttl)
    target = Target("reg.local", None, None)
    key = cache.key("ping", target, None)
    cache.put(key, "answer", target.failed(Outcome.UNREACHABLE, "down"))
    assert cache.get(key) is None


def test_challenge_keeps_commas_inside_quoted_scope() -> None:
    challenge = Challenge.parse(
        'Bearer realm="https://auth.local/token",service="reg",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.params["scope"] == "repository:a/b:pull,push"
    assert challenge.insufficient_scope


def test_target_names_tags_and_digests_as_people_write_them() -> None:
    assert Target("reg.local", None, None).where == "reg.local"
    assert Target("reg.local", "a/b", None).where == "reg.local/a/b"
    assert Target("reg.local", "a/b", "v1").where == "reg.local/a/b:v1"
    assert Target("reg.local", "a/b", "sha256:abc").where == "reg.local/a/b@sha256:abc"


def test_cache_is_bounded_expired_answers_first_then_the_oldest() -> None:
    """Pods with a new image each must not grow the cache without bound."""
    now = [0.0]
    cache = ResultCache(ttl=60, clock=lambda: now[0], max_entries=3)
    targets = [Target("reg.local", f"team/app{i}", "v1") for i in range(5)]
    keys = [cache.key("manifest", t, None) for t in targets]
    short = targets[0].failed(Outcome.RATE_LIMITED, "slow down", retry_after=5)
    cache.put(keys[0], "a0", short)  # expires at 5 s (Retry-After)
    for i in (1, 2):
        cache.put(keys[i], f"a{i}", targets[i].failed(Outcome.UNREACHABLE, "down"))
    now[0] = 6.0
    cache.put(keys[3], "a3", targets[3].failed(Outcome.UNREACHABLE, "down"))
    assert len(cache) == 3 and cache.get(keys[0]) is None  # the expired one went first
    cache.put(keys[4], "a4", targets[4].failed(Outcome.UNREACHABLE, "down"))
    assert len(cache) == 3
    assert [cache.get(k) for k in keys[1:]] == [None, "a2", "a3", "a4"]  # then the oldest
