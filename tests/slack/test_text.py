"""bot/slack/text.py: Slack's three escapes, code spans and blocks no value can close, the
safe-string type that makes forgetting and double-escaping hard."""

from __future__ import annotations

import pytest

from bot.diagnosis.causes import Cause
from bot.diagnosis.explain import summarize
from bot.slack.text import (
    BACKTICK_LOOKALIKE,
    Mrkdwn,
    code,
    code_block,
    cut,
    escape,
    literal,
    plain,
    sentence,
    user,
    usergroup,
)

pytestmark = [pytest.mark.security]

ATTACK = "` <!channel> *URGENT* <https://evil.example/sso|Re-authenticate here> `"


def test_escape_is_slacks_three_replacements_and_nothing_else() -> None:
    assert escape("a & b < c > d \"e\" 'f' *g*") == "a &amp; b &lt; c &gt; d \"e\" 'f' *g*"
    assert escape("&amp;") == "&amp;amp;"  # a value's own entity is shown, not decoded


def test_safe_text_is_never_escaped_twice() -> None:
    once = escape("<x>")
    assert escape(once) == once and escape(escape(once)) == "&lt;x&gt;"
    assert isinstance(once, Mrkdwn)


def test_templates_escape_values_and_keep_their_own_markup() -> None:
    text = Mrkdwn("*{}* in {} by {}").format(ATTACK, code(ATTACK), user("U0ALICE001"))
    assert text.startswith("*")
    assert "<!channel>" not in text and "<https" not in text
    assert text.endswith("by <@U0ALICE001>")
    assert text.count("`") == 2  # only code()'s own pair: the values' backticks are inert
    assert isinstance(Mrkdwn("a ") + "<b>", Mrkdwn) and Mrkdwn("a ") + "<b>" == "a &lt;b&gt;"
    assert "<c>" + Mrkdwn("!") == "&lt;c&gt;!"
    assert Mrkdwn(", ").join(["<a>", code("b")]) == "&lt;a&gt;, `b`"


def test_code_span_survives_backticks_and_newlines() -> None:
    span = code("a`b``c\nd")
    assert span == f"`a{BACKTICK_LOOKALIKE}b{BACKTICK_LOOKALIKE * 2}c d`"


def test_code_block_cannot_be_closed_by_the_value() -> None:
    block = code_block("x ```<!here>``` y`", 100)
    assert block.startswith("```") and block.endswith("```") and block.count("`") == 6
    assert "&lt;!here&gt;" in block


def test_cut_never_splits_an_entity() -> None:
    text = escape("a" * 20 + "&" * 20)
    short = cut(text, 40)
    assert short.endswith("…(truncated)") and len(short) <= 40
    head = short.removesuffix(" …(truncated)")
    assert head.replace("&amp;", "").count("&") == 0


def test_mentions_only_for_ids_shaped_like_slacks() -> None:
    assert user("U0CAROL001") == "<@U0CAROL001>" and user("W0ABC") == "<@W0ABC>"
    assert user("U1> <!channel") == "`U1&gt; &lt;!channel`"
    assert usergroup("S0ONCALL01") == "<!subteam^S0ONCALL01>"
    assert "<!" not in usergroup("S1|x> <!everyone")


def test_sentences_and_literals() -> None:
    assert sentence("pod `a` not found") == "pod `a` not found"  # balanced spans are kept
    assert sentence("namespace '`x' invalid").count("`") == 0
    assert literal("`x` <y>") == f"{BACKTICK_LOOKALIKE}x{BACKTICK_LOOKALIKE} &lt;y&gt;"


def test_plain_text_is_only_trimmed() -> None:
    assert plain("<b> & c", 75) == "<b> & c"


def test_the_diagnosis_summary_keeps_its_spans_balanced_for_any_image() -> None:
    for image in (ATTACK, "a`b", "```", "x` `y"):
        for cause in Cause:
            summary = summarize(cause, image, None)
            assert summary.count("`") % 2 == 0, (cause, summary)
