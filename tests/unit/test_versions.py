"""Tests for plexica_gitops.desired.versions.

Table tests come from node-semver's README ("Ranges" section); the property tests compare
`VersionRange.contains` with a naive oracle that works on the range's syntax tree and plain
tuples, without the `-0` comparator tricks or the `semver` package the implementation uses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import semver
from hypothesis import given, settings
from hypothesis import strategies as st

from plexica_gitops.desired.versions import (
    RangeSyntaxError,
    VersionRange,
    VersionSyntaxError,
    max_satisfying,
    parse_range,
    parse_version,
)

# ---------------------------------------------------------------------------------------------
# parse_version

VALID_VERSIONS = [
    "0.0.0",
    "1.2.3",
    "10.20.30",
    "1.2.3-alpha",
    "1.2.3-alpha.1",
    "1.0.0-0.3.7",
    "1.0.0-x.7.z.92",
    "1.0.0-x-y-z.--",
    "1.0.0+20130313144700",
    "1.0.0-beta+exp.sha.5114f85",
    "1.0.0+21AF26D3----117B344092BD",
    "1.0.0+001",  # leading zeros are fine in build metadata
    "9007199254740991.0.0",  # the largest number node-semver accepts
]


@pytest.mark.parametrize("text", VALID_VERSIONS)
def test_parse_version_accepts_semver_2(text: str) -> None:
    version = parse_version(text)
    assert isinstance(version, semver.Version)
    assert str(version) == text


def test_parse_version_fields() -> None:
    v = parse_version("1.22.333-rc.1+build.7")
    assert (v.major, v.minor, v.patch, v.prerelease, v.build) == (1, 22, 333, "rc.1", "build.7")


INVALID_VERSIONS = [
    ("v1.2.3", 'leading "v"'),
    ("V1.2.3", 'leading "v"'),
    ("1.2", "only 2 dot-separated"),
    ("1", "only 1 dot-separated"),
    ("1.2.3.4", "4 dot-separated"),
    ("01.2.3", "major '01' has a leading zero"),
    ("1.02.3", "minor '02' has a leading zero"),
    ("1.2.x", "patch 'x' is not a number"),
    ("a.b.c", "major 'a' is not a number"),
    ("latest", "'latest' is not a version number"),
    ("", "empty version"),
    (" 1.2.3", "whitespace"),
    ("1.2.3\n", "whitespace"),
    ("1.2.3-", "empty prerelease"),
    ("1.2.3+", "empty build metadata"),
    ("1.2.3-01", "'01' has a leading zero"),
    ("1.2.3-a..b", "empty identifier"),
    ("1.2.3-a_b", "'a_b' may only use letters, digits and '-'"),
    ("1.2.3+a+b", "'a+b' may only use"),
    ("1..3", "empty minor component"),
    ("1.2.3 ", "whitespace"),
    ("9007199254740992.0.0", "larger than npm allows"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID_VERSIONS)
def test_parse_version_rejects_with_a_helpful_message(text: str, fragment: str) -> None:
    with pytest.raises(VersionSyntaxError) as info:
        parse_version(text)
    message = str(info.value)
    assert repr(text) in message
    assert fragment in message
    assert "MAJOR.MINOR.PATCH" in message and '"1.4.2"' in message  # what a valid one looks like


def test_error_types_are_value_errors() -> None:
    assert issubclass(VersionSyntaxError, ValueError)
    assert issubclass(RangeSyntaxError, ValueError)


# ---------------------------------------------------------------------------------------------
# Desugaring: each sugar form must accept exactly the versions its node-semver expansion accepts

DESUGARED = [
    # hyphen ranges
    ("1.2.3 - 2.3.4", ">=1.2.3 <=2.3.4"),
    ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4"),
    ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0"),
    ("1.2.3 - 2", ">=1.2.3 <3.0.0-0"),
    ("* - 2", "<3.0.0-0"),
    ("1.2.3 - *", ">=1.2.3"),
    ("1.2.3-alpha - 2.0.0-beta", ">=1.2.3-alpha <=2.0.0-beta"),
    # x-ranges and partial versions
    ("*", ">=0.0.0"),
    ("", "*"),
    ("x", "*"),
    ("1.x", ">=1.0.0 <2.0.0-0"),
    ("1.X", ">=1.0.0 <2.0.0-0"),
    ("1.2.x", ">=1.2.0 <1.3.0-0"),
    ("1.2.*", ">=1.2.0 <1.3.0-0"),
    ("1", "1.x.x"),
    ("1.2", "1.2.x"),
    ("=1.2", "1.2.x"),
    ("1.*.*", "1.x"),
    # comparators with partial versions
    (">=2.1 <3.0", ">=2.1.0 <3.0.0-0"),
    (">= 2.1 < 3.0", ">=2.1.0 <3.0.0-0"),
    (">1", ">=2.0.0"),
    (">1.2", ">=1.3.0"),
    ("<=1.2", "<1.3.0-0"),
    ("<=1", "<2.0.0-0"),
    ("<1.2", "<1.2.0-0"),
    (">=1", ">=1.0.0"),
    (">*", "<0.0.0-0"),
    ("<x", "<0.0.0-0"),
    (">=*", "*"),
    ("<=*", "*"),
    # tilde
    ("~1.2.3", ">=1.2.3 <1.3.0-0"),
    ("~1.2", ">=1.2.0 <1.3.0-0"),
    ("~1", ">=1.0.0 <2.0.0-0"),
    ("~0.2.3", ">=0.2.3 <0.3.0-0"),
    ("~0.2", ">=0.2.0 <0.3.0-0"),
    ("~0", ">=0.0.0 <1.0.0-0"),
    ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0"),
    ("~ 1.2", ">=1.2.0 <1.3.0-0"),
    ("~*", "*"),
    # caret
    ("^1.2.3", ">=1.2.3 <2.0.0-0"),
    ("^0.2.3", ">=0.2.3 <0.3.0-0"),
    ("^0.0.3", ">=0.0.3 <0.0.4-0"),
    ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0"),
    ("^0.0.3-beta", ">=0.0.3-beta <0.0.4-0"),
    ("^1.2.x", ">=1.2.0 <2.0.0-0"),
    ("^0.0.x", ">=0.0.0 <0.1.0-0"),
    ("^0.0", ">=0.0.0 <0.1.0-0"),
    ("^1.x", ">=1.0.0 <2.0.0-0"),
    ("^0.x", ">=0.0.0 <1.0.0-0"),
    ("^ 1.2.3", ">=1.2.3 <2.0.0-0"),
    # alternatives
    ("1.2.7 || >=1.2.9 <2.0.0", "=1.2.7 || >=1.2.9 <2.0.0"),
    ("^1.0.0 || ^2.0.0", ">=1.0.0 <2.0.0-0 || >=2.0.0 <3.0.0-0"),
    ("1.x||2.x", ">=1.0.0 <3.0.0-0"),
]

_GRID_PRERELEASES = [None, "0", "alpha", "beta.2", "beta.4", "pr.2", "rc.1"]
GRID = [
    semver.Version(major, minor, patch, pre)
    for major, minor, patch in itertools.product(range(4), repeat=3)
    for pre in _GRID_PRERELEASES
]


@pytest.mark.parametrize(("sugar", "expansion"), DESUGARED)
def test_sugar_means_its_documented_expansion(sugar: str, expansion: str) -> None:
    rng, expected = parse_range(sugar), parse_range(expansion)
    mismatches = [str(v) for v in GRID if rng.contains(v) != expected.contains(v)]
    assert not mismatches


# ---------------------------------------------------------------------------------------------
# Direct examples, mostly from the node-semver README

SATISFIES = [
    (">=1.2.7", ["1.2.7", "1.2.8", "2.5.3", "1.3.9"], ["1.2.6", "1.1.0"]),
    ("1.2.7 || >=1.2.9 <2.0.0", ["1.2.7", "1.2.9", "1.4.6"], ["1.2.8", "2.0.0"]),
    ("^1.2.3", ["1.2.3", "1.9.9"], ["1.2.2", "2.0.0", "2.0.0-0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
    ("~1.2", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.9"]),
    (">=2.1 <3.0", ["2.1.0", "2.9.9"], ["2.0.9", "3.0.0"]),
    ("1.2.3 - 2.3.4", ["1.2.3", "2.3.4"], ["1.2.2", "2.3.5"]),
    ("1.2.3 - 2.3", ["2.3.9"], ["2.4.0"]),
    ("1.x", ["1.0.0", "1.99.99"], ["0.9.9", "2.0.0"]),
    ("", ["0.0.0", "99.0.0"], []),
    ("*", ["0.0.0", "99.0.0"], []),
    ("<1.2", ["1.1.99"], ["1.2.0"]),
    (">1.2", ["1.3.0"], ["1.2.99"]),
    ("<=1.2", ["1.2.99"], ["1.3.0"]),
    # build metadata never affects precedence
    ("1.2.3", ["1.2.3+build.1"], []),
    ("<=1.2.3+a", ["1.2.3+b"], []),
    (">1.2.3", [], ["1.2.3+b"]),
]

PRERELEASES = [
    # a prerelease matches only if the range names a prerelease of the same MAJOR.MINOR.PATCH
    (">1.2.3-alpha.3", ["1.2.3-alpha.7", "3.4.5", "1.2.3"], ["3.4.5-alpha.9", "1.2.3-alpha.3"]),
    ("^1.2.3-beta.2", ["1.2.3-beta.4", "1.2.3", "1.9.0"], ["1.2.4-beta.2", "1.2.3-beta.1"]),
    ("~1.2.3-beta.2", ["1.2.3-beta.4"], ["1.2.4-beta.2", "1.3.0"]),
    ("^0.0.3-beta", ["0.0.3-pr.2", "0.0.3"], ["0.0.3-alpha", "0.0.4-0", "0.0.4"]),
    ("*", [], ["1.0.0-beta"]),
    ("", [], ["1.0.0-beta"]),
    ("1.x", [], ["1.0.0-beta", "1.5.0-rc.1"]),
    ("<2.0.0", ["1.9.9"], ["2.0.0-rc.1", "1.5.0-rc.1"]),
    (">=1.0.0-alpha <2", ["1.0.0-beta", "1.0.0", "1.5.0"], ["1.5.0-beta", "1.0.0-0"]),
    ("1.2.3-alpha - 2.0.0-beta", ["2.0.0-alpha", "1.2.3-beta"], ["1.5.0-x", "2.0.0-rc"]),
    ("1.2.3-beta || 1.x", ["1.2.3-beta", "1.2.4"], ["1.2.4-beta", "1.2.3-alpha"]),
    ("=1.2.3-rc.1", ["1.2.3-rc.1", "1.2.3-rc.1+b"], ["1.2.3-rc.2", "1.2.3"]),
    # upper bounds are "<1.3.0-0", not "<1.3.0": another comparator naming a 1.3.0 prerelease
    # must not let 1.3.0 prereleases through
    ("~1.2 <=1.3.0-rc.1", ["1.2.5"], ["1.3.0-alpha"]),
    ("^1.2.3 >=2.0.0-alpha", [], ["2.0.0-beta", "2.0.0"]),
    ("<1.3.0 >=1.3.0-a", ["1.3.0-b"], ["1.3.0"]),
    # a range with an unconstrained alternative is just "*", which keeps out all prereleases
    ("1.2.3-beta || *", ["1.2.3", "0.1.0"], ["1.2.3-beta"]),
    ("1.2.3-beta || >=0.0.0", ["1.2.3"], ["1.2.3-beta"]),
    ("1.2.3-beta || * >=1.0.0", ["1.2.3-beta", "1.0.0"], ["0.1.0"]),
    # node-semver turns ">=0.0.0" into "*", which lets the other comparator admit 0.0.0-b
    ("0.x >=0.0.0-a", ["0.0.0-b", "0.5.0"], ["0.5.0-b"]),
    ("1.x >=1.0.0-a", ["1.5.0"], ["1.0.0-b"]),
]


@pytest.mark.parametrize(("text", "inside", "outside"), SATISFIES + PRERELEASES)
def test_contains(text: str, inside: list[str], outside: list[str]) -> None:
    rng = parse_range(text)
    assert [v for v in inside if not rng.contains(v)] == []
    assert [v for v in outside if rng.contains(v)] == []
    # strings and Version objects are interchangeable
    assert all(rng.contains(parse_version(v)) for v in inside)


def test_contains_rejects_an_invalid_version() -> None:
    with pytest.raises(VersionSyntaxError, match="leading"):
        parse_range("^1.0.0").contains("v1.2.0")


def test_version_range_value_semantics() -> None:
    rng = parse_range(" ^1.2 ")
    assert rng.text == " ^1.2 " and str(rng) == " ^1.2 "
    assert rng == VersionRange(" ^1.2 ") and hash(rng) == hash(VersionRange(" ^1.2 "))
    assert rng != parse_range("^1.2")  # the text is the identity, not the meaning
    with pytest.raises(RangeSyntaxError):
        VersionRange("^")  # constructing directly validates too


# ---------------------------------------------------------------------------------------------
# Syntax errors

INVALID_RANGES = [
    ("^", "'^'", "not followed by a version"),
    ("~", "'~'", "not followed by a version"),
    (">=", "'>='", "not followed by a version"),
    ("1.2.3 -", "'-'", "one version on each side"),
    ("- 1.2.3", "'-'", "one version on each side"),
    ("1.2.3 - 2 - 3", "'-'", "one version on each side"),
    ("1.2.3 - 2.0.0 >1.5", "'-'", "one version on each side"),
    ("1.2.3 -2.0.0", "'-2.0.0'", "spaces around"),
    (">=1 - 2", "'>=1'", "cannot have operators"),
    ("~>1.0", "'~>1.0'", 'write "~1.0"'),
    ("latest", "'latest'", "not a version number"),
    ("a.b.c", "'a.b.c'", "major 'a' is not a number"),
    (">=1.2.3.4", "'>=1.2.3.4'", "4 dot-separated"),
    ("1.x.3", "'1.x.3'", "write '1.x'"),
    ("1.2.x-beta", "'1.2.x-beta'", "needs a full MAJOR.MINOR.PATCH"),
    ("1.2-beta", "'1.2-beta'", "needs a full MAJOR.MINOR.PATCH"),
    ("v1.2.3", "'v1.2.3'", 'leading "v"'),
    (">=v1.2.3", "'>=v1.2.3'", 'leading "v"'),
    (">==1.2.3", "'>==1.2.3'", "two operators"),
    ("> = 1.2", "'> ='", "two operators"),
    ("1.x ||", "'||'", "empty alternative"),
    ("|| 1.x", "'||'", "empty alternative"),
    ("1 || || 2", "'||'", "empty alternative"),
    ("1 | 2", "'|'", '"||"'),
    ("^01.2.3", "'^01.2.3'", "leading zero"),
    ("1.2.3-", "'1.2.3-'", "empty prerelease"),
    ("=>1.2.3", "'=>1.2.3'", "two operators"),
    ("~x.1", "'~x.1'", "write 'x'"),
    ("<=1.0.9007199254740992", "'<=1.0.9007199254740992'", "larger than npm allows"),
    ("^1.2.3\n", "'\\n'", "a range is one line"),
    (">=1.0.0\r\n<2.0.0", "'\\r'", "a range is one line"),
    ("^1.2.3 ||\u2028 2.x", "'\\u2028'", "a range is one line"),
    ("^\u0661.2.3", "'^\u0661.2.3'", "is not a number"),
]


@pytest.mark.parametrize(("text", "part", "fragment"), INVALID_RANGES)
def test_parse_range_rejects_garbage_clearly(text: str, part: str, fragment: str) -> None:
    with pytest.raises(RangeSyntaxError) as info:
        parse_range(text)
    message = str(info.value)
    assert message.startswith(f"invalid version range {text!r} at {part}: ")
    assert fragment in message
    assert '"^1.2.3"' in message and '"1.2.3 - 2.3.4"' in message  # examples of valid syntax


# ---------------------------------------------------------------------------------------------
# max_satisfying


def test_max_satisfying() -> None:
    versions = ["1.2.3", "1.2.4", "1.3.0", "2.0.0", "1.9.0-beta"]
    assert max_satisfying(versions, parse_range("^1.2")) == parse_version("1.3.0")
    assert max_satisfying(versions, parse_range("~1.2")) == parse_version("1.2.4")
    assert max_satisfying(versions, parse_range("^3")) is None
    assert max_satisfying([], parse_range("*")) is None
    assert max_satisfying(versions, parse_range(">=1.9.0-alpha <2")) == parse_version("1.9.0-beta")
    mixed: list[semver.Version | str] = [parse_version("1.0.0"), "1.1.0", parse_version("0.9.0")]
    assert max_satisfying(mixed, parse_range("1")) == parse_version("1.1.0")


def test_max_satisfying_keeps_the_first_of_equal_versions() -> None:
    best = max_satisfying(["1.0.0+a", "1.0.0+b"], parse_range("1"))
    assert best is not None and best.build == "a"


def test_max_satisfying_rejects_an_invalid_version() -> None:
    with pytest.raises(VersionSyntaxError):
        max_satisfying(["1.0.0", "1.0"], parse_range("*"))


# ---------------------------------------------------------------------------------------------
# Property tests against a brute-force oracle
#
# The oracle sees versions as (major, minor, patch, prerelease) tuples and ranges as syntax
# trees. Each sugar form is expanded straight from the README into checks: "at least V"
# (precedence order) and "below the block T" (major/minor/patch tuple < T, which is what the
# implementation's "<T-0" comparators mean).

TV = tuple[int, int, int, str | None]  # a version for the oracle
Partial = tuple[int | None, int | None, int | None, str | None]  # None = wildcard
Check = Callable[[TV], bool]
Atom = tuple[str, str, Partial, Partial | None]  # (kind, operator, partial, hyphen upper end)
RangeTree = list[list[Atom]]  # alternatives of conjunctions

SMALL = st.integers(0, 4)
PRERELEASE_TAGS = ["0", "1", "alpha", "alpha.1", "alpha.beta", "beta", "beta.2", "beta.11", "rc.1"]
OPERATORS = ["", "=", "<", "<=", ">", ">="]


Key = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def precedence(v: TV) -> Key:
    """semver 2.0 ordering: a release sorts after its prereleases; numeric ids before words."""
    major, minor, patch, pre = v
    if pre is None:
        return (major, minor, patch, 1, ())
    ids = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in pre.split("."))
    return (major, minor, patch, 0, ids)


def at_least(bound: TV) -> list[Check]:
    # npm drops ">=0.0.0" entirely (it means "*"), which is visible for 0.0.0-x prereleases
    if bound == (0, 0, 0, None):
        return []
    return [lambda v: precedence(v) >= precedence(bound)]


def below_block(block: tuple[int, int, int]) -> list[Check]:
    return [lambda v: v[:3] < block]


def compare_full(op: str, bound: TV) -> list[Check]:
    if op == ">=":
        return at_least(bound)
    b = precedence(bound)
    table: dict[str, Callable[[Key], bool]] = {
        "": lambda k: k == b,
        "=": lambda k: k == b,
        "<": lambda k: k < b,
        "<=": lambda k: k <= b,
        ">": lambda k: k > b,
    }
    test = table[op]
    return [lambda v: test(precedence(v))]


def never(v: TV) -> bool:
    return False


def floor(p: Partial) -> TV:
    assert p[0] is not None
    return (p[0], p[1] or 0, p[2] or 0, None)


def block_after(p: Partial) -> tuple[int, int, int]:
    """The first M.m.p past everything the partial version `p` names."""
    major, minor, _, _ = p
    assert major is not None
    return (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)


def as_full(p: Partial) -> TV:
    assert p[0] is not None and p[1] is not None and p[2] is not None
    return (p[0], p[1], p[2], p[3])


def oracle_atom(atom: Atom) -> tuple[list[Check], set[tuple[int, int, int]]]:
    """The checks an atom imposes, and which M.m.p (if any) it lets prereleases of through."""
    kind, op, p, high = atom
    allow = {as_full(p)[:3]} if p[3] is not None else set()
    major, minor, patch, _ = p
    if kind == "hyphen":
        assert high is not None
        checks: list[Check] = []
        if major is not None:
            checks += at_least(floor(p) if patch is None else as_full(p))
        if high[0] is not None:
            if high[2] is None:
                checks += below_block(block_after(high))
            else:
                checks += compare_full("<=", as_full(high))
                if high[3] is not None:
                    allow.add(as_full(high)[:3])
        return checks, allow
    if major is None:  # "*", "x", "~*", ">=x", ...: anything, except "<*" and ">*": nothing
        return ([never] if op in ("<", ">") else []), allow
    if kind == "~":
        upper = block_after(p) if patch is None else block_after((major, minor, None, None))
        return at_least(floor(p) if patch is None else as_full(p)) + below_block(upper), allow
    if kind == "^":
        # bump the left-most non-zero component given, or the last one given if all are zero
        given_ = [c for c in (major, minor, patch) if c is not None]
        i = next((i for i, c in enumerate(given_) if c != 0), len(given_) - 1)
        bumped = [*given_[:i], given_[i] + 1, 0, 0][:3]
        upper_t = (bumped[0], bumped[1], bumped[2])
        return at_least(floor(p) if patch is None else as_full(p)) + below_block(upper_t), allow
    if patch is not None:
        return compare_full(op, as_full(p)), allow
    # a comparator with a partial version speaks about the whole block
    if op in ("", "="):
        return at_least(floor(p)) + below_block(block_after(p)), allow
    if op == ">=":
        return at_least(floor(p)), allow
    if op == ">":
        nxt = block_after(p)
        return at_least((nxt[0], nxt[1], nxt[2], None)), allow
    if op == "<":
        low = floor(p)
        return below_block((low[0], low[1], low[2])), allow
    assert op == "<="
    return below_block(block_after(p)), allow


def oracle(tree: RangeTree) -> Check:
    """The oracle's membership test for a whole range: any conjunction whose checks all pass."""
    conjunctions: list[tuple[list[Check], set[tuple[int, int, int]]]] = []
    for conjunction in tree:
        checks: list[Check] = []
        allow: set[tuple[int, int, int]] = set()
        for atom in conjunction:
            c, a = oracle_atom(atom)
            checks += c
            allow |= a
        conjunctions.append((checks, allow))
    if len(conjunctions) > 1 and any(not checks for checks, _ in conjunctions):
        # npm: an alternative that constrains nothing makes the whole range "*", so no
        # prerelease gets in, not even one that another alternative names
        conjunctions = [([], set())]

    def contains(v: TV) -> bool:
        return any(
            all(check(v) for check in checks) and (v[3] is None or v[:3] in allow)
            for checks, allow in conjunctions
        )

    return contains


