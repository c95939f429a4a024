"""Offline input nobody validated: every broken, hostile or oddly encoded file gets exit 2 and
one line naming the file and the problem — never a traceback (issue 8, defect 8)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli.main import EXIT_BAD_INPUT, EXIT_OK, main

pytestmark = [pytest.mark.security]

DATA = Path(__file__).parents[1] / "data" / "offline"
POD: dict[str, Any] = json.loads((DATA / "web-pod.json").read_text())
EVENTS: dict[str, Any] = json.loads((DATA / "web-events.json").read_text())
ROOT = Path(__file__).parents[2]


def _pod(change: Callable[[dict[str, Any]], None]) -> bytes:
    pod = copy.deepcopy(POD)
    change(pod)
    return json.dumps(pod).encode()


def _events(change: Callable[[dict[str, Any]], None]) -> bytes:
    events = copy.deepcopy(EVENTS)
    change(events)
    return json.dumps(events).encode()


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    obj[last] = value  # type: ignore[index]


def _every_event(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(events: dict[str, Any]) -> None:
        for item in events["items"]:
            item[key] = value
    return change


BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi",
                                                               strict=True)]
    + ["kind: Pod"]
).encode()

#: (name, which file, content, what the one line must say)
BAD_FILES: list[tuple[str, str, bytes, str]] = [
    ("deep-json", "pod", b"[" * 100_000 + b"]" * 100_000, "nests deeper than 100 levels"),
    ("deep-json-object", "pod", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nests deeper"),
    ("deep-yaml", "pod", b"kind: Pod\n" + b"".join(b"  " * i + b"k:\n" for i in range(300))
     + b"  " * 300 + b"x: 1\n", "nests deeper"),
    ("yaml-alias-bomb", "pod", BOMB, "YAML aliases"),
    ("latin-1", "pod", json.dumps(POD).replace("web-7d9", "w\u00e9b-7d9").encode("latin-1"),
     "is not UTF-8 (byte 0xe9"),
    ("utf-16-powershell", "events", json.dumps(EVENTS).encode("utf-16"),
     "is UTF-16 (PowerShell's default); convert it: iconv -f UTF-16 -t UTF-8"),
    ("utf-16-no-bom", "events", json.dumps(EVENTS).encode("utf-16-le"), "is UTF-16"),
    ("binary", "pod", b"\x00\x01\xff\xfe\x00garbage", "is not UTF-8"),
    ("nan", "pod", b'{"kind": "Pod", "metadata": {"name": NaN}}', "not valid JSON"),
    ("metadata-string", "pod", _pod(lambda p: _set(p, "metadata", "shop")),
     ".metadata must be an object, not a string"),
    ("name-list", "pod", _pod(lambda p: _set(p, "metadata.name", ["a", "b"])),
     ".metadata.name must be a string, not a list"),
    ("name-null", "pod", _pod(lambda p: _set(p, "metadata.name", None)),
     ".metadata.name must be a string, not null"),
    ("containers-object", "pod", _pod(lambda p: _set(p, "spec.containers", {"name": "web"})),
     ".spec.containers must be a list, not an object"),
    ("container-string", "pod", _pod(lambda p: _set(p, "spec.containers", ["web"])),
     ".spec.containers[0] must be an object, not a string"),
    ("image-number", "pod", _pod(lambda p: _set(p, "spec.containers.0.image", 5)),
     ".spec.containers[0].image must be a string, not a number"),
    ("status-string", "pod", _pod(lambda p: _set(p, "status", "Pending")),
     ".status must be an object"),
    ("status-null-item", "pod", _pod(lambda p: _set(p, "status.containerStatuses", [None])),
     ".status.containerStatuses[0] must be an object, not null"),
    ("state-string", "pod", _pod(lambda p: _set(p, "status.containerStatuses.0.state", "x")),
     ".status.containerStatuses[0].state must be an object"),
    ("labels-list", "pod", _pod(lambda p: _set(p, "metadata.labels", ["x"])),
     ".metadata.labels must be an object, not a list"),
    ("owner-string", "pod", _pod(lambda p: _set(p, "metadata.ownerReferences", "x")),
     ".metadata.ownerReferences must be a list"),
    ("pull-secrets-string", "pod", _pod(lambda p: _set(p, "spec.imagePullSecrets", "x")),
     ".spec.imagePullSecrets must be a list"),
    ("count-lots", "events", _events(lambda e: _set(e, "items.2.count", "lots")),
     ".items[2].count must be a whole number, not a string ('lots')"),
    ("count-true", "events", _events(lambda e: _set(e, "items.2.count", True)),
     ".items[2].count must be a whole number"),
    ("count-huge", "events", _events(_every_event("count", 10**400)),
     ".items[0].count must be at most 2147483647"),
    ("count-negative", "events", _events(lambda e: _set(e, "items.2.count", -3)),
     ".items[2].count must be at least 0"),
    ("last-timestamp-9999", "events",
     _events(_every_event("lastTimestamp", "9999-12-31T23:59:59Z")),
     ".items[0].lastTimestamp is out of range (9999-12-31T23:59:59Z is outside 1970..2199)"),
    ("timestamp-number", "events", _events(lambda e: _set(e, "items.2.lastTimestamp", 12345)),
     ".items[2].lastTimestamp must be an RFC 3339 time"),
    ("timestamp-words", "events",
     _events(lambda e: _set(e, "items.2.firstTimestamp", "yesterday")),
     ".items[2].firstTimestamp must be an RFC 3339 time"),
    ("involved-object-string", "events",
     _events(lambda e: _set(e, "items.1.involvedObject", "pod")),
     ".items[1].involvedObject must be an object"),
    ("message-object", "events", _events(lambda e: _set(e, "items.1.message", {"a": 1})),
     ".items[1].message must be a string, not an object"),
    ("series-string", "events", _events(lambda e: _set(e, "items.1.series", "x")),
     ".items[1].series must be an object"),
    ("items-string", "events", _events(lambda e: _set(e, "items", "x")),
     ".items must be a list, not a string"),
    ("item-string", "events", _events(lambda e: _set(e, "items", ["x"])),
     ".items[0] must be an object, not a string"),
]


def _run(tmp_path: Path, which: str, content: bytes) -> list[str]:
    bad = tmp_path / f"{which}.json"
    bad.write_bytes(content)
    pod = bad if which == "pod" else DATA / "web-pod.json"
    events = bad if which == "events" else DATA / "web-events.json"
    return ["diagnose", "--pod-json", str(pod), "--events-json", str(events)]


@pytest.mark.parametrize(("which", "content", "says"),
                         [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_file_exits_2_with_one_line_naming_file_and_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str, content: bytes,
        says: str) -> None:
    argv = _run(tmp_path, which, content)
    assert main(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"imagepull-bot: {tmp_path / which}.json")
    assert says in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize("case", ["utf-16-powershell", "last-timestamp-9999", "deep-json",
                                  "metadata-string", "count-lots", "yaml-alias-bomb"])
def test_the_real_command_exits_2_without_a_traceback(tmp_path: Path, case: str) -> None:
    _, which, content, says = next(c for c in BAD_FILES if c[0] == case)
    done = subprocess.run([sys.executable, "-m", "bot", *_run(tmp_path, which, content)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr


def test_oversized_file_is_refused_before_parsing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "pod.json"
    with big.open("wb") as handle:  # sparse: 64 MiB + 1 byte costs no disk
        handle.truncate(64 * 1024 * 1024 + 1)
    assert main(["diagnose", "--pod-json", str(big)]) == EXIT_BAD_INPUT
    assert "larger than 64 MiB" in capsys.readouterr().err


def test_yaml_with_unquoted_timestamps_and_utf8_bom_still_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The models are strict about types, not about how kubectl (or a person) spelled them."""
    pod = tmp_path / "pod.json"
    pod.write_bytes(b"\xef\xbb\xbf" + json.dumps(POD).encode())
    events = tmp_path / "events.yaml"
    events.write_text(yaml.safe_dump(EVENTS).replace("'2026", "2026").replace("Z'", "Z"))
    assert "lastTimestamp: 2026-" in events.read_text()  # unquoted: YAML reads a datetime
    assert main(["diagnose", "--pod-json", str(pod), "--events-json", str(events),
                 "-o", "json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["diagnoses"][0]["cause"] == "tag_not_found"
    assert out["diagnoses"][0]["backoff"]["attempts"] == 4


def test_unknown_fields_of_any_shape_are_ignored(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"]["managedFields"] = "not what the API writes, but not read either"
    pod["spec"]["containers"][0]["ports"] = 7
    pod["futureField"] = {"x": [1, {"y": None}]}
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod))
    assert main(["diagnose", "--pod-json", str(path), "--events-json",
                 str(DATA / "web-events.json")]) == EXIT_OK
    assert "tag_not_found" in capsys.readouterr().out
