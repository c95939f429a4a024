"""Posting incidents to Slack: threads, edits, per-channel pacing, and each message exactly once.

chat.postMessage is not idempotent, and its outcome is *unknown* whenever its answer is lost: a
client timeout, a 5xx (Slack documents `internal_error` / `fatal_error` as "it's possible some
aspect of the operation succeeded"), a connection dropped after the request went out, a process
killed or a store write failing right after Slack answered. Only a 429, an `ok: false` naming a
problem with the request, or a connection that was never made prove that nothing was stored.
Posting again on an unknown outcome is how one incident became five roots. So:

1. Every message the bot posts for an incident carries Slack message metadata
   `{"event_type": "imagepull_incident", "event_payload": {"incident_id", "part"}}`, where
   `part` names the message within its incident (`root`, `update:3`, `remind:1`, `resolved`).
2. Before a part is sent, an attempt marker `{"at": <wall clock>}` is written to the incident's
   `posts` hash in the store (HSETNX: the first attempt's time stays). The caller holds the
   incident's claim, so one replica at a time does this. The ts is recorded there the moment
   Slack answers, before anything else.
3. A part whose marker has no ts may already be in Slack. Before sending it again the notifier
   looks for it: `conversations.history` of the alert channel for a root (from the first attempt
   minus a clock margin: message ts come from Slack's clock, markers from ours), or
   `conversations.replies` of the thread for a reply, both with `include_all_metadata`. A found
   message is adopted (its ts recorded) instead of posted. If Slack cannot be asked, nothing is
   posted and the incident stays due (NotifyError): a delay, never a duplicate.
4. The client that posts keeps only slack_sdk's 429 handler (a 429 proves nothing was stored):
   its ServerErrorRetryHandler and ConnectionErrorRetryHandler would re-send a message that
   Slack may have stored, inside one call, where no look-up can happen. Unknown outcomes are
   retried here instead, each retry after a look-up. chat.update is idempotent and keeps every
   retry handler, as do the read methods.

Pacing is shared by all replicas through the store, in two lanes per channel, as Slack limits
them (https://docs.slack.dev/apis/web-api/rate-limits): new messages about one per second per
channel with short bursts ("Posting messages: 1 per second, short bursts >1 allowed"), and
edits (chat.update, a Tier 3 method: 50+ per minute) in a lane of their own, so root edits
never queue behind thread replies (a resolution is a reply and an edit). Each lane allows
`PACE_BURST` calls per `PACE_BURST` intervals; a burst beyond is delayed, not dropped, and a
429 is still waited out by slack_sdk.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.alerts.incidents import Incident, Member, NotifyError
from bot.slack.blocks import (
    cleared_message,
    reminder_message,
    resolved_message,
    root_message,
    update_message,
)
from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
#: The metadata event type on every message the bot posts for an incident.
EVENT_TYPE = "imagepull_incident"
#: How far before the first attempt a look-up starts: Slack's ts is Slack's clock, the attempt
#: marker is ours; NTP keeps both within a second, a minute covers a badly kept host.
CLOCK_MARGIN = 60.0
#: Posts with an unknown outcome retried (each after a look-up) within one delivery.
UNKNOWN_RETRIES = 3
#: A look-up reads at most this many pages of `PAGE_SIZE` messages (Slack suggests ≤ 200).
#: Calls a pacing lane allows at once (then one per `min_interval` on average): Slack allows
#: "short bursts >1" of posts; three keeps a burst short.
PACE_BURST = 3
MAX_PAGES = 10
PAGE_SIZE = 200
#: `ok: false` errors after which Slack may have done the work all the same (its docs:
#: "It's possible some aspect of the operation succeeded before the error was raised").
_AMBIGUOUS_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable"})
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


def web_client(token: str, base_url: str = DEFAULT_SLACK_API_URL,
               timeout: float = 10) -> WebClient:
    """A WebClient that waits out 429s and retries 5xx / connection errors (for idempotent
    calls; SlackNotifier posts through a copy that retries 429s only)."""
    client = WebClient(token=token, base_url=base_url, timeout=timeout)  # type: ignore[arg-type]
    client.retry_handlers.extend([
        RateLimitErrorRetryHandler(max_retry_count=5),
        ServerErrorRetryHandler(max_retry_count=3),
        ConnectionErrorRetryHandler(max_retry_count=3),
    ])
    return client


def _rate_limit_only(client: WebClient) -> WebClient:
    """A copy of `client` whose only retry handler is the 429 one (see the module docstring)."""
    return WebClient(token=client.token, base_url=client.base_url, timeout=client.timeout,
                     ssl=client.ssl, proxy=client.proxy, headers=dict(client.headers),
                     retry_handlers=[h for h in client.retry_handlers
                                     if isinstance(h, RateLimitErrorRetryHandler)])


def posting_client(client: WebClient) -> WebClient:
    """For posts that are not idempotent outside the incident notifier (a scheduled watch's
    message): `client` with only the 429 retry handler, so one call never re-sends a message
    Slack may already have stored; the caller decides on an unknown outcome
    (`outcome_unknown`)."""
    return _rate_limit_only(client)


class DeliveryUnknown(NotifyError):
    """The request may have reached Slack: look for the message before posting it again."""


class _CannotLook(Exception):
    """Slack will never answer the look-up (a missing scope, an unknown channel or thread)."""


def outcome_unknown(exc: BaseException) -> bool:
    """False only when the failure proves Slack stored nothing."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status >= 500 or exc.response.get("error") in _AMBIGUOUS_ERRORS
    reason = exc.reason if isinstance(exc, URLError) else exc
    # refused or unresolvable: the request never left this host
    return not isinstance(reason, ConnectionRefusedError | socket.gaierror)


