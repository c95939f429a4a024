"""Tests for bot.diagnosis.classify, driven by a corpus of real kubelet/runtime messages.

The corpus (tests/data/kubelet_messages.yaml, plus the batch in
tests/data/kubelet_messages_public.yaml whose sources are full bug-report URLs) is the
specification: each entry is a message somebody actually saw, with the cause it must map to.
Focused tests below pin down the ordering rules and the helper functions.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.diagnosis.causes import Cause
from bot.diagnosis.classify import (
    TextClass,
    classify_text,
    failed_pull_image,
    is_crash_loop,
    pull_back_off_image,
)

_DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS_PATH = _DATA / "kubelet_messages.yaml"
# A second batch with the same schema, each source a full URL of a public bug report
# (kubernetes, containerd, CRI-O, EKS, AKS, GKE, k3s, Docker Hub): kept apart so the batch
# can be counted and re-checked against its sources on its own.
PUBLIC_CORPUS_PATH = _DATA / "kubelet_messages_public.yaml"


def _load_corpus() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for path in (CORPUS_PATH, PUBLIC_CORPUS_PATH):
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        assert isinstance(data, list)
        entries.extend(data)
    return entries


CORPUS = _load_corpus()


def _entry_id(index: int, entry: dict[str, Any]) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", entry["source"].split(" ")[0]).strip("-")[:40]
    return f"{index:03d}-{entry['cause'] or 'none'}-{slug}"


def _phrase_in(phrase: str, text: str) -> bool:
    """True if the evidence phrase is a fragment of the text; "…" marks an elision."""
    pattern = ".*?".join(re.escape(part) for part in phrase.split("…"))
    return re.search(pattern, " ".join(text.split())) is not None


# --- the corpus ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=[_entry_id(i, e) for i, e in enumerate(CORPUS)])
def test_corpus_entry(entry: dict[str, Any]) -> None:
    result = classify_text(entry["text"], entry["reason"])
    if entry["cause"] is None:
        assert result is None, f"expected no cause, got {result}"
        return
    assert result is not None, "expected a cause, got None"
    assert result.cause is Cause(entry["cause"])
    assert result.ambiguous_denied is bool(entry.get("ambiguous_denied", False))
    # where the words truly mean more than one cause, every other reading is carried along
    assert [c.value for c in result.alternatives] == entry.get("alternatives", [])
    # The phrase is quoted to the user as evidence, so it must really come from the text (or be
    # the reason that decided it) and stay short.
    assert result.phrase
    assert len(result.phrase) <= 160
    assert _phrase_in(result.phrase, entry["text"]) or result.phrase == entry["reason"]


def test_corpus_shape() -> None:
    allowed = {"text", "reason", "cause", "ambiguous_denied", "alternatives", "source"}
    for entry in CORPUS:
        assert set(entry) <= allowed, entry
        assert isinstance(entry["text"], str) and entry["text"]
        assert isinstance(entry["source"], str) and entry["source"]
        assert entry["cause"] is None or entry["cause"] in {c.value for c in Cause}
        if entry.get("ambiguous_denied"):
            assert entry["cause"] == Cause.AUTH_REQUIRED.value


def test_corpus_covers_every_cause_at_least_twice() -> None:
    counts = Counter(entry["cause"] for entry in CORPUS)
    for cause in Cause:
        assert counts[cause.value] >= 2, f"only {counts[cause.value]} corpus entries for {cause}"
    assert counts[None] >= 5, "need negative examples"
    assert sum(1 for e in CORPUS if e.get("ambiguous_denied")) >= 2


def test_corpus_is_mostly_real_messages() -> None:
    composed = [e for e in CORPUS if e["source"].startswith("composed:")]
    assert len(CORPUS) >= 60
    assert len(composed) * 5 < len(CORPUS), "composed entries must stay a small minority"


# --- ordering rules --------------------------------------------------------------------------


def _cause(text: str, reason: str | None = None) -> Cause | None:
    result = classify_text(text, reason)
    return None if result is None else result.cause


def test_auth_beats_not_found_in_the_same_message() -> None:
    text = (
        'failed to resolve reference "r.example.com/a/b:1": failed to authorize: failed to fetch'
        " oauth token: unexpected status: 401 Unauthorized, rpc error: code = NotFound desc ="
        ' failed to resolve reference "r.example.com/a/b:1": r.example.com/a/b:1: not found'
    )
    assert _cause(text) is Cause.AUTH_REQUIRED


def test_dns_beats_network_for_lookup_failures() -> None:
    text = (
        'failed to do request: Head "https://r.example.com/v2/a/manifests/1": dial tcp:'
        " lookup r.example.com on 10.0.0.10:53: no such host"
    )
    assert _cause(text) is Cause.DNS_FAILURE


def test_x509_beats_dial_tcp() -> None:
    text = (
        'failed to do request: Head "https://r.example.com/v2/a/manifests/1": dial tcp'
        " 10.1.2.3:443: tls: failed to verify certificate: x509: certificate signed by unknown"
        " authority"
    )
    result = classify_text(text, "ErrImagePull")
    assert result == TextClass(
        Cause.TLS_UNTRUSTED,
        ambiguous_denied=False,
        phrase="tls: failed to verify certificate: x509: certificate signed by unknown authority",
    )


def test_tls_handshake_timeout_is_network_not_tls() -> None:
    assert _cause(
        'Error response from daemon: Get "https://r/v2/": net/http: TLS handshake timeout'
    ) is (Cause.NETWORK_UNREACHABLE)


def test_anonymous_token_403_is_auth_required_but_plain_403_is_forbidden() -> None:
    anon = (
        'failed to resolve reference "gcr.io/p/i:1": failed to authorize: failed to fetch anonymous'
        " token: unexpected status: 403 Forbidden"
    )
    plain = (
        'failed to resolve reference "gcr.io/p/i:1": unexpected status from HEAD request to x:'
        " 403 Forbidden"
    )
    assert _cause(anon) is Cause.AUTH_REQUIRED
    assert _cause(plain) is Cause.FORBIDDEN


def test_anonymous_token_network_failure_is_not_auth() -> None:
    text = (
        "failed to authorize: failed to fetch anonymous token: Get"
        ' "https://auth.docker.io/token": dial tcp 1.2.3.4:443: connect: connection refused'
    )
    assert _cause(text) is Cause.NETWORK_UNREACHABLE


def test_platform_beats_containerd_not_found() -> None:
    text = (
        'failed to pull and unpack image "docker.io/x/y:1": no match for platform in manifest:'
        " not found"
    )
    assert _cause(text) is Cause.PLATFORM_MISMATCH


def test_ecr_repository_not_found_beats_tag_not_found() -> None:
    text = (
        "repository 1.dkr.ecr.eu-west-1.amazonaws.com/app not found: name unknown: The repository"
        " with name 'app' does not exist in the registry with id '1'"
    )
    assert _cause(text) is Cause.REPOSITORY_NOT_FOUND


def test_docker_login_shape_is_ambiguous_and_not_repository_not_found() -> None:
    text = (
        "Error response from daemon: pull access denied for myapp, repository does not exist or"
        " may require 'docker login': denied: requested access to the resource is denied"
    )
    result = classify_text(text)
    assert result is not None
    assert result.cause is Cause.AUTH_REQUIRED
    assert result.ambiguous_denied is True
    assert result.phrase.startswith("pull access denied for myapp")


def test_missing_credentials_are_not_ambiguous_even_in_a_pull_access_denied_shape() -> None:
    text = (
        'failed to resolve reference "1.dkr.ecr.us-east-1.amazonaws.com/a:1": pull access denied,'
        " repository does not exist or may require authorization: authorization failed: no basic"
        " auth credentials"
    )
    assert classify_text(text) == TextClass(
        Cause.AUTH_REQUIRED, ambiguous_denied=False, phrase="no basic auth credentials"
    )


def test_registry_permission_verdict_inside_pull_access_denied_is_forbidden() -> None:
    # dockerd wraps GCR's own answer in the ambiguous Docker Hub shape; the registry's words win.
    text = (
        "Error response from daemon: pull access denied for gcr.io/p/app, repository does not"
        " exist or may require 'docker login': denied: Permission denied for \"1.0\" from"
        ' request "/v2/p/app/manifests/1.0".'
    )
    assert classify_text(text) == TextClass(
        Cause.FORBIDDEN, ambiguous_denied=False, phrase='denied: Permission denied for "1.0"'
    )
    # without the registry's verdict the shape stays ambiguous
    bare = "Error response from daemon: pull access denied for gcr.io/p/app, repository does not"
    result = classify_text(bare + " exist or may require 'docker login'")
    assert result is not None and result.ambiguous_denied is True


def test_context_canceled_is_a_stalled_pull_only_as_the_last_word() -> None:
    stalled = (
        'rpc error: code = Canceled desc = failed to pull and unpack image "a:1": context canceled'
    )
    assert _cause(stalled, "ErrImagePull") is Cause.NETWORK_UNREACHABLE
    assert _cause("rpc error: code = Canceled desc = context canceled", "ErrImagePull") is (
        Cause.NETWORK_UNREACHABLE
    )
    # a cancellation mentioned before the real cause does not hide it
    wrapped = (
        "rpc error: code = Unknown desc = context canceled while pulling: failed to resolve"
        ' reference "a:1": unexpected status from HEAD request to https://r/v2/a/manifests/1:'
        " 401 Unauthorized"
    )
    assert _cause(wrapped, "ErrImagePull") is Cause.AUTH_REQUIRED
    # some other word after "context canceled" is not the deadline shape: unknown, not network
    other = "rpc error: code = Unknown desc = context canceled by caller x"
    assert _cause(other, "ErrImagePull") is Cause.UNKNOWN


def test_truncated_layer_commit_is_network() -> None:
    text = (
        'failed commit on ref "layer-sha256:ab": unexpected commit size 5674492, expected 2312958:'
        " unknown"
    )
    result = classify_text(text, "ErrImagePull")
    assert result is not None and result.cause is Cause.NETWORK_UNREACHABLE
    assert result.phrase == "unexpected commit size 5674492, expected 2312958"


def test_denied_not_authorized_is_forbidden() -> None:
    assert (
        _cause("Error response from daemon: denied: User is not authorized to pull")
        is Cause.FORBIDDEN
    )


def test_image_name_cannot_trigger_a_rule() -> None:
    # The tag "429" and the repo "x509-tools" must not make this rate_limited / tls_untrusted.
    text = (
        'Failed to pull image "example.com/x509-tools:429": rpc error: code = NotFound desc ='
        ' failed to pull and unpack image "example.com/x509-tools:429": failed to resolve'
        ' reference "example.com/x509-tools:429": example.com/x509-tools:429: not found'
    )
    assert classify_text(text) == TextClass(
        Cause.TAG_NOT_FOUND, ambiguous_denied=False, phrase="example.com/x509-tools:429: not found"
    )


def test_image_name_words_cannot_trigger_a_rule() -> None:
    # Repository path components are free text: words that are error codes elsewhere
    # (toomanyrequests, unauthorized, name_unknown, ...) must not be read as errors when they
    # are only part of the image reference, wherever the runtime repeats it.
    image = "example.com/toomanyrequests/unauthorized/name_unknown/invalidimagename:1"
    text = (
        f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and'
        f' unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
    )
    result = classify_text(text, "Failed")
    assert result == TextClass(
        Cause.TAG_NOT_FOUND, ambiguous_denied=False, phrase=f"{image}: not found"
    )
    assert _cause(f'Back-off pulling image "{image}"') is None
    assert _cause(f'Failed to pull image "{image}": frobnicated') is Cause.UNKNOWN


def test_case_insensitive_matching() -> None:
    assert _cause("ERROR RESPONSE FROM DAEMON: TOOMANYREQUESTS: slow down") is Cause.RATE_LIMITED
    assert _cause("rpc error: code = Unknown desc = MANIFEST UNKNOWN") is Cause.TAG_NOT_FOUND


# --- reasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "cause"),
    [("ErrImageNeverPull", Cause.NEVER_PULL), ("InvalidImageName", Cause.INVALID_IMAGE_NAME)],
)
def test_reason_alone_decides_never_pull_and_invalid_name(reason: str, cause: Cause) -> None:
    assert classify_text("", reason) == TextClass(cause, ambiguous_denied=False, phrase=reason)
    terse = classify_text("Error: " + reason, reason)
    assert terse is not None and terse.cause is cause


def test_reason_wins_over_misleading_text() -> None:
    result = classify_text('Failed to pull image "x": manifest unknown', "InvalidImageName")
    assert result == TextClass(
        Cause.INVALID_IMAGE_NAME, ambiguous_denied=False, phrase="InvalidImageName"
    )


@pytest.mark.parametrize(
    "reason", ["ErrImagePull", "ImagePullBackOff", "Failed", "BackOff", "InspectFailed", None]
)
def test_other_reasons_carry_no_cause_by_themselves(reason: str | None) -> None:
    assert classify_text("", reason) is None
    assert classify_text("Error: ErrImagePull", reason) is None


def test_unrecognised_runtime_error_is_unknown_only_when_it_is_a_pull_failure() -> None:
    weird = "rpc error: code = Unknown desc = something the registry never said before"
    result = classify_text(weird, "ErrImagePull")
    assert result is not None and result.cause is Cause.UNKNOWN
    assert result.phrase == weird
    wrapped = classify_text('Failed to pull image "a/b:1": frobnicator exploded', "Failed")
    assert wrapped == TextClass(
        Cause.UNKNOWN, ambiguous_denied=False, phrase="frobnicator exploded"
    )
    # ErrImagePull waiting messages are raw runtime errors, even without any marker words.
    assert _cause("frobnicator exploded", "ErrImagePull") is Cause.UNKNOWN
    # Not a pull failure at all: no opinion.
    assert classify_text("Created container app", "Created") is None
    assert classify_text("Started container app") is None
    assert classify_text("Created container pullimage-rpc-error-sidecar", "Created") is None


def test_no_cause_shapes() -> None:
    assert classify_text('Back-off pulling image "nginx:1.25"', "BackOff") is None
    assert classify_text('Pulling image "nginx:1.25"', "Pulling") is None
    assert classify_text("Error: ImagePullBackOff", "Failed") is None
    assert (
        classify_text("Back-off restarting failed container app in pod web_default(1)", "BackOff")
        is None
    )
    assert classify_text("   ") is None


def test_new_back_off_format_is_classified_by_its_suffix() -> None:
    text = (
        'Back-off pulling image "nginx:9.9": ErrImagePull: rpc error: code = Unknown desc ='
        " manifest unknown"
    )
    assert _cause(text, "ImagePullBackOff") is Cause.TAG_NOT_FOUND
    unknown = classify_text(
        'Back-off pulling image "nginx:9.9": ErrImagePull: frobnicated', "ImagePullBackOff"
    )
    assert (
        unknown is not None and unknown.cause is Cause.UNKNOWN and unknown.phrase == "frobnicated"
    )


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "image"),
    [
        ('Back-off pulling image "nginx:1.25"', "nginx:1.25"),
        (
            'Back-off pulling image "ghcr.io/a/b@sha256:abc": ErrImagePull: x: not found',
            "ghcr.io/a/b@sha256:abc",
        ),
        (
            'with ImagePullBackOff: "Back-off pulling image \\"mitdbg/modeldb-backend:kf0.4\\""',
            "mitdbg/modeldb-backend:kf0.4",
        ),
        ("Back-off restarting failed container", None),
        (
            'Failed to pull image "nginx:1.25": rpc error: code = Unknown desc = manifest unknown',
            None,
        ),
        ('Pulling image "nginx:1.25"', None),
        ("", None),
    ],
)
def test_pull_back_off_image(text: str, image: str | None) -> None:
    assert pull_back_off_image(text) == image


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Back-off restarting failed container", True),
        ("Back-off restarting failed container app in pod web-0_default(0a1b)", True),
        (
            'with CrashLoopBackOff: "Back-off 20s restarting failed container=c pod=p_default(1)"',
            True,
        ),
        ('Back-off pulling image "nginx"', False),
        ("Error: ImagePullBackOff", False),
        ('Failed to pull image "crashloop/app:1": manifest unknown', False),
    ],
)
def test_is_crash_loop(text: str, expected: bool) -> None:
    assert is_crash_loop(text) is expected


@pytest.mark.parametrize(
    ("text", "image"),
    [
        (
            'Failed to pull image "nginx:1.25": rpc error: code = NotFound desc = x: not found',
            "nginx:1.25",
        ),
        (
            'Failed to inspect image "registry.local/app:1": rpc error: code = Unknown desc = boom',
            "registry.local/app:1",
        ),
        (
            'Container image "error_pages:local" is not present with pull policy of Never',
            "error_pages:local",
        ),
        (
            'Failed to apply default image tag "None:None": couldn\'t parse image reference'
            ' "None:None": invalid reference format',
            "None:None",
        ),
        ('Back-off pulling image "nginx:1.25"', None),
        ("Error: ErrImagePull", None),
        ('Pulling image "nginx:1.25"', None),
    ],
)
def test_failed_pull_image(text: str, image: str | None) -> None:
    assert failed_pull_image(text) == image


def test_failed_pull_image_on_corpus_events() -> None:
    # Every kubelet "Failed to pull image" event in the corpus names its image (a reporter's
    # blanked name, 'Failed to pull image ""', still reads as a pull failure: "" not None).
    events = [e for e in CORPUS if e["text"].startswith('Failed to pull image "')]
    assert len(events) >= 20
    for entry in events:
        image = failed_pull_image(entry["text"])
        assert image is not None and entry["text"].startswith(f'Failed to pull image "{image}"')
    assert sum(1 for e in events if failed_pull_image(e["text"])) >= 20
