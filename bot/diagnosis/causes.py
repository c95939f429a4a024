"""The closed vocabularies of the diagnosis: causes and findings.

They are part of the JSON contract (README, "JSON output"), so the string values never change;
new members may be added.
"""

from __future__ import annotations

from enum import StrEnum


class Cause(StrEnum):
    """Why a container cannot pull its image: exactly one per failing container."""

    TAG_NOT_FOUND = "tag_not_found"
    REPOSITORY_NOT_FOUND = "repository_not_found"
    AUTH_REQUIRED = "auth_required"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    DNS_FAILURE = "dns_failure"
    NETWORK_UNREACHABLE = "network_unreachable"
    TLS_UNTRUSTED = "tls_untrusted"
    NEVER_PULL = "never_pull"
    INVALID_IMAGE_NAME = "invalid_image_name"
    DISK_FULL = "disk_full"
    PLATFORM_MISMATCH = "platform_mismatch"
    UNKNOWN = "unknown"


class Finding(StrEnum):
    """Facts from the pod's context that sharpen a cause; several may apply at once."""

    NO_PULL_SECRET = "no_pull_secret"
    PULL_SECRET_MISSING = "pull_secret_missing"
    PULL_SECRET_WRONG_REGISTRY = "pull_secret_wrong_registry"
    PULL_SECRET_NOT_REFERENCED = "pull_secret_not_referenced"
    CLOUD_REGISTRY_CREDENTIALS = "cloud_registry_credentials"
    ECR_TOKEN_EXPIRED = "ecr_token_expired"
    IMPLICIT_LATEST_TAG = "implicit_latest_tag"
    POLICY_NEVER = "policy_never"
    ENSURE_SECRET_PULLED_IMAGES = "ensure_secret_pulled_images"
    NODE_DISK_PRESSURE = "node_disk_pressure"
    # from asking the registry (bot/registry/investigator.py)
    TAG_SUGGESTION = "tag_suggestion"
    SWAPPED_PATH = "swapped_path"
    REGISTRY_HOST_TYPO = "registry_host_typo"


#: Causes that can clear on their own on the kubelet's next retry (a rate-limit window resets,
#: a registry comes back). Everything else stays broken until a person changes something.
TRANSIENT_CAUSES: frozenset[Cause] = frozenset({Cause.RATE_LIMITED, Cause.NETWORK_UNREACHABLE})
