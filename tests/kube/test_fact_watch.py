"""The fact watches (bot/kube/fact_watch.py) against the scenario cluster over HTTP: a pull
secret created or a service account patched to fix an incident is seen at the next read (no
freshness window to wait out), while unchanged facts are read once however long they are
believed; a 410 relist or a dropped watch loses no change; an identity that may not watch
secrets keeps working with the short window."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from bot.kube.cache import KubeFactCache
from bot.kube.client import KubeClient
from bot.kube.fact_watch import FactWatch, fact_watches
from bot.sim.server import SimCluster
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

OPTIONS = {"idle_timeout": 0.5, "backoff_base": 0.05, "backoff_max": 0.3}


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(["missing-secret"]) as cluster:
        yield cluster


@pytest.fixture
def kube(sim: SimCluster, tmp_path: Path) -> Iterator[KubeClient]:
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        yield KubeClient(api, KubeFactCache(fresh_seconds=0.5))
    finally:
        api.close()


@pytest.fixture
def watches(kube: KubeClient) -> Iterator[list[FactWatch]]:
    started = fact_watches(kube, **OPTIONS)
    for watch in started:
        watch.start()
    for watch in started:
        assert watch.synced.wait(5), watch.what
    yield started
    for watch in started:
        watch.stop()


def regcred_in_shop(sim: SimCluster) -> dict:
    secret = sim.get("Secret", "regcred", "default")
    return {"apiVersion": "v1", "kind": "Secret", "type": secret["type"],
            "data": dict(secret["data"]), "metadata": {"name": "regcred", "namespace": "shop"}}


def test_three_watches_cluster_wide_and_one_set_per_namespace(kube: KubeClient) -> None:
    assert sorted(w.what for w in fact_watches(kube)) == [
        "secrets in all namespaces (type=kubernetes.io/dockercfg)",
        "secrets in all namespaces (type=kubernetes.io/dockerconfigjson)",
        "serviceaccounts in all namespaces"]
    assert len(fact_watches(kube, ["a", "b"])) == 6


def test_a_created_secret_is_seen_at_once_and_unchanged_facts_are_read_once(
        sim: SimCluster, kube: KubeClient, watches: list[FactWatch]) -> None:
    assert kube.facts.namespace_secrets.ttl == 300  # believed long: the watch guards it
    before = kube.namespace_pull_secrets("shop")
    assert kube.referenced_secrets("shop", ("regcred",)) == {"regcred": None}
    time.sleep(0.8)  # longer than the unwatched freshness window (0.5 s)
    sim.clear_requests()
    assert kube.namespace_pull_secrets("shop") == before
    assert sim.requests_matching("GET", r"/secrets$") == []  # still believed: no change seen

    sim.apply(regcred_in_shop(sim))
    found = wait_for(lambda: kube.referenced_secrets("shop", ("regcred",))["regcred"], 3,
                     "the new secret")
    assert found.type == "kubernetes.io/dockerconfigjson" and found.registries
    # nothing of the secret's credentials is kept, by the cache or the watch
    kept = repr(kube.facts.namespace_secrets._items) + repr(kube.facts.secrets._items) \
        + repr([vars(w) for w in watches])
    assert regcred_in_shop(sim)["data"][".dockerconfigjson"] not in kept


def test_a_patched_service_account_is_seen_at_once(
        sim: SimCluster, kube: KubeClient, watches: list[FactWatch]) -> None:
    assert kube.service_account_pull_secrets("shop", "default") == ()
    account = copy.deepcopy(sim.get("ServiceAccount", "default", "shop"))
    account["imagePullSecrets"] = [{"name": "regcred"}]
    sim.apply(account)
    wait_for(lambda: kube.service_account_pull_secrets("shop", "default") == ("regcred",), 3,
             "the patched service account")


def test_a_relist_after_410_and_a_dropped_watch_lose_no_change(
        sim: SimCluster, kube: KubeClient, watches: list[FactWatch]) -> None:
    secret_watch = next(w for w in watches if "dockerconfigjson" in w.what)
    assert kube.referenced_secrets("shop", ("regcred",)) == {"regcred": None}
    relists = secret_watch.relists
    sim.down()  # the watches break and cannot reconnect
    try:
        sim.apply(regcred_in_shop(sim))  # created while the bot was away
        sim.compact()  # and their resourceVersions are forgotten: they must relist (410)
    finally:
        sim.up()
    wait_for(lambda: kube.referenced_secrets("shop", ("regcred",))["regcred"], 5,
             "the secret created while the watch was away")
    wait_for(lambda: secret_watch.relists > relists, 5, "a relist after 410")
    assert all(w.health()[0] for w in watches)


def test_a_role_that_may_list_but_not_watch_gives_up_and_stays_ready(
        sim: SimCluster, kube: KubeClient) -> None:
    """A ClusterRole from before the fact watches (no `watch` on secrets)."""
    sim.enforce_rbac([{"apiGroups": [""], "resources": ["serviceaccounts"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}])
    started = fact_watches(kube, **OPTIONS)
    for watch in started:
        watch.start()
    try:
        secrets = [w for w in started if w.resource == "secrets"]
        wait_for(lambda: all(w.refused for w in secrets), 5, "the secret watches giving up")
        assert all(w.health()[0] for w in started)
        assert kube.facts.namespace_secrets.ttl == 0.5
    finally:
        for watch in started:
            watch.stop()


def test_without_permission_to_watch_secrets_the_short_window_applies(
        sim: SimCluster, kube: KubeClient) -> None:
    sim.enforce_rbac([{"apiGroups": [""], "resources": ["serviceaccounts"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    started = fact_watches(kube, **OPTIONS)
    for watch in started:
        watch.start()
    try:
        secrets = [w for w in started if w.resource == "secrets"]
        wait_for(lambda: all(w.refused for w in secrets), 5, "the secret watches giving up")
        assert all(w.health()[0] for w in started)  # not needed to alert: still ready
        assert kube.facts.namespace_secrets.ttl == 0.5
        accounts = next(w for w in started if w.resource == "serviceaccounts")
        assert accounts.synced.wait(5) and accounts.refused is None
        assert kube.facts.service_accounts.ttl == 300
    finally:
        for watch in started:
            watch.stop()
