"""Pytest fixtures for the scenario cluster.

Load them with ``pytest_plugins = ["bot.sim.testing"]`` in a test module (or the root
conftest), then pick scenarios per test with the ``scenario`` decorator (a plain attribute,
not a pytest mark, so nothing needs registering)::

    from bot.sim.scenario import scenario  # also re-exported here

    @scenario("tag-not-found", forbidden=["secrets"])
    def test_x(sim_cluster, sim_api): ...

``sim_cluster`` starts a ``SimCluster`` for the test's scenarios (none: an empty cluster; extra
keyword arguments go to ``SimCluster``) and stops it after the test; ``sim_kubeconfig`` writes
its kubeconfig into ``tmp_path``; ``sim_api`` is a ``kubernetes.client.ApiClient`` built from
that kubeconfig only (never the global default configuration, so tests cannot leak into each
other). A ``sim_scenario`` pytest mark with the same arguments also works if a conftest
registers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sim.scenario import scenario
from bot.sim.server import SimCluster

__all__ = ["scenario", "sim_api", "sim_cluster", "sim_kubeconfig"]

_ATTR = "_sim_scenario"


def _requested(request: pytest.FixtureRequest) -> tuple[list[str], dict[str, Any]]:
    found = getattr(request.function, _ATTR, None) if request.function else None
    if found is not None:
        return list(found[0]), dict(found[1])
    marker = request.node.get_closest_marker("sim_scenario")
    if marker is not None:
        return list(marker.args), dict(marker.kwargs)
    return [], {}


@pytest.fixture
def sim_cluster(request: pytest.FixtureRequest) -> Iterator[SimCluster]:
    """A started scenario cluster for the test's ``@scenario(...)``."""
    ids, kwargs = _requested(request)
    with SimCluster(ids, **kwargs) as sim:
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
