"""The Dockerfile, checked statically (no Docker engine here or in CI): the base image pinned
by digest, every package installed from the hashed lock, nothing unpinned fetched, and a
numeric non-root user, which together with the Deployment's securityContext is what lets the
pod run read-only as non-root."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.release.lockfile import LOCK, ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DEPLOYMENT = ROOT / "deploy" / "base" / "deployment.yaml"
PINNED_BASE = re.compile(r"python:3\.11(?:\.\d+)?-slim[\w.-]*@sha256:[0-9a-f]{64}")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined."""
    result, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        current = ""
    return result


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def pip_installs(steps: list[tuple[str, str]]) -> list[list[str]]:
    """Every `pip install ...` command of every RUN, as argument lists."""
    found = []
    for keyword, args in steps:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", args):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                found.append(words)
    return found


def test_every_base_image_is_pinned_by_digest(steps: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        assert PINNED_BASE.fullmatch(base), f"{base} is not python:3.11-slim pinned by digest"


def test_the_digest_says_what_it_is_and_how_to_update_it() -> None:
    text = DOCKERFILE.read_text()
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert re.search(r"python:3\.11-slim", comments) and re.search(r"\d{4}-\d{2}-\d{2}", comments)
    assert "imagetools inspect" in comments


def test_packages_come_from_the_hashed_lock_and_nothing_unpinned_is_fetched(
        steps: list[tuple[str, str]]) -> None:
    installs = pip_installs(steps)
    assert installs, "no pip install"
    first, *rest = installs
    assert "--require-hashes" in first, first
    lock_path = first[first.index("-r") + 1]
    copies = [args.split() for keyword, args in steps if keyword == "COPY"]
    assert any(c[0] == LOCK.name and c[-1] in (lock_path, Path(lock_path).parent.as_posix() + "/")
               for c in copies), f"{lock_path} is not requirements.lock copied in"
    for words in rest:  # the bot itself: its dependencies are the locked ones
        assert "--no-deps" in words and "--no-build-isolation" in words, words
        assert "-r" not in words and "--upgrade" not in words, words
    fetches = [args for keyword, args in steps
               if keyword == "RUN" and re.search(r"\b(curl|wget)\b", args)]
    fetches += [args for keyword, args in steps if keyword == "ADD" and "://" in args]
    assert fetches == []


def test_it_runs_as_a_numeric_non_root_user(steps: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]


def test_it_writes_nothing_at_run_time(steps: list[tuple[str, str]]) -> None:
    """No bytecode written at run time (compiled at install, as root), no VOLUME the root
    filesystem would have to provide; the Deployment runs it read-only and non-root."""
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env), env
    assert not [args for keyword, args in steps if keyword == "VOLUME"]
    [deployment] = [d for d in yaml.safe_load_all(DEPLOYMENT.read_text())
                    if d and d.get("kind") == "Deployment"]
    [bot] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
             if c["name"] == "bot"]
    context = bot["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["runAsNonRoot"] is True
    run_as = context.get("runAsUser")  # if the Deployment names a user, it is the image's
    assert run_as is None or str(run_as) == [a for k, a in steps if k == "USER"][-1].split(":")[0]


def test_the_checks_catch_an_unpinned_dockerfile() -> None:
    """Not vacuous: the Dockerfile as it was before the lock fails every check above."""
    old = instructions("FROM python:3.11-slim\nRUN pip install . && useradd bot\nUSER bot\n")
    assert not PINNED_BASE.fullmatch(old[0][1])
    assert "--require-hashes" not in pip_installs(old)[0]
    assert not old[-1][1].isdigit()
