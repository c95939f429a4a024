"""The install profiles (deploy/overlays/*) as `kubectl kustomize` renders them.

Shared by tests/deploy/test_profiles.py (schemas and invariants) and tests/app/test_rbac.py
(least privilege per profile): both read what would be applied, not the source files.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"
PROFILES = ("http", "socket-mode", "read-only", "no-secrets", "namespaced", "agent")
#: the profiles that bundle their own Redis (the agent joins a shared one: issue 13)
BUNDLED_REDIS = tuple(p for p in PROFILES if p != "agent")

Doc = dict[str, Any]


def kubectl() -> str:
    """kubectl's path, or a failure that says how to get it (never a silent skip)."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed, so the install profiles cannot be rendered: "
                    "install it (https://kubernetes.io/docs/tasks/tools/, or `apt-get install "
                    "kubectl` from the Kubernetes apt repository) and run again; "
                    "`kubectl kustomize` needs no cluster")
    return found


@cache
def _render(profile: str) -> tuple[Doc, ...]:
    result = subprocess.run([kubectl(), "kustomize", str(DEPLOY / "overlays" / profile)],
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize deploy/overlays/{profile} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(profile: str) -> list[Doc]:
    """Every document of the rendered profile (a fresh list; the documents are shared)."""
    return list(_render(profile))


@dataclass(frozen=True)
class Grants:
    """What a profile grants the bot: rules bound cluster-wide, and rules bound per namespace
    (a RoleBinding of a Role or of a ClusterRole: effective only in its namespace)."""

    cluster: list[Doc]
    namespaced: dict[str, list[Doc]]


def grants(docs: list[Doc], account: str = "imagepull-bot",
           account_namespace: str = "imagepull-bot") -> Grants:
    """Follow each binding whose subject is the bot's service account to its role's rules, as
    the RBAC authorizer does."""
    roles = {(d["kind"], (d["metadata"].get("namespace") or ""), d["metadata"]["name"]):
             list(d.get("rules") or []) for d in docs if d["kind"] in ("Role", "ClusterRole")}
    cluster: list[Doc] = []
    namespaced: dict[str, list[Doc]] = {}
    for d in docs:
        if d["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account
                   and s.get("namespace") == account_namespace for s in d.get("subjects") or []):
            continue
        ref = d["roleRef"]
        namespace = d["metadata"].get("namespace") or ""
        rules = roles[(ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])]
        if d["kind"] == "ClusterRoleBinding":
            cluster += rules
        else:
            namespaced.setdefault(namespace, []).extend(rules)
    return Grants(cluster, namespaced)


def config(docs: list[Doc]) -> dict[str, str]:
    """The bot's configMap (its environment, beside the Secrets)."""
    maps = [d for d in docs if d["kind"] == "ConfigMap"
            and d["metadata"]["name"].startswith("imagepull-bot")]
    assert len(maps) == 1, [m["metadata"]["name"] for m in maps]
    return {str(k): str(v) for k, v in (maps[0].get("data") or {}).items()}
