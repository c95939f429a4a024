"""The request bus between clusters (issue 13): one Slack app, one agent per cluster.

Slack hands a request to one endpoint, or to one random Socket Mode connection: whichever
cluster's agent that is. The receiving agent `route`s it, by one decision for both transports
(`_decide`): a request for its own cluster runs here as before (no hop); one for another
cluster is appended to that cluster's Redis Stream (`ipb-fleet:bus:<cluster>`), whose consumer
group `agents` is joined by that cluster's replicas (`BusConsumer`).

What crosses, by the transport the request arrived on:

- HTTP (`route`; entries without a `transport` field): the original raw body and Slack's
  `X-Slack-Signature` / `X-Slack-Request-Timestamp`, nothing else that is believed. The
  executing agent verifies Slack's signature with its own signing secret.
- Socket Mode (`route_socket`; `transport=socket_mode`): Slack signs nothing sent over a
  websocket (the connection is authenticated by the app-level token), so the receiving agent
  signs what it forwards: the envelope's payload as JSON, the receiving time (unix s) and an
  agent signature `s1=<hex>`, HMAC-SHA256 keyed with the Slack app's signing secret (every
  agent of one app has the same SLACK_SIGNING_SECRET: no new secret) over
  `ipb-socket-v1:{timestamp}:{from cluster}:{to cluster}:{body}`. The base string is
  domain-separated from Slack's `v0:{timestamp}:{body}` (and the prefix from `v0=`), so an
  agent signature never verifies as a Slack request at an HTTP endpoint and a Slack
  signature never verifies as an agent one; it names the target cluster too, so an entry
  copied into another cluster's stream does not verify there.

Trust: either way, the proof on the bus is an HMAC with the Slack app's signing secret.
Whoever holds that secret can already forge HTTP requests to any HTTP endpoint of the app, so
Socket Mode forwarding adds no new trust. The executing agent verifies with its own secret
(constant-time compare), refuses what is older than Slack's 5-minute window (telling the
person through the response_url, which lives 30 minutes), and hands the request to its own
Bolt app (HTTP entries as HTTP requests, Socket Mode entries as Socket Mode requests), so its
own APPROVERS, COMMAND_CHANNELS, REMEDIATION_ENABLED and shape checks decide. An entry
anyone else wrote to Redis is therefore not a command: without a valid signature it is logged
and acknowledged (so it is not retried forever) and changes nothing. A Socket Mode agent
without SLACK_SIGNING_SECRET cannot sign, so it forwards nothing: a request for another
cluster is refused in words that say what to set.

Exactly once, as far as it can be had (at least once, with idempotent effects): an entry is
acknowledged only after its request ran to the end of `dispatch` and that is recorded, or after
it was refused (forged, stale) or found already done; a replica that dies before that leaves
the entry pending, and XAUTOCLAIM hands it to a live replica after `claim_idle` seconds. Each
request's id (a hash of its signature, unique per body and timestamp) has one key whose value
is a state. `running <consumer>` is a lease: set with SET NX for `LEASE_SHARE` of `claim_idle`
and renewed while `dispatch` runs, so it outlives its consumer by less than the take-over
delay. `done <consumer>` replaces it when `dispatch` returns and lives `DONE_TTL`, far longer
than Slack's 5-minute window past which no entry runs at all. A redelivered entry therefore
finds `done` (it ran: only acknowledged), a live lease (another replica is running it right
now: left pending, looked at again a take-over later), or nothing: its consumer died between
the claim and `done`, and it runs again.

Why running twice cannot double an effect: everything a request can change is decided by its
own atomic claim in the executing agent's store, whoever runs it and however often.
An Approve/Deny click takes the request's decision key with SET NX (bot/chatops/approvals.py
`decide`): the second run finds the decision taken and answers "Already approved by @x", so a
Rollout restart approved once restarts once (tests/chatops/test_bus.py runs one click twice).
A remediation button (Restart, Set image, Retry now) asks for approval through the request's
twin key (SET NX on action + target): the second run finds the pending twin and posts no second
request ("Already waiting for approval"). The other alert buttons (Check quota, Verify secret,
Bundle) and slash commands only read (diagnose, audit, bundle, verify, clusters) or ask for
approval as above.

What a person may see twice, at worst: a reply to the second run through the response_url
("working on it…" and the diagnosis again, or "Already approved by @x" after "Done"), and a
read-only button's answer posted twice in the incident thread (a second bundle or quota
reading). Never a second PATCH; a second approval request only when the first was decided in
the seconds between the two runs (and that one needs its own approval).

`done` means the request's listener ran to its end: the executing agent's `dispatch` runs
its own Bolt app with `process_before_response` (bot/server.py `bolt_dispatch`), so Bolt returns
only after the listener finished, not at its ack; the ack still reaches the person at once, from
inside the listener's `ack()` (`RelayedAck`). One consumer therefore runs one request at a time;
the entries it read behind a slow one are taken over by another replica after `claim_idle`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis
from slack_bolt.context.ack import Ack
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.alerts.incidents import INCIDENT_ID
from bot.alerts.presence import DEFAULT_HEARTBEAT_SECONDS, cluster_presence, read_presence
from bot.chatops.approvals import REQUEST_ID
from bot.chatops.routing import ANSWERED_WHERE_RECEIVED, ClusterNameError, split_cluster
from bot.diagnosis.names import is_dns1123_label
from bot.metrics import BoundedLabels, Metrics
from bot.slack.inbound import Admitted, response_url_of
from bot.slack.text import Mrkdwn, code, sentence
from bot.store import RedisStore, StoreError

log = logging.getLogger(__name__)

GROUP = "agents"
#: Slack's own replay window: a request older than this is not executed
SLACK_WINDOW = 300.0
#: a response_url takes answers for 30 minutes
RESPONSE_URL_LIFETIME = 1800.0
#: a stream keeps about this many entries (XADD MAXLEN ~)
STREAM_MAXLEN = 10_000
#: a request id stays `done` this long: longer than Slack's window, after which an entry is
#: dropped unrun anyway, so a key gone by expiry never lets a request run twice
DONE_TTL = 3600.0
#: the `running` lease lasts this share of `claim_idle`: a dead consumer's lease is gone by the
#: time XAUTOCLAIM hands its entry over, a live consumer renews it every `LEASE_RENEW_SHARE`
LEASE_SHARE = 0.8
LEASE_RENEW_SHARE = 0.25
#: Lua: extend a lease only while it is still the caller's (never revive another's, or `done`)
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

#: the largest body an entry may carry (characters): Slack's requests are a few kB, a modal's
#: view state perhaps 100 kB; anything bigger is refused unread (no HMAC, no parse, no log)
MAX_BODY = 1_000_000

#: the `transport` of a bus entry that carries a Socket Mode request (HTTP entries have none)
SOCKET_MODE: Final = "socket_mode"
#: what an agent signature is computed over starts with this (Slack's starts with `v0:`)
AGENT_SIGNATURE_DOMAIN = "ipb-socket-v1"
AGENT_SIGNATURE_VERSION = "s1"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class BusRequest:
    """A verified entry, as the executing agent's Bolt app takes it: `transport` "http" (the
    raw `body` with Slack's signature `headers`) or "socket_mode" (`payload`, the envelope's)."""

    transport: Literal["http", "socket_mode"]
    body: str
    headers: dict[str, str]
    payload: dict[str, Any]


#: a verified request -> (HTTP status, body): the executing agent's Bolt app
Dispatch = Callable[[BusRequest], tuple[int, str]]
#: append the request to a cluster's stream (the transport's own way of carrying it)
Carry = Callable[[str], object]


def agent_signature(secret: str, *, timestamp: str, sender: str, target: str,
                    body: str) -> str:
    """The signature an agent puts on a Socket Mode request it forwards (see the module):
    HMAC-SHA256 with the Slack app's signing secret over a base string no Slack request has."""
    base = f"{AGENT_SIGNATURE_DOMAIN}:{timestamp}:{sender}:{target}:{body}"
    digest = hmac.new(secret.encode(), base.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{AGENT_SIGNATURE_VERSION}={digest}"


@dataclass(frozen=True)
class Route:
    """What the receiving agent does with a request: run it (`local`), or answer Slack with
    `body` (the request was `sent` to `cluster`'s stream, or it is `refused` in words)."""

    kind: Literal["local", "sent", "refused"]
    cluster: str
    body: str = ""


def _ack_text(text: str) -> str:
    return json.dumps({"response_type": "ephemeral", "text": text})


def _ago(seconds: float) -> str:
    return f"{int(seconds)} s" if seconds < 120 else f"{int(seconds // 60)} min"


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
                        code(target), _ago(silent)))
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
            _tell(response_url_of(payload), "⚠️ " + said)
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


