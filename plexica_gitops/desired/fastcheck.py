"""A compiled validator (jsonschema-rs) that answers only "valid?" for a plugin's
configuration schema, so that the exact findings of jsonschema are computed for the rare
invalid configuration alone.

It is trusted only where it cannot say "valid" of a configuration that jsonschema rejects
(or cannot evaluate): the keywords whose meaning differs between the two (regular
expressions, number comparisons, equality) are evaluated by jsonschema's own functions,
schemas that use what the two resolve differently get no fast check at all, and a
configuration that is not plain finite JSON is left to jsonschema. Configurations are what
the loader builds (`SourceDocument.data`: dicts, lists, str, int, float, bool, None - never
a tuple, which jsonschema-rs would take for an array and jsonschema not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

Keyword = Callable[[Any, Any, Any, dict[str, Any]], Iterator[Any]]

# Evaluated by jsonschema's functions: Python's `re` (not ECMA-262 / Rust regex: `\d`,
# `\S`, `[^...]` match other characters), exact int/float comparison and division, and
# jsonschema's equality (1 == 1.0, True != 1) for enum, const and uniqueItems.
PYTHON_KEYWORDS = (
    "pattern",
    "multipleOf",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "uniqueItems",
)

# A schema that names any of these (even as a property name: the check is conservative)
# gets no fast check: regexes over keys, annotation-driven keywords, and references that
# are not plain JSON pointers into the schema itself are resolved or evaluated
# differently by the two libraries.
UNTRUSTED_KEYS = frozenset(
    {
        "patternProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$id",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$vocabulary",
        "$schema",  # unless it names draft 2020-12, the dialect both evaluate
    }
)
DIALECT = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2020-12/schema#",
    }
)

_PLAIN = Draft202012Validator({})  # gives jsonschema's keyword functions their type checks


def _keyword_class(name: str) -> type:
    function: Keyword = Draft202012Validator.VALIDATORS[name]

    def __init__(self: Any, parent_schema: dict[str, Any], value: Any, path: Any) -> None:
        self.parent = parent_schema
        self.value = value

    def validate(self: Any, instance: Any) -> None:
        for _ in function(_PLAIN, self.value, instance, self.parent):
            raise ValueError(name)

    return type(f"Python_{name}", (), {"__init__": __init__, "validate": validate})


def _python_keywords(schema: Any) -> dict[str, type]:
    """The keywords this schema needs jsonschema's own functions for (a custom keyword
    replaces the native one everywhere in the schema, so it is all or nothing per name)."""
    needed: set[str] = set()
    for _, node in _subschemas(schema):
        needed.update(key for key in PYTHON_KEYWORDS if key in node and not _native(key, node[key]))
    return {name: _KEYWORDS[name] for name in sorted(needed)}


_KEYWORDS = {name: _keyword_class(name) for name in PYTHON_KEYWORDS}

# Where a keyword's value is one of these, jsonschema-rs evaluates it exactly as jsonschema
# does, so it stays native (a call back into Python costs more than the rest of the check).
# A pattern of printable ASCII: literals, escaped punctuation, simple classes, groups,
# alternatives, anchors and `{n}` / `{n,}` / `{n,m}` quantifiers. Nothing the two engines
# read differently: no escape class (\d \w \s \b ...), no `(?` flag or extension, no
# `{,n}`, no nested class or class set operation (`[[:alpha:]]`, `&&`, `--`, `~~`). Where
# they still differ (`$` before a final newline) jsonschema-rs is the stricter one.
_ESCAPED = r"\\[ -/:-@\[-`{-~]"
_CLASS = r"\[\^?(?:[ -Z^-~]|" + _ESCAPED + r")+\]"
_PLAIN_PATTERN = re.compile(
    r"(?:[ -Z^-z|]|" + _ESCAPED + "|" + _CLASS + r"|\{[0-9]+(?:,[0-9]*)?\})*", re.ASCII
)
_EXACT = 2**53  # every integer up to this is a double too: no int/float rounding
_LONG_NUMBER = re.compile(r"\d{16,}")  # may be an int past _EXACT (or only digits in a string)


def _native(keyword: str, value: Any) -> bool:
    if keyword == "pattern":
        return (
            isinstance(value, str) and "(?" not in value and bool(_PLAIN_PATTERN.fullmatch(value))
        )
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _exact_scalar(value) and not isinstance(value, str | bool | None)
    if keyword == "const":
        return _exact_scalar(value)
    if keyword == "enum":
        return isinstance(value, list) and all(map(_exact_scalar, value))
    return False


def _exact_scalar(value: Any) -> bool:
    """A string, bool, null, or an int a double holds exactly (not a float)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return -_EXACT <= value <= _EXACT
    return isinstance(value, str | bool) or value is None


