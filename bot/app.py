"""The composition root: settings → services → the Bolt app, the watchers and the scheduler.

Nothing here decides anything. It builds every object the other packages define, each with
its collaborators as explicit constructor arguments (nothing is set on an object after it is
built, and nothing looks services up through a shared locator), and starts them in the right
order (store and clients first, listeners last) so a failure at start names the setting that
is wrong. `Runtime` is the running bot's lifecycle (start, stop, readiness), not a way for
listeners to reach services: handlers/ is given exactly the services it calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt import App
from slack_sdk import WebClient

from bot.alerts.incidents import IncidentManager, Timing
from bot.alerts.pipeline import Pipeline
from bot.alerts.shared_causes import SharedCauses
from bot.chatops.approvals import EXPIRY_INTERVAL, ApprovalRequest, ApprovalService
from bot.chatops.bus import BusConsumer, Dispatch, FleetBus
from bot.chatops.interactive import Interactive
from bot.config import Settings
from bot.kube.client import KubeClient
from bot.kube.fact_watch import WatchedFacts
from bot.kube.reflector import Reflector
from bot.kube.view import PodView
from bot.kube.watch import EventWatcher, PodSignal, PodSweeper
from bot.metrics import Metrics
from bot.registry.client import RegistryClient, client_from_settings
from bot.routines import Routine, cron, cron_period, interval
from bot.routines.audit import AuditDigest
from bot.routines.cleared import CauseWatch
from bot.routines.credentials import CredentialsWatch
from bot.routines.digest import Digest
from bot.routines.presence import Heartbeat, cluster_uid
from bot.routines.quota import QuotaReader, QuotaReadings, QuotaWatch, quota_reader
from bot.slack.approvers import Approvers
from bot.slack.notifier import SlackNotifier, web_client
from bot.store import MemoryStore, RedisStore, Store, StoreUnavailable, open_store
from handlers import register

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The running bot: its services (built by `build_runtime`) and their lifecycle."""

    settings: Settings
    store: Store
    kube: KubeClient
    slack: WebClient
    registry: RegistryClient | None
    metrics: Metrics
    manager: IncidentManager
    pipeline: Pipeline
    approvals: ApprovalService
    interactive: Interactive
    #: every list+watch: the event watches, the pod view's, the fact watches (started,
    #: stopped and judged for readiness together)
    watchers: list[Reflector]
    sweeper: PodSweeper
    view: PodView
    #: the recurring jobs (watches, digests, expiry), each run once per tick across replicas
    routines: list[Routine] = field(default_factory=list)
    scheduler: BackgroundScheduler | None = None
    #: several clusters (issue 13): routing between agents; None without Redis
    bus: FleetBus | None = None
    consumers: list[BusConsumer] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def sweep(self) -> None:
        """Catch what the watches missed, and check every pod of an open incident.

        Once the pod view has listed (and while its watch is in contact), both read the view
        (no API reads for a pod that is still Pending and failing; resolution itself comes
        from the pod watch at once). Until then, the sweep lists every pod and every member
        is diagnosed again, as without a view."""
        if not self.view.current:
            self.sweeper.sweep()
        self.pipeline.recheck_incident_members()

    def tick(self) -> None:
        self.manager.tick()
        self.pipeline.store_is_back()  # the store answered: a paused pipeline probes now

    def start(self, *, watch: bool = True, schedule: bool = True) -> None:
        self._refuse_cluster_opened_as_single()
        self.pipeline.start()
        if watch:
            for watcher in self.watchers:
                watcher.start()
        if schedule:
            scheduler = BackgroundScheduler(job_defaults={"coalesce": True,
                                                          "max_instances": 1})
            scheduler.add_job(_logged(self.tick), "interval", seconds=1, id="tick")
            scheduler.add_job(_logged(_once_per_period(self.store, "sweep",
                                                       self.settings.sweep_interval_seconds,
                                                       self.manager.owner, self.sweep)),
                              "interval", seconds=self.settings.sweep_interval_seconds,
                              id="sweep")
            for routine in self.routines:
                job = routine.run if routine.every_replica else _once_per_period(
                    self.store, routine.name, routine.period, self.manager.owner, routine.run)
                scheduler.add_job(_logged(job), routine.trigger, id=routine.name,
                                  **routine.trigger_args)
            scheduler.start()
            self.scheduler = scheduler
            _logged(self.sweep)()  # first sweep now, not after one interval
        self.started.set()

    def _refuse_cluster_opened_as_single(self) -> None:
        """A Redis Cluster the store opened as one server (its plain `redis://` URL did not
        answer when the store was opened, so Cluster mode was not detected: see
        RedisStore.cluster_mode_problem): say so at start, in words, rather than fail the
        writes one by one; a restart detects it. A Redis down at start is the pipeline's to
        wait out, not a reason to refuse."""
        if not isinstance(self.store, RedisStore):
            return
        problem = self.store.cluster_mode_problem()
        if problem:
            raise RuntimeError(problem)

    def serve_bus(self, dispatch: Dispatch) -> None:
        """Join this cluster's consumer group: requests other agents routed here run through
        `dispatch` (the Bolt app), after bot.chatops.bus has verified their signature (Slack's
        for HTTP requests, the agents' for Socket Mode ones: both with SLACK_SIGNING_SECRET)."""
        if self.bus is None or self.consumers:
            return
        signing = self.settings.slack_signing_secret
        consumer = BusConsumer(self.bus, consumer=self.manager.owner, dispatch=dispatch,
                               signing_secret=signing.get_secret_value() if signing else None,
                               claim_idle=self.settings.bus_claim_idle_seconds)
        consumer.start()
        self.consumers.append(consumer)

    def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for watcher in self.watchers:
            watcher.request_stop()  # all at once: each may take up to its idle timeout
        for watcher in self.watchers:
            watcher.stop()
        self.pipeline.stop()
        if self.registry is not None:
            self.registry.close()

    def ready(self) -> tuple[bool, str]:
        """Readiness: the store answers and every watch (events, the pod view) is in contact
        with the API server (bot.kube.reflector: within its `stale_after`). Not ready names
        each part that is not, e.g.
        ``store unreachable; watch of events in all namespaces: no contact for 42 s (...)``:
        a bot that cannot see new failures or cannot record them must not look healthy."""
        if not self.started.is_set():
            return False, "starting"
        problems = [] if self.store.ping() else ["store unreachable"]
        for watcher in self.watchers:
            healthy, why = watcher.health()
            if not healthy:
                problems.append(f"{watcher.name}: {why}")
        return not problems, "; ".join(problems) or "ok"


