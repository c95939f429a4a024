"""`first_time`: a finding is said once per period across replicas sharing one Redis."""

from __future__ import annotations

import time

import pytest

from bot.routines import first_time
from tests.support.redis import redis_store

pytestmark = pytest.mark.integration


def test_a_finding_is_said_once_per_period_by_all_replicas_together() -> None:
    with redis_store() as a, redis_store(prefix=a.prefix) as b:
        assert first_time(a, "credentials", "missing secret team/regcred", period=0.4)
        assert not first_time(b, "credentials", "missing secret team/regcred", period=0.4)
        assert first_time(b, "credentials", "unused secret team/old", period=0.4)
        assert first_time(a, "quota", "missing secret team/regcred", period=0.4)  # other topic
        time.sleep(0.5)
        assert first_time(b, "credentials", "missing secret team/regcred", period=0.4)