def _tell(url: str | None, text: str) -> None:
    """An ephemeral note through a response_url (a courtesy: failures are logged only)."""
    if url is None:
        return
    try:
        WebhookClient(url, timeout=3).send(text=text, response_type="ephemeral",
                                           replace_original=False)
    except Exception as exc:
        log.warning("bus: could not answer through response_url: %s", type(exc).__name__)


class _At(Clock):
    """The verifier's clock set to the request's own timestamp: checks the HMAC alone (the
    age is judged separately, so a stale but genuine request can still be told it was late)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def now(self) -> float:
        return float(self.at)


class BusConsumer:
    """One replica's member of its cluster's consumer group: read, verify, claim, run, ack."""

    def __init__(self, bus: FleetBus, *, signing_secret: str | None, consumer: str,
                 dispatch: Dispatch, claim_idle: float = 30.0, block: float = 1.0) -> None:
        self.bus = bus
        self.client = bus.client
        self.signing_secret = signing_secret
        self.consumer = consumer
        self.dispatch = dispatch
        self.claim_idle = claim_idle
        self.block = block
        self.stream = bus.stream(bus.cluster)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._group_ready = False
        self._renew = self.client.register_script(_RENEW)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def poll(self) -> int:
        """One round: claim a dead replica's pending entries, then read new ones (blocking up
        to `block` s). Returns how many entries were handled."""
        self._ensure_group()
        handled = 0
        claimed: Any = self.client.xautoclaim(self.stream, GROUP, self.consumer,
                                              min_idle_time=int(self.claim_idle * 1000),
                                              count=10)
        for entry_id, fields in claimed[1] if len(claimed) > 1 else []:
            if fields:  # a trimmed entry comes back empty
                log.info("bus: took over pending entry %s", entry_id)
                self.bus.metrics.bus_takeovers.inc()
                self.handle(entry_id, fields)
                handled += 1
        read: Any = self.client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=10,
                                      block=max(1, int(self.block * 1000)))
        for _stream, entries in read or []:
            for entry_id, fields in entries:
                self.handle(entry_id, fields)
                handled += 1
        return handled

    def handle(self, entry_id: str, fields: Mapping[str, str]) -> None:
        """Run one entry, then acknowledge it, unless another replica holds its lease right
        now (it stays pending: looked at again a take-over later). A store error on the way
        leaves it pending too, for whoever reads it next."""
        if self._handle(entry_id, fields):
            self.client.xack(self.stream, GROUP, entry_id)

    def _outcome(self, outcome: str) -> bool:
        self.bus.metrics.bus_entries.labels(outcome=outcome).inc()
        return True

    def _handle(self, entry_id: str, fields: Mapping[str, str]) -> bool:
        """True when the entry is finished with (ran, refused, dropped or a duplicate)."""
        body = fields.get("body", "")
        timestamp = fields.get("timestamp", "")
        signature = fields.get("signature", "")
        origin = fields.get("from", "?")[:64]
        refusal = self._authentic(fields)
        if refusal is not None:
            log.warning("bus: entry %s (from %r) refused: %s; nothing was done",
                        str(entry_id)[:64], origin, refusal)
            return self._outcome("refused_forged")
        payload = _payload(body, fields.get("content_type", ""))
        age = self.bus.clock() - int(timestamp)
        key = self.bus.done_key(self.bus.cluster, request_id_of(signature))
        if age > SLACK_WINDOW:
            # the request's state first: a genuine entry copied back into the stream after it
            # ran (or after it was dropped and its person told) is a duplicate, never a second
            # "nothing was done, send it again" to someone whose request did run
            if not self.client.set(key, f"done {self.consumer} (stale)", nx=True,
                                   px=int(DONE_TTL * 1000)):
                log.info("bus: entry %s is an old request already handled (%s)", entry_id,
                         key)
                return self._outcome("duplicate")
            log.warning("bus: entry %s dropped: the request is %d s old (Slack's window is "
                        "%d s)", entry_id, age, SLACK_WINDOW)
            if age < RESPONSE_URL_LIFETIME:
                _tell(response_url_of(payload), str(Mrkdwn(
                    "⌛ This request waited {} for {}'s agent, longer than Slack's 5-minute "
                    "window, so nothing was done. Send it again if it is still needed.").format(
                    _ago(age), code(self.bus.cluster))))
            return self._outcome("dropped_stale")
        state = self.lease(key)
        if state == "done":
            log.info("bus: entry %s already ran (%s)", entry_id, key)
            return self._outcome("duplicate")
        if state == "running":
            log.info("bus: entry %s is running on another replica; left pending", entry_id)
            return False
        try:
            with self._renewing(key):
                status, _ = self.dispatch(request_of(fields, payload))
        except Exception:  # a bug: running it again would only repeat it (and half an effect)
            log.exception("bus: entry %s failed while running; not retried", entry_id)
            status = 500
        self.client.set(key, f"done {self.consumer}", px=int(DONE_TTL * 1000))
        log.info("bus: entry %s from %s ran here (HTTP %d)", entry_id, origin, status)
        return self._outcome("executed")

    # -- the request's state: a lease while it runs, then done ----------------------------------
    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.claim_idle * LEASE_SHARE * 1000))

    def lease(self, key: str) -> Literal["run", "running", "done"]:
        """Take the request's lease (`run`: this consumer runs it now), or say why not:
        `done` (it ran) or `running` (another consumer's lease is live)."""
        mine = f"running {self.consumer}"
        for _ in range(3):  # a lease expiring between SET NX and GET: try again
            if self.client.set(key, mine, nx=True, px=self._lease_ms):
                return "run"
            state: Any = self.client.get(key)
            if state is not None:
                return "done" if str(state).startswith("done") else "running"
        return "running"  # lost three races in a row: leave it for the next round

    @contextmanager
    def _renewing(self, key: str) -> Iterator[None]:
        """Keep this consumer's lease alive while `dispatch` runs (it may take longer than
        the lease: Bolt waits up to 3 s for an ack, `claim_idle` may be 1 s)."""
        done = threading.Event()
        mine = f"running {self.consumer}"

        def renew() -> None:
            while not done.wait(max(0.05, self.claim_idle * LEASE_RENEW_SHARE)):
                try:
                    self._renew(keys=[key], args=[mine, self._lease_ms])
                except redis.exceptions.RedisError as exc:
                    log.warning("bus: lease not renewed (%s)", type(exc).__name__)

        keeper = threading.Thread(target=renew, name="bus-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def _authentic(self, fields: Mapping[str, str]) -> str | None:
        """None when the entry is signed with this agent's signing secret as its transport
        signs (Slack's `v0` for HTTP, the agents' `s1` for Socket Mode); else why not. The
        HMAC alone: the age is judged after, so a late request can still be told."""
        body = fields.get("body", "")
        timestamp = fields.get("timestamp", "")
        signature = fields.get("signature", "")
        transport = fields.get("transport", "http")
        if transport not in ("http", SOCKET_MODE):
            return f"unknown transport {transport[:32]!r}"
        what = "agent signature" if transport == SOCKET_MODE else "Slack signature"
        if len(body) > MAX_BODY:  # no Slack request is this big: not worth an HMAC or a parse
            return f"a body of {len(body)} characters (at most {MAX_BODY})"
        if not self.signing_secret or not timestamp.isdigit() or len(timestamp) > 15:
            return f"no valid {what}"
        if transport == SOCKET_MODE:
            sender = fields.get("from", "")
            if not sender or ":" in sender:  # a name that could shift the base string's fields
                return f"no valid {what}"
            if fields.get("content_type") != JSON_TYPE:  # not signed: it must be what is sent
                return f"no valid {what} (content type)"
            expected = agent_signature(self.signing_secret, timestamp=timestamp, sender=sender,
                                       target=self.bus.cluster, body=body)
            valid = hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
            return None if valid else f"no valid {what}"
        verifier = SignatureVerifier(self.signing_secret, clock=_At(int(timestamp)))
        try:
            valid = verifier.is_valid(body, timestamp, signature)
        except (UnicodeDecodeError, ValueError):
            valid = False
        return None if valid else f"no valid {what}"

    # -- the thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bus-consumer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.poll()
                failing = False
            except redis.exceptions.RedisError as exc:
                if not failing:
                    log.warning("bus: waiting for the store: %s", type(exc).__name__)
                failing = True
                self._stop.wait(1.0)
            except Exception:
                log.exception("bus: consumer round failed")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.block + 3)


def request_id_of(signature: str) -> str:
    """A request's id on the bus: its signature's hash (Slack's for HTTP, the agent's for
    Socket Mode; one per body and timestamp)."""
    return hashlib.sha256(signature.encode()).hexdigest()[:32]


def _payload(body: str, content_type: str) -> dict[str, Any]:
    """The parsed body (for its response_url); {} when it does not parse."""
    try:
        parsed = parse_body(body, content_type.split(";", 1)[0].strip().lower())
    except Exception:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def request_of(fields: Mapping[str, str], payload: dict[str, Any] | None = None) -> BusRequest:
    """A verified entry as its transport delivered it to the receiving agent (`payload`: the
    parsed body, when the caller has it already)."""
    body = fields.get("body", "")
    if payload is None:
        payload = _payload(body, fields.get("content_type", ""))
    if fields.get("transport") == SOCKET_MODE:
        return BusRequest(SOCKET_MODE, body, {}, payload)
    return BusRequest("http", body, {
        "content-type": fields.get("content_type", ""),
        "x-slack-request-timestamp": fields.get("timestamp", ""),
        "x-slack-signature": fields.get("signature", "")}, payload)


class RelayedAck(Ack):
    """A slash command's `ack` on the executing agent. The ack text goes to Slack in the HTTP
    answer, but a routed request's HTTP answer went back from the receiving agent long ago, so
    this ack also posts its text to the request's response_url, at once, inside the listener's
    own `ack(...)` call: before the listener goes on to post its result, so the person reads
    "working on it" before the answer, never after (Bolt returns from dispatch once the ack is
    made and runs the rest of the listener meanwhile, so relaying after dispatch would race)."""

    def __init__(self, response_url: str | None) -> None:
        super().__init__()
        self.response_url = response_url

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = super().__call__(*args, **kwargs)
        if response.body:
            _forward_ack(self.response_url, response.body)
        return response


def _forward_ack(url: str | None, answer: str) -> None:
    """An ack's body (JSON with `text`, or text) to the response_url (see `RelayedAck`)."""
    try:
        data = json.loads(answer)
    except ValueError:
        data = {"text": answer}
    text = data.get("text") if isinstance(data, dict) else None
    if isinstance(text, str) and text:
        _tell(url, text)
