"""`image_rewritten`: the pod's image differs from its template's (issue 12, Deliver 3a).

Pure: PodFacts as the kube client gathers them (the template from the owner chain's own read,
the mutating webhooks that match the namespace) → the finding, an evidence line naming both
images and the webhooks, and a fix that reads the named webhook's configuration."""

from __future__ import annotations

import shlex

from bot.diagnosis.causes import Finding
from bot.diagnosis.engine import ADMISSION_EVIDENCE, diagnose
from bot.diagnosis.explain import FINDING_TEXT
from bot.diagnosis.facts import PodFacts, TemplateImages, WorkloadRef
from tests.diagnosis.kubelet import NOW, pod, pull_failure

TEMPLATE = "registry.internal/shop/web:2.1"
REWRITTEN = "mirror.corp.example/shop/web:2.1"
ERROR = ("rpc error: code = Unknown desc = failed to pull and unpack image "
         f'"{REWRITTEN}": failed to resolve reference "{REWRITTEN}": failed to authorize: '
         "failed to fetch anonymous token: unexpected status from GET request to "
         "https://mirror.corp.example/token?scope=repository%3Ashop%2Fweb%3Apull&service="
         "mirror.corp.example: 401 Unauthorized")
RS = WorkloadRef("ReplicaSet", "web-7d9f8b6c5d")


def facts(image: str = REWRITTEN, template: str | None = TEMPLATE,
          webhooks: tuple[str, ...] | None = ("image-mirror/rewrite.mirror.corp.example",),
          ) -> PodFacts:
    return PodFacts(
        pod=pod(image), events=pull_failure(image, ERROR),
        workload=WorkloadRef("Deployment", "web"),
        template=TemplateImages(RS, {"web": template}) if template else None,
        mutating_webhooks=webhooks, now=NOW)


def test_a_rewritten_image_is_found_and_the_webhook_named() -> None:
    [d] = diagnose(facts()).diagnoses
    assert Finding.IMAGE_REWRITTEN in d.findings
    [line] = [e for e in d.evidence if e.startswith(ADMISSION_EVIDENCE)]
    assert TEMPLATE in line and REWRITTEN in line and "replicaset/web-7d9f8b6c5d" in line
    assert "image-mirror/rewrite.mirror.corp.example" in line
    assert d.evidence[0].startswith("Failed to pull image")  # the kubelet's text still decides
    [fix] = [f for f in d.fixes if "mutatingwebhookconfiguration" in f.command]
    assert shlex.split(fix.command) == ["kubectl", "get", "mutatingwebhookconfiguration",
                                        "image-mirror", "-o", "yaml"]
    assert "rewrite.mirror.corp.example" in fix.title and TEMPLATE in fix.title
    assert FINDING_TEXT[Finding.IMAGE_REWRITTEN]


def test_the_same_image_is_not_a_rewrite() -> None:
    [d] = diagnose(facts(image=TEMPLATE, template=TEMPLATE)).diagnoses
    assert Finding.IMAGE_REWRITTEN not in d.findings
    assert not [e for e in d.evidence if e.startswith(ADMISSION_EVIDENCE)]


def test_without_a_known_template_nothing_is_claimed() -> None:
    [d] = diagnose(facts(template=None)).diagnoses  # offline, a bare pod, or not readable
    assert Finding.IMAGE_REWRITTEN not in d.findings


def test_unreadable_webhooks_or_none_matching_are_said_in_words() -> None:
    [unread] = diagnose(facts(webhooks=None)).diagnoses
    assert any("could not be read" in e for e in unread.evidence)
    assert any(f.command == "kubectl get mutatingwebhookconfigurations" for f in unread.fixes)
    [none] = diagnose(facts(webhooks=())).diagnoses
    assert any("no mutating webhook matches" in e for e in none.evidence)


def test_a_webhook_name_the_apiserver_would_refuse_is_never_an_argument() -> None:
    [d] = diagnose(facts(webhooks=("--kubeconfig=/tmp/x/evil",))).diagnoses
    assert all("--kubeconfig" not in f.command for f in d.fixes)
    assert any(f.command == "kubectl get mutatingwebhookconfigurations" for f in d.fixes)
