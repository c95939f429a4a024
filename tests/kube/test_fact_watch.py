"""The fact watches (bot/kube/fact_watch.py) against the scenario cluster over HTTP: with them
current, the diagnosis reads pull secrets and service accounts from what they listed and
watched (no read per namespace), a secret created or an account patched to fix an incident is
seen at the next diagnosis; a 410 relist and a dropped watch lose no change; an identity that
may not list or watch secrets falls back to reading them, and stays ready."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from bot.kube.cache import KubeFactCache
from bot.kube.client import KubeClient
from bot.kube.fact_watch import WatchedFacts
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
        yield KubeClient(api, KubeFactCache(fresh_seconds=30))
    finally:
        api.close()


@pytest.fixture
def facts(kube: KubeClient) -> Iterator[WatchedFacts]:
    watched = WatchedFacts(kube, **OPTIONS)
    kube.facts.source = watched
    watched.start()
    assert watched.wait_synced(5)
    yield watched
    watched.stop()


def regcred_in_shop(sim: SimCluster) -> dict:
    secret = sim.get("Secret", "regcred", "default")
    return {"apiVersion": "v1", "kind": "Secret", "type": secret["type"],
            "data": dict(secret["data"]), "metadata": {"name": "regcred", "namespace": "shop"}}


def test_three_watches_cluster_wide_and_one_set_per_namespace(kube: KubeClient) -> None:
    assert sorted(w.what for w in WatchedFacts(kube).reflectors) == [
        "secrets in all namespaces (type=kubernetes.io/dockercfg)",
        "secrets in all namespaces (type=kubernetes.io/dockerconfigjson)",
        "serviceaccounts in all namespaces"]
    assert len(WatchedFacts(kube, ["a", "b"]).reflectors) == 6


def test_with_current_watches_no_namespace_is_read(
        sim: SimCluster, kube: KubeClient, facts: WatchedFacts) -> None:
    """The same answers as reading the API, with no request."""
    reading = KubeClient(kube.api, KubeFactCache(fresh_seconds=0))
    sim.clear_requests()
    for namespace in ("shop", "default"):
        assert kube.namespace_pull_secrets(namespace) == sorted(
            reading.namespace_pull_secrets(namespace) or [], key=lambda i: (i.name, i.type))
        assert kube.service_account_pull_secrets(namespace, "default") == \
            reading.service_account_pull_secrets(namespace, "default")
    assert kube.service_account_pull_secrets("shop", "nobody") is None
    reads_by_reading = len(sim.requests)
    sim.clear_requests()
    kube.namespace_pull_secrets("shop")
    kube.service_account_pull_secrets("shop", "default")
    assert sim.requests == []
    assert reads_by_reading > 0  # the comparison read the API: it was not two empty answers


def test_a_created_secret_and_a_patched_account_are_seen_at_once(
        sim: SimCluster, kube: KubeClient, facts: WatchedFacts) -> None:
    assert kube.referenced_secrets("shop", ("regcred",))["regcred"] is None
    sim.apply(regcred_in_shop(sim))
    found = wait_for(lambda: kube.referenced_secrets("shop", ("regcred",))["regcred"], 3,
                     "the new secret")
    assert found.type == "kubernetes.io/dockerconfigjson" and found.registries
    account = copy.deepcopy(sim.get("ServiceAccount", "default", "shop"))
    account["imagePullSecrets"] = [{"name": "regcred"}]
    sim.apply(account)
    wait_for(lambda: kube.service_account_pull_secrets("shop", "default") == ("regcred",), 3,
             "the patched service account")
    sim.delete("Secret", "regcred", "shop")
    wait_for(lambda: all(i.name != "regcred" for i in kube.namespace_pull_secrets("shop")), 3,
             "the deleted secret")
    # nothing of a secret's credentials is kept, by the cache or the watches
    kept = repr(kube.facts.namespace_secrets._items) + repr(kube.facts.secrets._items) \
        + repr([w.items for w in facts.secrets])
    assert regcred_in_shop(sim)["data"][".dockerconfigjson"] not in kept


def test_a_relist_after_410_and_a_dropped_watch_lose_no_change(
        sim: SimCluster, kube: KubeClient, facts: WatchedFacts) -> None:
    secret_watch = next(w for w in facts.secrets if "dockerconfigjson" in w.what)
    relists = secret_watch.relists
    sim.down()  # the watches break and cannot reconnect
    try:
        sim.apply(regcred_in_shop(sim))  # created while the bot was away
        sim.compact()  # and their resourceVersions are forgotten: they must relist (410)
    finally:
        sim.up()
    wait_for(lambda: secret_watch.relists > relists, 10, "a relist after 410")
    wait_for(lambda: any(i.name == "regcred" for i in facts.pull_secrets("shop") or ()), 5,
             "the secret created while the watch was away")
    assert all(w.health()[0] for w in facts.reflectors)


def test_out_of_contact_the_watches_do_not_vouch(sim: SimCluster, facts: WatchedFacts) -> None:
    """Out of contact for longer than a blip (`stale_after`, 1 s here): the client reads."""
    assert facts.pull_secrets("shop") is not None
    for watch in facts.reflectors:
        watch.stale_after = 1.0
    sim.down()
    try:
        wait_for(lambda: facts.pull_secrets("shop") is None, 10, "the watches to stop vouching")
        assert facts.service_account("shop", "default") == (False, None)
    finally:
        sim.up()
    wait_for(lambda: facts.pull_secrets("shop") is not None, 10, "vouching again")


@pytest.mark.parametrize("secret_verbs", [["get"], ["get", "list"]])
def test_without_permission_the_api_is_read_and_the_bot_stays_ready(
        sim: SimCluster, kube: KubeClient, secret_verbs: list[str]) -> None:
    """A namespaced install without list on secrets, or a ClusterRole from before this
    version (list but no watch)."""
    sim.enforce_rbac([{"apiGroups": [""], "resources": ["serviceaccounts"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": [""], "resources": ["secrets"], "verbs": secret_verbs}])
    watched = WatchedFacts(kube, **OPTIONS)
    kube.facts.source = watched
    watched.start()
    try:
        wait_for(lambda: all(w.refused for w in watched.secrets), 5, "the secret watches")
        assert all(w.health()[0] for w in watched.reflectors)  # not needed to alert: ready
        assert watched.pull_secrets("shop") is None  # never vouches: the client reads
        assert watched.accounts[0].synced.wait(5) and watched.accounts[0].refused is None
        assert watched.service_account("shop", "default")[0] is True
    finally:
        watched.stop()
