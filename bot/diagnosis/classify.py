"""Turn what the kubelet says about a failed image pull into a :class:`Cause`.

The kubelet does not interpret pull errors: it wraps whatever the container runtime
(containerd, CRI-O, or dockerd behind dockershim / cri-dockerd) returned and puts it in an
event (``Failed to pull image "x": <error>``) or in the container's waiting message. The cause
is therefore only recoverable from the wording of the runtime and of the registry behind it,
and that wording differs per runtime and per registry. This module is the one place that knows
those wordings; everything here is a pure function over strings so it can be tested against a
corpus of real messages (``tests/data/kubelet_messages.yaml``).

Rules are tried in a fixed order because one message often carries several symptoms, e.g.
containerd's ``failed to resolve reference ...: 401 Unauthorized`` (auth, not "not found"),
``dial tcp: lookup X: no such host`` (DNS, not generic network) or
``no match for platform in manifest: not found`` (platform, not a missing tag). The most
specific / most actionable explanation wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from bot.diagnosis.causes import Cause

__all__ = [
    "TextClass",
    "classify_text",
    "failed_pull_image",
    "is_crash_loop",
    "pull_back_off_image",
]

#: Longest evidence phrase we hand back; registries sometimes return whole HTML pages.
_MAX_PHRASE: Final = 160

_FLAGS: Final = re.IGNORECASE


@dataclass(frozen=True)
class TextClass:
    """What the pull-error text says, independent of the pod's spec or secrets.

    ``cause`` is the single best reading of the text. ``ambiguous_denied`` is set for the
    Docker Hub / dockerd / CRI-O "access denied" shapes where the registry deliberately does
    not say whether the repository is missing or the credentials are: the caller must then use
    the pod's context (pull secrets, image name) to decide which to tell the user. ``phrase``
    is the fragment of the text that decided the cause, quoted back to the user as evidence.

    ``alternatives`` are the other causes the same words can truly mean (a bare ``403
    Forbidden`` to a manifest HEAD carries no body: the credentials may lack permission, or
    the registry's front blocks the node's address). The caller may pick among ``cause`` and
    them with the pod's context, and tells the person the readings it did not pick, with how
    to tell them apart, rather than choosing silently.
    """

    cause: Cause
    ambiguous_denied: bool
    phrase: str
    alternatives: tuple[Cause, ...] = ()


def _rx(pattern: str) -> re.Pattern[str]:
    """Compile once at import time; every rule is case-insensitive because runtimes disagree
    on capitalisation (``Error reading manifest`` vs ``reading manifest``, ``DENIED`` vs
    ``denied``)."""
    return re.compile(pattern, _FLAGS)


# --- shapes that carry no cause at all -------------------------------------------------------

# 'Back-off pulling image "x"' optionally followed by the waiting reason and the last pull error
# (kubelet >= 1.32 keeps the error: 'Back-off pulling image "x": ErrImagePull: <error>').
# Kubelet log lines escape the quotes (\"x\"), so accept an optional backslash.
_BACK_OFF_RX: Final = re.compile(
    r'Back-off pulling image \\?"(?P<image>[^"\\]+)\\?"(?P<rest>.*)', _FLAGS | re.DOTALL
)
_BACK_OFF_SUFFIX_RX: Final = re.compile(
    r"^\s*:\s*(?:(?:ErrImagePull|ImagePullBackOff)\s*:\s*)?(?P<err>.*)", _FLAGS | re.DOTALL
)

_CRASH_LOOP_RX: Final = _rx(r"Back-off(?: \S+)? restarting failed container|\bCrashLoopBackOff\b")

# Bare status lines that only name the state, never the reason.
_NO_CAUSE_RX: Final = _rx(
    r"^\s*(?:"
    r"Error:\s*(?:ErrImagePull|ImagePullBackOff)"
    r"|(?:Pulling|pulling) image \\?\"[^\"\\]*\\?\""
    r"|Successfully pulled image\b.*"
    r"|Container image \\?\"[^\"\\]*\\?\" already present on machine"
    r")\s*\.?\s*$"
)

# --- where the image name is ----------------------------------------------------------------

_FAILED_PULL_IMAGE_RX: Final = _rx(
    r"(?:Failed to pull image|Failed to inspect image|Failed to apply default image tag)"
    r' \\?"(?P<image>[^"\\]*)\\?"'
    r'|Container image \\?"(?P<never>[^"\\]*)\\?" is not present with pull policy of Never'
)

# Leading 'Failed to pull image "x": ' prefix: dropped before classifying so that the evidence we
# quote for an unknown error is the runtime's error, not the kubelet's wrapper. (The image name
# cannot trigger a rule anyway: runtimes repeat it further in, so every rule that could match a
# bare word of an image reference is anchored to punctuation or is case-sensitive.)
_FAILED_PULL_PREFIX_RX: Final = _rx(r'^\s*Failed to (?:pull|inspect) image \\?"[^"\\]*\\?"\s*:?\s*')

# Text that is evidently a pull failure even if no rule below explains it -> Cause.UNKNOWN.
_PULL_FAILURE_RX: Final = _rx(
    r"Failed to (?:pull|inspect) image"
    r"|failed to pull and unpack image"
    r"|failed to resolve (?:reference|image)"
    r"|(?-i:\bPullImage\b)"
    r"|pulling image\s*:"
    r"|error pulling image"
    r"|rpc error"
    r"|Error response from daemon"
    r"|initializing source"
    r"|pinging (?:container|docker) registry"
    r"|reading manifest"
    r"|Error determining manifest MIME type"
    r"|(?-i:\bSignatureValidationFailed\b)"
    r"|failed to (?:copy|extract layer|register layer)"
)

# Reasons that are themselves a cause, whatever (if anything) the text says.
_REASON_CAUSES: Final[dict[str, Cause]] = {
    "errimageneverpull": Cause.NEVER_PULL,
    "invalidimagename": Cause.INVALID_IMAGE_NAME,
}
# Reasons whose message is the raw runtime error, so any text under them is a pull failure.
_PULL_ERROR_REASONS: Final = frozenset({"errimagepull", "signaturevalidationfailed"})

# --- the rules, in priority order -----------------------------------------------------------

class _Rule(NamedTuple):
    """One shape: the cause it means, and the other causes it can truly mean as well."""

    cause: Cause
    rx: re.Pattern[str]
    alternatives: tuple[Cause, ...] = ()

# Local, definitive conditions first: no registry was (successfully) involved.
_LOCAL_RULES: Final[tuple[_Rule, ...]] = (
    _Rule(
        Cause.NEVER_PULL,
        _rx(r"is not present with pull policy of Never|(?-i:\bErrImageNeverPull\b)"),
    ),
    # Two rules so that the parser's verdict is quoted in preference to the reference itself.
    _Rule(
        Cause.INVALID_IMAGE_NAME,
        _rx(r"invalid reference format(?:: repository name must be lowercase)?"),
    ),
    _Rule(
        Cause.INVALID_IMAGE_NAME,
        _rx(
            r"couldn't parse image (?:reference|name) \\?\"[^\"\\]*\\?\"|(?-i:\bInvalidImageName\b)"
        ),
    ),
    _Rule(Cause.DISK_FULL, _rx(r"no space left on device|disk quota exceeded")),
    # The kubelet's own limiter (registryPullQPS), before any runtime or registry is asked.
    _Rule(Cause.KUBELET_PULL_THROTTLED, _rx(r"\bpull QPS exceeded")),
    # EIO from the layer store: the kernel's word for a device (or a thin pool, LVM volume,
    # overlay backing file) that failed a read or write. A thin pool that filled up answers
    # EIO too, not ENOSPC, so both readings are said. Only local syscalls return EIO; the
    # network's failures have their own words. The operation and path are quoted with it.
    _Rule(
        Cause.NODE_DISK_ERROR,
        _rx(r"(?:(?:write|open|mkdir|read|rename|remove|symlink|link|lchown|chmod|sync|mount)"
            r" [^\s:\"]+: )?input/output error"),
        (Cause.DISK_FULL,),
    ),
    # Before tag_not_found: containerd ends this with ": not found".
    _Rule(
        Cause.PLATFORM_MISMATCH,
        _rx(
            r"no match for (?:current )?platform\b[^:\"\n]*?in manifest"
            # dockerd on Windows names the OS build too: 'windows/amd64 10.0.17763'
            r"|no matching manifest for \S+(?: [\d.]+)? in the manifest list entries"
            r"|no image found in manifest list for architecture [^,\"]*"
            r"|no supported platform found in manifest list"
            r"|image operating system \\?\"\w+\\?\" cannot be used on this platform"
        ),
    ),
    _Rule(
        Cause.RATE_LIMITED,
        _rx(
            r"\btoomanyrequests(?::[^.\"\n]*|(?=\"))"
            r"|\b429 Too Many Requests"
            r"|\bStatus 429\b"
            r"|pull rate limit"
        ),
    ),
    # Before network: a TLS verification failure can be wrapped in a "dial tcp" context, and
    # "TLS handshake timeout" (a network symptom) is deliberately not matched here.
    _Rule(
        Cause.TLS_UNTRUSTED,
        _rx(
            r"(?:tls: failed to verify certificate: )?x509: [^\"\n,;(]*"
            r"|server gave HTTP response to HTTPS client"
            r"|tls: first record does not look like a TLS handshake"
            r"|remote error: tls: certificate required"
        ),
    ),
)

# Access problems. Ambiguous Docker-Hub-style denials first: they contain words ("denied",
# "authorization failed", "repository does not exist") that the other rules would take at face
# value.
_AMBIGUOUS_DENIED_RX: Final = _rx(
    r"pull access denied[^\n]{0,200}?may require (?:'docker login'|authorization)"
    r"|pull access denied"
    r"|repository \S+ not found: does not exist or no pull access"
    r"|denied: requested access to the resource is denied"
    r"|insufficient_scope: (?:authorization failed)?"
)
# ECR (and Nexus) say why the credentials failed: none were sent at all, or ECR's 12-hour
# token was sent after it expired. Either way the registry did say why: not ambiguous.
_CREDENTIALS_VERDICT_RX: Final = _rx(
    r"no basic auth credentials|Your authorization token has expired"
)
# GCR / Artifact Registry put their own verdict after dockerd's "pull access denied" wrapper:
# the credentials were read and lack permission. That is not ambiguous either.
_EXPLICIT_FORBIDDEN_RX: Final = _rx(
    r"denied: Permission denied for \\?\"[^\"\\]*\\?\""
    r"|denied: Permission \\?\"[^\"\\]*\\?\" denied"
    r"|denied: Caller does not have permission"
)

_ACCESS_RULES: Final[tuple[_Rule, ...]] = (
    # A registry that refuses to hand out even an anonymous token (403 on the token endpoint,
    # GCR/Artifact Registry "Unauthenticated request") will not serve anonymous pulls:
    # credentials are missing, which is auth_required even though the status is 403.
    _Rule(
        Cause.AUTH_REQUIRED,
        _rx(
            # (a pasted event may be wrapped over lines, so the status can sit on the next one)
            r"failed to fetch anonymous token:\s[^\"]{0,400}?\b403\b(?: Forbidden)?"
            r"|Requesting bear(?:er)? token: invalid status code from registry 403"
            r"(?: \(Forbidden\))?"
            r"|Unauthenticated request[^\"\n]*"
        ),
    ),
    # The registry's front (a CDN, a WAF, a geo-IP filter) answered, not the registry: it
    # says so in words, or it sends an HTML page where the registry API sends JSON. Read as
    # an address block first; a registry that hides a permission error behind an HTML page
    # is the other reading.
    _Rule(
        Cause.IP_BLOCKED,
        _rx(
            r"(?:The region from which you are pulling has been )?geo-?ip blocked"
            r"|you have been blocked"
            r"|(?:your|this) (?:IP|IP address|client IP|region|country) (?:address )?"
            r"(?:has been |is )(?:blocked|banned|denied)"
        ),
    ),
    _Rule(
        Cause.IP_BLOCKED,
        _rx(
            r"error parsing HTTP 403 response body: invalid character '<' looking for beginning"
            r" of value"
            r"|<title>\s*403 Forbidden\s*</title>"
            # an object store's XML error (S3, GCS) where the registry redirected the blob
            # download: a bucket or VPC-endpoint policy refusing this network
            r"|<Code>AccessDenied</Code>(?:<Message>[^<]*</Message>)?"
            r"|Your client does not have permission to get URL"
        ),
        (Cause.FORBIDDEN,),
    ),
    # A 403 with no reason to a manifest (or blob) request: a HEAD response has no body, so
    # the registry could not say why. Credentials without pull permission, or a front that
    # blocks the node's address (registry.k8s.io's backends, Quay's geo-IP filter): both are
    # said, and the caller picks the first with the pod's credentials in mind.
    _Rule(
        Cause.FORBIDDEN,
        _rx(
            r"unexpected status from HEAD request to \S+: 403(?: Forbidden)?"
            r"|failed with status code \[(?:manifests|blobs) [^\]]+\]: 403(?: Forbidden)?"
            r"|(?:Head|Get) \\?\"?https?://[^\s\"\\]+\\?\"?: (?:Forbidden|denied(?:: denied)?)"
            r"(?![:\w])"
            r"|invalid status code from registry 403(?: \(Forbidden\))?"
            r"|StatusCode: 403(?:, \\?\"?(?:<html|Forbidden)[^\n]{0,40})?"
        ),
        (Cause.IP_BLOCKED,),
    ),
    _Rule(
        Cause.FORBIDDEN,
        _rx(
            r"\b403\s*\(?Forbidden\)?"
            r"|denied: Permission \\?\"[^\"\\]*\\?\" denied"
            r"|denied: Permission denied"
            r"|denied: Caller does not have permission"
            r"|denied: [^\n\"]{0,120}?not authorized"
        ),
    ),
    _Rule(
        Cause.AUTH_REQUIRED,
        _rx(
            r"\b401\s*\(?Unauthorized\)?"
            r"|no basic auth credentials"
            r"|Your authorization token has expired"
            r"|unauthorized: (?:authentication required|incorrect username or password"
            r"|access to the requested resource is not authorized)"
            r"|invalid username/password"
            r"|authorization failed"
            r"|authentication required"
            r"|(?:^|: )unauthorized\b(?![/.:\-]\w)"
        ),
    ),
)

_NOT_FOUND_RULES: Final[tuple[_Rule, ...]] = (
    # Before tag_not_found: the tag resolved (its index is there) but fetching a manifest the
    # index lists, or a layer a manifest lists, answered 404. containerd names the content's
    # URL; containers/image (CRI-O) names the digest it was reading.
    _Rule(
        Cause.IMAGE_INCOMPLETE,
        _rx(
            r"content at \S+?/(?:manifests|blobs)/sha256:[0-9a-f]{6,}\S* not found"
            r"|failed open: content at \S+ not found"
            r"|could not fetch content descriptor sha256:[0-9a-f]{6,}[^\n]{0,120}? from remote:"
            r" not found"
            r"|(?:reading|fetching) blob sha256:[0-9a-f]{6,}[^\n]{0,80}?"
            r"(?:404 \(?Not Found\)?|blob unknown)"
            r"|(?-i:\bBLOB_UNKNOWN\b)|blob unknown(?: to registry)?"
        ),
    ),
    # Before tag_not_found: ECR says "repository X not found: name unknown".
    _Rule(
        Cause.REPOSITORY_NOT_FOUND,
        _rx(
            r"name unknown(?:: [^\"\n]*)?"
            r"|(?-i:\bNAME_UNKNOWN\b)"
            r"|repository name not known to registry"
            r"|repository (?:with name \S+ )?does not exist"
        ),
    ),
    _Rule(
        Cause.TAG_NOT_FOUND,
        _rx(
            r"manifest for \S+ not found(?:: manifest unknown)?"
            r"|manifest unknown"
            r"|(?-i:\bMANIFEST_UNKNOWN\b)"
            # containerd: 'failed to resolve reference "R": R: not found'
            r"|\\?\":\s*[^\s\"\\]+:\s*not found"
            # crictl / ctr: 'failed to resolve image: R: not found'
            r"|failed to resolve (?:reference|image):\s*[^\s\"\\]+:\s*not found"
            # containerd 2.x: 'pulling from host H failed with status code [manifests T]: 404'
            r"|failed with status code \[manifests [^\]]+\]: 404 Not Found"
            r"|Tag \S+ not found in repository \S+"
            r"|NOT_FOUND: artifact \S+ not found"
        ),
    ),
)

_CONNECTIVITY_RULES: Final[tuple[_Rule, ...]] = (
    # Before dns_failure: the lookup names the resolver ("on R:53") and the step that failed
    # is the transport to it, not the answer: the resolver cannot be reached (an IPv6-only
    # node given an IPv4 resolver, the cluster DNS's service IP used from the host, a
    # firewall on port 53). The registry's name may be right, so no host-typo hunt.
    _Rule(
        Cause.DNS_RESOLVER_UNREACHABLE,
        _rx(
            r"lookup [^\s:]+ on \S+?:\s*(?:(?:dial|read|write) (?:udp|tcp)\S*(?: \S+)?:\s*)?"
            r"(?:connect:\s*|read:\s*|write:\s*)?"
            r"(?:network is unreachable|no route to host|connection refused|i/o timeout"
            r"|operation not permitted|permission denied)"
        ),
    ),
    # SERVFAIL: the resolver answered that it could not answer. Mostly the resolver's own
    # upstream is gone; the registry domain's DNS being broken reads the same.
    _Rule(
        Cause.DNS_RESOLVER_UNREACHABLE,
        _rx(r"lookup [^\s:]+(?: on \S+?)?:\s*server misbehaving"),
        (Cause.DNS_FAILURE,),
    ),
    # Before network: the lookup step is named even when the resolver itself timed out.
    _Rule(
        Cause.DNS_FAILURE,
        _rx(
            r"(?:dial tcp: )?lookup [^\s:]+(?: on \S+)?: [^\"\n]*"
            r"|no such host"
            r"|Temporary failure in name resolution"
            r"|Name or service not known"
            r"|getaddrinfow?: [^\"\n]*"
        ),
    ),
    _Rule(
        Cause.NETWORK_UNREACHABLE,
        _rx(
            # a proxy the runtime was given and cannot reach: quoted with the proxy's address
            r"proxyconnect tcp: [^\"\n]*?(?:connection refused|i/o timeout|no route to host"
            r"|network is unreachable|connection reset by peer)"
            # Windows nodes: Winsock's words (connectex, wsarecv, wsasend)
            r"|(?:dial tcp \S+: )?connectex: [^\"\n]*"
            r"|(?:read|write) tcp \S+: wsa(?:recv|send): [^\"\n]*"
            r"|(?:dial tcp \S+: )?(?:connect: )?connection refused"
            r"|(?:dial tcp \S+: )?(?:connect: )?connection timed out"
            r"|(?:dial tcp \S+: )?(?:connect: )?no route to host"
            r"|(?:dial tcp \S+: )?(?:connect: )?network is unreachable"
            r"|(?:dial tcp(?: \S+)?: )?i/o timeout"
            r"|connection reset by peer"
            r"|TLS handshake timeout"
            r"|context deadline exceeded(?: \(Client\.Timeout exceeded while awaiting headers\))?"
            r"|request canceled(?: while waiting for connection)?"
            r"|Client\.Timeout exceeded[^)\"\n]*"
            r"|unexpected EOF"
            # the registry itself failing (an outage, an overloaded proxy or mirror): shared
            # by everyone pulling from it, and the kubelet's retries pick it up once it heals
            # (CRI-O's containers/image brackets the reason: '500 (Internal Server Error)')
            r"|\b50[0234] \(?(?:Internal Server Error|Bad Gateway|Service Unavailable"
            r"|Gateway Timeout)\b\)?"
            r"|: (?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)\s*$"
            r"|(?:Get|Head|Post) \\?\"?https?://\S+?\\?\"?: EOF\b"
            # the kubelet gave up on a transfer that made no progress (its pull deadline):
            # the request to the registry stalled
            r"|(?:Get|Head) \\?\"?https?://\S+?\\?\"?: context canceled"
            # the same deadline said by the runtime (containerd's image_pull_progress_timeout,
            # dockershim's image-pull-progress-deadline): only as the last word of the error,
            # so a cancellation wrapped around another cause never hides it
            r"|because of no progress in \S+"
            r"|(?:desc = |: )context canceled(?=[\s\\\"\]]*$)"
            # the bytes that arrived do not add up to what the manifest promised: the
            # transfer was cut or altered on the way (a proxy, a flaky link, a broken mirror)
            r"|unexpected commit size \d+, expected \d+"
            r"|failed size validation: \d+ != \d+"
        ),
    ),
)

# Query strings of token/blob URLs are long and say nothing to a human.
_URL_QUERY_RX: Final = re.compile(r"(https?://[^\s?\"\\]+)\?[^\s\"\\]*?(?=[:,]?(?:[\s\"\\]|$))")


def _shorten(text: str) -> str:
    """Make a fragment quotable in one line of a Slack message: one line, no URL query
    strings (elided as "?…"), no dangling separators, at most ``_MAX_PHRASE`` characters."""
    text = _URL_QUERY_RX.sub(r"\1?…", " ".join(text.split()))
    text = text.lstrip(" :,\\\"'").rstrip(" :,.;\\")
    if len(text) > _MAX_PHRASE:
        text = text[: _MAX_PHRASE - 1].rstrip() + "…"
    return text


def _phrase(match: re.Match[str]) -> str:
    return _shorten(match.group(0))


def _first(rules: tuple[_Rule, ...], text: str) -> TextClass | None:
    for rule in rules:
        m = rule.rx.search(text)
        if m:
            return TextClass(cause=rule.cause, ambiguous_denied=False, phrase=_phrase(m),
                             alternatives=rule.alternatives)
    return None


def _classify_error(text: str) -> TextClass | None:
    """Apply the ordered rules to an error string; None if no rule explains it."""
    found = _first(_LOCAL_RULES, text)
    if found:
        return found

    ambiguous = _AMBIGUOUS_DENIED_RX.search(text)
    if ambiguous:
        verdict = _CREDENTIALS_VERDICT_RX.search(text)
        if verdict:
            # "pull access denied ...: authorization failed: no basic auth credentials" (ECR):
            # the registry did say why - nothing was sent (or an expired ECR token was).
            return TextClass(Cause.AUTH_REQUIRED, ambiguous_denied=False, phrase=_phrase(verdict))
        permission = _EXPLICIT_FORBIDDEN_RX.search(text)
        if permission:
            return TextClass(Cause.FORBIDDEN, ambiguous_denied=False, phrase=_phrase(permission))
        return TextClass(Cause.AUTH_REQUIRED, ambiguous_denied=True, phrase=_phrase(ambiguous))

    for rules in (_ACCESS_RULES, _NOT_FOUND_RULES, _CONNECTIVITY_RULES):
        found = _first(rules, text)
        if found:
            return found
    return None


def classify_text(text: str, reason: str | None = None) -> TextClass | None:
    """Classify a kubelet event message or container waiting message.

    ``reason`` is the event reason or the container's waiting reason. ``ErrImageNeverPull`` and
    ``InvalidImageName`` are causes in themselves (the kubelet never contacted a registry), so
    they win even over a terse text. Other reasons (``ErrImagePull``, ``ImagePullBackOff``,
    ``Failed``, ``BackOff``, ``InspectFailed``) carry no cause; ``ErrImagePull`` only tells us
    the text is a raw runtime error.

    Returns None when the text says nothing about *why* (bare back-off, ``Error: ErrImagePull``,
    ``Pulling image``, CrashLoopBackOff), so callers can look at other events instead of
    reporting "unknown". Returns ``Cause.UNKNOWN`` only for texts that are pull failures in a
    shape no rule knows yet.
    """
    reason_key = (reason or "").strip().lower()
    reason_cause = _REASON_CAUSES.get(reason_key)
    if reason_cause is not None:
        found = _classify_error(text) if text else None
        phrase = found.phrase if found and found.cause is reason_cause else (reason or "").strip()
        return TextClass(reason_cause, ambiguous_denied=False, phrase=phrase)

    if not text or not text.strip() or is_crash_loop(text):
        return None

    error = text
    back_off = _BACK_OFF_RX.search(text)
    if back_off:
        suffix = _BACK_OFF_SUFFIX_RX.match(back_off.group("rest"))
        error = suffix.group("err").strip() if suffix else ""
        if not error:
            return None
    elif _NO_CAUSE_RX.match(text):
        return None

    error = _FAILED_PULL_PREFIX_RX.sub("", error, count=1)
    found = _classify_error(error)
    if found:
        return found

    if back_off or reason_key in _PULL_ERROR_REASONS or _PULL_FAILURE_RX.search(text):
        return TextClass(Cause.UNKNOWN, ambiguous_denied=False, phrase=_shorten(error))
    return None


def pull_back_off_image(text: str) -> str | None:
    """Image named by a ``Back-off pulling image "x"`` message (with or without the newer
    ``: ErrImagePull: <error>`` suffix); None for any other text.

    The back-off event is often the only event left for a pod (older events are compacted), so
    it is how we learn which container image is stuck even when it carries no cause.
    """
    m = _BACK_OFF_RX.search(text)
    return m.group("image") if m else None


def is_crash_loop(text: str) -> bool:
    """True for CrashLoopBackOff texts (``Back-off restarting failed container``).

    Both are "BackOff" events from the kubelet; this one means the image *was* pulled and the
    process keeps exiting, so it must never be diagnosed as a pull problem.
    """
    return bool(_CRASH_LOOP_RX.search(text))


def failed_pull_image(text: str) -> str | None:
    """Image named by a kubelet pull-failure message, or None.

    Recognises ``Failed to pull image "x": ...``, ``Failed to inspect image "x"``,
    ``Container image "x" is not present with pull policy of Never`` and
    ``Failed to apply default image tag "x"`` so the caller can match events to containers.
    """
    m = _FAILED_PULL_IMAGE_RX.search(text)
    if not m:
        return None
    image = m.group("image")
    return image if image is not None else m.group("never")
