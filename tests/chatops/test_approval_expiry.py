"""Approval requests expire when they expire, not when someone clicks (issue 11, Deliver 1).

The bot runs as `serve` runs it (tests/support/slack_requests.running_bot) against the scenario
cluster, the Slack stand-in and real Redis; clicks are signed as Slack signs them and PATCHes
are counted at the scenario cluster. Most tests start the bot without its scheduler and run the
routine (`ApprovalService.expire_due`) themselves, so "the next run" is a fact of the test, not
a guess about the scheduler; one test leaves it to the scheduler, as in production. A second
replica is a second ApprovalService on the same Redis and Slack, as `build_runtime` makes it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.chatops.approvals import EXPIRY_INTERVAL, ApprovalRequest, ApprovalService
from bot.sim import factory
from tests.support.slack_requests import (
    ALERTS,
    BotUnderTest,
    block_action,
    pressed_message,
    running_bot,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ALICE = "U0ALICE001"  # anyone in the workspace
CAROL = "U0CAROL001"  # an approver
TTL = 1.0
IMAGE = "registry.internal/shop/web:v2.2"


@pytest.fixture
def bot() -> Iterator[BotUnderTest]:
    """The bot without its scheduler: the test runs the expiry routine."""
    with running_bot(start=False, env={"APPROVERS": CAROL,
                                       "APPROVAL_TTL_SECONDS": str(TTL)}) as running:
        yield running


def deployment(bot: BotUnderTest, name: str = "web") -> None:
    for obj in factory.failing_deployment("shop", name, IMAGE,
                                          factory.containerd_error("not_found", IMAGE)):
        bot.sim.apply(obj)


def ask(bot: BotUnderTest, name: str = "web",
        service: ApprovalService | None = None) -> ApprovalRequest:
    """A rollout restart asked for and posted, as `/imagepull restart` asks for it."""
    deployment(bot, name)
    request, new = (service or bot.runtime.approvals).request(
        "rollout_restart", "shop", "Deployment", name, ALICE, ALERTS[0])
    assert new and request.message_ts
    return request


def replica(bot: BotUnderTest, clock: Callable[[], float] = time.time) -> ApprovalService:
    """Another replica's service: same store, Slack and cluster (`clock`: its own)."""
    mine = bot.runtime.approvals
    return ApprovalService(bot.store, bot.runtime.kube, bot.runtime.slack, mine.approvers,
                           ttl=mine.ttl, clock=clock)


def message(bot: BotUnderTest, ts: str) -> Any:
    [found] = [m for root in bot.slack.channel_history(ALERTS[0])
               for m in [root, *root.replies] if m.ts == ts]
    return found


def audit_lines(bot: BotUnderTest, request: ApprovalRequest) -> list[str]:
    return [m.text for m in message(bot, request.message_ts).replies if m.text.startswith("🧾")]


def edits(bot: BotUnderTest, request: ApprovalRequest) -> int:
    return sum(1 for call in bot.slack.calls_to("chat.update")
               if call.params.get("ts") == request.message_ts and call.ok)


def has_buttons(msg: Any) -> bool:
    return any(block["type"] == "actions" for block in msg.blocks)


def click(bot: BotUnderTest, request: ApprovalRequest, user: str = CAROL,
          action_id: str = "ipb_approve") -> str:
    """Press a button of the request's message as Slack sends it; the ephemeral answer."""
    msg = message(bot, request.message_ts)
    name = f"click-{uuid.uuid4().hex[:6]}"
    payload = pressed_message(msg)
    reply = bot.client.form(block_action(action_id, request.id, message=payload,
                                         response_url=bot.slack.response_url(name),
                                         user_id=user, channel_id=msg.channel))
    assert reply.status == 200
    posts = wait_for(lambda: bot.slack.responses(name), what=f"the answer to {name}")
    return str(posts[0].body["text"])


def patches(bot: BotUnderTest) -> list[Any]:
    return bot.sim.requests_matching("PATCH")


def indexed(bot: BotUnderTest) -> list[str]:
    return [m for m, _ in bot.store.zrange_by_score(bot.store.key("approval", "expiring"),
                                                     float("-inf"))]


def past(request: ApprovalRequest) -> None:
    """Wait until the request's expiry has passed (TTL is one second)."""
    time.sleep(max(0.0, request.expires_at - time.time()) + 0.05)


def expired_text(request: ApprovalRequest) -> str:
    """The time as the message's fallback shows it (Slack shows each reader's time zone)."""
    return time.strftime("%H:%M UTC", time.gmtime(request.expires_at))


# -- on time -------------------------------------------------------------------------------------


def test_the_expiry_routine_is_scheduled_by_the_composition_root(bot: BotUnderTest) -> None:
    [routine] = [r for r in bot.runtime.routines if r.name == "approval-expiry"]
    assert routine.trigger == "interval" and routine.period == EXPIRY_INTERVAL
    assert routine.run == bot.runtime.approvals.expire_due


