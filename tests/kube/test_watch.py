"""EventWatcher and PodSweeper against the scenario cluster (real `kubernetes` client over HTTP)
and real Redis: resume, repeats, drops, 410 Gone, restarts, stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from bot.kube.client import KubeClient
from bot.kube.watch import EventWatcher, PodSignal, PodSweeper
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.store import RedisStore, Store
from tests.support.redis import redis_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

IMAGE = "registry.internal/shop/web:2.0"
EVENTS_PATH = r"^/api/v1/events$"  # the all-namespaces list/watch


class Signals:
    """on_signal that records, and waits for conditions with a deadline (no fixed sleeps)."""

    def __init__(self) -> None:
        self.items: list[PodSignal] = []
        self._cond = threading.Condition()

    def __call__(self, signal: PodSignal) -> None:
        with self._cond:
            self.items.append(signal)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[PodSignal]], bool], timeout: float = 5.0,
                 what: str = "signals") -> list[PodSignal]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(list(self.items)), timeout):
                pytest.fail(f"timed out waiting for {what}; got {self.summary()}")
            return list(self.items)

    def wait_count(self, pod: str, n: int, timeout: float = 5.0) -> list[PodSignal]:
        return self.wait_for(lambda items: len([s for s in items if s.pod == pod]) >= n,
                             timeout, f"{n} signals for {pod}")

    def of(self, pod: str) -> list[PodSignal]:
        with self._cond:
            return [s for s in self.items if s.pod == pod]

    def summary(self) -> list[tuple[str, str, str]]:
        return [(s.pod, s.kind, s.message[:40]) for s in self.items]


@pytest.fixture
def store() -> Iterator[RedisStore]:
    with redis_store() as s:  # random prefix, keys deleted afterwards
        yield s


@pytest.fixture
def watchers() -> Iterator[list[EventWatcher]]:
    started: list[EventWatcher] = []
    yield started
    for w in started:
        w.stop(timeout=5)


@pytest.fixture
def make_watcher(kube: KubeClient, store: Store, watchers: list[EventWatcher]
                 ) -> Callable[..., tuple[EventWatcher, Signals]]:
    def make(*, start: bool = True, store_: Store | None = None,
             **kwargs: Any) -> tuple[EventWatcher, Signals]:
        signals = Signals()
        options: dict[str, Any] = {"idle_timeout": 0.5, "backoff_base": 0.05,
                                   "backoff_max": 0.5}
        options.update(kwargs)
        watcher = EventWatcher(kube, store_ or store, signals, **options)
        if start:
            watcher.start()
            watchers.append(watcher)
        return watcher, signals
    return make


def failing(name: str, *, now: datetime | None = None, ns: str = "shop") -> tuple[str, list[Any]]:
    """A failing deployment's objects and its (single) pod's name."""
    image = f"{IMAGE}-{name}"
    objs = factory.failing_deployment(ns, name, image, factory.containerd_error(
        "not_found", image), now=now)
    return factory.pod_names(ns, name, image)[0], objs


def apply_all(sim: SimCluster, objs: list[Any]) -> None:
    for obj in objs:
        sim.apply(obj)


def backoff_event(objs: list[Any]) -> str:
    return str(next(o for o in objs if o["kind"] == "Event" and o["reason"] == "BackOff")
               ["metadata"]["name"])


def watch_requests(sim: SimCluster, path: str = EVENTS_PATH) -> list[Any]:
    return [r for r in sim.requests_matching("GET", path) if r.param("watch") == "True"]


def list_requests(sim: SimCluster, path: str = EVENTS_PATH) -> list[Any]:
    return [r for r in sim.requests_matching("GET", path) if r.param("watch") is None]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


PULL_FAILURES = 4  # Failed (runtime error), Error: ErrImagePull, BackOff, Error: ImagePullBackOff


# -- first start -------------------------------------------------------------------------------
def test_first_start_signals_recent_events_only(
        sim: SimCluster, store: Store, make_watcher: Callable[..., Any]) -> None:
    old_pod, old = failing("legacy", now=datetime.now(UTC) - timedelta(hours=2))
    new_pod, new = failing("web")
    apply_all(sim, old + new)
    watcher, signals = make_watcher(start_window=300)
    sim.wait_for_watches(1)
    got = signals.wait_count(new_pod, PULL_FAILURES)
    assert [s.kind for s in got if s.pod == new_pod] == ["pull_failure"] * PULL_FAILURES
    assert sorted(s.reason for s in got) == ["BackOff", "Failed", "Failed", "Failed"]
    assert [s.observed_at for s in got] == sorted(s.observed_at for s in got)  # oldest first
    assert signals.of(old_pod) == []  # two hours old: no storm of stale alerts at install
    listed_rv = str(sim.store.rv)
    watch = watch_requests(sim)[0]
    assert watch.param("resourceVersion") == listed_rv
    assert watch.param("allowWatchBookmarks") == "True"
    assert int(watch.param("timeoutSeconds") or 0) == watcher.watch_timeout
    wait_until(lambda: store.get(watcher.rv_key) == listed_rv, what="the RV in Redis")
    assert watcher.rv_key == f"{store.prefix}:watch:rv:*"


# -- live -------------------------------------------------------------------------------------
def test_new_failure_and_its_repeats_are_signalled(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    _, signals = make_watcher()
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    sim.bump_event("shop", backoff_event(objs))  # the kubelet repeating: MODIFIED, count + 1
    got = signals.wait_count(pod, PULL_FAILURES + 1)
    assert got[-1].reason == "BackOff" and got[-1].message.startswith("Back-off pulling image")
    assert len(list_requests(sim)) == 1 and len(watch_requests(sim)) == 1


def test_the_processed_map_holds_each_live_event_once(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    """Memory: the map of processed events (skipped on a relist) has one entry per event, not
    per version of it (the kubelet's repeats replace it), and an event deleted by the API
    server (expired) leaves it."""
    watcher, signals = make_watcher()
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    events = [o for o in objs if o["kind"] == "Event"]
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    wait_until(lambda: len(watcher.processed) == len(events), what="every event processed")
    for _ in range(3):
        sim.bump_event("shop", backoff_event(objs))
    signals.wait_count(pod, PULL_FAILURES + 3)
    assert len(watcher.processed) == len(events)
    for event in events:
        sim.delete("Event", event["metadata"]["name"], "shop")
    wait_until(lambda: len(watcher.processed) == 0, what="deleted events forgotten")


def test_crash_loop_is_not_a_pull_failure(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    _, signals = make_watcher(namespace="shop")
    sim.wait_for_watches(1)
    crash = factory.crashloop_deployment("shop", "app", "registry.internal/shop/app:1.4.2")
    apply_all(sim, crash)
    crash_pod = next(o for o in crash if o["kind"] == "Pod")["metadata"]["name"]
    sim.bump_event("shop", backoff_event(crash))  # Warning BackOff restarting failed container
    marker_pod, marker = failing("marker")  # applied after: once it arrives, crash's did too
    apply_all(sim, marker)
    signals.wait_count(marker_pod, PULL_FAILURES)
    assert [s.kind for s in signals.of(crash_pod)] == ["pulled"]  # only "already present"
    assert watch_requests(sim, "^/api/v1/namespaces/shop/events$")


def test_recovery_is_signalled_as_pulled(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    _, signals = make_watcher()
    sim.wait_for_watches(1)
    pod_name, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod_name, PULL_FAILURES)
    pod, events = factory.recovered(next(o for o in objs if o["kind"] == "Pod"))
    apply_all(sim, [pod, *events])
    got = signals.wait_count(pod_name, PULL_FAILURES + 1)
    assert got[-1].kind == "pulled"


# -- restarts ---------------------------------------------------------------------------------
def test_restart_resumes_from_the_stored_rv(
        sim: SimCluster, store: Store, make_watcher: Callable[..., Any]) -> None:
    first, signals = make_watcher()
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    first.stop()
    stored = store.get(first.rv_key)
    assert stored == str(sim.store.rv)  # persisted on exit at the latest

    sim.clear_requests()
    _, again = make_watcher()
    sim.wait_for_watches(1)
    sim.bump_event("shop", backoff_event(objs))
    got = again.wait_count(pod, 1)
    assert [(s.pod, s.reason) for s in got] == [(pod, "BackOff")]  # only the new repeat
    assert list_requests(sim) == []  # no relist
    assert watch_requests(sim)[0].param("resourceVersion") == stored


def test_restart_after_compaction_relists_and_loses_nothing(
        sim: SimCluster, store: Store, make_watcher: Callable[..., Any]) -> None:
    first, signals = make_watcher()
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    first.stop()
    gap_pod, gap = failing("while-down")  # happens while no bot runs ...
    apply_all(sim, gap)
    sim.compact()  # ... and the apiserver forgets the history: the stored RV is 410

    # start_window=0: what brings the gap's events back is "seen" (when the first watcher
    # stopped, saved in Redis), not the install window.
    second, again = make_watcher(start_window=0)
    again.wait_count(gap_pod, PULL_FAILURES)
    sim.wait_for_watches(1)
    assert second.relists == 1
    assert len(list_requests(sim)) == 2
    # "web" may be signalled again (the relist re-signals recent events rather than risk a
    # loss), but nothing is signalled twice by one process.
    assert len(again.of(pod)) in (0, PULL_FAILURES)


# -- drops and 410 while running ------------------------------------------------------------------
def test_abrupt_drop_reconnects_from_the_last_rv(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    _, signals = make_watcher()
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    rv_before_drop = str(sim.store.rv)
    assert sim.drop_watches(abrupt=True) == 1  # a load balancer reset mid-chunk
    pod2, objs2 = failing("api")  # while the watcher is reconnecting
    apply_all(sim, objs2)
    sim.bump_event("shop", backoff_event(objs))
    signals.wait_count(pod2, PULL_FAILURES)
    signals.wait_count(pod, PULL_FAILURES + 1)
    assert len(signals.items) == 2 * PULL_FAILURES + 1  # none lost, none twice
    reconnect = watch_requests(sim)[1]
    assert reconnect.param("resourceVersion") == rv_before_drop
    assert len(list_requests(sim)) == 1  # a drop is not a relist


def test_compaction_while_running_relists_without_repeats(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    watcher, signals = make_watcher()
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    # Keep the watcher out (its reconnects get 403 and back off) while events happen and the
    # history is compacted, so it comes back with an RV the server no longer has: 410.
    sim.forbid("events", ["watch"])
    connections = len(watch_requests(sim))
    sim.drop_watches()
    wait_until(lambda: len(watch_requests(sim)) > connections, what="a refused reconnect")
    pod2, objs2 = failing("api")
    apply_all(sim, objs2)
    sim.compact()
    sim.allow("events")
    signals.wait_count(pod2, PULL_FAILURES)
    sim.wait_for_watches(1)
    assert watcher.relists == 1
    assert len(list_requests(sim)) == 2
    assert len(signals.of(pod)) == PULL_FAILURES  # already handled: not signalled again
    assert len(signals.of(pod2)) == PULL_FAILURES


# -- robustness -------------------------------------------------------------------------------
def test_stop_is_prompt_on_an_idle_watch(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    watcher, _ = make_watcher(idle_timeout=2.0, watch_timeout=300)
    sim.wait_for_watches(1)
    started = time.monotonic()
    watcher.stop(timeout=5)
    assert time.monotonic() - started < 3
    assert watcher._thread is not None and not watcher._thread.is_alive()


def test_stop_is_prompt_while_backing_off(store: Store, watchers: list[EventWatcher]) -> None:
    api = config.new_client_from_config_dict({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}]})
    signals = Signals()
    watcher = EventWatcher(KubeClient(api), store, signals, backoff_base=5, backoff_max=30)
    watcher.start()
    wait_until(lambda: watcher.failures >= 1, what="a failed attempt")
    started = time.monotonic()
    watcher.stop(timeout=5)
    assert time.monotonic() - started < 1
    api.close()


def test_redis_down_does_not_stop_the_watch(
        sim: SimCluster, make_watcher: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    dead = RedisStore("redis://127.0.0.1:9/0", prefix="unreachable", socket_timeout=0.5)
    caplog.set_level(logging.INFO, logger="bot.kube.watch")
    watcher, signals = make_watcher(store_=dead, persist_interval=0.0)
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    sim.bump_event("shop", backoff_event(objs))
    signals.wait_count(pod, PULL_FAILURES + 1)
    assert watcher.resource_version == str(sim.store.rv)  # kept in memory
    saves = [r for r in caplog.records if "cannot save the watch position" in r.message]
    assert len(saves) == 1  # once per outage, not per event


def test_a_failing_handler_does_not_stop_the_watch(
        sim: SimCluster, store: Store, watchers: list[EventWatcher], kube: KubeClient) -> None:
    signals = Signals()

    def flaky(signal: PodSignal) -> None:
        signals(signal)
        raise RuntimeError("consumer bug")

    watcher = EventWatcher(kube, store, flaky, idle_timeout=1.0)
    watcher.start()
    watchers.append(watcher)
    sim.wait_for_watches(1)
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)


# -- the sweep ----------------------------------------------------------------------------------
def test_sweep_finds_pods_waiting_for_their_image(kube: KubeClient, tmp_path: Path) -> None:
    with SimCluster(["init-container", "crashloop", "healthy"]) as sim:
        stuck_pod, stuck = failing("web", ns="other")
        apply_all(sim, stuck)
        api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(
            tmp_path / "kc2")))
        client = KubeClient(api)
        client.LIST_PAGE_SIZE = 2  # exercise limit/continue
        try:
            signals = Signals()
            found = PodSweeper(client, signals).sweep()
            assert found == signals.items
            by_pod = {(s.namespace, s.pod): s for s in found}
            init_pod = next(p["metadata"]["name"] for p in sim.list("pods", "shop")
                            if p["metadata"]["name"].startswith("orders-api-"))
            assert set(by_pod) == {("other", stuck_pod), ("shop", init_pod)}
            assert {s.kind for s in found} == {"sweep"}
            init = by_pod[("shop", init_pod)]
            assert init.reason == "ImagePullBackOff" and "migrations:2.0.1-rc" in init.message
            pages = sim.requests_matching("GET", r"^/api/v1/pods$")
            assert len(pages) > 1 and pages[1].param("continue")

            only_shop = PodSweeper(client, lambda s: None, namespaces=["shop"]).sweep()
            assert [(s.namespace, s.pod) for s in only_shop] == [("shop", init_pod)]
        finally:
            api.close()


# -- health (/readyz) ---------------------------------------------------------------------------
def test_health_names_a_watch_out_of_contact_and_recovers(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    """Issue 8, defect 7: an unreachable API server makes the watch unhealthy, with the
    reason, once it is out of contact for longer than its window; healthy again after."""
    watcher, _ = make_watcher(stale_after=1.5)
    sim.wait_for_watches(1)
    wait_until(lambda: watcher.health()[0], what="a healthy watch")
    sim.down(refuse=True)
    wait_until(lambda: not watcher.health()[0], timeout=10, what="the watch unhealthy")
    healthy, why = watcher.health()
    assert not healthy
    assert why.startswith("no contact for ") and "is unreachable" in why, why
    assert watcher.name == "watch of events in all namespaces"
    sim.up()
    wait_until(lambda: watcher.health() == (True, "ok"), timeout=10, what="healthy again")
    assert watcher.last_error is None


def test_the_watcher_knows_when_it_last_received_an_event(
        sim: SimCluster, make_watcher: Callable[..., Any]) -> None:
    """The heartbeat's `last_watch_event_at` (issue 13): none before the first event from the
    watch (a list is not an event), then the wall-clock time of the newest one received."""
    watcher, signals = make_watcher()
    sim.wait_for_watches(1)
    assert watcher.last_event_at is None
    before = time.time()
    pod, objs = failing("web")
    apply_all(sim, objs)
    signals.wait_count(pod, PULL_FAILURES)
    first = watcher.last_event_at
    assert first is not None and before <= first <= time.time()
    sim.bump_event("shop", backoff_event(objs))
    signals.wait_count(pod, PULL_FAILURES + 1)
    assert watcher.last_event_at is not None and watcher.last_event_at >= first
