"""The diagnosis as the rest of the bot (and users' scripts) consume it.

`PodDiagnosis.to_json()` is the documented JSON contract (README, "JSON output"): keys are only
ever added, never renamed. `ContainerDiagnosis.from_json` reads it back (incidents keep their
diagnosis in the store as this JSON): it accepts JSON written by any earlier version, so a key
that is missing gets the value the older version meant.
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fix:
        return cls(str(data.get("title", "")), str(data.get("command", "")))


@dataclass(frozen=True)
class Backoff:
    """Where the kubelet is in its retry loop (10 s doubling, capped at 300 s)."""

    attempts: int
    next_retry_seconds: int | None

    def to_json(self) -> dict[str, int | None]:
        return {"attempts": self.attempts, "next_retry_seconds": self.next_retry_seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backoff:
        retry = data.get("next_retry_seconds")
        return cls(int(data.get("attempts") or 0), None if retry is None else int(retry))


@dataclass(frozen=True)
class Alternative:
    """Another cause the same kubelet words can truly mean, and how to tell it from `cause`.

    Some texts do not decide: a bare 403 to a manifest HEAD has no body (missing permission,
    or a front that blocks the node's address); Docker Hub's "pull access denied" hides
    whether the repository exists. The diagnosis names its best reading as `cause` and each
    other one here, so a person is never handed one reading silently.
    """

    cause: Cause
    how_to_tell: str

    def to_json(self) -> dict[str, str]:
        return {"cause": self.cause.value, "how_to_tell": self.how_to_tell}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alternative | None:
        """None for a cause this version does not know (JSON from a newer one)."""
        cause = str(data.get("cause") or "")
        if cause not in {c.value for c in Cause}:
            return None
        return cls(Cause(cause), str(data.get("how_to_tell", "")))


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
    #: The image the registry confirmed exists and the bot suggests instead (a close tag, the
    #: swapped path, the corrected registry host), exactly as it would be set; None without
    #: one. Its kind is in `findings` (tag_suggestion, swapped_path, registry_host_typo). Kept
    #: as data so that nothing (the alert's "Set image" button) reads it back out of a command.
    suggested_image: str | None = None
    #: the other readings of the same words, best first (empty: the words decide)
    alternatives: tuple[Alternative, ...] = ()

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
            "suggested_image": self.suggested_image,
            "alternatives": [a.to_json() for a in self.alternatives],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerDiagnosis:
        """The inverse of `to_json`, for JSON of this or any earlier version.

        A finding this version does not know (JSON from a newer one, read after a rollback) is
        left out rather than failing the whole read; an unknown cause reads as `unknown`.
        """
        workload = data.get("workload") or {}
        known_findings = {f.value for f in Finding}
        cause = str(data.get("cause") or "")
        return cls(
            container=str(data.get("container", "")),
            image=str(data.get("image", "")),
            cause=Cause(cause) if cause in {c.value for c in Cause} else Cause.UNKNOWN,
            transient=bool(data.get("transient")),
            summary=str(data.get("summary", "")),
            explanation=str(data.get("explanation", "")),
            evidence=tuple(str(e) for e in data.get("evidence") or ()),
            workload=WorkloadRef(str(workload.get("kind", "")), str(workload.get("name", ""))),
            findings=tuple(Finding(f) for f in data.get("findings") or ()
                           if f in known_findings),
            fixes=tuple(Fix.from_json(f) for f in data.get("fixes") or ()),
            backoff=Backoff.from_json(data.get("backoff") or {}),
            init_container=bool(data.get("init_container")),
            suggested_image=str(data["suggested_image"]) if data.get("suggested_image") else None,
            alternatives=tuple(a for a in (Alternative.from_json(x) for x in
                                           data.get("alternatives") or ()
                                           if isinstance(x, dict)) if a is not None),
        )


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
