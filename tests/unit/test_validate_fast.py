"""The compiled fast check of tenant configurations (desired/fastcheck.py) may only skip
jsonschema where jsonschema finds nothing: whenever it says "valid", jsonschema reports no
problem and does not fail to evaluate. These tests hold it to that on the cases where
jsonschema-rs and jsonschema disagree, on random schemas and configurations, and on the
whole `validate` of mutated example states (findings with and without it identical)."""

from __future__ import annotations

import json
import math
import re
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_fuzz_desired import mutated, mutations

import plexica_gitops.desired.build as build_module
import plexica_gitops.desired.validate as validate_module
from plexica_gitops.desired.fastcheck import compile_fast_check
from plexica_gitops.desired.validate import validate_directory

NAN, INF = float("nan"), float("inf")
BIG = 2**53 + 1  # not a float: compared to 2.0**53 exactly by Python, not by a double


def jsonschema_valid(schema: Any, instance: Any) -> bool:
    """What validate concludes: no problem, and no failure to evaluate."""
    try:
        return not any(True for _ in Draft202012Validator(schema).iter_errors(instance))
    except Exception:  # RecursionError, Unresolvable, ...: validate reports PGV601
        return False


def fast_valid(schema: Any, instance: Any) -> bool:
    check = compile_fast_check(schema)
    return check is not None and check.valid(instance)


# Each case: where jsonschema-rs alone says "valid" but jsonschema does not.
DISAGREEMENTS = [
    ({"type": "string", "pattern": r"^[^\d]+$"}, "\u0663"),  # Python's \d is Unicode
    ({"pattern": r"^\S+$"}, "\x1c"),  # Python's \s has the separators \x1c-\x1f
    ({"multipleOf": 0.01}, 0.07),  # a float quotient that is not whole
    ({"multipleOf": 1e-300}, 1e300),
    ({"minimum": 0}, -INF),  # jsonschema-rs reads infinities and NaN as null
    ({"maximum": 0}, INF),
    ({"multipleOf": 2}, NAN),
    ({"not": {"const": INF}}, INF),
    ({"maximum": 2.0**53}, BIG),
    ({"const": 2.0**53}, BIG),
    ({"enum": [2.0**53]}, BIG),
    ({"not": {"multipleOf": 0.5}}, 10**400),  # jsonschema overflows dividing it: PGV601
    ({"$ref": "#"}, 1),  # jsonschema recurses forever: "cannot be evaluated"
    ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}, 1),
    ({"properties": {"a": {"$ref": "#"}}}, json.loads('{"a": ' * 300 + "1" + "}" * 300)),
    ({"patternProperties": {r"^\d$": {"type": "string"}}}, {"\u0663": 1}),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}, [1]),
]


@pytest.mark.parametrize(("schema", "instance"), DISAGREEMENTS)
def test_fast_check_never_accepts_what_jsonschema_rejects(schema: Any, instance: Any) -> None:
    assert not jsonschema_valid(schema, instance)
    assert not fast_valid(schema, instance)


