"""The HTTP face of the scenario cluster: the Kubernetes REST + watch wire format.

Built on the stdlib ``ThreadingHTTPServer`` so it runs anywhere the bot runs (pytest, the demo,
a plain script) without an event loop: one thread per connection, watches are long-lived
chunked responses fed from a per-watch queue. ``SimCluster`` is the Python API; see
``bot.sim.__main__`` for the CLI.
"""

from __future__ import annotations

import base64
import builtins
import copy
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from bot.sim import patching, resources
from bot.sim.lifecycle import HTTPListener, LoopbackService
from bot.sim.resources import ResourceType
from bot.sim.scenario import DEFAULT_VERSION, Scenario, load_scenario, scenario_paths
from bot.sim.selectors import SelectorError, compile_selectors
from bot.sim.store import DROP_ABRUPT, DROP_CLEAN, ApiError, Change, Obj, Store, now_rfc3339

log = logging.getLogger(__name__)

DEFAULT_USER = "system:serviceaccount:imagepull-bot:imagepull-bot"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
_TRUE = ("true", "True", "1")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, for assertions like "exactly one PATCH"."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any  # parsed JSON when the body was JSON, else text, else None
    user_agent: str | None
    at: float  # time.time()

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class _Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool  # legacy /api/v1/watch/... form


def _parse_forbidden(entries: Iterable[str]) -> set[tuple[str, str]]:
    """``"secrets"`` -> every verb; ``"get,list secrets"`` / ``"patch deployments"``."""
    rules: set[tuple[str, str]] = set()
    for entry in entries:
        parts = str(entry).split()
        if len(parts) == 1:
            rules.add(("*", parts[0]))
        elif len(parts) == 2:
            for verb in parts[0].split(","):
                rules.add((verb, parts[1]))
        else:
            raise ValueError(f"forbidden entry must be 'resource' or 'verbs resource': {entry!r}")
    return rules


