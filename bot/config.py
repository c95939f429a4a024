"""Settings from the environment (12-factor), validated once at start.

The variable names are a contract with users, the deploy manifests and the Procfile; see the
README's Configuration section. Maps are written `host=value,host2=value2` so they fit in one
environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _pairs(value: object) -> dict[str, str]:
    """`a=1,b=2` → {"a": "1", "b": "2"}; a dict passes through (tests, .env JSON)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs: dict[str, str] = {}
    for item in str(value or "").split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(f"expected host=value, got {item.strip()!r}")
        pairs[key.strip().lower()] = val.strip()
    return pairs


def _items(value: object) -> list[str]:
    if isinstance(value, list | tuple | set):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


class Settings(BaseSettings):
    """Everything the bot reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    cluster_name: str = Field(default="default", alias="CLUSTER_NAME")
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")

    #: ask registries what the kubelet could not tell (tags, repository existence, digests)
    registry_probe: bool = Field(default=True, alias="REGISTRY_PROBE")
    #: registry host → base URL, e.g. a mirror or, in tests and the demo, a loopback server
    registry_endpoints: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="REGISTRY_ENDPOINTS")
    #: hosts reached over plain HTTP (everything else: HTTPS with verification)
    registry_insecure_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="REGISTRY_INSECURE_HOSTS")
    #: registry host → CA bundle file for registries signed by a private CA
    registry_ca_bundles: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="REGISTRY_CA_BUNDLES")
    registry_timeout_seconds: float = Field(default=5.0, gt=0, le=60,
                                            alias="REGISTRY_TIMEOUT_SECONDS")
    dockerhub_auth_url: str = Field(default="https://auth.docker.io/token",
                                    alias="DOCKERHUB_AUTH_URL")
    dockerhub_registry_url: str = Field(default="https://registry-1.docker.io",
                                        alias="DOCKERHUB_REGISTRY_URL")

    @field_validator("registry_endpoints", "registry_ca_bundles", mode="before")
    @classmethod
    def _parse_pairs(cls, value: object) -> dict[str, str]:
        return _pairs(value)

    @field_validator("registry_insecure_hosts", mode="before")
    @classmethod
    def _parse_items(cls, value: object) -> list[str]:
        return [v.lower() for v in _items(value)]

    @field_validator("registry_ca_bundles")
    @classmethod
    def _bundles_exist(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [f"{h}={p}" for h, p in value.items() if not Path(p).is_file()]
        if missing:
            raise ValueError(f"CA bundle file(s) not found: {', '.join(missing)}")
        return value


def load_settings() -> Settings:
    """Read and validate the environment (raises pydantic.ValidationError with every problem)."""
    return Settings()