def render(v: TV, build: str | None) -> str:
    text = f"{v[0]}.{v[1]}.{v[2]}"
    text += f"-{v[3]}" if v[3] is not None else ""
    return text + (f"+{build}" if build is not None else "")


BUILDS = st.sampled_from([None, None, None, "build.5", "001"])
PRERELEASE = st.none() | st.sampled_from(PRERELEASE_TAGS)


@st.composite
def versions(draw: st.DrawFn) -> tuple[TV, str]:
    v: TV = (draw(SMALL), draw(SMALL), draw(SMALL), draw(PRERELEASE))
    return v, render(v, draw(BUILDS))


@st.composite
def versions_near(draw: st.DrawFn, p: Partial) -> tuple[TV, str]:
    """A version at or next to a bound the range mentions, where off-by-one bugs live."""
    filled = [draw(SMALL) if c is None else c for c in p[:3]]
    i = draw(st.integers(0, 2))
    filled[i] = max(0, filled[i] + draw(st.sampled_from([-1, 0, 1, 1])))
    pre = draw(st.sampled_from([p[3], p[3], None])) if p[3] is not None else draw(PRERELEASE)
    v: TV = (filled[0], filled[1], filled[2], pre)
    return v, render(v, draw(BUILDS))


# range bounds lean towards 0, where caret and the ">=0.0.0" rule behave specially
RANGE_NUMBER = st.sampled_from([0, 0, 1, 2, 3, 4])


