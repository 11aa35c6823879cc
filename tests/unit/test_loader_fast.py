"""The loader's one-pass reading of plain files (`_regular_stream`) against the composer it
stands in for: the same documents (values, their types, key order), the same position for
every value, and, for any file it does not read itself, the composer's own findings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_loader import backend  # noqa: F401  (autouse: every test runs with both parsers)

from plexica_gitops.findings import Finding
from plexica_gitops.source import loader as loader_module
from plexica_gitops.source.loader import LoadLimits, SourceDocument

REPO = Path(__file__).resolve().parents[2]


def _typed(value: Any) -> Any:
    """`value` with every type and key order spelled out (True is not 1, 1.0 is not 1)."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _read(
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    *,
    fast: bool,
    json_mode: bool = False,
    limits: LoadLimits | None = None,
) -> tuple[list[SourceDocument], list[Finding]]:
    monkeypatch.setattr(loader_module, "_FAST_PATH", fast)
    return loader_module._parse(
        text.encode("utf-8", "surrogatepass"), "f.yaml", limits or LoadLimits(), json_mode=json_mode
    )


def _shown(read: tuple[list[SourceDocument], list[Finding]]) -> Any:
    documents, findings = read
    return (
        [
            (d.file, d.index, d.line, _typed(d.data), sorted(dict(d.positions).items(), key=repr))
            for d in documents
        ],
        findings,
    )


def _same_both_ways(
    monkeypatch: pytest.MonkeyPatch, text: str, *, json_mode: bool = False, **kw: Any
) -> bool:
    """Asserts the two readings agree; whether the one-pass reading took the file."""
    composed = _read(monkeypatch, text, fast=False, json_mode=json_mode, **kw)
    one_pass = _read(monkeypatch, text, fast=True, json_mode=json_mode, **kw)
    assert _shown(one_pass) == _shown(composed)
    shared = loader_module._Shared()
    return (
        loader_module._regular_documents(
            text, "f.yaml", kw.get("limits") or LoadLimits(), shared, json_mode=json_mode
        )
        is not None
    )


REGULAR = [
    "apiVersion: v1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  plugins:\n"
    "    crm: {version: '1.2', configuration: {a: 1, b: [1, 2.5, true, null, '', x]}}\n",
    "a: 1\n---\nb: [1, [2, [3, {c: d}]]]\n---\nc:\n  - - x\n    - y\n  - {}\n  - []\n",
    "on: off\nyes: no\n1: 2\nnull: ~\n'<<': quoted merge is a plain key\n",
    "t: 2001-12-14t21:59:43.10-05:00\nd: 2002-12-14\nb: '!!binary no'\n",
    "i: [0o17, 0x1f, 0b101, 017, 1_000, '+12', -0, 190:20:30]\n"
    "f: [.inf, -.Inf, .nan, 1e3, 6.8523015e+5, 1.0, -0.0]\n",
    's: |\n  literal\n  text\nf: >\n  folded\n  text\nq: "tab\\there \\u00e9 \\U0001F600"\n',
    'unicode: é€😀\nkey with spaces: v\n"quoted key": 1\n? explicit key\n: value\n',
    "deep: " + "[" * 30 + "1" + "]" * 30 + "\n",
    "empty: \nlist:\n- \n- a\nmap: {a: , b: }\n",
]

IRREGULAR = [
    "a: &x {b: 1}\nc: *x\n",  # anchor and alias
    "base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n",  # merge
    "a: 1\na: 2\n",  # duplicate key
    "? [a, b]\n: complex key\n",
    "? {a: b}\n: complex key\n",
    "a: !!int 12\n",  # explicit tag, fine
    "a: !!int abc\n",  # explicit tag, a problem
    "a: !custom x\n",
    "a: !!python/object:os.system x\n",
    "- a list\n",
    "just a scalar\n",
    "a: 1\n---\n",  # an empty document at the end
    "---\n---\na: 1\n",
    "a: [1, 2\n",  # a syntax error
    "a: \x07\n",  # not printable
    "a:\n\tb: 1\n",  # a tab
]


@pytest.mark.parametrize("text", REGULAR)
def test_a_plain_file_is_read_in_one_pass_exactly_as_composed(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    assert _same_both_ways(monkeypatch, text)


@pytest.mark.parametrize("text", IRREGULAR)
def test_anything_else_is_left_to_the_composer_and_its_findings(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    assert not _same_both_ways(monkeypatch, text)


def test_json_numbers_read_alike_in_json_files(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '{"a": 1e5, "b": -0.5, "c": "1e5", "d": [1, 2.0, true, null], "e": 012}'
    assert _same_both_ways(monkeypatch, text, json_mode=True)


def test_a_file_past_a_limit_gets_the_composers_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = "a: " + "[" * 10 + "1" + "]" * 10 + "\n"
    assert not _same_both_ways(monkeypatch, deep, limits=LoadLimits(max_depth=5))
    wide = "a: [" + ", ".join(["1"] * 50) + "]\n"
    assert not _same_both_ways(monkeypatch, wide, limits=LoadLimits(max_nodes_per_document=20))
    assert _same_both_ways(monkeypatch, wide, limits=LoadLimits(max_nodes_per_document=60))


def _repository_files() -> list[Path]:
    found = [
        path
        for pattern in ("*.yaml", "*.yml", "*.json")
        for path in REPO.rglob(pattern)
        if ".git" not in path.parts and "node_modules" not in path.parts
    ]
    return sorted(found)


def test_every_yaml_and_json_file_of_the_repository_reads_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = _repository_files()
    assert len(files) > 20
    taken = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        taken += _same_both_ways(monkeypatch, text, json_mode=path.suffix == ".json")
    assert taken > len(files) // 2  # most are plain data, read in one pass


KEYS = st.sampled_from(
    ["a", "on", "1", "null", "~", "<<", "0o10", "1_000", "1:20", ".inf", "2001-12-14", "é", "k k"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    KEYS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner)
    ),
    max_leaves=25,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    documents=st.lists(st.dictionaries(KEYS, VALUES, min_size=1), min_size=1, max_size=3),
    flow=st.sampled_from([None, True, False]),
    style=st.sampled_from([None, "'", '"']),
)
def test_generated_documents_read_alike(
    documents: list[dict[str, Any]], flow: bool | None, style: str | None
) -> None:
    """With each parser: `backend` set it for the whole test, every example included."""
    text = yaml.safe_dump_all(
        documents, default_flow_style=flow, default_style=style, allow_unicode=True
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same_both_ways(monkeypatch, text)
