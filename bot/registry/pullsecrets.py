"""Pull secrets as credentials: decode, match to a registry, verify against the registry.

This is the only module that turns a Secret's password into a `RegistryCredentials` (whose
repr hides it). Results carry the username and never the password or token, so they can go
to Slack, logs and JSON as they are.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot.diagnosis.imageref import ImageRef, registry_matches
from bot.diagnosis.secrets import DOCKERCFG, DOCKERCONFIGJSON
from bot.kube.client import KubeClient, KubeForbidden, KubeNotFound, SecretsNotRead
from bot.registry.client import RegistryClient
from bot.registry.model import Outcome, RegistryCredentials


class SecretError(ValueError):
    """The secret cannot be used as a pull secret; the message never contains its data."""


def credentials_from_secret(secret: Mapping[str, Any]) -> dict[str, RegistryCredentials]:
    """auths key → credentials, from a dockerconfigjson or legacy dockercfg secret."""
    kind = secret.get("type")
    name = (secret.get("metadata") or {}).get("name", "?")
    if kind not in (DOCKERCONFIGJSON, DOCKERCFG):
        raise SecretError(f"secret {name} is of type {kind}, not a docker-registry secret")
    field_name = ".dockerconfigjson" if kind == DOCKERCONFIGJSON else ".dockercfg"
    encoded = (secret.get("data") or {}).get(field_name)
    if not isinstance(encoded, str):
        raise SecretError(f"secret {name} has no {field_name} key")
    try:
        config = json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SecretError(f"secret {name}: {field_name} is not base64-encoded JSON") from None
    auths = config.get("auths") if kind == DOCKERCONFIGJSON and isinstance(config, dict) \
        else config
    if not isinstance(auths, dict):
        raise SecretError(f"secret {name}: {field_name} has no auths map")
    found: dict[str, RegistryCredentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("username") and "password" in entry:
            found[str(key)] = RegistryCredentials(str(entry["username"]), str(entry["password"]))
        elif entry.get("auth"):
            try:
                found[str(key)] = RegistryCredentials.from_auth(str(entry["auth"]))
            except ValueError:
                continue
    return found


def secret_usernames(kube: KubeClient, namespace: str, name: str
                     ) -> tuple[tuple[str, str], ...] | None:
    """(auths key, username) of one pull secret, for the escalation bundle: the usernames
    only — the passwords are dropped here, with the rest of the decoded secret. None when the
    secret cannot be read or is not a usable docker-registry secret."""
    try:
        secret = kube.read_secret(namespace, name)
    except KubeForbidden:  # SecretsNotRead too: READ_SECRETS=false
        return None
    if secret is None:
        return None
    try:
        credentials = credentials_from_secret(secret)
    except SecretError:
        return None
    return tuple((key, creds.username) for key, creds in credentials.items())


def for_registry(credentials: Mapping[str, RegistryCredentials],
                 registry: str) -> tuple[str, RegistryCredentials] | None:
    """The (auths key, credentials) the kubelet would use for `registry`, if any."""
    for key, creds in credentials.items():
        if registry_matches(key, registry):
            return key, creds
    return None


def secret_credentials(kube: KubeClient, namespace: str, name: str,
                       registry: str) -> RegistryCredentials | None:
    """The credentials one named pull secret holds for `registry` (None: no entry for it).

    Raises KubeNotFound when the secret does not exist, SecretError when it is not a usable
    docker-registry secret.
    """
    secret = kube.read_secret(namespace, name)
    if secret is None:
        raise KubeNotFound(f'secret "{namespace}/{name}" not found')
    match = for_registry(credentials_from_secret(secret), registry)
    return match[1] if match else None


def pod_credentials(kube: KubeClient, namespace: str,
                    secret_names: Sequence[str]) -> dict[str, RegistryCredentials]:
    """All credentials a pod's pull secrets hold, in the order the kubelet tries them."""
    merged: dict[str, RegistryCredentials] = {}
    for name in secret_names:
        try:
            secret = kube.read_secret(namespace, name)
        except SecretsNotRead:
            raise  # READ_SECRETS=false: no probe with the pod's credentials (not anonymous)
        except KubeForbidden:
            return merged
        if secret is None:
            continue
        try:
            for key, creds in credentials_from_secret(secret).items():
                merged.setdefault(key, creds)
        except SecretError:
            continue
    return merged


class VerifyStatus(StrEnum):
    VALID = "valid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    REGISTRY_UNREACHABLE = "registry_unreachable"
    NO_ENTRY_FOR_REGISTRY = "no_entry_for_registry"


