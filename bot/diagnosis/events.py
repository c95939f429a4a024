"""Kubelet events, read the way they actually arrive.

core/v1 Events come in two dialects: the classic one (`count`, `firstTimestamp`,
`lastTimestamp`) and the one written through events.k8s.io (`series.count`,
`series.lastObservedTime`, `eventTime`, null counts). Both are folded into `KubeletEvent`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.diagnosis.facts import parse_k8s_time

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
    )


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
