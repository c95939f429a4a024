"""diagnose(): from what Kubernetes says about a pod to cause, findings and fixes.

Pure: it reads `PodFacts` and returns a `PodDiagnosis`; nothing here talks to a network, so
every rule is tested from recorded kubelet texts and objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.diagnosis.causes import CAUSES, Cause, Finding
from bot.diagnosis.classify import (
    TextClass,
    classify_text,
    failed_pull_image,
    pull_back_off_image,
)
from bot.diagnosis.cloud import ECR_TOKEN_LIFETIME, cloud_registry
from bot.diagnosis.events import (
    PULL_ERROR_TEXTS,
    PULL_WAITING_REASONS,
    KubeletEvent,
    events_for_pod,
    pull_event_kind,
)
from bot.diagnosis.explain import EXPLANATIONS, HOW_TO_TELL, alternatives_line, summarize
from bot.diagnosis.facts import (
    EARLIEST_TIME,
    NodePull,
    PodFacts,
    PullSecretInfo,
    RegistryFacts,
    WorkloadRef,
)
from bot.diagnosis.fixes import FixContext, build_fixes
from bot.diagnosis.imageref import (
    ImageRef,
    is_external_registry,
    registry_matches,
    try_parse_image,
)
from bot.diagnosis.markup import span_body
from bot.diagnosis.model import Alternative, Backoff, ContainerDiagnosis, PodDiagnosis
from bot.diagnosis.owners import infer_workload

BACKOFF_INITIAL_SECONDS = 10
BACKOFF_MAX_SECONDS = 300
MAX_EVIDENCE = 6
#: How the registry's answer starts in a diagnosis's evidence (always its last line).
REGISTRY_EVIDENCE = "registry: "
#: How what the node showed starts in a diagnosis's evidence (before the registry's line).
NODE_EVIDENCE = "node: "

_MISSING_SECRETS = re.compile(r"Unable to retrieve some image pull secrets \((?P<names>[^)]*)\)")
_HTTP_TO_HTTPS = re.compile(r"server gave HTTP response to HTTPS client", re.IGNORECASE)
#: Wordings that name the manifest (tag) as missing; containerd's bare "<ref>: not found" is
#: also what a missing repository produces.
_MANIFEST_MISSING = re.compile(r"manifest unknown|manifest for \S+ not found|MANIFEST_UNKNOWN",
                               re.IGNORECASE)


@dataclass(frozen=True)
class _Container:
    name: str
    image: str
    pull_policy: str | None
    init: bool
    status: Mapping[str, Any] | None


def diagnose(facts: PodFacts) -> PodDiagnosis:
    """Diagnose every container of the pod that cannot pull its image (none: empty list)."""
    meta = facts.pod.get("metadata") or {}
    events = events_for_pod(facts.events, facts.namespace, facts.name, meta.get("uid"))
    workload = facts.workload or infer_workload(facts.pod)
    results = []
    for container in _containers(facts.pod):
        own_events = [e for e in events if _belongs_to(e, container)]
        if _cannot_pull(container, own_events):
            results.append(_diagnose_container(facts, container, own_events, events, workload))
    return PodDiagnosis(facts.namespace, facts.name, tuple(results))


# -- which containers ------------------------------------------------------------------------


def _containers(pod: Mapping[str, Any]) -> Iterator[_Container]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    for key, status_key, init in (
        ("initContainers", "initContainerStatuses", True),
        ("containers", "containerStatuses", False),
    ):
        statuses = {s.get("name"): s for s in status.get(status_key) or []}
        for c in spec.get(key) or []:
            yield _Container(
                name=str(c.get("name")),
                image=str(c.get("image") or ""),
                pull_policy=c.get("imagePullPolicy"),
                init=init,
                status=statuses.get(c.get("name")),
            )


def _belongs_to(event: KubeletEvent, container: _Container) -> bool:
    if event.container is not None:
        return event.container == container.name
    image = _event_image(event)
    return image is not None and image == container.image


def _event_image(event: KubeletEvent) -> str | None:
    return failed_pull_image(event.message) or pull_back_off_image(event.message)


def _is_pull_failure(event: KubeletEvent) -> bool:
    """The same test the watcher uses (bot/diagnosis/events.py): one rule, no drift."""
    return pull_event_kind(event) == "pull_failure"


def _waiting(container: _Container) -> Mapping[str, Any] | None:
    state = (container.status or {}).get("state") or {}
    waiting = state.get("waiting")
    return waiting if isinstance(waiting, Mapping) else None


def _cannot_pull(container: _Container, events: Sequence[KubeletEvent]) -> bool:
    """Waiting on an image now, or (no decisive status) failed pulls newer than any success."""
    waiting = _waiting(container)
    if waiting is not None and waiting.get("reason") in PULL_WAITING_REASONS:
        return True
    state = (container.status or {}).get("state") or {}
    if "running" in state or "terminated" in state:
        return False
    last_failure = max((_stamp(e) for e in events if _is_pull_failure(e)), default=None)
    if last_failure is None:
        return False
    last_success = max((_stamp(e) for e in events if pull_event_kind(e) == "pulled"),
                       default=None)
    return last_success is None or last_failure > last_success


def _stamp(event: KubeletEvent) -> float:
    stamp = event.last_seen or event.first_seen
    return stamp.timestamp() if stamp else 0.0


# -- one container ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    cause: Cause
    evidence: str | None
    text_class: TextClass | None


def _classify(container: _Container, events: Sequence[KubeletEvent]) -> _Verdict:
    """The newest event text that names a cause decides, then the container's waiting message."""
    candidates: list[tuple[str | None, str]] = []
    for event in reversed(events):
        if not _is_pull_failure(event):
            continue
        image = _event_image(event)
        if image is not None and image != container.image:
            continue  # an older image of a pod whose image was since changed
        candidates.append((event.reason, event.message))
    # The waiting message repeats the last error (kubelet >= 1.30) and outlives expired events.
    waiting = _waiting(container)
    if waiting is not None:
        candidates.append((waiting.get("reason"), str(waiting.get("message") or "")))
    unknown: _Verdict | None = None
    for reason, text in candidates:
        found = classify_text(text, reason)
        if found is None:
            continue
        if found.cause is Cause.UNKNOWN:
            unknown = unknown or _Verdict(Cause.UNKNOWN, text, found)
            continue
        return _Verdict(found.cause, text or str(reason), found)
    return unknown or _Verdict(Cause.UNKNOWN, None, None)


