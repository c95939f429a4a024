"""One answer to "is this event a pull failure?", whoever asks.

The watcher (which events make it look at a pod again) and the engine (which events tell a
container's pull history) both use `pull_event_kind`; before, each had its own copy and the
two had drifted. Every shape below is asked three ways: the function itself, the watcher's
`pull_signal`, and the engine's observable behaviour (does a container with no decisive status
count as failing on that event alone; does the event end an earlier failure).
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.diagnosis.engine import diagnose
from bot.diagnosis.events import (
    PULL_ERROR_TEXTS,
    PULL_WAITING_REASONS,
    pull_event_kind,
    read_event,
)
from bot.diagnosis.facts import PodFacts
from bot.kube.watch import pull_signal
from tests.diagnosis.kubelet import NOW, event, pod

IMAGE = "nginx:lates"
NOT_FOUND = ('rpc error: code = NotFound desc = failed to pull and unpack image '
             '"docker.io/library/nginx:lates": failed to resolve reference '
             '"docker.io/library/nginx:lates": docker.io/library/nginx:lates: not found')
FAILED_TO_PULL = f'Failed to pull image "{IMAGE}": {NOT_FOUND}'

OPERATOR = {"source": {"component": "some-operator"}, "reportingComponent": "some-operator"}
EVENTS_K8S_IO_OPERATOR = {"source": {}, "reportingComponent": "some-operator"}
STRIPPED = {"source": None}

#: (id, event type, reason, message, overrides of the raw event, expected kind)
SHAPES: list[tuple[str, str, str, str, dict[str, Any], str | None]] = [
    ("failed-to-pull", "Warning", "Failed", FAILED_TO_PULL, {}, "pull_failure"),
    ("err-image-pull", "Warning", "Failed", "Error: ErrImagePull", {}, "pull_failure"),
    ("image-pull-back-off", "Warning", "Failed", "Error: ImagePullBackOff", {},
     "pull_failure"),
    ("registry-unavailable", "Warning", "Failed", "Error: RegistryUnavailable", {},
     "pull_failure"),
    ("image-inspect-error", "Warning", "Failed", "Error: ImageInspectError", {},
     "pull_failure"),
    ("err-never-pull-text", "Warning", "Failed", "Error: ErrImageNeverPull", {},
     "pull_failure"),
    ("invalid-name-text", "Warning", "Failed", "Error: InvalidImageName", {}, "pull_failure"),
    ("never-pull", "Warning", "ErrImageNeverPull",
     f'Container image "{IMAGE}" is not present with pull policy of Never', {},
     "pull_failure"),
    ("inspect-failed", "Warning", "InspectFailed",
     'Failed to apply default image tag "Shop/Web:1.0": couldn\'t parse image reference '
     '"Shop/Web:1.0": invalid reference format: repository name must be lowercase', {},
     "pull_failure"),
    ("pull-secret", "Warning", "FailedToRetrieveImagePullSecret",
     "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may "
     "not succeed.", {}, "pull_failure"),
    ("back-off-pulling", "Normal", "BackOff", f'Back-off pulling image "{IMAGE}"', {},
     "pull_failure"),
    ("back-off-pulling-1.30", "Normal", "BackOff",
     f'Back-off pulling image "{IMAGE}": ErrImagePull: {NOT_FOUND}', {}, "pull_failure"),
    ("crash-loop", "Warning", "BackOff",
     "Back-off restarting failed container web in pod web-1_shop(uid)", {}, None),
    ("crash-loop-normal-short", "Normal", "BackOff", "Back-off restarting failed container",
     {}, None),
    ("pulled", "Normal", "Pulled",
     f'Successfully pulled image "{IMAGE}" in 1.2s (1.2s including waiting)', {}, "pulled"),
    ("already-present", "Normal", "Pulled",
     f'Container image "{IMAGE}" already present on machine', {}, "pulled"),
    ("pulling", "Normal", "Pulling", f'Pulling image "{IMAGE}"', {}, None),
    ("container-start-failed", "Warning", "Failed",
     'Error: failed to create containerd task: failed to create shim task: OCI runtime '
     'create failed: runc create failed: exec: "/app": permission denied', {}, None),
    # the image is there and the container cannot be created: a diagnosis-worthy text, but
    # not a pull (the engine used to take any classifiable Failed text for one)
    ("container-create-disk-full", "Warning", "Failed",
     "Error: failed to create containerd container: copying of parent failed: failed to copy "
     "files: copy file range failed: no space left on device", {}, None),
    ("run-as-root", "Warning", "Failed",
     "Error: container has runAsNonRoot and image will run as root", {}, None),
    ("another-component", "Warning", "Failed", FAILED_TO_PULL, OPERATOR, None),
    ("another-component-events-k8s-io", "Warning", "Failed", FAILED_TO_PULL,
     EVENTS_K8S_IO_OPERATOR, None),
    ("another-component-pulled", "Normal", "Pulled",
     f'Successfully pulled image "{IMAGE}" in 1.2s', OPERATOR, None),
    ("no-component-judged-by-text", "Warning", "Failed", FAILED_TO_PULL, STRIPPED,
     "pull_failure"),
]


def _raw(type_: str, reason: str, message: str, overrides: dict[str, Any],
         last_ago: float = 10) -> dict[str, Any]:
    raw = event(reason, message, type_=type_, last_ago=last_ago)
    raw.update(overrides)
    return raw


def _undecided_pod() -> dict[str, Any]:
    """A pod whose container status says neither waiting on an image nor running: only the
    events can tell whether it cannot pull."""
    p = pod(IMAGE)
    del p["status"]["containerStatuses"]
    return p


def _engine_kind(raw: dict[str, Any]) -> str | None:
    """What the engine makes of the event, read from diagnose() alone."""
    alone = diagnose(PodFacts(pod=_undecided_pod(), events=[raw], now=NOW)).diagnoses
    older = event("Failed", FAILED_TO_PULL, last_ago=60)
    after_failure = diagnose(PodFacts(pod=_undecided_pod(), events=[older, raw],
                                      now=NOW)).diagnoses
    if alone:
        assert after_failure, "a pull failure cannot end an earlier one"
        return "pull_failure"
    return None if after_failure else "pulled"


@pytest.mark.parametrize(("type_", "reason", "message", "overrides", "expected"),
                         [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_watcher_and_engine_agree(type_: str, reason: str, message: str,
                                  overrides: dict[str, Any], expected: str | None) -> None:
    raw = _raw(type_, reason, message, overrides)
    assert pull_event_kind(read_event(raw)) == expected
    signal = pull_signal(raw)
    assert (signal.kind if signal else None) == expected
    assert _engine_kind(raw) == expected


def test_every_waiting_reason_has_its_error_text() -> None:
    """The kubelet writes "Error: <reason>" for each image waiting reason: one list feeds both."""
    assert {f"Error: {r}" for r in PULL_WAITING_REASONS} == PULL_ERROR_TEXTS
    for text in PULL_ERROR_TEXTS:
        assert pull_event_kind(read_event(event("Failed", text))) == "pull_failure"


def test_reporter_is_read_from_either_dialect() -> None:
    assert read_event(event("Failed", FAILED_TO_PULL)).reporter == "kubelet"
    raw = _raw("Warning", "Failed", FAILED_TO_PULL,
               {"source": {}, "reportingController": "kubelet"})
    assert read_event(raw).reporter == "kubelet"
    assert read_event(_raw("Warning", "Failed", FAILED_TO_PULL, STRIPPED)).reporter is None
