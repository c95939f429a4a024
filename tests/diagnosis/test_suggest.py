"""Suggestions from what a registry lists: lookalikes, typos, versions, swapped paths, hosts.

Table tests pin the cases people hit (issue 12, Deliver 4); the property tests below draw
thousands of listings from a fixed seed (deterministic, no extra dependency) and check the
rules hold for all of them, not only for the examples.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from bot.diagnosis.suggest import (
    TYPO_RATIO,
    _ratio,
    _version,
    closest_names,
    closest_tags,
    host_corrections,
    is_lookalike,
    lookalike_key,
    newest_tags,
    no_close_tag,
    read_version,
    single_edit,
    swapped_paths,
    why_close,
)

NGINX_TAGS = ["1.27.3", "1.27.3-alpine", "1.27", "1.26.2", "latest", "stable", "mainline",
              "alpine", "1.27.4-rc1"]
APP_TAGS = ["v2.0", "v2.1", "v2.2", "v1.9", "main"]


@pytest.mark.parametrize(("wanted", "available", "first"), [
    # near spellings
    ("lates", NGINX_TAGS, "latest"),
    ("latset", NGINX_TAGS, "latest"),
    ("stabel", NGINX_TAGS, "stable"),
    ("1.27.3-alpin", NGINX_TAGS, "1.27.3-alpine"),
    ("1.2.7", ["1.27", "1.2.6"], "1.27"),  # a dot in the wrong place is a typo, not 1.2.x
    ("16.44", ["16.4", "16.3", "15.8", "latest"], "16.4"),
    # lookalikes beat every other single edit and the newest version
    ("v2.l", APP_TAGS, "v2.1"),
    ("v2.I", APP_TAGS, "v2.1"),
    ("v2.|", APP_TAGS, "v2.1"),
    ("v2.O", APP_TAGS, "v2.0"),
    ("v2.o", APP_TAGS, "v2.0"),
    ("vl.9", APP_TAGS, "v1.9"),
    ("rnain", APP_TAGS, "main"),
    ("MAIN", APP_TAGS, "main"),
    ("V2.2", APP_TAGS, "v2.2"),
    ("Latest", NGINX_TAGS, "latest"),
    ("1.27.3-AlPiNe", NGINX_TAGS, "1.27.3-alpine"),
    ("release-2O24.ll", ["release-2024.11", "release-2024.12", "release-2025.01"],
     "release-2024.11"),
    # versions never pushed: the closest of the same line
    ("v3", ["v2.1", "v2.0", "v1.9"], "v2.1"),
    ("v2.2", ["v2.1", "v2.0", "v1.9", "v10.0"], "v2.1"),
    ("3.0", ["2.1", "2.0.5", "1.0"], "2.1"),
    ("1.28-alpine", NGINX_TAGS, "1.27.3-alpine"),
    ("1.27.9", ["1.27.3", "1.27.10", "1.21.9", "1.28.0", "1.26.9"], "1.27.10"),
    ("1.27.4", ["1.26.4", "1.27.2", "1.28.4"], "1.27.2"),  # same minor beats a digit typo
    ("1.27.5", ["1.27.4", "1.27.6"], "1.27.4"),  # a tie: the one below (it exists for sure)
    ("2.1", ["v2.1", "v2.0"], "v2.1"),  # the `v` is a spelling, not a version
    ("1.4.0", ["1.4.0-rc2", "1.3.9"], "1.4.0-rc2"),  # the same numbers, not yet released
    # a lookalike that is not there: the neighbours of the version it reads as
    ("v2.4.l", ["v2.4.9", "v2.4.2", "v2.5.1"], "v2.4.2"),
    ("1.O-alpine", ["1.1-alpine", "1.0", "2.0-alpine"], "1.1-alpine"),
])
def test_closest_tag(wanted: str, available: list[str], first: str) -> None:
    assert closest_tags(wanted, available)[0] == first


def test_v2_l_means_v2_1_not_the_newest() -> None:
    assert closest_tags("v2.l", ["v2.2", "v2.1", "v2.0"]) == ["v2.1", "v2.0", "v2.2"]


def test_semver_neighbours_same_major_minor_first() -> None:
    tags = ["1.28.0", "1.27.1", "1.26.9", "1.27.8", "2.0.0", "0.9.0"]
    assert closest_tags("1.27.9", tags, limit=5) == ["1.27.8", "1.27.1", "1.26.9", "1.28.0"]


def test_stable_versions_before_prereleases_and_limit() -> None:
    tags = ["2.0.1-rc", "2.0.0", "1.9.9", "1.9.8"]
    assert closest_tags("2.5.0", tags) == ["2.0.0", "2.0.1-rc"]
    assert len(closest_tags("1.9.7", [f"1.9.{i}" for i in range(20)], limit=3)) == 3
    assert closest_tags("1.9.7", ["1.9.1"], limit=0) == []


@pytest.mark.parametrize(("wanted", "available"), [
    ("feature-x", ["main", "develop"]),
    ("v1", []),
    ("v1", ["v1"]),
    ("v9", ["v2.2", "v2.1", "main"]),  # majors apart: not a neighbour
    ("1.0.0-alpine", ["1.0.0", "1.0.1"]),  # another line (no -alpine build)
    ("nightly", ["latest", "stable"]),
    ("sha-3f2a9c1", ["sha-77b0e4d", "sha-91cc2a0"]),  # commit tags are not spellings
])
def test_nothing_close_means_no_suggestion(wanted: str, available: list[str]) -> None:
    assert closest_tags(wanted, available) == []


@pytest.mark.parametrize(("wanted", "available", "said"), [
    ("v9", ["v2.2", "v2.1", "v2.0", "v1.9", "main"],
     "no tag close to v9; the newest are v2.2, v2.1, v2.0 (of 5)"),
    ("feature-x", ["main", "develop"], "no tag close to feature-x; it lists develop, main"),
    ("v1", [], "no tag close to v1; the repository lists no tags"),
    ("v1", ["nightly"], "no tag close to v1; the only tag is nightly"),
    ("2.0", ["1.27", "1.27.3", "1.26.0-rc1", "1.26.0"],
     "no tag close to 2.0; the newest are 1.27.3, 1.27, 1.26.0 (of 4)"),
])
def test_no_close_tag_says_so_with_the_newest(wanted: str, available: list[str],
                                              said: str) -> None:
    assert no_close_tag(wanted, available) == said


@pytest.mark.parametrize(("tag", "read"), [
    ("v2.l", ((2, 1), "")), ("1.O-alpine", ((1, 0), "-alpine")), ("V2.I", ((2, 1), "")),
    ("2.1", ((2, 1), "")), ("lates", None), ("alpine", None), ("lo", None), ("io.l", None),
    ("1.ol", ((1, 1), "")),
])
def test_read_version_reads_lookalikes_in_the_numbers_only(
        tag: str, read: tuple[tuple[int, ...], str] | None) -> None:
    assert read_version(tag) == read


def test_names_that_are_not_tags_are_never_suggested_nor_shown() -> None:
    """A registry's listing is its own text: escape sequences, spaces or 200 characters are
    no tag a runtime could pull."""
    hostile = ["v2.1\x1b[2J", "v2.1 ", "-v2.1", "v2.1/../x", "v" + "1" * 200, "v2.\u202e1"]
    assert closest_tags("v2.l", hostile) == []
    assert closest_tags("v2.l", [*hostile, "v2.1"]) == ["v2.1"]
    said = no_close_tag("v9", [*hostile, "v2.0"])
    assert said == "no tag close to v9; the only tag is v2.0"
    assert no_close_tag("v9", hostile) == \
        "no tag close to v9; the repository lists no usable tags"


def test_newest_tags_orders_versions_then_names() -> None:
    assert newest_tags(["main", "1.9", "1.10", "1.10-rc1", "latest"], 5) == [
        "1.10", "1.9", "1.10-rc1", "latest", "main"]


@pytest.mark.parametrize(("a", "b", "alike"), [
    ("v2.l", "v2.1", True), ("v2.I", "v2.1", True), ("v2.O", "v2.0", True),
    ("rnain", "main", True), ("MAIN", "main", True), ("v2.1", "v2.1", False),
    ("v2.2", "v2.1", False), ("lates", "latest", False),
])
def test_lookalikes(a: str, b: str, alike: bool) -> None:
    assert is_lookalike(a, b) is alike
    assert is_lookalike(b, a) is alike


@pytest.mark.parametrize(("wanted", "tag", "said"), [
    ("v2.l", "v2.1", "v2.1 reads like v2.l (1 typed as l)"),
    ("rnain", "main", "main reads like rnain (m typed as rn)"),
    ("release-2O24.ll", "release-2024.11",
     "release-2024.11 reads like release-2O24.ll (0 typed as O; 11 typed as ll)"),
    ("lates", "latest", "latest is one character from lates"),
    ("v3", "v2.1", "v2.1 is the closest version to v3"),
    ("1.27.4", "1.27.2", "1.27.2 is the closest version to 1.27.4"),
    ("1.27.3-alpnie", "1.27.3-alpine", "1.27.3-alpine is one character from 1.27.3-alpnie"),
    ("release-candidate", "release-candidat3x", "release-candidat3x is spelled like "
     "release-candidate"),
])
def test_why_close_says_which_rule_chose_the_tag(wanted: str, tag: str, said: str) -> None:
    assert tag in closest_tags(wanted, [tag])
    assert why_close(wanted, tag) == said


def test_swapped_paths() -> None:
    assert swapped_paths("myapp/myorg") == ["myorg/myapp"]
    assert swapped_paths("team/app/api") == ["app/team/api", "team/api/app"]
    assert swapped_paths("library/nginx") == []
    assert swapped_paths("app") == []


def test_host_corrections() -> None:
    known = ["registry.internal", "registry.example.com", "docker.io"]
    assert host_corrections("registy.internal", known) == ["registry.internal"]
    assert host_corrections("registry.internal", known) == []
    assert host_corrections("quay.io", known) == []
    # a lookalike host ranks above a host one edit away
    assert host_corrections("registry.interna1", ["registry.internals", "registry.internal"]) \
        == ["registry.internal", "registry.internals"]
    assert host_corrections("REGISTRY.INTERNAL", known) == []  # hosts are case-insensitive


def test_closest_names_has_no_version_tier() -> None:
    assert closest_names("v3", ["v2.1", "v2.0"]) == []
    assert closest_names("team/ap", ["team/app", "team/api", "other/x"]) == ["team/api",
                                                                             "team/app"]


# -- properties over generated listings (fixed seed: the same cases every run) ----------------

CASES = 1500


def _rng(name: str) -> random.Random:
    return random.Random(f"suggest-{name}")  # noqa: S311 (test data, not secrets)


def _version_tag(rng: random.Random) -> str:
    parts = [str(rng.randint(0, 12)) for _ in range(rng.randint(2, 3))]
    return rng.choice(["", "v"]) + ".".join(parts) + rng.choice(["", "", "-alpine", "-rc1"])


def _listing(rng: random.Random) -> list[str]:
    words = ["latest", "stable", "main", "develop", "edge", "nightly"]
    tags = {_version_tag(rng) for _ in range(rng.randint(0, 25))}
    tags |= set(rng.sample(words, rng.randint(0, 3)))
    return sorted(tags)


def _damerau(a: str, b: str) -> int:
    """Optimal string alignment distance, the textbook table (the oracle for single_edit)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _wanted(rng: random.Random, tags: list[str]) -> str:
    """A tag a person might type: one of the listing's, mangled, or something else."""
    if tags and rng.random() < 0.7:
        tag = list(rng.choice(tags))
        i = rng.randrange(len(tag))
        match rng.randint(0, 3):
            case 0:
                tag[i] = rng.choice("0123456789lIOo.")
            case 1:
                del tag[i]
            case 2:
                tag.insert(i, rng.choice("0123456789."))
            case _:
                tag = list("".join(tag).upper())
        return "".join(tag) or "x"
    return _version_tag(rng)


