"""Semantic versions and npm-style version ranges.

Plugin authors write dependency ranges and `compat.core` the way they would in a package.json,
so a range must mean exactly what npm makes of it. Rather than approximating ranges with
intervals, every form is desugared into node-semver's own comparator sets (same `-0` upper
bounds, same prerelease rule), which keeps the edge cases (`<=1.2`, `>1`, prereleases,
`^0.0.x`) in agreement with npm.

The parser is deliberately stricter than node-semver about input that is almost certainly a
mistake (`v1.2.3`, `~>1.0`, `1.2.x-beta`, `1.x ||`): those are rejected with a message rather
than silently given a meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, NoReturn

import semver

__all__ = [
    "RangeSyntaxError",
    "VersionRange",
    "VersionSyntaxError",
    "max_satisfying",
    "parse_range",
    "parse_version",
]

_VERSION_EXAMPLE = 'expected MAJOR.MINOR.PATCH[-prerelease][+build], e.g. "1.4.2" or "2.0.0-rc.1"'
_RANGE_EXAMPLE = (
    'valid ranges look like "^1.2.3", "~1.2", ">=1.2.0 <2.0.0", "1.x", "1.2.3 - 2.3.4" '
    'or "^1.0.0 || ^2.0.0"'
)


class VersionSyntaxError(ValueError):
    """A string that is not a strict semver 2.0 version."""


class RangeSyntaxError(ValueError):
    """A string that is not a valid npm-style version range."""


class _Problem(Exception):
    """What is wrong with a version-like string; the caller adds the surrounding context."""


_NUMBER = re.compile(r"[0-9]+")
_WHITESPACE = re.compile(r"\s")
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines splits on
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")
_WILDCARDS = frozenset({"x", "X", "*"})
_COMPONENTS = ("major", "minor", "patch")
_MAX_SAFE_INTEGER = 2**53 - 1  # node-semver's limit: npm cannot represent anything larger


class _Partial(NamedTuple):
    """A version in which trailing components may be wildcards (None), as ranges allow."""

    major: int | None
    minor: int | None
    patch: int | None
    prerelease: str | None
    build: str | None

    def full(self) -> semver.Version:
        assert self.major is not None and self.minor is not None and self.patch is not None
        return semver.Version(self.major, self.minor, self.patch, self.prerelease, self.build)


def _check_identifiers(text: str, what: str, *, numeric_rules: bool) -> None:
    if not text:
        separator = "-" if what == "prerelease" else "+"
        raise _Problem(f"empty {what} after {separator!r}")
    for ident in text.split("."):
        if not ident:
            raise _Problem(f"empty identifier in {what} {text!r}")
        if not _IDENTIFIER.fullmatch(ident):
            raise _Problem(f"{what} identifier {ident!r} may only use letters, digits and '-'")
        # semver 2.0 forbids leading zeros in numeric prerelease identifiers (not in build)
        if numeric_rules and _NUMBER.fullmatch(ident) and len(ident) > 1 and ident[0] == "0":
            raise _Problem(f"numeric {what} identifier {ident!r} has a leading zero")


def _parse_partial(text: str, *, allow_partial: bool) -> _Partial:
    if not text:
        raise _Problem("empty version")
    if _WHITESPACE.search(text):
        raise _Problem("whitespace is not allowed inside a version")
    if text[0] in "vV":
        raise _Problem(f'a leading "v" is not allowed (write {text[1:]!r})')
    rest, plus, build = text.partition("+")
    core, dash, prerelease = rest.partition("-")
    parts = core.split(".")
    if len(parts) > 3:
        raise _Problem(f"{len(parts)} dot-separated components, but MAJOR.MINOR.PATCH is 3")
    numbers: list[int | None] = []
    for name, part in zip(_COMPONENTS, parts, strict=False):
        if allow_partial and part in _WILDCARDS:
            numbers.append(None)
            continue
        if not part:
            raise _Problem(f"empty {name} component")
        if not _NUMBER.fullmatch(part):
            if len(parts) == 1 and not dash and not plus:
                raise _Problem(f"{part!r} is not a version number")
            also = " or a wildcard (x, X, *)" if allow_partial else ""
            raise _Problem(f"{name} {part!r} is not a number{also}")
        if len(part) > 1 and part[0] == "0":
            raise _Problem(f"{name} {part!r} has a leading zero")
        if numbers and numbers[-1] is None:
            # node-semver rejects "1.x.3" as well: a wildcard covers everything after it
            shorter = ".".join(parts[: len(numbers)])
            raise _Problem(f"a wildcard cannot be followed by a number (write {shorter!r})")
        if int(part) > _MAX_SAFE_INTEGER:
            raise _Problem(f"{name} {part!r} is larger than npm allows ({_MAX_SAFE_INTEGER})")
        numbers.append(int(part))
    if not allow_partial and len(parts) < 3:
        raise _Problem(f"only {len(parts)} dot-separated component(s); MAJOR.MINOR.PATCH needs 3")
    numbers += [None] * (3 - len(numbers))
    if (dash or plus) and None in numbers:
        raise _Problem("a prerelease or build suffix needs a full MAJOR.MINOR.PATCH")
    if dash:
        _check_identifiers(prerelease, "prerelease", numeric_rules=True)
    if plus:
        _check_identifiers(build, "build metadata", numeric_rules=False)
    return _Partial(
        numbers[0], numbers[1], numbers[2], prerelease if dash else None, build if plus else None
    )


def parse_version(text: str) -> semver.Version:
    """Parse a strict semver 2.0 version (no leading "v", no partials)."""
    try:
        return _parse_partial(text, allow_partial=False).full()
    except _Problem as problem:
        raise VersionSyntaxError(
            f"invalid version {text!r}: {problem}; {_VERSION_EXAMPLE}"
        ) from None


_Op = Literal["<", "<=", ">", ">=", "="]


@dataclass(frozen=True)
class _Comparator:
    op: _Op
    version: semver.Version

    def matches(self, v: semver.Version) -> bool:
        # semver.Version comparisons ignore build metadata, as node-semver's do
        if self.op == "<":
            return v < self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == ">":
            return v > self.version
        if self.op == ">=":
            return v >= self.version
        return v == self.version


_ComparatorSet = tuple[_Comparator, ...]


def _ge(major: int, minor: int, patch: int) -> _Comparator:
    return _Comparator(">=", semver.Version(major, minor, patch))


def _lt0(major: int, minor: int, patch: int) -> _Comparator:
    # "<2.0.0-0" rather than "<2.0.0", so that 2.0.0-rc.1 is excluded as well
    return _Comparator("<", semver.Version(major, minor, patch, "0"))


# "<0.0.0-0": the smallest possible version, so nothing satisfies it
_NOTHING = _Comparator("<", semver.Version(0, 0, 0, "0"))


_FULL_OPS: dict[str, _Op] = {"": "=", "=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _xrange(op: str, p: _Partial) -> list[_Comparator]:
    major, minor, patch = p.major, p.minor, p.patch
    if major is None:
        return [_NOTHING] if op in ("<", ">") else []
    if minor is None or patch is None:
        # Partial version: compare against the whole block it names (">1.2" means past 1.2.x)
        if op in ("", "="):
            if minor is None:
                return [_ge(major, 0, 0), _lt0(major + 1, 0, 0)]
            return [_ge(major, minor, 0), _lt0(major, minor + 1, 0)]
        if op == ">=":
            return [_ge(major, minor or 0, 0)]
        if op == "<":
            return [_lt0(major, minor or 0, 0)]
        if minor is None:  # ">" / "<=" with only a major
            return [_ge(major + 1, 0, 0)] if op == ">" else [_lt0(major + 1, 0, 0)]
        return [_ge(major, minor + 1, 0)] if op == ">" else [_lt0(major, minor + 1, 0)]
    return [_Comparator(_FULL_OPS[op], p.full())]


def _tilde(p: _Partial) -> list[_Comparator]:
    major, minor, patch = p.major, p.minor, p.patch
    if major is None:
        return []
    if minor is None:
        return [_ge(major, 0, 0), _lt0(major + 1, 0, 0)]
    if patch is None:
        return [_ge(major, minor, 0), _lt0(major, minor + 1, 0)]
    return [_Comparator(">=", p.full()), _lt0(major, minor + 1, 0)]


def _caret(p: _Partial) -> list[_Comparator]:
    major, minor, patch = p.major, p.minor, p.patch
    if major is None:
        return []
    if minor is None:
        return [_ge(major, 0, 0), _lt0(major + 1, 0, 0)]
    if patch is None:
        upper = _lt0(major + 1, 0, 0) if major else _lt0(0, minor + 1, 0)
        return [_ge(major, minor, 0), upper]
    # The first non-zero component is the one that must not change
    if major:
        upper = _lt0(major + 1, 0, 0)
    elif minor:
        upper = _lt0(0, minor + 1, 0)
    else:
        upper = _lt0(0, 0, patch + 1)
    return [_Comparator(">=", p.full()), upper]


def _hyphen(low: _Partial, high: _Partial) -> list[_Comparator]:
    result: list[_Comparator] = []
    if low.major is not None:
        if low.patch is None:
            result.append(_ge(low.major, low.minor or 0, 0))
        else:
            result.append(_Comparator(">=", low.full()))
    if high.major is not None:
        if high.minor is None:
            result.append(_lt0(high.major + 1, 0, 0))
        elif high.patch is None:
            result.append(_lt0(high.major, high.minor + 1, 0))
        else:
            result.append(_Comparator("<=", high.full()))
    return result


_OPERATORS = ("<=", ">=", "<", ">", "=", "~", "^")  # longest first, so "<=" wins over "<"
_ZERO = semver.Version(0, 0, 0)


def _split_operator(token: str) -> tuple[str, str]:
    for op in _OPERATORS:
        if token.startswith(op):
            return op, token[len(op) :]
    return "", token


def _parse_comparator_set(alternative: str, fail: _Fail) -> _ComparatorSet:
    tokens = alternative.split()
    comparators: list[_Comparator] = []
    if "-" in tokens:
        if len(tokens) != 3 or tokens[1] != "-":
            fail("-", 'a hyphen range is exactly one version on each side of " - "')
        for end in (tokens[0], tokens[2]):
            if _split_operator(end)[0]:
                fail(end, "the ends of a hyphen range cannot have operators")
        low, high = (_partial_in_range(end, end, fail) for end in (tokens[0], tokens[2]))
        comparators = _hyphen(low, high)
    else:
        # Rejoin an operator separated from its version (">= 1.2"), as node-semver allows
        merged: list[str] = []
        for token in tokens:
            if merged and merged[-1] in _OPERATORS:
                if _split_operator(token)[0] or token.startswith("|"):
                    fail(f"{merged[-1]} {token}", "two operators in a row")
                merged[-1] += token
            else:
                merged.append(token)
        for token in merged:
            comparators += _desugar(token, fail)
    # node-semver drops ">=0.0.0" (it reads it as "*"). That only shows with 0.0.0-x
    # prereleases, but doing the same makes "0.x >=0.0.0-a" admit 0.0.0-b, as npm does
    return tuple(c for c in comparators if not (c.op == ">=" and c.version == _ZERO))


def _desugar(token: str, fail: _Fail) -> list[_Comparator]:
    op, rest = _split_operator(token)
    if op and not rest:
        fail(token, f"operator {op!r} is not followed by a version")
    if op == "~" and rest.startswith(">"):
        version = rest[1:] if rest[1:] and not _split_operator(rest[1:])[0] else "1.2"
        fail(token, f'"~>" is not supported (write "~{version}")')
    if op and _split_operator(rest)[0]:
        fail(token, "two operators in a row")
    if token.startswith("-"):
        fail(token, 'a hyphen range needs spaces around the "-", as in "1.2.3 - 2.3.4"')
    if token.startswith("|"):
        fail(token, 'alternatives are separated by "||"')
    partial = _partial_in_range(rest, token, fail)
    if op == "~":
        return _tilde(partial)
    if op == "^":
        return _caret(partial)
    return _xrange(op, partial)


def _partial_in_range(text: str, token: str, fail: _Fail) -> _Partial:
    try:
        return _parse_partial(text, allow_partial=True)
    except _Problem as problem:
        fail(token, str(problem) if token == text else f"version {text!r}: {problem}")


class _Fail:
    """Raises RangeSyntaxError for one range text, so every message has the same shape."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, part: str, problem: str) -> NoReturn:
        raise RangeSyntaxError(
            f"invalid version range {self.text!r} at {part!r}: {problem}; {_RANGE_EXAMPLE}"
        )


