"""Diagnoses as text for a terminal (the CLI and `make demo`)."""

from __future__ import annotations

import textwrap

from bot.diagnosis.audit_model import AuditReport
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
