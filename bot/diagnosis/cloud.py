"""Cloud registries whose credentials expire, recognised by host name.

Static imagePullSecrets break on these (an ECR token lives 12 hours); the durable fix is the
kubelet credential provider (GA since Kubernetes 1.26), so the bot says so whenever one is
involved in an authentication failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

ECR_TOKEN_LIFETIME = timedelta(hours=12)

_ECR = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$"
)
_GCR = re.compile(r"^([a-z]+\.)?gcr\.io$")
_ARTIFACT_REGISTRY = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev$")
_ACR = re.compile(r"^(?P<name>[a-z0-9]+)\.azurecr\.(io|cn|us)$")


@dataclass(frozen=True)
class CloudRegistry:
    provider: str  # "aws", "gcp", "azure"
    product: str  # "ECR", "GCR", "Artifact Registry", "ACR"
    credential_provider: str  # the kubelet credential provider plugin that replaces secrets
    region: str | None = None


def cloud_registry(host: str) -> CloudRegistry | None:
    """Which cloud registry `host` is, or None for anything else."""
    host = host.lower()
    if m := _ECR.match(host):
        return CloudRegistry("aws", "ECR", "ecr-credential-provider (cloud-provider-aws)",
                             m.group("region"))
    if _GCR.match(host):
        return CloudRegistry("gcp", "GCR", "Workload Identity / gcp-auth-webhook")
    if m := _ARTIFACT_REGISTRY.match(host):
        return CloudRegistry("gcp", "Artifact Registry", "Workload Identity / gcp-auth-webhook",
                             m.group("location"))
    if _ACR.match(host):
        return CloudRegistry("azure", "ACR", "acr-credential-provider")
    return None