def _diagnose_container(
    facts: PodFacts,
    container: _Container,
    events: Sequence[KubeletEvent],
    pod_events: Sequence[KubeletEvent],
    workload: WorkloadRef,
) -> ContainerDiagnosis:
    ref = try_parse_image(container.image)
    verdict = _classify(container, events)
    secrets = _SecretView.build(facts, pod_events, ref)
    ambiguous = verdict.text_class is not None and verdict.text_class.ambiguous_denied
    cause, alternatives = _readings(verdict, secrets)
    registry = facts.registry.get(container.image)
    sharpened = _with_registry(cause, registry, ambiguous=ambiguous)
    if sharpened is not cause:  # the registry answered what the words left open
        cause, alternatives = sharpened, ()
    elif (cause is Cause.FORBIDDEN and Cause.IP_BLOCKED in alternatives
          and registry is not None and registry.answered and registry.probe_cause is None):
        # the pod's own credentials pull the image from the bot's network: they have the
        # permission, so the node's network is what the registry refuses
        cause, alternatives = Cause.IP_BLOCKED, ()
    repository_uncertain = cause is Cause.TAG_NOT_FOUND and not (
        (verdict.evidence and _MANIFEST_MISSING.search(verdict.evidence))
        or (registry is not None and registry.repository_exists))
    policy = container.pull_policy or _default_pull_policy(ref)
    findings = _findings(facts, cause, ref, policy, secrets)
    proxy_evidence = _proxy_evidence(facts, cause, ref)
    if proxy_evidence:
        findings.append(Finding.PROXY_SUSPECTED)
    # the one place a registry suggestion is taken: its kind as a finding, the image itself
    # for the fixes (FixContext) and for the JSON (ContainerDiagnosis.suggested_image)
    suggested_image = None
    if registry is not None and registry.suggested_image and registry.suggestion_kind:
        findings.append(registry.suggestion_kind)
        suggested_image = registry.suggested_image
    node = (facts.pod.get("spec") or {}).get("nodeName")
    context = FixContext(
        namespace=facts.namespace,
        workload=workload,
        container=container.name,
        image=container.image,
        ref=ref,
        init_container=container.init,
        service_account=facts.service_account_name,
        service_account_pull_secrets=facts.service_account_pull_secrets or (),
        node=str(node) if node else None,
        findings=frozenset(findings),
        missing_secret=secrets.missing[0] if secrets.missing else None,
        wrong_registry_secret=_secret_to_rewrite(findings, secrets),
        unreferenced_secret=secrets.unreferenced[0].name if secrets.unreferenced else None,
        plain_http=bool(verdict.evidence and _HTTP_TO_HTTPS.search(verdict.evidence)),
        repository_uncertain=repository_uncertain,
        pull_policy=policy,
        has_registry_secret=bool(secrets.matching),
        suggested_image=suggested_image,
        pin_digest=registry.digest if registry else None,
        alternatives=alternatives,
        runtime=_runtime(facts.node),
    )
    return ContainerDiagnosis(
        container=container.name,
        image=container.image,
        cause=cause,
        transient=CAUSES[cause].transient,
        summary=summarize(cause, container.image, ref,
                          repository_uncertain=repository_uncertain)
        + alternatives_line([(a, HOW_TO_TELL[a]) for a in alternatives])
        + _unseen_line(findings, proxy_evidence, facts.node),
        explanation=EXPLANATIONS[cause],
        evidence=_evidence(verdict, container, events, registry, node=proxy_evidence),
        workload=workload,
        findings=tuple(findings),
        fixes=build_fixes(cause, context),
        backoff=estimate_backoff(events, facts.now, pulls=CAUSES[cause].kubelet_pulls),
        init_container=container.init,
        suggested_image=suggested_image,
        alternatives=tuple(Alternative(a, HOW_TO_TELL[a]) for a in alternatives),
    )


