"""The pod view's diagnosis document: what the diagnosis reads of a pod, nothing else.

The pipeline diagnoses a failing pod from the view's copy instead of a GET (issue 10), so the
copy must give exactly the diagnosis the whole pod gives — for every cause the scenario
factory can produce, with and without events — while dropping what no diagnosis reads.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from bot.alerts.investigate import SharedDiagnoses
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.kube.view import SlimPod, diagnosis_document
from bot.sim import factory

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def failing(kind: str, pull_secrets: tuple[str, ...] = ()) -> tuple[dict, list[dict]]:
    image = f"registry.internal/shop/{kind}:1.0"
    objects = factory.failing_deployment("shop", f"app-{kind}", image,
                                         factory.containerd_error(kind, image), now=NOW,
                                         pull_secrets=pull_secrets)
    pod = next(o for o in objects if o["kind"] == "Pod")
    events = [o for o in objects if o["kind"] == "Event"]
    return pod, events


def hostile_extras(pod: dict) -> dict:
    """The pod with what a real API server returns and no diagnosis reads."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:x": {}}}] * 20
    pod["metadata"]["annotations"] = {"big": "x" * 5000}
    pod["metadata"]["labels"]["team"] = "payments"
    for container in pod["spec"]["containers"]:
        container["env"] = [{"name": f"E{i}", "value": "v" * 100} for i in range(30)]
    pod["spec"]["volumes"] = [{"name": f"v{i}", "emptyDir": {}} for i in range(10)]
    return pod


@pytest.mark.parametrize("kind", factory.ERROR_KINDS)
@pytest.mark.parametrize("with_events", [True, False])
def test_the_document_diagnoses_as_the_whole_pod(kind: str, with_events: bool) -> None:
    pod, events = failing(kind, pull_secrets=("regcred",))
    pod = hostile_extras(pod)
    doc = diagnosis_document(pod)
    used = events if with_events else []
    whole = diagnose(PodFacts(pod=pod, events=used, now=NOW))
    slim = diagnose(PodFacts(pod=doc, events=used, now=NOW))
    assert whole.diagnoses, kind  # the pod fails: the comparison is not of two empty results
    assert slim == whole
    assert SharedDiagnoses.key(doc) == SharedDiagnoses.key(pod)


def test_the_document_keeps_only_what_is_read() -> None:
    pod, _ = failing("not_found")
    pod = hostile_extras(pod)
    doc = diagnosis_document(pod)
    text = json.dumps(doc)
    for dropped in ("managedFields", "annotations", "env", "volumes", "payments"):
        assert dropped not in text
    assert doc["metadata"]["labels"] == {"pod-template-hash": pod["metadata"]["labels"][
        "pod-template-hash"]}
    assert len(text) * 10 < len(json.dumps(pod))


def test_only_a_failing_pod_keeps_its_document() -> None:
    pod, _ = failing("not_found")
    assert SlimPod.of(pod).document == diagnosis_document(pod)
    running, _ = factory.recovered(pod, now=NOW)
    assert SlimPod.of(running).document is None