def _once_per_period(store: Store, name: str, period: float, owner: str,
                     job: Callable[[], None]) -> Callable[[], None]:
    """`job`, run by one replica per period (`Store.take_turn`): the sweep's consistency check
    looks at every incident's pods, and replicas sharing Redis need it once, not once each."""

    def run() -> None:
        if store.take_turn(name, period, owner):
            job()

    run.__name__ = getattr(job, "__name__", name)
    return run


def _logged(job: Callable[[], None]) -> Callable[[], None]:
    """Run a scheduled job; a store outage is one warning per outage, not a traceback a
    second (the job simply runs again at its next interval)."""
    outage = False

    def run() -> None:
        nonlocal outage
        try:
            job()
            outage = False
        except StoreUnavailable as exc:
            if not outage:
                log.warning("%s waits for the store: %s", getattr(job, "__name__", job), exc)
            outage = True
        except Exception:
            log.exception("scheduled job %s failed", getattr(job, "__name__", job))

    return run


def build_runtime(settings: Settings, *, kube: KubeClient | None = None,
                  slack: WebClient | None = None, store: Store | None = None) -> Runtime:
    store = store or open_store(settings.redis_url, prefix=f"ipb:{settings.cluster_name}",
                                ca_bundle=settings.redis_ca_bundle)
    kube = kube or KubeClient.from_environment(settings.kubeconfig,
                                               read_secrets=settings.read_secrets)
    if kube.read_secrets and not settings.read_secrets:
        raise ValueError("READ_SECRETS=false, but the KubeClient given reads secrets")
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    slack = slack or web_client(token, settings.slack_api_url,
                                timeout=settings.slack_timeout_seconds)
    registry = client_from_settings(settings) if settings.registry_probe else None
    metrics = Metrics()
    timing = Timing(group_wait=settings.group_wait_seconds,
                    group_interval=settings.group_interval_seconds,
                    repeat_interval=settings.repeat_interval_seconds,
                    claim_ttl=settings.claim_ttl_seconds)
    notifier = SlackNotifier(slack, settings.alert_channel, store,
                             remediation=settings.remediation_enabled)
    # several clusters share a cause only through one Redis (issue 13); without it, no fleet
    shared = (SharedCauses(store.fleet(), settings.cluster_name, link=notifier.permalink)
              if settings.redis_url else None)
    manager = IncidentManager(store, notifier, cluster=settings.cluster_name, timing=timing,
                              metrics=metrics, shared=shared)

    def on_recovered(namespace: str, pod: str) -> None:
        """The pod watch saw a pod stop waiting on a pull: it leaves its incidents now. If the
        store cannot say so, the pipeline's diagnosis will (it waits out store outages)."""
        try:
            manager.pod_recovered(namespace, pod)
        except StoreUnavailable:
            pipeline.submit(namespace, pod)

    view = PodView(kube, namespaces=settings.watch_namespaces or None,
                   on_recovered=on_recovered, max_documents=settings.view_max_documents)
    pipeline = Pipeline(kube, manager, registry=registry,
                        known_hosts=settings.registry_endpoints, metrics=metrics, view=view)
    approvals = ApprovalService(
        store, kube, slack, Approvers(settings.approvers, slack),
        ttl=settings.approval_ttl_seconds,
        require_second_approver=settings.require_second_approver,
        allowed_namespaces=settings.watch_namespaces or None, metrics=metrics,
        remediation_enabled=settings.remediation_enabled,
        on_done=lambda request: _note_retry(manager, request))
    interactive = Interactive(settings=settings, kube=kube, registry=registry,
                              incidents=manager, approvals=approvals, slack=slack)

    def on_signal(signal: PodSignal) -> None:
        pipeline.signal(signal.namespace, signal.pod, signal.kind)

    namespaces: Iterable[str | None] = settings.watch_namespaces or [None]
    watchers: list[Reflector] = [
        EventWatcher(kube, store, on_signal, namespace=ns,
                     start_window=settings.start_window_seconds,
                     on_api_back=pipeline.api_is_back)
        for ns in namespaces]
    watchers += view.reflectors
    # pull secrets and service accounts by list+watch: the diagnosis reads them from there
    watched_facts = WatchedFacts(kube, settings.watch_namespaces or None)
    kube.facts.source = watched_facts
    watchers += watched_facts.reflectors
    sweeper = PodSweeper(kube, on_signal, namespaces=settings.watch_namespaces or None)
    routines = _routines(settings, store, kube, slack, manager, watched_facts, view)
    routines.append(interval("approval-expiry", approvals.expire_due, EXPIRY_INTERVAL))
    # an open incident's cause going away (issue 12), seen within one sweep
    # a rate-limited incident's Docker Hub quota coming back: reuses the quota watch's reading
    read_quota = (QuotaReadings(store).reusing(_quota_reader(settings))
                  if settings.quota_check_interval_seconds > 0 else None)
    causes = CauseWatch(manager, watched_facts, view, kube=kube, registry=registry,
                        read_quota=read_quota)
    routines.append(interval("cause-watch", causes.run, settings.sweep_interval_seconds))
    if settings.heartbeat_seconds > 0 and not isinstance(store, MemoryStore):
        routines.append(_heartbeat(settings, store, kube, manager, watchers))
    fleet = store.fleet()
    signing = settings.slack_signing_secret
    bus = (FleetBus(fleet, cluster=settings.cluster_name,
                    channel_clusters=settings.channel_clusters,
                    heartbeat_seconds=settings.heartbeat_seconds, metrics=metrics,
                    signing_secret=signing.get_secret_value() if signing else None)
           if isinstance(fleet, RedisStore) else None)
    runtime = Runtime(settings, store, kube, slack, registry, metrics, manager, pipeline,
                      approvals, interactive, watchers, sweeper, view, routines, bus=bus)
    _gauges(runtime)
    return runtime


