"""Held-out wordings: messages written by hand for this test, in the shapes the corpus taught
(tests/data/kubelet_messages.yaml), with every name, digest, address and wrapper changed.

The classifier is judged on real messages it has never seen, so a rule that only matched the
corpus's strings (one host, one digest, one runtime's wrapper) fails here. Each variant moves
what real messages vary in: the registry and repository, the digest, IPv4 vs IPv6 resolvers,
the runtime's wrapper (containerd 1.x / 2.x, CRI-O, dockerd), the kubelet's newer back-off
form and its log form with escaped quotes.
"""

from __future__ import annotations

import pytest

from bot.diagnosis.causes import Cause
from bot.diagnosis.classify import classify_text

DIGEST = "sha256:" + "0123456789abcdef" * 4


def _wrap(error: str, image: str = "quay.example.org/acme/api:4.2") -> list[tuple[str, str]]:
    """The same runtime error as the kubelet shows it: a Failed event, the waiting message of
    kubelet >= 1.32 (back-off with the error kept), and a kubelet log line (quotes escaped)."""
    event = f'Failed to pull image "{image}": {error}'
    back_off = f'Back-off pulling image "{image}": ErrImagePull: {error}'
    log = event.replace('"', '\\"')
    return [(event, "Failed"), (back_off, "ImagePullBackOff"), (log, "Failed")]


HELD_OUT: list[tuple[str, Cause, tuple[Cause, ...]]] = [
    # a manifest listed in an index is missing: other hosts, digests, a blob, CRI-O's wording
    (f"rpc error: code = NotFound desc = failed to pull and unpack image "
     f'"harbor.corp.example:8443/ml/trainer:2025.1": failed to copy: httpReadSeeker: failed '
     f"open: content at https://harbor.corp.example:8443/v2/ml/trainer/manifests/{DIGEST} not "
     "found: not found", Cause.IMAGE_INCOMPLETE, ()),
    (f'failed to pull and unpack image "ghcr.io/o/r:v1": failed to copy: httpReadSeeker: '
     f"failed open: content at https://ghcr.io/v2/o/r/blobs/{DIGEST}?ns=ghcr.io not found",
     Cause.IMAGE_INCOMPLETE, ()),
    (f"rpc error: code = Unknown desc = reading blob {DIGEST}: fetching blob: blob unknown: "
     "blob unknown to registry", Cause.IMAGE_INCOMPLETE, ()),
    # a reasonless 403 / Forbidden / denied to a manifest request
    ('rpc error: code = Unknown desc = failed to pull and unpack image "quay.io/a/b:1": failed '
     'to resolve reference "quay.io/a/b:1": unexpected status from HEAD request to '
     "https://quay.io/v2/a/b/manifests/1: 403 Forbidden", Cause.FORBIDDEN, (Cause.IP_BLOCKED,)),
    ('failed to resolve reference "public.ecr.aws/x/y:9": pulling from host public.ecr.aws '
     "failed with status code [manifests 9]: 403 Forbidden", Cause.FORBIDDEN,
     (Cause.IP_BLOCKED,)),
    ('Error response from daemon: Get "https://cr.example.net/v2/team/svc/manifests/latest": '
     "Forbidden", Cause.FORBIDDEN, (Cause.IP_BLOCKED,)),
    ('Error response from daemon: Head "https://ghcr.io/v2/some-org/tool/manifests/0.9": '
     "denied", Cause.FORBIDDEN, (Cause.IP_BLOCKED,)),
    (f"rpc error: code = Unknown desc = reading blob {DIGEST}: fetching blob: invalid status "
     "code from registry 403 (Forbidden)", Cause.FORBIDDEN, (Cause.IP_BLOCKED,)),
    # ... but a 403 on the token endpoint is the registry refusing anonymous pulls (as before)
    ("rpc error: code = Unknown desc = reading manifest 1.2 in quay.io/org/app: Requesting "
     "bearer token: invalid status code from registry 403 (Forbidden)", Cause.AUTH_REQUIRED,
     ()),
    # the front answers, not the registry: HTML and object-store XML, other wrappers
    ("error pulling image configuration: download failed after attempts=6: error parsing HTTP "
     "403 response body: invalid character '<' looking for beginning of value: "
     '"<!DOCTYPE html><html><head><title>403 Forbidden</title></head></html>"',
     Cause.IP_BLOCKED, (Cause.FORBIDDEN,)),
    ("failed to copy: httpReadSeeker: failed open: unexpected status code "
     "https://registry.example.com/v2/a/blobs/" + DIGEST + ": 403 Forbidden: "
     "<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>VPC endpoint policy"
     "</Message></Error>", Cause.IP_BLOCKED, (Cause.FORBIDDEN,)),
    ("rpc error: code = Unknown desc = initializing source docker://quay.io/org/app:3: "
     "reading manifest 3 in quay.io/org/app: denied: The region from which you are pulling "
     "has been geo-ip blocked.", Cause.IP_BLOCKED, ()),
    # EIO from the layer store, on other paths and operations
    ("failed to extract layer " + DIGEST + ": write /var/lib/containerd/io.containerd."
     "snapshotter.v1.overlayfs/snapshots/88/fs/usr/bin/python3.12: input/output error: unknown",
     Cause.NODE_DISK_ERROR, (Cause.DISK_FULL,)),
    ("writing blob: storing blob to file \"/var/tmp/storage123/1\": write /var/tmp/storage123/1:"
     " input/output error", Cause.NODE_DISK_ERROR, (Cause.DISK_FULL,)),
    # the resolver cannot be reached or fails: IPv4, IPv6, other transports
    ('failed to do request: Head "https://registry.example.com/v2/a/manifests/1": dial tcp: '
     "lookup registry.example.com on 10.96.0.10:53: dial udp 10.96.0.10:53: connect: network "
     "is unreachable", Cause.DNS_RESOLVER_UNREACHABLE, ()),
    ('Get "https://index.docker.io/v2/": dial tcp: lookup index.docker.io on [fd00::a]:53: read '
     "udp [fd00::1234]:40123->[fd00::a]:53: i/o timeout", Cause.DNS_RESOLVER_UNREACHABLE, ()),
    ('Head "https://r.example/v2/x/manifests/y": dial tcp: lookup r.example on 169.254.169.253:'
     "53: server misbehaving", Cause.DNS_RESOLVER_UNREACHABLE, (Cause.DNS_FAILURE,)),
    # ... while a name that does not exist stays a DNS failure (and may be a typo)
    ('Head "https://regsitry.example.com/v2/x/manifests/y": dial tcp: lookup '
     "regsitry.example.com on 10.0.0.2:53: no such host", Cause.DNS_FAILURE, ()),
    # the kubelet's own throttle
    ("pull QPS exceeded.", Cause.KUBELET_PULL_THROTTLED, ()),
    # Windows and proxies
    ('Get "https://mcr.microsoft.com/v2/": dial tcp 13.107.246.40:443: connectex: No connection '
     "could be made because the target machine actively refused it.", Cause.NETWORK_UNREACHABLE,
     ()),
    ('Head "https://registry.k8s.io/v2/pause/manifests/3.10": proxyconnect tcp: dial tcp '
     "10.20.30.40:3128: i/o timeout", Cause.NETWORK_UNREACHABLE, ()),
]


