"""Every Kubernetes API call the bot makes, and nothing else.

Objects are fetched as raw JSON (`_preload_content=False`) rather than the client's model
classes: diagnosis reads the same camelCase shape as `kubectl get -o json`, and the code does not
depend on the generated models, which were regenerated wholesale in kubernetes-client 37.
Reads are limited to what the bot's Role grants (deploy/ RBAC): pods, events, the owner chain,
service accounts, docker-registry secrets and nodes; for the prevention audit, the workloads'
pod templates and the namespaces' labels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bot.diagnosis.facts import PodFacts, PullSecretInfo, TemplateImages, WorkloadRef
from bot.diagnosis.owners import controller_of, infer_workload
from bot.diagnosis.secrets import PULL_SECRET_TYPES, pull_secret_info
from bot.diagnosis.webhooks import matching_webhooks, mutating_names, namespace_labels_or_name
from bot.diagnosis.workloads import pod_template
from bot.kube.cache import KubeFactCache
from bot.kube.node_pulls import NodePulls

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (5, 15)  # connect, read: a diagnosis never hangs on a dead API server
#: A paginated list whose continue token expired (410) is started again this many times.
LIST_RESTARTS = 2

T = TypeVar("T")


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    return item


def template_images(kind: str, obj: Mapping[str, Any]) -> TemplateImages:
    """The container images of a controller's pod template, by container name."""
    meta = obj.get("metadata") or {}
    template = pod_template(kind, obj)
    return TemplateImages(WorkloadRef(kind, str(meta.get("name") or "")),
                          {c.name: c.image for c in template.containers})


_WEBHOOK_KEYS = ("name", "rules", "namespaceSelector", "objectSelector", "matchConditions",
                 "failurePolicy", "reinvocationPolicy")


def _retry_after(exc: ApiException) -> float:
    """The Retry-After header of a 429 in seconds (1 when absent or not a number)."""
    headers = getattr(exc, "headers", None) or {}
    try:
        return max(float(headers.get("Retry-After") or 1), 0.0)
    except (TypeError, ValueError):
        return 1.0


def _trim_webhook_configuration(obj: dict[str, Any]) -> dict[str, Any]:
    """A webhook configuration without what matching never reads (CA bundles, services)."""
    return {"metadata": {"name": (obj.get("metadata") or {}).get("name")},
            "webhooks": [{k: w[k] for k in _WEBHOOK_KEYS if k in w}
                         for w in obj.get("webhooks") or [] if isinstance(w, dict)]}



class KubeError(Exception):
    """Base class: something about the Kubernetes API stopped a diagnosis."""


class KubeUnreachable(KubeError):
    """The API server did not answer (network, TLS, bad kubeconfig)."""


class KubeThrottled(KubeUnreachable):
    """429 Too Many Requests (API Priority and Fairness, or a max-in-flight limit): the server
    is up but shedding load; `retry_after` is its Retry-After header in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KubeExpired(KubeUnreachable):
    """410 Gone: a resourceVersion or a list's continue token is older than the server keeps."""


class KubeForbidden(KubeError):
    """The bot's credentials may not read what the diagnosis needs."""


class KubeNotFound(KubeError):
    """The object asked for does not exist."""


#: Why a secret was not read when the install reads none (READ_SECRETS=false).
SECRETS_NOT_READ = ("this install does not read secrets (READ_SECRETS=false, the no-secrets "
                    "profile)")


#: How to let the bot read pull secrets again, for the commands that need one.
SECRETS_HOW_TO_GRANT = (
    "to let it check pull secrets, install a profile that includes the secrets role "
    "(deploy/rbac/secrets: get, list, watch on secrets; e.g. deploy/overlays/http) or grant "
    "those verbs on secrets to the bot's service account, then set READ_SECRETS=true")