@dataclass(frozen=True)
class SecretVerification:
    """The verdict on one pull secret for one image: what a person needs, nothing secret."""

    namespace: str
    secret: str
    image: str
    registry: str
    status: VerifyStatus
    message: str
    username: str | None = None
    auths_key: str | None = None
    registries: tuple[str, ...] = ()
    referenced_by: tuple[str, ...] = ()
    referenced: bool | None = None
    registry_answer: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "secret": self.secret, "image": self.image,
            "registry": self.registry, "status": self.status.value, "message": self.message,
            "username": self.username, "auths_key": self.auths_key,
            "registries": list(self.registries), "referenced": self.referenced,
            "referenced_by": list(self.referenced_by), "registry_answer": self.registry_answer,
            "notes": list(self.notes),
        }


def verify_pull_secret(kube: KubeClient, client: RegistryClient, namespace: str, secret: str,
                       image: ImageRef, pod: Mapping[str, Any] | None = None
                       ) -> SecretVerification:
    """Would the kubelet's pull of `image` work with `secret`? Asks the registry for real.

    Raises KubeNotFound when the secret does not exist, SecretError when it is not a usable
    docker-registry secret, KubeForbidden when the bot may not read it.
    """
    raw = kube.read_secret(namespace, secret)
    if raw is None:
        raise KubeNotFound(f'secret "{namespace}/{secret}" not found (secrets are '
                           "namespace-scoped: it must be in the pod's namespace)")
    credentials = credentials_from_secret(raw)
    referenced_by, referenced = _references(kube, namespace, secret, pod)
    notes = []
    if referenced is False:
        notes.append(f"neither the pod nor its service account references {secret}: "
                     "the kubelet will not use it")
    elif pod is None and not referenced_by:
        notes.append(f"no service account in {namespace} references {secret}; pods must list "
                     "it in imagePullSecrets")
    result = SecretVerification(
        namespace=namespace, secret=secret, image=image.original, registry=image.registry,
        status=VerifyStatus.NO_ENTRY_FOR_REGISTRY, message="", registries=tuple(credentials),
        referenced_by=referenced_by, referenced=referenced, notes=tuple(notes))
    match = for_registry(credentials, image.registry)
    if match is None:
        server = "https://index.docker.io/v1/" if image.is_docker_hub else image.registry
        return replace(result, message=(
            f"{secret} has no credentials for {image.registry} (it has: "
            f"{', '.join(credentials) or 'none'}); re-create it with --docker-server={server}"))
    key, creds = match
    probe = client.head_manifest(image, creds)
    answer = (f"{probe.status} {probe.registry_code or ''}".strip() if probe.status
              else probe.outcome.value)
    result = replace(result, username=creds.username, auths_key=key, registry_answer=answer)
    if probe.outcome in (Outcome.OK, Outcome.MANIFEST_UNKNOWN, Outcome.NAME_UNKNOWN):
        missing = "" if probe.ok else (f" (but {image.repository}:"
                                       f"{image.digest or image.effective_tag} does not exist)")
        return replace(result, status=VerifyStatus.VALID,
                       message=f"{creds.username} can pull from {image.registry}{missing}")
    if probe.outcome is Outcome.DENIED or (probe.outcome is Outcome.UNAUTHORIZED
                                           and probe.insufficient_scope):
        return replace(result, status=VerifyStatus.FORBIDDEN,
                       message=f"{creds.username} is known to {image.registry} but may not "
                               f"pull {image.repository}")
    if probe.outcome is Outcome.UNAUTHORIZED:
        return replace(result, status=VerifyStatus.UNAUTHORIZED,
                       message=f"{image.registry} rejects the credentials of {creds.username} "
                               "(wrong or expired password/token)")
    return replace(result, status=VerifyStatus.REGISTRY_UNREACHABLE,
                   message=f"could not ask {image.registry}: {probe.message or answer}")


def _references(kube: KubeClient, namespace: str, secret: str,
                pod: Mapping[str, Any] | None) -> tuple[tuple[str, ...], bool | None]:
    """Which service accounts use the secret, and whether the pod (if given) does."""
    try:
        accounts = tuple(kube.service_accounts_using(namespace, secret))
    except (KubeForbidden, KubeNotFound):
        accounts = ()
    if pod is None:
        return accounts, None
    spec = pod.get("spec") or {}
    on_pod = any(r.get("name") == secret for r in spec.get("imagePullSecrets") or [])
    account = spec.get("serviceAccountName") or "default"
    return accounts, on_pod or account in accounts
