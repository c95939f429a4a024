"""Diagnoses as text for a terminal (the CLI and `make demo`)."""

from __future__ import annotations

import textwrap

from bot.diagnosis.audit_model import AuditReport
from bot.diagnosis.bundle import Bundle
from bot.diagnosis.explain import FINDING_TEXT
from bot.diagnosis.model import ContainerDiagnosis, PodDiagnosis

_WIDTH = 100


def render_text(result: PodDiagnosis) -> str:
    head = f"{result.namespace}/{result.pod}"
    if not result.diagnoses:
        return f"{head}: no image-pull problem found.\n"
    count = len(result.diagnoses)
    noun = "container cannot" if count == 1 else "containers cannot"
    parts = [f"{head}: {count} {noun} pull its image\n"]
    parts.extend(_container(d) for d in result.diagnoses)
    return "\n".join(parts)


def _container(d: ContainerDiagnosis) -> str:
    kind = "init container" if d.init_container else "container"
    lines = [
        f"● {kind} {d.container}  image {d.image}  workload {d.workload.kind}/{d.workload.name}",
        f"  cause     {d.cause.value}: {d.summary}",
        f"  outlook   {_outlook(d)}",
    ]
    lines += _wrap("why", d.explanation)
    for finding in d.findings:
        lines += _wrap("finding", f"{finding.value}: {FINDING_TEXT[finding]}")
    if d.evidence:
        lines.append("  evidence  (kubelet)")
        lines += [f"    {text}" for text in d.evidence]
    lines.append("  fix")
    for number, fix in enumerate(d.fixes, start=1):
        lines.append(f"    {number}. {fix.title}")
        prompt = "" if fix.command.startswith(("#", "[")) else "$ "
        first, *rest = fix.command.splitlines() or [""]
        lines.append(f"       {prompt}{first}")
        lines += [f"       {'  ' if prompt else ''}{line}" for line in rest]
    return "\n".join(lines) + "\n"


def _outlook(d: ContainerDiagnosis) -> str:
    attempts = d.backoff.attempts
    tried = f"{attempts} failed pull{'s' if attempts != 1 else ''} so far" if attempts else ""
    retry = (f"; next retry in ~{d.backoff.next_retry_seconds} s"
             if d.backoff.next_retry_seconds is not None else "")
    if d.transient:
        state = "transient — may clear on its own at the kubelet's next retry"
    else:
        state = "permanent — stays broken until someone changes something"
    return f"{state}" + (f" ({tried}{retry})" if tried else "")


def _wrap(label: str, text: str) -> list[str]:
    wrapped = textwrap.wrap(text, _WIDTH - 12) or [""]
    return [f"  {label:<9} {wrapped[0]}"] + [f"  {'':<9} {w}" for w in wrapped[1:]]


# -- the prevention audit (python -m bot audit) ----------------------------------------------


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{check} {n}" for check, n in counts.items())


def render_audit_text(report: AuditReport) -> str:
    """The audit grouped by namespace, each finding with the commands that fix it."""
    checked = f"{report.namespaces} namespaces, {report.workloads} workloads checked"
    if report.clean:
        lines = [f"Audit: no findings ({checked})."]
    else:
        spaces = len(report.by_namespace())
        lines = [f"Audit: {len(report.findings)} finding{'s' if len(report.findings) != 1 else ''}"
                 f" in {spaces} namespace{'s' if spaces != 1 else ''} ({checked})",
                 f"  {_counts(report.counts())}"]
    for namespace, findings in report.by_namespace():
        lines += ["", f"{namespace} — {len(findings)} finding"
                  f"{'s' if len(findings) != 1 else ''} ({_counts(report.counts(findings))})"]
        for f in findings:
            where = f"{f.kind}/{f.name}" + (f"  container {f.container}" if f.container else "")
            lines.append(f"  ● {f.check.value}  {where}")
            lines += [f"    {w}" for w in textwrap.wrap(f.message, _WIDTH - 4)]
            for number, fix in enumerate(f.fixes, start=1):
                lines.append(f"    {number}. {fix.title}")
                first, *rest = fix.command.splitlines() or [""]
                lines.append(f"       $ {first}")
                lines += [f"         {line}" for line in rest]
    lines += [f"skipped: {why}" for why in report.skipped]
    return "\n".join(lines) + "\n"


# -- the escalation bundle (python -m bot bundle) ----------------------------------------------


def _one_line(value: object) -> str:
    """A value from the cluster on one line: a newline in an event message cannot fake a
    section of the bundle (control characters are escaped by terminal.write after this)."""
    return str(value).replace("\r", "\\r").replace("\n", "\\n")


