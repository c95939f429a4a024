"""The escalation bundle's model (bot/diagnosis/bundle.py): assembly, JSON and text.

Pure: BundleFacts in (as bot/kube/bundle.py gathers them), a Bundle out; hostile text from the
cluster stays data (a newline in an event cannot fake a section of the text form)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from bot.diagnosis.bundle import MAX_EVENTS, BundleFacts, SecretFacts, assemble
from bot.diagnosis.facts import TemplateImages, WorkloadRef
from bot.diagnosis.render import render_bundle_text
from bot.diagnosis.webhooks import MatchedWebhook
from tests.diagnosis.kubelet import event, pod, pull_failure

TEMPLATE = "registry.internal/shop/web:2.1"
REWRITTEN = "mirror.corp.example/shop/web:2.1"
NODE = {"metadata": {"name": "worker-1"}, "status": {
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"},
        {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure",
         "message": "ephemeral-storage low"}],
    "nodeInfo": {"kubeletVersion": "v1.33.1", "containerRuntimeVersion": "cri-o://1.32.2",
                 "osImage": "Red Hat Enterprise Linux CoreOS 418", "operatingSystem": "linux",
                 "architecture": "arm64", "kernelVersion": "5.14.0"}}}
MIRROR = MatchedWebhook("image-mirror", "rewrite.mirror.corp.example", True, "Ignore")
KYVERNO = MatchedWebhook("kyverno-resource-validating-webhook-cfg",
                         "validate.kyverno.svc-fail", False, "Fail")


def bundle_facts(**overrides: Any) -> BundleFacts:
    values: dict[str, Any] = dict(
        pod=pod(REWRITTEN, pull_secrets=("regcred",)),
        events=pull_failure(REWRITTEN, "401 Unauthorized"),
        workload=WorkloadRef("Deployment", "web"),
        template=TemplateImages(WorkloadRef("ReplicaSet", "web-7d9f8b6c5d"), {"web": TEMPLATE}),
        workload_template=TemplateImages(WorkloadRef("Deployment", "web"), {"web": TEMPLATE}),
        node=NODE, server_version="v1.33.1",
        secrets=[SecretFacts("regcred", "pod", True, ("registry.internal",),
                             (("registry.internal", "shop-puller"),))],
        webhooks=[MIRROR, KYVERNO])
    values.update(overrides)
    return BundleFacts(**values)


def test_the_guides_list_in_one_object() -> None:
    bundle = assemble(bundle_facts())
    [web] = bundle.containers
    assert (web.image, web.template_image, web.workload_image) == (REWRITTEN, TEMPLATE, TEMPLATE)
    assert web.rewritten and web.state == "ImagePullBackOff"
    assert bundle.node is not None and bundle.node.runtime_name == "cri-o"
    assert bundle.disk_pressure is True
    assert [c.type for c in bundle.node.conditions] == ["DiskPressure", "Ready"]
    assert bundle.mutating_webhooks == (MIRROR,)
    commands = [c.command for c in bundle.commands]
    # node-side commands fitted to the node's runtime (CRI-O keeps images elsewhere)
    assert f"sudo crictl pull {REWRITTEN}" in commands
    assert "df -h /var/lib/containers" in commands
    assert "sudo journalctl -u crio --since -1h --no-pager" in commands
    assert "curl -v https://mirror.corp.example/v2/" in commands
    assert "kubectl describe pod web-7d9f8b6c5d-x2x9q -n shop" in commands
    for command in commands:
        shlex.split(command)


def test_json_has_every_key_always_and_is_stable() -> None:
    whole = assemble(bundle_facts()).to_json()
    bare = assemble(bundle_facts(node=None, secrets=None, webhooks=None, template=None,
                                 workload_template=None, server_version=None,
                                 unavailable={"webhooks": "not readable"})).to_json()
    assert list(whole) == list(bare)  # same keys, same order, whatever was readable
    assert bare["node"] is None and bare["webhooks"] is None and bare["disk_pressure"] is None
    assert bare["unavailable"] == {"webhooks": "not readable"}
    assert whole["webhooks"][0] == {"configuration": "image-mirror",
                                    "name": "rewrite.mirror.corp.example", "mutating": True,
                                    "failure_policy": "Ignore", "notes": []}
    assert whole["pull_secrets"][0]["usernames"] == [
        {"registry": "registry.internal", "username": "shop-puller"}]
    json.dumps(whole)


def test_an_unscheduled_pod_says_why_there_is_no_node() -> None:
    unscheduled = pod(REWRITTEN)
    del unscheduled["spec"]["nodeName"]
    bundle = assemble(bundle_facts(pod=unscheduled, node=None))
    assert "not scheduled" in bundle.unavailable["node"]
    assert any("<node>" in c.title for c in bundle.commands)


def test_many_events_are_cut_with_a_count() -> None:
    events = [event("Failed", f"attempt {i}", first_ago=5000 - i, last_ago=5000 - i)
              for i in range(MAX_EVENTS + 7)]
    bundle = assemble(bundle_facts(events=events))
    assert len(bundle.events) == MAX_EVENTS and bundle.events_omitted == 7
    assert bundle.events[-1].message == f"attempt {MAX_EVENTS + 6}"  # the newest kept


def test_text_keeps_hostile_event_text_on_its_line() -> None:
    hostile = "denied\nPull secrets (names, registries and usernames; never a password)\n  fake"
    bundle = assemble(bundle_facts(events=[event("Failed", hostile)]))
    text = render_bundle_text(bundle)
    assert [line for line in text.splitlines() if line.startswith("Pull secrets")] == [
        "Pull secrets (names, registries and usernames; never a password)"]
    assert "denied\\nPull secrets" in text
    assert "← REWRITTEN at admission" in text
    assert "image-mirror/rewrite.mirror.corp.example: mutating, failurePolicy Ignore" in text
    assert "registry.internal: username shop-puller" in text


def test_text_names_what_was_not_looked_at() -> None:
    bundle = assemble(bundle_facts(webhooks=None, unavailable={
        "webhooks": "admission webhook configurations are not readable by this install"}))
    text = render_bundle_text(bundle)
    assert "Not looked at" in text and "webhooks: admission webhook configurations" in text
