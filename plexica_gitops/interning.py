"""Equal JSON values read many times (a million tenant bindings repeat the same keys and
small nested values) made one object, and the bound on how deep such values may nest."""

from __future__ import annotations

import marshal
from typing import Any

from plexica_gitops.hashing import json_text

# Values read from YAML, the store or a snapshot nest at most this many levels: checked as
# each is read, before pydantic, the planner or any recursive function sees it.
MAX_JSON_DEPTH = 64


class TooDeep(Exception):
    """A value nested deeper than MAX_JSON_DEPTH; the argument, when given, names where."""


def json_depth(value: Any, limit: int) -> int:
    """How deep lists and objects nest in `value` (0 for a scalar), counted without
    recursion; stops once past `limit`."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is dict:
            children = item.values()
        elif kind is list:
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level) for child in children if type(child) in (dict, list))
    return deepest


class SharedValues:
    """Equal values read for different tenants, made one object. A million bindings repeat
    the same plugin ids, configuration keys and enum-like values, and many small nested
    values (a time window, a list of options): each distinct string, and each distinct list
    or object nested in a configuration, is kept once and shared. A configuration itself
    stays one object per binding (most differ). Safe because nothing mutates a
    configuration once it is read (the planner, renderers and steps only read it, and copy
    before changing it), and what replaces a value is equal to it, of the same types and
    key order."""

    def __init__(self, *, bounded: bool = False) -> None:
        """`bounded`: a nested value deeper than MAX_JSON_DEPTH raises TooDeep."""
        self.bounded = bounded
        self.strings: dict[str, str] = {}
        self.string = self.strings.setdefault
        # the JSON text of a nested list or object (keys in their order) -> the shared one
        self.nested: dict[str, Any] = {}
        # the ids of a tenant's applied records (shared objects) -> the one list of them
        self.histories: dict[tuple[int, ...], list[Any]] = {}  # live.model.AppliedMigration
        self.fields_sets: dict[frozenset[str], set[str]] = {}

    def configuration(self, configuration: dict[str, Any]) -> dict[str, Any]:
        """An equal configuration built from shared keys and values."""
        string, nested, check = self.string, self._nested, self.bounded
        shared: dict[str, Any] = {}
        for k, v in configuration.items():
            kind = type(v)
            if kind is str:
                v = string(v, v)
            elif kind is dict or kind is list:
                v = nested(v, check)
            shared[string(k, k) if type(k) is str else k] = v
        return shared

    def _nested(self, item: Any, check: bool) -> Any:
        """The shared list or object equal to `item`. Its JSON text tells it apart from
        almost every unequal value (1, 1.0, true and -0.0 all differ; the C encoder makes
        it cheap); what the text cannot tell (a key that is not a string, a tuple) the
        type and equality check on a hit does. Values JSON cannot hold stay as they are.
        `check`: a new value nested too deep raises TooDeep (checked once per distinct
        value: equal ones share it, and its parts are shallower)."""
        try:
            key = json_text(item)
        except RecursionError:
            if check:
                raise TooDeep from None
            return item  # a recursive alias from YAML
        except (TypeError, ValueError):
            return item  # a date from YAML, ...
        found = self.nested.get(key)
        if found is None:
            # the configuration holding it is one level more
            if check and json_depth(item, MAX_JSON_DEPTH) >= MAX_JSON_DEPTH:
                raise TooDeep
            found = self.nested[key] = self._rebuilt(item)
            return found
        return found if type(found) is type(item) and found == item else item

    def _rebuilt(self, item: Any) -> Any:
        string, nested = self.string, self._nested
        if type(item) is dict:
            return {
                string(k, k) if type(k) is str else k: (
                    string(v, v)
                    if type(v) is str
                    else nested(v, False)
                    if type(v) is dict or type(v) is list
                    else v
                )
                for k, v in item.items()
            }
        return [
            string(v, v)
            if type(v) is str
            else nested(v, False)
            if type(v) is dict or type(v) is list
            else v
            for v in item
        ]


def same_json(value: Any, other: Any) -> bool:
    """Whether two values are the same JSON value: equal, and of the same types and key order
    (Python finds 1, 1.0 and true equal, -0.0 and 0.0, and objects in any order). Told by
    marshal's format 0, in C and twice as fast as their JSON text: it writes each value's
    exact type (no subclass), floats exactly, objects in order, and no back-references (it
    would for objects shared in one value, from format 3 on). False for what it cannot
    write (a date from YAML, ...) or what nests too deep to compare."""
    try:
        return bool(value == other) and marshal.dumps(value, 0) == marshal.dumps(other, 0)
    except (TypeError, ValueError, RecursionError):
        return False
