"""The kube tests' shared harness: an empty scenario cluster per test and the real kubernetes
client pointed at it through a kubeconfig, as the bot is in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from bot.kube.client import KubeClient
from bot.sim.server import SimCluster


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster() as cluster:
        yield cluster


@pytest.fixture
def kube(sim: SimCluster, tmp_path: Path) -> Iterator[KubeClient]:
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        yield KubeClient(api)
    finally:
        api.close()
