"""Scheduled jobs across replicas (bot/app.py `_once_per_period`, `Store.take_turn`): two real
APScheduler schedulers on one real Redis run a job once per period between them, and a run that
hangs (a replica stuck or killed mid-run) does not block the next period."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.app import _once_per_period
from tests.support.redis import redis_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

PERIOD = 0.5


def test_two_schedulers_run_a_job_once_per_period_and_a_hung_run_blocks_nothing() -> None:
    runs: list[tuple[str, int]] = []
    lock = threading.Lock()
    hang = threading.Event()  # the first run of replica "a" never returns until released

    def job_of(owner: str) -> Callable[[], None]:  # a closure per replica
        def job() -> None:
            with lock:
                runs.append((owner, int(time.time() // PERIOD)))
                first_of_a = owner == "a" and sum(1 for o, _ in runs if o == "a") == 1
            if first_of_a:
                hang.wait(10)
        return job

    with redis_store() as store:
        schedulers = []
        for owner in ("a", "b"):
            scheduler = BackgroundScheduler(job_defaults={"coalesce": True,
                                                          "max_instances": 1})
            scheduler.add_job(_once_per_period(store, "job", PERIOD, owner, job_of(owner)),
                              "interval", seconds=PERIOD / 5)
            schedulers.append(scheduler)
        for scheduler in schedulers:
            scheduler.start()
        time.sleep(12 * PERIOD)
        hang.set()
        for scheduler in schedulers:
            scheduler.shutdown(wait=True)
    periods = [period for _, period in runs]
    assert len(periods) == len(set(periods)), runs  # never twice in one period
    assert len(periods) >= 9, runs  # ~12 periods: nearly every one ran, by someone
    # "a" hung in its first run; the periods after it were run (by "b", "a" being stuck)
    first_a = next(period for owner, period in runs if owner == "a")
    assert any(owner == "b" and period > first_a for owner, period in runs), runs
