"""Inline code spans that survive any value: the one rule, shared by every text the bot writes.

Why here: the diagnosis summary wraps values in backticks (Slack mrkdwn and Markdown readers
show them as code; the terminal shows them as they are), and the Slack sink (bot/slack/text.py)
builds its own code spans with the same rule, so a value can never end a span early.

Neither Slack mrkdwn nor the terminal has a backtick escape: a backtick inside the value would
close the span and let the rest of the value be read as formatting. So each backtick in the
value becomes U+02CB MODIFIER LETTER GRAVE ACCENT, which looks the same to a reader but is
not markup. Line breaks become spaces: an inline span cannot cross a line in Slack. Valid
image references and Kubernetes names never contain either, so only hostile values change.
"""

from __future__ import annotations

BACKTICK_LOOKALIKE = "\u02cb"


def outside_span(value: object) -> str:
    """A value written outside a code span: its backticks become U+02CB, so it can neither
    open a span nor close one of the text around it (e.g. an unparsable image in a summary)."""
    return str(value).replace("`", BACKTICK_LOOKALIKE)


def span_body(value: object) -> str:
    """The value as it may stand between two backticks."""
    text = str(value).replace("`", BACKTICK_LOOKALIKE)
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def code_span(value: object) -> str:
    """`value` as one inline code span, whatever it contains."""
    return f"`{span_body(value)}`"