def test_the_scheduler_edits_the_message_on_time_without_buttons() -> None:
    """As in production: nobody clicks; the scheduled routine edits the message within one
    interval of the expiry, and leaves an audit line and a `bot.audit` record."""
    with running_bot(env={"APPROVERS": CAROL, "APPROVAL_TTL_SECONDS": str(TTL)}) as bot:
        request = ask(bot)
        assert has_buttons(message(bot, request.message_ts))
        edited = wait_for(lambda: message(bot, request.message_ts).edits,
                          TTL + EXPIRY_INTERVAL + 5, "the expired edit")
        late = edited[0].at - request.expires_at
        assert 0 <= late <= EXPIRY_INTERVAL + 1.0, late
        msg = message(bot, request.message_ts)
        assert not has_buttons(msg)
        assert msg.text.startswith("⌛ Expired at") and "nobody approved" in msg.text
        assert expired_text(request) in msg.text
        assert "nobody approved" in json.dumps(msg.blocks)
        wait_for(lambda: audit_lines(bot, request), what="the audit line")
        [line] = audit_lines(bot, request)
        assert line.startswith("🧾 Nobody approved the rollout restart")
        assert "expired at" in line
        assert bot.runtime.approvals.load(request.id).state == "expired"
        assert indexed(bot) == []
        assert patches(bot) == []


