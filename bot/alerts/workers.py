"""The small thread pools of the alerting (the pipeline's workers, the registry probes):
started as named daemon threads, stopped together — one way, written once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def start_workers(count: int, target: Callable[[], None], name: str) -> list[threading.Thread]:
    """`count` daemon threads running `target`, named ``{name}-{i}``, already started."""
    threads = [threading.Thread(target=target, name=f"{name}-{i}", daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def stop_workers(threads: list[threading.Thread], stop: threading.Event,
                 cond: threading.Condition, timeout: float) -> None:
    """Set `stop`, wake every thread waiting on `cond`, join each (at most `timeout` s) and
    forget them."""
    stop.set()
    with cond:
        cond.notify_all()
    for thread in threads:
        thread.join(timeout)
    threads.clear()
