"""The credentials watch's checks: pull secrets that have expired, are missing, unused, or for
a registry nothing pulls from.

Pure rules over the same `Inventory` as the prevention audit. Secrets are known here only by
name, type, registry hosts and update time (bot/diagnosis/secrets.py): no check needs, or
sees, a credential. Without the right to list secrets (`Inventory.pull_secrets` is None) there
is nothing to check, and the inventory's `skipped` says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.diagnosis import fixes
from bot.diagnosis.audit_model import AuditFinding, Check, serves
from bot.diagnosis.cloud import ECR_TOKEN_LIFETIME, cloud_registry
from bot.diagnosis.facts import PullSecretInfo, WorkloadRef
from bot.diagnosis.imageref import ImageRef, normalise_registry_key, try_parse_image
from bot.diagnosis.markup import code_span
from bot.diagnosis.workloads import Inventory


def _context(inv: Inventory, namespace: str, kind: str, name: str,
             ref: ImageRef | None = None, **extra: Any) -> fixes.FixContext:
    account = inv.account(namespace, "default")
    return fixes.FixContext(namespace=namespace, workload=WorkloadRef(kind, name),
                            container="", image=ref.original if ref else "", ref=ref,
                            service_account_pull_secrets=account.pull_secrets if account
                            else (), **extra)


def _references(inv: Inventory) -> Iterator[tuple[str, str, str, str, ImageRef | None]]:
    """(namespace, kind, name, secret, an image it pulls) for every imagePullSecrets entry of
    a workload's template or a service account."""
    for w in inv.workloads:
        refs = [r for r in (try_parse_image(c.image) for c in w.containers) if r is not None]
        for secret in w.pull_secrets:
            yield w.namespace, w.kind, w.name, secret, refs[0] if refs else None
    for account in inv.service_accounts:
        for secret in account.pull_secrets:
            yield account.namespace, "ServiceAccount", account.name, secret, None


def _missing(inv: Inventory) -> Iterator[AuditFinding]:
    for namespace, kind, name, secret, ref in _references(inv):
        if any(s.name == secret for s in inv.secrets_in(namespace)):
            continue
        exists = inv.secret_exists.get((namespace, secret), False)
        if exists is None:
            continue  # could not be read: nothing to say
        state = ("exists but is not a docker-registry secret (the kubelet reads only "
                 "kubernetes.io/dockerconfigjson and kubernetes.io/dockercfg)" if exists
                 else "does not exist there (secrets are namespace-scoped)")
        ctx = _context(inv, namespace, kind, name, ref, missing_secret=secret)
        yield AuditFinding(
            Check.PULL_SECRET_MISSING, namespace, kind, name,
            f"{kind} {code_span(name)} references pull secret {code_span(secret)}, which "
            f"{state}: its pods pull without those credentials.",
            fixes.audit_create_missing_secret(ctx))


def _ecr_host(secret: PullSecretInfo) -> str | None:
    for key in secret.registries:
        host = normalise_registry_key(key)
        cloud = cloud_registry(host)
        if cloud is not None and cloud.product == "ECR":
            return host
    return None


def _ecr_expired(inv: Inventory) -> Iterator[AuditFinding]:
    for namespace, secrets in sorted((inv.pull_secrets or {}).items()):
        for secret in secrets:
            host = _ecr_host(secret)
            if host is None or secret.updated_at is None:
                continue
            age = inv.now - secret.updated_at
            if age <= ECR_TOKEN_LIFETIME:
                continue
            ref = ImageRef(original=host, registry=host, repository="", tag=None, digest=None)
            hours = int(age.total_seconds() // 3600)
            yield AuditFinding(
                Check.ECR_TOKEN_EXPIRED, namespace, "Secret", secret.name,
                f"Pull secret {code_span(secret.name)} holds an ECR token for "
                f"{code_span(host)} written {hours} hours ago: ECR tokens last 12 hours, so "
                "new pulls with it fail. Refresh it now; the kubelet credential provider "
                "ends the refreshing.",
                fixes.audit_refresh_ecr_secret(_context(inv, namespace, "Secret", secret.name,
                                                        ref, missing_secret=secret.name)))


def _in_use(inv: Inventory) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """namespace → names of the pull secrets something uses, and → the registries its images
    come from (one pass over the inventory)."""
    used: dict[str, set[str]] = {ns: set(names) for ns, names in inv.pod_pull_secrets.items()}
    images: dict[str, set[str]] = {ns: set(i) for ns, i in inv.pod_images.items()}
    for w in inv.workloads:
        used.setdefault(w.namespace, set()).update(w.pull_secrets)
        images.setdefault(w.namespace, set()).update(c.image for c in w.containers)
    for a in inv.service_accounts:
        used.setdefault(a.namespace, set()).update(a.pull_secrets)
    registries = {ns: {ref.registry for ref in map(try_parse_image, found) if ref is not None}
                  for ns, found in images.items()}
    return used, registries


def _unused(inv: Inventory) -> Iterator[AuditFinding]:
    used_by, pulled_from = _in_use(inv)
    for namespace, secrets in sorted((inv.pull_secrets or {}).items()):
        used = used_by.get(namespace, set())
        registries = pulled_from.get(namespace, set())
        for secret in secrets:
            ctx = _context(inv, namespace, "Secret", secret.name)
            if secret.name not in used:
                yield AuditFinding(
                    Check.PULL_SECRET_UNUSED, namespace, "Secret", secret.name,
                    f"Pull secret {code_span(secret.name)} is used by no pod, workload or "
                    "service account in its namespace: attach it where it is meant to be "
                    "used, or delete it so a credential does not linger.",
                    fixes.audit_unused_secret(ctx, secret.name))
            elif secret.registries and not any(serves(secret, r) for r in registries):
                hosts = ", ".join(code_span(normalise_registry_key(k))
                                  for k in secret.registries)
                yield AuditFinding(
                    Check.PULL_SECRET_REGISTRY_UNUSED, namespace, "Secret", secret.name,
                    f"Pull secret {code_span(secret.name)} holds credentials for {hosts}, but "
                    "no image in its namespace comes from there: the pods that use it pull "
                    "without credentials for their own registries.",
                    fixes.audit_secret_registries(ctx, secret.name))


def credential_findings(inventory: Inventory) -> list[AuditFinding]:
    """Every credentials-watch finding (none without the right to list secrets)."""
    if inventory.pull_secrets is None:
        return []
    return [*_missing(inventory), *_ecr_expired(inventory), *_unused(inventory)]
