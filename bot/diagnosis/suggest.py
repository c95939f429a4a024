"""What would work instead: the closest existing tag, a swapped path, a misspelled host.

Pure functions over names the registry (or the cluster) already listed; bot/registry/investigator.py
asks the registry whether a suggestion really exists before anyone sees it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from itertools import pairwise

#: How alike two strings must be (difflib ratio) to call one a typo of the other.
TYPO_RATIO = 0.8
_VERSION = re.compile(r"^v?(?P<nums>\d+(?:\.\d+)*)(?P<suffix>[-+_].*)?$", re.IGNORECASE)


def _version(tag: str) -> tuple[tuple[int, ...], str] | None:
    """`v2.1` → ((2, 1), ""), `1.27.3-alpine` → ((1, 27, 3), "-alpine"); None if not a version."""
    match = _VERSION.match(tag)
    if not match:
        return None
    nums = tuple(int(n) for n in match.group("nums").split("."))
    return nums, (match.group("suffix") or "").lower()


def _is_prerelease(suffix: str) -> bool:
    return bool(re.match(r"^[-+_.]?(rc|alpha|beta|pre|dev|snapshot)", suffix))


def closest_tags(wanted: str, available: Iterable[str], limit: int = 3) -> list[str]:
    """Tags a person most likely meant, best first.

    A near-spelling wins (`lates` → `latest`, `1.2.7` → `1.27`); a version that was never
    pushed (`v3` when only `v2.1` exists) gets the newest versions with the same suffix
    (`-alpine` stays `-alpine`), stable releases before pre-releases.
    """
    tags = [t for t in dict.fromkeys(available) if t != wanted]
    if not tags:
        return []
    typos = difflib.get_close_matches(wanted, tags, n=limit, cutoff=TYPO_RATIO)
    wanted_version = _version(wanted)
    newest: list[str] = []
    if wanted_version is not None:
        nums, suffix = wanted_version
        versions = [(v, t) for t in tags if (v := _version(t)) is not None
                    and (v[1] == suffix or (not suffix and _is_prerelease(v[1])))]
        same_major = [(v, t) for v, t in versions if v[0][:1] == nums[:1]]
        pool = same_major or versions
        pool.sort(key=lambda vt: (not _is_prerelease(vt[0][1]), vt[0][0]), reverse=True)
        newest = [t for _, t in pool]
    ranked = list(dict.fromkeys([*typos, *newest]))
    if not ranked:
        ranked = difflib.get_close_matches(wanted, tags, n=limit, cutoff=0.5)
    return ranked[:limit]


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
    """Known registry hosts that `host` is probably a misspelling of (`registy.internal`)."""
    others = [h for h in dict.fromkeys(k.lower() for k in known_hosts) if h != host.lower()]
    return difflib.get_close_matches(host.lower(), others, n=3, cutoff=TYPO_RATIO)
