"""Routines on a crontab schedule (`AUDIT_CRON`, `0 9 * * 1`: Mondays at 09:00 UTC).

A cron routine's tick, for "once per tick across replicas" (`Routine.period`), is the shortest
gap between two of its firings: a week for `0 9 * * 1`, a day for `0 9 * * *`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from bot.routines import Routine

#: firings looked at to find the shortest gap (covers a year of a weekly schedule)
_SAMPLES = 60


#: crontab's weekday numbers: Sunday is 0 (and 7)
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger_args(expression: str) -> dict[str, object]:
    """APScheduler's `cron` trigger keywords for a five-field crontab line, in UTC.
    Raises ValueError for a line that is not one."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected five crontab fields (minute hour day month weekday), "
                         f"got {expression!r}")
    minute, hour, day, month, day_of_week = fields
    args: dict[str, object] = {"minute": minute, "hour": hour, "day": day, "month": month,
                               "day_of_week": _weekdays(day_of_week), "timezone": UTC}
    CronTrigger(**args)  # validates every field
    return args


def _day(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token[:3] in _DAYS:
        return _DAYS.index(token[:3])
    raise ValueError(f"not a weekday: {token!r}")


def _weekdays(field: str) -> str:
    """The weekday field in names. APScheduler 3 counts numbers from Monday = 0 (even in
    `from_crontab`), crontab from Sunday = 0: `0 9 * * 1` must mean Monday, so every number,
    range and step is spelled out as day names here."""
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


def shortest_gap(expression: str, start: datetime | None = None) -> float:
    """Seconds between the two closest firings of `expression` (over its next few dozen)."""
    trigger = CronTrigger(**cron_trigger_args(expression))
    now = start or datetime.now(UTC)
    fire = trigger.get_next_fire_time(None, now)
    gaps: list[float] = []
    for _ in range(_SAMPLES):
        if fire is None:
            break
        following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if following is None:
            break
        gaps.append((following - fire).total_seconds())
        fire = following
    return min(gaps) if gaps else 7 * 24 * 3600.0


def cron(name: str, run: Callable[[], None], expression: str) -> Routine:
    """A routine that runs on `expression`'s schedule, once per firing across replicas."""
    return Routine(name, run, "cron", cron_trigger_args(expression), shortest_gap(expression))