def _heartbeat(settings: Settings, store: Store, kube: KubeClient, manager: IncidentManager,
               watchers: list[Reflector]) -> Routine:
    """Every replica's beat into the fleet's presence (issue 13): only with Redis, shared by
    the clusters' agents; an in-process store has no one to tell."""
    events = [w for w in watchers if isinstance(w, EventWatcher)]

    def last_event() -> float | None:
        return max((w.last_event_at for w in events if w.last_event_at is not None),
                   default=None)

    beat = Heartbeat(store, cluster=settings.cluster_name, owner=manager.owner,
                     interval=settings.heartbeat_seconds,
                     open_incidents=lambda: len(manager.active_ids()),
                     last_watch_event_at=last_event, uid=lambda: cluster_uid(kube))
    return Routine("heartbeat", beat.run, "interval", {"seconds": settings.heartbeat_seconds},
                   settings.heartbeat_seconds, every_replica=True)


def _note_retry(manager: IncidentManager, request: ApprovalRequest) -> None:
    """An approved "Retry now" ran: its incident records when (for the time it saved)."""
    if request.action == "retry" and request.incident_id:
        manager.retried(request.incident_id)


def _quota_reader(settings: Settings) -> QuotaReader:
    """Docker Hub's quota check at the configured endpoints."""
    return quota_reader(settings.dockerhub_auth_url, settings.dockerhub_registry_url,
                        settings.registry_timeout_seconds)


