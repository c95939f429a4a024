"""Prometheus metrics at `/metrics`: what the bot saw, posted and decided.

One CollectorRegistry per runtime (not the process-global default), so several runtimes in one
process — replicas in tests, the demo — never collide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: the label value for every name a `BoundedLabels` does not keep
OTHER = "other"
#: the outcomes of a bus entry at the consumer (bot/chatops/bus/), each a series from the start
BUS_OUTCOMES = ("executed", "refused_forged", "dropped_stale", "duplicate")


class BoundedLabels:
    """Label values taken from text others wrote (cluster names on the shared Redis): only
    names `accept` passes, and at most `limit` distinct ones, keep their own series; every
    other is `OTHER`. Each series lives as long as the process, so an unbounded label is a
    memory leak and a scrape that grows without end."""

    def __init__(self, accept: Callable[[str], bool], limit: int = 50) -> None:
        self.accept = accept
        self.limit = limit
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value == OTHER or not self.accept(value):
            return OTHER
        with self._lock:
            if value in self._kept:
                return value
            if len(self._kept) >= self.limit:
                return OTHER
            self._kept.add(value)
            return value


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.diagnoses = Counter(
            "imagepull_bot_diagnoses_total", "Failing containers diagnosed, by cause",
            ["cause"], registry=self.registry)
        self.posts = Counter(
            "imagepull_bot_slack_posts_total",
            "Incident messages delivered to Slack, by kind (root, update, remind, resolve)",
            ["kind"], registry=self.registry)
        self.post_failures = Counter(
            "imagepull_bot_slack_post_failures_total",
            "Incident posts postponed because Slack could not be reached or refused",
            registry=self.registry)
        self.approvals = Counter(
            "imagepull_bot_approval_decisions_total",
            "Remediation requests and decisions, by outcome", ["outcome"],
            registry=self.registry)
        # several clusters (issue 13, bot/chatops/bus/)
        self.bus_sent = Counter(
            "imagepull_bot_bus_requests_sent_total",
            "Slack requests routed to another cluster's stream, by target cluster (names that "
            "are not DNS-1123 labels, and names beyond the first 50, count as \"other\")",
            ["cluster"], registry=self.registry)
        self.bus_entries = Counter(
            "imagepull_bot_bus_entries_total",
            "Entries of this cluster's stream its consumers finished with, by outcome: "
            "executed, refused_forged (no valid Slack signature), dropped_stale (older than "
            "Slack's 5 minutes), duplicate (already executed: a redelivery)",
            ["outcome"], registry=self.registry)
        for outcome in BUS_OUTCOMES:
            self.bus_entries.labels(outcome=outcome)
        self.bus_takeovers = Counter(
            "imagepull_bot_bus_takeovers_total",
            "Pending entries taken over from a consumer that had not acknowledged them in "
            "BUS_CLAIM_IDLE_SECONDS (a replica died or hung)", registry=self.registry)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time (open incidents, watch relists...)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
