"""What would work instead: the closest existing tag, a swapped path, a misspelled host.

Pure functions over names the registry (or the cluster) already listed; bot/registry/investigator.py
asks the registry whether a suggestion really exists before anyone sees it.

How a tag is ranked (issue 12, Deliver 4), best first; within a tier the order is fixed, so the
same listing always gives the same answer:

0. a lookalike: the same tag once `l`/`I`/`i`/`|` are read as `1`, `O`/`o` as `0`, `rn` as `m`
   and case is ignored (`v2.l` is `v2.1`: a person reading a ticket or a font typed it);
1. one other edit that changes the tag's shape: a character inserted, deleted, swapped with
   its neighbour or replaced (`lates` → `latest`, `1.2.7` → `1.27`);
2. a version neighbour of the version the tag reads as (`v2.4.l` is 2.4.1): the same suffix
   (`-alpine` stays `-alpine`), by semver distance — the longest common prefix of numbers
   first (same major and minor before same major), then the smallest step, stable before
   pre-release, below before above on a tie (a version never pushed is usually newer than
   what exists). Only the same major when it has versions, else the majors next to it.
   Between two versions of the same shape, changing a digit is a version move, not a typo,
   so it is ranked here and not in tier 1;
3. any other near spelling: at most two edits and a difflib ratio of at least TYPO_RATIO
   (two random commit tags such as `sha-3f2a9c1` and `sha-a4bce15` are not near).

Anything else is not close: `closest_tags` returns nothing and `no_close_tag` says so, with the
newest tags, rather than guessing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from itertools import pairwise

#: How alike two strings must be (difflib ratio) to call one a typo of the other.
TYPO_RATIO = 0.8
#: How many of the newest tags `no_close_tag` names.
NEWEST_SHOWN = 3
_VERSION = re.compile(r"^v?(?P<nums>\d+(?:\.\d+)*)(?P<suffix>[-+_].*)?$", re.IGNORECASE)
#: Characters read alike (after case folding): the digit each stands for.
_LOOKALIKE = str.maketrans({"l": "1", "i": "1", "|": "1", "o": "0"})

Version = tuple[tuple[int, ...], str]
#: The OCI distribution spec's tag grammar. A listing is the registry's text: a name outside
#: it cannot be pulled, so it is never suggested nor shown (no escape sequence gets through).
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def valid_tags(available: Iterable[str]) -> list[str]:
    """The listed names that are tags a runtime could pull, each once, in listed order."""
    return [t for t in dict.fromkeys(available) if isinstance(t, str) and _TAG.match(t)]


def _version(tag: str) -> Version | None:
    """`v2.1` → ((2, 1), ""), `1.27.3-alpine` → ((1, 27, 3), "-alpine"); None if not a version."""
    match = _VERSION.match(tag)
    if not match:
        return None
    nums = tuple(int(n) for n in match.group("nums").split("."))
    return nums, (match.group("suffix") or "").lower()


_NUMBERS_FIRST = re.compile(r"^(?P<v>v?)(?P<nums>[^-+_]*)(?P<rest>.*)$", re.IGNORECASE)


def read_version(tag: str) -> Version | None:
    """The version a person meant, lookalikes in its numbers read as digits: `v2.l` →
    ((2, 1), ""), `1.O-alpine` → ((1, 0), "-alpine"); None if it is not one either way."""
    version = _version(tag)
    match = _NUMBERS_FIRST.match(tag)
    if version is not None or match is None or not any(c.isdigit() for c in match["nums"]):
        return version  # `lo` is a word, not 10
    numbers = match.group("nums").casefold().translate(_LOOKALIKE)
    return _version(match.group("v") + numbers + match.group("rest"))


def _is_prerelease(suffix: str) -> bool:
    return bool(re.match(r"^[-+_.]?(rc|alpha|beta|pre|dev|snapshot)", suffix))


def lookalike_key(text: str) -> str:
    """`text` as it reads: case folded, `l`/`I`/`|` → `1`, `O` → `0`, `rn` → `m`.

    Two names with the same key differ only in characters people and fonts confuse."""
    return text.casefold().translate(_LOOKALIKE).replace("rn", "m")


def is_lookalike(wanted: str, candidate: str) -> bool:
    """Whether `candidate` is `wanted` misread (and not the same string)."""
    return wanted != candidate and lookalike_key(wanted) == lookalike_key(candidate)


def single_edit(a: str, b: str) -> bool:
    """Whether `b` is `a` with one character inserted, deleted, replaced, or two neighbours
    swapped (Damerau-Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        return (len(diff) == 2 and diff[1] == diff[0] + 1
                and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((n for n, (x, y) in enumerate(zip(short, long, strict=False)) if x != y),
             len(short))
    return short[i:] == long[i + 1:]


def _compatible(wanted: Version, candidate: Version) -> bool:
    """Versions of one line: the same suffix, or a pre-release of a plain version."""
    return candidate[1] == wanted[1] or (not wanted[1] and _is_prerelease(candidate[1]))


def _version_move(wanted: str, candidate: str) -> bool:
    """Whether `candidate` is `wanted`'s version with other numbers (same shape): then the
    difference is a semver distance, not a typo."""
    w, c = read_version(wanted), _version(candidate)
    return w is not None and c is not None and _compatible(w, c) and len(w[0]) == len(c[0])


def semver_key(wanted: tuple[int, ...], candidate: Version) -> tuple[object, ...]:
    """Sort key of `candidate` as a neighbour of version `wanted` (smaller is closer)."""
    nums, suffix = candidate
    width = max(len(wanted), len(nums))
    w = wanted + (0,) * (width - len(wanted))
    c = nums + (0,) * (width - len(nums))
    common = next((i for i, (x, y) in enumerate(zip(w, c, strict=True)) if x != y), width)
    step = abs(w[common] - c[common]) if common < width else 0
    below = c <= w
    # below: the newest first (closest from under); above: the oldest first (closest from over)
    fine = tuple(-n for n in c) if below else c
    return (-common, step, _is_prerelease(suffix), not below, fine, suffix)


def _neighbours(wanted: str, tags: Sequence[str]) -> list[str]:
    """Tier 2: versions of `wanted`'s line, closest first (see the module docstring)."""
    version = read_version(wanted)
    if version is None:
        return []
    nums = version[0]
    line = [(v, t) for t in tags if (v := _version(t)) is not None and _compatible(version, v)]
    same_major = [(v, t) for v, t in line if v[0][0] == nums[0]]
    pool = same_major or [(v, t) for v, t in line if abs(v[0][0] - nums[0]) <= 1]
    pool.sort(key=lambda vt: (semver_key(nums, vt[0]), vt[1]))
    return [t for _, t in pool]


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def closest_names(wanted: str, available: Iterable[str], limit: int = 3) -> list[str]:
    """Names a person most likely meant by `wanted` (tiers 0, 1 and 3), best first."""
    return _ranked(wanted, available, limit, versions=False)


def closest_tags(wanted: str, available: Iterable[str], limit: int = 3) -> list[str]:
    """Tags a person most likely meant, best first (tiers 0 to 3 of the module docstring).

    `v2.l` → `v2.1` (a lookalike) even when `v2.2` is newer; `lates` → `latest`; `v3` (never
    pushed) → `v2.1`, the closest version below; `feature-x` among `main`, `develop` → nothing.
    """
    return _ranked(wanted, valid_tags(available), limit, versions=True)


def _ranked(wanted: str, available: Iterable[str], limit: int, versions: bool) -> list[str]:
    names = sorted(t for t in dict.fromkeys(available) if t != wanted)
    if not names or limit <= 0:
        return []
    key = lookalike_key(wanted)
    wanted_version = read_version(wanted) if versions else None
    matcher = difflib.SequenceMatcher(None)
    matcher.set_seq2(wanted)  # difflib caches facts about seq2: one set-up for every tag

    def ratio(tag: str) -> float:
        matcher.set_seq1(tag)
        return matcher.ratio()

    def near(tag: str) -> bool:  # get_close_matches's cheap upper bounds first
        matcher.set_seq1(tag)
        return (matcher.real_quick_ratio() >= TYPO_RATIO and matcher.quick_ratio() >= TYPO_RATIO
                and matcher.ratio() >= TYPO_RATIO and edit_distance(wanted, tag) <= 2)

    def moved(tag: str) -> bool:
        version = _version(tag) if wanted_version is not None else None
        return (wanted_version is not None and version is not None
                and _compatible(wanted_version, version)
                and len(version[0]) == len(wanted_version[0]))

    lookalikes: list[str] = []
    edits: list[str] = []
    spellings: list[str] = []
    for tag in names:  # one pass: a registry may list tens of thousands of tags
        if lookalike_key(tag) == key:
            lookalikes.append(tag)
        elif moved(tag):
            continue  # tier 2 ranks it
        elif single_edit(wanted, tag):
            edits.append(tag)
        elif near(tag):
            spellings.append(tag)
    edits.sort(key=lambda t: (-ratio(t), t))
    spellings.sort(key=lambda t: (-ratio(t), t))
    neighbours = _neighbours(wanted, names) if versions else []
    return list(dict.fromkeys([*lookalikes, *edits, *neighbours, *spellings]))[:limit]


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (insert, delete, replace, swap neighbours)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1,
                         previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], previous2[j - 2] + 1)
        previous2, previous = previous, row
    return previous[len(b)]


