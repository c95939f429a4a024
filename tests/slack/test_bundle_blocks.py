"""The escalation bundle in Block Kit: within Slack's limits however large the pod's story,
cut with counts (never silently), and no text from the cluster can ping, link or format."""

from __future__ import annotations

import json
from typing import Any

from bot.diagnosis.bundle import BundleFacts, SecretFacts, assemble
from bot.diagnosis.facts import TemplateImages, WorkloadRef
from bot.diagnosis.webhooks import MatchedWebhook
from bot.slack.blocks import MAX_BLOCKS, MAX_SECTION_TEXT, bundle_message
from tests.diagnosis.kubelet import event, pod, pull_failure

REWRITTEN = "mirror.corp.example/shop/web:2.1"
TEMPLATE = "registry.internal/shop/web:2.1"


def facts(**overrides: Any) -> BundleFacts:
    values: dict[str, Any] = dict(
        pod=pod(REWRITTEN), events=pull_failure(REWRITTEN, "401 Unauthorized"),
        workload=WorkloadRef("Deployment", "web"),
        template=TemplateImages(WorkloadRef("ReplicaSet", "web-7d9f8b6c5d"), {"web": TEMPLATE}),
        server_version="v1.33.1",
        secrets=[SecretFacts("regcred", "pod", True, ("registry.internal",),
                             (("registry.internal", "shop-puller"),))],
        webhooks=[MatchedWebhook("image-mirror", "rewrite.mirror.corp.example", True, "Ignore")])
    values.update(overrides)
    return BundleFacts(**values)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", []) if "text" in e]
    return out


def test_the_bundle_names_the_webhook_and_the_rewrite() -> None:
    text, blocks = bundle_message(assemble(facts()))
    body = json.dumps(blocks, ensure_ascii=False)
    assert "`image-mirror/rewrite.mirror.corp.example` — mutating, failurePolicy `Ignore`" in body
    assert "rewritten at admission" in body
    assert "`shop-puller` on `registry.internal`" in body
    assert "sudo crictl pull mirror.corp.example/shop/web:2.1" in body
    assert "curl -v https://mirror.corp.example/v2/" in body
    assert "Escalation bundle for `shop/web-7d9f8b6c5d-x2x9q`" in text


def test_a_huge_bundle_stays_within_slack_limits_and_counts_the_rest() -> None:
    events = [event("Failed", "x" * 900 + f" attempt {i}", first_ago=900 - i, last_ago=900 - i)
              for i in range(60)]
    secrets = [SecretFacts(f"secret-{i}", "pod", True, ("r.example",) * 3,
                           (("r.example", "u" * 60),)) for i in range(40)]
    hooks = [MatchedWebhook(f"config-{i}", f"hook-{i}.example.com", i % 2 == 0, "Fail",
                            ("has matchConditions (CEL), not evaluated: it may skip this pod",))
             for i in range(40)]
    spec_containers = [{"name": f"c{i}", "image": f"registry.internal/app/c{i}:{'1' * 100}"}
                       for i in range(30)]
    many = pod(REWRITTEN)
    many["spec"]["containers"] = spec_containers
    _, blocks = bundle_message(assemble(facts(pod=many, events=events, secrets=secrets,
                                              webhooks=hooks)))
    assert len(blocks) <= MAX_BLOCKS
    assert all(len(t) <= MAX_SECTION_TEXT for t in texts(blocks))
    body = json.dumps(blocks, ensure_ascii=False)
    assert "…and 30 more secrets" in body and "…and 30 more webhooks" in body
    assert "…and 20 more containers" in body
    assert "48 older left out" in body  # 60 events: 30 kept by the bundle, 12 shown here


def test_hostile_text_from_the_cluster_cannot_ping_link_or_break_out() -> None:
    hostile = "<!channel> <https://evil.example|click> ``` *bold* `x"
    bad = pod(REWRITTEN)
    bad["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = "<!here>"
    _, blocks = bundle_message(assemble(facts(
        pod=bad, events=[event("Failed", hostile)],
        secrets=[SecretFacts("regcred", "pod", True, ("<!everyone>",), (("r", "<@U0BOSS>"),))],
        webhooks=[MatchedWebhook("<!channel>", "w`x", True, "<b>")],
        unavailable={"node": "<!subteam^S0ONCALL>"})))
    for text in texts(blocks):
        assert "<!" not in text and "<http" not in text and "<@" not in text
    body = "\n".join(texts(blocks))
    assert "&lt;!channel&gt;" in body and "&lt;!here&gt;" in body
