"""Plain words for each cause: a one-line summary and the why, from the field guide."""

from __future__ import annotations

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.imageref import ImageRef
from bot.diagnosis.markup import code_span, outside_span

EXPLANATIONS: dict[Cause, str] = {
    Cause.TAG_NOT_FOUND: (
        "The registry has the repository but no manifest for this tag: a typo (nginx:lates), a "
        "version that was never pushed (v3 when only v2.1 exists), a missing tag defaulting to "
        ":latest that the registry does not publish, or a tag CI cleaned up. Fix the image on the "
        "parent workload, not the pod."
    ),
    Cause.REPOSITORY_NOT_FOUND: (
        "The registry does not know this repository: a wrong path (swapped segments like "
        "myapp/myorg instead of myorg/myapp), a wrong registry host, or a repository that was "
        "deleted."
    ),
    Cause.AUTH_REQUIRED: (
        "The registry wants credentials and the kubelet had none that work. The kubelet pulls "
        "anonymously unless the pod (or its service account) names an imagePullSecret of type "
        "docker-registry for this registry in the pod's own namespace. Docker Hub answers a "
        "private repository without credentials with the misleading 'repository does not exist "
        "or may require docker login'."
    ),
    Cause.FORBIDDEN: (
        "The registry accepted the credentials but they lack permission to pull this repository "
        "(403). Grant the account read/pull access, or use credentials that have it."
    ),
    Cause.RATE_LIMITED: (
        "The registry is rate-limiting pulls (429 toomanyrequests, typically Docker Hub: 100 "
        "pulls per 6 hours per source IP anonymously, 200 per account authenticated). Nodes "
        "behind one NAT gateway share one anonymous quota. It clears when the window resets; "
        "authenticate pulls or add a pull-through cache so it does not return."
    ),
    Cause.DNS_FAILURE: (
        "The node could not resolve the registry host name: a typo in the registry host, or "
        "DNS on the node (not in the cluster's CoreDNS: the kubelet and runtime use the node's "
        "resolver)."
    ),
    Cause.NETWORK_UNREACHABLE: (
        "The node could not reach the registry (timeout, connection refused or reset) or the "
        "registry answered with a server error (500/502/503/504): a firewall, a missing proxy "
        "setting for containerd, or a registry outage. The kubelet keeps retrying, so a brief "
        "outage heals by itself."
    ),
    Cause.TLS_UNTRUSTED: (
        "The node does not trust the registry's TLS certificate (self-signed, private CA, "
        "expired or wrong name), or the registry speaks plain HTTP. containerd reads per-host "
        "trust from /etc/containerd/certs.d/<host>/hosts.toml; credentials in "
        "/root/.docker/config.json are not used by containerd."
    ),
    Cause.NEVER_PULL: (
        "imagePullPolicy is Never and the image is not on this node, so the kubelet will not "
        "pull it. Pre-load the image on every node or let the kubelet pull it."
    ),
    Cause.INVALID_IMAGE_NAME: (
        "The image string is not a valid reference (upper-case letters in the repository, a "
        "stray space or scheme, a bad tag), so the kubelet never contacts a registry."
    ),
    Cause.DISK_FULL: (
        "The node ran out of disk while unpacking the image (no space left on device). Free "
        "space under /var/lib/containerd, prune unused images, or move the pod to another node."
    ),
    Cause.PLATFORM_MISMATCH: (
        "The image has no variant for this node's OS/architecture (for example an amd64-only "
        "image on an arm64 node). Build a multi-arch image or schedule onto matching nodes."
    ),
    Cause.UNKNOWN: (
        "The kubelet's messages do not say why the pull failed (events expire after about an "
        "hour, leaving only 'Back-off pulling image'). Pull the image from the node with crictl "
        "to see the runtime's own error."
    ),
    Cause.IMAGE_INCOMPLETE: (
        "The tag resolved, but the registry does not have everything it lists: a multi-arch "
        "index names a per-platform manifest (or a manifest names a layer) that answers 404. "
        "A push that stopped half-way, or a cleanup policy that deleted 'untagged' manifests "
        "an index still uses (GHCR and Harbor retention rules do this), leaves such an image. "
        "Re-push the image, or point at a digest whose parts all exist."
    ),
    Cause.IP_BLOCKED: (
        "The registry — or a CDN, WAF or geo-IP filter in front of it, or the object store "
        "it sends layer downloads to — refuses requests from the node's network before "
        "credentials matter: registry.k8s.io's backends and Quay block some hosting ranges "
        "and regions, a web front answers with an HTML 403 page instead of registry JSON, and "
        "S3 behind a VPC endpoint policy answers with its XML AccessDenied. Pull through a "
        "mirror or a pull-through cache that is let through, or fix the egress path (NAT "
        "address, endpoint policy)."
    ),
    Cause.NODE_DISK_ERROR: (
        "The node's layer store failed a read or write with an I/O error (EIO): the disk or "
        "its filesystem is failing, or the storage under it (a thin pool, an LVM volume, a "
        "loop-backed file) filled up — those answer EIO rather than 'no space left'. Check "
        "the kernel log and the space under /var/lib/containerd, and move the pod to another "
        "node while this one is looked at."
    ),
    Cause.DNS_RESOLVER_UNREACHABLE: (
        "The node could not ask its DNS resolver at all (the query to port 53 was refused, "
        "timed out or had no route), or the resolver answered that it could not answer "
        "(server misbehaving, SERVFAIL). The registry's name is probably fine: the kubelet "
        "and the runtime use the node's /etc/resolv.conf, not CoreDNS, so an IPv6-only node "
        "given an IPv4 resolver, a resolver that is down, or the cluster DNS's service IP "
        "used from the host all look like this. It clears once the resolver answers."
    ),
    Cause.KUBELET_PULL_THROTTLED: (
        "The kubelet refused the pull itself, before asking the runtime or any registry: it "
        "allows registryPullQPS pulls per second per node (default 5, bursts of "
        "registryBurst, default 10), and a node starting many pods at once (a scale-up, a "
        "DaemonSet roll-out, a crash-looping pod with imagePullPolicy Always) goes over. The "
        "kubelet retries on its back-off, so it clears by itself; raise the limits if it "
        "keeps coming back."
    ),
}

