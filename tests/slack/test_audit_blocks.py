"""The audit in Block Kit: Slack's limits hold however many findings there are, and what does
not fit is counted, never silently dropped."""

from __future__ import annotations

import json

from bot.diagnosis.audit_model import AuditFinding, AuditReport, Check
from bot.diagnosis.model import Fix
from bot.slack.blocks import MAX_BLOCKS, MAX_SECTION_TEXT, audit_message


def finding(ns: str, i: int, message_size: int = 200) -> AuditFinding:
    return AuditFinding(Check.LATEST_TAG, ns, "Deployment", f"web-{i}",
                        "`nginx` has no tag " + "x" * message_size,
                        (Fix("Name the version (replace <tag>)",
                             f"kubectl set image deployment/web-{i} 'web=nginx:<tag>' -n {ns}"),
                         Fix("second", "true")), "web", "nginx")


def test_a_large_audit_stays_within_slack_limits_and_counts_the_rest() -> None:
    findings = tuple(finding(f"ns-{n:02d}", i, 900) for n in range(30) for i in range(20))
    text, blocks = audit_message(AuditReport(findings, namespaces=30, workloads=600))
    assert len(blocks) <= MAX_BLOCKS
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(s) <= MAX_SECTION_TEXT for s in sections)
    assert "…(truncated)" not in json.dumps(blocks)  # packed, not cut
    shown = sum(s.count("• `latest_tag`") for s in sections)
    more = blocks[-1]["elements"][0]["text"]
    assert f"…and {len(findings) - shown} more finding(s)" in more
    assert "python -m bot audit" in more
    assert "600 findings" in text


def test_a_small_audit_shows_every_finding_grouped_by_namespace() -> None:
    findings = (finding("shop", 1), finding("shop", 2), finding("tools", 3))
    _, blocks = audit_message(AuditReport(findings, namespaces=2, workloads=3), scope=None)
    body = json.dumps(blocks, ensure_ascii=False)
    assert body.count("• `latest_tag`") == 3
    assert "*`shop`* — 2 finding(s)" in body and "*`tools`* — 1 finding(s)" in body
    assert "+1 more step" in body and "more finding" not in body


def test_clean() -> None:
    text, blocks = audit_message(AuditReport((), namespaces=4, workloads=9), scope="shop")
    assert text == "✅ Prevention audit of `shop`: no findings (4 namespaces, 9 workloads checked)."
    assert len(blocks) == 1
