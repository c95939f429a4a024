"""requirements.lock read as pip reads it: one requirement per logical line (backslash
continuations joined), each with its `--hash` options. Used by the drift check and the
Dockerfile check; nothing here touches the network."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
HOW_TO_FIX = "run `make lock` and commit requirements.lock"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Locked:
    line: str  # the requirement as written (without its options)
    requirement: Requirement
    hashes: tuple[str, ...]
    options: tuple[str, ...]  # every option on the line other than a sha256 hash

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def pin(self) -> str | None:
        """The exact version when the line pins one (`name==1.2.3`), else None."""
        specs = list(self.requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            return specs[0].version
        return None


def logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(" ".join(current.split()))
        current = ""
    if current.strip():
        lines.append(" ".join(current.split()))
    return lines


def parse(text: str) -> list[Locked]:
    entries = []
    for line in logical_lines(text):
        words = line.split(" ")
        first_option = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        requirement = " ".join(words[:first_option])
        options = words[first_option:]
        hashes = tuple(m.group(1) for w in options if (m := HASH.fullmatch(w)))
        others = tuple(w for w in options if not HASH.fullmatch(w))
        entries.append(Locked(requirement, Requirement(requirement) if requirement
                              else Requirement("invalid-empty-requirement"), hashes, others))
    return entries


def pyproject() -> dict[str, object]:
    return tomllib.loads(PYPROJECT.read_text())


def build_requires() -> list[Requirement]:
    build = pyproject()["build-system"]
    assert isinstance(build, dict)
    return [Requirement(r) for r in build["requires"]]


def declared() -> list[Requirement]:
    """What the image needs: the runtime dependencies and the build backend."""
    data = pyproject()
    project, build = data["project"], data["build-system"]
    assert isinstance(project, dict) and isinstance(build, dict)
    return [Requirement(r) for r in [*project["dependencies"], *build["requires"]]]