class FastCheck:
    """`valid(configuration)` is True only where jsonschema finds no problem."""

    def __init__(self, validator: Any) -> None:
        self._validator = validator

    def valid(self, configuration: Any) -> bool:
        try:
            # jsonschema-rs reads NaN and infinities as null and tuples as arrays; this
            # also rejects every value that is not JSON (C speed, nothing kept).
            text = json.dumps(configuration, allow_nan=False, check_circular=False)
            if _LONG_NUMBER.search(text):
                # an int past 2**53 is rounded on its way to a Python keyword (past 1e308 it
                # overflows, which jsonschema reports): leave it to jsonschema
                return False
            return bool(self._validator.is_valid(configuration))
        except Exception:  # "not known valid" is always a safe answer
            return False


def compile_fast_check(schema: Any) -> FastCheck | None:
    """The fast check of a schema jsonschema accepts, or None where it is not trusted."""
    try:
        json.dumps(schema, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(schema, dict | bool) or not _trusted(schema):
        return None
    try:
        validator = jsonschema_rs.Draft202012Validator(
            schema, validate_formats=False, keywords=_python_keywords(schema)
        )
    except Exception:  # any schema it cannot compile is left to jsonschema
        return None
    return FastCheck(validator)


def _trusted(schema: Any) -> bool:
    refs: dict[tuple[str, ...], tuple[str, ...]] = {}  # where a $ref is -> what it names
    for path, node in _subschemas(schema):
        if any(key in UNTRUSTED_KEYS for key in node) and not _dialect_only(node):
            return False
        ref = node.get("$ref")
        if ref is None:
            continue
        target = _pointer(ref)
        if target is None:
            return False
        refs[path] = target
    return not _cyclic(refs)


def _dialect_only(node: dict[str, Any]) -> bool:
    """The one untrusted key of `node` is a `$schema` naming draft 2020-12."""
    untrusted = [key for key in node if key in UNTRUSTED_KEYS]
    return untrusted == ["$schema"] and node["$schema"] in DIALECT


def _subschemas(schema: Any) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every mapping in the schema with its path (iterative: schemas may be deep)."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            yield path, node
            stack.extend(((*path, str(key)), child) for key, child in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, str(index)), child) for index, child in enumerate(node))


def _pointer(ref: Any) -> tuple[str, ...] | None:
    """The path a local JSON-pointer reference (`#`, `#/$defs/a`) names; None otherwise."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    pointer = ref[1:]
    if pointer == "":
        return ()
    if not pointer.startswith("/") or "%" in pointer:
        return None
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/"))


def _cyclic(refs: dict[tuple[str, ...], tuple[str, ...]]) -> bool:
    """Whether evaluating may follow references forever (or as deep as the instance):
    jsonschema stops with a RecursionError there, which validate reports. Conservative: a
    reference reaches every reference inside the subschema it names."""

    def reaches(target: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [where for where in refs if where[: len(target)] == target]

    state: dict[tuple[str, ...], int] = {}  # 1 on the current walk, 2 done
    for start in refs:
        if state.get(start):
            continue
        stack = [(start, iter(reaches(refs[start])))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                return True
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(reaches(refs[child]))))
    return False
