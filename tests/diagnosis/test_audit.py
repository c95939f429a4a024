"""The audit's rules, pure: an `Inventory` in, findings with their fix commands out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.diagnosis.audit import audit, credential_report
from bot.diagnosis.audit_model import Check, effective_pull_policy, immutable
from bot.diagnosis.facts import PullSecretInfo
from bot.diagnosis.imageref import parse_image
from bot.diagnosis.workloads import (
    ContainerSpec,
    Inventory,
    NamespaceInfo,
    PodTemplate,
    ServiceAccountInfo,
    pod_template,
    pod_use,
)

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
HUB = "https://index.docker.io/v1/"


def deployment(name: str, image: str, secrets: tuple[str, ...] = (), policy: str = "",
               ns: str = "shop", kind: str = "Deployment") -> PodTemplate:
    return PodTemplate(ns, kind, name, "default", secrets,
                       (ContainerSpec("app", image, policy),))


def secret(name: str, *hosts: str, age: timedelta = timedelta(days=1)) -> PullSecretInfo:
    return PullSecretInfo(name, "kubernetes.io/dockerconfigjson", hosts, NOW - age)


def inventory(*workloads: PodTemplate, accounts: tuple[str, ...] = ("regcred",),
              secrets: tuple[PullSecretInfo, ...] | None = (
                  secret("regcred", "registry.internal", HUB),),
              **extra: object) -> Inventory:
    return Inventory(namespaces=(NamespaceInfo("shop"),), workloads=workloads,
                     service_accounts=(ServiceAccountInfo("shop", "default", accounts),),
                     pull_secrets=None if secrets is None else {"shop": secrets},
                     now=NOW, **extra)  # type: ignore[arg-type]


def checks(inv: Inventory) -> list[tuple[str, str]]:
    return [(f.check.value, f.name) for f in audit(inv).findings]


@pytest.mark.parametrize(("image", "policy", "expected"), [
    ("nginx", "", "Always"), ("nginx:latest", "", "Always"), ("nginx:1.27", "", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "", "IfNotPresent"), ("nginx:1.27", "Never", "Never"),
])
def test_effective_pull_policy_is_the_apiservers_default(image: str, policy: str,
                                                          expected: str) -> None:
    assert effective_pull_policy(ContainerSpec("c", image, policy), parse_image(image)) == \
        expected


@pytest.mark.parametrize(("image", "fixed"), [
    ("nginx:1.27.3", True), ("nginx:v1.27.3-alpine", True), ("nginx@sha256:" + "a" * 64, True),
    ("nginx:1.27", False), ("nginx:stable", False), ("nginx", False),
])
def test_immutable_references(image: str, fixed: bool) -> None:
    assert immutable(parse_image(image)) is fixed


def test_a_clean_inventory_has_no_findings() -> None:
    assert audit(inventory(deployment("web", "registry.internal/shop/web:1.4.2"),
                           deployment("db", "postgres:16.4.0"))).clean


def test_service_account_patches_agree_whatever_order_they_are_pasted_in() -> None:
    """A ServiceAccount's imagePullSecrets is replaced as a whole by a patch: every finding
    for one account writes the same full list."""
    inv = inventory(deployment("web", "registry.internal/shop/web:1.4.2", ("regcred",)),
                    deployment("api", "registry.internal/shop/api:1.4.2", ("extra",)),
                    accounts=(), secrets=(secret("regcred", "registry.internal"),
                                          secret("extra", "registry.internal")))
    moves = [f for f in audit(inv).findings if f.check is Check.PULL_SECRETS_ON_POD_TEMPLATE]
    assert [f.name for f in moves] == ["api", "web"]
    patches = {f.fixes[0].command for f in moves}
    assert patches == {"kubectl patch serviceaccount default -p '{\"imagePullSecrets\": "
                       "[{\"name\": \"regcred\"}, {\"name\": \"extra\"}]}' -n shop"}


def test_a_bare_pod_is_not_blamed_for_the_secrets_admission_copied_in() -> None:
    pod = {"metadata": {"name": "debug", "namespace": "shop"},
           "spec": {"serviceAccountName": "default", "imagePullSecrets": [{"name": "regcred"}],
                    "containers": [{"name": "c", "image": "registry.internal/x:1.0.0"}]}}
    use = pod_use(pod)
    assert use.template is not None and use.template.kind == "Pod"
    assert audit(inventory(use.template)).clean
    owned = {**pod, "metadata": {**pod["metadata"], "ownerReferences": [
        {"kind": "ReplicaSet", "name": "web-1", "controller": True}]}}
    assert pod_use(owned).template is None  # counted through its Deployment


def test_a_cronjobs_template_and_its_policy_patch_path() -> None:
    template = pod_template("CronJob", {
        "metadata": {"name": "report", "namespace": "shop"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "r", "image": "registry.internal/r:2.0.0", "imagePullPolicy": "Always"}]}}}}}})
    [finding] = audit(inventory(template)).findings
    assert finding.check is Check.ALWAYS_PULL_IMMUTABLE
    assert finding.fixes[0].command == (
        "kubectl patch cronjob/report -n shop -p '{\"spec\": {\"jobTemplate\": {\"spec\": "
        "{\"template\": {\"spec\": {\"containers\": [{\"name\": \"r\", \"imagePullPolicy\": "
        "\"IfNotPresent\"}]}}}}}}'")


def test_without_the_right_to_list_secrets_the_checks_that_need_them_are_skipped() -> None:
    inv = inventory(deployment("db", "postgres:16.4.0"), secrets=None,
                    skipped=("pull secrets (the credentials checks): not permitted",))
    report = audit(inv)
    assert report.clean and report.skipped  # no anonymous-pull guess, no credential finding
    assert credential_report(inv).clean


def test_a_referenced_secret_of_another_type_is_named_as_such() -> None:
    inv = inventory(deployment("web", "registry.internal/shop/web:1.4.2", ("opaque",)),
                    secret_exists={("shop", "opaque"): True})
    missing = [f for f in credential_report(inv).findings
               if f.check is Check.PULL_SECRET_MISSING]
    assert len(missing) == 1 and "is not a docker-registry secret" in missing[0].message
    unknown = inventory(deployment("web", "registry.internal/shop/web:1.4.2", ("x",)),
                        secret_exists={("shop", "x"): None})
    assert not [f for f in credential_report(unknown).findings
                if f.check is Check.PULL_SECRET_MISSING]  # could not be read: nothing said


def test_ecr_age_is_measured_from_the_last_write() -> None:
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    fresh = inventory(secrets=(secret("ecr", ecr, age=timedelta(hours=11)),), accounts=("ecr",))
    stale = inventory(secrets=(secret("ecr", ecr, age=timedelta(hours=13)),), accounts=("ecr",))
    assert Check.ECR_TOKEN_EXPIRED not in {f.check for f in credential_report(fresh).findings}
    [expired] = [f for f in credential_report(stale).findings
                 if f.check is Check.ECR_TOKEN_EXPIRED]
    assert "written 13 hours ago" in expired.message
    assert "--region eu-west-1" in expired.fixes[0].command


def test_an_unused_secret_is_not_also_blamed_for_its_registry() -> None:
    inv = inventory(deployment("web", "registry.internal/shop/web:1.4.2"),
                    secrets=(secret("regcred", "registry.internal", HUB),
                             secret("old", "quay.io")))
    assert [(f.check.value, f.name) for f in credential_report(inv).findings] == [
        ("pull_secret_unused", "old")]


def test_pin_digests_only_where_the_namespace_asks() -> None:
    web = deployment("web", "registry.internal/shop/web:1.4.2")
    assert checks(inventory(web)) == []
    pinned = Inventory(namespaces=(NamespaceInfo("shop", pin_digests=True),), workloads=(web,),
                       service_accounts=(ServiceAccountInfo("shop", "default", ("regcred",)),),
                       pull_secrets={"shop": (secret("regcred", "registry.internal"),)}, now=NOW)
    [finding] = audit(pinned).findings
    assert finding.check is Check.NOT_PINNED_BY_DIGEST
    assert [f.command for f in finding.fixes] == [
        "crane digest registry.internal/shop/web:1.4.2",
        "kubectl set image deployment/web 'app=registry.internal/shop/web@sha256:<digest>' "
        "-n shop"]
