"""The one sink for text the bot sends to Slack: every value is escaped on its way in.

Slack reads `&`, `<` and `>` as control characters in mrkdwn (blocks' mrkdwn text objects,
section fields, context elements, confirm dialogs) and in a message's top-level `text`:
`<!channel>` pings everyone, `<https://evil|Re-authenticate>` is a disguised link. Its rule
(https://api.slack.com/reference/surfaces/formatting#escaping) is to replace exactly those three
with `&amp;`, `&lt;` and `&gt;` and nothing else ("Slack will take care of the rest"; other
entities are shown literally). Pod names, images, event messages, registry answers, secret
names and a user's command text all come from people who are not the bot, so all of them go
through `escape`.

`Mrkdwn` is text that is already safe to send (markupsafe's `Markup` idea): the bot's own
literals are marked with `Mrkdwn("*bold*")`, and every way of combining it (`+`, `join`,
`format`) turns the parts that are not `Mrkdwn` yet into `literal` values. So forgetting to
escape a value is hard (the sinks in bot/slack/blocks.py escape whatever plain `str` reaches
them) and escaping twice is impossible (`escape` leaves `Mrkdwn` alone).

`plain_text` objects (headers, button labels, confirm titles) are not parsed at all: Slack
shows them as written and entity-escapes `&`, `<`, `>` itself when it stores them (they come
back as `&amp;` in interaction payloads: slackapi/bolt-python#513), so escaping them here
would show a literal `&amp;`; `plain` only trims.

The markup the bot writes on purpose stays live: `<!date^…>` (`date`) and user / user-group
mentions (`user`, `usergroup`), built only from ids that look like Slack's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from string import Formatter
from typing import Any

from bot.diagnosis.markup import BACKTICK_LOOKALIKE, outside_span, span_body

__all__ = ["BACKTICK_LOOKALIKE", "Mrkdwn", "code", "code_block", "cut", "date", "escape",
           "is_permalink", "literal", "permalink", "plain", "sentence", "user", "usergroup"]

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")
TRUNCATED = " …(truncated)"


class Mrkdwn(str):
    """Slack mrkdwn that is safe to send as it is.

    Construct it directly only from the bot's own literals; values join through `+`, `join`
    and `format`, which escape anything that is not `Mrkdwn` already.
    """

    __slots__ = ()

    def __add__(self, other: str) -> Mrkdwn:
        return Mrkdwn(str.__add__(self, literal(other)))

    def __radd__(self, other: str) -> Mrkdwn:
        return Mrkdwn(str.__add__(literal(other), self))

    def join(self, parts: Iterable[str]) -> Mrkdwn:
        return Mrkdwn(str.join(self, [literal(p) for p in parts]))

    def format(self, *args: Any, **kwargs: Any) -> Mrkdwn:
        return Mrkdwn(_FORMATTER.vformat(self, args, kwargs))


class _EscapingFormatter(Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Mrkdwn):
            return str.__format__(value, format_spec)
        return literal(format(value, format_spec))


_FORMATTER = _EscapingFormatter()


def escape(value: object) -> Mrkdwn:
    """`value` as literal text in mrkdwn (Slack's three escapes); `Mrkdwn` passes unchanged."""
    if isinstance(value, Mrkdwn):
        return value
    return Mrkdwn(str(value).translate(_ESCAPES))


def literal(value: object) -> Mrkdwn:
    """A value put into the bot's own text: escaped, and its backticks made inert (U+02CB),
    so it can neither open a code span nor close one around it. `Mrkdwn` passes unchanged.

    (`escape` alone is Slack's rule for whole texts whose own code spans must stay: a
    diagnosis summary, built backtick-safe where it is made.)
    """
    if isinstance(value, Mrkdwn):
        return value
    return escape(outside_span(value))


def code(value: object) -> Mrkdwn:
    """`value` as an inline code span that no value can close early.

    Slack has no backtick escape, so a backtick in the value becomes its look-alike U+02CB
    (see bot/diagnosis/markup.py, the same rule the diagnosis summary uses); the three
    control characters are escaped inside the span too (Slack decodes them there as well).
    """
    return Mrkdwn(f"`{span_body(value).translate(_ESCAPES)}`")


def code_block(value: object, limit: int) -> Mrkdwn:
    """`value` as a ``` block of at most `limit` characters (cut with a visible marker).

    A value's own backticks become U+02CB: ``` inside it would close the block, and one
    next to the closing fence would make a fence of four. Line breaks stay (it is a block).
    """
    body = str(value).replace("`", BACKTICK_LOOKALIKE).translate(_ESCAPES)
    return Mrkdwn(f"```{_cut(body, limit - 6)}```")


def sentence(value: object) -> Mrkdwn:
    """Text written by a lower layer (an exception, a registry verdict) for people to read.

    It is escaped; its own code spans are kept when they pair up, but when a value inside it
    carried a backtick (an odd count), every backtick becomes U+02CB so nothing after it is
    read as code or formatting.
    """
    text = str(value)
    if text.count("`") % 2:
        text = text.replace("`", BACKTICK_LOOKALIKE)
    return escape(text)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = _PARTIAL_ENTITY.sub("", text[: max(0, limit - len(TRUNCATED))])
    return head + TRUNCATED


def cut(text: Mrkdwn, limit: int) -> Mrkdwn:
    """Trim safe text to Slack's limit with a visible marker, never inside an `&…;` entity."""
    return Mrkdwn(_cut(escape(text), limit))


def plain(value: object, limit: int) -> str:
    """Text for a `plain_text` object: Slack parses no markup there, so it is only trimmed."""
    return _cut(str(value), limit)


def user(user_id: object) -> Mrkdwn:
    """A live mention of a Slack user id; anything not shaped like one is shown as code."""
    text = str(user_id)
    return Mrkdwn(f"<@{text}>") if _USER_ID.fullmatch(text) else code(text)


def usergroup(group_id: object) -> Mrkdwn:
    """A live mention of a Slack user group (subteam) id; anything else is shown as code."""
    text = str(group_id)
    return Mrkdwn(f"<!subteam^{text}>") if _GROUP_ID.fullmatch(text) else code(text)


#: A Slack permalink as chat.getPermalink answers it (Slack's own host, no markup in it).
_PERMALINK = re.compile(r"https://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.slack(?:-gov)?\.com/"
                        r"[A-Za-z0-9/?=&._%-]*")


#: a permalink is short (chat.getPermalink: host, channel, `p` + ts, `?thread_ts=…&cid=…`)
MAX_PERMALINK = 512


def is_permalink(url: object) -> bool:
    """A Slack message permalink as chat.getPermalink answers it: https, on Slack's own host,
    no markup, short. What another cluster's agent wrote as its thread's link (the fleet's
    shared causes) is made a link only when this holds."""
    text = str(url)
    return len(text) <= MAX_PERMALINK and _PERMALINK.fullmatch(text) is not None


def permalink(url: object, label: object) -> Mrkdwn:
    """A live link to a Slack message (a permalink on Slack's own host, as chat.getPermalink
    answers); any other URL is shown as code, never as a link someone could disguise."""
    text = str(url)
    if not is_permalink(text):
        return code(text)
    return Mrkdwn(f"<{text.replace('&', '&amp;')}|{literal(label)}>")


#: `date` shows epochs in [0, this] (year 9999): `time.gmtime` raises past it, and a
#: timestamp read from the shared Redis may be anything
MAX_EPOCH = 253_402_300_799


def date(epoch: float) -> Mrkdwn:
    """Slack renders this in each reader's time zone; the fallback is UTC. An epoch no clock
    could have said (negative, NaN, past year 9999: a value someone wrote) is "an unknown
    time", never an exception in the middle of a message."""
    if not 0 <= epoch <= MAX_EPOCH:  # NaN fails both comparisons
        return Mrkdwn("an unknown time")
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    return Mrkdwn(f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>")
