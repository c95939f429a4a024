"""The prevention audit and the credentials watch: every check over one inventory.

Pure: bot/kube/inventory.py gathers the `Inventory`; bot/diagnosis/prevention.py and
bot/diagnosis/credentials.py hold the rules; this module orders their findings into one
`AuditReport` (grouped by namespace, with counts) for the CLI, Slack and the routines.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.diagnosis.audit_model import AuditFinding, AuditReport, Check
from bot.diagnosis.credentials import credential_findings
from bot.diagnosis.prevention import prevention_findings
from bot.diagnosis.workloads import Inventory

__all__ = ["AuditFinding", "AuditReport", "Check", "audit", "credential_report"]

_ORDER = {check: i for i, check in enumerate(Check)}


def report(findings: Iterable[AuditFinding], inventory: Inventory) -> AuditReport:
    """Findings in a stable order (namespace, kind, name, container, check)."""
    ordered = sorted(findings, key=lambda f: (f.namespace, f.kind, f.name, f.container or "",
                                              _ORDER[f.check], f.image or ""))
    namespaces = {w.namespace for w in inventory.workloads} | {
        n.name for n in inventory.namespaces}
    return AuditReport(tuple(ordered), len(namespaces), len(inventory.workloads),
                       inventory.skipped)


def audit(inventory: Inventory) -> AuditReport:
    """Every check: prevention and credentials (what `audit` and its weekly digest show)."""
    return report([*prevention_findings(inventory), *credential_findings(inventory)],
                  inventory)


def credential_report(inventory: Inventory) -> AuditReport:
    """Only the credentials watch's checks (bot/routines/credentials.py)."""
    return report(credential_findings(inventory), inventory)