def why_close(wanted: str, tag: str) -> str:
    """Why `tag` was suggested for `wanted`, in a few words for the evidence line:
    `v2.1 reads like v2.l (1 typed as l)`, `latest is one character from lates`."""
    if is_lookalike(wanted, tag):
        swaps: list[str] = []
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, tag, wanted).get_opcodes():
            if op != "equal":
                swaps.append(f"{tag[i1:i2] or 'nothing'} typed as {wanted[j1:j2] or 'nothing'}")
        detail = "; ".join(dict.fromkeys(swaps)) if len(swaps) <= 3 else "case or lookalikes"
        return f"{tag} reads like {wanted} ({detail})"
    if single_edit(wanted, tag) and not _version_move(wanted, tag):
        return f"{tag} is one character from {wanted}"
    if tag in _neighbours(wanted, [tag]):
        return f"{tag} is the closest version to {wanted}"
    return f"{tag} is spelled like {wanted}"


def newest_tags(available: Iterable[str], count: int = NEWEST_SHOWN) -> list[str]:
    """The newest tags as far as names tell: versions, highest first, stable before
    pre-release; then the other tags by name (a listing carries no dates)."""
    tags = valid_tags(available)
    versions = [(v, t) for t in tags if (v := _version(t)) is not None]
    width = max((len(v[0]) for v, _ in versions), default=0)
    # `1.27` reads as 1.27.0: older than 1.27.3 (padded), then the longer name on a tie
    versions.sort(key=lambda vt: (_is_prerelease(vt[0][1]),
                                  tuple(-n for n in vt[0][0] + (0,) * (width - len(vt[0][0]))),
                                  -len(vt[0][0]), vt[0][1], vt[1]))
    named = {t for _, t in versions}
    return [*(t for _, t in versions), *sorted(t for t in tags if t not in named)][:count]


