"""The lock file the image installs from agrees with pyproject.toml (offline, fast).

A dependency added or narrowed in pyproject.toml without `make lock` would ship an image built
from something else than what was reviewed, or fail the image build on `--require-hashes`:
this catches it in CI, with the command that fixes it.
"""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.release.lockfile import HOW_TO_FIX, LOCK, Locked, build_requires, declared, parse

#: The image's interpreter: markers in pyproject.toml are evaluated for it.
IMAGE_ENVIRONMENT = {**default_environment(), "python_version": "3.11",
                     "sys_platform": "linux", "platform_system": "Linux",
                     "os_name": "posix", "implementation_name": "cpython"}


@pytest.fixture(scope="module")
def locked() -> list[Locked]:
    assert LOCK.is_file(), f"requirements.lock is missing: {HOW_TO_FIX}"
    return parse(LOCK.read_text())


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(IMAGE_ENVIRONMENT)


def drift(locked: list[Locked]) -> list[str]:
    """Every way the lock and pyproject.toml disagree, in words."""
    problems = []
    by_name: dict[str, Locked] = {}
    for entry in locked:
        if entry.pin is None:
            problems.append(f"{entry.line!r} is not pinned with ==")
        if not entry.hashes:
            problems.append(f"{entry.line!r} has no --hash=sha256: entries")
        if entry.options:
            problems.append(f"{entry.line!r} has options other than hashes: {entry.options}")
        if entry.requirement.url or entry.requirement.extras:
            problems.append(f"{entry.line!r}: a URL or extras in a lock line")
        if entry.name in by_name:
            problems.append(f"{entry.name} is locked twice")
        by_name[entry.name] = entry
    for requirement in declared():
        if not applies(requirement):
            continue
        entry = by_name.get(canonicalize_name(requirement.name))
        if entry is None:
            problems.append(f"{requirement} (pyproject.toml) is not in the lock")
        elif entry.pin is not None and not requirement.specifier.contains(entry.pin,
                                                                          prereleases=True):
            problems.append(f"{requirement} (pyproject.toml) is not satisfied by the locked "
                            f"{entry.name}=={entry.pin}")
    return problems


def test_the_lock_pins_every_runtime_dependency_of_pyproject_with_hashes(
        locked: list[Locked]) -> None:
    problems = drift(locked)
    assert not problems, ("requirements.lock has drifted from pyproject.toml:\n  - "
                          + "\n  - ".join(problems) + f"\nTo fix: {HOW_TO_FIX}.")


def test_the_locked_set_is_closed_under_the_installed_dependencies(
        locked: list[Locked]) -> None:
    """`pip install --require-hashes` refuses a dependency missing from the lock: each locked
    package installed here at its locked version has all its own dependencies locked too."""
    names = {entry.name for entry in locked}
    missing = []
    for entry in locked:
        try:
            dist = importlib.metadata.distribution(entry.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if dist.version != entry.pin:
            continue  # another version here: its metadata says nothing about the locked one
        for text in dist.requires or []:
            requirement = Requirement(text)
            needed = (requirement.marker is None
                      or requirement.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": ""}))
            if needed and canonicalize_name(requirement.name) not in names:
                missing.append(f"{requirement.name} (needed by {entry.name})")
    assert not missing, (f"requirements.lock lacks {sorted(set(missing))}: {HOW_TO_FIX}")


def test_ci_runs_the_versions_the_image_ships(locked: list[Locked]) -> None:
    """`make install` installs the runtime from the lock, so the tests exercise what the image
    ships: every locked package installed here is at its locked version (the build backend
    aside: a venv keeps the setuptools it was made with, and the bot never imports it)."""
    backend = {canonicalize_name(r.name) for r in build_requires()}
    different = []
    for entry in locked:
        if entry.name in backend:
            continue
        try:
            version = importlib.metadata.version(entry.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. a backport whose marker is false for this interpreter
        if version != entry.pin:
            different.append(f"{entry.name} {version} (locked: {entry.pin})")
    assert not different, (f"this environment differs from requirements.lock: {different}; "
                           "run `make install` (it installs from the lock)")


def test_the_check_fails_on_drift_with_the_command_that_fixes_it() -> None:
    """The drift check is not vacuous: each kind of drift is named."""
    pins = [f"{r.name}==99999.0 --hash=sha256:{'0' * 64}" for r in declared()]
    twice = f"{declared()[1].name}==1 --hash=sha256:{'1' * 64}"
    text = "\n".join([*pins[1:], "unpinned>=1", "nohash==1.0", twice])
    problems = drift(parse(text))
    said = "\n".join(problems)
    assert f"{declared()[0]} (pyproject.toml) is not in the lock" in said
    assert "'unpinned>=1' is not pinned with ==" in said
    assert "'nohash==1.0' has no --hash=sha256: entries" in said
    assert "is locked twice" in said
    assert "is not satisfied by the locked" in said
    assert "make lock" in HOW_TO_FIX


def test_the_lock_says_how_it_is_made() -> None:
    header = LOCK.read_text().splitlines()[:3]
    assert any("make lock" in line for line in header), header
