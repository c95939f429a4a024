"""Reduce a docker-registry Secret to what a diagnosis may know: its registry hosts.

The decoded credentials exist only inside `pull_secret_info` and are dropped before it returns,
so no password or token can reach a result, a log line or an exception message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from bot.diagnosis.facts import PullSecretInfo, parse_k8s_time

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
PULL_SECRET_TYPES = (DOCKERCONFIGJSON, DOCKERCFG)


def registry_keys(secret: Mapping[str, Any]) -> tuple[str, ...]:
    """The `auths` keys of a pull secret (or the top-level keys of a legacy .dockercfg)."""
    data = secret.get("data") or {}
    kind = secret.get("type")
    field = ".dockerconfigjson" if kind == DOCKERCONFIGJSON else ".dockercfg"
    encoded = data.get(field)
    if not isinstance(encoded, str):
        return ()
    try:
        decoded = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ()  # deliberately no detail: the payload is a credential
    if not isinstance(decoded, dict):
        return ()
    auths = decoded.get("auths") if kind == DOCKERCONFIGJSON else decoded
    if not isinstance(auths, dict):
        return ()
    return tuple(str(k) for k in auths)


def pull_secret_info(secret: Mapping[str, Any]) -> PullSecretInfo:
    meta = secret.get("metadata") or {}
    stamps = [parse_k8s_time(meta.get("creationTimestamp"))]
    stamps += [parse_k8s_time(m.get("time")) for m in meta.get("managedFields") or []]
    known = [s for s in stamps if s is not None]
    return PullSecretInfo(
        name=str(meta.get("name") or ""),
        type=str(secret.get("type") or ""),
        registries=registry_keys(secret),
        updated_at=max(known) if known else None,
    )
