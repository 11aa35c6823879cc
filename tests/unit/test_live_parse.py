"""`LiveState.from_json` (the fast path `plan --live-state` uses) must give exactly what
`LiveState.model_validate_json` gives: the same state, or the same error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from test_store_catalog import EXPECTED

from plexica_gitops.live import codec
from plexica_gitops.live.codec import MAX_TENANT_BYTES, LiveStateError
from plexica_gitops.live.model import LiveState


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


def _nested(depth: int) -> str:
    """JSON text nesting `depth` levels: objects and lists in turn, the value at the bottom
    (json.dumps itself cannot write the deepest ones)."""
    opening = "".join('{"k":' if level % 2 == 0 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 == 0 else "]" for level in reversed(range(depth)))
    return opening + '"needle-value"' + closing


def _binding_with(configuration: str, enabled: Any = True) -> str:
    binding = {"enabled": enabled, "configuration": "@"}
    return _with(plugins={"crm": binding}).replace('"@"', configuration)


@pytest.mark.parametrize("depth", [64, 65, 200, 600, 5000])
def test_a_deep_configuration_is_an_error_naming_where_before_any_recursion(depth: int) -> None:
    """`configuration` nested `depth` levels (itself the first): up to 64 is read; deeper
    is an error naming the binding, never a RecursionError, never the value."""
    text = _binding_with(_nested(depth))
    if depth <= 64:
        assert LiveState.from_json(text).tenants["acme"].plugins["crm"].enabled
        return
    with pytest.raises(LiveStateError) as caught:
        LiveState.from_json(text)
    assert "tenants.acme" in caught.value.message and "64 levels" in caught.value.message
    assert "needle-value" not in caught.value.message


@pytest.mark.parametrize("where", ["last_applied", "plugins", "topics"])
def test_deep_json_anywhere_in_a_snapshot_is_an_error_not_a_traceback(where: str) -> None:
    text = '{"' + where + '": ' + _nested(3000) + "}"
    with pytest.raises((LiveStateError, pydantic.ValidationError)) as caught:
        LiveState.from_json(text)
    assert "needle-value" not in str(caught.value)


def test_the_slow_path_keeps_the_same_bound() -> None:
    """An unusual document goes to pydantic; its configurations are bounded all the same."""
    text = _binding_with(_nested(100), enabled=1)  # 1: pydantic's to coerce
    with pytest.raises(LiveStateError) as caught:
        LiveState.from_json(text)
    assert caught.value.message.startswith("tenants.acme.plugins.crm.configuration is nested")


def test_a_huge_tenant_entry_is_refused() -> None:
    big = {"blob": "x" * (MAX_TENANT_BYTES + 10)}
    with pytest.raises(LiveStateError, match=r"tenants\.acme is larger than 64 MiB"):
        LiveState.from_json(_with(plugins={"crm": {"enabled": True, "configuration": big}}))


@pytest.mark.parametrize("depth", [200, 600, 5000])
def test_plan_with_a_deep_snapshot_fails_cleanly(depth: int) -> None:
    """`plan --live-state` of a deeply nested document: exit 1 naming where, no traceback,
    never the value."""
    from pathlib import Path

    from typer.testing import CliRunner

    from plexica_gitops.cli import app

    example = Path(__file__).parents[2] / "desired-state"
    result = CliRunner().invoke(
        app, ["plan", str(example), "--live-state", "-"], input=_binding_with(_nested(depth))
    )
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, RecursionError)
    assert "live state -: tenants.acme" in result.output  # the binding, or its tenant
    assert "nested deeper than 64 levels" in result.output
    assert "needle-value" not in result.output


def _file_outcome(path: Path) -> Any:
    try:
        return _outcome(lambda _: LiveState.from_json_file(path), "")
    except LiveStateError as error:
        return ("refused", error.message)


def _text_outcome(text: str) -> Any:
    try:
        return _outcome(LiveState.from_json, text)
    except LiveStateError as error:
        return ("refused", error.message)


FILE_DOCUMENTS = [
    *DOCUMENTS,
    EXPECTED.model_dump_json(),
    EXPECTED.model_dump_json(indent=2).replace("\n", "\r\n"),  # read with universal newlines
    '{"last_applied": {"tenant.acme": "f1", "plugin.crm": "f2", "tenant.acme": "f3"}}',
    '{"last_applied": {"tenant.acme": 12345}}',  # not text: pydantic decides
    '{"last_applied": {"a\\u0041": "x", "b" : "y\\n" , "c":"d"\n,\t"e": 1, "f": "g"}}',
    '{"last_applied": {"a": "x", "b": "tab\there", "c": "d"}}',  # a control character
    '{"last_applied": {"a": "x", "b": "y",}}',
    '{"platform_version": "1.2.3", "tenants": {}, "topics_observed": false}   \n',
    '{"tenants": {}} x',
    _with(id="\ud800"),  # a lone surrogate: pydantic refuses it, json.loads would not
    '{"platform_version": "\\ud800"}',  # split "\\u|d800" with 6-character pieces
    '{"platform_version": "\\ud83d\\ude00"}',
    _binding_with(_nested(65)),
    '{"tenants": {"acme": ' + json.dumps(TENANT) + '}, "last_applied": ' + _nested(3000) + "}",
]


@pytest.mark.parametrize("piece", [1, 2, 3, 6, 7, 64, 1 << 20])
@pytest.mark.parametrize("text", FILE_DOCUMENTS)
def test_a_snapshot_file_read_in_pieces_gives_what_its_whole_text_gives(
    text: str, piece: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan --live-state FILE` reads the file a piece at a time (never its whole text next
    to the state): wherever the pieces split it (a number, a key, an escape, whitespace),
    the state, the error and the fingerprint are those of the text read whole."""
    monkeypatch.setattr(codec, "PIECE", piece)
    path = tmp_path / "live.json"
    path.write_bytes(text.encode())
    from_file = _file_outcome(path)
    assert from_file == _text_outcome(path.read_text(encoding="utf-8"))
    if from_file[0] == "ok":
        assert from_file[1].fingerprint() == LiveState.from_json(text).fingerprint()


def test_a_snapshot_file_that_is_not_utf8_is_refused_as_read_text_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The undecodable byte after a too-deep configuration: the file is not UTF-8 JSON,
    the error read_text gave before the snapshot was read in pieces."""
    monkeypatch.setattr(codec, "PIECE", 16)
    path = tmp_path / "live.json"
    path.write_bytes(_binding_with(_nested(100)).encode()[:-1] + b"\xff}")
    with pytest.raises(UnicodeDecodeError):
        LiveState.from_json_file(path)


def test_the_fingerprint_of_many_last_applied_entries_is_the_one_it_always_was() -> None:
    """Last-applied entries are hashed a slice at a time (a million of them): the digest is
    the one their text hashed whole gave (pinned: a saved plan records it)."""
    applied = {f"tenant.t{i:05d}.plugin.crm": f"{i * 7919:016x}" for i in range(25_001)}
    state = EXPECTED.model_copy(update={"last_applied": {**EXPECTED.last_applied, **applied}})
    assert state.fingerprint() == (
        "sha256:5edf5c7ab473c1ea11cefa834262ab5de0dc87158dba2516fe7d9d0d0e6211a2"
    )
    assert EXPECTED.fingerprint() == (
        "sha256:c2113d86393a3ce8f5a8ed6a25637fdebd224abac0b01a64d393b717a899a555"
    )
