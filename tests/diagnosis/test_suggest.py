"""Suggestions from what a registry lists: typos, versions, swapped paths, host spellings."""

from __future__ import annotations

import pytest

from bot.diagnosis.suggest import closest_tags, host_corrections, swapped_paths

NGINX_TAGS = ["1.27.3", "1.27.3-alpine", "1.27", "1.26.2", "latest", "stable", "mainline",
              "alpine", "1.27.4-rc1"]


@pytest.mark.parametrize(("wanted", "available", "first"), [
    ("lates", NGINX_TAGS, "latest"),
    ("latset", NGINX_TAGS, "latest"),
    ("stabel", NGINX_TAGS, "stable"),
    ("1.27.3-alpin", NGINX_TAGS, "1.27.3-alpine"),
    ("v3", ["v2.1", "v2.0", "v1.9"], "v2.1"),
    ("v2.2", ["v2.1", "v2.0", "v1.9", "v10.0"], "v2.1"),
    ("3.0", ["2.1", "2.0.5", "1.0"], "2.1"),
    ("1.28-alpine", NGINX_TAGS, "1.27.3-alpine"),
    ("16.44", ["16.4", "16.3", "15.8", "latest"], "16.4"),
])
def test_closest_tag(wanted: str, available: list[str], first: str) -> None:
    assert closest_tags(wanted, available)[0] == first


def test_stable_versions_before_prereleases_and_limit() -> None:
    tags = ["2.0.1-rc", "2.0.0", "1.9.9", "1.9.8"]
    assert closest_tags("2.5.0", tags) == ["2.0.0", "2.0.1-rc"]
    assert len(closest_tags("1.9.7", [f"1.9.{i}" for i in range(20)], limit=3)) == 3


def test_nothing_close_means_no_suggestion() -> None:
    assert closest_tags("feature-x", ["main", "develop"]) == []
    assert closest_tags("v1", []) == []
    assert closest_tags("v1", ["v1"]) == []


def test_swapped_paths() -> None:
    assert swapped_paths("myapp/myorg") == ["myorg/myapp"]
    assert swapped_paths("team/app/api") == ["app/team/api", "team/api/app"]
    assert swapped_paths("library/nginx") == []
    assert swapped_paths("app") == []


def test_host_corrections() -> None:
    known = ["registry.internal", "registry.example.com", "docker.io"]
    assert host_corrections("registy.internal", known) == ["registry.internal"]
    assert host_corrections("registry.internal", known) == []
    assert host_corrections("quay.io", known) == []