def _routines(settings: Settings, store: Store, kube: KubeClient, slack: WebClient,
              manager: IncidentManager, facts: WatchedFacts, view: PodView) -> list[Routine]:
    """The scheduled watches the settings turn on (bot/routines)."""
    routines: list[Routine] = []
    if settings.quota_check_interval_seconds > 0:
        quota = QuotaWatch(store, slack, settings.alert_channel, kube=kube, facts=facts,
                           view=view, warn_below=settings.quota_warn_remaining,
                           read_quota=QuotaReadings(store).recording(_quota_reader(settings)))
        routines.append(interval("dockerhub-quota", quota.run,
                                 settings.quota_check_interval_seconds))
    if settings.digest_cron:
        digest = Digest(manager, slack, settings.alert_channel, cluster=settings.cluster_name,
                        period=cron_period(settings.digest_cron))
        routines.append(cron("digest", digest.run, settings.digest_cron))
    return routines + _audit_routines(settings, kube, slack, store)


def _audit_routines(settings: Settings, kube: KubeClient, slack: WebClient,
                    store: Store) -> list[Routine]:
    """The weekly prevention audit (AUDIT_CRON) and the credentials watch
    (CREDENTIALS_WATCH_SECONDS); an empty or zero setting turns each off."""
    namespaces = settings.watch_namespaces or None
    routines: list[Routine] = []
    if settings.audit_cron:
        audit = AuditDigest(kube, slack, settings.alert_channel, namespaces)
        routines.append(cron("audit-digest", audit.run, settings.audit_cron))
    if settings.credentials_watch_seconds > 0:
        watch = CredentialsWatch(kube, slack, store, settings.alert_channel, namespaces)
        routines.append(interval("credentials-watch", watch.run,
                                 settings.credentials_watch_seconds))
    return routines


def _gauges(runtime: Runtime) -> None:
    """Gauges read at scrape time; a store outage reads as NaN rather than a failed scrape."""

    def open_incidents() -> float:
        try:
            return float(len(runtime.manager.active_ids()))
        except StoreUnavailable:
            return float("nan")

    runtime.metrics.gauge("imagepull_bot_incidents_open", "Incidents not yet resolved",
                          open_incidents)
    runtime.metrics.gauge("imagepull_bot_watch_relists",
                          "Relists after 410 Gone (event watches and the pod view)",
                          lambda: float(sum(w.relists for w in runtime.watchers)))
    runtime.metrics.gauge("imagepull_bot_retries_pending",
                          "Pods waiting for a retry of their diagnosis (at most one each)",
                          lambda: float(len(runtime.pipeline.pending_retries())))
    runtime.metrics.gauge("imagepull_bot_diagnoses_paused",
                          "1 while diagnoses wait out a Kubernetes API or store outage",
                          lambda: float(runtime.pipeline.outage is not None))
    runtime.metrics.gauge("imagepull_bot_watch_failures",
                          "Consecutive failed watch attempts (0 while the watch is healthy)",
                          lambda: float(sum(w.failures for w in runtime.watchers)))
    runtime.metrics.gauge("imagepull_bot_view_pods",
                          "Pods held by the pod view (Pending, and tracked ones failing a pull)",
                          lambda: float(len(runtime.view)))
    runtime.metrics.gauge("imagepull_bot_view_documents",
                          "Failing pods whose diagnosis document the pod view holds "
                          "(at most VIEW_MAX_DOCUMENTS)",
                          lambda: float(runtime.view.documents))
    runtime.metrics.gauge("imagepull_bot_view_pods_without_document",
                          "Failing pods held beyond VIEW_MAX_DOCUMENTS, without their document "
                          "(each diagnosis of one reads the pod from the API)",
                          lambda: float(runtime.view.without_document))
    runtime.metrics.gauge("imagepull_bot_pipeline_pods",
                          "Pods queued, being diagnosed or waiting for a retry (each once)",
                          lambda: float(runtime.pipeline.pods()))
    runtime.metrics.gauge("imagepull_bot_watch_processed_events",
                          "Events the event watches remember as processed (to skip them on a "
                          "relist; at most 20,000 per watch)",
                          lambda: float(sum(len(w.processed) for w in runtime.watchers
                                            if isinstance(w, EventWatcher))))
    bus = runtime.bus
    if bus is not None:
        def bus_pending() -> float:
            try:
                return float(bus.pending())
            except redis.exceptions.RedisError:
                return float("nan")

        runtime.metrics.gauge("imagepull_bot_bus_pending",
                              "Entries of this cluster's request stream read by a replica and "
                              "not yet acknowledged (XPENDING): running, or left by a replica "
                              "that died, to be taken over", bus_pending)


def build_bolt_app(settings: Settings, runtime: Runtime, **kwargs: Any) -> App:
    """The Bolt app with the bot's listeners (handlers/ registers them)."""
    signing = settings.slack_signing_secret
    app = App(client=runtime.slack,
              signing_secret=signing.get_secret_value() if signing else None,
              token_verification_enabled=False, **kwargs)
    register(app, interactive=runtime.interactive, approvals=runtime.approvals,
             incidents=runtime.manager, store=runtime.store,
             cluster_name=settings.cluster_name)
    return app
