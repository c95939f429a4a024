"""Pytest fixtures for the scenario cluster (import them into a test module or conftest).

    from bot.sim.testing import sim_cluster, sim_kubeconfig  # noqa: F401

    @pytest.mark.sim_scenario("tag-not-found")
    def test_x(sim_cluster, sim_kubeconfig): ...

``sim_cluster`` starts a ``SimCluster`` for the scenarios named by the ``sim_scenario`` marker
(none: an empty cluster) and stops it after the test; ``sim_kubeconfig`` writes its kubeconfig
into ``tmp_path``; ``sim_api`` is a ``kubernetes.client.ApiClient`` built from that kubeconfig
(never touching the global default configuration, so tests cannot leak into each other).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sim.server import SimCluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim_scenario(*ids): scenarios for the sim_cluster fixture")


@pytest.fixture
def sim_cluster(request: pytest.FixtureRequest) -> Iterator[SimCluster]:
    """A started scenario cluster for the ``sim_scenario`` marker's scenarios."""
    marker = request.node.get_closest_marker("sim_scenario")
    scenarios = list(marker.args) if marker else []
    kwargs = dict(marker.kwargs) if marker else {}
    with SimCluster(scenarios, **kwargs) as sim:
        yield sim


@pytest.fixture
def sim_kubeconfig(sim_cluster: SimCluster, tmp_path: Path) -> Path:
    """Path of a kubeconfig for ``sim_cluster`` (context namespace ``shop``)."""
    return sim_cluster.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def sim_api(sim_kubeconfig: Path) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` configured from ``sim_kubeconfig`` only."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(sim_kubeconfig))
    try:
        yield api
    finally:
        api.close()
