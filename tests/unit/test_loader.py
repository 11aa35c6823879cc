"""Tests for plexica_gitops.source.loader: what a user of `validate` would notice."""

from __future__ import annotations

import gc
import math
import os
import re
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from plexica_gitops.findings import Location, Severity
from plexica_gitops.source import loader as loader_module
from plexica_gitops.source.loader import (
    MAX_FINDINGS_PER_FILE,
    LoadLimits,
    LoadResult,
    SourceDocument,
    load_directory,
    load_file,
)

needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX symlinks")

BACKENDS = ["libyaml", "python"] if yaml.__with_libyaml__ else ["python"]


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with libyaml's C parser and with the pure-Python fallback."""
    name = cast(str, request.param)
    monkeypatch.setattr(loader_module, "_USE_LIBYAML", name == "libyaml")
    return name


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def codes(result: LoadResult) -> list[str]:
    return [finding.code for finding in result.findings]


def only_document(result: LoadResult) -> SourceDocument:
    assert result.findings == []
    assert len(result.documents) == 1
    return result.documents[0]


def load_text(tmp_path: Path, text: str, limits: LoadLimits | None = None) -> LoadResult:
    write(tmp_path, "doc.yaml", text)
    return load_directory(tmp_path, limits or LoadLimits())


# --------------------------------------------------------------------------- documents


def test_multi_document_file_keeps_per_document_line_offsets(tmp_path: Path) -> None:
    write(
        tmp_path,
        "multi.yaml",
        """
        # Platform and tenants
        apiVersion: plexica.io/v1
        kind: Platform
        metadata:
          name: main
        ---
        apiVersion: plexica.io/v1
        kind: Tenant
        metadata:
          name: acme
        ---

        # a comment before the third document
        apiVersion: plexica.io/v1
        kind: Tenant
        metadata:
          name: globex
        ---
        """,
    )
    result = load_directory(tmp_path)

    assert result.findings == []
    assert result.files == ["multi.yaml"]
    docs = result.documents
    assert [(d.file, d.index, d.line) for d in docs] == [
        ("multi.yaml", 0, 2),
        ("multi.yaml", 1, 7),
        ("multi.yaml", 2, 14),
    ]
    assert [d.data["metadata"]["name"] for d in docs] == ["main", "acme", "globex"]
    # positions are file lines, not lines within the document
    assert docs[1].location(("metadata", "name")) == Location("multi.yaml", 10, 3)
    assert docs[2].location(("kind",)) == Location("multi.yaml", 15, 1)


def test_nested_key_and_sequence_item_positions(tmp_path: Path) -> None:
    doc = only_document(
        load_text(
            tmp_path,
            """
            apiVersion: plexica.io/v1
            kind: Plugin
            metadata:
              name: billing
            spec:
              manifest:
                version: 1.2.3
                permissions:
                  - read
                  - name: write
                    scope: tenant
                tags: [a, b]
            """,
        )
    )
    # "version" is on line 7, column 5 (key position, as a user thinks of it)
    assert doc.location(("spec", "manifest", "version")) == Location("doc.yaml", 7, 5)
    assert doc.location(["spec", "manifest", "permissions", 0]) == Location("doc.yaml", 9, 9)
    assert doc.location(("spec", "manifest", "permissions", 1)) == Location("doc.yaml", 10, 9)
    assert doc.location(("spec", "manifest", "permissions", 1, "scope")) == Location(
        "doc.yaml", 11, 9
    )
    assert doc.location(("spec", "manifest", "tags", 1)) == Location("doc.yaml", 12, 15)
    assert doc.data["spec"]["manifest"]["permissions"] == [
        "read",
        {"name": "write", "scope": "tenant"},
    ]


def test_location_falls_back_to_nearest_ancestor_then_document_start(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "first: 1\n---\n\nmetadata:\n  name: x\n")
    doc = load_directory(tmp_path).documents[1]

    assert doc.location(("metadata", "labels", "team")) == Location("a.yaml", 4, 1)
    assert doc.location(("spec", "replicas")) == Location("a.yaml", 4, 1)  # document start
    assert doc.location() == Location("a.yaml", 4, 1)

    bare = SourceDocument("b.yaml", 0, 9, {}, {})
    assert bare.location(("anything",)) == Location("b.yaml", 9)


def test_empty_documents_are_skipped_but_keep_their_index(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "---\n---\na: 1\n---\n# only a comment\n---\n")
    result = load_directory(tmp_path)

    assert result.findings == []
    assert [(d.index, d.line, d.data) for d in result.documents] == [(1, 3, {"a": 1})]


def test_comment_only_file_has_no_documents_and_no_findings(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "# nothing here yet\n")
    result = load_directory(tmp_path)
    assert (result.files, result.documents, result.findings) == (["a.yaml"], [], [])


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just text\n", "a single value"), ("null\n", "a single value")],
)
def test_document_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    result = load_text(tmp_path, "a: 1\n---\n" + text)

    assert codes(result) == ["PGL005"]
    finding = result.findings[0]
    assert finding.severity is Severity.ERROR
    assert finding.location == Location("doc.yaml", 3, 1)
    assert "doc.yaml" in finding.message and kind in finding.message
    assert result.documents == []  # the file's first, valid document is dropped too


