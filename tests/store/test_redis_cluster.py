"""Redis Cluster (issue 13): `redis+cluster://` seed URLs and Cluster mode detected behind a plain
`redis://` URL, against a real three-node cluster on loopback (tests/support/redis_cluster.py).
Every store primitive runs on it too (tests/store/conftest.py's `cluster` store); here: how the
cluster is chosen and reached, where keys land, and what is said when it cannot be used."""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from bot.app import build_runtime
from bot.cli.checks import live_checks
from bot.cli.main import main
from bot.config import Settings
from bot.kube.client import KubeClient
from bot.sim.server import SimCluster
from bot.store import (
    MemoryStore,
    RedisStore,
    RedisUrlError,
    StoreAuthFailed,
    StoreUnavailable,
    open_store,
)
from tests.support.redis import REDIS_URL
from tests.support.redis_cluster import RedisClusterForTests, cluster_store
from tests.support.tls import make_tls_material
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_standalone_key_names_are_what_they_always_were() -> None:
    """An upgrade must find the incidents it opened: no hash tag outside Cluster mode."""
    for store in (RedisStore(REDIS_URL, "ipb:prod-eu"), MemoryStore("ipb:prod-eu")):
        assert not store.hash_tagged
        assert store.key("incident", "i1") == "ipb:prod-eu:incident:i1"
        assert store.fleet().key("bus", "prod-us") == "ipb-fleet:bus:prod-us"
        assert store.of_cluster("prod-us").key("lock", "x") == "ipb:prod-us:lock:x"


def test_a_cluster_url_with_several_seeds_reaches_the_cluster_and_tags_keys(
        redis_cluster: RedisClusterForTests) -> None:
    """The first seed is down: any answering node gives the client the whole slot map."""
    dead = f"127.0.0.1:{_free_port()}"
    url = redis_cluster.url.replace("redis+cluster://", f"redis+cluster://{dead},")
    with cluster_store(redis_cluster, "ipb:prod-eu") as store:
        store = RedisStore(url, "ipb:prod-eu")
        assert store.hash_tagged and store.check() is None
        assert store.key("incident", "i1") == "ipb:{prod-eu}:incident:i1"
        assert store.fleet().key("bus", "prod-us") == "{ipb-fleet}:bus:prod-us"
        assert store.of_cluster("prod-us").key("x") == "ipb:{prod-us}:x"
        assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"})
        raw = redis_cluster.client()
        assert raw.get("ipb:{prod-eu}:claim") == "me"  # where another client finds it
        raw.close()
    # two clusters' keys and the fleet's spread over the nodes (a slot per prefix, not one)
    nodes = {redis_cluster.node_of(RedisStore(url, f"ipb:{name}").key("x"))
             for name in ("prod-eu", "prod-us", "staging", "dev", "qa", "perf")}
    nodes.add(redis_cluster.node_of(store.fleet().key("x")))
    assert len(nodes) > 1, nodes


def test_a_plain_url_to_a_cluster_node_is_detected(
        redis_cluster: RedisClusterForTests) -> None:
    """A managed Redis's configuration endpoint is a plain URL: INFO says cluster_enabled:1."""
    port = redis_cluster.ports[1]
    with cluster_store(redis_cluster, "ipb:detected") as via_seeds:
        store = open_store(f"redis://127.0.0.1:{port}/0", "ipb:detected")
        assert isinstance(store, RedisStore) and store.hash_tagged
        assert store.check() is None
        for n in range(20):  # keys on every node: MOVED is followed, not failed
            store.put(store.of_cluster(f"c{n}").key("k"), str(n))
        assert [store.get(store.of_cluster(f"c{n}").key("k")) for n in range(20)] == \
            [str(n) for n in range(20)]
        assert via_seeds.get(via_seeds.of_cluster("c7").key("k")) == "7"
        store.delete(*(store.of_cluster(f"c{n}").key("k") for n in range(20)))
    with pytest.raises(RedisUrlError, match="only database 0: drop the /3"):
        RedisStore(f"redis://127.0.0.1:{port}/3", "ipb:x")


def test_bad_redis_urls_are_refused_in_words(tmp_path: Path) -> None:
    for url, said in (("redis+cluster://", "redis\\+cluster://\\[\\[USER\\]:PASSWORD@\\]HOST"),
                      ("redis+cluster://127.0.0.1:7000/2", "no database number"),
                      ("redis+cluster://127.0.0.1", "each node is HOST:PORT"),
                      ("redis+cluster://:pw@a:1,b", "each node is HOST:PORT"),
                      ("redis+clustr://127.0.0.1:7000", "not a Redis URL the bot knows"),
                      ("127.0.0.1:6379", "starts with no scheme")):
        with pytest.raises(RedisUrlError, match=said):
            RedisStore(url)
    with pytest.raises(RedisUrlError, match="not rediss://"):
        RedisStore("redis+cluster://127.0.0.1:7000", ca_bundle=str(tmp_path / "ca.pem"))
    with pytest.raises(RedisUrlError, match="must not begin with"):
        RedisStore("redis+cluster://127.0.0.1:7000", "ipb:}odd")
    # check-config says it on its line, without a traceback and without the password
    checks = live_checks(Settings(REDIS_URL="redis+cluster://:pw-9f3@127.0.0.1:7000/2",
                                  KUBECONFIG=str(tmp_path / "no-kubeconfig")))
    [(ok, line)] = [c for c in checks if "Redis" in c[1]]
    assert not ok and "no database number" in line and "pw-9f3" not in line


