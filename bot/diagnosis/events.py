"""Kubelet events, read the way they actually arrive, and the one test of what they say
about image pulls.

core/v1 Events come in two dialects: the classic one (`count`, `firstTimestamp`,
`lastTimestamp`, `source.component`) and the one written through events.k8s.io
(`series.count`, `series.lastObservedTime`, `eventTime`, `reportingComponent`, null counts).
Both are folded into `KubeletEvent`.

`pull_event_kind` is the only place that decides "is this event a pull failure (or a
successful pull)?": the watcher asks it which events make it look at a pod again
(bot/kube/watch.py) and the engine which events tell a container's pull history
(bot/diagnosis/engine.py). Two copies of that rule had drifted apart before; one rule cannot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from bot.diagnosis.classify import failed_pull_image, is_crash_loop, pull_back_off_image
from bot.diagnosis.facts import parse_k8s_time

#: containerStatuses[].state.waiting.reason values that mean "cannot get the image" (the
#: kubelet's image errors, pkg/kubelet/images/types.go and the CRI's RegistryUnavailable).
PULL_WAITING_REASONS: Final = frozenset({
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "RegistryUnavailable",
    "ImageInspectError",
})
#: `Failed` events whose whole text is the kubelet naming one of those reasons: when a
#: container cannot start for want of its image it writes "Error: <waiting reason>".
PULL_ERROR_TEXTS: Final = frozenset(f"Error: {reason}" for reason in PULL_WAITING_REASONS)
#: Event reasons that are about image pulls whatever their text.
_PULL_REASONS: Final = frozenset({
    "ErrImageNeverPull", "InspectFailed", "FailedToRetrieveImagePullSecret",
})
#: The component that writes pull events (core/v1 `source.component`, events.k8s.io
#: `reportingController`).
KUBELET: Final = "kubelet"

PullEventKind = Literal["pull_failure", "pulled"]

_FIELD_PATH = re.compile(
    r"^spec\.(?P<kind>containers|initContainers|ephemeralContainers)\{(?P<name>[^}]+)\}$"
)


@dataclass(frozen=True)
class KubeletEvent:
    type: str
    reason: str
    message: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    container: str | None
    #: Which component wrote it (None: the event does not say, e.g. a stripped export).
    reporter: str | None = None


def read_event(raw: Mapping[str, Any]) -> KubeletEvent:
    """Fold one core/v1 Event dict (either dialect) into a KubeletEvent."""
    involved = raw.get("involvedObject") or raw.get("regarding") or {}
    match = _FIELD_PATH.match(str(involved.get("fieldPath") or ""))
    series = raw.get("series") or {}
    count = raw.get("count") or series.get("count") or 1
    first = parse_k8s_time(raw.get("firstTimestamp")) or parse_k8s_time(raw.get("eventTime"))
    last = (
        parse_k8s_time(raw.get("lastTimestamp"))
        or parse_k8s_time(series.get("lastObservedTime"))
        or first
        or parse_k8s_time((raw.get("metadata") or {}).get("creationTimestamp"))
    )
    return KubeletEvent(
        type=str(raw.get("type") or ""),
        reason=str(raw.get("reason") or ""),
        message=str(raw.get("message") or raw.get("note") or ""),
        count=int(count),
        first_seen=first or last,
        last_seen=last,
        container=match.group("name") if match else None,
        reporter=reporter(raw),
    )


def reporter(raw: Mapping[str, Any]) -> str | None:
    """Which component wrote the event, from either dialect; None if it does not say."""
    source = raw.get("source") or {}
    for value in (source.get("component"), raw.get("reportingComponent"),
                  raw.get("reportingController")):
        if value:
            return str(value)
    return None


def pull_event_kind(event: KubeletEvent) -> PullEventKind | None:
    """``"pull_failure"``, ``"pulled"``, or None if the event is not the kubelet talking about
    an image pull.

    Pull failures: ``Failed`` with ``Failed to pull image "x": ...`` (and the kubelet's other
    pull texts: inspect, never-pull, default tag) or ``Error: <waiting reason>`` for any of
    `PULL_WAITING_REASONS`; ``BackOff`` with ``Back-off pulling image`` (the kubelet writes it
    as Normal); ``ErrImageNeverPull``, ``InspectFailed``, ``FailedToRetrieveImagePullSecret``
    whatever their text. ``Pulled`` (pulled, or already present) is ``"pulled"``: the pod may
    have recovered. ``Back-off restarting failed container`` is CrashLoopBackOff: the image was
    pulled, so it is never a pull event; neither is any other ``Failed`` text (a container that
    cannot start, a probe). Events that name a component other than the kubelet are ignored;
    events that name none (stripped copies) are judged by their text.
    """
    if event.reporter is not None and event.reporter != KUBELET:
        return None
    text = event.message.strip()
    if event.reason == "Pulled":
        return "pulled"
    if event.reason in _PULL_REASONS:
        return "pull_failure"
    if event.reason == "Failed":
        if text in PULL_ERROR_TEXTS or failed_pull_image(text) is not None:
            return "pull_failure"
    elif (event.reason == "BackOff" and not is_crash_loop(text)
          and pull_back_off_image(text) is not None):
        return "pull_failure"
    return None


def events_for_pod(raw_events: Iterable[Mapping[str, Any]], namespace: str, pod: str,
                   uid: str | None = None) -> list[KubeletEvent]:
    """The events about one pod, oldest first.

    Matched by namespace + name (and uid when both sides have one: a recreated pod with the same
    name must not inherit its predecessor's errors).
    """
    found: list[KubeletEvent] = []
    for raw in raw_events:
        involved = raw.get("involvedObject") or raw.get("regarding") or {}
        if involved.get("kind", "Pod") != "Pod" or involved.get("name") != pod:
            continue
        ns = involved.get("namespace") or (raw.get("metadata") or {}).get("namespace")
        if ns and ns != namespace:
            continue
        if uid and involved.get("uid") and involved.get("uid") != uid:
            continue
        found.append(read_event(raw))
    found.sort(key=_chronological)
    return found


def _chronological(event: KubeletEvent) -> tuple[int, float]:
    stamp = event.last_seen or event.first_seen
    return (0, 0.0) if stamp is None else (1, stamp.timestamp())