def test_fast_check_compiles_the_usual_schemas() -> None:
    """The case it is for: a 2020-12 object schema with patterns, ranges, enums and a
    reference to its own $defs; a valid configuration needs no jsonschema."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["currency"],
        "$defs": {"secret": {"type": "object", "required": ["fromEnv"]}},
        "properties": {
            "currency": {"enum": ["USD", "EUR"]},
            "days": {"type": "integer", "minimum": 0, "maximum": 90},
            "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "rate": {"type": "number", "multipleOf": 0.5},
            "stages": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
            "password": {"$ref": "#/$defs/secret"},
        },
    }
    check = compile_fast_check(schema)
    assert check is not None
    good = {"currency": "EUR", "days": 30, "code": "US", "rate": 2.5, "stages": ["a", "b"]}
    assert check.valid(good)
    assert check.valid({**good, "password": {"fromEnv": "X"}})
    for bad in ({**good, "code": "us"}, {**good, "rate": 2.25}, {**good, "stages": ["a", "a"]}):
        assert not check.valid(bad)
        assert not jsonschema_valid(schema, bad)


# --- random schemas and configurations ---------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 2**53, BIG, 10**400, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 0.5, 0.07, 2.0**53, 1e300, NAN, INF, -INF]),
    st.text(max_size=6),
    st.sampled_from(["\u0663", "\x1c", "a\n", "US", "us", "", " ", "\u00e9", "A1", "ab"]),
    st.sampled_from(["\r", ".]", "\u212a", "US\n", "23:59", "24:00", "a-b", "UUS", "\n"]),
)
INSTANCES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["a", "b", "c", "\u0663"]), children, max_size=4),
    ),
    max_leaves=12,
)
PATTERNS = st.sampled_from(
    [
        *(r"^\d+$", r"^[^\d]*$", r"^\S*$", r"^\w+$", r"(?i)^us$"),
        # evaluated natively by jsonschema-rs: must agree with Python's re
        *(r"^[A-Z]{2}$", r"a$", r"^.$", r"^[^a-c]+$", r"^(a|b){1,2}$", r"^\.[\]\-]?$"),
        *(r"^[a-z][a-z0-9-]*$", r"^([01][0-9]|2[0-3]):[0-5][0-9]$", r"^U+S?$", r"^$"),
    ]
)
NUMBERS = st.sampled_from([0, 1, 2, 3, 0.5, 0.01, 2.0**53, BIG, -1.5, 1e300])


def leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    types = st.sampled_from(["string", "integer", "number", "boolean", "null", "array", "object"])
    return st.one_of(
        st.builds(lambda t: {"type": t}, types),
        st.builds(lambda p: {"pattern": p}, PATTERNS),
        st.builds(
            lambda k, n: {k: n},
            st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
            NUMBERS,
        ),
        st.builds(lambda n: {"multipleOf": n}, st.sampled_from([2, 3, 0.5, 0.01, 0.1, 1e-300])),
        st.builds(lambda v: {"enum": v}, st.lists(SCALARS, min_size=1, max_size=3)),
        st.builds(lambda v: {"const": v}, SCALARS),
        st.builds(lambda n: {"minLength": n}, st.integers(0, 3)),
        st.builds(lambda n: {"maxItems": n}, st.integers(0, 3)),
        st.just({"uniqueItems": True}),
        st.just({"$ref": "#/$defs/d"}),
    )


SCHEMAS = st.recursive(
    leaf_schemas(),
    lambda children: st.one_of(
        st.builds(
            lambda p: {"properties": p},
            st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2),
        ),
        st.builds(lambda s: {"additionalProperties": s}, children),
        st.builds(lambda r: {"required": r}, st.lists(st.sampled_from(["a", "b"]), max_size=2)),
        st.builds(lambda s: {"items": s}, children),
        st.builds(lambda s: {"prefixItems": s}, st.lists(children, max_size=2)),
        st.builds(lambda s: {"contains": s}, children),
        st.builds(lambda s: {"propertyNames": s}, children),
        st.builds(
            lambda k, s: {k: s},
            st.sampled_from(["allOf", "anyOf", "oneOf"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        st.builds(lambda s: {"not": s}, children),
        st.builds(lambda a, b: {"if": a, "then": b}, children, children),
        st.builds(lambda a, b: {**a, **b}, children, children),
    ),
    max_leaves=6,
)


def with_defs(schema: dict[str, Any], definition: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "$defs": {"d": definition}}


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCHEMAS, leaf_schemas().filter(lambda s: "$ref" not in s), INSTANCES)
def test_fast_check_agrees_with_jsonschema(
    schema: dict[str, Any], definition: dict[str, Any], instance: Any
) -> None:
    schema = with_defs(schema, definition)
    if not _meta_valid(schema):
        return  # validate rejects the schema itself (PGV601)
    check = compile_fast_check(schema)
    if check is None:
        return
    expected = jsonschema_valid(schema, instance)
    if check.valid(instance):
        assert expected, (schema, instance)
    elif _plain_json(instance) and not re.search(r"\d{16,}", json.dumps(instance)):
        # the other way round only costs time, but on plain JSON they should agree (16 or
        # more digits in a row: the fast check leaves it to jsonschema on purpose)
        assert not expected, (schema, instance)


def _meta_valid(schema: dict[str, Any]) -> bool:
    try:
        Draft202012Validator.check_schema(schema)
    except Exception:
        return False
    return True


def _plain_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return all(map(_plain_json, value))
    if isinstance(value, dict):
        return all(_plain_json(k) and _plain_json(v) for k, v in value.items())
    return True


# --- whole validate runs ---------------------------------------------------------------


def _findings(root: Any) -> list[str]:
    return [json.dumps(f.to_json(), sort_keys=True) for f in validate_directory(root).findings]


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutations())
def test_findings_identical_without_the_fast_checks(edits: list[tuple[str, bytes]]) -> None:
    with mutated(edits) as root:
        fast = _findings(root)
        with (
            mock.patch.object(validate_module, "compile_fast_check", lambda schema: None),
            mock.patch.object(build_module, "kind_fast_check", lambda kind: None),
        ):
            slow = _findings(root)
    assert fast == slow