def _readings(verdict: _Verdict, secrets: _SecretView) -> tuple[Cause, tuple[Cause, ...]]:
    """The best reading of the deciding text for this pod, and the others it can mean.

    The pod's credentials decide the order: Docker Hub's "pull access denied" is missing
    credentials when the pod has none for that registry, else a missing repository; a 403
    with no reason is missing permission when the pod sends credentials, else the
    registry's front blocking the node's address — and then the other reading is that the
    registry wants credentials, not that it weighed them.
    """
    found = verdict.text_class
    if found is None:
        return verdict.cause, ()
    if found.ambiguous_denied:
        if secrets.matching:
            return Cause.REPOSITORY_NOT_FOUND, (Cause.AUTH_REQUIRED,)
        return Cause.AUTH_REQUIRED, (Cause.REPOSITORY_NOT_FOUND,)
    sends_credentials = bool(secrets.matching) or (
        not secrets.contents_known and bool(secrets.referenced))
    if verdict.cause is Cause.FORBIDDEN and Cause.IP_BLOCKED in found.alternatives:
        # no body, no reason: the credentials decide which reading comes first
        if sends_credentials:
            return Cause.FORBIDDEN, (Cause.IP_BLOCKED,)
        return Cause.IP_BLOCKED, (Cause.AUTH_REQUIRED,)
    if verdict.cause is Cause.IP_BLOCKED and Cause.FORBIDDEN in found.alternatives:
        # a page from the registry's front: a block first either way; without credentials
        # the other reading is that the registry wants some
        return Cause.IP_BLOCKED, (Cause.FORBIDDEN if sends_credentials else Cause.AUTH_REQUIRED,)
    return verdict.cause, tuple(found.alternatives)


