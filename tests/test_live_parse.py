"""`LiveState.from_json` (the fast path `plan --live-state` uses) must give exactly what
`LiveState.model_validate_json` gives: the same state, or the same error."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from test_store_catalog import EXPECTED

from plexica_gitops.live import LiveState


def _outcome(parse: Any, text: str) -> Any:
    try:
        return ("ok", parse(text))
    except pydantic.ValidationError as error:
        return ("error", [(e["loc"], e["type"]) for e in error.errors()])


TENANT = {
    "id": "7be72c81-2e45-42c0-b2f0-8962a8006663",
    "schema_name": "tenant_acme",
    "status": "active",
    "plugins": {"crm": {"enabled": True, "configuration": {"stages": ["a", "b"], "n": 1.5}}},
    "migrations": {"crm": [{"version": 1, "name": "0001_init", "checksum": "ab" * 32}]},
}


def _with(**changes: Any) -> str:
    return json.dumps({"tenants": {"acme": {**TENANT, **changes}}})


DOCUMENTS = [
    "{}",
    _with(),
    json.dumps({"tenants": {"acme": TENANT, "globex": {**TENANT, "status": "suspended"}}}),
    _with(status="paused"),  # not a status
    _with(id=7),  # a number where text is wanted
    _with(plugins={"crm": {"enabled": "yes"}}),  # coerced or refused: pydantic decides
    _with(plugins={"crm": {"enabled": 1}}),
    _with(migrations={"crm": [{"version": "2", "name": "x", "checksum": "c"}]}),
    _with(unknown=True),  # an extra key
    _with(plugins={"crm": {"enabled": True, "extra": 1}}),
    '{"tenants": {"acme": {"id": "x"}}}',  # missing fields
    '{"tenants": []}',
    '{"tenants": {"acme": ' + json.dumps(TENANT) + ', "acme": ' + json.dumps(TENANT) + "}}",
    '{"topics_observed": false, "workloads_observed": false, "tenants": {}}',
    '{"tenants": {"a\\u00e9": ' + json.dumps(TENANT) + "}}",
    '{"tenants": {"acme": {"id": "\\ud800"}}}',
    "[]",
    "not json",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_fast_parse_gives_what_pydantic_gives(text: str) -> None:
    fast = _outcome(LiveState.from_json, text)
    reference = _outcome(LiveState.model_validate_json, text)
    assert fast == reference
    if fast[0] == "ok":
        assert fast[1].fingerprint() == reference[1].fingerprint()


def test_a_full_snapshot_round_trips_with_the_same_fingerprint() -> None:
    text = EXPECTED.model_dump_json()
    parsed = LiveState.from_json(text)
    assert parsed == EXPECTED
    assert parsed.fingerprint() == EXPECTED.fingerprint()
    assert LiveState.from_json(text.encode()) == EXPECTED