@st.composite
def partials(draw: st.DrawFn, near: Partial | None = None) -> tuple[Partial, str]:
    if near is not None and near[0] is not None and draw(st.booleans()):
        # A full version on (or one block past) `near`: bounds that meet are where the
        # prerelease rule and the "-0" upper bounds matter
        numbers = [c or 0 for c in near[:3]]
        i = draw(st.integers(0, 3))
        if i < 3:
            numbers[i:] = [numbers[i] + 1] + [0] * (2 - i)
        given_ = 3
    else:
        given_ = draw(st.sampled_from([0, 1, 1, 2, 2, 3, 3, 3, 3, 3]))
        numbers = [draw(RANGE_NUMBER) for _ in range(given_)]
    wildcards = draw(st.integers(1 if given_ == 0 else 0, 3 - given_))
    char = draw(st.sampled_from("xX*"))
    pre = draw(PRERELEASE) if given_ == 3 else None
    text = ".".join([str(n) for n in numbers] + [char] * wildcards)
    text += f"-{pre}" if pre is not None else ""
    padded: list[int | None] = [*numbers, None, None, None]
    return (padded[0], padded[1], padded[2], pre), text


@st.composite
def atoms(draw: st.DrawFn, near: Partial | None = None) -> tuple[Atom, str]:
    kind = draw(st.sampled_from(["cmp", "~", "^"]))
    op = draw(st.sampled_from(OPERATORS)) if kind == "cmp" else kind
    partial, text = draw(partials(near))
    space = " " if op and draw(st.booleans()) else ""
    return (kind, op, partial, None), f"{op}{space}{text}"


