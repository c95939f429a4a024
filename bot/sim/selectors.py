"""Label and field selectors, parsed and evaluated with the apiserver's semantics.

Notable semantics kept on purpose: ``a!=b`` and ``a notin (x)`` also match objects that do not
have the label at all (labels.Requirement.Matches), and a field selector only accepts the
fields the resource type declares (anything else is a 400, as on a real cluster).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.sim.resources import ResourceType


class SelectorError(ValueError):
    """A selector the apiserver would reject with 400 BadRequest (message as it would say)."""


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # "exists", "!exists", "=", "!=", "in", "notin"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        # "!=" and "notin" match an absent label too.
        return not has or value not in self.values


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: ``a in (x,y),b`` -> [``a in (x,y)``, ``b``]."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_label_selector(text: str | None) -> list[LabelRequirement]:
    """Parse a labelSelector query value; an empty/absent selector matches everything."""
    if not text or not text.strip():
        return []
    reqs: list[LabelRequirement] = []
    for term in _split_top_level(text):
        if m := _SET_RE.match(term):
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            if not all(_VALUE_RE.match(v) for v in values):
                raise SelectorError(f"unable to parse requirement: invalid value in {term!r}")
            reqs.append(LabelRequirement(m["key"], m["op"], values))
        elif m := _EQ_RE.match(term):
            op = "!=" if m["op"] == "!=" else "="
            reqs.append(LabelRequirement(m["key"], op, (m["value"],)))
        elif m := _EXISTS_RE.match(term):
            reqs.append(LabelRequirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise SelectorError(
                f"unable to parse requirement: found '{term.strip()}', expected: key, "
                "!key, key=value, key!=value, key in (...), key notin (...)"
            )
    return reqs


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _split_unescaped(text: str, sep: str) -> list[str]:
    return re.split(rf"(?<!\\){re.escape(sep)}", text)


def parse_field_selector(text: str | None, rt: ResourceType) -> list[FieldRequirement]:
    """Parse a fieldSelector; unknown field labels raise like the apiserver's conversion funcs."""
    if not text or not text.strip():
        return []
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        m = re.match(r"^(?P<field>[^=!]+?)\s*(?P<op>!=|==|=)(?P<value>.*)$", term.strip())
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        name = m["field"].strip()
        if rt.field_value({}, name) is None:
            raise SelectorError(f"field label not supported: {name}")
        reqs.append(FieldRequirement(name, m["op"] == "!=", _unescape(m["value"])))
    return reqs


@dataclass(frozen=True)
class Selector:
    """Both selectors of one request (AND), callable as the predicate on one object."""

    rt: ResourceType
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    def __call__(self, obj: dict[str, Any]) -> bool:
        if self.labels:
            obj_labels = (obj.get("metadata") or {}).get("labels") or {}
            if not all(req.matches(obj_labels) for req in self.labels):
                return False
        for freq in self.fields:
            equal = self.rt.field_value(obj, freq.field) == freq.value
            if equal == freq.negate:
                return False
        return True

    @property
    def empty(self) -> bool:
        """True if it matches every object (no requirement at all)."""
        return not self.labels and not self.fields

    def field_equals(self) -> dict[str, str]:
        """The ``field=value`` requirements (not ``!=``): a store may look matches up by them
        instead of testing every object; the selector itself still decides."""
        return {req.field: req.value for req in self.fields if not req.negate}


def compile_selectors(
    rt: ResourceType, label_selector: str | None, field_selector: str | None
) -> Selector:
    """One predicate for both selectors (AND), raising SelectorError up front if invalid."""
    return Selector(rt, tuple(parse_label_selector(label_selector)),
                    tuple(parse_field_selector(field_selector, rt)))
