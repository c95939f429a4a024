"""Facts from files: `kubectl get pod -o json` and `kubectl get events -o json` output.

For people who cannot give the bot API access (a ticket, a CI log, an air-gapped cluster):
the same diagnosis, minus what only the API knows (owner objects, secrets, nodes).

A file is whatever someone attached, so it is checked at this boundary, in order, and any
problem becomes one `InputError` line that names the file and what to do:
size (at most MAX_BYTES) → encoding (UTF-8; UTF-16 from PowerShell is named as such) →
syntax (JSON, or YAML without aliases) → nesting (at most MAX_DEPTH levels) → the typed models
of bot/diagnosis/schema.py (the fields the diagnosis reads, with their types and ranges).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.diagnosis.facts import PodFacts
from bot.diagnosis.schema import MODELS, Document

#: Larger than any real `kubectl get -o json` of pods or events we expect (a List of 10 000
#: pods is ~100 MiB only with managedFields; use `--show-managed-fields=false`).
MAX_BYTES = 64 * 1024 * 1024
#: Kubernetes objects nest about 15 levels (managedFields included); 100 leaves room and keeps
#: every later walk of the data far from Python's recursion limit.
MAX_DEPTH = 100


class InputError(ValueError):
    """A file the user gave cannot be used; the message says which and why, on one line."""


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise InputError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MiB; give the "
                         "pod and its events only (kubectl get pod NAME -o json)")
    return data


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 (with or without BOM), as kubectl writes it; anything else is named."""
    if data.startswith(_UTF32_BOMS):
        raise InputError(f"{path} is UTF-32; convert it: iconv -f UTF-32 -t UTF-8 {path}")
    if data.startswith(_UTF16_BOMS) or _looks_utf16(data):
        raise InputError(f"{path} is UTF-16 (PowerShell's default); convert it: "
                         f"iconv -f UTF-16 -t UTF-8 {path} > {path.stem}.utf8{path.suffix}, or "
                         "write it with kubectl ... | Out-File -Encoding utf8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); convert it: iconv -f <its encoding> -t UTF-8 "
                         f"{path}") from None


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: JSON/YAML is ASCII-heavy, so every other byte is NUL."""
    head = data[:64]
    return len(head) >= 4 and (head[1::2].count(0) > len(head) // 4
                               or head[0::2].count(0) > len(head) // 4)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse(path: Path, text: str) -> Any:
    """JSON when it looks like JSON (kubectl -o json), else YAML (kubectl -o yaml)."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise InputError(f"{path} nests deeper than {MAX_DEPTH} levels; no Kubernetes "
                             "object does") from None
        except ValueError as exc:  # JSONDecodeError, NaN, a 5000-digit number
            raise InputError(f"{path} is not valid JSON: {exc}") from None
    _check_yaml_events(path, text)
    try:
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid JSON nor YAML: {_yaml_problem(exc)}") from None


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_yaml_events(path: Path, text: str) -> None:
    """Refuse aliases and deep nesting before anything is built.

    `kubectl -o yaml` never writes aliases; a file with them may be a billion-laughs bomb
    (nine aliases of nine aliases… expand to gigabytes). The event stream is flat, so this
    check itself cannot recurse or expand anything.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise InputError(f"{path} uses YAML aliases (*{event.anchor:.40}); kubectl never "
                                 "writes them: give plain `kubectl get -o yaml` output")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise InputError(f"{path} nests deeper than {MAX_DEPTH} levels; no "
                                     "Kubernetes object does")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid JSON nor YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether `data` nests deeper than `limit` (iterative: safe on any depth)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterator[Any]
        if isinstance(node, dict):
            children = iter(node.values())
        elif isinstance(node, list):
            children = iter(node)
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _kind_of(value: Any) -> str:
    """How a value reads in JSON terms, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
             int: "a number", float: "a number", type(None): "null"}
    for python_type, name in names.items():
        if type(value) is python_type:
            return name
    return f"a YAML {type(value).__name__}"


_EXPECTED = {
    "model_type": "must be an object", "dict_type": "must be an object",
    "model_attributes_type": "must be an object", "list_type": "must be a list",
    "string_type": "must be a string", "int_type": "must be a whole number",
    "bool_type": "must be true or false",
}


def _problem(exc: ValidationError, prefix: str) -> str:
    """The first validation error as `.items[2].count must be a whole number, not a string`."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    where = where or "the object"
    kind = first["type"]
    if kind in _EXPECTED:
        value = first["input"]
        shown = f" ({value!r:.40})" if isinstance(value, str | int | float) else ""
        text = f"{where} {_EXPECTED[kind]}, not {_kind_of(value)}{shown}"
    elif kind == "missing":
        text = f"{where} is missing"
    elif kind == "less_than_equal":
        text = f"{where} must be at most {first['ctx']['le']}"
    elif kind == "greater_than_equal":
        text = f"{where} must be at least {first['ctx']['ge']}"
    else:
        text = f"{where} {first['msg']}"
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _validated(path: Path, model: type[BaseModel], raw: Any, prefix: str) -> dict[str, Any]:
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: {_problem(exc, prefix)}") from None
    return parsed.model_dump(exclude_unset=True)


def load_objects(path: Path, expected_kind: str) -> list[dict[str, Any]]:
    """Read a JSON (or YAML) file holding one object of `expected_kind` or a List of them,
    each reduced to the validated fields the diagnosis reads."""
    data = _parse(path, _decode(path, _read_bytes(path)))
    if _depth_exceeds(data, MAX_DEPTH):
        raise InputError(f"{path} nests deeper than {MAX_DEPTH} levels; no Kubernetes object "
                         "does")
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a Kubernetes object or List, not {_kind_of(data)}")
    envelope = _validated(path, Document, data, "")  # kind a string, items objects
    kind = envelope.get("kind") or ""
    if kind.endswith("List"):
        items: list[dict[str, Any]] = envelope.get("items") or []
        wrong = sorted({str(i["kind"]) for i in items
                        if i.get("kind") not in (None, expected_kind)})
        if wrong:
            raise InputError(f"{path}: expected {expected_kind} items, found {wrong}"[:300])
        model = MODELS[expected_kind]
        return [_validated(path, model, item, f".items[{n}]") for n, item in enumerate(items)]
    if kind != expected_kind:
        raise InputError(f"{path}: expected kind {expected_kind} (or a List), found "
                         f"{kind or 'no kind':.60}")
    return [_validated(path, MODELS[expected_kind], data, "")]


def facts_from_files(pod_path: Path, events_path: Path | None = None) -> list[PodFacts]:
    """One PodFacts per pod in `pod_path`, each with the events that are about it."""
    pods = load_objects(pod_path, "Pod")
    if not pods:
        raise InputError(f"{pod_path} holds no pods")
    events = load_objects(events_path, "Event") if events_path else []
    return [PodFacts(pod=pod, events=events) for pod in pods]
