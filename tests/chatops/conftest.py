"""Fixtures of the several-cluster tests (issue 13): two scenario clusters and the fleet of
agents over them (tests/support/fleet.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sim.server import SimCluster
from tests.support.fleet import Fleet, fleet


@pytest.fixture
def sims() -> Iterator[tuple[SimCluster, SimCluster]]:
    with SimCluster() as a, SimCluster() as b:
        yield a, b


@pytest.fixture
def agents(tmp_path: Path, sims: tuple[SimCluster, SimCluster]) -> Iterator[Fleet]:
    """The agents stop before the scenario clusters do."""
    with fleet(tmp_path) as running:
        yield running
