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

from bot.chatops.bus.consumer import BusConsumer, RelayedAck
from bot.chatops.bus.entries import (
    AGENT_SIGNATURE_DOMAIN,
    DONE_TTL,
    GROUP,
    JSON_TYPE,
    MAX_BODY,
    SLACK_WINDOW,
    SOCKET_MODE,
    BusRequest,
    Dispatch,
    agent_signature,
    request_id_of,
    request_of,
)
from bot.chatops.bus.route import FleetBus, Route

__all__ = ["AGENT_SIGNATURE_DOMAIN", "DONE_TTL", "GROUP", "JSON_TYPE", "MAX_BODY", "SLACK_WINDOW",
           "SOCKET_MODE", "BusConsumer", "BusRequest", "Dispatch", "FleetBus", "RelayedAck",
           "Route", "agent_signature", "request_id_of", "request_of"]