class SecretsNotRead(KubeForbidden):
    """The install does not read secrets (READ_SECRETS=false): no request was sent. A
    KubeForbidden, so every caller that copes with a refused secret read copes with it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} was not read: {SECRETS_NOT_READ}")


@dataclass
class KubeClient:
    """A thin, typed wrapper around the official client's API groups.

    `facts` keeps what many pods share (owner chains by uid, the server version, pull-secret
    metadata, service accounts, nodes) for the short windows bot/kube/cache.py explains.
    """

    api: client.ApiClient
    facts: KubeFactCache = field(default_factory=KubeFactCache)
    #: False (READ_SECRETS=false): no secret is ever listed, watched or read; the methods
    #: that would answer "may not be read" (None) and `read_secret` raises SecretsNotRead
    read_secrets: bool = True
    #: the nodes' recent successful pulls, fed by the event watch (bot/kube/watch.py): the
    #: evidence `proxy_suspected` needs, at no API cost
    node_pulls: NodePulls = field(default_factory=NodePulls)
    #: whether the one warning about unreadable nodes was logged
    _nodes_refused: bool = field(default=False, init=False, repr=False)
    #: whether the one warning about unreadable webhook configurations was logged
    _webhooks_refused: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None,
                         context: str | None = None, *,
                         read_secrets: bool = True) -> KubeClient:
        """In-cluster config inside a pod, else the kubeconfig (KUBECONFIG / ~/.kube/config)."""
        try:
            if kubeconfig is None and context is None and os.environ.get(
                    "KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()
                return cls(client.ApiClient(), read_secrets=read_secrets)
            return cls(config.new_client_from_config(config_file=kubeconfig, context=context),
                       read_secrets=read_secrets)
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            raise KubeUnreachable(f"cannot load Kubernetes configuration: {exc}") from exc

    @property
    def nodes_refused(self) -> bool:
        """Whether the API refused a node read (then no node is asked for again)."""
        return self._nodes_refused

    # -- raw access -------------------------------------------------------------------------

    def _api_error(self, exc: ApiException, verb: str, what: str) -> KubeError:
        """One mapping of API refusals to KubeError subclasses, for reads, watches and
        patches alike; `verb` (read, watch, patch) words the message."""
        message = self._api_message(exc)
        detail = f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
        if exc.status == 404:
            return KubeNotFound(f"{what} not found")
        if exc.status in (401, 403):
            return KubeForbidden(f"the Kubernetes API refused to let this identity {verb} "
                                 f"{what} ({detail}); see the bot's roles in deploy/rbac/ "
                                 "and the profile installed (deploy/overlays/)")
        if exc.status == 409:
            return KubeError(f"{what} changed in the meantime ({detail}); try again")
        if exc.status == 422:
            return KubeError(f"the Kubernetes API rejected the change to {what} ({detail})")
        if exc.status == 410:
            return KubeExpired(f"{verb} of {what} failed: {detail}")
        if exc.status == 429:
            return KubeThrottled(f"{verb} of {what} failed: {detail}", _retry_after(exc))
        return KubeUnreachable(f"{verb} of {what} failed: {detail}")

    def _unreachable(self, exc: BaseException) -> KubeUnreachable:
        return KubeUnreachable(f"the Kubernetes API at {self.api.configuration.host} is "
                               f"unreachable: {type(exc).__name__}")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the API and return decoded JSON, mapping failures to KubeError subclasses.

        A read refused with 429 + Retry-After (API Priority and Fairness,
        kubernetes.io/docs/concepts/cluster-administration/flow-control/) is already sent
        again by urllib3's default ``Retry(3)``, after the server's Retry-After (GETs only;
        tests/kube/test_apiserver_faithful.py holds it to that): a 429 that reaches here is a
        KubeThrottled, a KubeUnreachable."""
        try:
            response = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
                          **kwargs)
            return json.loads(response.data)
        except ApiException as exc:
            raise self._api_error(exc, "read", what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    def server_version(self) -> str | None:
        """The API server's gitVersion, asked at most once an hour (None if it cannot be
        read; a failure is asked again next time)."""

        def load() -> str | None:
            data = self._call("the server version", client.VersionApi(self.api).get_code)
            return str(data.get("gitVersion") or "") or None

        try:
            return self.facts.version.get_or_load((), load)  # type: ignore[return-value]
        except KubeError:
            return None

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self._call(f'pod "{namespace}/{name}"', self.core.read_namespaced_pod,
                               name, namespace))

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The pod's events; an identity that may not list events still gets a diagnosis
        from the pod status alone (the kubelet copies the last error there)."""
        try:
            data = self._call(f'events of pod "{namespace}/{name}"',
                              self.core.list_namespaced_event, namespace,
                              field_selector=f"involvedObject.name={name}")
        except KubeForbidden as exc:
            log.warning("diagnosing without events: %s", exc)
            return []
        return list(data.get("items") or [])

    # -- facts for a diagnosis --------------------------------------------------------------

    def workload_of(self, pod: Mapping[str, Any]) -> WorkloadRef:
        """Walk the owner chain: Pod → ReplicaSet → Deployment, Job → CronJob."""
        return self.owner_facts(pod)[0]

    def owner_facts(self, pod: Mapping[str, Any]) -> tuple[WorkloadRef, TemplateImages | None]:
        """The workload to edit and, from the same read, the images of the ReplicaSet's or
        Job's pod template the pod was stamped from (None: a bare pod, another controller,
        or the owner could not be read). No read beyond the owner chain's own."""
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        owner = controller_of(meta)
        if owner is None:
            return WorkloadRef("Pod", str(meta.get("name"))), None
        kind, name = str(owner.get("kind")), str(owner.get("name"))
        readers: dict[str, Callable[..., Any]] = {
            "ReplicaSet": self.apps.read_namespaced_replica_set,
            "Job": self.batch.read_namespaced_job,
        }
        reader = readers.get(kind)
        if reader is None:
            return WorkloadRef(kind, name), None
        owner_uid = str(owner.get("uid") or "")

        def load() -> tuple[WorkloadRef, TemplateImages]:
            parent = self._call(f'{kind} "{namespace}/{name}"', reader, name, namespace)
            template = template_images(kind, parent)
            grand = controller_of(parent.get("metadata") or {})
            if grand is None:
                return WorkloadRef(kind, name), template
            return WorkloadRef(str(grand.get("kind")), str(grand.get("name"))), template

        try:
            if not owner_uid:  # (hand-written objects): nothing stable to remember it by
                return load()
            # a controller owner never changes for one uid: remembered without expiry
            found = self.facts.owners.get_or_load((namespace, kind, owner_uid), load)
            return found  # type: ignore[return-value]
        except (KubeNotFound, KubeForbidden) as exc:
            log.info("owner chain stops at %s/%s (%s); inferring from names", kind, name, exc)
            return infer_workload(pod), None

    def _webhook_configurations(self, mutating: bool) -> list[dict[str, Any]] | None:
        """Mutating or validating webhook configurations, trimmed to what matching reads
        (no CA bundles); None when they may not be listed (a namespaced install: Roles
        cannot grant cluster-scoped reads — said once, then not asked again)."""
        if self._webhooks_refused:
            return None
        api = client.AdmissionregistrationV1Api(self.api)
        lister = (api.list_mutating_webhook_configuration if mutating
                  else api.list_validating_webhook_configuration)
        what = f"{'mutating' if mutating else 'validating'}webhookconfigurations"

        def load() -> tuple[dict[str, Any], ...] | None:
            try:
                items, _ = self._list_projected(what, lister, _trim_webhook_configuration)
            except KubeForbidden as exc:
                if not self._webhooks_refused:
                    self._webhooks_refused = True
                    log.warning("admission webhook configurations cannot be read, so no "
                                "webhook is named in bundles or image_rewritten findings (a "
                                "namespaced install cannot grant cluster-scoped reads): %s",
                                exc)
                return None
            return tuple(items)

        found = self.facts.webhooks.get_or_load(
            "mutating" if mutating else "validating", load)
        return None if found is None else list(found)  # type: ignore[call-overload]

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels (None: may not be read), believed for the freshness
        window; for the webhooks' namespaceSelector."""

        def load() -> dict[str, str] | None:
            try:
                found = self.read_namespace(namespace)
            except (KubeForbidden, KubeNotFound):
                return None
            labels = (found.get("metadata") or {}).get("labels") or {}
            return {str(k): str(v) for k, v in labels.items()}

        found = self.facts.namespace_labels.get_or_load(namespace, load)
        return None if found is None else dict(found)  # type: ignore[call-overload]

    def matching_webhooks(self, namespace: str, pod_labels: Mapping[str, str] | None = None,
                          *, mutating: bool = True,
                          namespace_labels: Mapping[str, str] | None = None,
                          ) -> list[Any] | None:
        """The webhooks (MatchedWebhook) of one kind whose rules match pods in `namespace`;
        None when the configurations may not be read. A namespace whose labels may not be read
        is matched on the label the apiserver always sets (kubernetes.io/metadata.name).
        `namespace_labels`: the labels as the caller just read them (not read again)."""
        configurations = self._webhook_configurations(mutating)
        if configurations is None:
            return None
        if namespace_labels is None:
            namespace_labels = self.namespace_labels(namespace)
        labels = namespace_labels_or_name(namespace, namespace_labels)
        return matching_webhooks(configurations, mutating=mutating, namespace_labels=labels,
                                 pod_labels=pod_labels)

    def _rewriting_webhooks(self, pod: Mapping[str, Any],
                            template: TemplateImages | None) -> tuple[str, ...] | None:
        """The mutating webhooks that match the pod, only asked when one of its images differs
        from its template's (so a diagnosis costs no extra read otherwise)."""
        if template is None:
            return None
        spec = pod.get("spec") or {}
        images = {str(c.get("name")): str(c.get("image") or "")
                  for key in ("initContainers", "containers") for c in spec.get(key) or []}
        if not any(template.images.get(n, image) != image for n, image in images.items()):
            return None
        meta = pod.get("metadata") or {}
        found = self.matching_webhooks(str(meta.get("namespace")), meta.get("labels") or {})
        return None if found is None else mutating_names(found)

    def service_account_pull_secrets(self, namespace: str, name: str) -> tuple[str, ...] | None:
        """The account's imagePullSecrets names (None: absent or not readable): from the fact
        watches when they vouch for it, else read and believed for the freshness window."""
        source = self.facts.source
        if source is not None:
            vouched, names = source.service_account(namespace, name)
            if vouched:
                return names

        def load() -> tuple[str, ...] | None:
            try:
                account = self._call(f'service account "{namespace}/{name}"',
                                     self.core.read_namespaced_service_account, name,
                                     namespace)
            except (KubeNotFound, KubeForbidden):
                return None
            return tuple(str(r.get("name")) for r in account.get("imagePullSecrets") or []
                         if r.get("name"))

        return self.facts.service_accounts.get_or_load(  # type: ignore[return-value]
            (namespace, name), load)

    def referenced_secrets(self, namespace: str, names: tuple[str, ...],
                           listed: list[PullSecretInfo] | bool | None = False,
                           ) -> dict[str, PullSecretInfo | None] | None:
        """name → registry info, None for absent; None overall if secrets may not be read.
        `listed`: the namespace's pull secrets as just listed (None: they may not be listed;
        False: not listed yet, listed here)."""
        found: dict[str, PullSecretInfo | None] = {}
        if not names:
            return found
        if not self.read_secrets:
            return None
        # a referenced docker-registry secret is in the namespace's list already: no GET
        if listed is False:
            listed = self.namespace_pull_secrets(namespace)
        by_name = {info.name: info for info in listed or ()}  # type: ignore[union-attr]
        for name in names:
            if name in by_name:
                found[name] = by_name[name]
                continue

            def load(name: str = name) -> PullSecretInfo | None:
                try:
                    secret = self._call(f'secret "{namespace}/{name}"',
                                        self.core.read_namespaced_secret, name, namespace)
                except KubeNotFound:
                    return None
                return pull_secret_info(secret)  # metadata only: the values are dropped

            try:
                found[name] = self.facts.secrets.get_or_load(  # type: ignore[assignment]
                    (namespace, name), load)
            except KubeForbidden:
                return None
        return found

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A secret in full, None when absent. Only bot/registry/pullsecrets.py calls this: it is
        the one place that turns credentials into RegistryCredentials and drops the rest."""
        if not self.read_secrets:
            raise SecretsNotRead(f'secret "{namespace}/{name}"')
        try:
            return dict(self._call(f'secret "{namespace}/{name}"',
                                   self.core.read_namespaced_secret, name, namespace))
        except KubeNotFound:
            return None

    def service_accounts_using(self, namespace: str, secret: str) -> list[str]:
        """Names of the namespace's service accounts that list `secret` in imagePullSecrets."""
        data = self._call(f'service accounts in "{namespace}"',
                          self.core.list_namespaced_service_account, namespace)
        return [str(sa["metadata"]["name"]) for sa in data.get("items") or []
                if any(r.get("name") == secret for r in sa.get("imagePullSecrets") or [])]

    def namespace_pull_secrets(self, namespace: str) -> list[PullSecretInfo] | None:
        """Metadata of the namespace's docker-registry secrets (None: may not list them): from
        the fact watches when they vouch for the namespace, else listed and believed for the
        freshness window. The listed values are dropped here."""
        if not self.read_secrets:
            return None
        source = self.facts.source
        watched = source.pull_secrets(namespace) if source is not None else None
        if watched is not None:
            return list(watched)

        def load() -> tuple[PullSecretInfo, ...] | None:
            infos: list[PullSecretInfo] = []
            for secret_type in PULL_SECRET_TYPES:
                try:
                    data = self._call(f'secrets in "{namespace}"',
                                      self.core.list_namespaced_secret, namespace,
                                      field_selector=f"type={secret_type}")
                except (KubeForbidden, KubeNotFound):
                    return None
                infos.extend(pull_secret_info(s) for s in data.get("items") or [])
            return tuple(infos)

        found = self.facts.namespace_secrets.get_or_load(namespace, load)
        return None if found is None else list(found)  # type: ignore[call-overload]

    def node(self, name: str | None) -> dict[str, Any] | None:
        """The node's name, conditions, cached images and node info (the rest of the Node is
        not kept); None when absent or not readable. Believed for the freshness window. Once
        the API refused a node (a namespaced install: Roles cannot grant cluster-scoped
        reads), no node is asked for again: one warning, then the node checks are skipped."""
        if not name or self._nodes_refused:  # refused once: never asked again
            return None

        def load() -> dict[str, Any] | None:
            try:
                node = self._call(f'node "{name}"', self.core.read_node, name)
            except KubeNotFound:
                return None
            except KubeForbidden as exc:
                if not self._nodes_refused:  # a namespaced install: said once, not per pod
                    self._nodes_refused = True
                    log.warning("nodes cannot be read, so the node checks (DiskPressure, the "
                                "image already on the node) are skipped in every diagnosis; "
                                "a namespaced install (Roles only) cannot grant cluster-scoped "
                                "reads: %s", exc)
                return None
            status = node.get("status") or {}
            return {"metadata": {"name": (node.get("metadata") or {}).get("name")},
                    "status": {key: status[key] for key in ("conditions", "images", "nodeInfo")
                               if key in status}}

        found = self.facts.nodes.get_or_load(name, load)
        return None if found is None else dict(found)  # type: ignore[call-overload]

    def pod_facts(self, namespace: str, name: str,
                  pod: Mapping[str, Any] | None = None) -> PodFacts:
        """Everything the diagnosis needs about one pod (`pod`: the pod as just read, to
        not read it twice). Raises KubeError subclasses."""
        pod = dict(pod) if pod is not None else self.read_pod(namespace, name)
        spec = pod.get("spec") or {}
        names = tuple(str(r.get("name")) for r in spec.get("imagePullSecrets") or []
                      if r.get("name"))
        account = str(spec.get("serviceAccountName") or "default")
        namespace_secrets = self.namespace_pull_secrets(namespace)
        workload, template = self.owner_facts(pod)
        return PodFacts(
            pod=pod,
            events=self.pod_events(namespace, name),
            workload=workload,
            template=template,
            mutating_webhooks=self._rewriting_webhooks(pod, template),
            service_account_pull_secrets=self.service_account_pull_secrets(namespace, account),
            referenced_secrets=self.referenced_secrets(namespace, names, namespace_secrets),
            namespace_pull_secrets=namespace_secrets,
            node=self.node(spec.get("nodeName")),
            cluster_version=self.server_version(),
            secrets_read=self.read_secrets,
            node_pulls=self.node_pulls.recent(spec.get("nodeName")),
        )

    # -- watching (bot/kube/watch.py) ------------------------------------------------------------
    # Appended for the event watcher and the pod sweep; same raw-JSON and error conventions
    # as `_call`. Lists are paginated (`limit`/`continue`): a cluster-wide event list can hold
    # tens of thousands of items, and every page of one list shares the first page's snapshot.

    LIST_PAGE_SIZE = 500

    def _list_all(self, what: str, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
        """Every item of a paginated list, and the list's resourceVersion."""
        return self._list_projected(what, fn, _as_is, *args, **kwargs)

    def _list_projected(self, what: str, fn: Callable[..., Any],
                        project: Callable[[dict[str, Any]], T], *args: Any,
                        **kwargs: Any) -> tuple[list[T], str]:
        """`project` of every item of a paginated list, applied page by page (so a list of
        10,000 pods holds one page of whole objects at a time, not all of them), and the
        list's resourceVersion."""
        items: list[T] = []
        token: str | None = None
        rv = ""
        restarts = 0
        while True:
            page_args = dict(kwargs, limit=self.LIST_PAGE_SIZE)
            if token:
                page_args["_continue"] = token
            try:
                data = self._call(what, fn, *args, **page_args)
            except KubeExpired:
                # The continue token outlived its snapshot (etcd compacts every 5 minutes; a
                # slow list of a large cluster meets it): 410. The answer's own token would go
                # on inconsistently, and the list's resourceVersion must be one snapshot to
                # watch from without a gap, so list again (client-go's ListPager lists anew too).
                if not token or restarts >= LIST_RESTARTS:
                    raise
                restarts += 1
                log.info("the list of %s expired between pages (410); listing again", what)
                items, token, rv = [], None, ""
                continue
            meta = data.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            items.extend(project(item) for item in data.get("items") or [])
            del data  # the page's whole objects go before the next page is read
            token = meta.get("continue") or None
            if not token:
                return items, rv

    def list_events(self, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        """All core/v1 events (of one namespace, or of all), and the list's resourceVersion:
        watching from it afterwards misses nothing and repeats nothing."""
        if namespace is None:
            return self._list_all("events in all namespaces",
                                  self.core.list_event_for_all_namespaces)
        return self._list_all(f'events in "{namespace}"', self.core.list_namespaced_event,
                              namespace)

    def list_pods(self, namespace: str | None, *, field_selector: str | None = None
                  ) -> list[dict[str, Any]]:
        """All pods (of one namespace, or of all), e.g. only the Pending ones with
        ``field_selector="status.phase=Pending"``."""
        return self.list_pods_at(namespace, field_selector=field_selector)[0]

    def list_pods_at(self, namespace: str | None, *, field_selector: str | None = None
                     ) -> tuple[list[dict[str, Any]], str]:
        """The pods and the list's resourceVersion, to watch from it (bot/kube/view.py)."""
        kwargs: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        what = f"pods {where}" + (f" ({field_selector})" if field_selector else "")
        if namespace is None:
            return self._list_all(what, self.core.list_pod_for_all_namespaces, **kwargs)
        return self._list_all(what, self.core.list_namespaced_pod, namespace, **kwargs)

    def list_pods_projected(self, namespace: str | None, project: Callable[[dict[str, Any]], T],
                            *, field_selector: str | None = None) -> tuple[list[T], str]:
        """`list_pods_at`, each pod reduced by `project` as its page arrives (the pod view
        keeps a slim projection: the whole pods of a large list are never all in memory)."""
        kwargs: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        what = f"pods {where}" + (f" ({field_selector})" if field_selector else "")
        if namespace is None:
            return self._list_projected(what, self.core.list_pod_for_all_namespaces, project,
                                        **kwargs)
        return self._list_projected(what, self.core.list_namespaced_pod, project, namespace,
                                    **kwargs)

    def watch_events(self, namespace: str | None, resource_version: str | None,
                     timeout_seconds: int, *, idle_timeout: float | None = None,
                     ) -> Iterator[dict[str, Any]]:
        """Watch core/v1 events from `resource_version`, with bookmarks; yields each watch
        event raw: ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}``.

        The server ends the stream after `timeout_seconds`; the iterator also just ends when
        nothing arrived for `idle_timeout` seconds (a quiet stream, or a dead connection that
        sends nothing: either way the caller reopens from its last RV). An expired RV arrives
        as an ``ERROR`` event whose object is a Status with ``code: 410`` — the apiserver
        sends it inside a 200 stream; a plain HTTP 410 is turned into the same event.
        A connection that breaks mid-stream raises KubeUnreachable, like a failed open.
        """
        what = f'events in "{namespace}"' if namespace else "events in all namespaces"
        return self._watch(what, self.core.list_event_for_all_namespaces,
                           self.core.list_namespaced_event, namespace, resource_version,
                           timeout_seconds, idle_timeout=idle_timeout)

    def watch_pods(self, namespace: str | None, resource_version: str | None,
                   timeout_seconds: int, *, idle_timeout: float | None = None,
                   field_selector: str | None = None) -> Iterator[dict[str, Any]]:
        """Watch pods like `watch_events` watches events. With a `field_selector`, an object
        that stops matching (a pod leaving Pending) arrives as DELETED, carrying its last
        matching state and the resourceVersion of the change (the apiserver's cacheWatcher)."""
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        what = f"pods {where}" + (f" ({field_selector})" if field_selector else "")
        return self._watch(what, self.core.list_pod_for_all_namespaces,
                           self.core.list_namespaced_pod, namespace, resource_version,
                           timeout_seconds, idle_timeout=idle_timeout,
                           field_selector=field_selector)

    def _fact_calls(self, resource: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(all namespaces, one namespace) list calls of a resource the fact watches follow."""
        calls = {
            "secrets": (self.core.list_secret_for_all_namespaces,
                        self.core.list_namespaced_secret),
            "serviceaccounts": (self.core.list_service_account_for_all_namespaces,
                                self.core.list_namespaced_service_account),
        }
        return calls[resource]

    def list_resource(self, resource: str, namespace: str | None, *,
                      field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every "secrets" (with a type selector) or "serviceaccounts" object, paginated, and
        the list's resourceVersion (bot/kube/fact_watch.py keeps only their metadata)."""
        what, call, args, kwargs = self._fact_list(resource, namespace, field_selector)
        return self._list_all(what, call, *args, **kwargs)

    def _fact_list(self, resource: str, namespace: str | None, field_selector: str | None
                   ) -> tuple[str, Callable[..., Any], tuple[str, ...], dict[str, Any]]:
        """The list call for a fact resource, its arguments and its words for errors; refused
        before any request when the install does not read secrets."""
        if resource == "secrets" and not self.read_secrets:
            raise SecretsNotRead("secrets")
        all_namespaces, namespaced = self._fact_calls(resource)
        kwargs: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        what = f"{resource} {where}" + (f" ({field_selector})" if field_selector else "")
        if namespace is None:
            return what, all_namespaces, (), kwargs
        return what, namespaced, (namespace,), kwargs

    def watch_resource(self, resource: str, namespace: str | None,
                       resource_version: str | None, timeout_seconds: int, *,
                       idle_timeout: float | None = None, field_selector: str | None = None,
                       ) -> Iterator[dict[str, Any]]:
        """Watch "secrets" or "serviceaccounts" like `watch_events` watches events."""
        if resource == "secrets" and not self.read_secrets:
            raise SecretsNotRead("secrets")
        all_namespaces, namespaced = self._fact_calls(resource)
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        what = f"{resource} {where}" + (f" ({field_selector})" if field_selector else "")
        return self._watch(what, all_namespaces, namespaced, namespace, resource_version,
                           timeout_seconds, idle_timeout=idle_timeout,
                           field_selector=field_selector)

    def _watch(self, what: str, all_namespaces: Callable[..., Any],
               namespaced: Callable[..., Any], namespace: str | None,
               resource_version: str | None, timeout_seconds: int, *,
               idle_timeout: float | None = None, field_selector: str | None = None,
               ) -> Iterator[dict[str, Any]]:
        """One watch request as an iterator of raw watch events (see `watch_events`)."""
        read = float(idle_timeout) if idle_timeout else float(timeout_seconds) + 30.0
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": int(timeout_seconds),
            "_preload_content": False,
            "_request_timeout": (REQUEST_TIMEOUT[0], read),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        if field_selector:
            kwargs["field_selector"] = field_selector
        try:
            if namespace is None:
                response = all_namespaces(**kwargs)
            else:
                response = namespaced(namespace, **kwargs)
        except ApiException as exc:
            if exc.status == 410:
                yield {"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired", "message": str(exc.reason or "Gone")}}
                return
            raise self._api_error(exc, "watch", what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        log.warning("skipping an unreadable line in the watch of %s", what)
                        continue
                    if isinstance(event, dict) and "type" in event:
                        yield {"type": event["type"], "object": event.get("object") or {}}
        except urllib3.exceptions.ReadTimeoutError:
            return  # idle: nothing for `idle_timeout` seconds
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnreachable(f"the watch of {what} broke: {type(exc).__name__}") from None
        finally:
            response.close()

    # -- remediation (bot/kube/remediation.py) ---------------------------------------------------
    # Appended for the approved fixes. The only writes the bot makes: strategic-merge PATCHes
    # of a workload's pod template, like `kubectl rollout restart` and `kubectl set image`.

    STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

    def _workload_calls(self, kind: str) -> tuple[str, Callable[..., Any],
                                                  Callable[..., Any] | None]:
        """(resource label, reader, patcher or None) for a canonical Kind."""
        apps, batch = self.apps, self.batch
        calls: dict[str, tuple[str, Callable[..., Any], Callable[..., Any] | None]] = {
            "Deployment": ("deployment", apps.read_namespaced_deployment,
                           apps.patch_namespaced_deployment),
            "StatefulSet": ("statefulset", apps.read_namespaced_stateful_set,
                            apps.patch_namespaced_stateful_set),
            "DaemonSet": ("daemonset", apps.read_namespaced_daemon_set,
                          apps.patch_namespaced_daemon_set),
            "CronJob": ("cronjob", batch.read_namespaced_cron_job,
                        batch.patch_namespaced_cron_job),
            # read only: to say which object to act on instead
            "ReplicaSet": ("replicaset", apps.read_namespaced_replica_set, None),
            "Job": ("job", batch.read_namespaced_job, None),
        }
        try:
            return calls[kind]
        except KeyError:
            raise ValueError(f"unsupported workload kind {kind!r}") from None

    def read_workload(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        """A Deployment, StatefulSet, DaemonSet, CronJob, ReplicaSet or Job as raw JSON."""
        label, reader, _ = self._workload_calls(kind)
        return dict(self._call(f'{label} "{namespace}/{name}"', reader, name, namespace))

    def patch_workload(self, namespace: str, kind: str, name: str,
                       body: dict[str, Any]) -> dict[str, Any]:
        """Strategic-merge PATCH of a Deployment, StatefulSet, DaemonSet or CronJob; returns
        the object as the API server stored it.

        The generated ``patch_namespaced_*`` methods of kubernetes-client <= 35 offer the
        content types ``[json-patch, merge-patch, strategic-merge-patch, ...]`` and have no
        ``_content_type`` parameter (passing one raises ApiTypeError before any request);
        their rest layer sends ``application/strategic-merge-patch+json`` for a body that is
        not a list. Newer generated clients take ``_content_type``: it is passed where
        accepted, so the content type never depends on the client's default choice.
        """
        label, _, patcher = self._workload_calls(kind)
        if patcher is None:
            raise ValueError(f"{kind} is not patched by the bot")
        if not isinstance(body, dict):
            raise TypeError("a strategic-merge patch body is a JSON object")
        what = f'{label} "{namespace}/{name}"'
        kwargs: dict[str, Any] = {"_preload_content": False,
                                  "_request_timeout": REQUEST_TIMEOUT}
        try:
            try:
                response = patcher(name, namespace, body,
                                   _content_type=self.STRATEGIC_MERGE_PATCH, **kwargs)
            except client.ApiTypeError:  # raised before sending: client <= 35
                response = patcher(name, namespace, body, **kwargs)
            return dict(json.loads(response.data))
        except ApiException as exc:
            raise self._api_error(exc, "patch", what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        """DELETE one pod (an approved "Retry now" of a bare pod: bot/kube/remediation.py),
        with its default grace period; returns what the API server answered."""
        what = f'pod "{namespace}/{name}"'
        try:
            response = self.core.delete_namespaced_pod(name, namespace, _preload_content=False,
                                                       _request_timeout=REQUEST_TIMEOUT)
            return dict(json.loads(response.data))
        except ApiException as exc:
            raise self._api_error(exc, "delete", what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None

    # -- the audit's inventory (bot/kube/inventory.py) -------------------------------------------
    # Appended for the prevention audit and the credentials watch: paginated lists of the
    # workloads with pod templates, namespaces, and each object projected as its page arrives.

    def _template_lists(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(all namespaces, one namespace) list calls of a workload kind with a pod template."""
        apps, batch = self.apps, self.batch
        calls = {
            "Deployment": (apps.list_deployment_for_all_namespaces,
                           apps.list_namespaced_deployment),
            "StatefulSet": (apps.list_stateful_set_for_all_namespaces,
                            apps.list_namespaced_stateful_set),
            "DaemonSet": (apps.list_daemon_set_for_all_namespaces,
                          apps.list_namespaced_daemon_set),
            "CronJob": (batch.list_cron_job_for_all_namespaces, batch.list_namespaced_cron_job),
        }
        return calls[kind]

    def list_workloads(self, kind: str, namespace: str | None,
                       project: Callable[[dict[str, Any]], T]) -> list[T]:
        """Every Deployment, StatefulSet, DaemonSet or CronJob (of one namespace, or of all),
        each reduced by `project` as its page arrives."""
        all_namespaces, namespaced = self._template_lists(kind)
        where = f'in "{namespace}"' if namespace else "in all namespaces"
        what = f"{kind.lower()}s {where}"
        if namespace is None:
            return self._list_projected(what, all_namespaces, project)[0]
        return self._list_projected(what, namespaced, project, namespace)[0]

    def find_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One Deployment, StatefulSet, DaemonSet or CronJob by name, through the list the
        audit's role already grants (`fieldSelector=metadata.name=NAME`; no `get` is needed):
        for the bundle's template images. None when absent."""
        _, namespaced = self._template_lists(kind)
        items, _ = self._list_all(f'{kind.lower()} "{namespace}/{name}"', namespaced, namespace,
                                  field_selector=f"metadata.name={name}")
        return items[0] if items else None

    def list_resource_projected(self, resource: str, namespace: str | None,
                                project: Callable[[dict[str, Any]], T], *,
                                field_selector: str | None = None) -> list[T]:
        """`list_resource` ("secrets" with a type selector, or "serviceaccounts"), each item
        reduced by `project` as its page arrives: a secret's credentials go with its page."""
        what, call, args, kwargs = self._fact_list(resource, namespace, field_selector)
        return self._list_projected(what, call, project, *args, **kwargs)[0]

    def list_namespaces(self, project: Callable[[dict[str, Any]], T]) -> list[T]:
        """Every namespace (for its labels), reduced by `project`."""
        return self._list_projected("namespaces", self.core.list_namespace, project)[0]

    def read_namespace(self, name: str) -> dict[str, Any]:
        """One namespace (for its labels), when the bot watches a list of namespaces."""
        return dict(self._call(f'namespace "{name}"', self.core.read_namespace, name))

    def secret_exists(self, namespace: str, name: str) -> bool | None:
        """Whether a secret of that name exists (None: may not be read). Asked only for a
        referenced name that is not among the listed pull secrets; nothing of it is kept."""
        if not self.read_secrets:
            return None
        try:
            self._call(f'secret "{namespace}/{name}"', self.core.read_namespaced_secret, name,
                       namespace)
        except KubeNotFound:
            return False
        except KubeForbidden:
            return None
        return True

    @staticmethod
    def _api_message(exc: ApiException) -> str:
        """The ``message`` of the Status the API server answered with, if any."""
        body = exc.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        try:
            status = json.loads(body) if body else None
        except ValueError:
            return str(body).strip()[:500]
        if isinstance(status, dict):
            return str(status.get("message") or "").strip()
        return ""
