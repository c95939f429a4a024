"""PATCH bodies applied the way the apiserver applies them, for the fields the bot touches.

* ``application/merge-patch+json`` (RFC 7386): dicts merge, ``null`` deletes, lists replace.
* ``application/strategic-merge-patch+json``: like merge-patch, but lists that Kubernetes
  declares with a ``patchMergeKey`` merge element-wise by that key (containers by ``name``,
  imagePullSecrets by ``name``, ...), and the ``$patch`` / ``$setElementOrder`` directives are
  honoured or ignored as the apiserver does. This is what ``kubectl set image`` and
  ``kubectl rollout restart`` send, and what the Python client sends for a dict body.
* ``application/json-patch+json`` (RFC 6902) via the ``jsonpatch`` package.

A full strategic-merge implementation needs the OpenAPI schema of every type; the merge keys
below cover the pod template, service accounts and object metadata, which is all the bot
patches. Other lists are replaced, which is also the apiserver's default for lists without a
merge key.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
SUPPORTED_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

#: List field name -> merge key, from the Kubernetes API types' `patchMergeKey` tags.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "imagePullSecrets": "name",
    "secrets": "name",  # ServiceAccount.secrets
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
#: Lists of scalars with `patchStrategy:merge` (union, not replace).
MERGE_SCALAR_LISTS = frozenset({"finalizers"})


class PatchError(ValueError):
    """A patch body the apiserver would reject (422/400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value, never mutates the inputs."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch for the known merge keys; returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key.startswith("$retainKeys"):
            continue  # ordering/retention hints: irrelevant for a dict-backed store
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _merge_list(result.get(key) or [], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGE_SCALAR_LISTS:
            existing = list(result.get(key) or [])
            result[key] = existing + [v for v in value if v not in existing]
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _merge_list(target: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {key}")
        index = next(
            (
                i
                for i, cur in enumerate(result)
                if isinstance(cur, dict) and cur.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def apply_patch(obj: dict[str, Any], content_type: str, body: Any) -> dict[str, Any]:
    """Apply a PATCH body of the given media type; PatchError on a malformed body."""
    if content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise PatchError("json patch must be a JSON array of operations")
        try:
            result = jsonpatch.apply_patch(obj, body, in_place=False)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise PatchError(str(exc)) from exc
        return dict(result)
    if not isinstance(body, dict):
        raise PatchError("merge patch body must be a JSON object")
    if content_type == MERGE_PATCH:
        return dict(merge_patch(obj, body))
    return dict(strategic_merge_patch(obj, body))