def no_close_tag(wanted: str, available: Iterable[str], count: int = NEWEST_SHOWN) -> str:
    """The sentence said instead of a guess: `no tag close to v9; the newest are v2.2, v2.1`."""
    listed = list(available)
    tags = valid_tags(listed)
    if not tags:
        usable = " usable" if listed else ""
        return f"no tag close to {wanted}; the repository lists no{usable} tags"
    if len(tags) == 1:
        return f"no tag close to {wanted}; the only tag is {tags[0]}"
    newest = newest_tags(tags, count)
    more = f" (of {len(tags)})" if len(tags) > len(newest) else ""
    what = "the newest are" if _version(newest[0]) is not None else "it lists"
    return f"no tag close to {wanted}; {what} {', '.join(newest)}{more}"


def swapped_paths(repository: str) -> list[str]:
    """Repository paths with two neighbouring segments swapped (`myapp/myorg` → `myorg/myapp`)."""
    parts = repository.split("/")
    if parts[:1] == ["library"]:
        return []
    candidates = []
    for i, (a, b) in enumerate(pairwise(parts)):
        if a == b:
            continue
        swapped = [*parts[:i], b, a, *parts[i + 2:]]
        candidates.append("/".join(swapped))
    return candidates


def host_corrections(host: str, known_hosts: Sequence[str]) -> list[str]:
    """Known registry hosts that `host` is probably a misspelling of (`registy.internal`,
    `registry.interna1`), lookalikes first."""
    others = [h for h in dict.fromkeys(k.lower() for k in known_hosts) if h != host.lower()]
    return closest_names(host.lower(), others)