@pytest.mark.parametrize(("error", "cause", "alternatives"), HELD_OUT,
                         ids=[f"{i:02d}-{c.value}" for i, (_, c, _) in enumerate(HELD_OUT)])
def test_held_out_variants(error: str, cause: Cause, alternatives: tuple[Cause, ...]) -> None:
    for text, reason in [(error, "ErrImagePull"), *_wrap(error)]:
        found = classify_text(text, reason)
        assert found is not None, text
        assert (found.cause, found.alternatives) == (cause, alternatives), text
        assert found.phrase and len(found.phrase) <= 160


def test_httpreadseeker_wraps_other_errors_too() -> None:
    """containerd writes 'failed to copy: httpReadSeeker: failed open:' before any fetch error:
    only 'content at … not found' means a missing part; a DNS or 5xx error inside stays that."""
    dns = ('failed to copy: httpReadSeeker: failed open: failed to do request: Get '
           f'"https://h.example/v2/a/manifests/{DIGEST}": dial tcp: lookup h.example on '
           "10.0.0.2:53: no such host")
    outage = ("failed to copy: httpReadSeeker: failed open: unexpected status code "
              f"https://h.example/v2/a/blobs/{DIGEST}: 503 Service Unavailable")
    assert classify_text(dns, "ErrImagePull").cause is Cause.DNS_FAILURE  # type: ignore[union-attr]
    assert classify_text(outage, "ErrImagePull").cause is (  # type: ignore[union-attr]
        Cause.NETWORK_UNREACHABLE)


def test_a_reasoned_denial_is_not_ambiguous() -> None:
    """A registry that says why (a permission name, 'not authorized') leaves one reading."""
    text = ('Error response from daemon: Head "https://europe-docker.pkg.dev/v2/p/r/i/manifests/'
            '1": denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on '
            'resource "projects/p/locations/europe/repositories/r"')
    found = classify_text(text)
    assert found is not None and found.cause is Cause.FORBIDDEN and found.alternatives == ()


def test_words_in_the_image_name_trigger_nothing_new() -> None:
    """Repository words that are error words elsewhere (forbidden, denied, qps, blocked)."""
    image = "example.com/forbidden/denied/pull-qps-exceeded/geo-ip-blocked:1"
    text = (f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull '
            f'and unpack image "{image}": failed to resolve reference "{image}": {image}: not '
            "found")
    found = classify_text(text, "Failed")
    assert found is not None and found.cause is Cause.TAG_NOT_FOUND
