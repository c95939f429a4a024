"""Shared state: Redis when `REDIS_URL` is set, an in-process store otherwise.

Everything that decides "who posts" is one atomic Redis command (SET NX, HSETNX, SADD's
return value, a compare-and-delete script), so any number of replicas and restarts agree
without a coordinator. The in-process store implements the same primitives under a lock for a
single replica and for `make demo`; it warns that dedup is then per process.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import unquote

import redis
import redis.cluster
import redis.commands.core
import redis.connection
import redis.crc
import redis.sentinel

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The store did not do what was asked; nothing of that one command was applied.

    Listeners answer every StoreError in words (handlers/guard.py); the pipeline and the
    scheduled jobs keep their work and try again later.
    """


class StoreUnavailable(StoreError):
    """The store cannot be reached (down, timing out, read-only, loading); retry later."""


class StoreAuthFailed(StoreUnavailable):
    """Redis refused the bot's credentials (NOAUTH, WRONGPASS): nothing works until REDIS_URL
    carries the right password, so it is said as an error, in words, not as "unreachable"."""


class RedisUrlError(ValueError):
    """REDIS_URL (or REDIS_CA_BUNDLE with it) cannot be used as written: said in words at
    start and by check-config, before anything is asked of Redis."""


class StoreRefused(StoreError):
    """The store answered with an error for this command (e.g. WRONGTYPE: a key of another
    type): a bug or a crafted key, never a reason to show a traceback."""


#: Redis error replies that mean "not now" rather than "not this": failover, loading, memory.
_TRANSIENT_REPLIES = ("LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM", "BUSY",
                      "NOREPLICAS", "READONLY")
_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{2,}")


def _error_code(exc: Exception) -> str:
    """The reply's error code (WRONGTYPE, MASTERDOWN...), never the command or its data:
    redis-py puts pipeline errors after "Command # n (ARGS) of pipeline caused error: "."""
    text = str(exc).rpartition("caused error: ")[2]
    match = _ERROR_CODE.match(text)
    return match.group(0) if match else type(exc).__name__


#: Added to a store's root prefix for the keys every cluster shares (see `Store.fleet`).
FLEET_SUFFIX = "-fleet"