# --------------------------------------------------------------------------- scalars & keys


def test_timestamps_and_binary_stay_source_text(tmp_path: Path) -> None:
    doc = only_document(
        load_text(
            tmp_path,
            """
            date: 2024-01-31
            stamp: 2001-12-14t21:59:43.10-05:00
            explicit: !!timestamp 2024-02-01
            blob: !!binary aGVsbG8=
            """,
        )
    )
    assert doc.data == {
        "date": "2024-01-31",
        "stamp": "2001-12-14t21:59:43.10-05:00",
        "explicit": "2024-02-01",
        "blob": "aGVsbG8=",
    }


def test_keys_are_their_source_text(tmp_path: Path) -> None:
    doc = only_document(load_text(tmp_path, "on: push\nyes: 1\n1: one\nnull: 0\n~: t\n1.5: f\n"))
    assert list(doc.data) == ["on", "yes", "1", "null", "~", "1.5"]
    assert doc.data["on"] == "push"
    assert doc.location(("on",)) == Location("doc.yaml", 1, 1)


def test_scalars_resolve_as_yaml_1_1(tmp_path: Path) -> None:
    doc = only_document(
        load_text(
            tmp_path,
            """
            t: [yes, No, on, OFF, true]
            n: [~, null, ]
            i: [42, -7, 0x1F, 017, 1_000, 1:30]
            f: [1.5, 6.8523015e+5, .inf, -.Inf]
            s: ["42", '1.5', plain text, 1.2.3]
            """,
        )
    )
    assert doc.data["t"] == [True, False, True, False, True]
    assert doc.data["n"] == [None, None]
    assert doc.data["i"] == [42, -7, 31, 15, 1000, 90]
    assert doc.data["f"][:2] == [1.5, 685230.15]
    assert doc.data["f"][2:] == [math.inf, -math.inf]
    assert doc.data["s"] == ["42", "1.5", "plain text", "1.2.3"]


