"""bot/diagnosis/cleared.py: when a missing pull secret counts as fixed, and when the kubelet
would pull again by itself (the field guide's back-off: 10 s doubling, capped at 300 s)."""

from __future__ import annotations

import pytest

from bot.diagnosis.causes import Finding
from bot.diagnosis.cleared import (
    ACCOUNT_REFERENCES,
    DISK_PRESSURE_CLEARED,
    QUOTA_BACK,
    SECRET_CREATED,
    CauseCleared,
    QuotaFigure,
    disk_pressure_cleared,
    kubelet_next_pull,
    next_reprobe,
    pull_delay,
    quota_cause_cleared,
    secret_cause_cleared,
)
from bot.diagnosis.facts import PullSecretInfo

IMAGE = "registry.internal/shop/web:v2.1"
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"


def secret(name: str, *registries: str) -> PullSecretInfo:
    return PullSecretInfo(name, DOCKERCONFIGJSON, registries)


def cleared(findings: tuple[Finding, ...] = (Finding.PULL_SECRET_MISSING,), *,
            pod_secrets: tuple[str, ...] = ("regcred",), account_secrets: tuple[str, ...] = (),
            namespace_secrets: tuple[PullSecretInfo, ...] | None = (),
            image: str = IMAGE) -> CauseCleared | None:
    return secret_cause_cleared(findings, image, "shop", pod_secrets=pod_secrets,
                                account="default", account_secrets=account_secrets,
                                namespace_secrets=namespace_secrets)


def test_the_referenced_secret_created_for_the_image_registry_is_a_fix() -> None:
    assert cleared(namespace_secrets=()) is None  # still missing
    fix = cleared(namespace_secrets=(secret("regcred", "registry.internal"),))
    assert fix == CauseCleared(SECRET_CREATED, "shop", "regcred")
    assert fix.kubelet_retries  # the kubelet reads pull secrets at each attempt
    # a URL-shaped key (as `docker login` writes) serves the host too
    assert cleared(namespace_secrets=(secret("regcred", "https://registry.internal/v1/"),))


def test_a_secret_for_another_registry_or_one_still_missing_is_not_a_fix() -> None:
    assert cleared(namespace_secrets=(secret("regcred", "ghcr.io"),)) is None
    assert cleared(pod_secrets=("regcred", "other"),
                   namespace_secrets=(secret("regcred", "registry.internal"),)) is None
    assert cleared(pod_secrets=("regcred", "other"),
                   namespace_secrets=(secret("regcred", "registry.internal"),
                                      secret("other", "ghcr.io"))) is not None


def test_nothing_is_said_without_the_facts_or_a_secret_finding() -> None:
    present = (secret("regcred", "registry.internal"),)
    assert cleared(namespace_secrets=None) is None  # secrets not watched / not vouched for
    assert cleared((Finding.IMPLICIT_LATEST_TAG,), namespace_secrets=present) is None


def test_the_service_account_now_referencing_a_secret_needs_new_pods() -> None:
    present = (secret("regcred", "registry.internal"),)
    fix = cleared((Finding.NO_PULL_SECRET,), pod_secrets=(), account_secrets=("regcred",),
                  namespace_secrets=present)
    assert fix == CauseCleared(ACCOUNT_REFERENCES, "shop", "regcred", account="default")
    assert not fix.kubelet_retries  # admission copies it into new pods only
    assert cleared((Finding.NO_PULL_SECRET,), pod_secrets=(), account_secrets=(),
                   namespace_secrets=present) is None
    assert cleared((Finding.NO_PULL_SECRET,), pod_secrets=(), account_secrets=("nope",),
                   namespace_secrets=present) is None


def test_the_kubelet_back_off_doubles_from_10_s_to_300_s() -> None:
    assert [pull_delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize(("attempts", "next_at", "fixed_at", "expected"), [
    (3, 100.0, 50.0, 100.0),  # the next pull comes after the fix: that one succeeds
    (3, 100.0, 100.0, 100.0),
    (1, 100.0, 105.0, 120.0),  # the pull at 100 failed (2nd failure): 20 s later
    (2, 100.0, 150.0, 100 + 40 + 80.0),  # 3rd failure at 100, 4th at 140, next at 220
    (7, 100.0, 1000.0, 1000.0),  # capped: every 300 s (400, 700, 1000)
    (7, 100.0, 1001.0, 1300.0),
    (7, 100.0, 100.0 + 300 * 10_000 + 1, 100.0 + 300 * 10_001),  # weeks: no long loop
])
def test_the_next_pull_after_a_fix_follows_the_schedule(
        attempts: int, next_at: float, fixed_at: float, expected: float) -> None:
    assert kubelet_next_pull(attempts, next_at, fixed_at) == expected


def test_an_unknown_schedule_is_none() -> None:
    assert kubelet_next_pull(0, 100.0, 50.0) is None
    assert kubelet_next_pull(3, None, 50.0) is None


def test_the_registry_is_asked_again_on_the_kubelets_schedule() -> None:
    assert next_reprobe(1000.0, 0, None) == 1010.0  # 10 s after the incident opened
    assert next_reprobe(1000.0, 1, 1010.0) == 1030.0
    assert next_reprobe(1000.0, 2, 1030.0) == 1070.0
    assert next_reprobe(1000.0, 9, 5000.0) == 5300.0  # capped at the kubelet's 300 s


def node(status: str | None) -> dict[str, object]:
    conditions = [] if status is None else [{"type": "DiskPressure", "status": status}]
    return {"metadata": {"name": "worker-1"}, "status": {"conditions": conditions}}


def test_disk_pressure_cleared_only_when_the_node_says_so() -> None:
    pressure = (Finding.NODE_DISK_PRESSURE,)
    assert disk_pressure_cleared(pressure, "shop", node("False")) == CauseCleared(
        DISK_PRESSURE_CLEARED, "shop", "", node="worker-1")
    assert disk_pressure_cleared(pressure, "shop", node("True")) is None
    assert disk_pressure_cleared(pressure, "shop", node(None)) is None  # unknown: nothing said
    assert disk_pressure_cleared(pressure, "shop", None) is None  # not readable (namespaced)
    assert disk_pressure_cleared((), "shop", node("False")) is None  # never was under pressure


def test_a_quota_is_back_when_every_pod_using_it_can_pull_once() -> None:
    account = QuotaFigure("hubuser", 3, 200, pods=3)
    change = quota_cause_cleared("shop", [account, QuotaFigure("", 50, 100, pods=1)])
    assert change is not None and change.kind == QUOTA_BACK and change.kubelet_retries
    assert change.quotas == (account, QuotaFigure("", 50, 100, pods=1))
    # two pulls for three pods: a retry would run out half-way
    assert quota_cause_cleared("shop", [QuotaFigure("hubuser", 2, 200, pods=3)]) is None
    assert quota_cause_cleared("shop", [QuotaFigure("hubuser", 0, 200)]) is None
    # one quota back and another not: not yet
    assert quota_cause_cleared("shop", [account, QuotaFigure("ci", 0, 200)]) is None
    assert quota_cause_cleared("shop", []) is None  # nothing known: nothing to say
    assert QuotaFigure("paid", None, None, pods=40).back  # not limited at all