class Store(ABC):
    """The primitives incidents, approvals and the watcher need; each one is atomic."""

    prefix: str
    #: Redis Cluster (`RedisStore` on a cluster): keys are hash-tagged so that every key used
    #: together shares a hash slot (see `key`). False everywhere else, so a standalone or
    #: Sentinel install keeps exactly the key names it always had (open incidents survive an
    #: upgrade instead of being posted again).
    hash_tagged: bool = False

    def key(self, *parts: str) -> str:
        """`<prefix>:<part>:…`. With `hash_tagged` the prefix carries a Redis Cluster hash tag:
        `ipb:{prod-eu}:…` for a cluster's keys (the part after the first colon), `{ipb-fleet}:…`
        for the fleet's (a prefix without a colon is tagged whole). Every key of one prefix
        then lives in one slot, so the multi-key scripts and MULTI/EXEC (a claim and its
        record) work on a Cluster, while different clusters' keys spread over the nodes."""
        return ":".join((self._tagged_prefix() if self.hash_tagged else self.prefix, *parts))

    def _tagged_prefix(self) -> str:
        root, colon, rest = self.prefix.partition(":")
        return f"{root}:{{{rest}}}" if colon and rest else f"{{{self.prefix.rstrip(':')}}}"

    def of_cluster(self, cluster: str) -> Store:
        """The same store under another cluster's prefix (`<root>:<cluster>`): what the bus
        reads to find which cluster holds a button's incident. Works from a fleet view too."""
        view = copy.copy(self)
        view.prefix = f"{self.prefix.split(':', 1)[0].removesuffix(FLEET_SUFFIX)}:{cluster}"
        return view

    def fleet(self) -> Store:
        """The same store (one connection, one memory) under the fleet prefix: keys every
        cluster's agent shares (the request bus, presence, shared causes). A cluster's own keys
        are `ipb:<CLUSTER_NAME>:…` and the fleet's `ipb-fleet:…` (`ipb:{<CLUSTER_NAME>}:…` and
        `{ipb-fleet}:…` on a Redis Cluster: see `key`), so no cluster name reaches a fleet
        prefix. The fleet prefix is derived from the part before the first colon, so stores
        under another root (`t-1a2b:prod-eu`, `t-1a2b:prod-us`: a test's) share a fleet of
        their own and never see a production fleet's keys, or another test's."""
        root = self.prefix.split(":", 1)[0]
        if root.endswith(FLEET_SUFFIX):  # already a fleet view: the same fleet
            return self
        view = copy.copy(self)
        view.prefix = f"{root}{FLEET_SUFFIX}"
        return view

    @abstractmethod
    def get(self, name: str) -> str | None: ...

    @abstractmethod
    def put(self, name: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    def set_nx(self, name: str, value: str, ttl: float | None = None) -> bool:
        """Set only if absent; True if this call set it (the claim primitive)."""

    @abstractmethod
    def delete(self, *names: str) -> None: ...

    @abstractmethod
    def delete_if_equals(self, name: str, value: str) -> bool:
        """Delete only if the value is still `value` (release a claim we own)."""

    @abstractmethod
    def expire(self, name: str, ttl: float) -> None: ...

    @abstractmethod
    def hset(self, name: str, mapping: Mapping[str, str], ttl: float | None = None) -> None:
        """Set fields; with `ttl`, set the key's expiry in the same atomic step (a record
        without its expiry would outlive everything that refers to it)."""

    @abstractmethod
    def set_nx_hset(self, name: str, value: str, record: str, mapping: Mapping[str, str],
                    ttl: float | None = None) -> bool:
        """Claim `name` (SET NX) and, only if this call got it, write `mapping` into the hash
        `record` (expiry `ttl`), atomically: a claim is never taken without its record.
        True if this call took the claim."""

    @abstractmethod
    def hsetnx(self, name: str, field: str, value: str) -> bool: ...

    def hsetnx_many(self, name: str, mapping: Mapping[str, str]) -> list[bool]:
        """HSETNX of each field, in one round trip where the store allows; which were set."""
        return [self.hsetnx(name, field, value) for field, value in mapping.items()]

    @abstractmethod
    def hincrby(self, name: str, field: str, amount: int = 1) -> int: ...

    @abstractmethod
    def hgetall(self, name: str) -> dict[str, str]: ...

    @abstractmethod
    def hmget(self, name: str, *fields: str) -> list[str | None]:
        """The values of `fields` in order (None where absent): one read for the few fields a
        caller knows, where `hgetall` would read a hash that may hold thousands."""

    @abstractmethod
    def hgetall_cut(self, name: str, max_fields: int, limit: int) -> dict[str, str]:
        """At most `max_fields` fields of the hash (which ones, when it holds more, is Redis's
        scan order), names and values cut to `limit` bytes by the server: a bounded read of a
        hash every agent (and anyone else) writes, such as the fleet's shared-cause index."""

    @abstractmethod
    def hmget_cut(self, name: str, fields: Sequence[str], limit: int) -> list[str | None]:
        """`hmget`, each value cut to its first `limit` bytes by the server: a bounded read of
        a hash anyone may write (the fleet's presence), where one 1 MB value would otherwise
        cross the wire on every read."""

    @abstractmethod
    def hdel(self, name: str, *fields: str) -> None: ...

    @abstractmethod
    def sadd(self, name: str, *members: str) -> int:
        """Add members; returns how many were new."""

    @abstractmethod
    def srem(self, name: str, *members: str) -> int: ...

    @abstractmethod
    def smembers(self, name: str) -> set[str]: ...

    @abstractmethod
    def zadd_trimmed(self, name: str, member: str, score: float, *, keep_from: float,
                     ttl: float | None = None) -> None:
        """Add `member` at `score` to the sorted set `name` and drop every member scored below
        `keep_from`, atomically (a bounded history: a record per event, trimmed by age in the
        same step that adds to it). With `ttl`, the whole set expires that long after its
        last addition."""

    @abstractmethod
    def zrange_by_score(self, name: str, low: float, high: float = float("inf"), *,
                        newest: int | None = None) -> list[tuple[str, float]]:
        """(member, score) of every member scored within [low, high], lowest score first;
        with `newest`, only that many of the highest-scored (a bounded read of a set anyone
        may add to)."""

    @abstractmethod
    def zrem(self, name: str, *members: str) -> int:
        """Remove members from a sorted set (an index entry whose work is done); how many were
        there. The last one removed removes the key, as in Redis."""

    @abstractmethod
    def ping(self) -> bool: ...

    # -- claims -----------------------------------------------------------------------------

    def claim(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lock `name` for `ttl` seconds if nobody holds it."""
        return self.set_nx(self.key("lock", name), owner, ttl)

    def release(self, name: str, owner: str) -> None:
        self.delete_if_equals(self.key("lock", name), owner)

    def take_turn(self, job: str, period: float, owner: str,
                  now: float | None = None) -> bool:
        """Whether `owner` runs `job` in the current period (`now // period`): the first
        replica to ask in a period gets it, every other gets False. The turn is a key per
        period, not a held lock, so a run that crashes or hangs cannot block the next period
        (its key simply belongs to a period that has passed; it expires after two)."""
        now = time.time() if now is None else now
        turn = str(int(now // period))
        return self.set_nx(self.key("turn", job, turn), owner, ttl=2 * period)


_COMPARE_AND_DELETE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# KEYS: claim, record. ARGV: claim value, ttl ms (0 = none), field, value, field, value...
# Types are checked before anything is written, so a WRONGTYPE cannot leave half a write.
_CLAIM_AND_RECORD = """
local t = redis.call('type', KEYS[2])['ok']
if t ~= 'none' and t ~= 'hash' then return redis.error_reply('WRONGTYPE record') end
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('set', KEYS[1], ARGV[1])
redis.call('hset', KEYS[2], unpack(ARGV, 3))
if tonumber(ARGV[2]) > 0 then
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('pexpire', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS: sorted set. ARGV: score, member, "(keep_from", ttl ms (0 = none). The type is checked
# before anything is written (a WRONGTYPE key gets no expiry either).
#: Lua: up to ARGV[1] fields of a hash (HSCAN, stopping there), names and values cut to
#: ARGV[2] bytes (`Store.hgetall_cut`)
_HGETALL_CUT = """
local out, n, cursor = {}, 0, '0'
local most, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
repeat
  local page = redis.call('hscan', KEYS[1], cursor, 'COUNT', 100)
  cursor = page[1]
  local kv = page[2]
  for i = 1, #kv, 2 do
    if n >= most then return out end
    out[#out + 1] = string.sub(kv[i], 1, limit)
    out[#out + 1] = string.sub(kv[i + 1], 1, limit)
    n = n + 1
  end
until cursor == '0'
return out
"""

#: Lua: HMGET with each value cut to ARGV[1] bytes on the server (`Store.hmget_cut`)
_HMGET_CUT = """
local out = {}
for i = 2, #ARGV do
  local v = redis.call('hget', KEYS[1], ARGV[i])
  if v then out[i - 1] = string.sub(v, 1, tonumber(ARGV[1])) else out[i - 1] = false end
end
return out
"""

_ADD_TRIMMED = """
local t = redis.call('type', KEYS[1])['ok']
if t ~= 'none' and t ~= 'zset' then return redis.error_reply('WRONGTYPE history') end
redis.call('zadd', KEYS[1], ARGV[1], ARGV[2])
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('pexpire', KEYS[1], ARGV[4]) end
return 1
"""


def _sentinel_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """The primary Sentinel names, for `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:
    PORT...]/MASTER[/DB]` (`rediss+sentinel://` for TLS to the primary). redis-py has no URL
    for Sentinel; this one follows the convention of other clients (one variable, REDIS_URL,
    as for every other Redis). The password is the primary's; the sentinels are asked without
    one. Every command asks the sentinels where the primary is after a failover."""
    scheme, _, rest = url.partition("://")
    userinfo, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    parts = [unquote(p) for p in path.split("/") if p]
    if not hosts or not parts:
        raise RedisUrlError("a Sentinel REDIS_URL is redis+sentinel://:PASSWORD@HOST:PORT,"
                         "HOST:PORT/MASTER_NAME/DB")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        sentinels.append((name or host.strip(), int(port) if port else 26379))
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    db = int(parts[1]) if len(parts) > 1 else 0
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    if scheme.startswith("rediss"):
        options = {**options, "ssl": True}
    sentinel = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_options,
                                       **sentinel_options)
    return sentinel.master_for(parts[0], db=db, username=unquote(username) or None,
                               password=unquote(password) or None, **options)


#: the REDIS_URL schemes the bot opens (README "Supported Redis")
SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster",
           "rediss+cluster")

_CLUSTER_URL = ("a Redis Cluster REDIS_URL is redis+cluster://[[USER]:PASSWORD@]HOST:PORT"
                "[,HOST:PORT...] (rediss+cluster:// for TLS): one or more of the cluster's "
                "nodes, no database number (a Cluster has only database 0)")

_OPENED_AS_SINGLE = (
    "REDIS_URL points at a Redis Cluster, but it did not answer when the bot opened it, so "
    "Cluster mode could not be detected and the bot talks to it as to a single server (which "
    "follows no MOVED redirection): restart the bot once Redis answers, or write the URL as "
    "redis+cluster://HOST:PORT (rediss+cluster:// for TLS) so Cluster mode never depends on "
    "detection")


def _says_cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server behind a plain URL runs in Cluster mode (`INFO cluster`), e.g. a
    managed Redis's configuration endpoint. False when it cannot be asked (down, INFO
    disabled): the store then talks to one server and `cluster_mode_problem` says so later
    if that was wrong."""
    try:
        info = client.info("cluster")
    except redis.exceptions.ResponseError as exc:  # a URL's /DB: SELECT refused at connect
        return "cluster mode" in str(exc)
    except redis.exceptions.RedisError:
        return False
    return str(info.get("cluster_enabled", "0")) in ("1", "True")


class ClusterClient:
    """redis-py's `RedisCluster`, opened on first use.

    `RedisCluster()` asks a node for the slot map as it is built and fails if none answers; a
    Redis that is down while the bot starts must instead be waited out, as with one server
    (the pipeline pauses, /readyz says so). Until a node answers, every call raises
    redis-py's ConnectionError; once open, the client follows MOVED/ASK and refreshes the
    slot map after a failover itself. Its own errors that are not `RedisError`s
    (`RedisClusterException`: no node reachable, a slot not covered) leave as ConnectionError
    or ResponseError, so callers that handle redis-py's errors (the bus) handle these too."""

    def __init__(self, seeds: list[tuple[str, int]], options: dict[str, Any]) -> None:
        self.seeds = seeds
        self.options = options
        self.where = (seeds[0][0], seeds[0][1], bool(options.get("password")))
        self._client: redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()

    def _open(self) -> redis.cluster.RedisCluster:
        with self._lock:
            if self._client is None:
                nodes = [redis.cluster.ClusterNode(host, port) for host, port in self.seeds]
                try:
                    self._client = redis.cluster.RedisCluster(startup_nodes=nodes,
                                                              **self.options)
                except redis.exceptions.RedisClusterException as exc:
                    raise _as_redis_error(exc) from None
            return self._client

    def get_encoder(self) -> Any:
        """Scripts are registered before any node answers (the encoder is the options')."""
        return redis.connection.Encoder("utf-8", "strict", True)

    def register_script(self, script: str) -> Any:
        return redis.commands.core.Script(cast(Any, self), script)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __getattr__(self, name: str) -> Any:
        """The client's attribute; its methods raise redis-py's errors only. While no node
        answers, a method that raises ConnectionError when called (`store._run(client.get,
        ...)` looks the method up before the call it guards)."""
        try:
            client = self._open()
        except redis.exceptions.ConnectionError as exc:
            failure = exc

            def unreachable(*_args: Any, **_kwargs: Any) -> Any:
                raise failure

            return unreachable
        attr = getattr(client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except redis.exceptions.RedisClusterException as exc:
                raise _as_redis_error(exc) from None

        return call


def _as_redis_error(exc: redis.exceptions.RedisClusterException) -> redis.exceptions.RedisError:
    """redis-py's cluster errors that are not RedisErrors, as the RedisError they mean: the
    nodes' own error when there is one (a refused AUTH stays an AuthenticationError, said
    as such, not as "unreachable")."""
    if isinstance(exc.__cause__, redis.exceptions.RedisError):
        return exc.__cause__
    if isinstance(exc, redis.exceptions.CrossSlotTransactionError):
        return redis.exceptions.ResponseError(f"CROSSSLOT {exc}")
    return redis.exceptions.ConnectionError(f"Redis Cluster: {type(exc).__name__}")


def _cluster_store_error(exc: redis.exceptions.RedisClusterException) -> StoreError:
    """A cluster error raised past `ClusterClient` (a pipeline's), as a StoreError."""
    if isinstance(exc, redis.exceptions.CrossSlotTransactionError):
        return StoreRefused("Redis refused the command (CROSSSLOT)")
    return StoreUnavailable(f"Redis Cluster is unreachable: {type(exc).__name__}")


def _cluster_client(url: str, options: dict[str, Any]) -> ClusterClient:
    """The client for `redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]` (`rediss+
    cluster://` for TLS, with REDIS_CA_BUNDLE as for rediss://). Any node will do as a seed
    (the client learns the others from it); listing several lets the bot start while one is
    down. redis-py has no URL with several hosts; this one follows the Sentinel URL's form."""
    scheme, _, rest = url.partition("://")
    userinfo, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    if path.strip("/") not in ("", "0") or "?" in location:
        raise RedisUrlError(_CLUSTER_URL)
    seeds = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise RedisUrlError(f"{_CLUSTER_URL}; each node is HOST:PORT")
        seeds.append((unquote(name.strip("[]")), int(port)))
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    options = {k: v for k, v in options.items() if k != "health_check_interval"}
    options.update(username=unquote(username) or None, password=unquote(password) or None)
    if scheme.lower().startswith("rediss"):
        options["ssl"] = True
    return ClusterClient(seeds, options)


def _cluster_client_from_url(url: str, options: dict[str, Any]) -> ClusterClient:
    """A plain `redis://` / `rediss://` URL whose server said `cluster_enabled:1`: the same
    node, user, password and TLS, through the cluster client."""
    parsed = redis.connection.parse_url(url)
    if parsed.get("db", 0) != 0:
        raise RedisUrlError(f"REDIS_URL names database {parsed['db']}, but it points at a Redis "
                         "Cluster, which has only database 0: drop the /" f"{parsed['db']}")
    options = {k: v for k, v in options.items() if k != "health_check_interval"}
    for name in ("username", "password"):
        options[name] = parsed.get(name)
    if parsed.get("connection_class") is redis.connection.SSLConnection:
        options["ssl"] = True
    return ClusterClient([(str(parsed["host"]), int(parsed.get("port", 6379)))], options)


def _check_tag(store: Store) -> None:
    """Every key of the store's prefix must share one slot (a cluster name beginning with `}`
    would make an empty hash tag, which Redis ignores): said at start, not at the first
    claim."""
    if redis.crc.key_slot(store.key("a").encode()) != redis.crc.key_slot(store.key("b").encode()):
        raise RedisUrlError(f"the store prefix {store.prefix!r} cannot be a Redis Cluster hash "
                         "tag: CLUSTER_NAME must not begin with '}'")


def _scheme(url: str) -> str:
    """`redis`, `rediss+cluster`...: what comes before `://` (lower case), never the rest
    (which may carry a password)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


class RedisStore(Store):
    """Redis-backed store: safe across replicas and restarts.

    One store for every way Redis is offered (README "Supported Redis"): a single server
    (`redis://`, `rediss://`), Sentinel (`redis+sentinel://`) and Redis Cluster
    (`redis+cluster://`, or a plain URL whose server says `cluster_enabled:1`). On a Cluster
    the client is redis-py's `RedisCluster` (it follows MOVED/ASK and failovers) and the keys
    carry hash tags (`Store.hash_tagged`)."""

    def __init__(self, url: str, prefix: str = "ipb", socket_timeout: float = 2.0,
                 ca_bundle: str | None = None) -> None:
        self.prefix = prefix
        scheme = _scheme(url)
        if scheme not in SCHEMES:
            raise RedisUrlError(
                f"REDIS_URL starts with {scheme + '://' if scheme else 'no scheme'}, which is "
                f"not a Redis URL the bot knows: use one of {', '.join(s + '://' for s in SCHEMES)}"
                " (README: Supported Redis)")
        tls: dict[str, Any] = {}
        if ca_bundle:  # REDIS_CA_BUNDLE: a rediss:// server signed by a private CA
            if not scheme.startswith("rediss"):
                raise RedisUrlError("REDIS_CA_BUNDLE is set but REDIS_URL is not rediss:// "
                                 "(TLS): use rediss://host:port to reach Redis over TLS")
            tls["ssl_ca_certs"] = ca_bundle
        # encoding_errors: every value read is text, and anyone may write bytes that are not
        # UTF-8 into the shared Redis (a bus entry, a presence field, a cluster name); strict
        # decoding raised UnicodeDecodeError (not a RedisError) out of the whole read, so one
        # such entry stopped a stream's consumer and every routing decision for good
        options: dict[str, Any] = {"decode_responses": True, "encoding_errors": "replace",
                                   "socket_timeout": socket_timeout,
                                   "socket_connect_timeout": socket_timeout,
                                   "health_check_interval": 30, **tls}
        #: (host, port) said in an AUTH error, and whether REDIS_URL carries a password
        self._where: tuple[str, int, bool] | None = None
        cluster: ClusterClient | None = None
        if scheme.endswith("+cluster"):
            cluster = _cluster_client(url, options)
        elif scheme.endswith("+sentinel"):
            self.client = _sentinel_client(url, options)
        else:
            self.client = redis.Redis.from_url(url, **options)
            if _says_cluster_enabled(self.client):  # e.g. a managed Redis's cluster endpoint
                self.client.close()
                cluster = _cluster_client_from_url(url, options)
        if cluster is not None:
            # RedisCluster answers the same commands as redis.Redis (the bus calls XADD,
            # XREADGROUP... on it): typed as one so callers need not care which it is
            self.client = cast(redis.Redis, cluster)
            self._where = cluster.where
            self.hash_tagged = True
            _check_tag(self)
        #: the client is a single-server one (standalone or Sentinel): a Cluster seen through
        #: it later is a mistake to say (`cluster_mode_problem`)
        self.single = cluster is None
        self._auth_logged_at = -3600.0
        self._cad = self.client.register_script(_COMPARE_AND_DELETE)
        self._claim_and_record = self.client.register_script(_CLAIM_AND_RECORD)
        self._add_trimmed = self.client.register_script(_ADD_TRIMMED)
        self._hmget_cut = self.client.register_script(_HMGET_CUT)
        self._hgetall_cut = self.client.register_script(_HGETALL_CUT)

    def _auth_failed(self, exc: redis.exceptions.AuthenticationError) -> StoreAuthFailed:
        """The words for a refused AUTH, logged as an error once per minute (every call
        fails the same way until the password is fixed)."""
        code = _error_code(exc)
        if self._where is not None:
            host, port, has_password = self._where
            address = f"{host}:{port}"
        else:
            where = self.client.connection_pool.connection_kwargs
            address = f"{where.get('host')}:{where.get('port')}"
            has_password = bool(where.get("password"))
        why = ("REDIS_URL carries a password Redis does not accept" if has_password
               else "REDIS_URL carries no password and Redis requires one")
        problem = StoreAuthFailed(
            f"Redis at {address} refused the bot's "
            f"authentication ({code}): {why}; set REDIS_URL to redis://:PASSWORD@host:port/db "
            "with the password Redis requires (the bundled Redis: the imagepull-bot-redis "
            "Secret's `password`)")
        now = time.monotonic()
        if now - self._auth_logged_at > 60:
            self._auth_logged_at = now
            log.error("%s", problem)
        return problem

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Every Redis call goes through here: whatever redis-py raises leaves as a
        StoreError (never a redis exception, never a traceback in a listener)."""
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.AuthenticationError as exc:  # a ConnectionError subclass
            raise self._auth_failed(exc) from None
        except redis.exceptions.ConnectionError as exc:
            raise StoreUnavailable(f"Redis is unreachable: {type(exc).__name__}") from None
        except redis.exceptions.TimeoutError:
            raise StoreUnavailable("Redis timed out") from None
        except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError) as exc:
            raise StoreUnavailable(f"Redis takes no writes now ({type(exc).__name__})") from None
        except redis.exceptions.ResponseError as exc:
            code = _error_code(exc)
            if isinstance(exc, redis.exceptions.AskError) and self.single:  # MOVED too
                raise StoreRefused(_OPENED_AS_SINGLE) from None
            if isinstance(exc, (redis.exceptions.ClusterDownError,
                                redis.exceptions.TryAgainError)):  # parsed: no code left
                raise StoreUnavailable(f"Redis Cluster cannot serve now ({code})") from None
            if code in _TRANSIENT_REPLIES:
                raise StoreUnavailable(f"Redis cannot serve now ({code})") from None
            raise StoreRefused(f"Redis refused the command ({code})") from None
        except redis.exceptions.RedisError as exc:
            raise StoreRefused(f"Redis client error: {type(exc).__name__}") from None
        except redis.exceptions.RedisClusterException as exc:  # not a RedisError
            raise _cluster_store_error(exc) from None

    @staticmethod
    def _px(ttl: float | None) -> int | None:
        return None if ttl is None else max(1, int(ttl * 1000))

    def get(self, name: str) -> str | None:
        value = self._run(self.client.get, name)
        return None if value is None else str(value)

    def put(self, name: str, value: str, ttl: float | None = None) -> None:
        self._run(self.client.set, name, value, px=self._px(ttl))

    def set_nx(self, name: str, value: str, ttl: float | None = None) -> bool:
        return bool(self._run(self.client.set, name, value, nx=True, px=self._px(ttl)))

    def delete(self, *names: str) -> None:
        if names:
            self._run(self.client.delete, *names)

    def delete_if_equals(self, name: str, value: str) -> bool:
        return bool(self._run(self._cad, keys=[name], args=[value]))

    def expire(self, name: str, ttl: float) -> None:
        self._run(self.client.pexpire, name, self._px(ttl))

    def hset(self, name: str, mapping: Mapping[str, str], ttl: float | None = None) -> None:
        if not mapping:
            return
        if ttl is None:
            self._run(self.client.hset, name, mapping=dict(mapping))
            return

        fields: dict[Any, Any] = dict(mapping)
        expiry = max(1, int(ttl * 1000))

        def write() -> None:
            with self.client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: both or none
                pipe.hset(name, mapping=fields)
                pipe.pexpire(name, expiry)
                pipe.execute()

        self._run(write)

    def set_nx_hset(self, name: str, value: str, record: str, mapping: Mapping[str, str],
                    ttl: float | None = None) -> bool:
        flat = [item for pair in mapping.items() for item in pair]
        if not flat:
            raise ValueError("set_nx_hset needs at least one field")
        return bool(self._run(self._claim_and_record, keys=[name, record],
                              args=[value, self._px(ttl) or 0, *flat]))

    def hsetnx(self, name: str, field: str, value: str) -> bool:
        return bool(self._run(self.client.hsetnx, name, field, value))

    def hsetnx_many(self, name: str, mapping: Mapping[str, str]) -> list[bool]:
        if not mapping:
            return []
        items = list(mapping.items())

        def write() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:  # one round trip
                for field, value in items:
                    pipe.hsetnx(name, field, value)
                return list(pipe.execute())

        return [bool(done) for done in self._run(write)]

    def hincrby(self, name: str, field: str, amount: int = 1) -> int:
        return int(self._run(self.client.hincrby, name, field, amount))

    def hgetall(self, name: str) -> dict[str, str]:
        return dict(self._run(self.client.hgetall, name))

    def hmget(self, name: str, *fields: str) -> list[str | None]:
        return list(self._run(self.client.hmget, name, list(fields))) if fields else []

    def hgetall_cut(self, name: str, max_fields: int, limit: int) -> dict[str, str]:
        flat = self._run(self._hgetall_cut, keys=[name], args=[max(0, max_fields),
                                                                max(0, limit)])
        return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}

    def hmget_cut(self, name: str, fields: Sequence[str], limit: int) -> list[str | None]:
        if not fields:
            return []
        found = self._run(self._hmget_cut, keys=[name], args=[max(0, limit), *fields])
        return [None if value is None else str(value) for value in found]

    def hdel(self, name: str, *fields: str) -> None:
        if fields:
            self._run(self.client.hdel, name, *fields)

    def sadd(self, name: str, *members: str) -> int:
        return int(self._run(self.client.sadd, name, *members)) if members else 0

    def srem(self, name: str, *members: str) -> int:
        return int(self._run(self.client.srem, name, *members)) if members else 0

    def smembers(self, name: str) -> set[str]:
        return set(self._run(self.client.smembers, name))

    def zadd_trimmed(self, name: str, member: str, score: float, *, keep_from: float,
                     ttl: float | None = None) -> None:
        self._run(self._add_trimmed, keys=[name],
                  args=[repr(float(score)), member, f"({float(keep_from)!r}",
                        self._px(ttl) or 0])

    def zrange_by_score(self, name: str, low: float, high: float = float("inf"), *,
                        newest: int | None = None) -> list[tuple[str, float]]:
        top = "+inf" if high == float("inf") else repr(high)
        if newest is not None:
            found = self._run(self.client.zrevrangebyscore, name, top, repr(low), start=0,
                              num=newest, withscores=True)[::-1]
        else:
            found = self._run(self.client.zrangebyscore, name, repr(low), top, withscores=True)
        return [(str(member), float(score)) for member, score in found]

    def zrem(self, name: str, *members: str) -> int:
        return int(self._run(self.client.zrem, name, *members)) if members else 0

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.exceptions.AuthenticationError as exc:
            self._auth_failed(exc)  # logged: /readyz says "store unreachable", the log why
            return False
        except redis.exceptions.RedisError:
            return False

    def check(self) -> str | None:
        """None when Redis answers; otherwise why not, in words (check-config)."""
        try:
            self._run(self.client.ping)
        except StoreUnavailable as exc:
            return str(exc)
        except StoreRefused as exc:  # e.g. a Cluster node refusing the URL's /DB (SELECT)
            return self.cluster_mode_problem() or str(exc)
        return self.cluster_mode_problem()

    def cluster_mode_problem(self) -> str | None:
        """Why the bot cannot use this Redis as it opened it, else None: a Redis Cluster
        reached through a single-server client. That happens only when a plain `redis://` URL
        did not answer while the store was opened, so Cluster mode could not be detected; a
        client opened for one server follows no MOVED redirection, so the bot says so rather
        than fail the writes one by one."""
        if not self.single:
            return None
        return _OPENED_AS_SINGLE if _says_cluster_enabled(self.client) else None


