"""Which pods share one diagnosis (bot/alerts/investigate.py SharedDiagnoses): only pods that
the diagnosis could not tell apart — same controller, node, containers, secrets and kubelet
error. Everything else is diagnosed on its own."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from bot.alerts.investigate import FirstLook, SharedDiagnoses
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.diagnosis.model import PodDiagnosis
from bot.sim import factory

IMAGE = "registry.internal/shop/web:2.0"


def pods(replicas: int = 2, **kwargs: Any) -> list[dict[str, Any]]:
    objects = factory.failing_deployment(
        "shop", "web", IMAGE, factory.containerd_error("not_found", IMAGE),
        replicas=replicas, **kwargs)
    return [o for o in objects if o["kind"] == "Pod"]


def test_replicas_failing_alike_share_a_key() -> None:
    a, b = pods()
    assert SharedDiagnoses.key(a) is not None
    assert SharedDiagnoses.key(a) == SharedDiagnoses.key(b)


def test_what_the_diagnosis_reads_tells_pods_apart() -> None:
    a, b = pods()
    base = SharedDiagnoses.key(a)
    on_other_node = copy.deepcopy(b)
    on_other_node["spec"]["nodeName"] = "worker-2"  # fixes name the node
    other_error = copy.deepcopy(b)
    other_error["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = (
        f'Back-off pulling image "{IMAGE}": ErrImagePull: '
        + factory.containerd_error("timeout", IMAGE))
    other_owner = copy.deepcopy(b)
    other_owner["metadata"]["ownerReferences"][0]["uid"] = "another-replicaset"
    other_secret = copy.deepcopy(b)
    other_secret["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    for variant in (on_other_node, other_error, other_owner, other_secret):
        assert SharedDiagnoses.key(variant) not in (None, base)


def test_pods_without_a_kubelet_message_or_owner_stand_alone() -> None:
    a, _ = pods()
    no_message = copy.deepcopy(a)
    del no_message["status"]["containerStatuses"]  # pulling for the first time: events only
    bare = copy.deepcopy(a)
    del bare["metadata"]["ownerReferences"]
    assert SharedDiagnoses.key(no_message) is None
    assert SharedDiagnoses.key(bare) is None


def test_a_shared_diagnosis_is_retargeted() -> None:
    a, b = pods()
    shared = SharedDiagnoses(window=60)
    calls: list[str] = []

    def alone(pod: dict[str, Any]) -> FirstLook:
        calls.append(pod["metadata"]["name"])
        return FirstLook(PodFacts(pod=pod), PodDiagnosis("shop", pod["metadata"]["name"]))

    first = shared.diagnose(a, lambda: alone(a)).diagnosis
    second = shared.diagnose(b, lambda: alone(b)).diagnosis
    assert calls == [a["metadata"]["name"]]
    assert (first.pod, second.pod) == (a["metadata"]["name"], b["metadata"]["name"])
    assert shared.reused == 1
    off = SharedDiagnoses(window=0)
    off.diagnose(a, lambda: alone(a))
    off.diagnose(b, lambda: alone(b))
    assert calls[1:] == [a["metadata"]["name"], b["metadata"]["name"]]


def test_a_diagnosis_that_names_its_pod_is_not_handed_to_another() -> None:
    a, b = pods()
    real = diagnose(PodFacts(pod=a))
    assert real.diagnoses
    named = replace(real, diagnoses=(replace(
        real.diagnoses[0], evidence=(f"seen on pod {a['metadata']['name']}",)),))
    shared = SharedDiagnoses(window=60)
    assert shared.diagnose(a, lambda: FirstLook(PodFacts(pod=a), named)).diagnosis == named
    own = diagnose(PodFacts(pod=b))
    got = shared.diagnose(b, lambda: FirstLook(PodFacts(pod=b), own)).diagnosis
    assert got == own and got.pod == b["metadata"]["name"]
