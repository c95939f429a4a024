"""The prevention checks: what the field guide's "How to prevent recurrence" asks of every pod
template, checked before anything fails.

Pure rules over an `Inventory` (bot/diagnosis/workloads.py). Each finding says what is wrong in
plain words and carries the commands that fix it, built and shell-quoted by
bot/diagnosis/fixes.py.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.diagnosis import fixes
from bot.diagnosis.audit_model import (
    AuditFinding,
    Check,
    Container,
    containers,
    effective_pull_policy,
    immutable,
)
from bot.diagnosis.cloud import cloud_registry
from bot.diagnosis.facts import WorkloadRef
from bot.diagnosis.markup import code_span
from bot.diagnosis.workloads import PIN_DIGESTS_LABEL, Inventory, PodTemplate

Rule = Callable[[Container, Inventory], AuditFinding | None]


def _invalid(c: Container, inv: Inventory) -> AuditFinding | None:
    if c.ref is not None:
        return None
    return c.finding(Check.INVALID_IMAGE_NAME,
                     f"{c.where} is not a valid image reference: the kubelet refuses it "
                     "(InvalidImageName).", fixes.audit_invalid_image(c.context(inv)))


def _latest(c: Container, inv: Inventory) -> AuditFinding | None:
    if c.ref is None or c.ref.digest is not None or c.ref.effective_tag != "latest":
        return None
    how = "has no tag, so it runs whatever" if c.ref.tag is None else "runs whatever"
    return c.finding(Check.LATEST_TAG,
                     f"{c.where} {how} `:latest` points at when a pod starts: two pods of one "
                     "workload can run different code, and a rollback has nothing to go "
                     "back to.", fixes.audit_pin_tag(c.context(inv)))


def _digest(c: Container, inv: Inventory) -> AuditFinding | None:
    if c.ref is None or c.ref.digest is not None:
        return None
    if not inv.namespace(c.workload.namespace).pin_digests:
        return None
    return c.finding(Check.NOT_PINNED_BY_DIGEST,
                     f"{c.where} is not pinned by digest, and namespace "
                     f"{code_span(c.workload.namespace)} asks for digests "
                     f"({PIN_DIGESTS_LABEL}=true): a re-pushed tag changes what runs.",
                     fixes.audit_pin_digest(c.context(inv)))


def _dockerhub(c: Container, inv: Inventory) -> AuditFinding | None:
    if c.ref is None or not c.ref.is_docker_hub or c.serving is None or c.serving:
        return None
    return c.finding(Check.DOCKERHUB_ANONYMOUS,
                     f"{c.where} is pulled from Docker Hub anonymously (no Docker Hub "
                     "credentials among its pull secrets): every node behind one NAT IP shares "
                     "100 pulls per 6 hours.",
                     fixes.audit_authenticate_docker_hub(c.context(inv)))


def _cloud(c: Container, inv: Inventory) -> AuditFinding | None:
    cloud = cloud_registry(c.ref.registry) if c.ref is not None else None
    if cloud is None or not c.serving:
        return None
    names = ", ".join(code_span(s.name) for s in c.serving)
    return c.finding(Check.CLOUD_REGISTRY_STATIC_SECRET,
                     f"{c.where} comes from {cloud.product} with a static pull secret "
                     f"({names}): its credentials expire"
                     + (" every 12 hours" if cloud.product == "ECR" else "")
                     + f"; the kubelet credential provider ({cloud.credential_provider}) "
                     "fetches fresh ones at pull time.",
                     fixes.audit_credential_provider(c.context(inv)))


def _always(c: Container, inv: Inventory) -> AuditFinding | None:
    if c.ref is None or c.spec.pull_policy != "Always" or not immutable(c.ref):
        return None
    what = "a digest" if c.ref.digest else f"the release tag {code_span(c.ref.tag)}"
    quota = " (and spends Docker Hub quota)" if c.ref.is_docker_hub else ""
    return c.finding(Check.ALWAYS_PULL_IMMUTABLE,
                     f"{c.where} pins {what} but sets imagePullPolicy `Always`: every start "
                     f"asks the registry{quota} about an image that cannot change, and fails "
                     "while the registry is down.",
                     fixes.audit_pull_if_not_present(c.context(inv, pull_policy="Always")))


def private_registries(inventory: Inventory) -> frozenset[str]:
    """Registries some workload of the cluster pulls with credentials: private, as far as the
    bot can tell (Docker Hub is left out: credentials there are for the quota)."""
    private: set[str] = set()
    for c in containers(inventory):
        if c.serving and c.ref is not None and not c.ref.is_docker_hub:
            private.add(c.ref.registry)
    return frozenset(private)


def _ensure_pulled(private: frozenset[str]) -> Rule:
    def rule(c: Container, inv: Inventory) -> AuditFinding | None:
        if c.ref is None or c.serving is None or c.serving or c.ref.registry not in private:
            return None
        policy = effective_pull_policy(c.spec, c.ref)
        if policy not in ("IfNotPresent", "Never"):
            return None
        version = f" (this cluster runs {inv.cluster_version})" if inv.cluster_version else ""
        return c.finding(
            Check.ENSURE_SECRET_PULLED_IMAGES,
            f"{c.where} comes from {code_span(c.ref.registry)}, which other workloads pull "
            f"with credentials, but its pods have none for it and use `{policy}`: it runs "
            "only from images other pods left in the node's cache. From Kubernetes 1.33 with "
            "the KubeletEnsureSecretPulledImages gate on, the kubelet checks credentials for "
            f"cached images too and these pods fail with ImagePullBackOff{version}.",
            fixes.audit_private_image_credentials(c.context(inv, pull_policy=policy)))

    return rule


def _extra_secrets(workload: PodTemplate, inv: Inventory) -> tuple[str, ...]:
    """The template's imagePullSecrets (for a bare Pod, only those its service account does
    not already hand it: admission copied those in)."""
    account = inv.account(workload.namespace, workload.service_account)
    listed = account.pull_secrets if account else ()
    if workload.kind == "Pod":
        return tuple(n for n in workload.pull_secrets if n not in listed)
    return workload.pull_secrets


def _template_secrets(inv: Inventory) -> list[AuditFinding]:
    """imagePullSecrets written on pod templates instead of the service account.

    A ServiceAccount's imagePullSecrets is replaced as a whole by a patch (no merge key), so
    every finding for one account carries the same list: what it lists now plus every name its
    workloads' templates list. Pasting one fix or all of them, in any order, ends the same."""
    extras = {(w.namespace, w.kind, w.name): _extra_secrets(w, inv) for w in inv.workloads}
    planned: dict[tuple[str, str], list[str]] = {}
    for w in inv.workloads:
        account = inv.account(w.namespace, w.service_account)
        plan = planned.setdefault((w.namespace, w.service_account),
                                  list(account.pull_secrets if account else ()))
        plan += [n for n in extras[(w.namespace, w.kind, w.name)] if n not in plan]
    found: list[AuditFinding] = []
    for w in inv.workloads:
        extra = extras[(w.namespace, w.kind, w.name)]
        if not extra:
            continue
        ctx = fixes.FixContext(namespace=w.namespace, workload=WorkloadRef(w.kind, w.name),
                               container="", image="", ref=None,
                               service_account=w.service_account,
                               service_account_pull_secrets=tuple(
                                   planned[(w.namespace, w.service_account)]))
        names = ", ".join(code_span(n) for n in extra)
        found.append(AuditFinding(
            Check.PULL_SECRETS_ON_POD_TEMPLATE, w.namespace, w.kind, w.name,
            f"{w.kind} {code_span(w.name)} lists imagePullSecrets ({names}) in its pod "
            f"template instead of on service account {code_span(w.service_account)}: every "
            "new workload must repeat them, and one that forgets cannot pull.",
            fixes.audit_move_pull_secrets(ctx, extra)))
    return found


def prevention_findings(inventory: Inventory) -> list[AuditFinding]:
    """The prevention checks over every container of every workload."""
    rules: list[Rule] = [_invalid, _latest, _digest, _dockerhub, _cloud, _always,
                         _ensure_pulled(private_registries(inventory))]
    found = _template_secrets(inventory)
    for c in containers(inventory):
        found.extend(f for f in (rule(c, inventory) for rule in rules) if f is not None)
    return found


