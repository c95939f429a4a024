"""Prometheus metrics at `/metrics`: what the bot saw, posted and decided.

One CollectorRegistry per runtime (not the process-global default), so several runtimes in one
process — replicas in tests, the demo — never collide.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


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

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time (open incidents, watch relists...)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