@st.composite
def hyphens(draw: st.DrawFn) -> tuple[Atom, str]:
    low, low_text = draw(partials())
    high, high_text = draw(partials(low))
    return ("hyphen", "", low, high), f"{low_text} - {high_text}"


@st.composite
def conjunctions(draw: st.DrawFn) -> tuple[list[Atom], str]:
    if draw(st.integers(0, 4)) == 0:
        hyphen, text = draw(hyphens())
        return [hyphen], text
    # mostly one or two atoms, later ones often next to the first: three unrelated bounds
    # rarely leave anything to match
    first = draw(atoms())
    drawn = [first] + [draw(atoms(first[0][2])) for _ in range(draw(st.sampled_from([0, 1, 1, 2])))]
    separator = draw(st.sampled_from([" ", "  ", "\t"]))
    return [a for a, _ in drawn], separator.join(t for _, t in drawn)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[RangeTree, str]:
    drawn = [draw(conjunctions()) for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3])))]
    separator = draw(st.sampled_from([" || ", "||", "  ||  "]))
    return [c for c, _ in drawn], separator.join(t for _, t in drawn)


def candidates_for(tree: RangeTree, min_size: int = 0) -> st.SearchStrategy[list[tuple[TV, str]]]:
    near = st.one_of(*map(versions_near, bounds_of(tree)))
    return st.lists(st.one_of(versions(), near, near), min_size=min_size, max_size=30)


