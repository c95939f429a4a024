"""The credentials watch (hourly by default, `CREDENTIALS_WATCH_SECONDS`): ECR tokens past
their 12 hours, referenced pull secrets that do not exist, pull secrets nothing uses, and
secrets for a registry no image comes from — each said in the alert channel once a day
across replicas (`first_time`), not once an hour.

The rules are bot/diagnosis/credentials.py's, over the same inventory as the audit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.diagnosis.audit import credential_report
from bot.kube.client import KubeClient
from bot.kube.inventory import gather
from bot.routines import DAY, first_time, forget
from bot.slack.blocks import audit_finding_message
from bot.store import Store

log = logging.getLogger(__name__)

TOPIC = "credentials"
TITLE = "🔑 Credentials watch"


class CredentialsWatch:
    def __init__(self, kube: KubeClient, slack: WebClient, store: Store, channel: str,
                 namespaces: Sequence[str] | None = None, *, period: float = DAY) -> None:
        self.kube = kube
        self.slack = slack
        self.store = store
        self.channel = channel
        self.namespaces = list(namespaces or ()) or None
        self.period = period

    def run(self) -> None:
        report = credential_report(gather(self.kube, self.namespaces))
        said = 0
        for finding in report.findings:
            if not first_time(self.store, TOPIC, finding.key, self.period):
                continue
            text, blocks = audit_finding_message(finding, TITLE)
            try:
                self.slack.chat_postMessage(channel=self.channel, text=text, blocks=blocks)
            except SlackApiError as exc:  # this one refused: say it at the next run
                forget(self.store, TOPIC, finding.key)
                log.warning("credentials watch: could not post a finding (%s); trying again "
                            "at the next run", exc.response.get("error"))
                continue
            except Exception:  # Slack unreachable: the rest waits for the next run too
                forget(self.store, TOPIC, finding.key)
                raise
            said += 1
        log.info("credentials watch: %d findings, %d new today", len(report.findings), said)
