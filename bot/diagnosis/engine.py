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
from bot.diagnosis.explain import EXPLANATIONS, summarize
from bot.diagnosis.facts import PodFacts, PullSecretInfo, RegistryFacts, WorkloadRef
from bot.diagnosis.fixes import FixContext, build_fixes
from bot.diagnosis.imageref import ImageRef, registry_matches, try_parse_image
from bot.diagnosis.model import Backoff, ContainerDiagnosis, PodDiagnosis
from bot.diagnosis.owners import infer_workload

BACKOFF_INITIAL_SECONDS = 10
BACKOFF_MAX_SECONDS = 300
MAX_EVIDENCE = 6
#: How the registry's answer starts in a diagnosis's evidence (always its last line).
REGISTRY_EVIDENCE = "registry: "
#: How the admission rewrite (`image_rewritten`) starts in the evidence (before the registry's).
ADMISSION_EVIDENCE = "admission: "

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
    cause = verdict.cause
    ambiguous = verdict.text_class is not None and verdict.text_class.ambiguous_denied
    if ambiguous:
        # Docker Hub will not say whether the repo is missing or the caller lacks access:
        # without a pull secret for that registry, missing credentials is the likely cause.
        cause = Cause.REPOSITORY_NOT_FOUND if secrets.matching else Cause.AUTH_REQUIRED
    registry = facts.registry.get(container.image)
    cause = _with_registry(cause, registry, ambiguous=ambiguous)
    repository_uncertain = cause is Cause.TAG_NOT_FOUND and not (
        (verdict.evidence and _MANIFEST_MISSING.search(verdict.evidence))
        or (registry is not None and registry.repository_exists))
    policy = container.pull_policy or _default_pull_policy(ref)
    findings = _findings(facts, cause, ref, policy, secrets)
    template_image = _template_image(facts, container)
    if template_image is not None:
        findings.append(Finding.IMAGE_REWRITTEN)
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
        template_image=template_image,
        rewriting_webhooks=facts.mutating_webhooks or (),
    )
    return ContainerDiagnosis(
        container=container.name,
        image=container.image,
        cause=cause,
        transient=CAUSES[cause].transient,
        summary=summarize(cause, container.image, ref,
                          repository_uncertain=repository_uncertain),
        explanation=EXPLANATIONS[cause],
        evidence=_evidence(verdict, container, events, registry,
                           _rewrite_evidence(facts, container, template_image)),
        workload=workload,
        findings=tuple(findings),
        fixes=build_fixes(cause, context),
        backoff=estimate_backoff(events, facts.now, pulls=CAUSES[cause].kubelet_pulls),
        init_container=container.init,
        suggested_image=suggested_image,
    )


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


def _template_image(facts: PodFacts, container: _Container) -> str | None:
    """The image the pod's template asks for, when the pod runs another one (None: the same,
    or the template is not known)."""
    if facts.template is None:
        return None
    wanted = facts.template.images.get(container.name)
    if wanted is None or wanted == container.image:
        return None
    return wanted


def _rewrite_evidence(facts: PodFacts, container: _Container,
                      template_image: str | None) -> str | None:
    """One evidence line for `image_rewritten`: both images and who may have rewritten it."""
    if template_image is None or facts.template is None:
        return None
    line = (f"{ADMISSION_EVIDENCE}{facts.template.source.kubectl_ref} asks for "
            f"{template_image} but the pod has {container.image}")
    if facts.mutating_webhooks:
        return line + "; mutating webhooks matching this namespace: " + ", ".join(
            facts.mutating_webhooks)
    if facts.mutating_webhooks is None:
        return line + "; the mutating webhook configurations could not be read"
    return line + "; no mutating webhook matches this namespace (a policy engine or an " \
        "admission plugin may have rewritten it)"


def _evidence(verdict: _Verdict, container: _Container, events: Sequence[KubeletEvent],
              registry: RegistryFacts | None, admission: str | None = None
              ) -> tuple[str, ...]:
    """The deciding kubelet text first, then the other distinct pull texts, oldest first;
    an admission rewrite next; what the registry answered comes last."""
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
    texts = texts[:MAX_EVIDENCE]
    if admission:
        texts.append(admission)
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