def bounds_of(tree: RangeTree) -> list[Partial]:
    return [p for conj in tree for atom in conj for p in (atom[2], atom[3]) if p is not None]


def blocks_around(bounds: list[Partial]) -> list[tuple[int, int, int]]:
    """Each M.m.p a bound names, the blocks just past it (bumps) and the ones just before."""
    blocks: set[tuple[int, int, int]] = set()
    for p in bounds:
        if p[0] is not None:
            major, minor, patch, _ = floor(p)
            blocks |= {(major, minor, patch), (major + 1, 0, 0), (major, minor + 1, 0)}
            blocks.add((major, minor, patch + 1))
            blocks |= {(major, minor, patch - 1), (major, minor - 1, 4), (major - 1, 4, 4)}
    return sorted(b for b in blocks if min(b) >= 0)


def prereleases_of(blocks: list[tuple[int, int, int]]) -> list[tuple[TV, str]]:
    # a prerelease of any other block is always out, so these are the interesting ones
    return [
        ((*block, pre), render((*block, pre), build))
        for block in blocks
        for pre, build in zip(PRERELEASE_TAGS, itertools.cycle([None, None, "build.5"]))
    ]


# Every release in the small version space (parsed once: this test runs them hundreds of times)
RELEASES: list[tuple[TV, semver.Version | str]] = [
    ((major, minor, patch, None), semver.Version(major, minor, patch))
    for major, minor, patch in itertools.product(range(5), repeat=3)
]


