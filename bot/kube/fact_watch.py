"""Pull secrets and service accounts by list+watch: the facts a fix changes, kept current.

The diagnosis reads, per namespace, which pull secrets exist (names, types, registries) and
which pull secrets the pod's service account lists. Those are what a person changes to fix an
incident (``kubectl create secret docker-registry``, ``kubectl patch serviceaccount``), so
they must be current, and in a storm they must not be read per pod or per namespace. So they
are listed once and watched (the informer pattern, through the shared `Reflector`: resume
from resourceVersion, relist on 410, bookmarks, back-off, health), and `WatchedFacts` answers
the client's questions from them (bot/kube/cache.py `FactSource`):

* **Pull secrets**: one list+watch per pull-secret type (``type=kubernetes.io/dockerconfigjson``
  and ``type=kubernetes.io/dockercfg``: a field selector takes one value), per watched
  namespace or cluster-wide. Each secret is reduced at once to its `PullSecretInfo` (name,
  type, registry hosts, update time): its credentials pass through the list or the watch
  event and are dropped there; the registry probe reads the one secret it needs.
* **Service accounts**: one list+watch per scope, each account reduced to its
  imagePullSecrets names.

Memory: one small record per pull secret and per service account (about 300 bytes; a cluster
with 10,000 namespaces holds ~10,000 default accounts, ~3 MB).

`WatchedFacts` vouches for a namespace only while every watch covering it has listed and is in
contact with the API server (`Reflector.health`); otherwise the client reads the API through
the fact cache's short freshness window, as without the watches. An identity that may not
list or watch a resource (a namespaced install without access to secrets, or a ClusterRole
from before this version) gets one warning; that watch stops, stays healthy for readiness
(it is not needed to alert) and never vouches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bot.diagnosis.facts import PullSecretInfo
from bot.diagnosis.secrets import PULL_SECRET_TYPES, pull_secret_info
from bot.kube.client import KubeClient, KubeForbidden
from bot.kube.reflector import Reflector

log = logging.getLogger(__name__)

__all__ = ["FactWatch", "WatchedFacts"]

Key = tuple[str, str]  # (namespace, name)


def _account_pull_secrets(account: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(r.get("name")) for r in account.get("imagePullSecrets") or []
                 if r.get("name"))


class FactWatch(Reflector):
    """One resource ("secrets" of one type, or "serviceaccounts") in one scope, each object
    kept as `project(object)` under (namespace, name)."""

    thread_name = "fact-watch"

    def __init__(self, kube: KubeClient, resource: str, namespace: str | None,
                 project: Callable[[Mapping[str, Any]], Any], *,
                 field_selector: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.project = project
        self.field_selector = field_selector
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        self.what = f"{resource} {where}" + (f" ({field_selector})" if field_selector else "")
        self.items: dict[Key, Any] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()  # the first list is in
        #: why this watch gave up (the API refused it), or None while it runs
        self.refused: str | None = None

    # -- the reflector's hooks --------------------------------------------------------------
    def list_objects(self) -> tuple[list[dict[str, Any]], str]:
        try:
            return self.kube.list_resource(self.resource, self.namespace,
                                           field_selector=self.field_selector)
        except KubeForbidden as exc:
            self._give_up(str(exc))
            raise

    def open_watch(self, resource_version: str | None) -> Iterator[dict[str, Any]]:
        # a role that may list but not watch is refused here: give up rather than retry
        # forever and look blind to /readyz
        try:
            yield from self.kube.watch_resource(self.resource, self.namespace,
                                                resource_version, self.watch_timeout,
                                                idle_timeout=self.idle_timeout,
                                                field_selector=self.field_selector)
        except KubeForbidden as exc:
            self._give_up(str(exc))
            raise

    def replace(self, items: Sequence[Any], resource_version: str) -> None:
        new = {_key(item): self.project(item) for item in items}
        with self.lock:
            self.items = new
        self.synced.set()
        log.info("listed %d %s at resourceVersion %s", len(new), self.what, resource_version)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        with self.lock:
            if kind == "DELETED":  # deleted, or its type changed away from a pull type
                self.items.pop(key, None)
            else:
                self.items[key] = self.project(obj)

    # -- state ------------------------------------------------------------------------------
    @property
    def current(self) -> bool:
        """Listed, and in contact with the API server: what it holds can be vouched for."""
        return self.refused is None and self.synced.is_set() and super().health()[0]

    def health(self, now: float | None = None) -> tuple[bool, str]:
        if self.refused is not None:
            return True, f"not permitted ({self.refused})"
        return super().health(now)

    def covers(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    def in_namespace(self, namespace: str) -> list[Any]:
        with self.lock:
            return [value for (ns, _), value in sorted(self.items.items()) if ns == namespace]

    def get(self, namespace: str, name: str) -> Any:
        with self.lock:
            return self.items.get((namespace, name))

    def everything(self) -> list[tuple[Key, Any]]:
        """Every object held, as ((namespace, name), projection), sorted."""
        with self.lock:
            return sorted(self.items.items())

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)

    def _give_up(self, why: str) -> None:
        log.warning("not watching %s (%s): reading it from the API when needed instead",
                    self.what, why)
        self.refused = why
        self._stop_event.set()


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class WatchedFacts:
    """The fact watches of the watched namespaces (or cluster-wide), answering as the fact
    cache's `source`: only for a namespace every covering watch vouches for."""

    def __init__(self, kube: KubeClient, namespaces: Sequence[str] | None = None,
                 **options: Any) -> None:
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        # READ_SECRETS=false: no secret watch at all (it would only be refused), so pull
        # secrets are never vouched for and the client answers "not read" for them
        self.secrets = [FactWatch(kube, "secrets", ns, pull_secret_info,
                                  field_selector=f"type={secret_type}", **options)
                        for ns in scopes for secret_type in PULL_SECRET_TYPES
                        if kube.read_secrets]
        self.accounts = [FactWatch(kube, "serviceaccounts", ns, _account_pull_secrets,
                                   **options) for ns in scopes]

    @property
    def reflectors(self) -> list[Reflector]:
        """For start/stop and readiness with the other watches."""
        return [*self.secrets, *self.accounts]

    def start(self) -> None:
        for watch in self.reflectors:
            watch.start()

    def stop(self, timeout: float = 5) -> None:
        for watch in self.reflectors:
            watch.stop(timeout)

    def wait_synced(self, timeout: float) -> bool:
        return all(w.refused is not None or w.synced.wait(timeout)
                   for w in [*self.secrets, *self.accounts])

    @staticmethod
    def _vouching(watches: list[FactWatch], namespace: str) -> list[FactWatch] | None:
        covering = [w for w in watches if w.covers(namespace)]
        if not covering or not all(w.current for w in covering):
            return None
        return covering

    # -- the whole scope (scheduled watches: bot/routines) --------------------------------------
    @property
    def current(self) -> bool:
        """Every watch has listed and is in contact (none refused): the lists below are whole."""
        return all(w.current for w in self.reflectors if isinstance(w, FactWatch))

    def all_pull_secrets(self) -> list[tuple[str, PullSecretInfo]]:
        """(namespace, secret) of every pull secret held, every watched namespace."""
        return [(ns, info) for watch in self.secrets for (ns, _), info in watch.everything()]

    def account_references(self) -> set[tuple[str, str]]:
        """(namespace, secret name) of every pull secret some service account lists."""
        return {(ns, name) for watch in self.accounts
                for (ns, _), names in watch.everything() for name in names}

    # -- FactSource ---------------------------------------------------------------------------
    def pull_secrets(self, namespace: str) -> tuple[PullSecretInfo, ...] | None:
        # every pull-secret type must be watched for the namespace, or the answer is partial
        covering = self._vouching(self.secrets, namespace)
        if covering is None or len(covering) < len(PULL_SECRET_TYPES):
            return None
        infos = [info for watch in covering for info in watch.in_namespace(namespace)]
        return tuple(sorted(infos, key=lambda info: (info.name, info.type)))

    def service_account(self, namespace: str, name: str
                        ) -> tuple[bool, tuple[str, ...] | None]:
        covering = self._vouching(self.accounts, namespace)
        if covering is None:
            return False, None
        return True, covering[0].get(namespace, name)