def test_value_that_does_not_fit_its_explicit_tag(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: 1\nb: !!int abc\n")
    assert codes(result) == ["PGL006"]
    assert result.findings[0].location == Location("doc.yaml", 2, 4)
    assert "abc" in result.findings[0].message


def test_standard_tags_are_accepted(tmp_path: Path) -> None:
    doc = only_document(load_text(tmp_path, "a: !!str 42\nb: !!float 1\nc: !!map {x: !!seq []}\n"))
    assert doc.data == {"a": "42", "b": 1.0, "c": {"x": []}}


# --------------------------------------------------------------------------- duplicates


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    result = load_text(
        tmp_path,
        """
        metadata:
          name: a
          labels: {}
          name: b
        """,
    )
    assert codes(result) == ["PGL002"]
    finding = result.findings[0]
    assert finding.location == Location("doc.yaml", 4, 3)
    assert "'name'" in finding.message
    assert "line 2" in finding.message and "line 4" in finding.message
    assert result.documents == []


def test_keys_with_same_text_are_duplicates_whatever_the_quoting(tmp_path: Path) -> None:
    result = load_text(tmp_path, '1: a\n"1": b\non: c\n"off": d\n')
    assert codes(result) == ["PGL002"]
    assert result.findings[0].location == Location("doc.yaml", 2, 1)


def test_every_duplicate_in_a_file_is_reported(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: 1\na: 2\n---\nb: 1\nc: {x: 1, x: 2}\n")
    assert codes(result) == ["PGL002", "PGL002"]
    assert [f.location for f in result.findings] == [
        Location("doc.yaml", 2, 1),
        Location("doc.yaml", 5, 11),
    ]


# --------------------------------------------------------------------------- anchors & merges


def test_aliases_are_expanded_and_items_keep_the_alias_position(tmp_path: Path) -> None:
    doc = only_document(
        load_text(
            tmp_path,
            """
            defaults: &d {cpu: 1}
            list:
              - *d
              - *d
            """,
        )
    )
    assert doc.data["list"] == [{"cpu": 1}, {"cpu": 1}]
    assert doc.data["list"][0] is not doc.data["list"][1]
    assert doc.location(("list", 1)) == Location("doc.yaml", 4, 5)


def test_merge_keys_follow_yaml_1_1(tmp_path: Path) -> None:
    doc = only_document(
        load_text(
            tmp_path,
            """
            base: &base {cpu: 1, memory: 64}
            big: &big {memory: 512, disk: 10}
            one:
              <<: *base
              cpu: 2
            two:
              <<: [*big, *base]
            """,
        )
    )
    assert doc.data["one"] == {"cpu": 2, "memory": 64}
    assert doc.data["two"] == {"memory": 512, "disk": 10, "cpu": 1}
    # a merged value is located where it is written
    assert doc.location(("one", "memory")) == Location("doc.yaml", 1, 22)
    assert doc.location(("one", "cpu")) == Location("doc.yaml", 5, 3)


def test_merge_of_a_non_mapping_is_reported(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a:\n  <<: 5\n")
    assert codes(result) == ["PGL006"]
    assert "'<<'" in result.findings[0].message


def test_quoted_merge_key_is_a_plain_key(tmp_path: Path) -> None:
    doc = only_document(load_text(tmp_path, '"<<": 1\n'))
    assert doc.data == {"<<": 1}


def test_undefined_alias_is_a_syntax_error(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: 1\nb: *nowhere\n")
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("doc.yaml", 2, 4)
    assert "anchor" in result.findings[0].hint


# --------------------------------------------------------------------------- limits


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_fast(tmp_path: Path) -> None:
    write(tmp_path, "bomb.yaml", billion_laughs())
    write(tmp_path, "fine.yaml", "a: 1\n")

    started = time.perf_counter()
    result = load_directory(tmp_path)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert codes(result) == ["PGL004"]
    assert result.findings[0].location is not None
    assert result.findings[0].location.file == "bomb.yaml"
    assert "alias" in result.findings[0].message
    assert [d.file for d in result.documents] == ["fine.yaml"]


def test_billion_laughs_does_not_allocate_the_expansion(tmp_path: Path) -> None:
    write(tmp_path, "bomb.yaml", billion_laughs())
    tracemalloc.start()
    try:
        result = load_directory(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert codes(result) == ["PGL004"]
    assert peak < 10 * 1024 * 1024


def test_node_limit_counts_expanded_nodes(tmp_path: Path) -> None:
    text = "a: &a [1, 2, 3, 4]\nb: [*a, *a, *a]\n"  # 1 + (1 + 5) + (1 + 1 + 3 * 5) = 24
    assert only_document(load_text(tmp_path, text, LoadLimits(max_nodes_per_document=24)))
    result = load_directory(tmp_path, LoadLimits(max_nodes_per_document=23))
    assert codes(result) == ["PGL004"]


def test_recursive_alias_is_rejected(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: &loop\n  child: *loop\n")
    assert codes(result) == ["PGL004"]
    assert "recursive" in result.findings[0].message


def nested_mapping(levels: int) -> str:
    return "".join("  " * level + f"k{level}:\n" for level in range(levels - 1)) + (
        "  " * (levels - 1) + "leaf: 1\n"
    )


def test_deep_nesting_is_rejected_at_the_limit(tmp_path: Path) -> None:
    limits = LoadLimits(max_depth=10)
    assert only_document(load_text(tmp_path, nested_mapping(10), limits))

    result = load_text(tmp_path, nested_mapping(11), limits)
    assert codes(result) == ["PGL004"]
    assert result.findings[0].location == Location("doc.yaml", 11, 21)
    assert "10 levels" in result.findings[0].message


def assert_depth_finding(result: LoadResult, backend: str, line: int, column: int) -> None:
    """PGL004 naming our limit, at the level that crossed it (`column`); or, when libyaml's
    own nesting limit (1,000 levels in PyYAML 6.0.4's wheels, none before) stopped the
    parser first, further in on the same line - wherever that limit lies."""
    assert codes(result) == ["PGL004"]
    finding = result.findings[0]
    assert "64 levels" in finding.message
    assert finding.location is not None and finding.location.line == line
    assert finding.location.column is not None
    if backend == "python":
        assert finding.location.column == column
    else:
        assert finding.location.column >= column


def test_very_deep_flow_nesting_does_not_crash(tmp_path: Path, backend: str) -> None:
    result = load_text(tmp_path, "a: " + "[" * 200_000 + "]" * 200_000 + "\n")
    assert_depth_finding(result, backend, 1, 4 + 63)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("a: " + "{a: " * 1_000_000, 256),
        ("- " * 2_000_000 + "x\n", 129),
        ("a: " + "[{a: " * 800_000, 160),
        ("a: " + "[" * 4_000_000, 67),
    ],
    ids=["flow-mappings", "block-sequences", "mixed", "4MB-of-brackets"],
)
def test_deep_nesting_of_any_kind_stops_at_the_limit_quickly(
    tmp_path: Path, text: str, column: int, backend: str
) -> None:
    started = time.process_time()
    result = load_text(tmp_path, text)
    # CPU time, not wall time: the bound catches a parser that goes on composing (tens of
    # seconds); a loaded machine does not stretch it (the wall-time bound failed once with
    # two other test runs beside it)
    assert time.process_time() - started < 3.0
    assert_depth_finding(result, backend, 1, column)


def test_node_limit_stops_a_long_list_before_composing_the_rest(tmp_path: Path) -> None:
    write(tmp_path, "long.yaml", "a: 1\nlong: [" + "1, " * 300_000 + "1]\n")
    tracemalloc.start()
    try:
        result = load_directory(tmp_path, LoadLimits(max_nodes_per_document=1_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert codes(result) == ["PGL004"]
    assert result.findings[0].location == Location("long.yaml", 2, 7)  # the list
    assert peak < 8 * 1024 * 1024  # 0.9 MB file; loading all of it peaks at ~140 MB


def test_depth_added_by_aliases_counts(tmp_path: Path) -> None:
    text = "a: &a {b: {c: 1}}\nx: {y: {z: *a}}\n"  # x.y.z.b.c: 5 levels (+ root = 5 maps)
    assert only_document(load_text(tmp_path, text, LoadLimits(max_depth=5)))
    result = load_directory(tmp_path, LoadLimits(max_depth=4))
    assert codes(result) == ["PGL004"]
    assert result.findings[0].location == Location("doc.yaml", 2, 12)


def test_file_too_large_is_not_parsed(tmp_path: Path) -> None:
    write(tmp_path, "big.yaml", "a: " + "x" * 200 + "\n")
    write(tmp_path, "small.yaml", "a: 1\n")
    result = load_directory(tmp_path, LoadLimits(max_file_bytes=100))

    assert codes(result) == ["PGL003"]
    finding = result.findings[0]
    assert finding.location == Location("big.yaml")
    assert "204 bytes" in finding.message and "100 bytes" in finding.message
    assert [d.file for d in result.documents] == ["small.yaml"]


def test_total_size_limit_stops_loading(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write(tmp_path, f"{name}.yaml", "key: 123456\n")  # 12 bytes each
    result = load_directory(tmp_path, LoadLimits(max_total_bytes=30))

    assert codes(result) == ["PGL003"]
    assert result.findings[0].location == Location("c.yaml")
    assert "30 bytes" in result.findings[0].message
    assert result.files == ["a.yaml", "b.yaml"]
    assert [d.file for d in result.documents] == ["a.yaml", "b.yaml"]


def test_too_many_problems_are_capped(tmp_path: Path) -> None:
    text = "".join(f"k{n}: !bad {n}\n" for n in range(MAX_FINDINGS_PER_FILE + 50))
    result = load_text(tmp_path, text)
    assert len(result.findings) == MAX_FINDINGS_PER_FILE + 1
    assert result.findings[-1].code == "PGL010"
    assert result.findings[-1].severity is Severity.WARNING


# --------------------------------------------------------------------------- unsafe content


@pytest.mark.parametrize(
    ("text", "tag", "where"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", "!!python/object/apply:os.system", 4),
        ("a: !custom 5\n", "!custom", 4),
        ("a: !!set {x, y}\n", "!!set", 4),
        ("a: !!omap [{x: 1}]\n", "!!omap", 4),
        ("a: !!str {x: 1}\n", "!!str", 4),
        ("!custom k: 1\n", "!custom", 1),
    ],
)
def test_unsupported_tags_are_findings(tmp_path: Path, text: str, tag: str, where: int) -> None:
    result = load_text(tmp_path, text)
    assert codes(result) == ["PGL006"]
    assert tag in result.findings[0].message
    assert result.findings[0].location == Location("doc.yaml", 1, where)
    assert result.documents == []


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write(tmp_path, "x.yaml", f"a: !!python/object/apply:os.system ['touch {marker}']\n")
    result = load_directory(tmp_path)
    assert codes(result) == ["PGL006"]
    assert not marker.exists()


def test_complex_keys_are_rejected(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: 1\n? [x, y]\n: 2\n")
    assert codes(result) == ["PGL006"]
    assert result.findings[0].location == Location("doc.yaml", 2, 3)


# --------------------------------------------------------------------------- syntax & encoding


def test_syntax_error_reports_the_line(tmp_path: Path) -> None:
    result = load_text(
        tmp_path,
        """
        apiVersion: plexica.io/v1
        kind: Tenant
        metadata:
          name: acme
          description: value: with colon
        """,
    )
    assert codes(result) == ["PGL001"]
    finding = result.findings[0]
    assert finding.location == Location("doc.yaml", 5, 21)
    assert "mapping values are not allowed" in finding.message
    assert "quote" in finding.hint


def test_tab_indentation_gets_a_specific_hint(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a:\n\tb: 1\n")
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("doc.yaml", 2, 1)
    assert "spaces" in result.findings[0].hint


def test_syntax_error_in_a_later_document_drops_the_whole_file(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: 1\n---\nb: [1, 2\n")
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location is not None
    assert result.findings[0].location.line == 4
    assert result.documents == []


def test_control_characters_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"a: 1\nb: x\x07y\n")
    result = load_directory(tmp_path)
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("a.yaml", 2, 5)


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("a: 1\nname: café\n".encode("latin-1"))
    (tmp_path / "utf16.yaml").write_bytes("a: 1\n".encode("utf-16"))
    result = load_directory(tmp_path)

    assert codes(result) == ["PGL008", "PGL008"]
    latin1, utf16 = result.findings
    assert latin1.location == Location("latin1.yaml", 2, 10)
    assert "UTF-8" in latin1.message and "UTF-8" in latin1.hint
    assert "UTF-16" in utf16.message
    assert result.documents == []


def test_utf8_bom_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "bom.yaml").write_bytes("\ufeffname: café\n".encode())
    doc = only_document(load_directory(tmp_path))
    assert doc.data == {"name": "café"}
    assert doc.location(("name",)) == Location("bom.yaml", 1, 1)


# --------------------------------------------------------------------------- directory walk


def test_yml_files_and_nested_directories_are_found_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path, "z.yaml", "a: 1\n")
    write(tmp_path, "tenants/acme/tenant.yml", "a: 2\n")
    write(tmp_path, "tenants/acme/deep/er/x.YAML", "a: 3\n")
    write(tmp_path, "plugins/billing.yaml", "a: 4\n")
    write(tmp_path, "plugins/notes.md", "not yaml")
    write(tmp_path, "plugins/data.json", '{"a": 5}')
    result = load_directory(tmp_path)

    assert result.findings == []
    expected = [
        "plugins/billing.yaml",
        "tenants/acme/deep/er/x.YAML",
        "tenants/acme/tenant.yml",
        "z.yaml",
    ]
    assert result.files == expected
    assert [d.file for d in result.documents] == expected


def test_hidden_files_and_directories_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".github/workflows/ci.yaml", "on: push\n")
    write(tmp_path, "tenants/.draft.yaml", "a: [\n")
    write(tmp_path, "tenants/.cache/x.yaml", "a: [\n")
    write(tmp_path, "tenants/acme.yaml", "a: 1\n")
    result = load_directory(tmp_path)
    assert result.findings == []
    assert result.files == ["tenants/acme.yaml"]


def test_hidden_root_itself_is_loaded(tmp_path: Path) -> None:
    write(tmp_path, ".state/a.yaml", "a: 1\n")
    assert load_directory(tmp_path / ".state").files == ["a.yaml"]


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    missing = load_directory(tmp_path / "nope")
    assert codes(missing) == ["PGL009"]
    assert "does not exist" in missing.findings[0].message

    file_root = load_directory(write(tmp_path, "a.yaml", "a: 1\n"))
    assert codes(file_root) == ["PGL009"]
    assert "not a directory" in file_root.findings[0].message
    assert file_root.documents == []


@needs_symlinks
def test_symlinks_escaping_the_root_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.yaml", "password: hunter2\n")
    root = tmp_path / "root"
    write(root, "ok.yaml", "a: 1\n")
    os.symlink(outside / "secret.yaml", root / "linked.yaml")
    os.symlink(outside, root / "linked-dir")
    os.symlink("../outside/secret.yaml", root / "relative.yaml")
    result = load_directory(root)

    assert codes(result) == ["PGL007", "PGL007", "PGL007"]
    assert {f.location for f in result.findings} == {
        Location("linked.yaml"),
        Location("linked-dir"),
        Location("relative.yaml"),
    }
    assert all(f.severity is Severity.ERROR for f in result.findings)
    assert result.files == ["ok.yaml"]
    assert all("hunter2" not in str(d.data) for d in result.documents)


@needs_symlinks
def test_symlinks_inside_the_root_are_followed_and_loops_end(tmp_path: Path) -> None:
    write(tmp_path, "shared/base.yaml", "a: 1\n")
    os.symlink(tmp_path / "shared" / "base.yaml", tmp_path / "alias.yaml")
    os.symlink("..", tmp_path / "shared" / "loop")
    result = load_directory(tmp_path)

    assert result.findings == []
    assert result.files == ["alias.yaml", "shared/base.yaml"]


@needs_symlinks
def test_load_file_refuses_files_outside_the_root(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside.yaml", "a: 1\n")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "manifest.yaml")

    documents, findings = load_file(root / "manifest.yaml", root)
    assert documents == []
    assert [f.code for f in findings] == ["PGL007"]
    assert findings[0].location == Location("manifest.yaml")

    documents, findings = load_file(root / ".." / "outside.yaml", root)
    assert documents == []
    assert [f.code for f in findings] == ["PGL007"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_named_yaml_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    result = load_directory(tmp_path)
    assert codes(result) == ["PGL011"]
    assert "named pipe" in result.findings[0].message
    assert "regular file" in result.findings[0].message
    assert result.files == []  # nothing that reads the listed files later opens it


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_non_regular_files_are_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO (also behind a symlink), a socket, a device: a finding each, and not one
    `open` of them - opening a FIFO blocks, opening a device may act."""
    import socket

    os.mkfifo(tmp_path / "pipe.yaml")
    os.symlink(tmp_path / "pipe.yaml", tmp_path / "link.yml")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.yaml"))
    write(tmp_path, "ok.yaml", "a: 1\n")
    opened: list[str] = []
    real_open = os.open

    def spying_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(loader_module.os, "open", spying_open)
    try:
        result = load_directory(tmp_path)
        documents, findings = load_file(tmp_path / "pipe.yaml", tmp_path)
    finally:
        server.close()
    assert codes(result) == ["PGL011", "PGL011", "PGL011"]
    assert [f.location for f in result.findings] == [
        Location("link.yml"),
        Location("pipe.yaml"),
        Location("sock.yaml"),
    ]
    assert "socket" in result.findings[2].message
    assert (documents, [f.code for f in findings]) == ([], ["PGL011"])
    assert opened == [os.path.realpath(tmp_path / "ok.yaml")]
    assert [doc.file for doc in result.documents] == ["ok.yaml"]


def test_a_device_named_yaml_is_never_opened(tmp_path: Path) -> None:
    devnull = "/dev/null"
    if not os.path.exists(devnull):
        pytest.skip("needs /dev/null")
    documents, findings = load_file(Path(devnull), Path("/dev"))
    assert documents == []
    assert [f.code for f in findings] == ["PGL011"]
    assert "device" in findings[0].message


# --------------------------------------------------------------------------- load_file


def test_load_file_names_the_file_relative_to_the_root(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins/billing/manifest.yaml", "name: billing\n")
    documents, findings = load_file(path, tmp_path)
    assert findings == []
    assert [(d.file, d.data) for d in documents] == [
        ("plugins/billing/manifest.yaml", {"name": "billing"})
    ]


def test_load_file_reads_json_manifests(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{\n\t"size": 1e3,\n\t"ratio": 2.5E-1,\n\t"tags": ["a", null, true]\n}\n')
    documents, findings = load_file(path, tmp_path)

    assert findings == []
    (doc,) = documents
    assert doc.data == {"size": 1000.0, "ratio": 0.25, "tags": ["a", None, True]}
    assert doc.location(("tags", 1)) == Location("manifest.json", 4, 16)


def test_load_file_reports_problems_like_the_directory_walk(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", "a: 1\na: 2\n")
    documents, findings = load_file(path, tmp_path)
    assert documents == []
    assert [f.code for f in findings] == ["PGL002"]


# --------------------------------------------------------------------------- parsers


def test_libyaml_parses_when_available(backend: str) -> None:
    source = loader_module._event_source("a: 1\n")
    try:
        expected = yaml.CSafeLoader if backend == "libyaml" else yaml.SafeLoader
        assert type(source) is expected
    finally:
        source.dispose()
    assert yaml.__with_libyaml__ is (loader_module._USE_LIBYAML or backend == "python")


def tenant_document(number: int) -> str:
    return textwrap.dedent(
        f"""\
        # tenant {number}
        apiVersion: plexica.io/v1alpha1
        kind: Tenant
        metadata:
          name: tenant-{number:05d}
          labels: {{plan: enterprise, region: eu-west-1}}
        spec:
          id: 7be72c81-2e45-42c0-b2f0-{number:012d}
          displayName: "Tenant {number}"
          schema: tenant_{number:05d}
          status: active
          plugins:
            crm:
              enabled: true
              configuration:
                dealStages: [lead, qualified, proposal, negotiation, won, lost]
                currency: USD
                staleDealDays: 21
            billing:
              enabled: true
              configuration:
                taxRatePercent: 8.25
                invoiceNumberPrefix: T{number}-
                paymentTermsDays: 30
        """
    )


@pytest.mark.slow
def test_large_multi_document_file_loads_quickly(tmp_path: Path, backend: str) -> None:
    if backend != "libyaml":
        pytest.skip("speed is promised with libyaml; the pure-Python parser is ~10x slower")
    count = 3_500
    text = "---\n".join(tenant_document(number) for number in range(count))
    assert 2_000_000 < len(text) < 2_400_000
    (tmp_path / "tenants.yaml").write_text(text, "utf-8")

    # CPU time: on a shared CI runner, wall time also measures the neighbours
    started, cpu_started = time.perf_counter(), time.process_time()
    result = load_directory(tmp_path)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    assert result.findings == []
    assert len(result.documents) == count
    last = result.documents[-1]

    def position(needle: str) -> Location:
        offset = text.rindex(needle)
        line_start = text.rfind("\n", 0, offset) + 1
        return Location("tenants.yaml", text.count("\n", 0, offset) + 1, offset - line_start + 1)

    assert (last.index, last.line) == (count - 1, position("apiVersion").line)
    assert last.data["metadata"]["name"] == f"tenant-{count - 1:05d}"
    path = ("spec", "plugins", "billing", "configuration", "invoiceNumberPrefix")
    assert last.location(path) == position("invoiceNumberPrefix")
    assert last.location(("spec", "plugins", "crm", "configuration", "dealStages", 4)) == (
        position("won")
    )
    assert last.location(("metadata", "labels", "region")) == position("region")
    assert cpu < 2.0, f"2 MB took {cpu:.2f} s of CPU ({elapsed:.2f} s wall)"  # ~0.6 s


def node_shape(node: Node) -> Any:
    """A comparable view of a node tree (aliases followed, as PyYAML's composer does)."""
    node = loader_module._target(node)
    mark = (node.start_mark.line, node.start_mark.column)
    if isinstance(node, ScalarNode):
        return ("scalar", node.tag, node.value, node.style or None, mark)
    if isinstance(node, SequenceNode):
        return ("seq", node.tag, [node_shape(item) for item in node.value], mark)
    assert isinstance(node, MappingNode)
    pairs = [(node_shape(key), node_shape(value)) for key, value in node.value]
    return ("map", node.tag, pairs, mark)


def compose_all(text: str) -> list[Any]:
    source = loader_module._event_source(text)
    try:
        return [node_shape(node) for node in loader_module._compose(source, LoadLimits())]
    finally:
        source.dispose()


COMPOSER_CORPUS = [
    "a: 1\n",
    "",
    "# only a comment\n",
    "---\n---\na: 1\n...\n---\n- x\n",
    "plain: text\nquoted: 'x'\ndouble: \"y\"\nliteral: |\n  line\nfolded: >-\n  a\n  b\n",
    "ints: [0, -0, +1, 0o17, 017, 0x1F, 0b101, 1_000, 190:20:30, 12e3]\n",
    "floats: [1.5, -.5, 1e3, 6.8523015e+5, .inf, -.Inf, .NaN, 1_000.5, 190:20:30.15]\n",
    "bools: [yes, No, on, OFF, true, False, y, n]\nnulls: [~, null, NULL, '', ]\n",
    "dates: [2024-01-31, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5]\n",
    "tags: [!!str 1, !!int '2', ! 3, !local x, !!python/tuple [1], !<tag:x.org,1:y> z]\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!thing x\n",
    "base: &b {cpu: 1}\nuse: *b\nmerge: {<<: *b, cpu: 2}\nlist: [*b, &s scalar, *s]\n",
    "? complex\n: value\n? [a, b]\n: c\n",
    # (an empty value in a flow mapping, `{f: }`, is the one known difference: libyaml
    # marks it at the `}`, PyYAML right after the `:`; such a value has no position)
    "{a: 1, b: [2, {c: 3}], ? d : e, f: g}\n",
    "- - - nested\n  - x\n-\n- ''\n",
    "key:   spaced   \nunicode: é😀 x\nemoji😀: [1, 😀, 2]\n",
    "a: 1\r\nb:\r\n  c: 2\r\n",
    "a: 1\x85b: 2\u2028c: [3]\n",
    "\ufeffa: 1\n",
    "a: [1, 2]",
    "a:",
    "- ",
    "<<: {x: 1}\n=: 2\n",
]


@pytest.mark.parametrize("text", COMPOSER_CORPUS)
def test_composer_builds_the_nodes_pyyaml_builds(text: str) -> None:
    expected = [node_shape(node) for node in yaml.compose_all(text, Loader=yaml.SafeLoader)]
    assert compose_all(text) == expected


plain_scalars = st.text(alphabet="0123456789+-._:eEoxXbBinfaNF~ yYnNtTrRuUlLsS<=,", max_size=14)


@settings(max_examples=300, deadline=None)
@given(value=plain_scalars)
def test_plain_scalars_resolve_as_safeloader_does(value: str) -> None:
    text = f"v: {value}\n"
    try:
        expected = [node_shape(node) for node in yaml.compose_all(text, Loader=yaml.SafeLoader)]
    except yaml.YAMLError:
        assume(False)
    assert compose_all(text) == expected


def test_implicit_resolvers_are_read_per_file(monkeypatch: pytest.MonkeyPatch) -> None:
    resolvers = {
        first: list(entries) for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    resolvers.setdefault("p", []).insert(0, ("tag:yaml.org,2002:bool", re.compile("^probably$")))
    monkeypatch.setattr(yaml.SafeLoader, "yaml_implicit_resolvers", resolvers)
    expected = [node_shape(node) for node in yaml.compose_all("a: probably\n", yaml.SafeLoader)]
    assert compose_all("a: probably\n") == expected
    assert expected[0][2][0][1][1] == "tag:yaml.org,2002:bool"


def test_non_printable_characters_are_the_ones_pyyaml_refuses() -> None:
    assert loader_module._NON_PRINTABLE.pattern == yaml.reader.Reader.NON_PRINTABLE.pattern


def test_positions_count_characters_not_bytes(tmp_path: Path) -> None:
    doc = only_document(load_text(tmp_path, "é: 😀😀 x\nb: [1, 😀, 2]\nc:\r\n  d: 1\r\n"))
    assert doc.data == {"é": "😀😀 x", "b": [1, "😀", 2], "c": {"d": 1}}
    assert doc.location(("b", 2)) == Location("doc.yaml", 2, 11)
    assert doc.location(("c", "d")) == Location("doc.yaml", 4, 3)

    result = load_text(tmp_path, "a: 1\nb: é😀\x07\n")
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("doc.yaml", 2, 6)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [("a: [1, 2", 1, 9), ("{a: 1", 1, 6), ("a: 'x", 1, 6), ("a: 1\nb: [1,\n", 3, 1)],
)
def test_error_at_the_end_of_the_file(tmp_path: Path, text: str, line: int, column: int) -> None:
    (tmp_path / "doc.yaml").write_text(text, "utf-8")
    result = load_directory(tmp_path)
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("doc.yaml", line, column)


def test_syntax_errors_name_the_character_and_the_anchor(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: 1\nb: @x\n")
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("doc.yaml", 2, 4)
    assert "'@'" in result.findings[0].message

    result = load_text(tmp_path, "a: &x 1\nb: &x 2\n")
    assert codes(result) == ["PGL001"]
    assert result.findings[0].location == Location("doc.yaml", 2, 4)
    assert "'x'" in result.findings[0].message and "line 1, column 4" in result.findings[0].message
    assert "unique" in result.findings[0].hint

    result = load_text(tmp_path, "a: *nowhere\n")
    assert "'nowhere'" in result.findings[0].message


LIBYAML_SCANNER_LIMIT = "exceeded maximum nesting depth"


@pytest.mark.parametrize(
    ("error", "context", "problem"),
    [
        (
            yaml.parser.ParserError,
            "while parsing",
            "Maximum nesting level reached, set with yaml_set_max_nest_level())",
        ),
        (yaml.scanner.ScannerError, "while increasing flow level", LIBYAML_SCANNER_LIMIT),
        (yaml.scanner.ScannerError, "while increasing block level", LIBYAML_SCANNER_LIMIT),
    ],
    ids=["libyaml-0.2.6-parser", "pyyaml-6.0.4-flow", "pyyaml-6.0.4-block"],
)
@pytest.mark.parametrize(("max_depth", "says"), [(64, "64 levels"), (5_000, "parser allows")])
def test_libyaml_nesting_limit_is_a_depth_finding(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: type[yaml.MarkedYAMLError],
    context: str,
    problem: str,
    max_depth: int,
    says: str,
) -> None:
    """libyaml > 0.2.5 stops at 1,000 levels by itself, in words that differ between
    builds; that is PGL004 naming our limit, not a syntax error."""
    mark = yaml.error.Mark("<unicode string>", 1_002, 0, 1_002, None, 0)

    class Deep:
        def get_event(self) -> Any:
            raise error(context, mark, problem, mark)

        def dispose(self) -> None:
            pass

    monkeypatch.setattr(loader_module, "_event_source", lambda text: Deep())
    result = load_text(tmp_path, "a: 1\n", LoadLimits(max_depth=max_depth))
    assert codes(result) == ["PGL004"]
    assert result.findings[0].location == Location("doc.yaml", 1, 1_003)
    assert "nested deeper" in result.findings[0].message
    assert says in result.findings[0].message


def test_parsing_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "a: [1, 2, {b: 3}]\n")
    assert gc.isenabled()
    assert only_document(load_directory(tmp_path))
    assert gc.isenabled()
    gc.disable()
    try:
        assert only_document(load_directory(tmp_path))
        assert not gc.isenabled()
    finally:
        gc.enable()


# --------------------------------------------------------------------------- round trip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@pytest.mark.slow
@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_agrees_with_pyyaml_safe_load_on_dumped_data(tmp_path: Path, data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    (tmp_path / "doc.yaml").write_text(text, "utf-8")
    result = load_directory(tmp_path)
    assert result.findings == []
    assert result.documents[0].data == yaml.safe_load(text)


# --------------------------------------------------------------------------- positions


def all_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += all_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += all_paths(item, (*path, index))
    return paths


def test_positions_hold_every_value_and_nothing_else(tmp_path: Path) -> None:
    text = "a: 1\nb: [x, {c: [1, [2, 3]], d: {}}, []]\ne: {f: {g: h}}\n"
    doc = only_document(load_text(tmp_path, text))
    assert sorted(map(str, doc.positions)) == sorted(map(str, all_paths(doc.data)))
    assert len(doc.positions) == len(all_paths(doc.data))
    assert doc.positions[("b", 1, "c", 1, 0)] == (2, 17)
    for missing in [("z",), ("b", 3), ("b", "0"), ("a", "x"), ("b", True), ("e", "f", "g", "h")]:
        assert missing not in doc.positions
    assert doc.location(("b", 1, "zz")) == Location("doc.yaml", 2, 8)  # nearest ancestor


def test_a_large_mapping_is_looked_up_by_key(tmp_path: Path) -> None:
    text = "".join(f"k{n}: {n}\n" for n in range(500))
    doc = only_document(load_text(tmp_path, text))
    assert doc.location(("k377",)) == Location("doc.yaml", 378, 1)
    assert ("k500",) not in doc.positions


@pytest.mark.slow
def test_positions_cost_a_few_bytes_a_value(tmp_path: Path) -> None:
    """Every value has a position, and a desired state may hold millions of values: the
    positions must stay a small part of what the data itself takes (5,000 rows are enough to
    measure it: a fixed cost would show as more than 48 bytes a value)."""
    rows = "".join(f"  - {{id: {n}, name: n{n}, tags: [a, b], on: true}}\n" for n in range(5_000))
    write(tmp_path, "big.yaml", "items:\n" + rows)
    tracemalloc.start()
    try:
        result = load_directory(tmp_path)
        kept, _ = tracemalloc.get_traced_memory()
        data_only = sys.getsizeof(result.documents[0].data)  # the root dict
        result.documents[0].positions = {}
        gc.collect()
        without_positions, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    values = len(all_paths(result.documents[0].data))
    assert data_only > 0 and values > 30_000
    assert (kept - without_positions) / values < 48  # a dict of path tuples: ~230 bytes
