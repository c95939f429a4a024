"""Terminal escape injection: what a pod's author wrote is shown, never obeyed (issue 8, defect 9).

An image or event message holding ESC sequences could retitle the window, clear the screen,
write the clipboard or hide text from whoever runs `imagepull-bot diagnose` or `make demo`.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_OK, main
from bot.diagnosis.terminal import TerminalFormatter, dumps_json, for_terminal

pytestmark = [pytest.mark.security]

DATA = Path(__file__).parents[1] / "data" / "offline"
BOT = Path(__file__).parents[2] / "bot"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\r\x7f\u202eevil\u2066"
#: Anything a terminal acts on: C0 except tab/newline, DEL, C1, bidi controls.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                         "\u202a-\u202e\u2066-\u2069]")


def _hostile_files(tmp_path: Path) -> tuple[Path, Path]:
    pod: dict[str, Any] = json.loads((DATA / "web-pod.json").read_text())
    image = "nginx:lates" + HOSTILE
    pod["spec"]["containers"][0]["image"] = image
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = \
        f'Back-off pulling image "{image}"'
    events: dict[str, Any] = json.loads((DATA / "web-events.json").read_text())
    for item in events["items"]:
        item["message"] = item["message"].replace("nginx:lates", image) + HOSTILE
    pod_path, events_path = tmp_path / "pod.json", tmp_path / "events.json"
    pod_path.write_text(json.dumps(pod))
    events_path.write_text(json.dumps(events))
    return pod_path, events_path


def test_for_terminal_escapes_controls_and_keeps_layout() -> None:
    assert for_terminal("a\tb\nc") == "a\tb\nc"
    assert for_terminal(HOSTILE) == ("\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x0d\\x7f"
                                     "\\u202eevil\\u2066")
    assert for_terminal("one\ntwo", one_line=True) == "one\\ntwo"
    assert not RAW_CONTROL.search(for_terminal("".join(map(chr, range(0x3000)))))


def test_diagnose_text_shows_escapes_instead_of_obeying_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod, events = _hostile_files(tmp_path)
    assert main(["diagnose", "--pod-json", str(pod), "--events-json", str(events)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "image nginx:lates\\x1b]0;pwned\\x07\\x1b[2J" in out  # visible, not executed
    assert not RAW_CONTROL.search(out)


def test_json_output_stays_exact_json_with_no_raw_control(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod, events = _hostile_files(tmp_path)
    assert main(["diagnose", "--pod-json", str(pod), "--events-json", str(events),
                 "-o", "json"]) == EXIT_OK
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out) and out.isascii()
    assert json.loads(out)["diagnoses"][0]["image"] == "nginx:lates" + HOSTILE  # lossless


def test_json_escapes_every_control_character() -> None:
    everything = "".join(map(chr, range(0x3000)))
    assert not RAW_CONTROL.search(dumps_json(everything))
    assert dumps_json("\x7f\x1b\u202e") == '"\\u007f\\u001b\\u202e"'
    assert json.loads(dumps_json({"k": HOSTILE})) == {"k": HOSTILE}


def test_error_lines_are_escaped_and_stay_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--pod-json", f"/nonexistent/{HOSTILE}\nforged.json"]) \
        == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not RAW_CONTROL.search(err)
    assert "\\x1b]0;pwned" in err and "\\nforged.json" in err


def test_log_lines_cannot_be_forged_or_carry_escapes() -> None:
    formatter = TerminalFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("bot", logging.WARNING, __file__, 1, "pod %s failed", (
        f"web{HOSTILE}\nINFO all good",), None)
    line = formatter.format(record)
    assert "\n" not in line and not RAW_CONTROL.search(line)
    assert line.startswith("WARNING pod web\\x1b]0;pwned")


HUMAN_OUTPUT = sorted({*(str(p.relative_to(BOT)) for p in (BOT / "cli").glob("*.py")),
                       "sim/demo.py", "sim/demo_story.py", "diagnosis/render.py"})


@pytest.mark.parametrize("module", HUMAN_OUTPUT)
def test_human_output_goes_through_the_one_terminal_sink(module: str) -> None:
    """No print() or sys.stdout.write() bypasses bot.diagnosis.terminal in the CLI and the demo."""
    tree = ast.parse((BOT / module).read_text())
    bypass = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "print")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "write"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr in ("stdout", "stderr")))]
    assert bypass == [], f"{module} prints around bot.diagnosis.terminal at lines {bypass}"


def test_argparse_errors_echoing_arguments_are_escaped(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["scenarios", "--output", "text", f"--bogus{HOSTILE}"])
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and not RAW_CONTROL.search(err)
