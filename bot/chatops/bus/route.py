"""The receiving side of the bus: where a Slack request runs (here, or another cluster's
stream), decided the same way for HTTP and Socket Mode requests (see the package)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis

from bot.alerts.incidents import INCIDENT_ID
from bot.alerts.presence import DEFAULT_HEARTBEAT_SECONDS, cluster_presence, read_presence
from bot.chatops.approvals import REQUEST_ID
from bot.chatops.bus.entries import (
    GROUP,
    JSON_TYPE,
    SOCKET_MODE,
    STREAM_MAXLEN,
    Carry,
    agent_signature,
    ago,
)
from bot.chatops.routing import ANSWERED_WHERE_RECEIVED, ClusterNameError, split_cluster
from bot.diagnosis.names import is_dns1123_label
from bot.metrics import BoundedLabels, Metrics
from bot.slack.inbound import Admitted, answer_privately, response_url_of
from bot.slack.text import Mrkdwn, code, sentence
from bot.store import RedisStore, StoreError

log = logging.getLogger("bot.chatops.bus")  # one logger for the whole bus

@dataclass(frozen=True)
class Route:
    """What the receiving agent does with a request: run it (`local`), or answer Slack with
    `body` (the request was `sent` to `cluster`'s stream, or it is `refused` in words)."""

    kind: Literal["local", "sent", "refused"]
    cluster: str
    body: str = ""


def _ack_text(text: str) -> str:
    return json.dumps({"response_type": "ephemeral", "text": text})


class FleetBus:
    """Routing (receiving side) and the stream names; `BusConsumer` is the executing side.

    `fleet` is the store's fleet view (`Store.fleet()`, a RedisStore: streams need Redis)."""

    def __init__(self, fleet: RedisStore, *, cluster: str, channel_clusters: Mapping[str, str],
                 heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time,
                 signing_secret: str | None = None) -> None:
        self.fleet = fleet
        #: signs the Socket Mode requests this agent forwards; without it none can cross
        self._signing_secret = signing_secret or None
        self.client: redis.Redis = fleet.client
        self.cluster = cluster
        self.channel_clusters = {k.lower(): v for k, v in channel_clusters.items()}
        #: this agent's HEARTBEAT_SECONDS: judges a target whose beat does not say its own
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics or Metrics()
        #: target cluster names come from the command text and from other agents' presence
        self.cluster_label = BoundedLabels(is_dns1123_label)
        self.clock = clock

    # -- keys ---------------------------------------------------------------------------------
    def stream(self, cluster: str) -> str:
        return self.fleet.key("bus", cluster)

    def done_key(self, cluster: str, request_id: str) -> str:
        return self.fleet.key("bus-done", cluster, request_id)

    # -- presence (bot/routines/presence.py beats, bot/alerts/presence.py reads) ---------------
    def clusters(self) -> set[str]:
        """Every cluster that has reported this week or a channel names, and this one."""
        return (set(cluster_presence(self.fleet, self.clock()))
                | set(self.channel_clusters.values())
                | {self.cluster})

    def silent_for(self, cluster: str) -> float | None:
        """Seconds since `cluster`'s last heartbeat once it counts as silent (the one rule,
        bot/alerts/presence.py `Presence.silence`, that `/imagepull clusters` shows too); inf
        when it never reported (or not for an hour); None while it reports."""
        return read_presence(self.fleet, cluster).silence(self.clock(), self.heartbeat_seconds)

    def pending(self) -> int:
        """Entries of this cluster's stream read by a consumer and not yet acknowledged
        (XPENDING's summary); 0 before the consumer group exists."""
        try:
            summary: Any = self.client.xpending(self.stream(self.cluster), GROUP)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(summary.get("pending") or 0)

    # -- routing ------------------------------------------------------------------------------
    def route(self, admitted: Admitted, *, timestamp: str, signature: str,
              content_type: str) -> Route:
        """Where a request Slack sent over HTTP runs; what crosses is Slack's signed request."""

        def carry(target: str) -> str:
            return self.send(target, admitted.body, timestamp=timestamp, signature=signature,
                             content_type=content_type)

        return self._decide(admitted.payload, carry)

    def route_socket(self, payload: Mapping[str, Any]) -> Route:
        """Where a request Slack sent over Socket Mode runs (the envelope's `payload`); what
        crosses is the payload under this agent's signature. Without SLACK_SIGNING_SECRET
        nothing can be signed: a request for another cluster is refused in words."""
        if self._signing_secret is None:
            return self._decide(payload, None)
        return self._decide(payload, lambda target: self.send_socket(target, payload))

    def _decide(self, payload: Mapping[str, Any], carry: Carry | None) -> Route:
        """The one routing decision for both transports; `carry` appends the request to the
        target's stream (None: this agent cannot forward). Without the store nothing can be
        routed: the request runs here, where the listeners answer a store outage in their
        usual words and refuse a command that names another cluster (handlers/commands.py)."""
        try:
            return self._route(payload, carry)
        except (redis.exceptions.RedisError, StoreError) as exc:  # presence reads via Store
            log.warning("bus: could not route (%s); the request runs here",
                        type(exc).__name__)
            return Route("local", self.cluster)

    def _route(self, payload: Mapping[str, Any], carry: Carry | None) -> Route:
        if "command" in payload:
            target, refusal = self._command_target(payload)
            if refusal is not None:
                return Route("refused", "", _ack_text(refusal))
        elif payload.get("type") == "block_actions":
            target, held_by = self._button_target(payload)
            if held_by:
                log.error("bus: a button's id is held by several clusters' stores (%s), none "
                          "of them alone where the message was posted; not routed",
                          ", ".join(held_by))
                return self._refused(payload, "", Mrkdwn(
                    "This button's incident is claimed by several clusters ({}), so nothing "
                    "was sent: ask whoever runs the shared Redis to check it.").format(
                    _names(held_by)))
        else:
            return Route("local", self.cluster)  # events: mentions are answered where they land
        if target is None or target == self.cluster:
            return Route("local", self.cluster)
        if carry is None:
            log.warning("bus: a Socket Mode request for %s cannot be forwarded without "
                        "SLACK_SIGNING_SECRET; nothing was sent", target)
            return self._refused(payload, target, Mrkdwn(
                "This agent watches {}, not {}, and cannot forward Socket Mode requests "
                "without SLACK_SIGNING_SECRET (the Slack app's signing secret signs what crosses "
                "to other clusters); nothing was run.").format(code(self.cluster), code(target)))
        silent = self.silent_for(target)
        if silent is not None:
            said = (Mrkdwn("{} has never reported; nothing was sent.").format(code(target))
                    if silent == float("inf") else
                    Mrkdwn("{} has not reported for {}; nothing was sent.").format(
                        code(target), ago(silent)))
            log.info("bus: %s is silent; request not sent", target)
            return self._refused(payload, target, said)
        carry(target)
        if "command" in payload:
            return Route("sent", target, _ack_text(Mrkdwn(
                "➡️ Sent to {}'s agent; it answers here.").format(code(target))))
        return Route("sent", target, "")

    @staticmethod
    def _refused(payload: Mapping[str, Any], target: str, said: str) -> Route:
        """A command hears why in its ack; a button through its response_url."""
        if "command" not in payload:
            answer_privately(response_url_of(payload), "⚠️ " + said)
            return Route("refused", target, "")
        return Route("refused", target, _ack_text("⚠️ " + said))

    def _command_target(self, payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
        try:
            named, _ = split_cluster(str(payload.get("text") or ""))
        except ClusterNameError as exc:
            return None, "⚠️ " + sentence(exc)
        if named is not None:
            return named, None
        words = str(payload.get("text") or "").split()
        if not words or words[0].lower() in ANSWERED_WHERE_RECEIVED:
            return self.cluster, None
        by_channel = self.channel_clusters.get(str(payload.get("channel_id") or "").lower())
        if by_channel is not None:
            return by_channel, None
        reporting = sorted(c for c in self.clusters()
                           if c == self.cluster or self.silent_for(c) is None)
        if reporting == [self.cluster]:
            return self.cluster, None  # no other cluster reports: this one is meant
        known = reporting
        verb = words[0][:32]
        return None, str(Mrkdwn("⚠️ Several clusters answer here: {}. Say which, e.g. {} or "
                                "`--cluster NAME`.").format(
            _names(known), code(f"/imagepull {verb} {known[0]}/NAMESPACE/POD")))

    def _button_target(self, payload: Mapping[str, Any]) -> tuple[str | None, list[str]]:
        """The cluster whose store holds the button's incident or approval request (the ids
        are the bot's own formats; a value that is neither runs here and is refused there),
        and, when that cannot be said, the clusters that claim it.

        Anyone who can write to the shared Redis can copy B's incident record under another
        cluster's prefix, to have B's clicks (Slack's signed request, with its response_url
        that may rewrite the alert) delivered to a consumer of theirs. So the holder must be
        where the pressed message is: the record's channel and ts (an incident's root, an
        approval request's message) are the signed payload's. Among the holders, this
        agent's own store is asked first (a copy elsewhere cannot take a click it received);
        one other matching holder gets it; several (a copy down to channel and ts) get
        nothing: the click is refused in words and logged, never guessed."""
        actions = payload.get("actions")
        value = actions[0].get("value") if isinstance(actions, list) and actions and \
            isinstance(actions[0], dict) else None
        if not isinstance(value, str):
            return None, []
        kind = ("incident" if INCIDENT_ID.fullmatch(value) else
                "approval" if REQUEST_ID.fullmatch(value) else None)
        if kind is None:
            return None, []
        where = _pressed(payload)
        ts_field = "thread_ts" if kind == "incident" else "message_ts"
        holders: list[str] = []
        matching: list[str] = []
        for cluster in [self.cluster, *sorted(self.clusters() - {self.cluster})]:
            store = self.fleet.of_cluster(cluster)
            found, channel, ts = store.hmget_cut(store.key(kind, value),
                                                 ("id", "channel", ts_field), 64)
            if found is None:
                continue
            holders.append(cluster)
            if channel == where[0] and ts in where[1:]:
                if cluster == self.cluster:
                    return cluster, []
                matching.append(cluster)
        if len(holders) == 1:
            return holders[0], []  # one holder: where it is (an ephemeral message has no ts)
        if len(matching) == 1:
            return matching[0], []
        return (None, []) if not holders else (None, holders)

    def send(self, cluster: str, body: bytes, *, timestamp: str, signature: str,
             content_type: str) -> str:
        """Append Slack's signed HTTP request to `cluster`'s stream; the entry id."""
        return self._append(cluster, {"body": body.decode("utf-8"), "timestamp": timestamp,
                                      "signature": signature, "content_type": content_type})

    def send_socket(self, cluster: str, payload: Mapping[str, Any]) -> str:
        """Append a Socket Mode request's payload, signed by this agent (see the module), to
        `cluster`'s stream; the entry id. The timestamp is now: when it was received."""
        if self._signing_secret is None:
            raise ValueError("Socket Mode requests are signed with SLACK_SIGNING_SECRET")
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        timestamp = str(int(self.clock()))
        signature = agent_signature(self._signing_secret, timestamp=timestamp,
                                    sender=self.cluster, target=cluster, body=body)
        return self._append(cluster, {"transport": SOCKET_MODE, "body": body,
                                      "timestamp": timestamp, "signature": signature,
                                      "content_type": JSON_TYPE})

    def _append(self, cluster: str, fields: dict[str, str]) -> str:
        entry = {**fields, "from": self.cluster, "sent_at": repr(self.clock())}
        entry_id = self.client.xadd(self.stream(cluster), entry,  # type: ignore[arg-type]
                                    maxlen=STREAM_MAXLEN, approximate=True)
        self.metrics.bus_sent.labels(cluster=self.cluster_label(cluster)).inc()
        log.info("bus: request sent to %s (%s, %s)", cluster, entry_id,
                 fields.get("transport", "http"))
        return str(entry_id)


#: cluster names a message lists at most (the rest are counted)
MAX_NAMED = 10


def _names(names: list[str]) -> Mrkdwn:
    """`a`, `b`, … and N more: names read from the shared Redis, escaped and bounded."""
    shown = Mrkdwn(", ").join(code(name) for name in names[:MAX_NAMED])
    more = len(names) - MAX_NAMED
    return shown + Mrkdwn(" and {} more").format(more) if more > 0 else shown


def _pressed(payload: Mapping[str, Any]) -> tuple[str, str, str]:
    """(channel, message ts, thread ts) of the message whose button was pressed, from the
    signed payload ("" where it does not say)."""
    container = payload.get("container")
    container = container if isinstance(container, dict) else {}
    message = payload.get("message")
    message = message if isinstance(message, dict) else {}
    return (str(container.get("channel_id") or ""), str(container.get("message_ts") or ""),
            str(message.get("thread_ts") or ""))
