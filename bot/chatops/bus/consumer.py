"""The executing side of the bus: one replica's member of its cluster's consumer group,
which verifies, leases, runs and acknowledges each entry (see the package)."""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import redis
from slack_bolt.context.ack import Ack
from slack_bolt.response import BoltResponse
from slack_sdk.signature import Clock, SignatureVerifier

from bot.chatops.bus.entries import (
    DONE_TTL,
    GROUP,
    JSON_TYPE,
    MAX_BODY,
    RESPONSE_URL_LIFETIME,
    SLACK_WINDOW,
    SOCKET_MODE,
    Dispatch,
    agent_signature,
    ago,
    payload_of,
    request_id_of,
    request_of,
)
from bot.chatops.bus.route import FleetBus
from bot.slack.inbound import answer_privately, response_url_of
from bot.slack.text import Mrkdwn, code

log = logging.getLogger("bot.chatops.bus")  # one logger for the whole bus

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
        payload = payload_of(body, fields.get("content_type", ""))
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
                answer_privately(response_url_of(payload), str(Mrkdwn(
                    "⌛ This request waited {} for {}'s agent, longer than Slack's 5-minute "
                    "window, so nothing was done. Send it again if it is still needed.").format(
                    ago(age), code(self.bus.cluster))))
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
        answer_privately(url, text)