#: How to tell each cause from the one the diagnosis picked, when the kubelet's words could
#: mean either (`Alternative.how_to_tell`); keyed by the other reading.
HOW_TO_TELL: dict[Cause, str] = {
    Cause.IP_BLOCKED: (
        "the registry (or a CDN in front of it) blocks the node's address or region: the "
        "same pull works from another network, and a manifest HEAD from the node answers 403 "
        "even without credentials"
    ),
    Cause.FORBIDDEN: (
        "the credentials lack pull permission and the registry's front hides it behind a "
        "page: the same pull with the same credentials fails from another network too"
    ),
    Cause.AUTH_REQUIRED: (
        "the image is private and the registry wants credentials: a pull with credentials "
        "that may read the repository works from the node"
    ),
    Cause.REPOSITORY_NOT_FOUND: (
        "the repository path does not exist (Docker Hub words a missing repository and a "
        "private one alike): look it up on the registry's web page while logged in"
    ),
    Cause.DISK_FULL: (
        "the storage under the layer store filled up (a thin pool or LVM volume answers "
        "EIO, not 'no space left'): df and lvs show it full, while a failing disk logs I/O "
        "errors in dmesg"
    ),
    Cause.DNS_FAILURE: (
        "the registry domain's own DNS is broken: nslookup of the registry host fails the "
        "same way from the node while other names resolve"
    ),
}


def alternatives_line(alternatives: list[tuple[Cause, str]]) -> str:
    """The other readings as one sentence for the summary ("" without any)."""
    if not alternatives:
        return ""
    return " Or: " + "; or: ".join(why for _, why in alternatives) + "."