def _cases(name: str) -> Iterator[tuple[random.Random, list[str], str]]:
    rng = _rng(name)
    for _ in range(CASES):
        tags = _listing(rng)
        yield rng, tags, _wanted(rng, tags)


def test_single_edit_agrees_with_damerau_levenshtein() -> None:
    rng = _rng("edit")
    for _ in range(CASES * 4):
        a = "".join(rng.choices("ab1.", k=rng.randint(0, 5)))
        b = "".join(rng.choices("ab1.", k=rng.randint(0, 5)))
        assert single_edit(a, b) is (_damerau(a, b) == 1), (a, b)


def test_results_are_listed_distinct_bounded_and_never_the_wanted_tag() -> None:
    for rng, tags, wanted in _cases("shape"):
        limit = rng.randint(1, 5)
        found = closest_tags(wanted, tags, limit)
        assert len(found) <= limit
        assert len(set(found)) == len(found)
        assert wanted not in found
        assert set(found) <= set(tags)


def test_results_do_not_depend_on_listing_order_or_repeats() -> None:
    for rng, tags, wanted in _cases("order"):
        shuffled = tags * 2
        rng.shuffle(shuffled)
        assert closest_tags(wanted, shuffled) == closest_tags(wanted, tags), (wanted, tags)


def test_every_result_is_close_never_a_guess() -> None:
    for _, tags, wanted in _cases("close"):
        want_v = read_version(wanted)
        for tag in closest_tags(wanted, tags, limit=10):
            tag_v = _version(tag)
            neighbour = (want_v is not None and tag_v is not None
                         and abs(want_v[0][0] - tag_v[0][0]) <= 1)
            assert (is_lookalike(wanted, tag) or single_edit(wanted, tag) or neighbour
                    or _ratio(wanted, tag) >= TYPO_RATIO), (wanted, tag, tags)