def _parse_sets(text: str) -> tuple[_ComparatorSet, ...]:
    fail = _Fail(text)
    line_break = _LINE_BREAK.search(text)
    if line_break is not None:
        # npm splits on any whitespace; a line break in a range is a slip (a YAML block
        # scalar, a stray quote), and the text would be shown and stored with it
        fail(line_break.group(), "a range is one line: only spaces or tabs separate its parts")
    alternatives = text.split("||")
    if len(alternatives) == 1 and not text.strip():
        return ((),)  # "" means any version, as in npm
    for alternative in alternatives:
        if not alternative.strip():
            # npm reads "1.x ||" as "any version", which is never what the author meant
            fail("||", 'empty alternative next to "||" (write "*" for any version)')
    sets = tuple(_parse_comparator_set(alternative, fail) for alternative in alternatives)
    if len(sets) > 1 and () in sets:
        # node-semver collapses a range with an unconstrained alternative to just "*", which
        # keeps out every prerelease, even one another alternative names: npm rejects
        # 1.2.3-beta for "1.2.3-beta || *"
        return ((),)
    return sets


@dataclass(frozen=True)
class VersionRange:
    """An npm-style version range, e.g. "^1.2.3 || >=2.1 <3.0"; see `parse_range`."""

    text: str
    _sets: tuple[_ComparatorSet, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sets", _parse_sets(self.text))

    def contains(self, version: semver.Version | str) -> bool:
        """Whether `version` satisfies the range, exactly as `semver.satisfies` in npm."""
        v = parse_version(version) if isinstance(version, str) else version
        return any(_set_contains(comparators, v) for comparators in self._sets)

    def __str__(self) -> str:
        return self.text


def _set_contains(comparators: _ComparatorSet, v: semver.Version) -> bool:
    if not all(c.matches(v) for c in comparators):
        return False
    if not v.prerelease:
        return True
    # npm keeps prereleases out unless the range itself names a prerelease of the same
    # MAJOR.MINOR.PATCH: "^1.2.3-beta.1" opts into 1.2.3-beta.2, never into 1.3.0-alpha
    return any(
        c.version.prerelease
        and (c.version.major, c.version.minor, c.version.patch) == (v.major, v.minor, v.patch)
        for c in comparators
    )


def parse_range(text: str) -> VersionRange:
    """Parse an npm-style range (node-semver syntax); raises RangeSyntaxError."""
    return VersionRange(text)


def max_satisfying(
    versions: Iterable[semver.Version | str], rng: VersionRange
) -> semver.Version | None:
    """The highest of `versions` inside `rng` (the first one on ties), or None."""
    best: semver.Version | None = None
    for item in versions:
        v = parse_version(item) if isinstance(item, str) else item
        if rng.contains(v) and (best is None or v > best):
            best = v
    return best