class SimCluster(LoopbackService):
    """A fake apiserver loaded from scenarios, reachable by any Kubernetes client.

    Usage::

        with SimCluster(["tag-not-found"]) as sim:
            kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
            api = kubernetes.config.new_client_from_config(str(kubeconfig))
            ...
            sim.bump_event("shop", "web-7d9f8b6c5d-x2x9q.183c1b2a5e0f4a01")
            assert len(sim.requests_matching("PATCH")) == 1
    """

    def __init__(
        self,
        scenarios: Iterable[Path | str | Scenario] = (),
        objects: Iterable[Obj] = (),
        *,
        kubernetes_version: str | None = None,
        forbidden: Iterable[str] = (),
        token: str | None = None,
        user: str = DEFAULT_USER,
        host: str = "127.0.0.1",
        port: int = 0,
        history_limit: int = 1000,
        bookmark_interval: float = 60.0,
        default_watch_timeout: float = 1800.0,
        too_large_rv_wait: float = 3.0,
    ) -> None:
        self.store = Store(history_limit=history_limit)
        self.scenarios: list[Scenario] = []
        self.kubernetes_version = DEFAULT_VERSION
        self.token: str | None = None
        self.user = user
        self.host, self._port = host, port
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        #: how long a watch from an RV beyond the store's waits for it before the 504 (the
        #: cacher's 3 s)
        self.too_large_rv_wait = too_large_rv_wait
        self.requests: list[RecordedRequest] = []
        self._forbidden: set[tuple[str, str]] = set()
        self._rbac: list[dict[str, Any]] | None = None
        #: (verb, API group, resource) of every resource request, and those RBAC refused
        self.access_log: list[tuple[str, str, str]] = []
        self.denied: list[tuple[str, str, str]] = []
        #: Role rules by namespace (`enforce_rbac(namespaced=...)`)
        self._rbac_namespaced: dict[str, list[dict[str, Any]]] = {}
        #: (namespace or None for cluster-wide, verb, API group, resource) of every resource
        #: request: which namespace's Role a request needed
        self.accesses: list[tuple[str | None, str, str, str]] = []
        self._latency: list[tuple[re.Pattern[str], float]] = []
        self._requests_lock = threading.Lock()
        #: serves, refuses (``down(refuse=True)``: the port stays bound but not listening, so
        #: connections are refused and nobody else can take the port before ``up()``), stops
        self._listener = HTTPListener(host, "sim-cluster")
        self._down_503 = False
        self._up_timer: threading.Timer | None = None
        #: API Priority and Fairness rejections still to hand out: [count, Retry-After, path]
        self._throttles: list[tuple[list[int], int, re.Pattern[str] | None]] = []

        items: list[Path | Scenario] = []
        for s in scenarios:
            items.extend([s] if isinstance(s, Scenario) else scenario_paths([s]))
        for item in items:
            self.load(item if isinstance(item, Scenario) else load_scenario(item))
        for obj in objects:
            self.apply(obj)
        if kubernetes_version:
            self.kubernetes_version = kubernetes_version
        if token:
            self.token = token
        self._forbidden |= _parse_forbidden(forbidden)

    # -- scenario / state ----------------------------------------------------------------------
    def load(self, scenario: Scenario) -> None:
        """Add a scenario's objects and settings (later scenarios win on the same object)."""
        self.scenarios.append(scenario)
        if scenario.kubernetes_version:
            self.kubernetes_version = scenario.kubernetes_version
        if scenario.token:
            self.token = scenario.token
        self._forbidden |= _parse_forbidden(scenario.forbidden)
        for obj in scenario.objects:
            self.apply(obj)

    @staticmethod
    def resource(kind_or_plural: str) -> ResourceType:
        """Resolve ``"Pod"``, ``"pods"``, ``"deployments.apps"`` or ``"deploy"`` to a type."""
        name = kind_or_plural.split(".")[0]
        for rt in resources.RESOURCE_TYPES:
            if name in (rt.plural, rt.kind, rt.singular) or name in rt.short_names:
                return rt
        raise KeyError(f"unknown resource {kind_or_plural!r}")

    def apply(self, obj: Obj) -> Obj:
        """Create the object, or replace it if it exists (ADDED / MODIFIED to watchers)."""
        rt = resources.for_object(obj)
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ("default" if rt.namespaced else None)
        body = copy.deepcopy(obj)
        body.setdefault("metadata", {}).pop("resourceVersion", None)
        try:
            return self.store.create(body, rt, ns)
        except ApiError as exc:
            if exc.code != 409:
                raise
        return self.store.replace(rt, ns, meta["name"], body)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        return self.store.get(self.resource(kind), namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        return self.store.list(self.resource(kind), namespace)[0]

    def patch(
        self,
        kind: str,
        name: str,
        body: Any,
        namespace: str | None = None,
        content_type: str = patching.STRATEGIC_MERGE_PATCH,
    ) -> Obj:
        """Patch from the test side, exactly as a client PATCH would (MODIFIED if changed)."""
        return self.store.patch(self.resource(kind), namespace, name, content_type, body)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        return self.store.delete(self.resource(kind), namespace, name)

    def bump_event(
        self,
        namespace: str,
        name: str,
        count: int | None = None,
        last_timestamp: str | None = None,
        message: str | None = None,
    ) -> Obj:
        """The kubelet repeating an event: count+1 (or ``count``), new lastTimestamp, MODIFIED."""

        def bump(ev: Obj) -> Obj:
            ev["count"] = count if count is not None else int(ev.get("count") or 1) + 1
            ev["lastTimestamp"] = last_timestamp or now_rfc3339()
            if message is not None:
                ev["message"] = message
            return ev

        return self.store.mutate(self.resource("events"), namespace, name, bump)

    def drop_watches(self, abrupt: bool = False) -> int:
        """End all open watches. Clean: the stream ends (like the apiserver's timeout); the
        Python ``Watch`` helper reconnects from its last RV. Abrupt: the socket is cut mid-chunk
        (like a load balancer reset); clients see a protocol error."""
        return self.store.drop_watches(abrupt=abrupt)

    def compact(self) -> int:
        """Forget the change history: watching from any older RV now yields 410 Expired."""
        return self.store.compact()

    def wait_for_watches(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``count`` watches are open (to sequence tests without sleeps)."""
        deadline = time.monotonic() + timeout
        while len(self.store.watchers) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.store.watchers)} watches open, wanted {count}")
            time.sleep(0.01)

    def forbid(self, resource: str, verbs: Iterable[str] = ("*",)) -> None:
        """Deny verbs on a resource from now on (403 like RBAC), e.g. ``forbid("secrets")``."""
        self._forbidden |= {(verb, self.resource(resource).plural) for verb in verbs}

    def allow(self, resource: str) -> None:
        plural = self.resource(resource).plural
        self._forbidden = {rule for rule in self._forbidden if rule[1] != plural}

    def set_latency(self, path_pattern: str, seconds: float) -> None:
        """Delay every request whose path matches the regex (``re.search``) by ``seconds``."""
        self._latency.append((re.compile(path_pattern), seconds))

    def throttle(self, count: int = 1, retry_after: int = 1, path: str | None = None) -> None:
        """Reject the next ``count`` requests (whose path matches the regex, if given) as API
        Priority and Fairness does when a priority level's queues are full: ``429`` with a
        ``Retry-After`` header (whole seconds) and a plain-text body, not a Status
        (kubernetes.io/docs/concepts/cluster-administration/flow-control/: "rejected with
        HTTP 429 (Too Many Requests)"; the apiserver's filters/maxinflight.go
        tooManyRequests writes the header and "Too many requests, please try again
        later."). The requests are still recorded."""
        with self._requests_lock:
            self._throttles.append(([count], retry_after, re.compile(path) if path else None))

    def _throttled(self, path: str) -> int | None:
        """The Retry-After of an APF rejection due for this request, else None."""
        with self._requests_lock:
            for left, retry_after, pattern in self._throttles:
                if left[0] > 0 and (pattern is None or pattern.search(path)):
                    left[0] -= 1
                    return retry_after
        return None

    def clear_latency(self) -> None:
        self._latency.clear()

    def requests_matching(
        self, method: str | None = None, path: str | None = None
    ) -> builtins.list[RecordedRequest]:
        """Recorded requests by method and/or path regex (``re.search``)."""
        with self._requests_lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or re.search(path, r.path))
            ]

    def clear_requests(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SimCluster:
        """Serve in a background thread; returns self so ``SimCluster(...).start()`` chains."""
        if self._listener.serving or self._listener.refusing:
            raise RuntimeError("already started")
        self._listener.serve(self._handler(), self._port)
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection: keep-alive connections in a client's
        pool and open watches end now, as when an apiserver process dies. (A server that
        only closes its listening socket goes on answering on connections already open, and
        an "outage" test would then test nothing.)"""
        self._cancel_up_timer()
        self._listener.close()
        self._down_503 = False

    def down(self, refuse: bool = False, seconds: float | None = None) -> None:
        """Simulate an outage until ``up()`` (or for ``seconds``, then up by itself).

        Default: every request gets ``503 ServiceUnavailable`` (an apiserver whose etcd is
        gone; the requests are still recorded). With ``refuse``: every open connection is
        cut and the port stops listening (connection refused) while staying reserved, so
        ``up()`` serves again on the same port and the bot's kubeconfig stays valid. Either
        way the connections open now are cut, so nothing is served from before the outage."""
        if not (self._listener.serving or self._listener.refusing):
            raise RuntimeError("not started")
        self._cancel_up_timer()
        self._down_503 = not refuse
        if refuse:
            self._listener.refuse()
        else:
            self._listener.close_connections()  # open watches end; every new request gets 503
        if seconds is not None:
            self._up_timer = threading.Timer(seconds, self.up)
            self._up_timer.daemon = True
            self._up_timer.start()

    def up(self) -> None:
        """End an outage started by ``down()``: serve again, on the same port."""
        self._down_503 = False
        if self._listener.refusing:
            self._listener.serve(self._handler())  # on the reserved port

    @property
    def refusing(self) -> bool:
        return self._listener.refusing

    @property
    def port(self) -> int:
        """The bound port (kept across ``down(refuse=True)``/``up()``)."""
        if not self._listener.port:
            raise RuntimeError("not started")
        return self._listener.port

    def _handler(self) -> type[_Handler]:
        return type("SimHandler", (_Handler,), {"cluster": self})

    def _cancel_up_timer(self) -> None:
        timer, self._up_timer = self._up_timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def write_kubeconfig(
        self, path: Path | str, namespace: str = "shop", context: str = "sim"
    ) -> Path:
        """A kubeconfig with one cluster/user/context pointing here (token auth, plain http)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": f"{context}-user", "user": {"token": self.token or "sim-token"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": context,
                        "user": f"{context}-user",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return out

    # -- used by the handler -------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._requests_lock:
            self.requests.append(request)

    def _latency_for(self, path: str) -> float:
        return sum(seconds for pattern, seconds in self._latency if pattern.search(path))

    def enforce_rbac(self, rules: Iterable[Mapping[str, Any]],
                     namespaced: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                     ) -> None:
        """Allow only what these rules grant (a least-privilege check): `rules` bound
        cluster-wide (ClusterRole + ClusterRoleBinding), `namespaced` per namespace (a Role,
        or a ClusterRole bound by a RoleBinding). As the apiserver's RBAC authorizer: a
        namespace's rules allow requests in that namespace only, never a cluster-wide list or
        watch (all namespaces) nor a cluster-scoped object (a node). Every other request gets
        the apiserver's 403, and is listed in `denied`."""
        self._rbac = [dict(r) for r in rules]
        self._rbac_namespaced = {ns: [dict(r) for r in ns_rules]
                                 for ns, ns_rules in (namespaced or {}).items()}

    def _rbac_allows(self, verb: str, group: str, plural: str,
                     namespace: str | None = None) -> bool:
        def matches(values: Iterable[str], value: str) -> bool:
            return "*" in values or value in values

        rules = list(self._rbac or [])
        if namespace is not None:
            rules += self._rbac_namespaced.get(namespace, [])
        return any(matches(r.get("apiGroups") or [], group)
                   and matches(r.get("resources") or [], plural)
                   and matches(r.get("verbs") or [], verb) for r in rules)

    def _check_access(self, verb: str, route: _Route) -> None:
        rt = route.rt
        with self._requests_lock:
            self.access_log.append((verb, rt.group, rt.plural))
            self.accesses.append((route.namespace, verb, rt.group, rt.plural))
        denied_by_rbac = self._rbac is not None and not self._rbac_allows(
            verb, rt.group, rt.plural, route.namespace)
        if denied_by_rbac:
            with self._requests_lock:
                self.denied.append((verb, rt.group, rt.plural))
        if (not denied_by_rbac and ("*", rt.plural) not in self._forbidden
                and (verb, rt.plural) not in self._forbidden):
            return
        what = f'{rt.qualified} "{route.name}"' if route.name else rt.qualified
        where = (
            f'in the namespace "{route.namespace}"' if route.namespace else "at the cluster scope"
        )
        message = (
            f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{rt.plural}" '
            f'in API group "{rt.group}" {where}'
        )
        details: Obj = {}
        if route.name:
            details["name"] = route.name
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        raise ApiError(403, "Forbidden", message, details)

    def version_info(self) -> Obj:
        m = re.match(r"v?(\d+)\.(\d+)", self.kubernetes_version)
        major, minor = (m[1], m[2]) if m else ("1", "33")
        return {
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "minCompatibilityMajor": major,
            "minCompatibilityMinor": str(max(int(minor) - 1, 0)),
            "gitVersion": self.kubernetes_version,
            "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
            "gitTreeState": "clean",
            "buildDate": "2025-05-15T08:19:08Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }


def _discovery_list(group: str, version: str) -> Obj:
    gv = version if not group else f"{group}/{version}"
    entries: list[Obj] = []
    for rt in resources.RESOURCE_TYPES:
        if rt.group != group or rt.version != version:
            continue
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        entries.append(entry)
        if rt.kind not in ("Event", "ServiceAccount", "Secret", "ConfigMap",
                           "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            entries.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def _api_group(group: str) -> Obj:
    versions = sorted({rt.version for rt in resources.RESOURCE_TYPES if rt.group == group})
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def _everything(_: Obj) -> bool:
    return True


class _ChunkedWriter:
    """HTTP/1.1 chunked transfer encoding on the raw socket file."""

    def __init__(self, wfile: Any) -> None:
        self.wfile = wfile

    def write(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def event(self, type_: str, obj: Obj) -> None:
        self.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Handler(BaseHTTPRequestHandler):
    # Headers and body leave in separate writes; with Nagle on, the client's delayed ACK
    # adds ~40 ms to every request (a 10x slower demo and test suite).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # chunked watches and keep-alive, like the apiserver
    server_version = "sim-apiserver"
    cluster: SimCluster  # injected per SimCluster by type()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- plumbing ------------------------------------------------------------------------------
    def _send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self.cluster._record(
            RecordedRequest(
                method=self.command,
                path=path,
                query=query,
                content_type=content_type,
                body=body,
                user_agent=self.headers.get("User-Agent"),
                at=time.time(),
            )
        )
        delay = self.cluster._latency_for(path)
        if delay:
            time.sleep(delay)
        if self.cluster._down_503:
            self._send_json(503, ApiError(503, "ServiceUnavailable",
                                          "the server is currently unable to handle the "
                                          "request").status())
            return
        try:
            self._authenticate()
            # APF's filter runs after authentication, before authorization and routing
            retry_after = self.cluster._throttled(path)
            if retry_after is not None:
                self._too_many_requests(retry_after)
                return
            self._route(path, query, content_type, raw, body)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug here must surface as a 500, not a hung client
            log.exception("sim cluster: internal error on %s %s", self.command, self.path)
            self._send_json(500, ApiError(500, "InternalError", repr(exc)).status())

    def _too_many_requests(self, retry_after: int) -> None:
        """API Priority and Fairness's rejection: plain text, not a Status (see `throttle`)."""
        text = b"Too many requests, please try again later.\n"
        self.send_response(429)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def _authenticate(self) -> None:
        expected = self.cluster.token
        if expected is None:
            return
        if self.headers.get("Authorization") != f"Bearer {expected}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _route(
        self, path: str, query: dict[str, list[str]], ctype: str | None, raw: bytes, body: Any
    ) -> None:
        if self.command == "GET":
            simple = self._simple_get(path)
            if simple is not None:
                self._send_json(200, simple)
                return
        route = self._parse_resource_path(path)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        q = {k: v[-1] for k, v in query.items()}
        if route.subresource not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if self.command == "GET":
            if route.watch_path or q.get("watch") in _TRUE:
                self.cluster._check_access("watch", route)
                self._watch(route, q)
            elif route.name:
                self.cluster._check_access("get", route)
                self._send_json(200, self.cluster.store.get(route.rt, route.namespace, route.name))
            else:
                self.cluster._check_access("list", route)
                self._list(route, q)
        elif self.command == "POST" and not route.name:
            self.cluster._check_access("create", route)
            self._create(route, q, body)
        elif self.command == "PUT" and route.name:
            self.cluster._check_access("update", route)
            if not isinstance(body, dict):
                raise ApiError.bad_request("the body of the request must be a JSON object")
            obj = self.cluster.store.replace(route.rt, route.namespace, route.name, body)
            self._send_json(200, obj)
        elif self.command == "PATCH" and route.name:
            self.cluster._check_access("patch", route)
            self._patch(route, ctype, raw, body)
        elif self.command == "DELETE" and route.name:
            self.cluster._check_access("delete", route)
            self._send_json(200, self.cluster.store.delete(route.rt, route.namespace, route.name))
        else:
            raise ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                f"resource ({self.command} {path})"
            )

    def _simple_get(self, path: str) -> Obj | None:
        if path == "/version":
            return self.cluster.version_info()
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.cluster.host}:0"}
                ],
            }
        if path == "/api/v1":
            return _discovery_list("", "v1")
        groups = sorted({rt.group for rt in resources.RESOURCE_TYPES if rt.group})
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_api_group(g) for g in groups],
            }
        m = re.fullmatch(r"/apis/([^/]+)(?:/([^/]+))?", path)
        if m and m[1] in groups:
            if m[2] is None:
                return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(m[1])}
            if any(rt.group == m[1] and rt.version == m[2] for rt in resources.RESOURCE_TYPES):
                return _discovery_list(m[1], m[2])
        if path == "/":
            return {"paths": ["/api", "/api/v1", "/apis", "/version"]}
        return None

    @staticmethod
    def _parse_resource_path(path: str) -> _Route | None:
        m = re.fullmatch(r"/api/(v1)/(.+)", path) or None
        group, rest = "", ""
        if m:
            version, rest = m[1], m[2]
        else:
            m = re.fullmatch(r"/apis/([^/]+)/([^/]+)/(.+)", path)
            if not m:
                return None
            group, version, rest = m[1], m[2], m[3]
        parts = rest.split("/")
        watch_path = parts[0] == "watch"
        if watch_path:
            parts = parts[1:]
        namespace: str | None = None
        if parts and parts[0] == "namespaces" and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        if not parts:
            return None
        rt = resources.BY_PATH.get((group, version, parts[0]))
        if rt is None or (namespace is not None and not rt.namespaced):
            return None
        name = parts[1] if len(parts) > 1 else None
        sub = "/".join(parts[2:]) or None
        return _Route(rt, namespace, name, sub, watch_path)

    # -- verbs ---------------------------------------------------------------------------------
    def _selector(
        self, route: _Route, q: dict[str, str]
    ) -> tuple[Callable[[Obj], bool] | None, dict[str, str]]:
        """The request's selectors as a predicate (None: matches everything) and their
        ``field=value`` requirements, which let the store look objects up."""
        try:
            sel = compile_selectors(route.rt, q.get("labelSelector"), q.get("fieldSelector"))
        except SelectorError as exc:
            raise ApiError.bad_request(str(exc)) from None
        fields = sel.field_equals()
        if route.name:
            name = route.name
            fields["metadata.name"] = name
            return (lambda obj: obj["metadata"].get("name") == name and sel(obj)), fields
        return (None if sel.empty else sel), fields

    def _list(self, route: _Route, q: dict[str, str]) -> None:
        pred, fields = self._selector(route, q)
        after: tuple[str, str] | None = None
        token_rv: int | None = None
        if q.get("continue"):
            # Where the previous page ended, by key (namespace, name), as the apiserver's
            # token does: the next page starts after it whatever was written in between.
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"]))
                token_rv, (ns, name) = int(token["rv"]), token["after"]
                if not isinstance(ns, str) or not isinstance(name, str):
                    raise TypeError(token)
                after = (ns, name)
            except (ValueError, KeyError, TypeError):
                raise ApiError.bad_request("continue key is not valid") from None
            if 0 <= token_rv < self.cluster.store.compacted_rv:
                # The page's snapshot is gone (etcd compacts every 5 minutes by default, so a
                # slow paginated list of a large cluster meets this): 410 with a token that
                # goes on at the latest RV (the apiserver encodes RV -1 for it).
                raw_fresh = json.dumps({"rv": -1, "after": [after[0], after[1]]})
                raise ApiError.continue_expired(
                    base64.urlsafe_b64encode(raw_fresh.encode()).decode())
            if token_rv < 0:
                token_rv = None  # the inconsistent continuation: the latest snapshot
        limit = int(q.get("limit") or 0)
        page = self.cluster.store.list_page(
            route.rt, route.namespace, pred, fields=fields, after=after, limit=max(limit, 0)
        )
        for item in page.items:  # the apiserver omits kind/apiVersion on list items
            item.pop("kind", None)
            item.pop("apiVersion", None)
        rv = page.rv if token_rv is None else token_rv
        meta: Obj = {"resourceVersion": str(rv)}
        if page.remaining > 0:
            raw = json.dumps({"rv": rv, "after": list(page.last or ("", ""))})
            meta["continue"] = base64.urlsafe_b64encode(raw.encode()).decode()
            meta["remainingItemCount"] = page.remaining
        rt = route.rt
        self._send_json(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": page.items,
            },
        )

    def _create(self, route: _Route, q: dict[str, str], body: Any) -> None:
        if not isinstance(body, dict):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        body_ns = (body.get("metadata") or {}).get("namespace")
        if route.namespace and body_ns and body_ns != route.namespace:
            raise ApiError.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        obj = self.cluster.store.create(body, route.rt, route.namespace)
        self._send_json(201, obj)

    def _patch(self, route: _Route, ctype: str | None, raw: bytes, body: Any) -> None:
        assert route.name is not None
        if ctype not in patching.SUPPORTED_PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(patching.SUPPORTED_PATCH_TYPES)}",
            )
        if isinstance(body, str) or not raw:
            raise ApiError.bad_request("the body of the request is not valid JSON")
        assert ctype is not None
        obj = self.cluster.store.patch(route.rt, route.namespace, route.name, ctype, body)
        self._send_json(200, obj)

    def _watch(self, route: _Route, q: dict[str, str]) -> None:
        pred, fields = self._selector(route, q)  # 400 before the stream starts, as the apiserver
        store = self.cluster.store
        rv = q.get("resourceVersion")
        timeout = float(q.get("timeoutSeconds") or self.cluster.default_watch_timeout)
        bookmarks = q.get("allowWatchBookmarks") in _TRUE
        expired: ApiError | None = None
        initial: list[tuple[str, Obj]] = []
        watcher = None
        try:
            self._wait_for_rv(rv)
            initial, watcher, last_rv = store.open_watch(
                route.rt, route.namespace, pred or _everything, rv, fields=fields
            )
        except ApiError as exc:
            if exc.code not in (410, 504):
                raise
            expired = exc  # the apiserver answers 200 and sends these as an ERROR event
            last_rv = 0

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        out = _ChunkedWriter(self.wfile)
        abrupt = False
        try:
            if expired is not None:
                out.event("ERROR", expired.status())
                out.end()
                return
            assert watcher is not None
            for type_, obj in initial:
                out.event(type_, obj)
            for item in self._watch_items(watcher.queue, timeout, bookmarks):
                if item is None:  # bookmark tick or timeout end
                    last_rv = store.progress(watcher, last_rv)
                    out.event("BOOKMARK", self._bookmark(route.rt, last_rv))
                    continue
                if item == DROP_ABRUPT:
                    abrupt = True
                    break
                if item == DROP_CLEAN:
                    break
                assert isinstance(item, Change)
                last_rv = max(last_rv, item.rv)
                event = watcher.translate(item)
                if event is not None:
                    out.event(*event)
            if abrupt:
                # Half a chunk, then cut: what a reset mid-stream looks like to the client.
                self.wfile.write(b"ff\r\n{\"type\":")
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                out.end()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            if watcher is not None:
                store.close_watch(watcher)

    def _wait_for_rv(self, rv: str | None) -> None:
        """Block while the store has not reached a requested RV, then give up with the 504 the
        apiserver sends for "Too large resource version"."""
        try:
            wanted = int(rv or 0)
        except ValueError:
            return  # open_watch answers the 400
        store = self.cluster.store
        deadline = time.monotonic() + self.cluster.too_large_rv_wait
        while wanted > store.rv:
            if time.monotonic() >= deadline:
                raise ApiError.too_large_resource_version(wanted, store.rv)
            time.sleep(0.02)

    def _watch_items(
        self, q: queue.SimpleQueue[Change | str], timeout: float, bookmarks: bool
    ) -> Iterator[Change | str | None]:
        """Queue items until timeout/stop; None where a BOOKMARK is due (periodic and final)."""
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.cluster.bookmark_interval
        stopping = self.server.stopping  # type: ignore[attr-defined]
        while not stopping.is_set() and not self.cluster._down_503:
            now = time.monotonic()
            if now >= deadline:
                if bookmarks:
                    yield None
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + self.cluster.bookmark_interval
                yield None
            try:
                item = q.get(timeout=min(0.1, deadline - now))
            except queue.Empty:
                continue
            yield item
            if item in (DROP_CLEAN, DROP_ABRUPT):
                return

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int) -> Obj:
        meta = {"resourceVersion": str(rv)}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


@contextmanager
def running(*scenarios: Path | str, **kwargs: Any) -> Iterator[SimCluster]:
    """``with running("tag-not-found") as sim:`` — a started cluster, stopped on exit."""
    with SimCluster(scenarios, **kwargs) as sim:
        yield sim
