"""Block Kit for incidents: pure functions from an Incident to (fallback text, blocks).

Slack's limits are respected here, where the text is made: at most 50 blocks per message,
3,000 characters per section text, 10 fields per section (2,000 characters each) and 150 per
header. Long evidence and commands are cut with a visible marker, never silently.

Every value (pod, image, container, event text, summary, registry answer...) reaches Slack
through bot/slack/text.py: templates are `Mrkdwn` literals, values are escaped by `format` /
`code` / `code_block`, and the block builders below (`_mrkdwn`, `_context`, `_field`,
`message`) escape any plain `str` that still reaches them. So no value can ping a channel or
hide a link, and a backtick in a value cannot break a code span.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.alerts.incidents import Incident, IncidentDiagnosis, Member
from bot.alerts.presence import Presence
from bot.diagnosis.audit_model import AuditFinding, AuditReport
from bot.diagnosis.bundle import Bundle
from bot.diagnosis.causes import CAUSES, Cause, Finding
from bot.diagnosis.cleared import (
    ACCOUNT_REFERENCES,
    DISK_PRESSURE_CLEARED,
    IMAGE_EXISTS,
    QUOTA_BACK,
    REGISTRY_ANSWERS,
    QuotaFigure,
)
from bot.diagnosis.engine import REGISTRY_EVIDENCE
from bot.diagnosis.explain import FINDING_TEXT
from bot.diagnosis.facts import WorkloadRef
from bot.diagnosis.fixes import remediation_command
from bot.diagnosis.model import ContainerDiagnosis, Fix, PodDiagnosis
from bot.registry.dockerhub import Quota
from bot.slack import actions
from bot.slack.text import (
    Mrkdwn,
    code,
    code_block,
    cut,
    date,
    escape,
    is_permalink,
    permalink,
    plain,
    sentence,
    user,
)

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_FIXES = 6
MAX_LISTED = 15
#: Other clusters a root names in its "Also failing in" line (the rest are counted).
MAX_NAMED_CLUSTERS = 10

Block = dict[str, Any]
M = Mrkdwn  # the bot's own mrkdwn literals, short for templates

_RESTARTABLE = {"deployment", "statefulset", "daemonset"}


def _mrkdwn(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(escape(text),
                                                                      MAX_SECTION_TEXT)}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn",
                                             "text": cut(escape(text), 3000)}]}


def _field(name: str, value: str) -> Block:
    return {"type": "mrkdwn", "text": cut(M("*{}*\n{}").format(name, value), MAX_FIELD_TEXT)}


def message(text: str, blocks: list[Block]) -> tuple[Mrkdwn, list[Block]]:
    """(fallback `text`, blocks): the fallback is mrkdwn too, so it is escaped like a block."""
    return cut(escape(text), 3000), blocks[:MAX_BLOCKS]


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _header(incident: Incident, resolved: bool) -> Block:
    title = CAUSES[incident.cause].title
    text = f"✅ Resolved: {title}" if resolved else f"🔴 {title}"
    return {"type": "header", "text": {"type": "plain_text", "text": plain(text, MAX_HEADER),
                                       "emoji": True}}


def _summary(diagnosis: ContainerDiagnosis) -> Mrkdwn:
    """The diagnosis summary: its code spans are built backtick-safe (bot/diagnosis/markup.py),
    so escaping the three control characters is all Slack needs."""
    return escape(diagnosis.summary)


def _workload_name(workload: WorkloadRef) -> str:
    return f"{workload.kind}/{workload.name}"


def _fields(incident: Incident, resolved: bool = False) -> Block:
    d = incident.diagnosis
    pods = len(incident.pods)
    if resolved:  # nobody fails any more: show how many were hit
        pods = len({mid.rsplit("/", 1)[0] for mid in incident.announced})
    workloads = incident.workloads
    fields: list[tuple[str, str]] = [("Cluster", incident.cluster)]
    if incident.scope_kind == "registry":
        fields += [("Registry", incident.scope),
                   ("Workloads", str(len(workloads)) if not resolved else "—")]
    else:
        fields += [("Namespace", d.namespace),
                   ("Workload", _workload_name(d.workload)),
                   ("Container", d.container)]
    images = sorted({m.image for m in incident.members.values()})
    image = (M("{} images, e.g. {}").format(len(images), code(images[0])) if len(images) > 1
             else code(d.image))
    fields += [("Images" if len(images) > 1 else "Image", image),
               ("Pods affected" if resolved else "Pods failing", str(pods)),
               ("Since", date(incident.created_at)),
               ("Outlook", "Transient — may clear on the next retry" if incident.transient
                else "Permanent — needs a change")]
    return {"type": "section", "fields": [_field(k, v) for k, v in fields[:10]]}


def _workload_list(incident: Incident) -> Block | None:
    if incident.scope_kind != "registry" or not incident.members:
        return None
    lines = [M("• {} — {} pod{}").format(code(w), n, "s" if n != 1 else "")
             for w, n in sorted(incident.workloads.items())]
    more = len(lines) - MAX_LISTED
    shown = lines[:MAX_LISTED] + ([M("…and {} more").format(more)] if more > 0 else [])
    return _mrkdwn(M("*Affected workloads*\n") + M("\n").join(shown))


def _diagnose_hint(diagnosis: IncidentDiagnosis) -> Mrkdwn:
    return code(f"/imagepull diagnose {diagnosis.namespace}/{diagnosis.pod}")


def _fix_blocks(diagnosis: IncidentDiagnosis) -> list[Block]:
    blocks: list[Block] = []
    fixes = diagnosis.fixes
    for number, fix in enumerate(fixes[:MAX_FIXES], start=1):
        title = M("*{}.* {}\n").format(number, fix.title)
        blocks.append(_mrkdwn(title + code_block(fix.command,
                                                 MAX_SECTION_TEXT - len(title))))
    if len(fixes) > MAX_FIXES:
        blocks.append(_context(M("{} more steps: {}").format(len(fixes) - MAX_FIXES,
                                                            _diagnose_hint(diagnosis))))
    return blocks


def _evidence_block(diagnosis: ContainerDiagnosis) -> Block | None:
    """The deciding kubelet text, and what the registry answered the bot (when it was asked:
    the line an edit of the root adds once the registry's answer is in)."""
    kubelet = [e for e in diagnosis.evidence if not e.startswith(REGISTRY_EVIDENCE)]
    registry = [e.removeprefix(REGISTRY_EVIDENCE) for e in diagnosis.evidence
                if e.startswith(REGISTRY_EVIDENCE)]
    parts: list[Mrkdwn] = []
    if kubelet:
        parts.append(M("*Evidence* (the kubelet's own words)\n")
                     + code_block(kubelet[0], MAX_SECTION_TEXT // 2 - 60))
    if registry:
        parts.append(M("*Registry* (asked by the bot)\n")
                     + code_block(registry[-1], MAX_SECTION_TEXT // 2 - 60))
    return _mrkdwn(M("\n").join(parts)) if parts else None


def _skipped(diagnosis: ContainerDiagnosis) -> Block | None:
    """What the diagnosis did not look at because this install may not (no secret reads)."""
    if Finding.SECRETS_NOT_READ not in diagnosis.findings:
        return None
    return _context(M("🔒 {}").format(FINDING_TEXT[Finding.SECRETS_NOT_READ]))


def _buttons(incident: Incident, remediation: bool = True) -> Block | None:
    """The alert's buttons; without `remediation` (a read-only install) only the checks, no
    Set image / Rollout restart (the fixes above still show the commands to run)."""
    d = incident.diagnosis
    elements: list[Block] = []

    def button(label: str, action: str, style: str | None = None,
               confirm: Mrkdwn | None = None) -> None:
        element: Block = {"type": "button", "action_id": action, "value": incident.id,
                          "text": {"type": "plain_text", "text": plain(label, 75)}}
        if style:
            element["style"] = style
        if confirm:
            element["confirm"] = {
                "title": {"type": "plain_text", "text": "Ask for approval?"},
                "text": {"type": "mrkdwn", "text": cut(confirm, 300)},
                "confirm": {"type": "plain_text", "text": "Request"},
                "deny": {"type": "plain_text", "text": "Cancel"}}
        elements.append(element)

    if incident.cause is Cause.RATE_LIMITED:
        button("Check Docker Hub quota", actions.QUOTA)
    # not in an install that reads no secrets: the check could only say it may not look
    if (CAUSES[incident.cause].credentials_suspect
            and Finding.SECRETS_NOT_READ not in d.findings):
        button("Verify pull secret", actions.VERIFY_SECRET)
    suggestion = d.suggested_image
    kind = d.workload.kind.lower()
    target = d.workload.kubectl_ref
    # a Job's pod template cannot change (its fix is delete and re-create): no button for it
    if remediation and suggestion and incident.scope_kind == "workload" and kind != "job":
        button(f"Set image to {suggestion}", actions.SET_IMAGE, "primary",
               M("Set {} of {} from {} to {}? An approver must confirm.").format(
                   code(d.container), code(target), code(d.image), code(suggestion)))
    if remediation and kind in _RESTARTABLE and incident.scope_kind == "workload":
        button("Rollout restart", actions.RESTART, None,
               M("Restart {} in {}? An approver must confirm.").format(
                   code(target), code(d.namespace)))
    # on every alert: what to hand over when the fixes above do not help
    button("Bundle", actions.BUNDLE)
    return {"type": "actions", "block_id": f"ipb-actions-{incident.id}",
            "elements": elements} if elements else None


def root_message(incident: Incident, *, resolved: bool = False,
                 now: float | None = None, remediation: bool = True) -> tuple[str, list[Block]]:
    """The root alert (also its resolved form, used by chat.update); `remediation` False (a
    read-only install) leaves the remediation buttons out."""
    d = incident.diagnosis
    summary = _summary(d)
    text = M("{}: {}").format(CAUSES[incident.cause].title, summary)
    blocks: list[Block] = [_header(incident, resolved)]
    if resolved and incident.resolved_at is not None:
        took = duration(incident.resolved_at - incident.created_at)
        blocks.append(_mrkdwn(M("*Resolved* after {}. ~{}~").format(took, cut(summary, 2500))))
        text = M("Resolved: ") + text
    else:
        blocks.append(_mrkdwn(summary))
        if incident.elsewhere:
            blocks.append(_context(elsewhere_line(incident.elsewhere)))
    blocks.append(_fields(incident, resolved))
    listing = _workload_list(incident)
    if listing:
        blocks.append(listing)
    if not resolved:
        evidence = _evidence_block(d)
        if evidence:
            blocks.append(evidence)
        blocks.extend(_fix_blocks(d))
        skipped = _skipped(d)
        if skipped:
            blocks.append(skipped)
        actions = _buttons(incident, remediation)
        if actions:
            blocks.append(actions)
    blocks.append(_context(M("imagepull-bot · incident {} · cause {} · {}").format(
        code(incident.id), code(incident.cause.value), _diagnose_hint(d))))
    return message(text, blocks)


def elsewhere_line(clusters: dict[str, str]) -> Mrkdwn:
    """"Also failing in: prod-us, staging", each name linking to that cluster's thread (issue
    13: one registry outage seen by several clusters). Names are configuration of other
    agents, read from the shared store: escaped like any text; a link that is not a Slack
    permalink is not shown at all (as code it would still be a URL someone wrote, beside a
    name that looks like ours)."""
    names = sorted(clusters)
    shown = [permalink(clusters[name], name) if is_permalink(clusters[name])
             else M("{}").format(name) for name in names[:MAX_NAMED_CLUSTERS]]
    line = M(":link: Also failing in: ") + M(", ").join(shown)
    if len(names) > MAX_NAMED_CLUSTERS:
        line += M(" …and {} more").format(len(names) - MAX_NAMED_CLUSTERS)
    return line + M(" (same cause, same registry)")


def _member_lines(members: list[Member]) -> Mrkdwn:
    lines = [M("• {} ({}/{})").format(code(f"{m.namespace}/{m.pod}"), m.workload_kind,
                                      m.workload_name)
             for m in members[:MAX_LISTED]]
    if len(members) > MAX_LISTED:
        lines.append(M("…and {} more").format(len(members) - MAX_LISTED))
    return M("\n").join(lines)


def update_message(incident: Incident, new: list[Member],
                   recovered: list[Member]) -> tuple[str, list[Block]]:
    parts: list[Mrkdwn] = []
    if new:
        parts.append(M(":heavy_plus_sign: *{} more failing* (now {} pods in {} workload(s))\n{}")
                     .format(len(new), len(incident.pods), len(incident.workloads),
                             _member_lines(new)))
    if recovered:
        parts.append(M("✅ *{} recovered*\n{}").format(len(recovered),
                                                        _member_lines(recovered)))
    text = M("\n\n").join(parts) or M("No change.")
    return message(text, [_mrkdwn(p) for p in parts])


def reminder_message(incident: Incident, now: float) -> tuple[str, list[Block]]:
    text = M("⏰ Still failing after {}: {} pod(s) in {} workload(s).").format(
        duration(now - incident.created_at), len(incident.pods), len(incident.workloads))
    return message(text, [_mrkdwn(text)])


def resolved_message(incident: Incident) -> tuple[str, list[Block]]:
    took = duration((incident.resolved_at or time.time()) - incident.created_at)
    text = M("✅ Resolved after {}: every affected pod now pulls its image (or is gone).{}"
             ).format(took, retry_saved_line(incident))
    return message(text, [_mrkdwn(text)])


def _retry_target(incident: Incident) -> str | None:
    """What "Retry now" acts on: "restart" (a Deployment, StatefulSet or DaemonSet), "delete"
    (a bare pod), or None (a Job or CronJob: no button, the kubelet's retry or the next run)."""
    kind = incident.diagnosis.workload.kind.lower()
    # a rate-limited incident is the registry's, but when its failing pods are all of one
    # workload (the diagnosis's), a retry after the quota came back acts on that one
    d = incident.diagnosis
    own = f"{d.namespace}/{kind}/{d.workload.name}"
    one_workload = (incident.cleared is not None and incident.cleared.change.kind == QUOTA_BACK
                    and set(incident.workloads) <= {own})
    if incident.scope_kind != "workload" and not one_workload:
        return None
    if kind in _RESTARTABLE:
        return "restart"
    return "delete" if kind == "pod" else None


def retry_saved_line(incident: Incident) -> Mrkdwn:
    """What the approved Retry now saved, for the resolution line ("" without one)."""
    cleared = incident.cleared
    if incident.retried_at is None or cleared is None:
        return M("")
    if cleared.kubelet_retry_at is None:
        if cleared.change.kind == ACCOUNT_REFERENCES:
            return M(" Retry now gave the pods the service account's pull secret (the old "
                     "pods would never have had it).")
        return M("")
    if incident.retry_saved is None:
        return M(" Retry now ran; the kubelet's own retry was due at {} anyway.").format(
            date(cleared.kubelet_retry_at))
    return M(" Retry now saved {}: the kubelet's own retry was due at {}.").format(
        duration(incident.retry_saved), date(cleared.kubelet_retry_at))


def _quota_back(figure: QuotaFigure) -> Mrkdwn:
    """One quota that came back, saying whose it is (never a password: there is none here)."""
    if figure.remaining is None:
        left = M("no longer limited")
    else:
        left = M("{} of {} left").format(figure.remaining, figure.limit or "?")
    if figure.account:
        return M("Docker Hub quota for account {} is back: {}").format(code(figure.account),
                                                                       left)
    return M("the bot's own outbound IP has Docker Hub pulls again ({}); your nodes share it "
             "only if they leave through the same NAT (it ran out while the nodes got 429s)"
             ).format(left)


def cleared_message(incident: Incident, *, remediation: bool = True,
                    now: float | None = None) -> tuple[str, list[Block]]:
    """The one thread line when the cause went away (issue 12, Deliver 1): what changed,
    when the kubelet retries by itself (its back-off schedule), and a Retry now button that
    asks for approval; read-only (`remediation` False): the command to run instead."""
    cleared = incident.cleared
    if cleared is None:
        raise ValueError(f"incident {incident.id} has no cleared cause")
    now = time.time() if now is None else now
    change, d = cleared.change, incident.diagnosis
    if change.kind == ACCOUNT_REFERENCES:
        what = M("service account {} in {} now references pull secret {}").format(
            code(change.account), code(change.namespace), code(change.secret))
        when = M("The failing pods were created before that and never get it (admission adds "
                 "a service account's pull secrets to new pods only): the kubelet's retries "
                 "keep failing until the pods are replaced.")
    else:
        if change.kind == DISK_PRESSURE_CLEARED:
            what = M("node {} no longer reports DiskPressure").format(code(change.node))
        elif change.kind == REGISTRY_ANSWERS:
            what = M("registry {} resolves and answers the bot again (the nodes' path to it "
                     "may differ)").format(code(change.registry))
        elif change.kind == QUOTA_BACK:
            what = M("; ").join(_quota_back(q) for q in change.quotas)
        elif change.kind == IMAGE_EXISTS:
            what = M("image {} now exists in its registry").format(
                code(change.image))
        else:
            what = M("pull secret {} now exists in {}").format(code(change.secret),
                                                              code(change.namespace))
        if cleared.kubelet_retry_at is None:
            when = M("The kubelet retries on its own within 5 minutes (its back-off).")
        else:
            when = M("The kubelet retries on its own at {} (in {}, its back-off).").format(
                date(cleared.kubelet_retry_at), duration(cleared.kubelet_retry_at - now))
    target = _retry_target(incident)
    ref = d.workload.kubectl_ref
    if target is None:
        act = M("")
    elif not remediation:
        command = remediation_command("retry", d.namespace, d.workload.kind, d.workload.name)
        act = M(" To retry now, run {} (this install is read-only).").format(code(command))
    elif target == "delete":
        act = M(" *Retry now* deletes {} so it can be re-created and pull at once (nothing "
                "re-creates a bare pod: re-apply its manifest).").format(code(ref))
    else:
        act = M(" *Retry now* restarts {} so its pods pull at once.").format(code(ref))
    text = M("🔧 The cause is fixed: {}, seen {}. {}{}").format(
        what, date(cleared.at), when, act)
    blocks: list[Block] = [_mrkdwn(text)]
    if remediation and target is not None:
        verb = "Delete" if target == "delete" else "Restart"
        blocks.append({"type": "actions", "block_id": f"ipb-retry-{incident.id}", "elements": [{
            "type": "button", "action_id": actions.RETRY, "value": incident.id,
            "style": "primary", "text": {"type": "plain_text", "text": "Retry now"},
            "confirm": {
                "title": {"type": "plain_text", "text": "Ask for approval?"},
                "text": {"type": "mrkdwn", "text": cut(M("{} {} in {} now? An approver must "
                                                         "confirm.").format(
                    verb, code(ref), code(d.namespace)), 300)},
                "confirm": {"type": "plain_text", "text": "Request"},
                "deny": {"type": "plain_text", "text": "Cancel"}}}]})
    return message(text, blocks)


# -- /imagepull answers -------------------------------------------------------------------------


def diagnosis_message(result: PodDiagnosis) -> tuple[str, list[Block]]:
    """A PodDiagnosis as the same blocks an alert uses, one part per container."""
    where = code(f"{result.namespace}/{result.pod}")
    entries = result.diagnoses
    if not entries:
        text = M("{}: no image-pull problem found.").format(where)
        return message(text, [_mrkdwn(M("✅ ") + text)])
    blocks: list[Block] = []
    for entry in entries:
        d = IncidentDiagnosis.of(entry, result.namespace, result.pod)
        kind = "init container" if entry.init_container else "container"
        blocks.append(_mrkdwn(M("*{}* — {} {} {}\n{}").format(
            CAUSES[entry.cause].title, where, kind, code(entry.container), _summary(entry))))
        blocks.append({"type": "section", "fields": [_field(k, v) for k, v in (
            ("Workload", _workload_name(entry.workload)),
            ("Image", code(entry.image)),
            ("Outlook", "Transient" if entry.transient else "Permanent"),
            ("Findings", ", ".join(f.value for f in entry.findings) or "—"))]})
        evidence = _evidence_block(d)
        if evidence:
            blocks.append(evidence)
        blocks.extend(_fix_blocks(d))
        skipped = _skipped(entry)
        if skipped:
            blocks.append(skipped)
        blocks.append({"type": "divider"})
    text = M("{}: {} container(s) cannot pull their image").format(where, len(entries))
    return message(text, blocks)


# -- the escalation bundle (/imagepull bundle, the alert's Bundle button) ----------------------

#: Lines of one list part (containers, secrets, webhooks, conditions) before "…and N more".
BUNDLE_LIST = 10
#: Events shown in Slack (newest); the CLI and JSON hold up to bot.diagnosis.bundle.MAX_EVENTS.
BUNDLE_EVENTS = 12


def _listed(lines: Sequence[Mrkdwn], noun: str) -> Mrkdwn:
    shown = list(lines[:BUNDLE_LIST])
    if len(lines) > BUNDLE_LIST:
        shown.append(M("…and {} more {} (`python -m bot bundle` lists all)").format(
            len(lines) - BUNDLE_LIST, noun))
    return M("\n").join(shown)


def _bundle_images(bundle: Bundle) -> Mrkdwn:
    lines: list[Mrkdwn] = []
    for c in bundle.containers:
        kind = "init container" if c.init else "container"
        line = M("• {} {}: {} — {}").format(kind, code(c.name), code(c.image), c.state)
        if c.template_image is not None and bundle.template_source is not None:
            line += M("\n    template {}: {}{}").format(
                code(bundle.template_source.kubectl_ref), code(c.template_image),
                M(" ⚠️ *rewritten at admission*") if c.rewritten else M(""))
        if c.workload_image is not None:
            line += M("\n    workload {}: {}").format(code(bundle.workload.kubectl_ref),
                                                     code(c.workload_image))
        lines.append(line)
    return M("*Images*\n") + _listed(lines, "containers")


def _bundle_node(bundle: Bundle) -> Block:
    node = bundle.node
    version = code(bundle.server_version) if bundle.server_version else M("unknown")
    if node is None:
        return _mrkdwn(M("*Cluster and node*\nKubernetes {}; node {}").format(
            version, code(bundle.node_name or "-")))
    pressure = {True: "⚠️ yes", False: "no", None: "unknown"}[node.disk_pressure]
    conditions = M(" · ").join(M("{}={}").format(c.type, c.status)
                               for c in node.conditions[:BUNDLE_LIST])
    fields = [("Kubernetes", version), ("Node", code(node.name)),
              ("kubelet", code(node.kubelet_version)),
              ("Container runtime", code(node.container_runtime)),
              ("OS / arch", M("{} · {}/{}").format(node.os_image, node.operating_system,
                                                   node.architecture)),
              ("Disk pressure", M(pressure)),
              ("Conditions", conditions or M("—"))]
    return {"type": "section", "fields": [_field(k, v) for k, v in fields]}


def _bundle_secrets(bundle: Bundle) -> Mrkdwn:
    head = M("*Pull secrets* (names, registries, usernames — never a password)\n")
    if bundle.pull_secrets is None:
        return head + M("not read")
    if not bundle.pull_secrets:
        return head + M("none: the kubelet pulls anonymously")
    lines: list[Mrkdwn] = []
    for s in bundle.pull_secrets:
        state = {True: "exists", False: "⚠️ missing in the namespace", None: "not read"}[s.exists]
        line = M("• {} (from the {}): {}").format(code(s.name), s.source, state)
        if s.registries:
            line += M(" — registries ") + M(", ").join(code(r) for r in s.registries)
        if s.usernames:
            line += M(" — usernames ") + M(", ").join(
                M("{} on {}").format(code(u), code(r)) for r, u in s.usernames)
        lines.append(line)
    return head + _listed(lines, "secrets")


def _bundle_webhooks(bundle: Bundle) -> Mrkdwn:
    head = M("*Admission webhooks* matching pods in {}\n").format(code(bundle.namespace))
    if bundle.webhooks is None:
        return head + M("not read")
    if not bundle.webhooks:
        return head + M("none")
    lines = [M("• {} {} — {}, failurePolicy {}{}").format(
        "🔀" if w.mutating else "🛡️", code(f"{w.configuration}/{w.name}"),
        "mutating" if w.mutating else "validating", code(w.failure_policy),
        M("").join(M("\n    _{}_").format(n) for n in w.notes)) for w in bundle.webhooks]
    return head + _listed(lines, "webhooks")


def _bundle_events(bundle: Bundle) -> Mrkdwn:
    events = bundle.events[-BUNDLE_EVENTS:]
    left_out = bundle.events_omitted + len(bundle.events) - len(events)
    head = M("*Events* ({} shown{})\n").format(
        len(events), M(", {} older left out").format(left_out) if left_out else M(""))
    if not events:
        return head + M("none (events expire after about an hour)")
    text = "\n".join(f"{e.last_seen or '-'} {e.type} {e.reason} x{e.count}: "
                      f"{' '.join(e.message.split())}" for e in events)
    return head + code_block(text, MAX_SECTION_TEXT - len(head) - 10)


def _bundle_commands(bundle: Bundle) -> list[Block]:
    """The commands as snippet-like code blocks, split across sections within 3,000
    characters each (a command is never cut in half)."""
    head = M("*Run next* (node-side commands need a shell on the node)\n")
    chunks: list[list[str]] = [[]]
    size = 0
    for fix in bundle.commands:
        entry = f"# {fix.title}\n{fix.command}"
        if chunks[-1] and size + len(entry) > MAX_SECTION_TEXT - len(head) - 40:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += len(entry) + 1
    return [_mrkdwn((head if i == 0 else M("")) + code_block("\n".join(chunk),
                                                          MAX_SECTION_TEXT - len(head) - 10))
            for i, chunk in enumerate(chunks) if chunk]


def bundle_message(bundle: Bundle) -> tuple[str, list[Block]]:
    """The escalation bundle as one message: what the guide says to collect before asking for
    help, then the commands to run next. Each part is bounded (lists and events are cut with
    a count) so the message stays within Slack's 50 blocks and 3,000 characters a section;
    the whole bundle is `python -m bot bundle NS/POD` (or `-o json`)."""
    where = code(f"{bundle.namespace}/{bundle.pod}")
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": plain("🧳 Escalation bundle", MAX_HEADER)}},
        _mrkdwn(M("{} — phase {}, node {}, workload {}").format(
            where, code(bundle.phase or "?"), code(bundle.node_name or "-"),
            code(bundle.workload.kubectl_ref))),
        _mrkdwn(_bundle_images(bundle))]
    if bundle.diagnosis is not None and bundle.diagnosis.diagnoses:
        lines = [M("• {}: {} — {}{}").format(
            code(d.container), code(d.cause.value), _summary(d),
            M(" (findings: {})").format(M(", ").join(code(f.value) for f in d.findings))
            if d.findings else M("")) for d in bundle.diagnosis.diagnoses]
        blocks.append(_mrkdwn(M("*Diagnosis* (from the events)\n") + _listed(lines,
                                                                            "containers")))
    blocks.append(_mrkdwn(_bundle_events(bundle)))
    blocks.append(_bundle_node(bundle))
    blocks.append(_mrkdwn(_bundle_secrets(bundle)))
    blocks.append(_mrkdwn(_bundle_webhooks(bundle)))
    if bundle.unavailable:
        blocks.append(_context(M("Not looked at — ") + M(" · ").join(
            M("{}: {}").format(part, sentence(why))
            for part, why in sorted(bundle.unavailable.items()))))
    blocks.extend(_bundle_commands(bundle))
    blocks.append(_context(M("imagepull-bot · the whole bundle: {}").format(
        code(f"python -m bot bundle {bundle.namespace}/{bundle.pod} -o json"))))
    text = M("Escalation bundle for {}").format(where)
    return message(text, blocks)


def text_message(text: str) -> tuple[str, list[Block]]:
    """A sentence as (fallback, one section); plain `str` is escaped, `Mrkdwn` kept."""
    return message(text, [_mrkdwn(text)])


# -- approvals ----------------------------------------------------------------------------------


def approval_message(request: Any, approvers: str,
                     two_person: bool) -> tuple[str, list[Block]]:
    """The approval request; once decided, the same message without buttons.

    `approvers` is `Approvers.mention()`: `Mrkdwn` mentions built from validated ids.
    """
    what = request.describe()
    if request.state == "pending":
        rule = " (not the requester: two-person rule)" if two_person else ""
        text = M("Approval needed: {}").format(what)
        blocks: list[Block] = [
            _mrkdwn(M("🛂 *Approval needed* — {}\nRequested by {} · expires {}\n"
                      "Approvers{}: {}").format(what, user(request.requester),
                                               date(request.expires_at), rule, approvers)),
            {"type": "actions", "block_id": f"ipb-approval-{request.id}", "elements": [
                {"type": "button", "action_id": actions.APPROVE, "value": request.id,
                 "style": "primary", "text": {"type": "plain_text", "text": "Approve"},
                 "confirm": {
                     "title": {"type": "plain_text", "text": "Run it now?"},
                     "text": {"type": "mrkdwn", "text": cut(what, 300)},
                     "confirm": {"type": "plain_text", "text": "Approve"},
                     "deny": {"type": "plain_text", "text": "Cancel"}}},
                {"type": "button", "action_id": actions.DENY, "value": request.id,
                 "style": "danger", "text": {"type": "plain_text", "text": "Deny"}}]},
            _context(M("request {}").format(code(request.id)))]
        return message(text, blocks)
    outcome = {"approved": "✅ Approved", "denied": "🚫 Denied", "failed": "⚠️ Approved, failed",
               "expired": M("⌛ Expired at {}, nobody approved").format(
                   date(request.decided_at or request.expires_at))}.get(request.state,
                                                                        request.state)
    who = M(" by {}").format(user(request.decided_by)) if request.decided_by else M("")
    result = M("\n{}").format(request.result) if request.result else M("")
    text = M("{}{}: {}").format(outcome, who, what)
    return message(text, [_mrkdwn(M("{}{} — {}{}").format(outcome, who, what, result)),
                          _context(M("request {} · requested by {}").format(
                              code(request.id), user(request.requester)))])


def approval_audit_line(request: Any, outcome: str, by: str) -> Mrkdwn:
    """One line for the incident thread: who, what, when, result."""
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(request.decided_at or time.time()))
    if outcome == "expired":  # decided by nobody: the clock
        return M("🧾 Nobody approved the {} requested by {}: it expired at {}").format(
            request.describe(), user(request.requester), at)
    verbs = {"approved": "approved", "denied": "denied", "failed": "approved (it failed)",
             "expired": "let expire"}
    line = M("🧾 {} {} the {} requested by {} at {}").format(
        user(by), verbs.get(outcome, outcome), request.describe(), user(request.requester), at)
    return line + (M(" — {}").format(request.result) if request.result else M(""))


# -- the prevention audit (/imagepull audit, the weekly digest) -------------------------------


def _audit_entry(finding: AuditFinding) -> Mrkdwn:
    """One finding: what and where, the plain words, and its first fix (the rest counted).

    The message's own code spans are built backtick-safe (bot/diagnosis/markup.py), so, like a
    diagnosis summary, escaping Slack's three control characters is all it needs."""
    where = M("{} {}").format(finding.kind, code(finding.name))
    if finding.container:
        where += M(" · container {}").format(code(finding.container))
    entry = M("• {} — {}\n{}").format(code(finding.check.value), where,
                                      cut(escape(finding.message), 1200))
    if finding.fixes:
        first = finding.fixes[0]
        entry += M("\n_{}_\n").format(cut(M("{}").format(first.title), 400))
        entry += code_block(first.command, 1000)
        if len(finding.fixes) > 1:
            entry += M("\n+{} more step{}").format(len(finding.fixes) - 1,
                                                    "s" if len(finding.fixes) > 2 else "")
    return entry


def _audit_sections(spaces: list[tuple[str, list[AuditFinding]]], budget: int
                    ) -> tuple[list[Mrkdwn], int]:
    """Sections of at most 3,000 characters, at most `budget` of them, and how many findings
    they hold (namespace by namespace, in order)."""
    sections: list[Mrkdwn] = []
    shown = 0
    for namespace, findings in spaces:
        if len(sections) >= budget:
            break
        section = M("*{}* — {} finding(s): {}").format(
            code(namespace), len(findings), _counts_line(AuditReport(tuple(findings)).counts()))
        for finding in findings:
            entry = _audit_entry(finding)
            if len(section) + len(entry) + 2 > MAX_SECTION_TEXT:
                sections.append(section)
                if len(sections) >= budget:
                    return sections, shown
                section = M("*{}* (continued)").format(code(namespace))
            section += M("\n\n") + entry
            shown += 1
        sections.append(section)
    return sections, shown


def _counts_line(counts: dict[str, int]) -> Mrkdwn:
    return M(" · ").join(M("{} {}").format(code(check), n) for check, n in counts.items())


def audit_message(report: AuditReport, *, title: str = "Prevention audit",
                  scope: str | None = None) -> tuple[str, list[Block]]:
    """The audit grouped by namespace, each finding with the command that fixes it.

    Within Slack's limits: findings are packed into sections of at most 3,000 characters and
    the message into 50 blocks; what does not fit is counted in a last line that says how to
    see everything (`python -m bot audit`)."""
    where = M(" of {}").format(code(scope)) if scope else M("")
    checked = M("{} namespaces, {} workloads checked").format(report.namespaces,
                                                             report.workloads)
    skipped = [_context(M("Skipped: {}").format(why)) for why in report.skipped[:2]]
    if report.clean:
        text = M("✅ {}{}: no findings ({}).").format(title, where, checked)
        return message(text, [_mrkdwn(text), *skipped])
    spaces = report.by_namespace()
    text = M("{}{}: {} findings in {} namespace(s)").format(title, where, len(report.findings),
                                                           len(spaces))
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": plain(f"🔎 {title}", MAX_HEADER)}},
        _mrkdwn(M("*{} findings* in {} namespace(s){} ({})\n{}").format(
            len(report.findings), len(spaces), where, checked, _counts_line(report.counts()))),
        *skipped]
    sections, shown = _audit_sections(spaces, MAX_BLOCKS - len(blocks) - 1)
    blocks += [_mrkdwn(section) for section in sections]
    hidden = len(report.findings) - shown
    if hidden > 0:
        blocks.append(_context(M("…and {} more finding(s) not shown here: run {} for all of "
                                 "them, with every fix step").format(
            hidden, code("python -m bot audit" + (f" -n {scope}" if scope else "")))))
    return message(text, blocks)


def audit_finding_message(finding: AuditFinding, title: str) -> tuple[str, list[Block]]:
    """One finding on its own (the credentials watch): what, where, why, and every fix step."""
    where = M("{} {} in {}").format(finding.kind, code(finding.name), code(finding.namespace))
    if finding.container:
        where += M(" (container {})").format(code(finding.container))
    text = M("{} — {}: {}").format(title, finding.check.value, where)
    blocks: list[Block] = [_mrkdwn(M("*{}* — {}: {}\n{}").format(
        title, code(finding.check.value), where, cut(escape(finding.message), 2000)))]
    for number, fix in enumerate(finding.fixes[:MAX_FIXES], start=1):
        head = M("*{}.* {}\n").format(number, fix.title)
        blocks.append(_mrkdwn(head + code_block(fix.command, MAX_SECTION_TEXT - len(head))))
    return message(text, blocks)


# -- scheduled watches (bot/routines) -----------------------------------------------------------


def _fix_steps(fixes: Sequence[Fix]) -> list[Block]:
    blocks: list[Block] = []
    for number, fix in enumerate(fixes[:MAX_FIXES], start=1):
        title = M("*{}.* {}\n").format(number, fix.title)
        blocks.append(_mrkdwn(title + code_block(fix.command, MAX_SECTION_TEXT - len(title))))
    return blocks


def quota_owner(quota: Quota, secrets: Sequence[str] = ()) -> Mrkdwn:
    """Whose Docker Hub quota it is, in words: the bot's outbound IP (anonymous pulls) or an
    account by its username and the pull secrets holding it. Never a password or token."""
    if not quota.authenticated:
        return M("this bot's outbound IP {} (anonymous pulls: every node leaving through the "
                 "same NAT shares it)").format(code(quota.source or "unknown"))
    used = M(", ").join(code(s) for s in secrets[:MAX_LISTED])
    more = M(" and {} more").format(len(secrets) - MAX_LISTED) if len(secrets) > MAX_LISTED \
        else M("")
    source = M(", docker-ratelimit-source {}").format(code(quota.source)) if quota.source \
        else M("")
    return M("Docker Hub account {}{} (pull secret{} {}{})").format(
        code(quota.username or "?"), source, "s" if len(secrets) != 1 else "", used, more)


def _span(seconds: int) -> str:
    """`6 hours` for 21600 (Docker Hub's window), else the usual short duration."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds != 3600 else ''}"
    return duration(seconds)


def _window(seconds: int | None) -> Mrkdwn:
    if not seconds:
        return M("Docker Hub's window")
    hours = seconds / 3600
    span = f"{hours:g}-hour" if hours >= 1 else f"{seconds}-second"
    return M("Docker Hub's rolling {} window (w={})").format(span, seconds)


def quota_warning_message(quota: Quota, whose: Mrkdwn, threshold: int, now: float,
                          fixes: Sequence[Fix]) -> tuple[str, list[Block]]:
    """The quota watch's warning: whose quota, what is left, when it recovers, the fixes."""
    remaining = quota.remaining if quota.remaining is not None else 0
    limit = M("{}").format(quota.limit) if quota.limit is not None else M("?")
    text = M("⚠️ Docker Hub pull quota low: {} of {} pulls left for {}").format(
        remaining, limit, whose)
    window = quota.window_seconds
    limited = M(" Docker Hub is refusing pulls now (429 toomanyrequests).") \
        if quota.status == 429 else M("")
    recovers = (M("Pulls older than {} stop counting, so the quota comes back gradually; with "
                  "no new pulls it is full again by {} at the latest.").format(
                      _span(window), date(now + window)) if window
                else M("It comes back as older pulls leave the window."))
    blocks: list[Block] = [
        _mrkdwn(M("⚠️ *Docker Hub pull quota low* — {} of {} pulls left (warning below {}) "
                  "in {}.{}").format(remaining, limit, threshold, _window(window), limited)),
        _mrkdwn(M("*Whose quota:* {}\n*Recovers:* {}").format(whose, recovers)),
        *_fix_steps(fixes),
        _context(M("imagepull-bot · quota watch · checked with HEAD requests (they use no "
                   "quota) · I will say in this thread when it is back at {} or more")
                 .format(threshold)),
    ]
    return message(text, blocks)


def quota_recovered_message(quota: Quota, whose: Mrkdwn,
                            threshold: int) -> tuple[str, list[Block]]:
    """The quota is back at or above the threshold (or Docker Hub no longer limits it)."""
    if quota.unlimited:
        text = M("✅ Docker Hub no longer rate-limits {} (no rate-limit headers).").format(whose)
    else:
        limit = M("{}").format(quota.limit) if quota.limit is not None else M("?")
        text = M("✅ Docker Hub pull quota recovered: {} of {} pulls left for {} (at or above "
                 "{}).").format(quota.remaining, limit, whose, threshold)
    return message(text, [_mrkdwn(text)])


def digest_message(*, cluster: str, period: float,
                   open_incidents: Sequence[tuple[Incident, str | None]], now: float,
                   opened: int, resolved: int, top_causes: Sequence[tuple[Cause, int]],
                   resolve_times: tuple[float, float] | None,
                   noisiest: Sequence[tuple[str, int]]) -> tuple[str, list[Block]]:
    """The daily digest: open incidents (each with a link to its thread: a Slack permalink,
    or its channel and ts), then the period's figures."""
    span = _span(int(period))
    title = f"📋 Image-pull digest for {cluster}: {len(open_incidents)} open, {opened} opened " \
            f"and {resolved} resolved in the last {span}"
    blocks: list[Block] = [{"type": "header", "text": {
        "type": "plain_text", "text": plain(f"📋 Image-pull digest — {cluster}", MAX_HEADER),
        "emoji": True}}]
    if open_incidents:
        lines: list[Mrkdwn] = []
        for incident, url in open_incidents[:MAX_LISTED]:
            where = (permalink(url, "thread") if url else
                     M("thread {} in {}").format(code(incident.thread_ts or "?"),
                                                 code(incident.channel or "?")))
            lines.append(M("• *{}* — {} — open {} — {} pod{} failing — {}").format(
                CAUSES[incident.cause].title, code(incident.scope),
                duration(now - incident.created_at), len(incident.pods),
                "s" if len(incident.pods) != 1 else "", where))
        if len(open_incidents) > MAX_LISTED:
            lines.append(M("…and {} more").format(len(open_incidents) - MAX_LISTED))
        blocks.append(_mrkdwn(M("*Open incidents ({})*\n").format(len(open_incidents))
                              + M("\n").join(lines)))
    else:
        blocks.append(_mrkdwn(M("✅ *No open incidents.*")))
    figures = [M("*Last {}:* {} opened, {} resolved").format(span, opened, resolved)]
    if top_causes:
        figures.append(M("*Top causes:* ") + M(", ").join(
            M("{} ({})").format(CAUSES[cause].title, n) for cause, n in top_causes))
    if resolve_times is not None:
        figures.append(M("*Time to resolve:* median {}, worst {}").format(
            duration(resolve_times[0]), duration(resolve_times[1])))
    if noisiest:
        figures.append(M("*Noisiest workloads:* ") + M(", ").join(
            M("{} ({} pod{})").format(code(w), n, "s" if n != 1 else "") for w, n in noisiest))
    blocks.append(_mrkdwn(M("\n").join(figures)))
    blocks.append(_context(M("imagepull-bot · daily digest (DIGEST_CRON) · reminders of open "
                             "incidents also go to their threads every REPEAT_INTERVAL_SECONDS")))
    return message(title, blocks)


# -- several clusters (issue 13) ----------------------------------------------------------------


def _ago(now: float, at: float | None) -> Mrkdwn:
    return M("never") if at is None else M("{} ago").format(duration(now - at))


def _cluster_line(presence: Presence, now: float, heartbeat_seconds: float) -> Mrkdwn:
    if presence.reporting(now, heartbeat_seconds):
        replicas = "?" if presence.replicas is None else str(presence.replicas)
        incidents = "?" if presence.open_incidents is None else str(presence.open_incidents)
        return M("✅ *{}* reporting: last heartbeat {}, version {}, {} replica(s), last watch "
                 "event {}, {} open incident(s)").format(
            presence.cluster, _ago(now, presence.heartbeat_at),
            code(presence.version or "unknown"), replicas,
            _ago(now, presence.last_watch_event_at), incidents)
    silent = presence.silent_for(now)
    if silent == float("inf"):
        return M("⚠️ *{}* silent for over an hour").format(presence.cluster)
    return M("⚠️ *{}* silent for {} (last heartbeat {})").format(
        presence.cluster, duration(silent), date(presence.heartbeat_at or 0.0))


def clusters_message(presences: dict[str, Presence], now: float,
                     heartbeat_seconds: float) -> tuple[str, list[Block]]:
    """`/imagepull clusters`: every cluster whose agent beat into the shared Redis this week,
    reporting (beat within three heartbeats) or silent for how long."""
    if not presences:
        return text_message(M("No cluster reports here: presence needs REDIS_URL (the clusters' "
                              "shared Redis) and HEARTBEAT_SECONDS above 0."))
    lines = [_cluster_line(p, now, heartbeat_seconds) for p in presences.values()]
    silent = sum(1 for p in presences.values() if not p.reporting(now, heartbeat_seconds))
    text = M("{} cluster(s), {} silent").format(len(lines), silent)
    blocks = [_mrkdwn(M("*Clusters*: {}").format(text))]
    blocks += [_mrkdwn(section) for section in _packed(lines)]
    return message(text, blocks)


def _packed(lines: list[Mrkdwn]) -> list[Mrkdwn]:
    """Lines joined into sections of at most MAX_SECTION_TEXT characters each."""
    sections: list[Mrkdwn] = []
    current: list[Mrkdwn] = []
    for line in lines:
        if current and sum(len(x) + 1 for x in current) + len(line) > MAX_SECTION_TEXT:
            sections.append(M("\n").join(current))
            current = []
        current.append(line)
    if current:
        sections.append(M("\n").join(current))
    return sections
