"""Recurring work the field guide's "How to prevent recurrence" asks for, run on APScheduler.

Each routine is a `Routine`: a name, what to run, and when (an APScheduler trigger). The
composition root (bot/app.py) schedules every routine the same way: once per tick across all
replicas sharing Redis (`Store.take_turn`: a key per period, so a crashed or hung run never
wedges the next tick), with a store outage logged once, not once a tick.

A routine that reports findings says each one once per `finding_period` (a day by default),
not once per tick: `first_time` is that memory, shared through the store by every replica.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from bot.store import Store

DAY = 24 * 3600.0
#: firings of a cron routine looked at to find its shortest gap (its period)
CRON_SAMPLES = 64


@dataclass(frozen=True)
class Routine:
    """One scheduled job.

    `trigger` and `trigger_args` are APScheduler's (`"interval", {"seconds": 300}` or
    `"cron", {...}` from `cron_trigger_args`). `period` is the tick length in seconds that
    decides "once per tick across replicas": the interval itself, or for a cron job the
    shortest gap between two of its firings (a day for a daily digest)."""

    name: str
    run: Callable[[], None]
    trigger: str
    trigger_args: dict[str, Any]
    period: float


def interval(name: str, run: Callable[[], None], seconds: float) -> Routine:
    return Routine(name, run, "interval", {"seconds": seconds}, seconds)


def cron(name: str, run: Callable[[], None], crontab: str, timezone: str = "UTC") -> Routine:
    """A routine fired by a crontab expression (`0 9 * * *`: daily at 09:00 UTC)."""
    return Routine(name, run, "cron", cron_trigger_args(crontab, timezone),
                   cron_period(crontab, timezone))


def cron_period(crontab: str, timezone: str = "UTC") -> float:
    """The shortest gap between two firings of `crontab` (a day for `0 9 * * *`, an hour for
    `0 * * * *`): a cron routine's tick for "once per tick across replicas" (replicas fire in
    the same second, so they fall into the same period and one of them runs it), and what a
    digest calls "the period" it reports on."""
    trigger = CronTrigger(**cron_trigger_args(crontab, timezone))
    firings: list[datetime] = []
    previous: datetime | None = None
    now = datetime.now(UTC)
    for _ in range(CRON_SAMPLES):
        fire = trigger.get_next_fire_time(previous, previous or now)
        if fire is None:
            break
        firings.append(fire)
        previous = fire + timedelta(microseconds=1)  # strictly after this one
    gaps = [(b - a).total_seconds() for a, b in pairwise(firings)]
    return min((g for g in gaps if g > 0), default=DAY)


def cron_trigger_args(crontab: str, timezone: str = "UTC") -> dict[str, Any]:
    """APScheduler's `cron` trigger arguments for a crontab line, exactly as
    `CronTrigger.from_crontab` reads it (which validates it: ValueError when it is wrong)."""
    CronTrigger.from_crontab(crontab, timezone=timezone)
    minute, hour, day, month, day_of_week = crontab.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month,
            "day_of_week": day_of_week, "timezone": timezone}


def first_time(store: Store, topic: str, finding: str, period: float = DAY) -> bool:
    """True once per `period` for each (topic, finding) across every replica: the memory that
    makes a watch say a finding once a day instead of once a tick. `finding` may be any text
    (names from the cluster included); it is hashed into the key, never a key of its own."""
    digest = hashlib.sha256(finding.encode()).hexdigest()[:32]
    return store.set_nx(store.key("said", topic, digest), "1", ttl=period)
