"""Crontab lines mean what crontab means: weekday 1 is Monday (APScheduler 3 alone would read
it as Tuesday, `CronTrigger.from_crontab` included)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from apscheduler.triggers.cron import CronTrigger

from bot.routines import cron, cron_trigger_args

SUNDAY = datetime(2026, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(("crontab", "first", "days"), [
    ("0 9 * * 1", "Mon 2026-01-05 09:00", "mon"),
    ("0 9 * * 0", "Sun 2026-01-04 09:00", "sun"),
    ("0 9 * * 7", "Sun 2026-01-04 09:00", "sun"),
    ("0 9 * * 1-5", "Mon 2026-01-05 09:00", "mon,tue,wed,thu,fri"),
    ("0 9 * * 5-7", "Sun 2026-01-04 09:00", "sun,fri,sat"),
    ("0 9 * * */2", "Sun 2026-01-04 09:00", "sun,tue,thu,sat"),
    ("0 9 * * mon,fri", "Mon 2026-01-05 09:00", "mon,fri"),
    ("30 6 * * *", "Sun 2026-01-04 06:30", "*"),
])
def test_weekdays_are_crontabs(crontab: str, first: str, days: str) -> None:
    args = cron_trigger_args(crontab)
    assert args["day_of_week"] == days
    fire = CronTrigger(**args).get_next_fire_time(None, SUNDAY)
    assert fire is not None and fire.strftime("%a %Y-%m-%d %H:%M") == first


def test_a_weekly_routine_runs_once_a_week_across_replicas() -> None:
    assert cron("audit-digest", lambda: None, "0 9 * * 1").period == 7 * 24 * 3600


@pytest.mark.parametrize("bad", ["0 9 * *", "0 9 * * funday", "0 25 * * *", "0 9 * * 5-1"])
def test_bad_lines_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        cron_trigger_args(bad)