def test_a_lookalike_is_always_first() -> None:
    rng = _rng("lookalike")
    swaps = {"1": "lIi|", "0": "Oo"}
    checked = 0
    for _ in range(CASES):
        tags = sorted({_version_tag(rng) for _ in range(rng.randint(1, 25))})
        meant = rng.choice(tags)
        spots = [i for i, ch in enumerate(meant) if ch in swaps]
        if not spots:
            continue
        typed = list(meant)
        for i in rng.sample(spots, rng.randint(1, len(spots))):
            typed[i] = rng.choice(swaps[typed[i]])
        wanted = "".join(typed)
        if rng.random() < 0.3:
            wanted = wanted.upper()
        # digits-only listings: no other tag reads the same
        assert [t for t in tags if lookalike_key(t) == lookalike_key(wanted)] == [meant]
        assert closest_tags(wanted, tags)[0] == meant, (wanted, tags)
        checked += 1
    assert checked > CASES // 2


def test_same_major_and_minor_come_before_other_minors() -> None:
    rng = _rng("semver")
    for _ in range(CASES):
        major, minor = rng.randint(0, 5), rng.randint(0, 20)
        same = {f"{major}.{minor}.{rng.randint(0, 30)}" for _ in range(rng.randint(1, 5))}
        other = {f"{major}.{m}.{rng.randint(0, 30)}" for m in rng.sample(range(21), 4)
                 if m != minor}
        wanted = f"{major}.{minor}.{rng.randint(31, 40)}"  # never pushed, no digit typo of one
        found = closest_tags(wanted, sorted(same | other), limit=len(same))
        assert set(found) == same, (wanted, found)
        patches = [int(t.split(".")[2]) for t in found]
        assert patches == sorted(patches, reverse=True)  # all below: the closest first


def test_nothing_in_common_suggests_nothing_and_says_the_newest() -> None:
    rng = _rng("far")
    for _ in range(CASES):
        tags = _listing(rng)
        wanted = "".join(rng.choices("qwxyz", k=rng.randint(6, 12)))
        assert closest_tags(wanted, tags) == []
        said = no_close_tag(wanted, tags)
        assert said.startswith(f"no tag close to {wanted}; ")
        assert all(t in said for t in newest_tags(tags))