def _runtime(node: Mapping[str, Any] | None) -> str | None:
    """The node's container runtime ("containerd", "cri-o", "docker", ...) from
    `status.nodeInfo.containerRuntimeVersion` (`containerd://1.7.20`); None when unknown."""
    info = ((node or {}).get("status") or {}).get("nodeInfo") or {}
    version = str(info.get("containerRuntimeVersion") or "")
    name, sep, _ = version.partition("://")
    return name.lower() if sep and name else None


#: Runtimes that never read Docker's client configuration for the kubelet's pulls.
_CRI_RUNTIMES = frozenset({"containerd", "cri-o"})
#: Causes a proxy that the runtime does not use (or uses for the wrong hosts) produces.
_PROXY_CAUSES = frozenset({Cause.NETWORK_UNREACHABLE, Cause.DNS_FAILURE, Cause.TLS_UNTRUSTED})
#: How many of the node's other pulls the evidence names.
_PROXY_EVIDENCE_PULLS = 2


def _proxy_evidence(facts: PodFacts, cause: Cause, ref: ImageRef | None) -> tuple[str, ...]:
    """Evidence lines for `proxy_suspected`, or () when the evidence is not there.

    A network cause for an external registry, while the same node pulled from another
    registry recently (`facts.node_pulls`, from its kubelet's `Pulled` events): the node has a
    way out, so the path to this registry differs — the runtime's HTTPS_PROXY (the guide's
    fix) or a NO_PROXY that catches this host. Without the node's pulls, nothing is said.
    """
    if cause not in _PROXY_CAUSES or ref is None or facts.node_pulls is None:
        return ()
    if not is_external_registry(ref.registry):
        return ()
    others: dict[str, NodePull] = {}
    for pull in sorted(facts.node_pulls, key=lambda p: p.at or EARLIEST_TIME, reverse=True):
        pulled = try_parse_image(pull.image)
        if pulled is None or registry_matches(pulled.registry, ref.registry):
            continue
        others.setdefault(pulled.registry, pull)
    if not others:
        return ()
    lines = []
    for host, pull in list(others.items())[:_PROXY_EVIDENCE_PULLS]:
        when = f" at {pull.at.strftime('%H:%M:%S')} UTC" if pull.at else ""
        who = f" for pod {pull.pod}" if pull.pod else ""
        lines.append(f"{NODE_EVIDENCE}the same node pulled {pull.image} from {host}{who}{when}")
    return tuple(lines)


def _with_registry(cause: Cause, registry: RegistryFacts | None, *, ambiguous: bool) -> Cause:
    """Sharpen the kubelet's cause with what the registry answered the pod's credentials.

    Node-side causes stay: the nodes' network, quota and disk are not the bot's."""
    if registry is None or CAUSES[cause].node_side:
        return cause
    if registry.repository_exists is False and (cause is Cause.TAG_NOT_FOUND or ambiguous):
        return Cause.REPOSITORY_NOT_FOUND
    if cause is Cause.UNKNOWN and registry.probe_cause is not None:
        return registry.probe_cause  # the events expired; the registry still knows
    return cause


def _secret_to_rewrite(findings: Sequence[Finding], secrets: _SecretView) -> str | None:
    """The referenced secret whose contents must be re-created (expired or wrong host)."""
    if Finding.ECR_TOKEN_EXPIRED in findings and secrets.matching:
        return secrets.matching[0].name
    if Finding.PULL_SECRET_WRONG_REGISTRY in findings and secrets.present:
        return secrets.present[0].name
    return None


def _default_pull_policy(ref: ImageRef | None) -> str:
    """The API server's default: Always for :latest or no tag, IfNotPresent otherwise."""
    if ref is None or ref.digest:
        return "IfNotPresent"
    return "Always" if ref.effective_tag == "latest" else "IfNotPresent"