@settings(max_examples=150, deadline=None)
@given(ranges())
def test_contains_agrees_with_the_oracle(rng: tuple[RangeTree, str]) -> None:
    tree, text = rng
    parsed, expected = parse_range(text), oracle(tree)
    for v, given_v in RELEASES + prereleases_of(blocks_around(bounds_of(tree))):
        assert parsed.contains(given_v) == expected(v), (text, str(given_v))


def small_partials(numbers: range, tags: list[str | None]) -> list[tuple[Partial, str]]:
    found: list[tuple[Partial, str]] = [((None, None, None, None), "*")]
    for given_ in (1, 2, 3):
        for nums in itertools.product(numbers, repeat=given_):
            padded = [*nums, None, None]
            text = ".".join(map(str, nums))
            for pre in tags if given_ == 3 else [None]:
                suffix = f"-{pre}" if pre is not None else ""
                found.append(((padded[0], padded[1], padded[2], pre), text + suffix))
    return found


# Every single form over small numbers: nothing can hide a wrong bound here, unlike in a range
# with "||" and several comparators
SINGLE_FORMS: list[tuple[Atom, str]] = [
    *(
        ((kind, op, p, None), f"{op}{text}")
        for p, text in small_partials(range(3), [None, "alpha", "0"])
        for kind, op in [("cmp", op) for op in OPERATORS] + [("~", "~"), ("^", "^")]
    ),
    *(
        (("hyphen", "", low, high), f"{low_text} - {high_text}")
        for (low, low_text), (high, high_text) in itertools.product(
            small_partials(range(2), [None, "alpha"]), repeat=2
        )
    ),
]