class MemoryStore(Store):
    """The same primitives in one process (one replica, tests of pure logic, the demo).

    Memory behaves as Redis's does: a hash or set emptied by HDEL/SREM is gone (the bot's
    per-pod keys leave with their pods), and expired keys are swept every `SWEEP_EVERY`
    writes, not only when read again (Redis's active expiry)."""

    #: writes between two sweeps of expired keys (each sweep is one pass over the TTLs)
    SWEEP_EVERY = 1_024

    def __init__(self, prefix: str = "ipb", clock: Any = time.monotonic) -> None:
        self.prefix = prefix
        self._clock = clock
        self._data: dict[str, Any] = {}
        self._expires: dict[str, float] = {}
        self._lock = threading.RLock()
        self._writes = 0

    def __len__(self) -> int:
        """Keys held (expired ones not yet swept included)."""
        with self._lock:
            return len(self._data)

    def _written(self) -> None:
        """Count a write (lock held); sweep expired keys every SWEEP_EVERY of them."""
        self._writes += 1
        if self._writes % self.SWEEP_EVERY:
            return
        now = self._clock()
        for name in [n for n, deadline in self._expires.items() if deadline <= now]:
            self._data.pop(name, None)
            del self._expires[name]

    def _drop_if_empty(self, name: str) -> None:
        """An emptied hash or set no longer exists (lock held), as in Redis."""
        if name in self._data and not self._data[name]:
            del self._data[name]
            self._expires.pop(name, None)

    def _live(self, name: str) -> Any:
        deadline = self._expires.get(name)
        if deadline is not None and self._clock() >= deadline:
            self._data.pop(name, None)
            self._expires.pop(name, None)
        return self._data.get(name)

    def _typed(self, name: str, kind: type) -> Any:
        """The live value if absent or of `kind`; otherwise Redis's WRONGTYPE, as StoreRefused,
        so the in-process store fails the same way the real one does."""
        value = self._live(name)
        if value is not None and not isinstance(value, kind):
            raise StoreRefused("Redis refused the command (WRONGTYPE)")
        return value

    def _ttl(self, name: str, ttl: float | None) -> None:
        if ttl is None:
            self._expires.pop(name, None)
        else:
            self._expires[name] = self._clock() + ttl

    def get(self, name: str) -> str | None:
        with self._lock:
            value = self._typed(name, str)
            return None if value is None else str(value)

    def put(self, name: str, value: str, ttl: float | None = None) -> None:
        with self._lock:
            self._data[name] = value
            self._ttl(name, ttl)
            self._written()

    def set_nx(self, name: str, value: str, ttl: float | None = None) -> bool:
        with self._lock:
            if self._live(name) is not None:
                return False
            self.put(name, value, ttl)
            return True

    def delete(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._data.pop(name, None)
                self._expires.pop(name, None)

    def delete_if_equals(self, name: str, value: str) -> bool:
        with self._lock:
            if self._live(name) == value:
                self.delete(name)
                return True
            return False

    def expire(self, name: str, ttl: float) -> None:
        with self._lock:
            if self._live(name) is not None:
                self._ttl(name, ttl)

    def _hash(self, name: str) -> dict[str, str]:
        value = self._typed(name, dict)
        if value is None:
            value = self._data[name] = {}
        return value

    def hset(self, name: str, mapping: Mapping[str, str], ttl: float | None = None) -> None:
        with self._lock:
            self._hash(name).update(mapping)
            if ttl is not None:
                self._ttl(name, ttl)
            self._drop_if_empty(name)  # HSET with no field creates nothing
            self._written()

    def set_nx_hset(self, name: str, value: str, record: str, mapping: Mapping[str, str],
                    ttl: float | None = None) -> bool:
        with self._lock:
            self._typed(record, dict)
            if not self.set_nx(name, value, ttl):
                return False
            self.hset(record, mapping, ttl)
            return True

    def hsetnx(self, name: str, field: str, value: str) -> bool:
        with self._lock:
            fields = self._hash(name)
            if field in fields:
                return False
            fields[field] = value
            self._written()
            return True

    def hincrby(self, name: str, field: str, amount: int = 1) -> int:
        with self._lock:
            fields = self._hash(name)
            value = int(fields.get(field) or 0) + amount
            fields[field] = str(value)
            self._written()
            return value

    def hgetall(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._typed(name, dict) or {})

    def hmget(self, name: str, *fields: str) -> list[str | None]:
        with self._lock:
            values = self._typed(name, dict) or {}
            return [values.get(field) for field in fields]

    def hgetall_cut(self, name: str, max_fields: int, limit: int) -> dict[str, str]:
        def cut(text: str) -> str:
            return text.encode()[:max(0, limit)].decode("utf-8", "replace")

        items = list(self.hgetall(name).items())[:max(0, max_fields)]
        return {cut(k): cut(v) for k, v in items}

    def hmget_cut(self, name: str, fields: Sequence[str], limit: int) -> list[str | None]:
        found = self.hmget(name, *fields)
        return [None if v is None else v.encode()[:max(0, limit)].decode("utf-8", "replace")
                for v in found]

    def hdel(self, name: str, *fields: str) -> None:
        with self._lock:
            values = self._typed(name, dict) or {}
            for field in fields:
                values.pop(field, None)
            self._drop_if_empty(name)

    def _members(self, name: str) -> set[str]:
        value = self._typed(name, set)
        if value is None:
            value = self._data[name] = set()
        return value

    def sadd(self, name: str, *members: str) -> int:
        with self._lock:
            target = self._members(name)
            new = [m for m in members if m not in target]
            target.update(new)
            self._drop_if_empty(name)  # SADD with no member creates nothing
            self._written()
            return len(new)

    def srem(self, name: str, *members: str) -> int:
        with self._lock:
            target = self._typed(name, set) or set()
            gone = [m for m in members if m in target]
            target.difference_update(gone)
            self._drop_if_empty(name)
            return len(gone)

    def smembers(self, name: str) -> set[str]:
        with self._lock:
            return set(self._typed(name, set) or set())

    def zadd_trimmed(self, name: str, member: str, score: float, *, keep_from: float,
                     ttl: float | None = None) -> None:
        with self._lock:
            held = self._typed(name, _Scores)
            if held is None:
                held = self._data[name] = _Scores()
            held.scores[member] = float(score)
            for old in [m for m, at in held.scores.items() if at < keep_from]:
                del held.scores[old]
            if ttl is not None:
                self._ttl(name, ttl)
            self._drop_if_empty(name)
            self._written()

    def zrange_by_score(self, name: str, low: float, high: float = float("inf"), *,
                        newest: int | None = None) -> list[tuple[str, float]]:
        with self._lock:
            held = self._typed(name, _Scores) or _Scores()
            found = [(m, at) for m, at in held.scores.items() if low <= at <= high]
        ordered = sorted(found, key=lambda item: (item[1], item[0]))
        return ordered if newest is None else ordered[max(0, len(ordered) - newest):]

    def zrem(self, name: str, *members: str) -> int:
        with self._lock:
            held = self._typed(name, _Scores)
            if held is None:
                return 0
            gone = [m for m in members if held.scores.pop(m, None) is not None]
            self._drop_if_empty(name)
            return len(gone)

    def ping(self) -> bool:
        return True


class _Scores:
    """A sorted set of the in-process store (member → score; sorted when read). Not a dict,
    so a hash command on a sorted set's key fails with WRONGTYPE, as in Redis."""

    __slots__ = ("scores",)

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.scores)


def open_store(redis_url: str | None, prefix: str = "ipb",
               ca_bundle: str | None = None) -> Store:
    """RedisStore for a URL; otherwise MemoryStore, saying what that costs."""
    if redis_url:
        return RedisStore(redis_url, prefix, ca_bundle=ca_bundle)
    log.warning("REDIS_URL is not set: using an in-process store, so deduplication is per "
                "process and state is lost on restart; set REDIS_URL for production")
    return MemoryStore(prefix)


def members(values: Iterable[str]) -> list[str]:
    """Sorted list, for stable output from sets."""
    return sorted(values)