def _transient(exc: SlackApiError) -> bool:
    """A 429, 5xx or ambiguous error: asking again later may work."""
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or outcome_unknown(exc)


def incident_metadata(incident_id: str, part: str) -> dict[str, Any]:
    """The Slack message metadata that names a message of an incident."""
    return {"event_type": EVENT_TYPE,
            "event_payload": {"incident_id": incident_id, "part": part}}


def _names(message: dict[str, Any], incident_id: str, part: str) -> bool:
    meta = message.get("metadata")
    if not isinstance(meta, dict) or meta.get("event_type") != EVENT_TYPE:
        return False
    payload = meta.get("event_payload")
    return (isinstance(payload, dict) and payload.get("incident_id") == incident_id
            and payload.get("part") == part)


class SlackNotifier:
    """The Notifier that writes incidents into one alert channel, each message once."""

    def __init__(self, client: WebClient, channel: str, store: Store, *,
                 min_interval: float = 1.0, max_wait: float = 30.0,
                 retry_pause: float = 0.5, remediation: bool = True) -> None:
        self.client = client
        #: False (REMEDIATION_ENABLED=false): roots carry no remediation buttons
        self.remediation = remediation
        self.post_client = _rate_limit_only(client)
        self.channel = channel
        self.store = store
        self.min_interval = min_interval
        self.max_wait = max_wait
        self.retry_pause = retry_pause

    # -- transport --------------------------------------------------------------------------

    def _pace(self, channel: str, lane: str = "post") -> None:
        """Wait for a slot of this channel's lane (shared across replicas through the store):
        `PACE_BURST` slots, each held for `PACE_BURST` intervals, so the lane averages one
        call per `min_interval` and allows a burst of `PACE_BURST`."""
        deadline = time.monotonic() + self.max_wait
        hold = self.min_interval * PACE_BURST
        keys = [self.store.key("slack", "pace", channel, lane, str(slot))
                for slot in range(PACE_BURST)]
        while True:
            try:
                if any(self.store.set_nx(key, "1", ttl=hold) for key in keys):
                    return
            except StoreUnavailable:
                return  # pacing is a courtesy; slack_sdk still honours 429s
            if time.monotonic() > deadline:
                raise NotifyError(f"channel {channel} stayed busy for {self.max_wait:.0f}s")
            time.sleep(min(0.1, self.min_interval))

    def _call(self, method: str, channel: str, *, client: WebClient | None = None,
              **kwargs: Any) -> dict[str, Any]:
        """One paced write; DeliveryUnknown when Slack may have acted, NotifyError when not."""
        self._pace(channel, "edit" if method == "chat.update" else "post")
        try:
            response = (client or self.client).api_call(
                method, json={"channel": channel, **kwargs})
        except SlackApiError as exc:
            error = exc.response.get("error", exc)
            kind = DeliveryUnknown if outcome_unknown(exc) else NotifyError
            raise kind(f"{method}: {error}") from None
        except (SlackClientError, OSError) as exc:
            kind = DeliveryUnknown if outcome_unknown(exc) else NotifyError
            raise kind(f"{method}: {type(exc).__name__}: {exc}") from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    # -- exactly-once posting -----------------------------------------------------------------

    def _ledger(self, incident: Incident) -> str:
        return self.store.key("incident", incident.id, "posts")

    def posted(self, incident: Incident, part: str) -> tuple[str, str] | None:
        """Where `part` is if it was ever sent: its recorded (channel, ts), or, when an attempt's
        outcome is unknown, the copy found in Slack (then recorded). None when it was never
        sent or Slack does not have it; NotifyError when Slack cannot say."""
        return self._posted(incident, part, self._entry(incident, part))

    def _entry(self, incident: Incident, part: str) -> dict[str, Any]:
        raw = self.store.hgetall(self._ledger(incident)).get(part)
        return dict(json.loads(raw)) if raw else {}

    def _posted(self, incident: Incident, part: str,
                entry: dict[str, Any]) -> tuple[str, str] | None:
        if entry.get("ts"):  # posted and recorded; the caller's own record is what failed
            return str(entry.get("channel") or incident.channel or self.channel), entry["ts"]
        if not entry:
            return None
        thread_ts = None if part == "root" else incident.thread_ts
        found = self._find(incident, part, float(entry["at"]), thread_ts)
        if found is None:
            return None
        return self._record(self._ledger(incident), part, entry, *found, adopted=True)

    def _deliver(self, incident: Incident, part: str, text: str,
                 blocks: list[dict[str, Any]], thread_ts: str | None = None,
                 **extra: Any) -> tuple[str, str]:
        """Post `part` of `incident` once, or adopt the copy Slack already has: (channel, ts)."""
        ledger = self._ledger(incident)
        entry = self._entry(incident, part)
        channel = incident.channel if thread_ts else self.channel
        if entry:
            found = self._posted(incident, part, entry)
            if found is not None:
                return found
        else:
            entry = {"at": time.time()}
            if not self.store.hsetnx(ledger, part, json.dumps(entry)):
                raise NotifyError(f"incident {incident.id}: {part} is being sent elsewhere")
        if thread_ts:
            extra["thread_ts"] = thread_ts
        for attempt in range(UNKNOWN_RETRIES + 1):
            try:
                data = self._call("chat.postMessage", str(channel), client=self.post_client,
                                  text=text, blocks=blocks,
                                  metadata=incident_metadata(incident.id, part), **extra)
                posted = self._record(ledger, part, entry, str(data["channel"]),
                                      str(data["ts"]))
                if not thread_ts and posted[0] != self.channel:
                    self.store.put(self._channel_key(), posted[0])  # for later look-ups
                return posted
            except DeliveryUnknown as exc:
                log.warning("incident %s: %s may or may not be in Slack (%s); looking",
                            incident.id, part, exc)
                if attempt == UNKNOWN_RETRIES:
                    raise
                time.sleep(self.retry_pause * 2 ** attempt)
                found = self._find(incident, part, float(entry["at"]), thread_ts)
                if found is not None:
                    return self._record(ledger, part, entry, *found, adopted=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(self, ledger: str, part: str, entry: dict[str, Any], channel: str, ts: str,
                *, adopted: bool = False) -> tuple[str, str]:
        if adopted:
            log.info("found %s already in Slack (ts %s): not posting it again", part, ts)
        self.store.hset(ledger, {part: json.dumps({**entry, "channel": channel, "ts": ts})})
        return channel, ts

    def _channel_key(self) -> str:
        return self.store.key("slack", "channel-id", self.channel)

    def _channel_id(self) -> str:
        """The alert channel's ID, which conversations.history needs (chat.postMessage also
        takes a name): the configured value if it is an ID, else the one Slack answered to an
        earlier post, else conversations.list. NotifyError when Slack cannot answer now,
        _CannotLook when it never will (a missing scope, no such channel)."""
        if _CHANNEL_ID.match(self.channel):
            return self.channel
        known = self.store.get(self._channel_key())
        if known:
            return known
        name = self.channel.lstrip("#")
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            try:
                response = self.client.conversations_list(
                    types="public_channel,private_channel", exclude_archived=True,
                    limit=PAGE_SIZE, cursor=cursor)
            except SlackApiError as exc:
                if not _transient(exc):
                    raise _CannotLook(f"conversations.list: {exc.response.get('error')}") from None
                raise NotifyError(f"cannot find channel {name}: {exc}") from None
            except (SlackClientError, OSError) as exc:
                raise NotifyError(f"cannot find channel {name}: {exc}") from None
            for channel in response.get("channels") or []:
                if channel.get("name") == name:
                    self.store.put(self._channel_key(), str(channel["id"]))
                    return str(channel["id"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        raise _CannotLook(f"channel {name} not in conversations.list")

    def _find(self, incident: Incident, part: str, since: float,
              thread_ts: str | None) -> tuple[str, str] | None:
        """The (channel, ts) of `part` if Slack has it; NotifyError if Slack cannot say."""
        try:
            return self._look(incident, part, since, thread_ts)
        except _CannotLook as exc:
            # looking will never work, and waiting for it would lose the alert: post, and
            # say what to fix
            log.error("incident %s: cannot look for %s in Slack (%s); posting without looking, "
                      "so a lost answer may show as a duplicate (the app needs channels:history"
                      ", groups:history, channels:read, groups:read)", incident.id, part, exc)
            return None

    def _look(self, incident: Incident, part: str, since: float,
              thread_ts: str | None) -> tuple[str, str] | None:
        oldest = f"{since - CLOCK_MARGIN:.6f}"
        channel = str(incident.channel) if thread_ts else self._channel_id()
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            args: dict[str, Any] = {"channel": channel, "oldest": oldest, "limit": PAGE_SIZE,
                                    "include_all_metadata": True, "cursor": cursor}
            try:  # the SDK's own methods: read arguments go as a query string
                if thread_ts:
                    data = self.client.conversations_replies(ts=thread_ts, **args).data
                else:
                    data = self.client.conversations_history(**args).data
            except (SlackClientError, OSError) as exc:
                if isinstance(exc, SlackApiError) and not _transient(exc):
                    # missing_scope, not_in_channel, thread_not_found...
                    raise _CannotLook(f"{exc.response.get('error')}") from None
                error = (exc.response.get("error") if isinstance(exc, SlackApiError)
                         else type(exc).__name__)
                raise NotifyError(f"cannot tell whether {part} of {incident.id} is in Slack: "
                                  f"{error}") from None
            if not isinstance(data, dict):
                raise NotifyError(f"cannot tell whether {part} of {incident.id} is in Slack")
            for message in data.get("messages") or []:
                if isinstance(message, dict) and _names(message, incident.id, part):
                    return channel, str(message["ts"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        log.warning("incident %s: %s not found in the last %d messages; posting it",
                    incident.id, part, MAX_PAGES * PAGE_SIZE)
        return None

    def permalink(self, channel: str, ts: str) -> str | None:
        """The message's permalink (chat.getPermalink, a read: the full retry handlers), for
        other clusters' alerts to link to; None when Slack cannot say now."""
        try:
            link = self.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        except (SlackClientError, OSError) as exc:
            log.warning("no permalink for %s %s: %s", channel, ts, exc)
            return None
        return str(link) if link else None

    # -- the Notifier -------------------------------------------------------------------------

    def post_root(self, incident: Incident, part: str) -> tuple[str, str]:
        text, blocks = root_message(incident, remediation=self.remediation)
        return self._deliver(incident, part, text, blocks, unfurl_links=False,
                             unfurl_media=False)

    def _thread(self, incident: Incident, part: str, text: str,
                blocks: list[dict[str, Any]]) -> None:
        if not (incident.channel and incident.thread_ts):
            raise NotifyError(f"incident {incident.id} has no thread yet")
        self._deliver(incident, part, text, blocks, thread_ts=incident.thread_ts)

    def edit_root(self, incident: Incident, resolved: bool = False) -> None:
        """Edit the root to show the incident as it is now (chat.update is idempotent, so the
        full retry handlers apply); NotifyError when Slack does not take it."""
        if not (incident.channel and incident.thread_ts):
            raise NotifyError(f"incident {incident.id} has no root yet")
        text, blocks = root_message(incident, resolved=resolved,
                                    remediation=self.remediation)
        self._call("chat.update", str(incident.channel), ts=incident.thread_ts,
                   text=text, blocks=blocks)

    def _refresh_root(self, incident: Incident, resolved: bool = False) -> None:
        """Edit the root to show current counts; a failed edit is retried with the next
        one."""
        try:
            self.edit_root(incident, resolved)
        except NotifyError as exc:
            log.warning("incident %s: root message not refreshed: %s", incident.id, exc)

    def post_update(self, incident: Incident, new: list[Member],
                    recovered: list[Member], part: str) -> None:
        text, blocks = update_message(incident, new, recovered)
        self._thread(incident, part, text, blocks)
        self._refresh_root(incident)

    def post_reminder(self, incident: Incident, now: float, part: str) -> None:
        text, blocks = reminder_message(incident, now)
        self._thread(incident, part, text, blocks)

    def post_cleared(self, incident: Incident, part: str) -> None:
        text, blocks = cleared_message(incident, remediation=self.remediation)
        self._thread(incident, part, text, blocks)

    def post_resolved(self, incident: Incident, part: str) -> None:
        text, blocks = resolved_message(incident)
        self._thread(incident, part, text, blocks)
        self._refresh_root(incident, resolved=True)
