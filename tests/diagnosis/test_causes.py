"""The cause table: one row per cause, and every per-cause text or builder covers every cause.

Adding a cause is a row in bot/diagnosis/causes.py plus its words (explain.py) and fixes
(fixes.py); these tests fail until all three are there.
"""

from __future__ import annotations

import pytest

from bot.diagnosis.causes import CAUSES, Cause, CauseInfo
from bot.diagnosis.explain import EXPLANATIONS, summarize
from bot.diagnosis.facts import WorkloadRef
from bot.diagnosis.fixes import FixContext, build_fixes
from bot.diagnosis.imageref import try_parse_image

#: Slack's limit for a header block (bot/slack/blocks.py puts the title in one).
MAX_HEADER = 150


def test_every_cause_has_exactly_one_row() -> None:
    assert set(CAUSES) == set(Cause)
    assert all(isinstance(info, CauseInfo) for info in CAUSES.values())


def test_the_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        CAUSES[Cause.UNKNOWN] = CauseInfo("x")  # type: ignore[index]
    with pytest.raises(AttributeError):
        CAUSES[Cause.UNKNOWN].transient = True  # type: ignore[misc]


@pytest.mark.parametrize("cause", list(Cause), ids=lambda c: c.value)
def test_every_cause_has_a_title_words_a_summary_and_fixes(cause: Cause) -> None:
    title = CAUSES[cause].title
    assert title and len(title) <= MAX_HEADER and title == title.strip()
    assert EXPLANATIONS[cause]
    image = "registry.example/team/app:1.0"
    unknown_line = summarize(Cause.UNKNOWN, image, try_parse_image(image))
    if cause is not Cause.UNKNOWN:  # a new cause must not fall through to the unknown line
        assert summarize(cause, image, try_parse_image(image)) != unknown_line
    context = FixContext(namespace="shop", workload=WorkloadRef("Deployment", "web"),
                         container="web", image=image, ref=try_parse_image(image))
    assert build_fixes(cause, context)


def test_titles_are_distinct() -> None:
    titles = [info.title for info in CAUSES.values()]
    assert len(set(titles)) == len(titles)


def _with(flag: str) -> set[Cause]:
    return {cause for cause, info in CAUSES.items() if getattr(info, flag)}


def test_the_rows_say_what_the_separate_sets_said() -> None:
    """The table replaced six sets in five modules; their members, pinned (behaviour kept),
    plus the causes issue 12 added (image_incomplete, ip_blocked, node_disk_error,
    dns_resolver_unreachable, kubelet_pull_throttled)."""
    assert _with("transient") == {Cause.RATE_LIMITED, Cause.NETWORK_UNREACHABLE,
                                  Cause.DNS_RESOLVER_UNREACHABLE,
                                  Cause.KUBELET_PULL_THROTTLED}
    assert _with("shared_scope") == {Cause.RATE_LIMITED, Cause.DNS_FAILURE,
                                     Cause.NETWORK_UNREACHABLE, Cause.TLS_UNTRUSTED,
                                     Cause.IP_BLOCKED, Cause.DNS_RESOLVER_UNREACHABLE,
                                     Cause.KUBELET_PULL_THROTTLED}
    assert _with("probe_worthy") == {Cause.TAG_NOT_FOUND, Cause.REPOSITORY_NOT_FOUND,
                                     Cause.AUTH_REQUIRED, Cause.FORBIDDEN, Cause.UNKNOWN,
                                     Cause.DNS_FAILURE}
    assert _with("credentials_suspect") == {Cause.AUTH_REQUIRED, Cause.FORBIDDEN,
                                            Cause.REPOSITORY_NOT_FOUND}
    assert _with("credentials_refused") == {Cause.AUTH_REQUIRED, Cause.FORBIDDEN}
    assert _with("node_side") == {Cause.RATE_LIMITED, Cause.NETWORK_UNREACHABLE,
                                  Cause.DNS_FAILURE, Cause.TLS_UNTRUSTED, Cause.DISK_FULL,
                                  Cause.PLATFORM_MISMATCH, Cause.NEVER_PULL,
                                  Cause.INVALID_IMAGE_NAME, Cause.IP_BLOCKED,
                                  Cause.NODE_DISK_ERROR, Cause.DNS_RESOLVER_UNREACHABLE,
                                  Cause.KUBELET_PULL_THROTTLED}
    assert set(Cause) - _with("kubelet_pulls") == {Cause.NEVER_PULL, Cause.INVALID_IMAGE_NAME}


def test_rows_that_imply_each_other() -> None:
    # refused credentials are always a reason to verify the pull secret
    assert _with("credentials_refused") <= _with("credentials_suspect")
    # what hits everyone pulling from a registry is the nodes' side, not the bot's view
    assert _with("shared_scope") <= _with("node_side")
    # a cause that clears on retry is one that many pods share
    assert _with("transient") <= _with("shared_scope")
    # no pull, nothing for the kubelet to retry
    assert not (_with("transient") - _with("kubelet_pulls"))
