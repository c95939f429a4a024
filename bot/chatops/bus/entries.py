"""What crosses the bus (bot/chatops/bus: see the package): an entry's fields, the agent
signature on a forwarded Socket Mode request, and the verified request an executing agent
hands its Bolt app; with the few helpers both sides use."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from slack_bolt.request.internals import parse_body

log = logging.getLogger("bot.chatops.bus")  # one logger for the whole bus

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


def ago(seconds: float) -> str:
    return f"{int(seconds)} s" if seconds < 120 else f"{int(seconds // 60)} min"


def request_id_of(signature: str) -> str:
    """A request's id on the bus: its signature's hash (Slack's for HTTP, the agent's for
    Socket Mode; one per body and timestamp)."""
    return hashlib.sha256(signature.encode()).hexdigest()[:32]


def payload_of(body: str, content_type: str) -> dict[str, Any]:
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
        payload = payload_of(body, fields.get("content_type", ""))
    if fields.get("transport") == SOCKET_MODE:
        return BusRequest(SOCKET_MODE, body, {}, payload)
    return BusRequest("http", body, {
        "content-type": fields.get("content_type", ""),
        "x-slack-request-timestamp": fields.get("timestamp", ""),
        "x-slack-signature": fields.get("signature", "")}, payload)
