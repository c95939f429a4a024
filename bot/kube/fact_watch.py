"""Watches that keep the fact cache honest: pull secrets and service accounts, by change.

The diagnosis reads, per namespace, which pull secrets exist and which the pod's service
account lists (bot/kube/client.py through bot/kube/cache.py's tables). Those are what a person
changes to fix an incident (``kubectl create secret docker-registry``, ``kubectl patch
serviceaccount``), so they must not be believed past the change; and in a storm they must not
be read per pod. So they are read lazily (once per namespace or account) and *forgotten the
moment the API server reports a change*:

* **Pull secrets**: one watch per pull-secret type (``type=kubernetes.io/dockerconfigjson``,
  ``type=kubernetes.io/dockercfg``: a field selector takes one value), per watched namespace or
  cluster-wide. Any ADDED/MODIFIED/DELETED drops that namespace's pull-secret list and that
  secret's entry. The objects themselves are dropped at once: a watch event of a secret carries
  its credentials, and the bot keeps none (the registry probe reads the secret it needs).
* **Service accounts**: one watch per scope; a change drops that account's entry.

A watch starts from the collection's current resourceVersion (a LIST of at most one item:
nothing before now matters, only changes) and, on every (re)start and every relist after
``410 Gone``, forgets everything of its scope (changes in the gap are unknown). Resume, 410,
bookmarks, back-off and health are the shared `Reflector`'s.

An identity that may not list or watch a resource (a namespaced install without access to
secrets) gets a warning once; that watch stops, stays healthy for readiness (it is not needed
to alert), and the cache believes that table for its short freshness window instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bot.diagnosis.secrets import PULL_SECRET_TYPES
from bot.kube.cache import WATCHED_SECONDS
from bot.kube.client import KubeClient, KubeForbidden
from bot.kube.reflector import Reflector

log = logging.getLogger(__name__)

__all__ = ["FactWatch", "fact_watches"]


class FactWatch(Reflector):
    """Changes of one resource ("secrets" of one type, or "serviceaccounts") in one scope,
    turned into cache invalidations."""

    thread_name = "fact-watch"

    def __init__(self, kube: KubeClient, resource: str, namespace: str | None, *,
                 field_selector: str | None = None,
                 watched_seconds: float = WATCHED_SECONDS, **options: Any) -> None:
        super().__init__(**options)
        self.watched_seconds = watched_seconds
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.field_selector = field_selector
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        self.what = f"{resource} {where}" + (f" ({field_selector})" if field_selector else "")
        #: why this watch gave up (the API refused it), or None while it runs
        self.refused: str | None = None
        self.synced = threading.Event()

    def list_objects(self) -> tuple[list[dict[str, Any]], str]:
        try:
            rv = self.kube.resource_version_of(self.resource, self.namespace,
                                               field_selector=self.field_selector)
        except KubeForbidden as exc:
            self._give_up(str(exc))
            raise
        return [], rv

    def open_watch(self, resource_version: str | None) -> Iterator[dict[str, Any]]:
        # a role that may list but not watch (a ClusterRole from before this version) is
        # refused here: give up rather than retry forever and look blind to /readyz
        try:
            yield from self.kube.watch_resource(self.resource, self.namespace,
                                                resource_version, self.watch_timeout,
                                                idle_timeout=self.idle_timeout,
                                                field_selector=self.field_selector)
        except KubeForbidden as exc:
            self._give_up(str(exc))
            raise

    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        # (re)started or relisted after a gap: what the scope held may have changed unseen
        facts = self.kube.facts
        if self.resource == "secrets":
            facts.scope_changed(self.namespace, service_accounts=False)
            facts.watched(secrets=self.watched_seconds)
        else:
            facts.scope_changed(self.namespace, secrets=False)
            facts.watched(service_accounts=self.watched_seconds)
        self.synced.set()
        log.info("watching %s from resourceVersion %s", self.what, resource_version)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if self.resource == "secrets":
            self.kube.facts.pull_secret_changed(namespace, name)
        else:
            self.kube.facts.service_account_changed(namespace, name)

    def _give_up(self, why: str) -> None:
        log.warning("not watching %s (%s): believing it for %.0f s at a time instead",
                    self.what, why, self.kube.facts.fresh_seconds)
        facts = self.kube.facts
        if self.resource == "secrets":
            facts.watched(secrets=facts.fresh_seconds)
        else:
            facts.watched(service_accounts=facts.fresh_seconds)
        self.refused = why
        self._stop_event.set()

    def health(self, now: float | None = None) -> tuple[bool, str]:
        if self.refused is not None:
            return True, f"not permitted ({self.refused})"
        return super().health(now)


def fact_watches(kube: KubeClient, namespaces: Sequence[str] | None = None,
                 **options: Any) -> list[FactWatch]:
    """The fact watches for the watched namespaces (None: cluster-wide). Once a watch has
    started, the cache believes what it guards for `watched_seconds` (an option)."""
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    watches = []
    for namespace in scopes:
        watches += [FactWatch(kube, "secrets", namespace, field_selector=f"type={secret_type}",
                              **options) for secret_type in PULL_SECRET_TYPES]
        watches.append(FactWatch(kube, "serviceaccounts", namespace, **options))
    return watches
