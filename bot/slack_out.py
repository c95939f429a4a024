"""Posting incidents to Slack: threads, edits, per-channel pacing, retries that never duplicate.

slack_sdk's retry handlers wait out `429 Retry-After` and retry 5xx and dropped connections, so
a burst is delayed, not dropped. Pacing is shared by all replicas through the store (about one
message per second per channel, Slack's chat.postMessage limit). A post that still fails raises
NotifyError: the incident stays due and the next tick tries again — nothing is marked as sent
before Slack said ok, so nothing is sent twice by a retry of ours.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.incidents import Incident, Member, NotifyError
from bot.slack_blocks import (
    reminder_message,
    resolved_message,
    root_message,
    update_message,
)
from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


def web_client(token: str, base_url: str = DEFAULT_SLACK_API_URL,
               timeout: int = 10) -> WebClient:
    """A WebClient that waits out 429s and retries 5xx / connection errors."""
    client = WebClient(token=token, base_url=base_url, timeout=timeout)
    client.retry_handlers.extend([
        RateLimitErrorRetryHandler(max_retry_count=5),
        ServerErrorRetryHandler(max_retry_count=3),
        ConnectionErrorRetryHandler(max_retry_count=3),
    ])
    return client


class SlackNotifier:
    """The Notifier that writes incidents into one alert channel."""

    def __init__(self, client: WebClient, channel: str, store: Store, *,
                 min_interval: float = 1.0, max_wait: float = 30.0) -> None:
        self.client = client
        self.channel = channel
        self.store = store
        self.min_interval = min_interval
        self.max_wait = max_wait

    def _pace(self, channel: str) -> None:
        """Wait for this channel's slot (shared across replicas through the store)."""
        deadline = time.monotonic() + self.max_wait
        key = self.store.key("slack", "pace", channel)
        while True:
            try:
                if self.store.set_nx(key, "1", ttl=self.min_interval):
                    return
            except StoreUnavailable:
                return  # pacing is a courtesy; slack_sdk still honours 429s
            if time.monotonic() > deadline:
                raise NotifyError(f"channel {channel} stayed busy for {self.max_wait:.0f}s")
            time.sleep(min(0.1, self.min_interval))

    def _call(self, method: str, channel: str, **kwargs: Any) -> dict[str, Any]:
        self._pace(channel)
        try:
            response = self.client.api_call(method, json={"channel": channel, **kwargs})
        except SlackApiError as exc:
            raise NotifyError(f"{method}: {exc.response.get('error', exc)}") from None
        except (SlackClientError, OSError) as exc:
            raise NotifyError(f"{method}: {type(exc).__name__}: {exc}") from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def post_root(self, incident: Incident) -> tuple[str, str]:
        text, blocks = root_message(incident)
        data = self._call("chat.postMessage", self.channel, text=text, blocks=blocks,
                          unfurl_links=False, unfurl_media=False)
        return str(data["channel"]), str(data["ts"])

    def _thread(self, incident: Incident, text: str, blocks: list[dict[str, Any]]) -> None:
        if not (incident.channel and incident.thread_ts):
            raise NotifyError(f"incident {incident.id} has no thread yet")
        self._call("chat.postMessage", incident.channel, text=text, blocks=blocks,
                   thread_ts=incident.thread_ts)

    def _refresh_root(self, incident: Incident, resolved: bool = False) -> None:
        """Edit the root to show current counts; a failed edit is retried with the next one."""
        text, blocks = root_message(incident, resolved=resolved)
        try:
            self._call("chat.update", str(incident.channel), ts=incident.thread_ts,
                       text=text, blocks=blocks)
        except NotifyError as exc:
            log.warning("incident %s: root message not refreshed: %s", incident.id, exc)

    def post_update(self, incident: Incident, new: list[Member],
                    recovered: list[Member]) -> None:
        text, blocks = update_message(incident, new, recovered)
        self._thread(incident, text, blocks)
        self._refresh_root(incident)

    def post_reminder(self, incident: Incident, now: float) -> None:
        text, blocks = reminder_message(incident, now)
        self._thread(incident, text, blocks)

    def post_resolved(self, incident: Incident) -> None:
        text, blocks = resolved_message(incident)
        self._thread(incident, text, blocks)
        self._refresh_root(incident, resolved=True)