def _unseen_line(findings: Sequence[Finding], proxy_evidence: Sequence[str],
                 node: Mapping[str, Any] | None) -> str:
    """What the events do not tell, in the summary (the line a person reads first; the
    alert shows it), with its evidence: the node's runtime, the node's other pulls."""
    line = ""
    if Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG in findings:
        runtime = "CRI-O" if _runtime(node) == "cri-o" else "containerd"
        line += (f" The node runs {runtime}, which does not read /root/.docker/config.json "
                 "for the kubelet's pulls (not since dockershim's removal): give the pod an "
                 "imagePullSecret.")
    if Finding.PROXY_SUSPECTED in findings and proxy_evidence:
        # the pod's name comes from an event, which nobody validated: no markup from it
        seen = span_body(proxy_evidence[0].removeprefix(NODE_EVIDENCE))
        line += (f" Proxy suspected: {seen[0].upper()}{seen[1:]}, so the node has a way "
                 "out; the runtime's HTTPS_PROXY / NO_PROXY likely send this registry "
                 "another way.")
    return line


def _evidence(verdict: _Verdict, container: _Container, events: Sequence[KubeletEvent],
              registry: RegistryFacts | None, *, node: Sequence[str] = ()
              ) -> tuple[str, ...]:
    """The deciding kubelet text first, then the other distinct pull texts, oldest first;
    then what the node showed (`node`: its other pulls); what the registry answered comes
    last."""
    texts: list[str] = []
    if verdict.evidence:
        texts.append(verdict.evidence)
    for event in events:
        # "Error: ErrImagePull" and friends repeat the state, not the reason: leave them out.
        if (_is_pull_failure(event) and event.message not in texts
                and event.message.strip() not in PULL_ERROR_TEXTS):
            texts.append(event.message)
    waiting = _waiting(container)
    message = str((waiting or {}).get("message") or "")
    repeated = message.partition("ErrImagePull: ")[2]
    if message and message not in texts and not (repeated and any(repeated in t for t in texts)):
        texts.append(message)
    texts = texts[:MAX_EVIDENCE - len(node)] + list(node)
    if registry is not None and registry.probe_summary:
        texts.append(f"{REGISTRY_EVIDENCE}{registry.probe_summary}")
    return tuple(texts)


# -- context: secrets, policy, node ----------------------------------------------------------


@dataclass(frozen=True)
class _SecretView:
    """The pod's pull secrets, seen from the image's registry."""

    referenced: tuple[str, ...]
    missing: tuple[str, ...]
    present: tuple[PullSecretInfo, ...]
    matching: tuple[PullSecretInfo, ...]
    unreferenced: tuple[PullSecretInfo, ...]
    contents_known: bool

    @classmethod
    def build(cls, facts: PodFacts, events: Sequence[KubeletEvent],
              ref: ImageRef | None) -> _SecretView:
        referenced = facts.pod_pull_secret_names
        missing: list[str] = []
        present: list[PullSecretInfo] = []
        known = facts.referenced_secrets is not None
        if facts.referenced_secrets is not None:
            for name in referenced:
                info = facts.referenced_secrets.get(name)
                if info is None:
                    missing.append(name)
                else:
                    present.append(info)
        for event in events:  # the kubelet's own word, which also works offline
            if match := _MISSING_SECRETS.search(event.message):
                for name in (n.strip() for n in match.group("names").split(",")):
                    if name and name not in missing:
                        missing.append(name)
        present = [p for p in present if p.name not in missing]
        registry = ref.registry if ref else None
        matching = [p for p in present if registry and _serves(p, registry)]
        all_referenced = set(referenced) | set(facts.service_account_pull_secrets or ())
        unreferenced = [
            s for s in facts.namespace_pull_secrets or ()
            if s.name not in all_referenced and registry and _serves(s, registry)
        ]
        return cls(tuple(referenced), tuple(missing), tuple(present), tuple(matching),
                   tuple(unreferenced), known)


def _serves(secret: PullSecretInfo, registry: str) -> bool:
    return any(registry_matches(key, registry) for key in secret.registries)


