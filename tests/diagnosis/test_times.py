"""Timestamps the diagnosis does not believe are unknown, not a crash (issue 8, defect 8).

The live path reads events without the offline models, so `parse_k8s_time` itself must never
hand out a datetime that overflows the first `+ timedelta`.
"""

from __future__ import annotations

import pytest

from bot.diagnosis.engine import diagnose, estimate_backoff
from bot.diagnosis.events import read_event
from bot.diagnosis.facts import PodFacts, parse_k8s_time
from tests.diagnosis.kubelet import NOW, pod, pull_failure
from tests.diagnosis.test_engine import NOT_FOUND


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00",
                                  "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                                  "2200-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
def test_times_outside_1970_to_2199_are_unknown(text: str) -> None:
    assert parse_k8s_time(text) is None


def test_believable_times_parse() -> None:
    assert parse_k8s_time("2026-11-28T14:51:32.123456789Z") is not None
    assert parse_k8s_time("2199-12-31T23:59:59Z") is not None


def test_far_future_last_timestamp_does_not_overflow_the_backoff_estimate() -> None:
    events = pull_failure("nginx:lates", NOT_FOUND)
    for raw in events:
        raw["lastTimestamp"] = raw["firstTimestamp"] = "9999-12-31T23:59:59Z"
    assert read_event(events[1]).last_seen is None
    estimate_backoff([read_event(e) for e in events], NOW)
    [d] = diagnose(PodFacts(pod=pod("nginx:lates"), events=events, now=NOW)).diagnoses
    assert d.backoff.attempts == 3 and d.backoff.next_retry_seconds is None
