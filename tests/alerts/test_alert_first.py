"""The alert goes out first; the registry's facts follow as an edit (issue 10, Deliver 3).

The real pipeline (the scenario cluster over HTTP, the real KubeClient, the real registry
client, real Redis, the Slack stand-in through slack_sdk) with the registry slow, hung or fast:

* slow (a real `docker-registry` behind a proxy that holds each connection 3 s): the root is
  posted within group_wait, before the registry said anything; then it is edited once, with
  the registry's evidence and the tag it confirmed; four pods alike ask the registry once;
* hung (a listener that accepts and never answers): the root goes out on time all the same,
  and the registry's unreachability follows as evidence in one edit, the cause unchanged;
* fast, and its answer changes the cause (the repository does not exist, where the kubelet
  said "not found"): the pod moves incidents inside group_wait, and the channel only ever
  sees the right one — no root, no "resolved" for the incident it left.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from bot.alerts.incidents import IncidentManager, Timing
from bot.alerts.pipeline import Pipeline
from bot.kube.cache import KubeFactCache
from bot.kube.client import KubeClient
from bot.registry.client import RegistryClient
from bot.registry.model import RegistrySettings
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.slack.notifier import SlackNotifier, web_client
from tests.support.redis import redis_store
from tests.support.registry import RegistryServer, push_image
from tests.support.stubs import BlackholeServer, SlowProxy

pytest_plugins = ["tests.support.fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HOST = "registry.internal"
NAMESPACE = "shop"
REPLICAS = 4
GROUP_WAIT = 1.0
#: what the root may take beyond group_wait: the tick's period, a diagnosis, a Slack call
MARGIN = 1.0
#: how long the slow registry holds each connection (longer than group_wait + MARGIN)
SLOW = 3.0


@dataclass
class Running:
    pipeline: Pipeline
    manager: IncidentManager
    slack: SlackStandIn
    started: float = 0.0

    def roots(self) -> list[dict[str, Any]]:
        return [c.params for c in self.slack.calls_to("chat.postMessage")
                if c.ok and not c.params.get("thread_ts")]

    def replies(self) -> list[dict[str, Any]]:
        return [c.params for c in self.slack.calls_to("chat.postMessage")
                if c.ok and c.params.get("thread_ts")]

    def edits(self) -> list[dict[str, Any]]:
        return [c.params for c in self.slack.calls_to("chat.update") if c.ok]

    def submit_all(self, sim: SimCluster) -> None:
        self.started = time.monotonic()
        for pod in sim.list("Pod", NAMESPACE):
            self.pipeline.submit(NAMESPACE, pod["metadata"]["name"])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until `condition()` held (polled every 20 ms)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.02)
    return time.monotonic() - start


@contextmanager
def running(sim: SimCluster, tmp_path: Path, registry_url: str,
            timeout: float = 5.0) -> Iterator[Running]:
    """The pipeline and the incident manager as `serve` wires them, ticking every 0.1 s."""
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(
        tmp_path / "kubeconfig")))
    kube = KubeClient(api, KubeFactCache())
    registry = RegistryClient(RegistrySettings(endpoints={HOST: registry_url},
                                               insecure_hosts=frozenset({HOST}),
                                               timeout=timeout, trust_env=False))
    stop = threading.Event()
    with SlackStandIn() as slack, redis_store() as store, registry:
        notifier = SlackNotifier(web_client(slack.token, slack.api_url), "imagepull-alerts", store,
                                 min_interval=0.01)
        manager = IncidentManager(store, notifier, cluster="prod",
                                  timing=Timing(group_wait=GROUP_WAIT, group_interval=60,
                                                repeat_interval=3600, claim_ttl=10))
        pipeline = Pipeline(kube, manager, registry=registry, known_hosts=[HOST])

        def tick() -> None:
            while not stop.wait(0.1):
                manager.tick()

        ticker = threading.Thread(target=tick, name="tick", daemon=True)
        pipeline.start()
        ticker.start()
        try:
            yield Running(pipeline, manager, slack)
        finally:
            stop.set()
            ticker.join(5)
            pipeline.stop()


def bad_tag_cluster(repo: str) -> SimCluster:
    image = f"{HOST}/{repo}:lates"
    return SimCluster(["healthy"], objects=factory.failing_deployment(
        NAMESPACE, "web", image, factory.containerd_error("not_found", image),
        replicas=REPLICAS))


def test_a_slow_registry_does_not_hold_the_root_and_its_answer_edits_it_once(
        registry_plain: RegistryServer, unique_repo: str, tmp_path: Path) -> None:
    push_image(registry_plain, unique_repo, "latest")
    host, port = registry_plain.host.split(":")
    with bad_tag_cluster(unique_repo) as sim, SlowProxy((host, int(port)), SLOW) as proxy, \
            running(sim, tmp_path, proxy.url) as bot:
        bot.submit_all(sim)
        took = wait_for(lambda: bot.roots(), GROUP_WAIT + MARGIN, "root")
        assert took < SLOW  # posted before the registry could have answered
        [root] = bot.roots()
        assert "Image tag not found" in root["text"]
        assert "Registry" not in str(root["blocks"]) and bot.edits() == []

        wait_for(lambda: bot.edits(), SLOW + 10, "edit of the root")
        assert bot.pipeline.drain(20)
        time.sleep(0.5)  # ticks after the last refined observation: nothing more to edit

        [edit] = bot.edits()  # one edit, not one per pod
        body = json.dumps(edit["blocks"], ensure_ascii=False)
        assert f"asked {HOST} for {unique_repo}:lates anonymously" in body  # the evidence
        assert "MANIFEST_UNKNOWN" in body
        # the tag the registry confirmed: the first fix, and the "Set image" button
        assert f"web=registry.internal/{unique_repo}:latest -n shop" in body
        assert "ipb_set_image" in body and "ipb_set_image" not in str(root["blocks"])
        assert edit["ts"] == bot.slack.calls_to("chat.postMessage")[0].response["ts"]
        assert len(bot.roots()) == 1 and bot.replies() == []
        # four pods alike, one question: one manifest HEAD of the missing tag
        heads = [r for r in proxy.requests if r == f"HEAD /v2/{unique_repo}/manifests/lates"]
        assert heads == [f"HEAD /v2/{unique_repo}/manifests/lates"]
        assert bot.pipeline.probes is not None and bot.pipeline.probes.asked == 1
        [incident_id] = bot.manager.active_ids()
        incident = bot.manager.load(incident_id)
        assert incident is not None and len(incident.pods) == REPLICAS
        assert incident.diagnosis.suggested_image == f"{HOST}/{unique_repo}:latest"


def test_a_hung_registry_does_not_hold_the_root_and_its_silence_follows_as_evidence(
        tmp_path: Path) -> None:
    with bad_tag_cluster("shop/web") as sim, BlackholeServer() as hung, \
            running(sim, tmp_path, hung.url, timeout=2.5) as bot:
        bot.submit_all(sim)
        wait_for(lambda: bot.roots(), GROUP_WAIT + MARGIN, "root")
        assert bot.edits() == []
        wait_for(lambda: bot.edits(), 30, "edit of the root")
        assert hung.connections >= 1
        assert bot.pipeline.drain(30)
        time.sleep(0.5)
        [edit] = bot.edits()
        body = json.dumps(edit["blocks"], ensure_ascii=False)
        assert "Image tag not found" in edit["text"]  # the cause stands
        assert f"asked {HOST} for shop/web:lates anonymously" in body
        assert "no answer within 2.5 s" in body  # the registry's silence is evidence
        assert "from the bot's network; the nodes' view may differ" in body
        assert len(bot.roots()) == 1 and bot.replies() == []
        assert bot.pipeline.probes is not None and bot.pipeline.probes.asked == 1


def test_an_answer_that_moves_the_pods_inside_group_wait_posts_only_the_right_incident(
        registry_plain: RegistryServer, unique_repo: str, tmp_path: Path) -> None:
    # nothing pushed: the registry answers that the repository does not exist
    with bad_tag_cluster(unique_repo) as sim, running(sim, tmp_path, registry_plain.url) as bot:
        bot.submit_all(sim)
        assert bot.pipeline.drain(20)
        wait_for(lambda: bot.roots(), GROUP_WAIT + MARGIN, "root")
        time.sleep(GROUP_WAIT + 0.5)  # any other incident would be due by now
        [root] = bot.roots()
        assert "Image repository not found" in root["text"]
        assert bot.replies() == [] and bot.edits() == []  # no "resolved" anywhere
        [incident_id] = bot.manager.active_ids()  # the tag incident was discarded unposted
        incident = bot.manager.load(incident_id)
        assert incident is not None and len(incident.pods) == REPLICAS
        # diagnosed again (the kubelet's next back-off): the remembered answer is in the first
        # look, so the pods stay where they are — no tag incident again, no second probe
        bot.submit_all(sim)
        assert bot.pipeline.drain(20)
        time.sleep(GROUP_WAIT + 0.5)
        assert bot.manager.active_ids() == {incident_id} and len(bot.roots()) == 1
        assert bot.replies() == [] and bot.edits() == []
        assert bot.pipeline.probes is not None and bot.pipeline.probes.asked == 1


def test_while_the_registry_hangs_the_questions_held_are_bounded(tmp_path: Path) -> None:
    """Five workloads with five images and a registry that never answers: with room for two
    questions, the other three are not held (each would hold its first look until the
    registry gives up), every workload is alerted on time all the same, and a later
    diagnosis of a deferred pod asks its question again."""
    objects: list[dict] = []
    for i in range(5):
        image = f"{HOST}/shop/app{i}:lates"
        objects += factory.failing_deployment(NAMESPACE, f"app{i}", image,
                                              factory.containerd_error("not_found", image))
    with SimCluster(["healthy"], objects=objects) as sim, BlackholeServer() as hung, \
            running(sim, tmp_path, hung.url, timeout=2.5) as bot:
        probes = bot.pipeline.probes
        assert probes is not None
        probes.max_questions = 2
        names = sorted(p["metadata"]["name"] for p in sim.list("Pod", NAMESPACE)
                       if p["metadata"]["name"].startswith("app"))
        for name in names:
            bot.pipeline.submit(NAMESPACE, name)
        wait_for(lambda: len(bot.roots()) == 5, GROUP_WAIT + 3 * MARGIN, "five roots")
        assert probes.deferred == 3
        assert probes.pending() <= 2
        wait_for(lambda: probes.pending() == 0, 30, "the two questions given up on")
        assert probes.asked == 2
        probes.max_questions = 5
        for name in names:  # their next events: only the three deferred questions are asked
            bot.pipeline.submit(NAMESPACE, name)
        wait_for(lambda: probes.asked == 5, 30, "the deferred questions asked again")
        assert bot.pipeline.drain(30)
        assert probes.asked == 5 and len(bot.roots()) == 5
