"""The nodes' recent successful pulls, remembered as the event watch sees them go by.

Why: `proxy_suspected` (bot/diagnosis/engine.py) may only be said with evidence that the
failing pod's node *does* reach other registries — its kubelet's `Pulled` events ("Successfully
pulled image …", source.host = the node). The event watch already receives every event of the
watched namespaces, so remembering the last pull per (node, registry host) costs no API call
and a few hundred bytes per node; reading them per diagnosis instead would mean a cluster-wide
event LIST each time.

`Container image … already present on machine` is not remembered: it proves nothing about the
way to the registry. Pulls older than `window` are forgotten (events expire after about an hour
anyway). Until the watch has listed once, `recent` answers None ("not known"), so a CLI
diagnosis or a bot without the watch never claims the node pulled nothing.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.diagnosis.events import read_event
from bot.diagnosis.facts import NodePull
from bot.diagnosis.imageref import try_parse_image

__all__ = ["NodePulls"]

_PULLED_RX: Final = re.compile(r'^\s*Successfully pulled image \\?"(?P<image>[^"\\]+)\\?"')


class NodePulls:
    """Per node, the newest successful pull from each registry host (at most `per_node`
    hosts per node, `max_nodes` nodes, least recently updated out). Thread-safe: the
    watcher writes, the diagnosis workers read."""

    def __init__(self, *, per_node: int = 8, max_nodes: int = 5_000,
                 window: timedelta = timedelta(hours=1)) -> None:
        self.per_node = per_node
        self.max_nodes = max_nodes
        self.window = window
        self._nodes: OrderedDict[str, OrderedDict[str, NodePull]] = OrderedDict()
        self._lock = threading.Lock()
        #: set once an event watch has listed: from then on "no pulls" means none were seen
        self.watched = False

    def record(self, raw_event: Mapping[str, Any]) -> bool:
        """Remember one event if it is a kubelet's successful pull; True if it was one."""
        if raw_event.get("reason") != "Pulled":
            return False
        event = read_event(raw_event)
        match = _PULLED_RX.match(event.message)
        node = _node_of(raw_event)
        if not match or not node:
            return False
        ref = try_parse_image(match.group("image"))
        if ref is None:
            return False
        involved = raw_event.get("involvedObject") or raw_event.get("regarding") or {}
        pod = f"{involved.get('namespace') or ''}/{involved.get('name') or ''}".strip("/")
        pull = NodePull(image=match.group("image"), pod=pod, at=event.last_seen)
        with self._lock:
            hosts = self._nodes.pop(node, None) or OrderedDict()
            self._nodes[node] = hosts
            old = hosts.pop(ref.registry, None)
            if old is not None and old.at and pull.at and old.at > pull.at:
                pull = old  # a relist may hand over an older event after a newer one
            hosts[ref.registry] = pull
            while len(hosts) > self.per_node:
                hosts.popitem(last=False)
            while len(self._nodes) > self.max_nodes:
                self._nodes.popitem(last=False)
        return True

    def recent(self, node: str | None, now: datetime | None = None
               ) -> tuple[NodePull, ...] | None:
        """The node's pulls within the window, newest last; None when not known (no watch
        has listed yet, or no node)."""
        if not node or not self.watched:
            return None
        cutoff = (now or datetime.now(UTC)) - self.window
        with self._lock:
            pulls = list((self._nodes.get(node) or {}).values())
        fresh = [p for p in pulls if p.at is None or p.at >= cutoff]
        return tuple(sorted(fresh, key=lambda p: p.at or cutoff))


def _node_of(raw_event: Mapping[str, Any]) -> str:
    """The node a kubelet event comes from: `source.host` (core/v1), or the reporting
    instance (the events.k8s.io dialect, where the kubelet writes its node name)."""
    source = raw_event.get("source") or {}
    return str(source.get("host") or raw_event.get("reportingInstance") or "")