def test_a_cluster_down_at_start_is_waited_out(redis_cluster: RedisClusterForTests) -> None:
    """As with one server: the store opens, says "unreachable" until a node answers."""
    store = RedisStore(f"redis+cluster://127.0.0.1:{_free_port()}", "ipb:x", socket_timeout=0.3)
    assert not store.ping()
    with pytest.raises(StoreUnavailable):
        store.get(store.key("k"))
    assert "unreachable" in (store.check() or "")
    with pytest.raises(redis.exceptions.ConnectionError):  # what the bus handles
        store.client.xadd(store.fleet().key("bus", "x"), {"a": "1"})


def test_a_cluster_opened_as_one_server_is_refused_at_start_in_words(tmp_path: Path) -> None:
    """A plain URL that did not answer when the store was opened: Cluster mode was not
    detected. Once the node answers, check-config and the start say what to do, instead of
    failing the writes without a word."""
    port, bus = _free_port(), _free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", "ipb:x", socket_timeout=0.3)
    assert not store.hash_tagged
    node = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(tmp_path / "nodes.conf"), "--cluster-port", str(bus),
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: store.ping(), 10, "the node to start")
        problem = store.cluster_mode_problem()
        assert problem is not None and "redis+cluster://" in problem
        assert store.check() == problem
        with SimCluster() as sim:
            kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kc")))
            runtime = build_runtime(Settings(REGISTRY_PROBE="false", HEARTBEAT_SECONDS="0"),
                                    kube=kube, store=store)
            with pytest.raises(RuntimeError, match="restart the bot once Redis answers"):
                runtime.start(watch=False, schedule=False)
            runtime.stop()
    finally:
        node.terminate()
        node.wait(5)


def test_a_slot_moved_to_another_node_is_followed(redis_cluster: RedisClusterForTests) -> None:
    """Resharding while the bot runs: the keys of one cluster's slot migrate to another node.
    Mid-migration the old node answers ASK, afterwards MOVED; the store's client follows both
    and the claim script (two keys, one slot) keeps working."""
    with cluster_store(redis_cluster, "ipb:moving") as store:
        assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"})
        slot = redis.crc.key_slot(store.key("claim").encode())
        raw = redis_cluster.client()
        source = raw.get_node_from_key(store.key("claim"))
        target = next(n for n in raw.get_primaries() if n.name != source.name)
        ids = {n.name: raw.cluster_myid(n) for n in raw.get_primaries()}
        src = redis.Redis(host=source.host, port=source.port, decode_responses=True)
        dst = redis.Redis(host=target.host, port=target.port, decode_responses=True)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.name])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.name])
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        assert set(keys) == {store.key("claim"), store.key("record")}
        src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        # mid-migration: the source answers ASK for keys it no longer has
        assert store.get(store.key("claim")) == "me"
        assert store.hgetall(store.key("record")) == {"a": "1"}
        for node in raw.get_primaries():
            redis.Redis(host=node.host, port=node.port).execute_command(
                "CLUSTER", "SETSLOT", slot, "NODE", ids[target.name])
        # done: the store's slot map still says `source`, which answers MOVED
        assert store.delete_if_equals(store.key("claim"), "me")
        assert store.set_nx_hset(store.key("claim"), "again", store.key("record"), {"b": "2"})
        assert store.hgetall(store.key("record")) == {"a": "1", "b": "2"}
        assert redis_cluster.node_of(store.key("claim")) == f"{target.host}:{target.port}"
        src.close()
        dst.close()
        raw.close()


def test_a_cluster_with_auth_works_and_a_wrong_password_is_said(
        redis_cluster: RedisClusterForTests) -> None:
    """AUTH as for rediss://: an ACL user on every node (`USER:PASSWORD@` in the URL)."""
    user = f"bot-{uuid.uuid4().hex[:6]}"
    for port in redis_cluster.ports:
        redis.Redis(port=port).execute_command("ACL", "SETUSER", user, "on", ">pw-4c1d",
                                               "~*", "+@all")
    try:
        url = redis_cluster.url.replace("://", f"://{user}:pw-4c1d@")
        with cluster_store(redis_cluster, "ipb:auth") as plain:
            store = RedisStore(url, "ipb:auth")
            assert store.check() is None
            assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"})
            assert plain.get(plain.key("claim")) == "me"
        wrong = RedisStore(url.replace("pw-4c1d", "nope"), "ipb:auth")
        with pytest.raises(StoreAuthFailed, match="does not accept"):
            wrong.get(wrong.key("k"))
        assert "refused the bot's authentication" in (wrong.check() or "")
    finally:
        for port in redis_cluster.ports:
            redis.Redis(port=port).execute_command("ACL", "DELUSER", user)