def summarize(cause: Cause, image: str, ref: ImageRef | None, *,
              repository_uncertain: bool = False) -> str:
    """One line a person reads first in the channel.

    `repository_uncertain`: the runtime said only "not found" (containerd words a missing
    repository and a missing tag alike), so the line says both are possible. Values in code
    spans go through `code_span`, and the raw image elsewhere through `outside_span`, so a
    backtick in a hostile (unparsable) image cannot open or end a span. A parsed reference's
    parts follow the reference grammar and never hold one.
    """
    image = outside_span(image)
    registry = ref.registry if ref else "the registry"
    repo = ref.name if ref else image
    match cause:
        case Cause.TAG_NOT_FOUND:
            if ref and ref.digest:
                return f"Digest {ref.digest[:19]}… does not exist in {repo}."
            tag = ref.effective_tag if ref else "?"
            implicit = " (no tag given, so :latest)" if ref and ref.implicit_latest else ""
            if repository_uncertain:
                return (f"Tag {code_span(tag)}{implicit} was not found in {repo} — or the "
                        "repository path itself is wrong (the runtime reports both as "
                        "'not found').")
            return f"Tag {code_span(tag)}{implicit} does not exist in {repo}."
        case Cause.REPOSITORY_NOT_FOUND:
            return f"Repository {repo} does not exist on {registry} (wrong path or host)."
        case Cause.AUTH_REQUIRED:
            return f"{registry} requires credentials the pod does not have for {repo}."
        case Cause.FORBIDDEN:
            return f"The pull credentials are valid but not allowed to pull {repo} (403)."
        case Cause.RATE_LIMITED:
            return f"{registry} is rate-limiting pulls (429); this clears when the window resets."
        case Cause.DNS_FAILURE:
            return f"The node cannot resolve the registry host {registry}."
        case Cause.NETWORK_UNREACHABLE:
            return (f"The node cannot get the image from {registry} (timeout, refused, or the "
                    "registry failing with 5xx); retries continue.")
        case Cause.TLS_UNTRUSTED:
            return f"The node does not trust the TLS certificate of {registry}."
        case Cause.NEVER_PULL:
            return f"imagePullPolicy is Never and {image} is not on the node."
        case Cause.INVALID_IMAGE_NAME:
            return f"{code_span(image)} is not a valid image reference."
        case Cause.DISK_FULL:
            return "The node ran out of disk space while pulling the image."
        case Cause.PLATFORM_MISMATCH:
            return f"{image} has no variant for the node's OS/architecture."
        case Cause.IMAGE_INCOMPLETE:
            return (f"{image} resolves, but {registry} is missing a manifest or layer the "
                    "image lists (a broken push or an over-eager cleanup).")
        case Cause.IP_BLOCKED:
            return (f"{registry} (or a CDN, firewall or store in front of it) refuses "
                    "requests from the node's network (403).")
        case Cause.NODE_DISK_ERROR:
            return "The node's disk failed a read or write (input/output error) while pulling."
        case Cause.KUBELET_PULL_THROTTLED:
            return ("The kubelet throttled its own pulls on this node (pull QPS exceeded); the "
                    "next retry usually gets through.")
        case Cause.DNS_RESOLVER_UNREACHABLE:
            return (f"The node's DNS resolver could not be reached (or failed) to look up "
                    f"{registry}; the host name itself may be fine.")
        case _:
            return f"The pull of {image} keeps failing and the kubelet does not say why."


FINDING_TEXT: dict[Finding, str] = {
    Finding.NO_PULL_SECRET: "the pod has no imagePullSecrets, so the kubelet pulls anonymously",
    Finding.PULL_SECRET_MISSING: (
        "the pod references a pull secret that does not exist in its namespace (secrets are "
        "namespace-scoped)"
    ),
    Finding.PULL_SECRET_WRONG_REGISTRY: (
        "the pod's pull secret has no credentials for this image's registry (check the "
        "--docker-server value; Docker Hub wants https://index.docker.io/v1/)"
    ),
    Finding.PULL_SECRET_NOT_REFERENCED: (
        "a pull secret for this registry exists in the namespace but neither the pod nor its "
        "service account uses it"
    ),
    Finding.CLOUD_REGISTRY_CREDENTIALS: (
        "cloud registry: static pull secrets expire; use the kubelet credential provider"
    ),
    Finding.ECR_TOKEN_EXPIRED: "the ECR pull secret is older than 12 hours: its token has expired",
    Finding.IMPLICIT_LATEST_TAG: "no tag given, so the runtime asks for :latest",
    Finding.POLICY_NEVER: (
        "imagePullPolicy is Never: the kubelet only uses images already on the node"
    ),
    Finding.ENSURE_SECRET_PULLED_IMAGES: (
        "Kubernetes ≥ 1.33 with IfNotPresent and no pull secret: with the "
        "KubeletEnsureSecretPulledImages gate on, cached private images need credentials again"
    ),
    Finding.NODE_DISK_PRESSURE: "the node reports DiskPressure",
    Finding.SECRETS_NOT_READ: (
        "the pull-secret checks were skipped: this install does not read secrets "
        "(READ_SECRETS=false, the no-secrets profile), so whether the pod's pull secrets "
        "exist, name this registry or have expired was not looked at, and the registry was "
        "not asked with them"
    ),
    Finding.TAG_SUGGESTION: "the registry has a close tag that exists (in the first fix)",
    Finding.SWAPPED_PATH: (
        "the repository path with two segments swapped exists (in the first fix)"
    ),
    Finding.REGISTRY_HOST_TYPO: (
        "a known registry host with a similar name serves this image (in the first fix)"
    ),
    Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG: (
        "the node runs containerd or CRI-O and the pod has no pull secret: credentials in the "
        "node's /root/.docker/config.json are not used for the kubelet's pulls since "
        "dockershim's removal (Kubernetes 1.24); use imagePullSecrets, or the runtime's own "
        "node-wide configuration (containerd's hosts.toml)"
    ),
    Finding.PROXY_SUSPECTED: (
        "the same node pulls from other registries but cannot reach this external one: the "
        "runtime's proxy settings (HTTPS_PROXY / NO_PROXY in its service unit) are the likely "
        "gap"
    ),
}
