"""Block Kit for incidents: pure functions from an Incident to (fallback text, blocks).

Slack's limits are respected here, where the text is made: at most 50 blocks per message,
3,000 characters per section text, 10 fields per section (2,000 characters each) and 150 per
header. Long evidence and commands are cut with a visible marker, never silently.
"""

from __future__ import annotations

import time
from typing import Any

from bot.diagnosis.causes import Cause
from bot.incidents import Incident, Member

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_FIXES = 6
MAX_LISTED = 15

Block = dict[str, Any]

TITLES: dict[Cause, str] = {
    Cause.TAG_NOT_FOUND: "Image tag not found",
    Cause.REPOSITORY_NOT_FOUND: "Image repository not found",
    Cause.AUTH_REQUIRED: "Registry credentials missing or wrong",
    Cause.FORBIDDEN: "Registry refuses access (403)",
    Cause.RATE_LIMITED: "Registry rate limit (429)",
    Cause.DNS_FAILURE: "Registry host does not resolve",
    Cause.NETWORK_UNREACHABLE: "Registry unreachable",
    Cause.TLS_UNTRUSTED: "Registry TLS certificate not trusted",
    Cause.NEVER_PULL: "imagePullPolicy: Never and image not on node",
    Cause.INVALID_IMAGE_NAME: "Invalid image name",
    Cause.DISK_FULL: "Node disk full while pulling",
    Cause.PLATFORM_MISMATCH: "No image for the node's platform",
    Cause.UNKNOWN: "Image pull failing (cause unknown)",
}

#: Button action ids; their handlers live in handlers/ (the interactive Slack issue).
ACTION_QUOTA = "ipb_check_quota"
ACTION_VERIFY_SECRET = "ipb_verify_secret"
ACTION_RESTART = "ipb_rollout_restart"
ACTION_SET_IMAGE = "ipb_set_image"
_CREDENTIAL_CAUSES = {Cause.AUTH_REQUIRED, Cause.FORBIDDEN, Cause.REPOSITORY_NOT_FOUND}
_RESTARTABLE = {"deployment", "statefulset", "daemonset"}


def cut(text: str, limit: int) -> str:
    """Trim to Slack's limit with a visible marker."""
    return text if len(text) <= limit else text[: limit - 12] + " …(truncated)"


def _mrkdwn(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION_TEXT)}}


def _code(text: str, limit: int) -> str:
    body = text.replace("```", "'''")
    return f"```{cut(body, limit - 6)}```"


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, 3000)}]}


