"""Kubernetes object-name rules, checked before any API call (shared by the CLI and the
remediation actions).

The patterns are the apiserver's (k8s.io/apimachinery validation): namespaces and container
names are DNS-1123 labels, most object names DNS-1123 subdomains.
"""

from __future__ import annotations

import re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
#: (checked with `fullmatch`: `$` also matches before a trailing newline, so `match` let
#: "prod\n" pass as a name)
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253


def is_dns1123_label(value: str) -> bool:
    """Lower-case letters, digits and '-', starting and ending alphanumeric, at most 63."""
    return len(value) <= DNS1123_LABEL_MAX and DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    """Dot-separated DNS-1123 labels, at most 253 characters."""
    return (len(value) <= DNS1123_SUBDOMAIN_MAX
            and DNS1123_SUBDOMAIN.fullmatch(value) is not None)


class InvalidName(ValueError):
    """A name Kubernetes would reject; the message says which rule it breaks."""


def parse_namespaced(value: str, what: str = "POD") -> tuple[str, str]:
    """`NAMESPACE/NAME`, validated as Kubernetes validates them, before any API call."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise InvalidName(f"expected NAMESPACE/{what}, got {value!r}")
    if not is_dns1123_label(namespace):
        raise InvalidName(f"namespace {namespace!r} is not a valid DNS-1123 label "
                          "(lower-case letters, digits and '-', at most 63 characters)")
    if not is_dns1123_subdomain(name):
        raise InvalidName(f"{what.lower()} name {name!r} is not a valid DNS-1123 subdomain "
                          "(lower-case letters, digits, '-' and '.', at most 253 characters)")
    return namespace, name