def test_every_small_form_agrees_with_the_oracle() -> None:
    tags = ["0", "alpha", "beta.2"]
    mismatches = []
    for atom, text in SINGLE_FORMS:
        parsed, expected = parse_range(text), oracle([[atom]])
        blocks = blocks_around(bounds_of([[atom]])) or [(0, 0, 0), (1, 2, 3)]
        for block in blocks:
            for pre in [None, *tags]:
                v: TV = (*block, pre)
                if parsed.contains(semver.Version(*block, pre)) != expected(v):
                    mismatches.append((text, render(v, None)))
    assert mismatches == []


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_max_satisfying_is_the_max_of_the_brute_force_filter(data: st.DataObject) -> None:
    tree, text = data.draw(ranges(), label="range")
    candidates = data.draw(candidates_for(tree), label="versions")
    best = max_satisfying([t for _, t in candidates], parse_range(text))
    inside = [v for v, _ in candidates if oracle(tree)(v)]
    if not inside:
        assert best is None
    else:
        assert best is not None
        got: TV = (best.major, best.minor, best.patch, best.prerelease)
        assert precedence(got) == max(precedence(v) for v in inside)


@settings(max_examples=100, deadline=None)
@given(versions(), versions())
def test_version_order_matches_semver_precedence(a: tuple[TV, str], b: tuple[TV, str]) -> None:
    (va, ta), (vb, tb) = a, b
    pa, pb = parse_version(ta), parse_version(tb)
    assert str(pa) == ta
    assert (pa < pb) == (precedence(va) < precedence(vb))
    assert (pa == pb) == (precedence(va) == precedence(vb))
