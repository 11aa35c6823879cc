"""Tests for plexica_gitops.loader: what a user of `validate` would notice."""

from __future__ import annotations

import math
import os
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plexica_gitops.findings import Location, Severity
from plexica_gitops.loader import (
    MAX_FINDINGS_PER_FILE,
    LoadLimits,
    LoadResult,
    SourceDocument,
    load_directory,
    load_file,
)

needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX symlinks")


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


def test_very_deep_flow_nesting_does_not_crash(tmp_path: Path) -> None:
    result = load_text(tmp_path, "a: " + "[" * 200_000 + "]" * 200_000 + "\n")
    assert codes(result) == ["PGL004"]
    assert result.findings[0].location == Location("doc.yaml", 1, 4 + 63)


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
    assert codes(result) == ["PGL008"]
    assert "regular file" in result.findings[0].message


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