def test_the_routine_expires_what_is_due_and_nothing_else(
        bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    request = ask(bot)
    bot.runtime.approvals.expire_due()  # not due yet
    assert edits(bot, request) == 0 and indexed(bot) == [request.id]
    past(request)
    with caplog.at_level(logging.INFO, logger="bot.audit"):
        bot.runtime.approvals.expire_due()
    assert edits(bot, request) == 1
    msg = message(bot, request.message_ts)
    assert not has_buttons(msg) and "nobody approved" in msg.text
    assert len(audit_lines(bot, request)) == 1
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bot.audit"]
    [record] = [r for r in records if r["event"] == "expired"]
    assert record["request"] == request.id and record["user"] == ""  # nobody: the clock
    stored = bot.runtime.approvals.load(request.id)
    assert stored.state == "expired" and stored.decided_at == request.expires_at
    assert indexed(bot) == []
    bot.runtime.approvals.expire_due()  # nothing left to do
    assert edits(bot, request) == 1 and len(audit_lines(bot, request)) == 1
    metrics = bot.runtime.metrics.render().decode()
    assert 'imagepull_bot_approval_decisions_total{outcome="expired"} 1.0' in metrics


def test_a_request_decided_in_time_leaves_the_index_untouched_by_the_routine(
        bot: BotUnderTest) -> None:
    request = ask(bot)
    assert click(bot, request, action_id="ipb_deny").startswith("Denied")
    updates = edits(bot, request)
    past(request)
    bot.runtime.approvals.expire_due()
    assert edits(bot, request) == updates
    assert bot.runtime.approvals.load(request.id).state == "denied"
    assert "Denied" in message(bot, request.message_ts).text
    assert indexed(bot) == []


# -- clicks --------------------------------------------------------------------------------------


def test_a_click_after_the_routine_gets_the_expired_answer_and_patches_nothing(
        bot: BotUnderTest) -> None:
    request = ask(bot)
    past(request)
    bot.runtime.approvals.expire_due()
    answer = click(bot, request)
    assert "expired at" in answer and "Nothing was changed" in answer
    assert "expired" in click(bot, request, action_id="ipb_deny")
    assert patches(bot) == []
    assert edits(bot, request) == 1 and len(audit_lines(bot, request)) == 1


def test_a_click_after_expiry_before_the_routine_expires_it_once(bot: BotUnderTest) -> None:
    """The message still has its buttons (the routine has not run): the click gets the same
    answer, and the message is edited by the click; the routine then adds nothing."""
    request = ask(bot)
    past(request)
    assert has_buttons(message(bot, request.message_ts))
    answer = click(bot, request)
    assert "expired at" in answer and "Nothing was changed" in answer
    assert patches(bot) == []
    assert edits(bot, request) == 1 and not has_buttons(message(bot, request.message_ts))
    bot.runtime.approvals.expire_due()
    assert edits(bot, request) == 1 and len(audit_lines(bot, request)) == 1
    assert indexed(bot) == []


def test_a_click_racing_the_expiry_has_exactly_one_outcome(bot: BotUnderTest) -> None:
    """An approver clicks on one replica while the routine runs on another whose clock says
    the request has expired: the same atomic claim decides, so each request is either approved
    (one PATCH, "Done") or expired (no PATCH, the expired answer), never both, with one audit
    line. Several rounds, so both orders happen."""
    ahead = replica(bot, clock=lambda: time.time() + 3600)
    outcomes = []
    for round_ in range(6):
        request = ask(bot, f"web-{round_}")
        before = len(patches(bot))
        answer = race(lambda r=request: click(bot, r), ahead.expire_due)
        state = bot.runtime.approvals.load(request.id).state
        made = len(patches(bot)) - before
        if state == "approved":
            assert made == 1 and answer.startswith("Done:"), answer
            assert "Approved" in message(bot, request.message_ts).text
        else:
            assert state == "expired" and made == 0 and "expired at" in answer, answer
            assert "nobody approved" in message(bot, request.message_ts).text
        assert len(audit_lines(bot, request)) == 1
        outcomes.append(state)
    assert set(outcomes) <= {"approved", "expired"}


def race(first: Callable[[], str], second: Callable[[], None]) -> str:
    """Run both at once (released together by a barrier); what `first` returned."""
    barrier = threading.Barrier(2)
    results: list[str] = []

    def one() -> None:
        barrier.wait()
        results.append(first())

    def two() -> None:
        barrier.wait()
        second()

    threads = [threading.Thread(target=one), threading.Thread(target=two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [result] = results
    return result


# -- replicas and Slack failures -----------------------------------------------------------------


def test_two_replicas_running_the_routine_edit_each_message_once(bot: BotUnderTest) -> None:
    requests = [ask(bot, f"web-{i}") for i in range(5)]
    other = replica(bot)
    past(requests[-1])
    barrier = threading.Barrier(2)

    def run(service: ApprovalService) -> None:
        barrier.wait()
        service.expire_due()

    threads = [threading.Thread(target=run, args=(s,)) for s in (bot.runtime.approvals, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for service in (bot.runtime.approvals, other):  # later ticks on both add nothing
        service.expire_due()
    for request in requests:
        assert edits(bot, request) == 1, request.id
        assert len(audit_lines(bot, request)) == 1, request.id
        assert not has_buttons(message(bot, request.message_ts))
    assert indexed(bot) == []


def test_slack_failing_once_the_edit_comes_on_the_next_run(bot: BotUnderTest) -> None:
    request = ask(bot)
    past(request)
    bot.slack.fail_next("chat.update", status=200, error="internal_error")
    bot.runtime.approvals.expire_due()
    assert edits(bot, request) == 0 and has_buttons(message(bot, request.message_ts))
    assert bot.runtime.approvals.load(request.id).state == "expired"  # decided all the same
    assert indexed(bot) == [request.id]
    assert "expired at" in click(bot, request)  # meanwhile: the answer, the edit waits
    assert edits(bot, request) == 0
    bot.runtime.approvals.expire_due()
    assert edits(bot, request) == 1 and not has_buttons(message(bot, request.message_ts))
    assert len(audit_lines(bot, request)) == 1
    assert indexed(bot) == []
    assert patches(bot) == []


def test_slack_down_during_expiry_loses_nothing(bot: BotUnderTest) -> None:
    """Slack answers 503 to everything (after the client's own retries): nothing is edited,
    the rest of the due requests wait too; once Slack is back, the next run edits them all."""
    requests = [ask(bot, f"web-{i}") for i in range(3)]
    past(requests[-1])
    bot.slack.down()
    try:
        bot.runtime.approvals.expire_due()
    finally:
        bot.slack.up()
    assert all(edits(bot, r) == 0 for r in requests)
    assert sorted(indexed(bot)) == sorted(r.id for r in requests)
    bot.runtime.approvals.expire_due()
    for request in requests:
        assert edits(bot, request) == 1 and len(audit_lines(bot, request)) == 1
    assert indexed(bot) == []


def test_an_audit_line_refused_once_is_posted_once_on_the_next_run(bot: BotUnderTest) -> None:
    request = ask(bot)
    past(request)
    bot.slack.fail_next("chat.postMessage", status=200, error="internal_error")
    bot.runtime.approvals.expire_due()
    assert audit_lines(bot, request) == [] and indexed(bot) == [request.id]
    bot.runtime.approvals.expire_due()
    assert len(audit_lines(bot, request)) == 1 and indexed(bot) == []


def test_a_message_slack_no_longer_has_is_given_up_not_retried_forever(
        bot: BotUnderTest) -> None:
    request = ask(bot)
    past(request)
    bot.slack.fail_next("chat.update", status=200, error="message_not_found")
    bot.runtime.approvals.expire_due()
    assert edits(bot, request) == 0
    assert len(audit_lines(bot, request)) == 1  # the thread still says what happened
    assert indexed(bot) == []
    calls = len(bot.slack.calls_to("chat.update"))
    bot.runtime.approvals.expire_due()
    assert len(bot.slack.calls_to("chat.update")) == calls


def test_a_click_whose_edit_slack_refuses_leaves_it_to_the_routine(bot: BotUnderTest) -> None:
    request = ask(bot)
    past(request)
    bot.slack.fail_next("chat.update", status=200, error="internal_error")
    assert "expired at" in click(bot, request)
    assert edits(bot, request) == 0 and indexed(bot) == [request.id]
    bot.runtime.approvals.expire_due()
    assert edits(bot, request) == 1 and len(audit_lines(bot, request)) == 1
    assert indexed(bot) == [] and patches(bot) == []
