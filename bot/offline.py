"""Facts from files: `kubectl get pod -o json` and `kubectl get events -o json` output.

For people who cannot give the bot API access (a ticket, a CI log, an air-gapped cluster):
the same diagnosis, minus what only the API knows (owner objects, secrets, nodes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bot.diagnosis.facts import PodFacts


class InputError(ValueError):
    """A file the user gave cannot be used; the message says which and why."""


def load_objects(path: Path, expected_kind: str) -> list[dict[str, Any]]:
    """Read a JSON (or YAML) file holding one object of `expected_kind` or a List of them."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputError(f"{path} is not valid JSON (nor YAML)") from None
    if not isinstance(data, Mapping):
        raise InputError(f"{path} must hold a Kubernetes object or List, not "
                         f"{type(data).__name__}")
    kind = str(data.get("kind") or "")
    if kind.endswith("List") and isinstance(data.get("items"), list):
        items = [dict(i) for i in data["items"] if isinstance(i, Mapping)]
        wrong = {str(i.get("kind")) for i in items if i.get("kind") not in (None, expected_kind)}
        if wrong:
            raise InputError(f"{path}: expected {expected_kind} items, found {sorted(wrong)}")
        return items
    if kind != expected_kind:
        raise InputError(f"{path}: expected kind {expected_kind} (or a List), found "
                         f"{kind or 'no kind'}")
    return [dict(data)]


def facts_from_files(pod_path: Path, events_path: Path | None = None) -> list[PodFacts]:
    """One PodFacts per pod in `pod_path`, each with the events that are about it."""
    pods = load_objects(pod_path, "Pod")
    if not pods:
        raise InputError(f"{pod_path} holds no pods")
    events = load_objects(events_path, "Event") if events_path else []
    return [PodFacts(pod=pod, events=events) for pod in pods]
