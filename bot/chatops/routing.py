"""Which cluster a `/imagepull` command names (issue 13: several clusters, one Slack app).

Pure: text in, (cluster or None, the text without the cluster) out. A command names its cluster
with `--cluster NAME` anywhere, or with one leading path segment more than the sub-command takes:
`diagnose prod-eu/shop/web-1` (NAMESPACE/POD takes two), `restart prod-eu/shop/deployment/web`
(NAMESPACE/KIND/NAME takes three), `audit prod-eu/shop` (NAMESPACE takes one). The text left
over is what `parse_command` reads on the agent that runs it, so one parser serves both.
"""

from __future__ import annotations

import shlex

from bot.diagnosis.names import is_dns1123_label

#: how many `/`-separated segments each sub-command's first argument has without a cluster
_SEGMENTS = {"diagnose": 2, "bundle": 2, "verify-secret": 2, "verify": 2, "restart": 3,
             "audit": 1}

#: sub-commands about the whole fleet or the bot, not one cluster: whichever agent receives
#: them answers (`clusters` reads the presence every agent shares), never asking which cluster
#: is meant, nor refusing because a channel's default cluster is silent
ANSWERED_WHERE_RECEIVED = frozenset({"help", "-h", "--help", "clusters"})

_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


class ClusterNameError(ValueError):
    """`--cluster` given twice, without a value, or with a name that is not a cluster name."""


def split_cluster(text: str) -> tuple[str | None, str]:
    """(the cluster the command names or None, the command text without it). Text that does
    not split as shell words is returned as it is: `parse_command` explains that error."""
    try:
        words = shlex.split(text.translate(_SMART_QUOTES))
    except ValueError:
        return None, text
    cluster: str | None = None
    kept: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--cluster" or word.startswith("--cluster="):
            if cluster is not None:
                raise ClusterNameError("--cluster is given twice")
            _, eq, value = word.partition("=")
            if not eq:
                if i + 1 >= len(words):
                    raise ClusterNameError("--cluster needs a value")
                i += 1
                value = words[i]
            cluster = _checked(value)
        else:
            kept.append(word)
        i += 1
    if cluster is None and len(kept) >= 2:
        expected = _SEGMENTS.get(kept[0].lower())
        first = next((n for n, w in enumerate(kept[1:], 1) if not w.startswith("--")), None)
        if expected is not None and first is not None:
            parts = kept[first].split("/")
            if len(parts) == expected + 1:
                cluster = _checked(parts[0])
                kept[first] = "/".join(parts[1:])
    if cluster is None:
        return None, text
    return cluster, shlex.join(kept)


def _checked(name: str) -> str:
    if not is_dns1123_label(name):
        raise ClusterNameError(f"{name[:64]!r} is not a cluster name (CLUSTER_NAME is a "
                               "DNS-1123 label: lower-case letters, digits and '-')")
    return name
