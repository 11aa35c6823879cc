"""The content-addressed cache (source/cache.py): the same findings and the same desired
state with and without it, cold, warm and after edits; an entry that cannot be trusted is
ignored and rewritten; the CLI's --cache-dir, --no-cache and PLEXICA_CACHE_DIR."""

from __future__ import annotations

import dataclasses
import enum
import gc
import hashlib
import json
import os
import re
import shutil
import types
import typing
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.desired.build import build_desired_state
from plexica_gitops.desired.model import TenantDocument, TenantPlugin
from plexica_gitops.desired.validate import ValidationReport, validate_directory
from plexica_gitops.findings import Finding
from plexica_gitops.render.findings import render_json
from plexica_gitops.source import loader
from plexica_gitops.source.cache import MAGIC, Cache, default_cache_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "desired-state"

# Tenants of the generated state: clones of acme, some with findings of every stage that
# the cache keeps (schema, model, configuration, secret literal, reference names).
_BROKEN = {
    3: (
        "currency: USD\n        paymentTermsDays: 30",
        "currency: 12\n        paymentTermsDays: -1",
    ),
    5: ("  displayName:", "  displayNam:"),
    7: ("staleDealDays: 21", "staleDealDays: .nan"),
    9: ("secretRef: {name: acme-smtp, key: password}", "hunter2"),
    11: ("key: bot-token}", "key: ../bot-token}"),
    13: ("schema: tenant_", "schema: pg_tenant_"),
}


def _generated(root: Path, tenants: int = 16) -> Path:
    shutil.copytree(EXAMPLE, root)
    acme = (root / "tenants" / "acme.yaml").read_text(encoding="utf-8")
    for number in range(tenants):
        slug = f"clone-{number:03d}"
        text = acme.replace("name: acme ", f"name: {slug} ").replace(
            "tenant_acme", f"tenant_{number}"
        )
        text = text.replace(
            "7be72c81-2e45-42c0-b2f0-8962a8", f"7be72c81-2e45-42c0-b2f0-{number:06d}"
        )
        if number in _BROKEN:
            old, new = _BROKEN[number]
            assert old in text, old
            text = text.replace(old, new, 1)
        text = text.replace("staleDealDays: 21", f"staleDealDays: {number + 1}")
        (root / "tenants" / f"{slug}.yaml").write_text(text, encoding="utf-8")
    (root / "tenants" / "broken.yaml").write_text("apiVersion: [\n", encoding="utf-8")
    return root


def _seen(report: ValidationReport) -> tuple[str, str]:
    """What a user sees (the findings, byte for byte) and what the planner gets."""
    desired = report.desired
    state = json.dumps(
        {
            "revision": desired.revision,
            "files": desired.files,
            "tenants": {
                slug: entry.document.model_dump(mode="json", by_alias=True, exclude_unset=True)
                for slug, entry in desired.tenants.items()
            },
        },
        sort_keys=True,
    )
    return render_json(report), state


def _same_with_and_without(root: Path, cache_dir: Path) -> Cache:
    cache = Cache(cache_dir)
    assert _seen(validate_directory(root, cache=cache)) == _seen(validate_directory(root))
    return cache


