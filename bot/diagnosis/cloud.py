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


_ECR_IMAGES = ("*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn")
_GCP_IMAGES = ("gcr.io", "*.gcr.io", "*.pkg.dev", "container.cloud.google.com")
_ACR_IMAGES = ("*.azurecr.io", "*.azurecr.cn", "*.azurecr.us")
_GCP_PROVIDER = "auth-provider-gcp (cloud-provider-gcp; or Workload Identity)"


@dataclass(frozen=True)
class CloudRegistry:
    provider: str  # "aws", "gcp", "azure"
    product: str  # "ECR", "GCR", "Artifact Registry", "ACR"
    credential_provider: str  # the kubelet credential provider plugin that replaces secrets
    plugin_binary: str  # its binary name, as a CredentialProviderConfig names it
    match_images: tuple[str, ...]
    cache_duration: str
    region: str | None = None


def cloud_registry(host: str) -> CloudRegistry | None:
    """Which cloud registry `host` is, or None for anything else."""
    host = host.lower()
    if m := _ECR.match(host):
        return CloudRegistry("aws", "ECR", "ecr-credential-provider (cloud-provider-aws)",
                             "ecr-credential-provider", _ECR_IMAGES, "12h", m.group("region"))
    if _GCR.match(host):
        return CloudRegistry("gcp", "GCR", _GCP_PROVIDER, "auth-provider-gcp", _GCP_IMAGES, "1m")
    if m := _ARTIFACT_REGISTRY.match(host):
        return CloudRegistry("gcp", "Artifact Registry", _GCP_PROVIDER, "auth-provider-gcp",
                             _GCP_IMAGES, "1m", m.group("location"))
    if _ACR.match(host):
        return CloudRegistry("azure", "ACR", "acr-credential-provider (cloud-provider-azure)",
                             "acr-credential-provider", _ACR_IMAGES, "10m")
    return None
