"""The one way text reaches a person's terminal (the CLI, `make demo`, the bot's own log lines).

Pod names, images, event messages and registry answers are written by whoever can create a pod
or run a registry. Printed raw, `\\x1b]0;…\\x07` retitles the window, `\\x1b[2J` clears the
screen, OSC 52 writes the clipboard, `\\r` and cursor moves overwrite earlier lines, and U+202E
reverses what follows (Trojan Source). So every human-readable write goes through `write()`,
which shows such characters as visible escapes (`\\x1b`, `\\u202e`) instead of obeying them.
JSON output goes through `write_json()` untouched: `json.dumps` with its default `ensure_ascii`
writes every character outside printable ASCII (space..~), DEL included, as a `\\uXXXX` escape.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

#: Bidirectional formatting characters (Unicode TR9 explicit embeddings, overrides, isolates and
#: marks) plus the line/paragraph separators: invisible, and they reorder or break what a
#: person reads.
_BIDI_AND_SEPARATORS = (
    0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
    *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
    *range(0x2066, 0x206A),  # LRI RLI FSI PDI
)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


#: C0 controls (except tab and newline), DEL, C1 controls, bidi controls -> visible escapes.
_TABLE: dict[int, str] = {
    code: _escape(code)
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_AND_SEPARATORS]
    if code not in (0x09, 0x0A)
}
_ONE_LINE_TABLE = {**_TABLE, 0x0A: "\\n"}


def for_terminal(text: str, *, one_line: bool = False) -> str:
    """`text` with every character a terminal would act on shown as a visible escape.

    Tabs and newlines are kept (they only lay text out), unless `one_line`: then a newline is
    shown as `\\n` too, so an error stays on the one line a script may grep for.
    """
    return text.translate(_ONE_LINE_TABLE if one_line else _TABLE)


def write(text: str = "", *, end: str = "\n", file: SupportsWrite[str] | None = None) -> None:
    """Print human-readable text, made safe for a terminal (see the module docstring)."""
    _put(for_terminal(text) + end, file)


def _put(text: str, file: SupportsWrite[str] | None) -> None:
    stream = file if file is not None else sys.stdout
    stream.write(text)
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


def write_error(message: str) -> None:
    """One line on stderr: `imagepull-bot: <message>`, never more than one line."""
    write(f"imagepull-bot: {for_terminal(message, one_line=True)}", file=sys.stderr)


def dumps_json(payload: Any) -> str:
    """JSON as the CLI prints it: indented and ASCII-only (`ensure_ascii`, relied on here: it is
    what keeps every control character out of the raw output)."""
    return json.dumps(payload, indent=2, ensure_ascii=True)


def write_json(payload: Any, *, file: SupportsWrite[str] | None = None) -> None:
    """Print JSON output (machine-readable: not passed through `for_terminal`, which would
    turn `\\u001b` into an invalid `\\x1b` escape)."""
    _put(dumps_json(payload) + "\n", file)


class TerminalFormatter(logging.Formatter):
    """Log lines carry pod names and registry answers too: the message is kept on one line (a
    value cannot forge a second log line), tracebacks keep their newlines, and controls are
    escaped everywhere."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return for_terminal(super().formatMessage(record), one_line=True)

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))