@pytest.fixture(params=["example", "generated"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "example":
        root = tmp_path / "state"
        shutil.copytree(EXAMPLE, root)
        return root
    return _generated(tmp_path / "state")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_findings_and_desired_state_are_the_same_cold_warm_and_after_edits(
    state: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    cold = _same_with_and_without(state, cache_dir)
    assert cold.hits == 0 and cold.written > 0
    warm = _same_with_and_without(state, cache_dir)
    assert warm.hits > 0 and warm.written == 0  # nothing new: every tenant file reused
    tenants = len(list((state / "tenants").iterdir()))
    # one tenant file edited: a configuration now invalid, found at its line
    _edit(state / "tenants" / "acme.yaml", "staleDealDays: 21", 'staleDealDays: "21"')
    edited = _same_with_and_without(state, cache_dir)
    assert edited.written > 0
    report = validate_directory(state, cache=Cache(cache_dir))
    assert any(
        f.code == "PGV602" and f.location and f.location.file == "tenants/acme.yaml"
        for f in report.findings
    )
    # a plugin's configuration schema edited: every tenant's configuration checked again
    _edit(
        state / "plugins" / "crm" / "plugin.yaml",
        "is flagged as stale.\n            minimum: 1\n",
        "is flagged as stale.\n            minimum: 5\n",
    )
    after_schema = _same_with_and_without(state, cache_dir)
    assert after_schema.hits >= tenants - 1  # tenant files reused, their checks not


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*") if p.is_file() and not p.name.startswith("."))


def _truncate(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _corrupt(raw: bytes) -> bytes:
    return raw[:-10] + bytes(b ^ 0x55 for b in raw[-10:])


def _foreign(raw: bytes) -> bytes:
    """Written by another version of the tool: a consistent entry, another fingerprint."""
    header_end = raw.index(b"\n", len(MAGIC))
    header = json.loads(raw[len(MAGIC) : header_end])
    header["tool"] = "0.0.1 0123456789abcdef"
    return MAGIC + json.dumps(header).encode() + raw[header_end:]


def _tampered(raw: bytes) -> bytes:
    """Its payload edited (a tenant's schema renamed, a configuration said valid)."""
    return re.sub(rb"tenant_", b"tenant_x", raw, count=1) if b"tenant_" in raw else raw + b" "


def _garbage(raw: bytes) -> bytes:
    return b"\x80\x04\x95 not an entry at all" + raw[:7]


@pytest.mark.parametrize("damage", [_truncate, _corrupt, _foreign, _tampered, _garbage])
def test_an_entry_that_cannot_be_trusted_is_ignored_and_rewritten(
    damage: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    root = _generated(tmp_path / "state", tenants=4)
    cache_dir = tmp_path / "cache"
    _same_with_and_without(root, cache_dir)
    good = {path: path.read_bytes() for path in _entries(cache_dir)}
    for path, raw in good.items():
        path.write_bytes(damage(raw))
    damaged = _same_with_and_without(root, cache_dir)  # no traceback, the same findings
    assert damaged.hits == 0
    assert {path: path.read_bytes() for path in _entries(cache_dir)} == good  # rewritten
    assert _same_with_and_without(root, cache_dir).hits > 0


def test_an_entry_moved_under_another_key_is_not_used(tmp_path: Path) -> None:
    root = _generated(tmp_path / "state", tenants=2)
    cache_dir = tmp_path / "cache"
    _same_with_and_without(root, cache_dir)
    files = [p for p in _entries(cache_dir) if p.parent.parent.name == "file"]
    first, second = files[0], files[1]
    second.write_bytes(first.read_bytes())  # a valid entry, for another file's bytes
    _same_with_and_without(root, cache_dir)


def test_an_unwritable_cache_directory_only_costs_time(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    cache = _same_with_and_without(EXAMPLE, blocked)
    assert cache.written == 0


def test_the_cache_is_pruned_to_its_bound(tmp_path: Path) -> None:
    root = _generated(tmp_path / "state", tenants=6)
    validate_directory(root, cache=Cache(tmp_path / "kept"))
    assert _entries(tmp_path / "kept")
    validate_directory(root, cache=Cache(tmp_path / "bounded", max_bytes=1))
    assert not _entries(tmp_path / "bounded")  # the run that wrote them pruned them


def test_cached_entries_hold_references_never_resolved_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXICA_PLUGIN_DATABASE_URL", "postgresql://u:s3cr3t-value@db/x")
    _same_with_and_without(EXAMPLE, tmp_path / "cache")
    text = b"".join(path.read_bytes() for path in _entries(tmp_path / "cache"))
    assert b"s3cr3t-value" not in text
    assert b"acme-smtp" in text  # the reference, as the YAML writes it


def test_default_cache_directory() -> None:
    assert default_cache_dir({"PLEXICA_CACHE_DIR": "/c"}) == Path("/c")
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/plexica-gitops")
    assert default_cache_dir({}).parts[-2:] == (".cache", "plexica-gitops")


def test_cli_cache_dir_no_cache_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _generated(tmp_path / "state", tenants=3)
    runner = CliRunner()
    plain = runner.invoke(app, ["validate", str(root), "--format", "json", "--no-cache"])
    assert plain.exit_code == 1, plain.output
    by_flag = tmp_path / "flag"
    for _ in range(2):
        cached = runner.invoke(
            app, ["validate", str(root), "--format", "json", "--cache-dir", str(by_flag)]
        )
        assert (cached.exit_code, cached.output) == (1, plain.output)
    assert _entries(by_flag)
    by_env = tmp_path / "env"
    monkeypatch.setenv("PLEXICA_CACHE_DIR", str(by_env))
    cached = runner.invoke(app, ["validate", str(root), "--format", "json"])
    assert (cached.exit_code, cached.output) == (1, plain.output)
    assert _entries(by_env)
    none = tmp_path / "none"
    monkeypatch.setenv("PLEXICA_CACHE_DIR", str(none))
    runner.invoke(app, ["validate", str(root), "--no-cache"])
    assert not none.exists()
    planned = runner.invoke(
        app, ["plan", str(EXAMPLE), "--live-state", "-", "--cache-dir", str(by_flag)], input="{}"
    )
    assert planned.exit_code == 0, planned.output


def test_a_git_revision_reads_through_the_cache_as_without_it(tmp_path: Path) -> None:
    from git_repos import desired_repo

    from plexica_gitops.source.git import GitTree

    repo = desired_repo(tmp_path)
    cache_dir = tmp_path / "cache"
    for ref in ("v1", "main", "v1"):
        with GitTree(repo.work, ref, "desired-state") as tree:
            plain = _seen(validate_directory(tree))
        with GitTree(repo.work, ref, "desired-state") as tree:
            cache = Cache(cache_dir)
            assert _seen(validate_directory(tree, cache=cache)) == plain
    assert cache.hits > 0 and cache.written == 0  # v1 again: every tenant file reused


# Values that JSON carries only with care, each in its own tenant file (so that one the
# cache cannot keep does not hide the others): in an open `tuning` object of crm's
# configuration, where the plan shows them, or as `staleDealDays`, an integer, where a
# finding shows them. `lone` is read by the pure-Python YAML parser only (libyaml rejects
# the escape: a syntax error, which would leave no plan).
_EDGE_VALUES = {
    "nan": ".nan",
    "inf": ".inf",
    "minus-inf": "-.inf",
    "big": "123456789012345678901234567890",
    "minus-big": "-123456789012345678901234567890",
    "minus-zero": "-0.0",
    "lone": '"\\ud800"',
    "text": '"Zürich · 東京 😀 \\u0000 \\u2028"',
    "key-order": "{zKey: first, aKey: second, ключ: [3, 1.0, true, null]}",
    "nan-text": '"NaN or Infinity, in words"',
}
# JSON cannot carry a NaN, an infinity or a lone surrogate: those files are read again.
_NOT_CACHED = {"nan", "inf", "minus-inf", "lone"}


def _edge_state(root: Path, where: str, values: dict[str, str]) -> None:
    if not root.exists():
        shutil.copytree(EXAMPLE, root)
        _edit(
            root / "plugins" / "crm" / "plugin.yaml",
            "          requireLostReason:\n",
            "          tuning: {type: object}\n          requireLostReason:\n",
        )
    acme = (EXAMPLE / "tenants" / "acme.yaml").read_text(encoding="utf-8")
    for number, (slug, value) in enumerate(values.items()):
        text = acme.replace("name: acme ", f"name: {slug} ").replace(
            "tenant_acme", f"tenant_{number}"
        )
        text = text.replace(
            "7be72c81-2e45-42c0-b2f0-8962a8", f"7be72c81-2e45-42c0-b2f0-{number:06d}"
        )
        if where == "tuning":
            old, new = "requireLostReason: true\n", f"tuning:\n          value: {value}\n"
            text = text.replace(old, old + "        " + new)
        else:
            text = text.replace("staleDealDays: 21", f"staleDealDays: {value}")
        (root / "tenants" / f"{slug}.yaml").write_text(text, encoding="utf-8")


def _exact(report: ValidationReport) -> dict[str, str]:
    """Each tenant's model as Python writes it: tells NaN from null, -0.0 from 0.0, 1 from
    1.0 and true, and shows the key order and the fields set."""
    return {
        slug: repr(entry.document.model_dump(exclude_unset=True))
        for slug, entry in report.desired.tenants.items()
    }


def _planned(root: Path, *cache: str) -> str:
    result = CliRunner().invoke(
        app, ["plan", str(root), "--live-state", "-", "--format", "json", *cache], input="{}"
    )
    return f"{result.exit_code}\n{result.output}"


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python-yaml"])
def test_values_json_carries_with_care_read_back_from_the_cache_as_written(
    libyaml: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "_USE_LIBYAML", libyaml)
    root, cache_dir = tmp_path / "state", tmp_path / "cache"
    values = {k: v for k, v in _EDGE_VALUES.items() if k != "lone" or not libyaml}
    for where in ("tuning", "staleDealDays"):  # in the plan, then in findings
        _edge_state(root, where, values)
        plain = validate_directory(root)
        exact = _exact(plain)
        assert set(exact) >= set(values) and "-0.0" in exact["minus-zero"], exact
        plan = _planned(root, "--no-cache")
        assert plan.startswith("0\n" if where == "tuning" else "1\n"), plan
        for run in ("cold", "warm"):
            report = validate_directory(root, cache=Cache(cache_dir))
            assert render_json(report) == render_json(plain), (where, run)
            assert _exact(report) == exact, (where, run)
            assert _planned(root, "--cache-dir", str(cache_dir)) == plan, (where, run)
        # the warm run read every tenant JSON carries exactly from the cache, the others anew
        from_cache = {
            slug
            for slug, entry in report.desired.tenants.items()
            if isinstance(entry.source.positions, loader.LazyPositions)
        }
        assert from_cache == set(exact) - _NOT_CACHED, where
    assert "nan is not of type 'integer'" in render_json(plain)


def test_the_tenant_model_holds_only_what_json_carries_exactly() -> None:
    """What build._model_json relies on to store a tenant without reading its JSON back:
    every field is text, a boolean, an enum, None or a dict or model of those, but for the
    configurations (checked for NaN and infinities), and no model has validators or
    serializers. A new field of another type (a float, a date) must come with a round trip
    in _model_json, or with a check like the configurations'."""
    seen: set[type[pydantic.BaseModel]] = set()

    def check(annotation: Any, where: str) -> None:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            check(args[0], where)
        elif origin in (typing.Union, types.UnionType):
            for arg in args:
                check(arg, where)
        elif origin is typing.Literal:
            assert all(isinstance(arg, str) for arg in args), where
        elif origin is dict:
            assert args[0] is str, where
            if where == "TenantPlugin.configuration":
                assert args[1] is Any, where
                return
            check(args[1], f"{where}[]")
        elif isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            if annotation in seen:
                return
            seen.add(annotation)
            decorators = annotation.__pydantic_decorators__
            assert not any(dataclasses.asdict(decorators).values()), annotation
            for name, info in annotation.model_fields.items():
                check(info.annotation, f"{annotation.__name__}.{name}")
        else:
            assert annotation in (str, bool, type(None)) or (
                isinstance(annotation, type) and issubclass(annotation, enum.StrEnum)
            ), f"{where}: {annotation!r}"

    check(TenantDocument, "TenantDocument")
    assert TenantPlugin in seen


def test_positions_read_back_from_their_cached_text_as_they_were(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "a:\n  ключ: 1\n  b: [x, {東京: 2}]\n  'quoted \"key\"': {}\n", encoding="utf-8"
    )
    documents, findings = loader.load_file(tmp_path / "t.yaml", tmp_path)
    assert not findings
    positions = documents[0].positions
    assert isinstance(positions, loader.Positions)
    lazy = loader.LazyPositions(positions.to_text())
    assert dict(lazy) == dict(positions) and len(positions) == 8


def test_an_entry_is_written_when_its_temporary_name_is_taken(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = cache.key("file", b"a")
    directory = cache.entries / "file" / key[:2]
    directory.mkdir(parents=True)
    taken = directory / f".tmp-{os.getpid()}-1"  # the name this run's first put takes
    taken.write_bytes(b"another run's")
    cache.put("file", key, {"n": 1})
    assert Cache(tmp_path).get("file", key) == {"n": 1}
    assert taken.read_bytes() == b"another run's"


# --------------------------------------------------------------------------- the revision


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the directory's revision reads itself (not handed by the loader)."""
    read: list[str] = []
    original = loader.read_regular_file

    def counted(path: str, rel: str, max_bytes: int) -> bytes | Finding:
        read.append(rel)
        return original(path, rel, max_bytes)

    monkeypatch.setattr(loader, "read_regular_file", counted)
    return read


def test_a_warm_revision_reads_no_tenant_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _generated(tmp_path / "state", tenants=4)
    cache_dir = tmp_path / "cache"
    _same_with_and_without(root, cache_dir)
    plain = validate_directory(root).desired.revision
    read = _reads(monkeypatch)
    warm = validate_directory(root, cache=Cache(cache_dir))
    assert warm.desired.revision == plain
    tenants = [file for file in warm.desired.files if file.startswith("tenants/")]
    assert tenants and not [file for file in read if file.startswith("tenants/")]
    # what the loader does not read (manifest and migration files), the revision reads
    assert read and all(file in warm.desired.files for file in read)


def _changed(root: Path) -> None:
    _edit(root / "tenants" / "clone-001.yaml", "displayName:", "displayName: X")


def _same_size(root: Path) -> None:
    acme = root / "tenants" / "clone-002.yaml"
    acme.write_bytes(acme.read_bytes().replace(b"clone-002", b"clone-00x", 1))


def _deleted(root: Path) -> None:
    (root / "tenants" / "clone-001.yaml").unlink()


def _added(root: Path) -> None:
    shutil.copy(root / "tenants" / "broken.yaml", root / "tenants" / "added.yaml")


def _migration_edited(root: Path) -> None:
    migration = next((root / "plugins" / "crm").rglob("*.sql"))
    migration.write_bytes(migration.read_bytes() + b"\n-- edited\n")


@pytest.mark.parametrize("edit", [_changed, _same_size, _deleted, _added, _migration_edited])
def test_the_revision_follows_every_edit_with_a_cache(
    edit: Callable[[Path], None], tmp_path: Path
) -> None:
    root = _generated(tmp_path / "state", tenants=4)
    cache_dir = tmp_path / "cache"
    before = validate_directory(root).desired.revision
    _same_with_and_without(root, cache_dir)
    _same_with_and_without(root, cache_dir)
    edit(root)
    after = _same_with_and_without(root, cache_dir)
    assert validate_directory(root).desired.revision != before
    assert after.written > 0  # the new revision is kept ...
    assert _same_with_and_without(root, cache_dir).written == 0  # ... and found


def test_a_linked_tenant_file_keeps_its_revision_with_a_cache(tmp_path: Path) -> None:
    """The revision has always counted a symlinked file as <unreadable> (it reads the
    link without following it): the loader's bytes of it are not what the revision hashes,
    and a warm run still finds its revision."""
    root = _generated(tmp_path / "state", tenants=2)
    shared = root / "shared"
    shared.mkdir()
    (root / "tenants" / "clone-001.yaml").rename(shared / "clone-001.yaml")
    (root / "tenants" / "clone-001.yaml").symlink_to("../shared/clone-001.yaml")
    cache_dir = tmp_path / "cache"
    _same_with_and_without(root, cache_dir)
    assert _same_with_and_without(root, cache_dir).written == 0


def test_a_revision_entry_holding_no_revision_is_not_used(tmp_path: Path) -> None:
    root = _generated(tmp_path / "state", tenants=2)
    cache_dir = tmp_path / "cache"
    _same_with_and_without(root, cache_dir)
    (entry,) = [p for p in _entries(cache_dir) if p.parent.parent.name == "revision"]
    raw = entry.read_bytes()
    header_end = raw.index(b"\n", len(MAGIC))
    for value in ("sha256:" + "0" * 63, "not a revision", ["sha256:" + "0" * 64], None):
        payload = json.dumps(value).encode()  # a consistent entry, of a value never written
        header = json.loads(raw[len(MAGIC) : header_end])
        header.update(size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        entry.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + payload)
        assert _same_with_and_without(root, cache_dir).written > 0  # computed, rewritten
    assert entry.read_bytes() == raw


# --------------------------------------------------------------------------- the collector


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "warm"])
def test_a_built_state_is_kept_from_the_collector_and_freed_when_dropped(
    cached: bool, tmp_path: Path
) -> None:
    root = _generated(tmp_path / "state", tenants=3)
    cache = Cache(tmp_path / "cache") if cached else None
    build_desired_state(root, cache)
    try:
        built = build_desired_state(root, cache)
        assert gc.isenabled()
        tenant = next(iter(built.desired.tenants.values()))
        model = weakref.ref(tenant.document)
        # frozen: later passes do not scan it again
        assert gc.get_freeze_count() > 0
        assert all(o is not tenant.document for o in gc.get_objects())
        del built, tenant
        assert model() is None  # no cycle keeps it: reference counting freed it
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        build_desired_state(root, cache)
        assert not gc.isenabled()  # a collector turned off is left alone
    finally:
        gc.enable()


class _Cycle:
    def __init__(self) -> None:
        self.itself = self


def test_a_cycle_alive_during_a_build_is_collected_by_the_next_one(tmp_path: Path) -> None:
    """What a build freezes is everything alive then, in a long-lived process (reconcile)
    also objects in a reference cycle that are dropped afterwards: the next build frees
    them, so such garbage never outlives one build."""
    root = _generated(tmp_path / "state", tenants=1)
    cycle = _Cycle()
    alive = weakref.ref(cycle)
    try:
        build_desired_state(root)
        del cycle
        gc.collect()
        assert alive() is not None  # frozen with the build: not scanned
        build_desired_state(root)
        assert alive() is None
    finally:
        gc.unfreeze()


def test_an_entry_header_is_the_json_of_what_wrote_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = cache.key("file", b"x")
    cache.put("file", key, {"a": "é"}, ["[1]", '"two"'])
    raw = next(path for path in _entries(tmp_path)).read_bytes()
    header_end = raw.index(b"\n", len(MAGIC))
    payload = raw[header_end + 1 :]
    assert json.loads(raw[len(MAGIC) : header_end]) == {
        "format": 1,
        "tool": cache.fingerprint,
        "kind": "file",
        "key": key,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    assert Cache(tmp_path).get_texts("file", key) == ({"a": "é"}, [b"[1]", b'"two"'])
    assert Cache(tmp_path).get("file", key) is None  # not one JSON value
    cache.put("file", key, {"b": 1}, ["[1,\n2]"])  # a text of two lines: not stored
    assert Cache(tmp_path).get_texts("file", key) == ({"a": "é"}, [b"[1]", b'"two"'])