def _findings(facts: PodFacts, cause: Cause, ref: ImageRef | None, policy: str,
              secrets: _SecretView) -> list[Finding]:
    found: list[Finding] = []
    credentials = CAUSES[cause].credentials_refused
    if not facts.secrets_read and (credentials or CAUSES[cause].credentials_suspect):
        found.append(Finding.SECRETS_NOT_READ)
    if secrets.missing:
        found.append(Finding.PULL_SECRET_MISSING)
    if credentials:
        if not secrets.referenced:
            found.append(Finding.NO_PULL_SECRET)
        if secrets.contents_known and secrets.present and not secrets.matching:
            found.append(Finding.PULL_SECRET_WRONG_REGISTRY)
        if secrets.unreferenced and not secrets.matching:
            found.append(Finding.PULL_SECRET_NOT_REFERENCED)
        cloud = cloud_registry(ref.registry) if ref else None
        if cloud is not None:
            found.append(Finding.CLOUD_REGISTRY_CREDENTIALS)
            if cloud.product == "ECR" and _ecr_expired(secrets.matching, facts.now):
                found.append(Finding.ECR_TOKEN_EXPIRED)
        if not secrets.referenced and _runtime(facts.node) in _CRI_RUNTIMES:
            # the node may well hold credentials in /root/.docker/config.json (set up for
            # dockershim, or by hand): containerd and CRI-O do not read it for the kubelet
            found.append(Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG)
        if (policy == "IfNotPresent" and not secrets.matching and ref is not None
                and _at_least(facts.cluster_version, (1, 33)) and _on_node(facts.node, ref)):
            # IfNotPresent with the image already cached would never pull: only the
            # KubeletEnsureSecretPulledImages gate makes the kubelet re-check credentials.
            found.append(Finding.ENSURE_SECRET_PULLED_IMAGES)
    if ref is not None and ref.implicit_latest:
        found.append(Finding.IMPLICIT_LATEST_TAG)
    if policy == "Never":
        found.append(Finding.POLICY_NEVER)
    if _disk_pressure(facts.node):
        found.append(Finding.NODE_DISK_PRESSURE)
    return found


def _ecr_expired(secrets: Sequence[PullSecretInfo], now: datetime) -> bool:
    stamps = [s.updated_at for s in secrets if s.updated_at is not None]
    return bool(stamps) and now - max(stamps) > ECR_TOKEN_LIFETIME


_VERSION = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)")


def _at_least(version: str | None, wanted: tuple[int, int]) -> bool:
    match = _VERSION.match(version or "")
    if not match:
        return False
    return (int(match.group("major")), int(match.group("minor"))) >= wanted


def _on_node(node: Mapping[str, Any] | None, ref: ImageRef) -> bool:
    """Whether the node reports the image as cached (status.images, at most 50 listed)."""
    for image in ((node or {}).get("status") or {}).get("images") or []:
        for name in image.get("names") or []:
            cached = try_parse_image(str(name))
            if cached is None or cached.name != ref.name:
                continue
            if (ref.digest and cached.digest == ref.digest) or (
                    not ref.digest and cached.tag == ref.effective_tag):
                return True
    return False


def _disk_pressure(node: Mapping[str, Any] | None) -> bool:
    for condition in ((node or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "DiskPressure" and condition.get("status") == "True":
            return True
    return False


# -- back-off --------------------------------------------------------------------------------


def estimate_backoff(events: Sequence[KubeletEvent], now: datetime, *, pulls: bool = True
                     ) -> Backoff:
    """Attempts so far and seconds until the kubelet's next pull.

    Each failed pull is one `Failed to pull image` event occurrence (count); after the n-th
    failure the kubelet waits min(10 s * 2^(n-1), 300 s).
    """
    failures = [e for e in events if e.reason == "Failed" and failed_pull_image(e.message)]
    if not failures:
        failures = [e for e in events if e.message.strip() == "Error: ErrImagePull"]
    attempts = sum(e.count for e in failures)
    last = max((e.last_seen for e in failures if e.last_seen), default=None)
    if not pulls or attempts == 0 or last is None:
        return Backoff(attempts, None)
    delay = BACKOFF_MAX_SECONDS
    if attempts <= 6:
        delay = min(BACKOFF_INITIAL_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS)
    remaining = (last + timedelta(seconds=delay) - now).total_seconds()
    return Backoff(attempts, max(0, round(remaining)))
