"""Pacing of Slack writes (bot/slack/notifier.py `_pace`): posts and edits in two lanes per
channel, each allowing a short burst and then one call per interval on average, shared by
replicas through real Redis; checked at the Slack stand-in's clock, which enforces Slack's
per-channel posting limit as a token bucket."""

from __future__ import annotations

import threading

import pytest

from bot.sim.slack import SlackStandIn
from bot.slack.notifier import PACE_BURST, SlackNotifier, web_client
from bot.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CHANNEL = "imagepull-alerts"
INTERVAL = 0.4


def notifier(slack: SlackStandIn, store: Store) -> SlackNotifier:
    return SlackNotifier(web_client(slack.token, slack.api_url), CHANNEL, store,
                         min_interval=INTERVAL)


def post(n: SlackNotifier, text: str) -> str:
    return str(n._call("chat.postMessage", n.channel, text=text)["ts"])


def arrivals(slack: SlackStandIn, method: str) -> list[float]:
    return sorted(c.at for c in slack.calls_to(method) if c.ok)


def test_a_burst_then_one_post_per_interval(slack: SlackStandIn, store: Store) -> None:
    n = notifier(slack, store)
    for i in range(2 * PACE_BURST):
        post(n, f"m{i}")
    at = arrivals(slack, "chat.postMessage")
    assert len(at) == 2 * PACE_BURST
    assert at[PACE_BURST - 1] - at[0] < INTERVAL  # the burst goes at once
    # then the lane's average holds: the fourth waits for the first slot to free
    assert at[PACE_BURST] - at[0] >= PACE_BURST * INTERVAL - 0.05
    assert at[-1] - at[0] >= PACE_BURST * INTERVAL - 0.05


def test_edits_do_not_wait_behind_posts(slack: SlackStandIn, store: Store) -> None:
    n = notifier(slack, store)
    ts = [post(n, f"m{i}") for i in range(PACE_BURST)]  # the post lane is full now
    for t in ts:
        n._call("chat.update", n.channel, ts=t, text="edited")
    posted, edited = arrivals(slack, "chat.postMessage"), arrivals(slack, "chat.update")
    assert edited[-1] - posted[0] < INTERVAL  # no edit waited for the post lane


def test_replicas_share_the_lanes(slack: SlackStandIn, store: Store) -> None:
    """Two replicas posting at once stay within one channel's budget together."""
    replicas = [notifier(slack, store), notifier(slack, store)]
    threads = [threading.Thread(target=lambda r=r: [post(r, "x") for _ in range(PACE_BURST)])
               for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    at = arrivals(slack, "chat.postMessage")
    assert len(at) == 2 * PACE_BURST
    assert at[PACE_BURST] - at[0] >= PACE_BURST * INTERVAL - 0.05


def test_at_one_per_second_slacks_own_limit_is_never_hit(slack: SlackStandIn,
                                                          store: Store) -> None:
    """Slack's documented limit (1 per second per channel, short bursts allowed), as the
    stand-in enforces it with a burst of PACE_BURST: no 429 for eight posts."""
    slack.enforce_channel_rate(per_second=1.0, burst=PACE_BURST)
    n = SlackNotifier(web_client(slack.token, slack.api_url), CHANNEL, store, min_interval=1.0)
    for i in range(8):
        post(n, f"m{i}")
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [200] * 8
