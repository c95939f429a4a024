"""Scenario files: multi-document YAML of Kubernetes objects, as ``kubectl get -o yaml`` shows.

An optional first document ``kind: Scenario`` carries the cluster-level settings::

    kind: Scenario
    name: tag-not-found
    description: ...
    kubernetesVersion: v1.33.1       # served at /version
    forbidden: [secrets, "patch deployments"]  # RBAC denials: "resource" or "verbs resource"
    token: s3cr3t                    # demand this bearer token (401 otherwise)
    expected: {cause: tag_not_found, findings: []}   # the author's intent, for bot tests

Timestamps stay fresh: any string ``{{now}}``, ``{{now-5m}}``, ``{{now+30s}}`` (units s, m,
h, d) is replaced at load time by RFC 3339 UTC (``2026-11-28T15:00:00Z``). The template may also
be embedded in a longer string (e.g. an annotation value).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

SCENARIO_DIR = Path(__file__).parent / "scenarios"
DEFAULT_VERSION = "v1.33.1"

_TEMPLATE_RE = re.compile(r"\{\{\s*now\s*(?:([+-])\s*(\d+)\s*([smhd]))?\s*\}\}")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def render_time(text: str, now: dt.datetime | None = None) -> str:
    """Replace every ``{{now±N<unit>}}`` in a string with an RFC 3339 UTC timestamp."""
    base = now or dt.datetime.now(dt.UTC)

    def repl(m: re.Match[str]) -> str:
        when = base
        if m[1]:
            delta = dt.timedelta(**{_UNITS[m[3]]: int(m[2])})
            when = base + delta if m[1] == "+" else base - delta
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    return _TEMPLATE_RE.sub(repl, text)


def _render(value: Any, now: dt.datetime) -> Any:
    if isinstance(value, str):
        return render_time(value, now) if "{{" in value else value
    if isinstance(value, list):
        return [_render(v, now) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, now) for k, v in value.items()}
    return value


@dataclass
class Scenario:
    """A loaded scenario: settings from the ``kind: Scenario`` document plus the objects."""

    name: str
    description: str = ""
    kubernetes_version: str | None = None
    forbidden: list[str] = field(default_factory=list)
    token: str | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    #: registry host → {repository: [tags] or {tags: [...], users: {name: password}}}, served by
    #: bot.sim.registry for the demo (tests use the real CNCF registry instead)
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None


def _scenario_from_docs(
    docs: Iterable[Any], name: str, path: Path | None, now: dt.datetime
) -> Scenario:
    scenario = Scenario(name=name, path=path)
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{path or name}: every YAML document must be a mapping")
        doc = _render(doc, now)
        if doc.get("kind") == "Scenario":
            scenario.name = str(doc.get("name", name))
            scenario.description = str(doc.get("description", "")).strip()
            scenario.kubernetes_version = doc.get("kubernetesVersion")
            scenario.forbidden = list(doc.get("forbidden") or [])
            scenario.token = doc.get("token")
            scenario.expected = dict(doc.get("expected") or {})
            scenario.registries = dict(doc.get("registries") or {})
        elif doc.get("kind", "").endswith("List") and "items" in doc:
            scenario.objects.extend(doc["items"])  # `kubectl get -o yaml` of several objects
        else:
            scenario.objects.append(doc)
    return scenario


def load_scenario(path: Path | str, now: dt.datetime | None = None) -> Scenario:
    """Load one scenario file (or a scenario id from the bundled directory)."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        p = SCENARIO_DIR / f"{p}.yaml"
    with p.open(encoding="utf-8") as fh:
        docs = list(yaml.safe_load_all(fh))
    return _scenario_from_docs(docs, p.stem, p, now or dt.datetime.now(dt.UTC))


def scenario_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Expand directories to their ``*.yaml``/``*.yml`` files (sorted); keep files and ids."""
    result: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            result.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif not p.exists() and not p.suffix and (SCENARIO_DIR / f"{p}.yaml").exists():
            result.append(SCENARIO_DIR / f"{p}.yaml")
        else:
            result.append(p)
    return result


def bundled_scenarios() -> list[Path]:
    """All scenario files shipped in ``bot/sim/scenarios``."""
    return scenario_paths([SCENARIO_DIR])


F = TypeVar("F", bound=Callable[..., Any])


def scenario(*ids: str, **kwargs: Any) -> Callable[[F], F]:
    """Test decorator read by the ``bot.sim.testing`` fixtures: which scenarios to load, and
    extra ``SimCluster`` keyword arguments. Lives here, not in the plugin module, so importing
    it does not pre-import the pytest plugin (which would defeat its assertion rewriting)."""

    def decorate(fn: F) -> F:
        fn._sim_scenario = ids, kwargs  # type: ignore[attr-defined]
        return fn

    return decorate