def render_bundle_text(bundle: Bundle) -> str:
    """The bundle for a terminal or a ticket: the guide's list, in its order."""
    o = _one_line
    lines = [f"Escalation bundle for {o(bundle.namespace)}/{o(bundle.pod)} "
             f"(phase {o(bundle.phase or '?')}, node {o(bundle.node_name or '-')}, "
             f"workload {o(bundle.workload.kind)}/{o(bundle.workload.name)})", ""]
    lines.append("Images")
    for c in bundle.containers:
        kind = "init container" if c.init else "container"
        lines.append(f"  {kind} {o(c.name)}: {o(c.image)}  [{o(c.state)}]")
        if c.template_image is not None and bundle.template_source is not None:
            source = bundle.template_source.kubectl_ref
            mark = "  ← REWRITTEN at admission" if c.rewritten else ""
            lines.append(f"    template ({o(source)}): {o(c.template_image)}{mark}")
        if c.workload_image is not None:
            lines.append(f"    workload ({o(bundle.workload.kubectl_ref)}): {o(c.workload_image)}")
        if c.image_id:
            lines.append(f"    resolved: {o(c.image_id)}")
        if c.message:
            lines.append(f"    {o(c.message)}")
    if bundle.diagnosis is not None and bundle.diagnosis.diagnoses:
        lines += ["", "Diagnosis (from the events; the registry was not asked)"]
        for d in bundle.diagnosis.diagnoses:
            findings = ", ".join(f.value for f in d.findings) or "none"
            lines.append(f"  {o(d.container)}: {d.cause.value} — {o(d.summary)} "
                         f"(findings: {findings})")
    lines += ["", f"Events ({len(bundle.events)} shown"
              + (f", {bundle.events_omitted} older left out" if bundle.events_omitted else "")
              + ")"]
    for e in bundle.events:
        lines.append(f"  {o(e.last_seen or '-')}  {o(e.type):<7} {o(e.reason):<10} "
                     f"x{e.count}  {o(e.message)}")
    if not bundle.events:
        lines.append("  none (events expire after about an hour)")
    lines += ["", "Cluster and node"]
    lines.append(f"  Kubernetes (API server): {o(bundle.server_version or 'unknown')}")
    if bundle.node is not None:
        n = bundle.node
        lines.append(f"  kubelet {o(n.kubelet_version)} · runtime {o(n.container_runtime)} · "
                     f"{o(n.os_image)} · {o(n.operating_system)}/{o(n.architecture)} · "
                     f"kernel {o(n.kernel_version)}")
        pressure = {True: "YES", False: "no", None: "unknown"}[n.disk_pressure]
        lines.append(f"  disk pressure: {pressure}")
        for cond in n.conditions:
            lines.append(f"  condition {o(cond.type)}={o(cond.status)} ({o(cond.reason)}) "
                         f"{o(cond.message)}")
    lines += ["", "Pull secrets (names, registries and usernames; never a password)"]
    if bundle.pull_secrets is not None:
        for s in bundle.pull_secrets:
            state = {True: "exists", False: "MISSING in the namespace", None: "not read"}[s.exists]
            lines.append(f"  {o(s.name)} (from the {s.source}): {state}")
            if s.registries:
                lines.append(f"    registries: {o(', '.join(s.registries))}")
            for registry, username in s.usernames:
                lines.append(f"    {o(registry)}: username {o(username)}")
        if not bundle.pull_secrets:
            lines.append("  none: the kubelet pulls anonymously")
    lines += ["", "Admission webhooks that match pods in this namespace"]
    if bundle.webhooks is not None:
        for w in bundle.webhooks:
            kind = "mutating" if w.mutating else "validating"
            lines.append(f"  {o(w.configuration)}/{o(w.name)}: {kind}, failurePolicy "
                         f"{o(w.failure_policy)}")
            lines += [f"    note: {o(n)}" for n in w.notes]
        if not bundle.webhooks:
            lines.append("  none")
    if bundle.unavailable:
        lines += ["", "Not looked at"]
        lines += [f"  {part}: {o(why)}" for part, why in sorted(bundle.unavailable.items())]
    lines += ["", "Run next (node-side commands need a shell on the node)"]
    for number, fix in enumerate(bundle.commands, start=1):
        lines.append(f"  {number}. {o(fix.title)}")
        lines.append(f"     $ {o(fix.command)}")
    return "\n".join(lines) + "\n"
