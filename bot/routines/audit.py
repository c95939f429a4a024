"""The weekly prevention audit (`AUDIT_CRON`, Mondays 09:00 UTC by default), posted to the
alert channel; nothing is posted when there is nothing to fix.

The composition root (bot/app.py) runs it once per firing across replicas; the tests call
`run()` directly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk import WebClient

from bot.diagnosis.audit import audit
from bot.kube.client import KubeClient
from bot.kube.inventory import gather
from bot.slack.blocks import audit_message

log = logging.getLogger(__name__)

TITLE = "Weekly prevention audit"


class AuditDigest:
    """Audit the watched namespaces (or the cluster) and post the summary."""

    def __init__(self, kube: KubeClient, slack: WebClient, channel: str,
                 namespaces: Sequence[str] | None = None) -> None:
        self.kube = kube
        self.slack = slack
        self.channel = channel
        self.namespaces = list(namespaces or ()) or None

    def run(self) -> None:
        report = audit(gather(self.kube, self.namespaces))
        if report.clean:
            log.info("weekly audit: no findings (%d namespaces, %d workloads): nothing posted",
                     report.namespaces, report.workloads)
            return
        text, blocks = audit_message(report, title=TITLE)
        self.slack.chat_postMessage(channel=self.channel, text=text, blocks=blocks)
        log.info("weekly audit: posted %d findings", len(report.findings))