def test_a_tls_cluster_with_a_private_ca_and_a_password(tmp_path: Path) -> None:
    """`rediss+cluster://:PASSWORD@HOST:PORT` with REDIS_CA_BUNDLE, as for rediss://: a one-node
    cluster (every slot) speaking only TLS, its cluster bus too, requiring AUTH. A plain
    `rediss://` URL to it is detected as well; without the CA it is unreachable, in words."""
    tls = make_tls_material(tmp_path / "tls")
    port, bus = _free_port(), _free_port()
    node = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
         "--tls-auth-clients", "no", "--tls-cert-file", str(tls.cert_path),
         "--tls-key-file", str(tls.key_path), "--tls-ca-cert-file", str(tls.ca_path),
         "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--requirepass", "s3cret-pw",
         "--cluster-config-file", str(tmp_path / "nodes.conf"), "--cluster-port", str(bus),
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        raw = redis.Redis(port=port, password="s3cret-pw", ssl=True,
                          ssl_ca_certs=str(tls.ca_path), decode_responses=True)
        wait_for(lambda: _answers(raw), 10, "the TLS node to start")
        raw.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        wait_for(lambda: "cluster_state:ok" in raw.execute_command("CLUSTER", "INFO"), 10,
                 "cluster_state:ok")
        raw.close()
        for url in (f"rediss+cluster://:s3cret-pw@127.0.0.1:{port}",
                    f"rediss://:s3cret-pw@127.0.0.1:{port}/0"):
            store = RedisStore(url, "ipb:tls", ca_bundle=str(tls.ca_path))
            assert store.hash_tagged and store.check() is None, url
            assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"})
            assert store.delete_if_equals(store.key("claim"), "me")
            store.delete(store.key("record"))
        untrusted = RedisStore(f"rediss+cluster://:s3cret-pw@127.0.0.1:{port}", "ipb:tls",
                               socket_timeout=1.0)
        assert "unreachable" in (untrusted.check() or "")
    finally:
        node.terminate()
        node.wait(5)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


def test_a_failover_is_followed(redis_cluster: RedisClusterForTests) -> None:
    """The primary holding a cluster's keys hands over to its replica (CLUSTER FAILOVER, as a
    managed Redis does for maintenance): the store, opened before, reads what it wrote and
    takes new claims on the new primary; then the roles are handed back."""
    with cluster_store(redis_cluster, "ipb:failover") as store:
        assert store.set_nx_hset(store.key("claim"), "me", store.key("record"), {"a": "1"})
        old = redis_cluster.node_of(store.key("claim"))
        old_port = int(old.rpartition(":")[2])
        replica_port = redis_cluster.add_replica(old_port)
        replica = redis.Redis(port=replica_port, decode_responses=True)
        primary = redis.Redis(port=old_port, decode_responses=True)
        try:
            replica.execute_command("CLUSTER", "FAILOVER")
            wait_for(lambda: replica.info("replication")["role"] == "master"
                     and primary.info("replication")["role"] == "slave", 15, "the failover")
            assert store.get(store.key("claim")) == "me"
            assert store.delete_if_equals(store.key("claim"), "me")
            assert store.set_nx_hset(store.key("claim"), "new", store.key("record"),
                                     {"b": "2"})
            assert replica.get(store.key("claim")) == "new"  # written on the new primary
            assert primary.info("replication")["master_port"] == replica_port
        finally:  # the session's cluster goes back to three primaries on its own ports
            wait_for(lambda: primary.info("replication").get("master_link_status") == "up",
                     15, "the old primary to sync")
            # TAKEOVER: the primaries voted for this shard's failover a moment ago and vote
            # again only after twice the node timeout
            primary.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
            wait_for(lambda: primary.info("replication")["role"] == "master", 15,
                     "the roles handed back")
            replica.close()
            primary.close()


def test_serve_with_a_bad_cluster_url_says_so_and_exits_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    for name, value in {"REDIS_URL": "redis+cluster://:pw-5e7a@127.0.0.1:7000/2",
                        "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s",
                        "SLACK_ALERT_CHANNEL": "#alerts",
                        "KUBECONFIG": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    said = capsys.readouterr().err
    assert "no database number (a Cluster has only database 0)" in said, said
    assert "pw-5e7a" not in said and "Traceback" not in said
