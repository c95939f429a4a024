"""The closed vocabularies of the diagnosis: causes and findings, and the one table of what
each cause means to the rest of the bot (`CAUSES`).

The vocabularies are part of the JSON contract (README, "JSON output"), so the string values
never change; new members may be added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final


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
    #: the registry lacks part of an image it lists: a manifest named by the tag's index (or a
    #: layer named by a manifest) answers 404 (containerd: `content at …/manifests/sha256:…
    #: not found`)
    IMAGE_INCOMPLETE = "image_incomplete"
    #: the registry, or a CDN / firewall in front of it, refuses the node's address or region
    #: (a bare 403 to a manifest HEAD, an HTML 403 page instead of registry JSON, "geo-ip
    #: blocked")
    IP_BLOCKED = "ip_blocked"
    #: the node's layer store failed a read or write (`input/output error`): a failing disk,
    #: or a thin pool / volume that filled up underneath the filesystem
    NODE_DISK_ERROR = "node_disk_error"
    #: the node's DNS resolver could not be asked (`lookup H on R:53: dial udp R:53: connect:
    #: network is unreachable`, `read udp …:53: i/o timeout`) or failed (`server
    #: misbehaving`): the registry's name may well be right
    DNS_RESOLVER_UNREACHABLE = "dns_resolver_unreachable"
    #: the kubelet's own pull throttle (registryPullQPS / registryBurst) refused the pull
    #: before any registry was asked: `pull QPS exceeded`
    KUBELET_PULL_THROTTLED = "kubelet_pull_throttled"


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
    #: the install reads no secrets (READ_SECRETS=false): the pull-secret checks were skipped
    SECRETS_NOT_READ = "secrets_not_read"
    # from asking the registry (bot/registry/investigator.py)
    TAG_SUGGESTION = "tag_suggestion"
    SWAPPED_PATH = "swapped_path"
    REGISTRY_HOST_TYPO = "registry_host_typo"
    # what the events do not tell (issue 12)
    #: containerd / CRI-O node, credentials refused, no pull secret: the node's
    #: /root/.docker/config.json is not read since dockershim's removal
    NODE_RUNTIME_IGNORES_DOCKER_CONFIG = "node_runtime_ignores_docker_config"
    #: a network cause for an external registry while the same node pulls from other external
    #: registries: the runtime's proxy settings (HTTPS_PROXY / NO_PROXY) are the likely gap
    PROXY_SUSPECTED = "proxy_suspected"


@dataclass(frozen=True)
class CauseInfo:
    """Everything the bot knows about a cause that is not a text: one row of `CAUSES`.

    Every layer that decides something per cause (the engine, the incident scope, the registry
    probe, the Slack alert) reads its answer here, so adding a cause is one row in this file;
    per-cause texts and fix builders stay with their code (bot/diagnosis/explain.py and
    fixes.py) and a test checks that they cover every cause.
    """

    #: The alert's headline, e.g. "Image tag not found".
    title: str
    #: It can clear on its own on the kubelet's next retry (a rate-limit window resets, a
    #: registry comes back); otherwise it stays broken until a person changes something.
    transient: bool = False
    #: It hits whoever pulls from the registry (or the path to it), not one workload: incidents
    #: are grouped per registry host, so one outage is one alert.
    shared_scope: bool = False
    #: Asking the registry (with the pod's credentials) can confirm, refine or recover it.
    probe_worthy: bool = False
    #: The pod's credentials may be why, so a person is offered to verify the pull secret;
    #: this includes a missing repository, since registries hide private repositories from
    #: callers without access.
    credentials_suspect: bool = False
    #: The registry refused the credentials (or their absence) outright: the engine examines
    #: the pod's pull secrets and reports findings about them, and the cause's own fixes are
    #: about secrets already.
    credentials_refused: bool = False
    #: Decided on the node (its network, quota, disk, platform, pull policy, the name itself):
    #: the bot's own view of the registry must not override the kubelet's text.
    node_side: bool = False
    #: The kubelet contacts a registry at all: there is a pull back-off to estimate and a
    #: digest worth pinning. False when it refuses before pulling (policy Never, a bad name).
    kubelet_pulls: bool = True


#: One row per cause (a test checks that none is missing).
CAUSES: Final[Mapping[Cause, CauseInfo]] = MappingProxyType({
    Cause.TAG_NOT_FOUND: CauseInfo(
        "Image tag not found", probe_worthy=True),
    Cause.REPOSITORY_NOT_FOUND: CauseInfo(
        "Image repository not found", probe_worthy=True, credentials_suspect=True),
    Cause.AUTH_REQUIRED: CauseInfo(
        "Registry credentials missing or wrong", probe_worthy=True, credentials_suspect=True,
        credentials_refused=True),
    Cause.FORBIDDEN: CauseInfo(
        "Registry refuses access (403)", probe_worthy=True, credentials_suspect=True,
        credentials_refused=True),
    Cause.RATE_LIMITED: CauseInfo(
        "Registry rate limit (429)", transient=True, shared_scope=True, node_side=True),
    Cause.DNS_FAILURE: CauseInfo(
        "Registry host does not resolve", shared_scope=True, probe_worthy=True,
        node_side=True),
    Cause.NETWORK_UNREACHABLE: CauseInfo(
        "Registry unreachable", transient=True, shared_scope=True, node_side=True),
    Cause.TLS_UNTRUSTED: CauseInfo(
        "Registry TLS certificate not trusted", shared_scope=True, node_side=True),
    Cause.NEVER_PULL: CauseInfo(
        "imagePullPolicy: Never and image not on node", node_side=True, kubelet_pulls=False),
    Cause.INVALID_IMAGE_NAME: CauseInfo(
        "Invalid image name", node_side=True, kubelet_pulls=False),
    Cause.DISK_FULL: CauseInfo(
        "Node disk full while pulling", node_side=True),
    Cause.PLATFORM_MISMATCH: CauseInfo(
        "No image for the node's platform", node_side=True),
    Cause.UNKNOWN: CauseInfo(
        "Image pull failing (cause unknown)", probe_worthy=True),
    # Not probe-worthy: the bot's HEAD of the tag succeeds (the index is there); the part
    # that is missing is one platform's manifest or a layer.
    Cause.IMAGE_INCOMPLETE: CauseInfo(
        "Image incomplete in the registry (a listed manifest or layer is missing)"),
    # Shared: every pull from that registry through the same address is refused. Node-side:
    # the bot's own address may well be let through, so its probe must not overrule.
    Cause.IP_BLOCKED: CauseInfo(
        "Registry refuses the node's address (403 without a reason)", shared_scope=True,
        node_side=True),
    Cause.NODE_DISK_ERROR: CauseInfo(
        "Node disk I/O error while pulling", node_side=True),
    # Transient like an unreachable registry: the resolver coming back heals it on retry.
    Cause.DNS_RESOLVER_UNREACHABLE: CauseInfo(
        "Node's DNS resolver unreachable or failing", transient=True, shared_scope=True,
        node_side=True),
    # The kubelet refuses before asking any registry (no digest to pin, nothing to probe);
    # it clears on the next retry, and hits every pod that starts on a busy node at once.
    Cause.KUBELET_PULL_THROTTLED: CauseInfo(
        "Kubelet throttled its own pulls (pull QPS exceeded)", transient=True,
        shared_scope=True, node_side=True),
})
