"""The pod view's cap on diagnosis documents (VIEW_MAX_DOCUMENTS): beyond it a failing pod is
still held — failing, recovered, listed, tracked — but without its document, so its diagnosis
reads the pod (one GET) instead; the counts follow every way a pod enters and leaves.

The view is fed as its reflectors feed it (`replace` for a list, `apply` for watch events);
nothing here needs a server, except tracking, which reads one pod through a stand-in client.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from bot.kube.view import PodView, diagnosis_document
from bot.sim import factory


def failing_pods(n: int, name: str = "web") -> list[dict[str, Any]]:
    image = f"registry.internal/shop/{name}:v3"
    return [o for o in factory.failing_deployment(
        "shop", name, image, factory.containerd_error("not_found", image), replicas=n)
        if o["kind"] == "Pod"]


def listed_view(cap: int, items: list[dict[str, Any]] | None = None, kube: Any = None
                ) -> PodView:
    """A view whose (only) scope has listed `items`: synced and, never started, current."""
    view = PodView(kube, max_documents=cap)
    view.scopes[0].replace(copy.deepcopy(items or []), "1")
    assert view.current
    return view


def name(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["name"])


def changed(pod: dict[str, Any], rv: str) -> dict[str, Any]:
    """The same pod as a later watch event (a new resourceVersion, still failing)."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["resourceVersion"] = rv
    return pod


def running(pod: dict[str, Any]) -> dict[str, Any]:
    return factory.recovered(pod)[0]


def test_beyond_the_cap_a_failing_pod_is_held_without_its_document(
        caplog: pytest.LogCaptureFixture) -> None:
    pods = failing_pods(4)
    view = listed_view(2)
    with caplog.at_level(logging.WARNING, logger="bot.kube.view"):
        for pod in pods:
            view.scopes[0].apply("ADDED", copy.deepcopy(pod))
    assert len(view) == 4 and len(view.failing()) == 4  # every pod held, failing
    assert (view.documents, view.without_document) == (2, 2)
    assert [view.document("shop", name(p)) is not None for p in pods] == \
        [True, True, False, False]
    assert view.document("shop", name(pods[0])) == diagnosis_document(pods[0])
    # the cap is said once, with the setting's name, not once per pod
    warnings = [r for r in caplog.records if "VIEW_MAX_DOCUMENTS" in r.getMessage()]
    assert len(warnings) == 1


def test_a_freed_slot_goes_to_the_next_change_of_a_pod_without_one() -> None:
    pods = failing_pods(3)
    view = listed_view(2, pods)
    assert (view.documents, view.without_document) == (2, 1)
    view.scopes[0].apply("DELETED", copy.deepcopy(pods[0]))  # deleted: its slot is free
    assert (view.documents, view.without_document) == (1, 1)
    assert view.document("shop", name(pods[2])) is None  # not until the pod changes
    view.scopes[0].apply("MODIFIED", changed(pods[2], "900"))
    assert (view.documents, view.without_document) == (2, 0)
    assert view.document("shop", name(pods[2])) == diagnosis_document(changed(pods[2], "900"))


def test_the_counts_follow_recovery_and_relists() -> None:
    pods = failing_pods(4)
    view = listed_view(3, pods[:2])
    assert (view.documents, view.without_document) == (2, 0)
    view.scopes[0].apply("MODIFIED", running(pods[0]))  # runs: no document to keep
    assert (view.documents, view.without_document) == (1, 0)
    assert view.document("shop", name(pods[0])) is None and len(view) == 2
    # a relist replaces the scope: every pod listed is counted afresh, nothing twice
    view.scopes[0].replace(copy.deepcopy(pods), "2")
    assert (view.documents, view.without_document) == (3, 1)
    view.scopes[0].replace(copy.deepcopy(pods), "3")
    assert (view.documents, view.without_document) == (3, 1)
    view.scopes[0].replace([], "4")  # all gone
    assert (view.documents, view.without_document, len(view)) == (0, 0, 0)


def test_a_cap_of_zero_keeps_no_document() -> None:
    pods = failing_pods(2)
    view = listed_view(0, pods)
    assert (view.documents, view.without_document) == (0, 2)
    assert len(view.failing()) == 2
    assert all(view.document("shop", name(p)) is None for p in pods)


class OnePod:
    """A stand-in client whose GET of any pod answers `pod` (what `refresh` reads)."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = pod

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.pod)


def test_tracked_pods_count_against_the_cap() -> None:
    pending, other = failing_pods(1)[0], failing_pods(1, "api")[0]
    restarted = copy.deepcopy(other)  # a running pod whose container fails its pull again
    restarted["status"]["phase"] = "Running"
    view = listed_view(1, [pending], kube=OnePod(restarted))
    tracked = view.refresh("shop", name(restarted))
    assert tracked is not None and tracked.failing and tracked.phase == "Running"
    assert len(view) == 2
    assert (view.documents, view.without_document) == (1, 1)  # the Pending pod had the slot
    assert view.document("shop", name(restarted)) is None
    assert view.forget(keep=[]) == 1  # in no incident any more
    assert (view.documents, view.without_document, len(view)) == (1, 0, 1)
