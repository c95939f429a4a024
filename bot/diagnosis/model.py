"""The diagnosis as the rest of the bot (and users' scripts) consume it.

`PodDiagnosis.to_json()` is the documented JSON contract (README, "JSON output"): keys are only
ever added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.facts import WorkloadRef


@dataclass(frozen=True)
class Fix:
    """One step a person can take: a title that says why, and a command they can paste.

    Placeholders the bot cannot know are written `<like-this>` and named in the title.
    """

    title: str
    command: str

    def to_json(self) -> dict[str, str]:
        return {"title": self.title, "command": self.command}


@dataclass(frozen=True)
class Backoff:
    """Where the kubelet is in its retry loop (10 s doubling, capped at 300 s)."""

    attempts: int
    next_retry_seconds: int | None

    def to_json(self) -> dict[str, int | None]:
        return {"attempts": self.attempts, "next_retry_seconds": self.next_retry_seconds}


@dataclass(frozen=True)
class ContainerDiagnosis:
    container: str
    image: str
    cause: Cause
    transient: bool
    summary: str
    explanation: str
    evidence: tuple[str, ...]
    workload: WorkloadRef
    findings: tuple[Finding, ...]
    fixes: tuple[Fix, ...]
    backoff: Backoff
    init_container: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "init_container": self.init_container,
            "image": self.image,
            "cause": self.cause.value,
            "transient": self.transient,
            "summary": self.summary,
            "explanation": self.explanation,
            "evidence": list(self.evidence),
            "workload": {"kind": self.workload.kind, "name": self.workload.name},
            "findings": [f.value for f in self.findings],
            "fixes": [f.to_json() for f in self.fixes],
            "backoff": self.backoff.to_json(),
        }


@dataclass(frozen=True)
class PodDiagnosis:
    namespace: str
    pod: str
    diagnoses: tuple[ContainerDiagnosis, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "diagnoses": [d.to_json() for d in self.diagnoses],
        }
