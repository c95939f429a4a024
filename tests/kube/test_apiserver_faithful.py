"""What a real kube-apiserver does under load and over time, and the bot coping with it.

* A continue token older than the storage's compaction gets ``410 Expired`` with a fresh token
  in the Status's metadata (kubernetes.io/docs/reference/using-api/api-concepts/, "Retrieving
  large results sets in chunks"): a paginated list is started again, never half-returned.
* API Priority and Fairness rejects with ``429`` + ``Retry-After`` and a plain-text body
  (kubernetes.io/docs/concepts/cluster-administration/flow-control/): urllib3's default
  ``Retry(3)`` sends a GET again after the wait (these tests hold the bot to it); past that,
  a KubeThrottled, and a throttled watch is reopened no sooner than the server asked.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import config

from bot.kube.client import KubeClient, KubeThrottled, KubeUnreachable
from bot.kube.watch import EventWatcher
from bot.sim.server import SimCluster
from bot.store import Store
from tests.support.redis import redis_store


def _pod(name: str, ns: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}


#: GETs urllib3's default Retry(3) sends for one call answered 429 + Retry-After every time
_TRIES = 4


def _get(sim: SimCluster, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(sim.url + path, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# -- continue tokens ------------------------------------------------------------------------------

def test_sim_expired_continue_token_is_410_with_a_fresh_token(sim: SimCluster) -> None:
    for i in range(3):
        sim.apply(_pod(f"p{i}"))
    code, _, body = _get(sim, "/api/v1/namespaces/shop/pods?limit=1")
    token = json.loads(body)["metadata"]["continue"]
    sim.apply(_pod("p3"))
    sim.compact()  # the first page's snapshot is gone

    code, _, body = _get(sim, f"/api/v1/namespaces/shop/pods?limit=1&continue={token}")
    status = json.loads(body)
    assert code == 410
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert "too old to display a consistent list result" in status["message"]
    fresh = status["metadata"]["continue"]
    # the fresh token goes on (inconsistently) at the latest snapshot, as the apiserver's does
    code, _, body = _get(sim, f"/api/v1/namespaces/shop/pods?limit=10&continue={fresh}")
    assert code == 200
    assert [p["metadata"]["name"] for p in json.loads(body)["items"]] == ["p1", "p2", "p3"]
    assert json.loads(base64.urlsafe_b64decode(fresh))["rv"] == -1


def test_list_restarts_when_its_continue_token_expires(sim: SimCluster, kube: KubeClient) -> None:
    for i in range(5):
        sim.apply(_pod(f"p{i}"))
    kube.LIST_PAGE_SIZE = 2  # type: ignore[misc]  # five pods: three pages
    compacted: list[bool] = []

    def project(item: dict[str, Any]) -> str:
        if not compacted:  # while the first page is read: a write, then etcd compacts
            compacted.append(True)
            sim.apply(_pod("p5"))
            sim.compact()
        return str(item["metadata"]["name"])

    names, rv = kube.list_pods_projected("shop", project)
    assert names == [f"p{i}" for i in range(6)]  # the whole list, once, from one snapshot
    assert int(rv) == sim.store.rv
    pages = sim.requests_matching("GET", r"/namespaces/shop/pods$")
    assert [r.param("continue") is not None for r in pages] == [False, True, False, True, True]


def test_a_list_that_keeps_expiring_fails_after_its_restarts(sim: SimCluster,
                                                               kube: KubeClient) -> None:
    """Two restarts, then the 410 reaches the caller (the reflector backs off and relists)."""
    sim.apply(_pod("p0"))
    kube.LIST_PAGE_SIZE = 1  # type: ignore[misc]
    sim.apply(_pod("p1"))

    def project(item: dict[str, Any]) -> str:
        sim.apply(_pod(f"x{time.monotonic_ns()}"))
        sim.compact()  # every page's token expires at once
        return str(item["metadata"]["name"])

    with pytest.raises(KubeUnreachable, match="410"):
        kube.list_pods_projected("shop", project)
    assert len(sim.requests_matching("GET", r"/namespaces/shop/pods$")) == 6  # 1 + 2 restarts


# -- API Priority and Fairness --------------------------------------------------------------------

def test_sim_throttle_is_apf_429(sim: SimCluster) -> None:
    sim.throttle(1, retry_after=3)
    code, headers, body = _get(sim, "/api/v1/namespaces/shop/pods")
    assert code == 429
    assert headers["Retry-After"] == "3"
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"Too many requests, please try again later.\n"
    assert _get(sim, "/api/v1/namespaces/shop/pods")[0] == 200  # one rejection only


def test_a_throttled_read_is_sent_again_after_retry_after(sim: SimCluster,
                                                          kube: KubeClient) -> None:
    sim.apply(_pod("web"))
    sim.throttle(1, retry_after=1, path=r"/pods/web$")
    started = time.monotonic()
    assert kube.read_pod("shop", "web")["metadata"]["name"] == "web"
    assert time.monotonic() - started >= 0.9  # waited as asked
    gets = sim.requests_matching("GET", r"/pods/web$")
    assert len(gets) == 2 and gets[1].at - gets[0].at >= 0.9


def test_a_read_throttled_past_the_retries_fails_as_unreachable(sim: SimCluster,
                                                                kube: KubeClient) -> None:
    sim.apply(_pod("web"))
    sim.throttle(_TRIES, retry_after=0, path=r"/pods/web$")
    with pytest.raises(KubeThrottled, match="429") as caught:
        kube.read_pod("shop", "web")
    assert isinstance(caught.value, KubeUnreachable)  # callers cope as with an outage
    assert "please try again later" in str(caught.value)
    assert len(sim.requests_matching("GET", r"/pods/web$")) == _TRIES


def _wait(predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_throttled_watch_reopens_no_sooner_than_retry_after(sim: SimCluster,
                                                              kube: KubeClient) -> None:
    with redis_store() as store:
        watcher = _watcher(kube, store)
        watcher.start()
        try:
            sim.wait_for_watches(1)
            sim.throttle(_TRIES, retry_after=1, path="/events$")  # past urllib3's retries
            sim.clear_requests()
            sim.drop_watches()
            _wait(lambda: len(sim.requests_matching("GET", "/events$")) > _TRIES)
            tries = sim.requests_matching("GET", "/events$")[:_TRIES + 1]
            assert {r.param("watch") for r in tries} == {"True"}
            # the reflector's own back-off alone would be at most 0.05 s
            assert tries[_TRIES].at - tries[_TRIES - 1].at >= 0.9
            sim.wait_for_watches(1)
            assert watcher.health()[0]
        finally:
            watcher.stop()


def _watcher(kube: KubeClient, store: Store) -> EventWatcher:
    return EventWatcher(kube, store, lambda signal: None, idle_timeout=0.5,
                        backoff_base=0.05, backoff_max=5.0)


# -- a resourceVersion beyond the server's --------------------------------------------------------

def test_sim_watch_from_a_future_rv_is_a_504_error_event() -> None:
    with SimCluster(too_large_rv_wait=0.1) as sim:
        code, _, body = _get(sim, "/api/v1/namespaces/shop/pods?watch=true&resourceVersion=999")
    assert code == 200  # the cacher answers inside the stream, like 410
    (line,) = body.decode().splitlines()
    event = json.loads(line)
    status = event["object"]
    assert event["type"] == "ERROR"
    assert (status["code"], status["reason"]) == (504, "Timeout")
    assert status["message"].startswith("Timeout: Too large resource version: 999, current: ")
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_a_stored_rv_beyond_the_server_relists(tmp_path: Any) -> None:
    """A bot resuming from Redis after the cluster's etcd was restored (its RV went back):
    the watch relists instead of waiting forever for an RV that may never come."""
    with SimCluster(too_large_rv_wait=0.1) as sim, redis_store() as store:
        api = config.new_client_from_config(
            config_file=str(sim.write_kubeconfig(tmp_path / "kc")))
        watcher = _watcher(KubeClient(api), store)
        store.put(watcher.rv_key, "999999")
        watcher.start()
        try:
            _wait(lambda: watcher.relists >= 1 and len(sim.store.watchers) >= 1)
            watches = [r for r in sim.requests_matching("GET", "/events$")
                       if r.param("watch")]
            assert watches[0].param("resourceVersion") == "999999"
            assert int(watches[-1].param("resourceVersion") or 0) <= sim.store.rv
            assert watcher.health()[0]
        finally:
            watcher.stop()
            api.close()
