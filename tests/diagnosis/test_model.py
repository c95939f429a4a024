"""The diagnosis JSON reads back typed: `ContainerDiagnosis.from_json` inverts `to_json`.

Incidents keep their diagnosis in the store as this JSON, so a record written by an earlier
version (fewer keys) and one written by a later version (a finding this one does not know)
must both load.
"""

from __future__ import annotations

import json

import pytest

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, RegistryFacts, WorkloadRef
from bot.diagnosis.model import Backoff, ContainerDiagnosis, Fix
from tests.diagnosis.kubelet import NOW, pod, pull_failure
from tests.diagnosis.test_engine import NOT_FOUND, RATE_LIMITED, UNAUTHORIZED, facts_for


def _entries() -> list[ContainerDiagnosis]:
    suggestion = RegistryFacts(probe_cause=Cause.TAG_NOT_FOUND, repository_exists=True,
                               suggested_image="nginx:latest",
                               suggestion_kind=Finding.TAG_SUGGESTION,
                               digest="sha256:" + "4" * 64, probe_summary="no tag lates")
    image = "registry.internal/shop/migrate:9"
    init_pod = pod("nginx:1.27", waiting_reason="PodInitializing", init_image=image,
                   init_waiting_reason="ImagePullBackOff")
    init = PodFacts(pod=init_pod, now=NOW, events=pull_failure(
        image, NOT_FOUND.replace("docker.io/library/nginx:lates", image), container="migrate",
        init=True))
    facts = [facts_for("nginx:lates", NOT_FOUND),
             facts_for("nginx:lates", NOT_FOUND, registry={"nginx:lates": suggestion}),
             facts_for("nginx:1.27.3", RATE_LIMITED),
             facts_for("nginx:lates", UNAUTHORIZED), init]
    return [d for f in facts for d in diagnose(f).diagnoses]


@pytest.mark.parametrize("entry", _entries(), ids=lambda d: f"{d.cause}:{d.container}")
def test_from_json_inverts_to_json(entry: ContainerDiagnosis) -> None:
    stored = json.loads(json.dumps(entry.to_json()))  # through text, as the store keeps it
    assert ContainerDiagnosis.from_json(stored) == entry


def test_the_suggestion_survives_the_round_trip() -> None:
    [with_suggestion] = [d for d in _entries() if d.suggested_image]
    back = ContainerDiagnosis.from_json(json.loads(json.dumps(with_suggestion.to_json())))
    assert back.suggested_image == "nginx:latest"
    assert Finding.TAG_SUGGESTION in back.findings


def test_json_of_an_earlier_version_loads_with_the_defaults_it_meant() -> None:
    """Before `init_container` and `suggested_image` were keys, neither existed."""
    old = {"container": "web", "image": "nginx:lates", "cause": "tag_not_found",
           "transient": False, "summary": "Tag `lates` does not exist.", "explanation": "…",
           "evidence": ["not found"], "workload": {"kind": "Deployment", "name": "web"},
           "findings": [], "fixes": [{"title": "t", "command": "c"}],
           "backoff": {"attempts": 4, "next_retry_seconds": None}}
    d = ContainerDiagnosis.from_json(old)
    assert d == ContainerDiagnosis(
        container="web", image="nginx:lates", cause=Cause.TAG_NOT_FOUND, transient=False,
        summary="Tag `lates` does not exist.", explanation="…", evidence=("not found",),
        workload=WorkloadRef("Deployment", "web"), findings=(), fixes=(Fix("t", "c"),),
        backoff=Backoff(4, None), init_container=False, suggested_image=None)


def test_json_of_a_later_version_loads_without_what_this_one_does_not_know() -> None:
    """A rollback must not make stored incidents unreadable."""
    newer = {**_entries()[0].to_json(), "findings": ["tag_suggestion", "some_future_finding"],
             "cause": "some_future_cause", "a_future_key": {"x": 1}}
    d = ContainerDiagnosis.from_json(newer)
    assert d.findings == (Finding.TAG_SUGGESTION,)
    assert d.cause is Cause.UNKNOWN
