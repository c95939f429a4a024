"""Remediation with approval: requested by anyone, run once, by an authorised approver.

A request is a record in the store with a TTL (default 15 minutes). Deciding it is one atomic
SET NX on the request's decision key: double clicks, two approvers clicking together, Slack
retries and several replicas all race for that key and exactly one wins, so the PATCH runs
once. Every decision leaves an audit line in the thread, a structured `bot.audit` log record,
and an edit of the approval message that removes its buttons.

Requests expire when they expire, not when someone clicks: every posted request is indexed by
its expiry (a sorted set), and `expire_due`, a routine run every few seconds by one replica,
takes the decision "expired" with the same atomic claim a click uses (a click and the expiry
racing: exactly one wins), then edits the message. The edit is not part of the claim: it has
its own short lease and leaves the index only once Slack has it, so a Slack outage delays it to
a later tick instead of losing it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.kube.client import KubeClient, KubeError
from bot.kube.remediation import (
    RemediationRefused,
    check_target,
    read_only_refusal,
    retry_now,
    rollout_restart,
    set_image,
)
from bot.metrics import Metrics
from bot.slack.approvers import Approvers
from bot.slack.text import Mrkdwn, code, date, sentence
from bot.slack.text import user as mention
from bot.store import Store, StoreError

log = logging.getLogger(__name__)
audit = logging.getLogger("bot.audit")


#: Request ids as `new_request_id` mints them. A button's value is checked against this before
#: any store key is built from it, so a crafted value (`apr-x:decision`) never names another key.
REQUEST_ID = re.compile(r"apr-[0-9a-f]{12}")
#: How long a decided request (and its decision claim) stays readable after it expires.
RETENTION = 7 * 24 * 3600.0
#: How often the expiry routine looks for requests whose time is up (seconds): a request's
#: message says "expired" at most this long after it expires.
EXPIRY_INTERVAL = 5.0
#: Due requests handled per run; more wait for the next run (a backlog after an outage).
EXPIRY_BATCH = 100
#: How long one replica may take to write the "expired" edit before another may try again:
#: longer than two Slack calls with their retries (10 s timeout, 3 retries each), so two
#: replicas never both post the audit line, short enough that a crash mid-edit delays the
#: edit by minutes, not days.
NOTICE_LEASE = 120.0
_NOTICE_DONE = "done"
#: chat.update / chat.postMessage errors that no retry will cure (the message, the channel or
#: the thread is gone or closed to the bot): the expiry is recorded, that part is given up.
_SLACK_FOR_GOOD = frozenset({"message_not_found", "channel_not_found", "thread_not_found",
                             "cant_update_message", "edit_window_closed", "is_archived",
                             "not_in_channel"})


def new_request_id() -> str:
    return f"apr-{uuid.uuid4().hex[:12]}"


@dataclass
class ApprovalRequest:
    id: str
    action: str  # "rollout_restart", "set_image" or "retry"
    namespace: str
    kind: str
    name: str
    requester: str
    channel: str
    created_at: float
    expires_at: float
    state: str = "pending"  # pending, approved, denied, failed, expired
    container: str = ""
    image: str = ""
    incident_id: str = ""
    thread_ts: str = ""
    message_ts: str = ""
    decided_by: str = ""
    decided_at: float = 0.0
    result: str = ""

    @property
    def target(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    def describe(self) -> Mrkdwn:
        """What is asked, as Slack mrkdwn (every name escaped, in code spans)."""
        if self.action == "set_image":
            return Mrkdwn("set image of container {} in {} (namespace {}) to {}").format(
                code(self.container), code(self.target), code(self.namespace), code(self.image))
        if self.action == "retry":
            how = ("delete (nothing re-creates a bare pod)" if self.kind == "Pod"
                   else "rollout restart")
            return Mrkdwn("retry now of {} in namespace {}: {}, so its pods pull at once "
                          "instead of after the kubelet's back-off").format(
                code(self.target), code(self.namespace), how)
        return Mrkdwn("rollout restart of {} in namespace {}").format(code(self.target),
                                                                     code(self.namespace))

    def to_store(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_store(cls, raw: dict[str, str]) -> ApprovalRequest:
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name in raw:
                values[f.name] = float(raw[f.name]) if f.type == "float" else raw[f.name]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    """What the clicking user is told (ephemeral), and whether anything happened."""

    ok: bool
    message: Mrkdwn
    request: ApprovalRequest | None = None


class ApprovalService:
    def __init__(self, store: Store, kube: KubeClient, slack: WebClient, approvers: Approvers,
                 *, ttl: float = 900.0, require_second_approver: bool = False,
                 allowed_namespaces: Sequence[str] | None = None,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 remediation_enabled: bool = True,
                 on_done: Callable[[ApprovalRequest], None] | None = None) -> None:
        self.store = store
        self.kube = kube
        self.slack = slack
        self.approvers = approvers
        self.ttl = ttl
        self.require_second_approver = require_second_approver
        self.allowed_namespaces = list(allowed_namespaces) if allowed_namespaces else None
        self.clock = clock
        self.metrics = metrics
        #: False (REMEDIATION_ENABLED=false, the read-only profile): nothing is requested,
        #: nothing is patched, and each refusal names the command to run instead
        self.remediation_enabled = remediation_enabled
        #: told of every remediation that ran (the incidents record an approved "Retry now")
        self.on_done = on_done

    def _key(self, request_id: str, *parts: str) -> str:
        return self.store.key("approval", request_id, *parts)

    def load(self, request_id: str) -> ApprovalRequest | None:
        """The request, or None when there is none (or the id is not one the bot made)."""
        if not REQUEST_ID.fullmatch(request_id):
            return None
        raw = self.store.hgetall(self._key(request_id))
        return ApprovalRequest.from_store(raw) if raw.get("id") else None

    @property
    def _retention(self) -> float:
        return self.ttl + RETENTION

    def _save(self, request: ApprovalRequest) -> None:
        """The whole record and its expiry in one atomic write."""
        self.store.hset(self._key(request.id), request.to_store(), ttl=self._retention)

    def _forget(self, request: ApprovalRequest, twin_key: str) -> None:
        """Undo a request that will not be posted, as far as the store lets us: whatever is
        left expires with its TTL and never blocks the next try (see `request`)."""
        try:
            self.store.delete_if_equals(twin_key, request.id)
            self.store.delete(self._key(request.id))
        except StoreError as exc:
            log.warning("approval %s: not cleaned up (%s); it expires by itself", request.id, exc)

    # -- asking ---------------------------------------------------------------------------------

    def request(self, action: str, namespace: str, kind: str, name: str, requester: str,
                channel: str, *, container: str = "", image: str = "", incident_id: str = "",
                thread_ts: str = "") -> tuple[ApprovalRequest, bool]:
        """Create (or return the pending twin of) a request and post it for approval.

        Raises RemediationRefused before anything is posted when the target can never be
        remediated (a bare pod, a Job, a namespace outside WATCH_NAMESPACES...), and
        StoreError when the store fails: then nothing is posted. The order keeps every
        interruption harmless: the record (with its expiry) first, so the twin key never points
        at nothing; a twin pointing at a missing or decided request is taken over; Slack last.
        """
        check_target(action, namespace, kind, name, allowed_namespaces=self.allowed_namespaces)
        if not self.remediation_enabled:
            raise read_only_refusal(action, namespace, kind, name, container, image)
        now = self.clock()
        twin_key = self.store.key("approval", "pending", action, namespace, kind.lower(), name,
                                  container, image)
        request = ApprovalRequest(
            id=new_request_id(), action=action, namespace=namespace, kind=kind,
            name=name, requester=requester, channel=channel, created_at=now,
            expires_at=now + self.ttl, container=container, image=image,
            incident_id=incident_id, thread_ts=thread_ts)
        existing = self._pending_twin(twin_key)  # reads only: answers during a write outage
        if existing is not None:
            return existing, False
        self._save(request)
        try:
            if not self.store.set_nx(twin_key, request.id, ttl=self.ttl):
                existing = self._pending_twin(twin_key)
                if existing is not None:  # another click won the race
                    self._forget(request, twin_key)
                    return existing, False
                self.store.put(twin_key, request.id, ttl=self.ttl)
        except StoreError:
            self._forget(request, twin_key)
            raise
        from bot.slack.blocks import approval_message

        text, blocks = approval_message(request, self.approvers.mention(),
                                        self.require_second_approver)
        try:
            response = self.slack.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts or None)
        except (SlackApiError, SlackClientError, OSError) as exc:
            self._forget(request, twin_key)
            raise RemediationRefused(f"could not post the approval request: {exc}") from None
        request.channel = str(response.get("channel") or channel)
        request.message_ts = str(response.get("ts") or "")
        try:  # only where it was posted: a click may already have decided it
            self.store.hset(self._key(request.id), {"channel": request.channel,
                                                    "message_ts": request.message_ts},
                            ttl=self._retention)
        except StoreError as exc:  # posted and decidable; only the later edit of it is lost
            log.warning("approval %s: posted, but its message ts was not recorded (%s): the "
                        "message keeps its buttons after the decision", request.id, exc)
        self._index(request)
        self._audit(request, "requested", requester)
        return request, True

    @property
    def _due_key(self) -> str:
        """The sorted set of posted requests by expiry (never a request id: those are apr-...)."""
        return self.store.key("approval", "expiring")

    def _index(self, request: ApprovalRequest) -> None:
        """After the post, so the routine never expires a request whose message it cannot
        know yet. Lost on a store failure: that request then expires when someone clicks.
        Entries older than a record's retention are trimmed (their records are gone)."""
        try:
            self.store.zadd_trimmed(self._due_key, request.id, request.expires_at,
                                    keep_from=self.clock() - self._retention)
        except StoreError as exc:
            log.warning("approval %s: not indexed for expiry (%s): its message says "
                        "\"expired\" only when someone clicks it", request.id, exc)

    def _pending_twin(self, twin_key: str) -> ApprovalRequest | None:
        existing = self.load(self.store.get(twin_key) or "")
        return existing if existing is not None and existing.state == "pending" else None

    # -- deciding -------------------------------------------------------------------------------

    def decide(self, request_id: str, user: str, approve: bool) -> Decision:
        request = self.load(request_id)
        if request is None:
            return Decision(False, Mrkdwn("This request no longer exists (it expired or was "
                                          "cleaned up). Ask again from the alert."))
        if request.state == "pending" and self.clock() >= request.expires_at:
            request = self._expire(request, user, notify=True)
        if request.state != "pending":
            return self._already(request)
        withdrawing = not approve and user == request.requester
        if not withdrawing and not self.approvers.allows(user):
            self._audit(request, "refused_not_approver", user)
            return Decision(False, Mrkdwn("You are not an approver for remediation (APPROVERS: "
                                          "{}). Nothing was changed.")
                            .format(self.approvers.mention()), request)
        if approve and self.require_second_approver and user == request.requester:
            self._audit(request, "refused_own_request", user)
            return Decision(False, Mrkdwn("Two-person rule: you asked for this, so someone else "
                                          "must approve it. Nothing was changed."), request)
        if not self._claim_decision(request, "approved" if approve else "denied", user,
                                    self.clock()):
            current = self.load(request.id)
            if current is not None and current.state != "pending":
                return self._already(current)  # e.g. the expiry routine, a moment earlier
            return Decision(False, Mrkdwn("Already decided by someone else."), current)
        if not approve:
            self._finish(request, "denied", user)
            return Decision(True, Mrkdwn("Denied: {}.").format(request.describe()), request)
        return self._execute(request, user)

    @staticmethod
    def _already(request: ApprovalRequest) -> Decision:
        """The answer to a click on a decided request: nothing was done."""
        if request.state == "expired":
            return Decision(False, Mrkdwn("This request expired at {}; nobody approved it. "
                                          "Nothing was changed. Ask again from the alert.")
                            .format(date(request.expires_at)), request)
        who = Mrkdwn(" by {}").format(mention(request.decided_by)) if request.decided_by else ""
        return Decision(False, Mrkdwn("Already {}{}.").format(request.state, who), request)

    # -- expiring -------------------------------------------------------------------------------

    def expire_due(self) -> None:
        """The routine: every posted request whose expiry has passed is decided "expired" and
        its message edited, oldest first. A request decided otherwise (or gone) leaves the
        index; one whose edit Slack refused stays for the next run, and so does everything
        after it (Slack is failing: one failed call per run, not one per request)."""
        due = self.store.zrange_by_score(self._due_key, float("-inf"), self.clock())
        for request_id, _expires_at in due[:EXPIRY_BATCH]:
            request = self.load(request_id)
            if request is not None and request.state == "pending":
                request = self._expire(request, "", notify=False)
            if request is None or request.state != "expired":
                self.store.zrem(self._due_key, request_id)  # nothing (more) to say
                continue
            if not self._notify_expired(request):
                return

    def _expire(self, request: ApprovalRequest, user: str,
                *, notify: bool) -> ApprovalRequest:
        """Claim the decision "expired" (at the request's expiry, by nobody); `user` is who
        noticed (a click) for the audit record. Returns the request as decided: expired, or
        what a click decided first. `notify`: edit the message now (a click: the routine
        would do it within EXPIRY_INTERVAL; the clicker sees it at once)."""
        if not self._claim_decision(request, "expired", "", request.expires_at):
            return self.load(request.id) or request
        self._audit(request, "expired", user)
        if notify:
            try:
                self._notify_expired(request)
            except StoreError as exc:  # the index still has it: the routine edits it
                log.warning("approval %s: expired; the edit waits for the routine (%s)",
                            request.id, exc)
        return request

    def _notify_expired(self, request: ApprovalRequest) -> bool:
        """Edit the message to "expired" without buttons and post the audit line, once across
        replicas and clicks (a lease), then take the request off the index. False when Slack
        failed and it must be tried again (the lease is given back at once)."""
        from bot.slack.blocks import approval_audit_line, approval_message

        notice, owner = self._key(request.id, "notice"), uuid.uuid4().hex
        if not self.store.set_nx(notice, owner, ttl=NOTICE_LEASE):
            if self.store.get(notice) == _NOTICE_DONE:
                self.store.zrem(self._due_key, request.id)
            return True  # done, or another replica is at it (retried if its lease runs out)
        text, blocks = approval_message(request, self.approvers.mention(),
                                        self.require_second_approver)
        calls: list[tuple[str, Callable[[], object]]] = []
        if request.message_ts:
            calls.append(("chat.update", lambda: self.slack.chat_update(
                channel=request.channel, ts=request.message_ts, text=text, blocks=blocks)))
        calls.append(("chat.postMessage", lambda: self.slack.chat_postMessage(
            channel=request.channel, thread_ts=(request.thread_ts or request.message_ts) or None,
            text=approval_audit_line(request, "expired", ""))))
        for method, call in calls:
            try:
                call()
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                if error not in _SLACK_FOR_GOOD:
                    return self._notice_later(request, notice, owner, f"{method}: {error}")
                log.warning("approval %s: expired, %s refused for good (%s)", request.id,
                            method, error)
            except (SlackClientError, OSError) as exc:
                return self._notice_later(request, notice, owner,
                                          f"{method}: {type(exc).__name__}")
        self.store.put(notice, _NOTICE_DONE, ttl=self._retention)
        self.store.zrem(self._due_key, request.id)
        return True

    def _notice_later(self, request: ApprovalRequest, notice: str, owner: str,
                      why: str) -> bool:
        log.warning("approval %s: expired, but Slack did not take the edit (%s): retried in "
                    "%.0f s", request.id, why, EXPIRY_INTERVAL)
        self.store.delete_if_equals(notice, owner)
        return False

    def _claim_decision(self, request: ApprovalRequest, state: str, user: str,
                        at: float) -> bool:
        """Win the one decision and record it in the same atomic store step, so nothing is
        executed unless the decision is recorded, and a failed write leaves no claim behind
        that would block the next click. False if someone else decided first."""
        changes = {"state": state, "decided_by": user, "decided_at": str(at)}
        if not self.store.set_nx_hset(self._key(request.id, "decision"), user or state,
                                      self._key(request.id), changes, ttl=self._retention):
            return False
        request.state, request.decided_by, request.decided_at = state, user, at
        return True

    def _record_outcome(self, request: ApprovalRequest) -> str:
        """After the PATCH ran, a store failure must not turn into "nothing was changed"."""
        try:
            self._save(request)
        except StoreError as exc:
            log.warning("approval %s: %s, but the outcome was not recorded: %s", request.id,
                        request.state, exc)
            return " (the bot's state store did not record the outcome)"
        return ""

    def _execute(self, request: ApprovalRequest, user: str) -> Decision:
        try:
            if not self.remediation_enabled:  # a request from before the switch to read-only
                raise read_only_refusal(request.action, request.namespace, request.kind,
                                        request.name, request.container, request.image)
            if request.action == "retry":
                result = retry_now(self.kube, request.namespace, request.kind, request.name,
                                   allowed_namespaces=self.allowed_namespaces)
            elif request.action == "set_image":
                result = set_image(self.kube, request.namespace, request.kind, request.name,
                                   request.container, request.image,
                                   allowed_namespaces=self.allowed_namespaces)
            else:
                result = rollout_restart(self.kube, request.namespace, request.kind,
                                         request.name, allowed_namespaces=self.allowed_namespaces)
        except (RemediationRefused, KubeError) as exc:
            request.state, request.result = "failed", str(exc)
            note = self._record_outcome(request)
            self._finish(request, "failed", user)
            return Decision(False, Mrkdwn("Approved, but it failed: {}{}").format(
                sentence(exc), note), request)
        request.result = result.summary
        note = self._record_outcome(request)
        if self.on_done is not None:
            try:
                self.on_done(request)
            except StoreError as exc:  # it ran: only the incident's note of it is lost
                log.warning("approval %s: ran, but not noted in its incident: %s",
                            request.id, exc)
        self._finish(request, "approved", user)
        return Decision(True, Mrkdwn("Done: {}{}").format(sentence(result.summary), note),
                        request)

    # -- the record -----------------------------------------------------------------------------

    def _finish(self, request: ApprovalRequest, outcome: str, user: str) -> None:
        """Audit line in the thread, the approval message without buttons, a log record."""
        from bot.slack.blocks import approval_audit_line, approval_message

        self._audit(request, outcome, user)
        text, blocks = approval_message(request, self.approvers.mention(),
                                        self.require_second_approver)
        thread = request.thread_ts or request.message_ts
        try:
            if request.message_ts:
                self.slack.chat_update(channel=request.channel, ts=request.message_ts,
                                       text=text, blocks=blocks)
            self.slack.chat_postMessage(channel=request.channel, thread_ts=thread or None,
                                        text=approval_audit_line(request, outcome, user))
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("approval %s: Slack record not written: %s", request.id, exc)

    def _audit(self, request: ApprovalRequest, event: str, user: str) -> None:
        if self.metrics is not None:
            self.metrics.approvals.labels(event).inc()
        audit.info(json.dumps({
            "event": event, "request": request.id, "action": request.action,
            "namespace": request.namespace, "target": request.target,
            "container": request.container or None, "image": request.image or None,
            "requester": request.requester, "user": user, "incident": request.incident_id or None,
            "result": request.result or None, "at": round(self.clock(), 3),
        }, sort_keys=True))
