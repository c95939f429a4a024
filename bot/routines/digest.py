"""The daily digest: what is still open, and how the period went, in one message.

Why: an incident that stays open is reminded in its own thread every `repeat_interval`
(bot/alerts/incidents.py `_do_remind`), which only people following that thread see. The
digest is the channel-level reminder: every open incident with its age, pod count and a link
to its thread, then the period's figures (top causes, time to resolve, noisiest workloads),
so recurring trouble shows as a pattern rather than as separate alerts. It is *not* a second
reminder mechanism: per-incident reminders stay where they are.

The period is the cron schedule's (`DIGEST_CRON`, a day for the default `0 9 * * *`).
Resolved incidents are read from the incident history (`IncidentManager.resolved_since`, a
week kept). Nothing is posted when there is nothing to say: no open incident and none resolved
in the period. The composition root runs it once per period across replicas
(`Store.take_turn`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.alerts.incidents import Incident, IncidentManager, ResolvedIncident
from bot.diagnosis.causes import Cause
from bot.routines import DAY
from bot.slack.blocks import MAX_LISTED, digest_message
from bot.slack.notifier import posting_client

log = logging.getLogger(__name__)

#: causes and workloads named in the digest
TOP = 5


class Digest:
    """The routine's `run`: gather, and post unless there is nothing to say."""

    def __init__(self, manager: IncidentManager, slack: WebClient, channel: str, *,
                 cluster: str, period: float = DAY,
                 clock: Callable[[], float] = time.time) -> None:
        self.manager = manager
        self.slack = slack
        self.poster = posting_client(slack)  # the digest is not re-sent inside one call
        self.channel = channel
        self.cluster = cluster
        self.period = period
        self.clock = clock

    def open_incidents(self) -> list[Incident]:
        """Incidents posted and not resolved (pending ones were never announced), oldest
        first."""
        found = [incident for incident_id in self.manager.active_ids()
                 if (incident := self.manager.load(incident_id)) is not None
                 and incident.state == "open"]
        return sorted(found, key=lambda incident: (incident.created_at, incident.id))

    def run(self) -> None:
        now = self.clock()
        since = now - self.period
        open_incidents = self.open_incidents()
        resolved = self.manager.resolved_since(since)
        if not open_incidents and not resolved:
            log.info("digest: no open incident and none resolved in the period: nothing to say")
            return
        opened = sum(1 for i in open_incidents if i.created_at >= since) \
            + sum(1 for r in resolved if r.created_at >= since)
        text, blocks = digest_message(
            cluster=self.cluster, period=self.period, now=now,
            open_incidents=[(incident, self._permalink(incident) if n < MAX_LISTED else None)
                            for n, incident in enumerate(open_incidents)],  # links: listed ones
            opened=opened, resolved=len(resolved),
            top_causes=top_causes(open_incidents, resolved),
            resolve_times=resolve_times(resolved),
            noisiest=noisiest_workloads(open_incidents, resolved))
        try:
            self.poster.chat_postMessage(channel=self.channel, text=text, blocks=blocks,
                                         unfurl_links=False, unfurl_media=False)
        except (SlackClientError, OSError) as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) \
                else type(exc).__name__
            log.warning("digest: not posted (%s); the next one is due next period", error)

    def _permalink(self, incident: Incident) -> str | None:
        """The thread's permalink (chat.getPermalink), or None: the digest then names the
        channel and ts instead."""
        if not (incident.channel and incident.thread_ts):
            return None
        try:
            response = self.slack.chat_getPermalink(channel=incident.channel,
                                                    message_ts=incident.thread_ts)
        except (SlackClientError, OSError) as exc:
            log.debug("digest: no permalink for %s: %s", incident.id, exc)
            return None
        link = response.get("permalink")
        return str(link) if link else None


def top_causes(open_incidents: list[Incident],
               resolved: list[ResolvedIncident]) -> list[tuple[Cause, int]]:
    """Causes of the period's incidents (open, and resolved in it), most frequent first."""
    counts = Counter([i.cause for i in open_incidents] + [r.cause for r in resolved])
    return sorted(counts.items(), key=lambda item: (-item[1], item[0].value))[:TOP]


def resolve_times(resolved: list[ResolvedIncident]) -> tuple[float, float] | None:
    """(median, worst) time from opening to resolution; None when nothing was resolved."""
    if not resolved:
        return None
    took = [r.took for r in resolved]
    return statistics.median(took), max(took)


def noisiest_workloads(open_incidents: list[Incident],
                       resolved: list[ResolvedIncident]) -> list[tuple[str, int]]:
    """Workloads by failing pods summed over the period's incidents (each incident counts a
    workload's most pods at once), most first."""
    counts: Counter[str] = Counter()
    for incident in open_incidents:
        counts.update(incident.peak_now())
    for record in resolved:
        counts.update(record.workloads)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP]
