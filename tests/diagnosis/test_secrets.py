"""Pull secrets are reduced to registry hosts; the password never survives the reduction."""

from __future__ import annotations

import base64
import json

from bot.diagnosis.imageref import normalise_registry_key, registry_matches
from bot.diagnosis.secrets import pull_secret_info, registry_keys

PASSWORD = "s3cr3t-do-not-print"


def _secret(kind: str, payload: object, name: str = "regcred") -> dict[str, object]:
    field = ".dockerconfigjson" if kind == "kubernetes.io/dockerconfigjson" else ".dockercfg"
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": kind, "data": {field: encoded},
            "metadata": {"name": name, "namespace": "shop",
                         "creationTimestamp": "2026-11-28T01:00:00Z",
                         "managedFields": [{"manager": "kubectl", "operation": "Update",
                                            "time": "2026-11-28T09:30:00Z"}]}}


def test_dockerconfigjson_keys_and_age_without_credentials() -> None:
    auth = base64.b64encode(f"deploy-bot:{PASSWORD}".encode()).decode()
    secret = _secret("kubernetes.io/dockerconfigjson", {"auths": {
        "registry.internal": {"username": "deploy-bot", "password": PASSWORD, "auth": auth},
        "https://index.docker.io/v1/": {"auth": auth}}})
    info = pull_secret_info(secret)
    assert info.registries == ("registry.internal", "https://index.docker.io/v1/")
    assert info.updated_at is not None and info.updated_at.hour == 9
    assert PASSWORD not in repr(info) and auth not in repr(info)


def test_legacy_dockercfg_keys() -> None:
    secret = _secret("kubernetes.io/dockercfg", {"registry.internal:5000": {"auth": "eA=="}})
    assert registry_keys(secret) == ("registry.internal:5000",)


def test_garbage_payload_yields_no_keys_and_no_detail() -> None:
    secret = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "%%%"}}
    assert registry_keys(secret) == ()


def test_registry_key_spellings() -> None:
    assert normalise_registry_key("https://index.docker.io/v1/") == "docker.io"
    assert normalise_registry_key("http://Registry.Internal:5000/v2/") == "registry.internal:5000"
    assert registry_matches("registry-1.docker.io", "docker.io")
    assert not registry_matches("registry.internal", "registry.internal:5000")
    assert not registry_matches("registry.example.com", "registry.internal")
