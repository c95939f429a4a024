"""What the audit's rules produce and share: check ids, findings, the report, and each
container seen with the pull secrets its pods get.

The check ids are a contract (the JSON output, scripts in CI): values are only ever added.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.diagnosis import fixes
from bot.diagnosis.facts import PullSecretInfo, WorkloadRef
from bot.diagnosis.imageref import ImageRef, registry_matches, try_parse_image
from bot.diagnosis.markup import code_span
from bot.diagnosis.model import Fix
from bot.diagnosis.workloads import ContainerSpec, Inventory, PodTemplate


class Check(StrEnum):
    """What one finding is about (`check` in the JSON output)."""

    # prevention (issue 11, Deliver 2)
    LATEST_TAG = "latest_tag"
    NOT_PINNED_BY_DIGEST = "not_pinned_by_digest"
    PULL_SECRETS_ON_POD_TEMPLATE = "pull_secrets_on_pod_template"
    DOCKERHUB_ANONYMOUS = "dockerhub_anonymous"
    CLOUD_REGISTRY_STATIC_SECRET = "cloud_registry_static_secret"
    ALWAYS_PULL_IMMUTABLE = "always_pull_immutable"
    ENSURE_SECRET_PULLED_IMAGES = "ensure_secret_pulled_images"
    INVALID_IMAGE_NAME = "invalid_image_name"
    # the credentials watch (bot/diagnosis/credentials.py)
    ECR_TOKEN_EXPIRED = "ecr_token_expired"
    PULL_SECRET_MISSING = "pull_secret_missing"
    PULL_SECRET_UNUSED = "pull_secret_unused"
    PULL_SECRET_REGISTRY_UNUSED = "pull_secret_registry_unused"


@dataclass(frozen=True)
class AuditFinding:
    """One problem in one place. `kind`/`name` is what a person edits (a workload, a
    ServiceAccount or a Secret); `container` and `image` are None for a secret's findings.
    `message` wraps values from the cluster in backtick-safe code spans."""

    check: Check
    namespace: str
    kind: str
    name: str
    message: str
    fixes: tuple[Fix, ...] = ()
    container: str | None = None
    image: str | None = None

    @property
    def key(self) -> str:
        """Stable identity, for "say it once a day" (bot/routines first_time)."""
        return "\x1f".join([self.check.value, self.namespace, self.kind, self.name,
                            self.container or "", self.image or ""])

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check.value, "namespace": self.namespace,
                "kind": self.kind, "name": self.name, "container": self.container,
                "image": self.image, "message": self.message,
                "fixes": [f.to_json() for f in self.fixes]}


@dataclass(frozen=True)
class AuditReport:
    """The findings, in a stable order (namespace, kind, name, container, check)."""

    findings: tuple[AuditFinding, ...]
    namespaces: int = 0
    workloads: int = 0
    skipped: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.findings

    def counts(self, findings: Iterable[AuditFinding] | None = None) -> dict[str, int]:
        counted = Counter(f.check.value for f in (self.findings if findings is None
                                                   else findings))
        return dict(sorted(counted.items()))

    def by_namespace(self) -> list[tuple[str, list[AuditFinding]]]:
        grouped: dict[str, list[AuditFinding]] = {}
        for finding in self.findings:
            grouped.setdefault(finding.namespace, []).append(finding)
        return sorted(grouped.items())

    def to_json(self) -> dict[str, Any]:
        """The CLI's `-o json` (a contract: keys are only ever added)."""
        return {
            "clean": self.clean,
            "total": len(self.findings),
            "counts": self.counts(),
            "checked": {"namespaces": self.namespaces, "workloads": self.workloads},
            "skipped": list(self.skipped),
            "namespaces": [{"namespace": ns, "total": len(items), "counts": self.counts(items),
                            "findings": [f.to_json() for f in items]}
                           for ns, items in self.by_namespace()],
        }


# -- what a container's pull looks like ------------------------------------------------------

#: A full version (1.2.3, v1.2.3, 1.2.3-alpine): by convention never re-pushed. 1.27 or 3 float.
_IMMUTABLE_TAG = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")


def effective_pull_policy(container: ContainerSpec, ref: ImageRef | None) -> str:
    """The manifest's policy, or the apiserver's default: Always for `:latest` or no tag
    (without a digest), IfNotPresent otherwise."""
    if container.pull_policy:
        return container.pull_policy
    if ref is not None and ref.digest is None and ref.effective_tag == "latest":
        return "Always"
    return "IfNotPresent"


def immutable(ref: ImageRef) -> bool:
    return ref.digest is not None or bool(ref.tag and _IMMUTABLE_TAG.match(ref.tag))


@dataclass(frozen=True)
class Container:
    """A container in its workload, with what the rules keep asking about it."""

    workload: PodTemplate
    spec: ContainerSpec
    ref: ImageRef | None
    #: the names of the pull secrets its pods get (template + service account)
    secret_names: tuple[str, ...]
    #: those that exist and hold credentials for the image's registry (None: unknown)
    serving: tuple[PullSecretInfo, ...] | None

    def context(self, inventory: Inventory, **extra: Any) -> fixes.FixContext:
        account = inventory.account(self.workload.namespace, self.workload.service_account)
        return fixes.FixContext(
            namespace=self.workload.namespace,
            workload=WorkloadRef(self.workload.kind, self.workload.name),
            container=self.spec.name, image=self.spec.image, ref=self.ref,
            init_container=self.spec.init,
            service_account=self.workload.service_account,
            service_account_pull_secrets=account.pull_secrets if account else (), **extra)

    def finding(self, check: Check, message: str, fix: tuple[Fix, ...]) -> AuditFinding:
        return AuditFinding(check, self.workload.namespace, self.workload.kind,
                            self.workload.name, message, fix, self.spec.name, self.spec.image)

    @property
    def where(self) -> str:
        return f"{code_span(self.spec.image)} in {self.workload.kind} " \
               f"{code_span(self.workload.name)}"


def secret_names_of(workload: PodTemplate, inventory: Inventory) -> tuple[str, ...]:
    """The pull secrets the workload's pods get: the template's, then its service account's
    (admission adds them only when the template lists none; a bare Pod already has them)."""
    if workload.pull_secrets:
        return workload.pull_secrets
    account = inventory.account(workload.namespace, workload.service_account)
    return account.pull_secrets if account else ()


def serves(secret: PullSecretInfo, registry: str) -> bool:
    return any(registry_matches(key, registry) for key in secret.registries)


def containers(inventory: Inventory) -> Iterator[Container]:
    for workload in inventory.workloads:
        names = secret_names_of(workload, inventory)
        existing = {s.name: s for s in inventory.secrets_in(workload.namespace)}
        for spec in workload.containers:
            ref = try_parse_image(spec.image)
            serving: tuple[PullSecretInfo, ...] | None = None
            if inventory.pull_secrets is not None and ref is not None:
                serving = tuple(existing[n] for n in names
                                if n in existing and serves(existing[n], ref.registry))
            yield Container(workload, spec, ref, names, serving)


