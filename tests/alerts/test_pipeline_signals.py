"""Which pod signals cost a diagnosis (issue 10: resolution from the pod watch).

A ``Pulled`` event can only say a pod recovered. With the watch-fed pod view current, a
Pending pod's recovery comes from the view itself, so the signal is skipped for a pod the view
holds as Pending and for a pod in no incident; a pod outside the view that is still in an
incident (a running pod whose restarted container failed a pull) is diagnosed. Pull failures
are always queued. Real parts: the scenario cluster over HTTP, the real kubernetes client, the
real PodView, real Redis behind the incident manager.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from bot.alerts.incidents import IncidentManager, Timing
from bot.alerts.pipeline import Pipeline
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.kube.client import KubeClient
from bot.kube.view import PodView
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.slack.notifier import SlackNotifier, web_client
from bot.store import Store
from tests.support.redis import redis_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

IMAGE = "registry.internal/shop/web:9.9"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[SimCluster, Pipeline, PodView, Store]]:
    objects = factory.failing_deployment("shop", "web", IMAGE,
                                         factory.containerd_error("not_found", IMAGE),
                                         replicas=2)
    with SimCluster(["healthy"], objects=objects) as sim, SlackStandIn() as slack, \
            redis_store() as store:
        api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(
            tmp_path / "kc")))
        kube = KubeClient(api)
        view = PodView(kube)
        view.start()
        assert view.wait_synced(10)
        manager = IncidentManager(store, SlackNotifier(web_client(slack.token, slack.api_url),
                                                       "#alerts", store, min_interval=0.01),
                                  cluster="prod", timing=Timing(group_wait=30))
        pipeline = Pipeline(kube, manager, view=view)  # not started: nothing is diagnosed
        try:
            yield sim, pipeline, view, store
        finally:
            view.stop()
            api.close()


def web_pods(sim: SimCluster) -> list[dict]:
    return sorted((p for p in sim.list("Pod", "shop")
                   if p["spec"]["containers"][0]["image"] == IMAGE),
                  key=lambda p: p["metadata"]["name"])


def test_a_pulled_event_for_a_pending_pod_in_the_view_is_left_to_the_view(parts) -> None:
    sim, pipeline, view, _ = parts
    name = web_pods(sim)[0]["metadata"]["name"]
    assert view.get("shop", name) is not None
    assert pipeline.signal("shop", name, "pulled") is False
    assert pipeline.signal("shop", name, "pull_failure") is True  # failures always count


def test_a_pulled_event_for_a_pod_in_no_incident_is_skipped(parts) -> None:
    _, pipeline, _, _ = parts
    assert pipeline.signal("shop", "api-5c7d9-abcde", "pulled") is False


def test_a_pulled_event_for_a_member_outside_the_view_is_diagnosed(parts) -> None:
    """The member runs (it left Pending, so the view no longer holds it) but its incident
    still lists it: the signal is queued, and a diagnosis will resolve it."""
    sim, pipeline, view, _ = parts
    pod = web_pods(sim)[1]
    name = pod["metadata"]["name"]
    events = [o for o in sim.list("Event", "shop")
              if o["involvedObject"]["name"] == name]
    pipeline.manager.observe(diagnose(PodFacts(pod=pod, events=events)))
    assert pipeline.manager.in_incident("shop", name)
    recovered, _ = factory.recovered(pod)
    view.on_recovered = None  # this test plays the member whose recovery the view missed
    sim.apply(recovered)
    deadline = time.monotonic() + 5
    while view.get("shop", name) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pipeline.signal("shop", name, "pulled") is True


def test_without_a_current_view_every_signal_is_queued(parts) -> None:
    sim, pipeline, view, _ = parts
    view.stop()
    name = web_pods(sim)[0]["metadata"]["name"]
    pipeline.view = None
    assert pipeline.signal("shop", name, "pulled") is True