def _date(epoch: float) -> str:
    """Slack renders this in each reader's time zone; the fallback is UTC."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _header(incident: Incident, resolved: bool) -> Block:
    title = TITLES[incident.cause]
    text = f"✅ Resolved: {title}" if resolved else f"🔴 {title}"
    return {"type": "header", "text": {"type": "plain_text", "text": cut(text, MAX_HEADER),
                                       "emoji": True}}


def _fields(incident: Incident, resolved: bool = False) -> Block:
    d = incident.diagnosis
    pods = len(incident.pods)
    if resolved:  # nobody fails any more: show how many were hit
        pods = len({mid.rsplit("/", 1)[0] for mid in incident.announced})
    workloads = incident.workloads
    fields = [("Cluster", incident.cluster)]
    if incident.scope_kind == "registry":
        fields += [("Registry", incident.scope),
                   ("Workloads", str(len(workloads)) if not resolved else "—")]
    else:
        workload = d.get("workload", {})
        fields += [("Namespace", str(d.get("namespace", ""))),
                   ("Workload", f"{workload.get('kind')}/{workload.get('name')}"),
                   ("Container", str(d.get("container", "")))]
    images = sorted({m.image for m in incident.members.values()})
    image = (f"{len(images)} images, e.g. `{images[0]}`" if len(images) > 1
             else f"`{d.get('image', '')}`")
    fields += [("Images" if len(images) > 1 else "Image", image),
               ("Pods affected" if resolved else "Pods failing", str(pods)),
               ("Since", _date(incident.created_at)),
               ("Outlook", "Transient — may clear on the next retry" if incident.transient
                else "Permanent — needs a change")]
    return {"type": "section", "fields": [
        {"type": "mrkdwn", "text": cut(f"*{k}*\n{v}", MAX_FIELD_TEXT)} for k, v in fields[:10]]}


def _workload_list(incident: Incident) -> Block | None:
    if incident.scope_kind != "registry" or not incident.members:
        return None
    lines = [f"• `{w}` — {n} pod{'s' if n != 1 else ''}"
             for w, n in sorted(incident.workloads.items())]
    more = len(lines) - MAX_LISTED
    shown = lines[:MAX_LISTED] + ([f"…and {more} more"] if more > 0 else [])
    return _mrkdwn("*Affected workloads*\n" + "\n".join(shown))


def _fix_blocks(diagnosis: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    fixes = diagnosis.get("fixes") or []
    for number, fix in enumerate(fixes[:MAX_FIXES], start=1):
        title = f"*{number}.* {fix.get('title', '')}\n"
        blocks.append(_mrkdwn(title + _code(str(fix.get("command", "")),
                                            MAX_SECTION_TEXT - len(title))))
    if len(fixes) > MAX_FIXES:
        blocks.append(_context(f"{len(fixes) - MAX_FIXES} more steps: "
                               f"`/imagepull diagnose {diagnosis.get('namespace')}/"
                               f"{diagnosis.get('pod')}`"))
    return blocks


def _evidence_block(diagnosis: dict[str, Any]) -> Block | None:
    evidence = diagnosis.get("evidence") or []
    if not evidence:
        return None
    return _mrkdwn("*Evidence* (the kubelet's own words)\n"
                   + _code(str(evidence[0]), MAX_SECTION_TEXT - 60))


def _buttons(incident: Incident) -> Block | None:
    d = incident.diagnosis
    elements: list[Block] = []

    def button(label: str, action: str, style: str | None = None,
               confirm: str | None = None) -> None:
        element: Block = {"type": "button", "action_id": action, "value": incident.id,
                          "text": {"type": "plain_text", "text": cut(label, 75)}}
        if style:
            element["style"] = style
        if confirm:
            element["confirm"] = {
                "title": {"type": "plain_text", "text": "Ask for approval?"},
                "text": {"type": "mrkdwn", "text": cut(confirm, 300)},
                "confirm": {"type": "plain_text", "text": "Request"},
                "deny": {"type": "plain_text", "text": "Cancel"}}
        elements.append(element)

    image = str(d.get("image", ""))
    if incident.cause is Cause.RATE_LIMITED:
        button("Check Docker Hub quota", ACTION_QUOTA)
    if incident.cause in _CREDENTIAL_CAUSES:
        button("Verify pull secret", ACTION_VERIFY_SECRET)
    suggestion = suggested_image(d)
    workload = d.get("workload") or {}
    kind = str(workload.get("kind", "")).lower()
    if suggestion and incident.scope_kind == "workload":
        button(f"Set image to {suggestion}", ACTION_SET_IMAGE, "primary",
               f"Set `{d.get('container')}` of `{kind}/{workload.get('name')}` from "
               f"`{image}` to `{suggestion}`? An approver must confirm.")
    if kind in _RESTARTABLE and incident.scope_kind == "workload":
        button("Rollout restart", ACTION_RESTART, None,
               f"Restart `{kind}/{workload.get('name')}` in `{d.get('namespace')}`? "
               "An approver must confirm.")
    return {"type": "actions", "block_id": f"ipb-actions-{incident.id}",
            "elements": elements} if elements else None


def suggested_image(diagnosis: dict[str, Any]) -> str | None:
    """The registry-confirmed image of the first fix, when there is one."""
    findings = set(diagnosis.get("findings") or [])
    if not findings & {"tag_suggestion", "swapped_path", "registry_host_typo"}:
        return None
    first = (diagnosis.get("fixes") or [{}])[0].get("command", "")
    container = diagnosis.get("container")
    for word in str(first).split():
        if word.startswith(f"{container}="):
            return word.split("=", 1)[1]
    return None


def root_message(incident: Incident, *, resolved: bool = False,
                 now: float | None = None) -> tuple[str, list[Block]]:
    """The root alert (also its resolved form, used by chat.update)."""
    d = incident.diagnosis
    summary = str(d.get("summary", ""))
    text = f"{TITLES[incident.cause]}: {summary}"
    blocks: list[Block] = [_header(incident, resolved)]
    if resolved and incident.resolved_at is not None:
        took = duration(incident.resolved_at - incident.created_at)
        blocks.append(_mrkdwn(f"*Resolved* after {took}. ~{cut(summary, 2500)}~"))
        text = f"Resolved: {text}"
    else:
        blocks.append(_mrkdwn(summary))
    blocks.append(_fields(incident, resolved))
    listing = _workload_list(incident)
    if listing:
        blocks.append(listing)
    if not resolved:
        evidence = _evidence_block(d)
        if evidence:
            blocks.append(evidence)
        blocks.extend(_fix_blocks(d))
        actions = _buttons(incident)
        if actions:
            blocks.append(actions)
    blocks.append(_context(f"imagepull-bot · incident `{incident.id}` · cause "
                           f"`{incident.cause.value}` · "
                           f"`/imagepull diagnose {d.get('namespace')}/{d.get('pod')}`"))
    return text, blocks[:MAX_BLOCKS]


def _member_lines(members: list[Member]) -> str:
    lines = [f"• `{m.namespace}/{m.pod}` ({m.workload_kind}/{m.workload_name})"
             for m in members[:MAX_LISTED]]
    if len(members) > MAX_LISTED:
        lines.append(f"…and {len(members) - MAX_LISTED} more")
    return "\n".join(lines)


def update_message(incident: Incident, new: list[Member],
                   recovered: list[Member]) -> tuple[str, list[Block]]:
    parts: list[str] = []
    if new:
        parts.append(f":heavy_plus_sign: *{len(new)} more failing* (now "
                     f"{len(incident.pods)} pods in {len(incident.workloads)} workload(s))\n"
                     f"{_member_lines(new)}")
    if recovered:
        parts.append(f"✅ *{len(recovered)} recovered*\n{_member_lines(recovered)}")
    text = "\n\n".join(parts) or "No change."
    return cut(text, 3000), [_mrkdwn(p) for p in parts][:MAX_BLOCKS]


def reminder_message(incident: Incident, now: float) -> tuple[str, list[Block]]:
    text = (f"⏰ Still failing after {duration(now - incident.created_at)}: "
            f"{len(incident.pods)} pod(s) in {len(incident.workloads)} workload(s).")
    return text, [_mrkdwn(text)]


def resolved_message(incident: Incident) -> tuple[str, list[Block]]:
    took = duration((incident.resolved_at or time.time()) - incident.created_at)
    text = f"✅ Resolved after {took}: every affected pod now pulls its image (or is gone)."
    return text, [_mrkdwn(text)]


# -- /imagepull answers -------------------------------------------------------------------------


def diagnosis_message(result: dict[str, Any]) -> tuple[str, list[Block]]:
    """A PodDiagnosis (JSON form) as the same blocks an alert uses, one part per container."""
    namespace, pod = result.get("namespace"), result.get("pod")
    entries = result.get("diagnoses") or []
    if not entries:
        text = f"`{namespace}/{pod}`: no image-pull problem found."
        return text, [_mrkdwn(f"✅ {text}")]
    blocks: list[Block] = []
    for entry in entries:
        d = {**entry, "namespace": namespace, "pod": pod}
        cause = Cause(entry["cause"])
        workload = entry.get("workload") or {}
        kind = "init container" if entry.get("init_container") else "container"
        blocks.append(_mrkdwn(f"*{TITLES[cause]}* — `{namespace}/{pod}` {kind} "
                              f"`{entry.get('container')}`\n{entry.get('summary', '')}"))
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": cut(f"*{k}*\n{v}", MAX_FIELD_TEXT)} for k, v in (
                ("Workload", f"{workload.get('kind')}/{workload.get('name')}"),
                ("Image", f"`{entry.get('image')}`"),
                ("Outlook", "Transient" if entry.get("transient") else "Permanent"),
                ("Findings", ", ".join(entry.get("findings") or []) or "—"))]})
        evidence = _evidence_block(d)
        if evidence:
            blocks.append(evidence)
        blocks.extend(_fix_blocks(d))
        blocks.append({"type": "divider"})
    text = f"`{namespace}/{pod}`: {len(entries)} container(s) cannot pull their image"
    return text, blocks[:MAX_BLOCKS]


def text_message(text: str) -> tuple[str, list[Block]]:
    return cut(text, 3000), [_mrkdwn(text)]


# -- approvals ----------------------------------------------------------------------------------


def approval_message(request: Any, approvers: str,
                     two_person: bool) -> tuple[str, list[Block]]:
    """The approval request; once decided, the same message without buttons."""
    from bot.approvals import ACTION_APPROVE, ACTION_DENY

    if request.state == "pending":
        rule = " (not the requester: two-person rule)" if two_person else ""
        text = f"Approval needed: {request.describe()}"
        blocks: list[Block] = [
            _mrkdwn(f"🛂 *Approval needed* — {request.describe()}\nRequested by "
                    f"<@{request.requester}> · expires {_date(request.expires_at)}\n"
                    f"Approvers{rule}: {approvers}"),
            {"type": "actions", "block_id": f"ipb-approval-{request.id}", "elements": [
                {"type": "button", "action_id": ACTION_APPROVE, "value": request.id,
                 "style": "primary", "text": {"type": "plain_text", "text": "Approve"},
                 "confirm": {
                     "title": {"type": "plain_text", "text": "Run it now?"},
                     "text": {"type": "mrkdwn", "text": cut(request.describe(), 300)},
                     "confirm": {"type": "plain_text", "text": "Approve"},
                     "deny": {"type": "plain_text", "text": "Cancel"}}},
                {"type": "button", "action_id": ACTION_DENY, "value": request.id,
                 "style": "danger", "text": {"type": "plain_text", "text": "Deny"}}]},
            _context(f"request `{request.id}`")]
        return text, blocks
    outcome = {"approved": "✅ Approved", "denied": "🚫 Denied", "failed": "⚠️ Approved, failed",
               "expired": "⌛ Expired"}.get(request.state, request.state)
    who = f" by <@{request.decided_by}>" if request.decided_by else ""
    result = f"\n{request.result}" if request.result else ""
    text = f"{outcome}{who}: {request.describe()}"
    return text, [_mrkdwn(f"{outcome}{who} — {request.describe()}{result}"),
                  _context(f"request `{request.id}` · requested by <@{request.requester}>")]


def approval_audit_line(request: Any, outcome: str, user: str) -> str:
    """One line for the incident thread: who, what, when, result."""
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(request.decided_at or time.time()))
    verbs = {"approved": "approved", "denied": "denied", "failed": "approved (it failed)",
             "expired": "let expire"}
    line = (f"🧾 <@{user}> {verbs.get(outcome, outcome)} the {request.describe()} requested by "
            f"<@{request.requester}> at {at}")
    return line + (f" — {request.result}" if request.result else "")
