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
    #: run on every replica at every tick (the heartbeat), not once per tick across replicas
    every_replica: bool = False


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
    """APScheduler's `cron` trigger arguments for a crontab line, validated (ValueError when
    it is wrong). The weekday field is spelled out in day names (`_weekdays`): APScheduler 3
    counts weekday numbers from Monday = 0, even in `CronTrigger.from_crontab`, where crontab
    counts from Sunday = 0, so `0 9 * * 1` would fire on Tuesdays."""
    fields = crontab.split()
    if len(fields) != 5:
        raise ValueError("expected five crontab fields (minute hour day month weekday), "
                         f"got {crontab!r}")
    minute, hour, day, month, day_of_week = fields
    args: dict[str, Any] = {"minute": minute, "hour": hour, "day": day, "month": month,
                            "day_of_week": _weekdays(day_of_week), "timezone": timezone}
    CronTrigger(**args)  # validates every field
    return args


#: crontab's weekday numbers: Sunday is 0 (and 7)
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token[:3] in _DAYS:
        return _DAYS.index(token[:3])
    raise ValueError(f"not a weekday: {token!r}")


def _weekdays(field: str) -> str:
    """A crontab weekday field (`1`, `1-5`, `*/2`, `mon,fri`, `0` or `7` for Sunday) as the
    day names APScheduler reads without ambiguity."""
    days: list[int] = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        every = int(step) if step else 1
        if base == "*":
            if not step:
                return "*"
            days += range(0, 7, every)
            continue
        first, _, last = base.partition("-")
        low = _day(first)
        high = (7 if last.strip() == "7" else _day(last)) if last else low
        if high < low:
            raise ValueError(f"backwards weekday range: {part!r}")
        days += [d % 7 for d in range(low, high + 1, every)]
    return ",".join(_DAYS[d] for d in sorted(set(days)))


def first_time(store: Store, topic: str, finding: str, period: float = DAY) -> bool:
    """True once per `period` for each (topic, finding) across every replica: the memory that
    makes a watch say a finding once a day instead of once a tick. `finding` may be any text
    (names from the cluster included); it is hashed into the key, never a key of its own."""
    digest = hashlib.sha256(finding.encode()).hexdigest()[:32]
    return store.set_nx(store.key("said", topic, digest), "1", ttl=period)


def forget(store: Store, topic: str, finding: str) -> None:
    """Undo `first_time` for a finding that could not be said after all (the post failed):
    the next run says it, rather than the next day's."""
    digest = hashlib.sha256(finding.encode()).hexdigest()[:32]
    store.delete(store.key("said", topic, digest))
