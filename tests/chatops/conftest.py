"""Fixtures of the several-cluster tests (issue 13): two scenario clusters and the fleet of
agents over them (tests/support/fleet.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sim.server import SimCluster
from tests.support.fleet import Fleet, fleet
from tests.support.redis import REDIS_URL


@pytest.fixture
def sims() -> Iterator[tuple[SimCluster, SimCluster]]:
    with SimCluster() as a, SimCluster() as b:
        yield a, b


@pytest.fixture
def agents(request: pytest.FixtureRequest, tmp_path: Path,
           sims: tuple[SimCluster, SimCluster]) -> Iterator[Fleet]:
    """The agents stop before the scenario clusters do. On the shared Redis, or (parametrized
    indirectly with "cluster") on a real three-node Redis Cluster (tests/conftest.py
    `redis_cluster`)."""
    url = (request.getfixturevalue("redis_cluster").url
           if getattr(request, "param", "redis") == "cluster" else REDIS_URL)
    with fleet(tmp_path, url) as running:
        yield running
