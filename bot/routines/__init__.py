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
from typing import Any

from bot.store import Store

DAY = 24 * 3600.0


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
