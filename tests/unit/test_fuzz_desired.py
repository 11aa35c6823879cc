"""Fuzzing the desired-state side: mutated YAML of the example desired state must never make
`validate` raise. Each example copies `desired-state/`, applies one to three mutations
(byte flips, lines deleted or repeated, entries inserted or values replaced with nasty
values - deep nesting, Unicode digits, trailing newlines, huge numbers, aliases, tags,
references that leave the secrets directory - or a file cut short) and runs
`validate_directory` (and, for a few, `plexica-gitops validate` through typer's runner).
Any exception fails the test, and so does a finding that is not well-formed.

Bounded in time: a fixed number of examples, no per-example deadline (the machine may be
busy), well under 30 s in all.

Adding a live-state strategy (the JSON `plan --live-state` reads) is one more
`@st.composite` beside `mutations` that draws JSON text, and a test that writes it next to
an example copy and runs the plan through `CliRunner` the way `test_validate_cli_never_
tracebacks` runs `validate`; `check_report` shows the checks a finding list must pass.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.desired.validate import ValidationReport, validate_directory
from plexica_gitops.render import findings as render

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "desired-state"
FILES = sorted(
    path.relative_to(EXAMPLE).as_posix()
    for path in EXAMPLE.rglob("*")
    if path.is_file() and path.suffix in (".yaml", ".sql")
)
YAML_FILES = [name for name in FILES if name.endswith(".yaml")]

NASTY_VALUES = [
    '"tenant_hooli\\n"',
    '"public\\n"',
    '"crm\\n"',
    "1\u0660\u0660m",
    "\u0664\u0665\u0666Mi",
    '"500m\\n"',
    "99999999999999999999999999999999",
    "-1",
    "0",
    ".nan",
    "-.inf",
    "1.0e+400",
    "true",
    "null",
    "[]",
    "{}",
    "~",
    "'1m,exec,suid,dev'",
    "!!binary aGVsbG8=",
    "!!python/object:os.system x",
    "!custom tag",
    "&anchor [*anchor]",
    "*nowhere",
    '{fromEnv: "X\\n"}',
    "{fromEnv: 1}",
    "{secretRef: {name: ../../etc, key: shadow}}",
    "{secretRef: {name: ok}}",
    '"http://[x"',
    '"https://user:pw-FUZZ@host/x"',
    '"/health\\r\\nHost: x"',
    '"' + "x" * 5000 + '"',
    "[" * 90 + "]" * 90,
    "{a: " * 70 + "1" + "}" * 70,
    '"\\t"',
    '"\\u0000"',
    "'0500m'",
    "'1.0.0-\u0661'",
    "'^1.2.3\\n'",
    "'>=1 <2 || '",
    "2048",
    "1Ti",
    "65536",
    "[1, 2, {a: [3, {b: 4}]}]",
]
NASTY_KEYS = [
    "kind",
    "apiVersion",
    "metadata",
    "spec",
    "state",
    "replicas",
    "manifestFile",
    "manifest",
    "schema",
    "id",
    "enabled",
    "configuration",
    "plugins",
    "env",
    "topics",
    "partitions",
    "config",
    "pidsLimit",
    "tmpfsSize",
    "cpu",
    "memory",
    "migrations",
    "path",
    "<<",
    "password",
    "apiToken",
    '"key\\n"',
    "x\u0660",
]


@st.composite
def values(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(NASTY_VALUES))
    text = draw(st.text(max_size=24))
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


@st.composite
def mutation(draw: st.DrawFn, texts: dict[str, bytes]) -> tuple[str, bytes]:
    """One edit of one file: (file, its new bytes)."""
    name = draw(st.sampled_from(FILES))
    data = texts[name]
    lines = data.split(b"\n")
    kind = draw(
        st.sampled_from(
            ["flip", "delete", "repeat", "insert", "replace", "cut", "nest", "document"]
        )
    )
    at = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "flip" and data:
        index = draw(st.integers(0, len(data) - 1))
        byte = draw(st.integers(0, 255))
        return name, data[:index] + bytes([byte]) + data[index + 1 :]
    if kind == "delete":
        return name, b"\n".join(lines[:at] + lines[at + 1 :])
    if kind == "repeat":
        return name, b"\n".join(lines[: at + 1] + lines[at:])
    if kind == "cut":
        return name, data[: draw(st.integers(0, len(data)))]
    if kind == "document":
        return name, data + b"\n---\n" + draw(values()).encode("utf-8", "surrogatepass") + b"\n"
    indent = len(lines[at]) - len(lines[at].lstrip(b" "))
    if kind == "insert":
        key = draw(st.sampled_from(NASTY_KEYS))
        entry = f"{' ' * indent}{key}: {draw(values())}".encode("utf-8", "surrogatepass")
        return name, b"\n".join([*lines[:at], entry, *lines[at:]])
    if kind == "nest":
        depth = draw(st.integers(1, 120))
        value = (
            ("[" * depth + "]" * depth)
            if draw(st.booleans())
            else "{a: " * depth + "1" + "}" * depth
        )
        entry = f"{' ' * indent}deep: {value}".encode()
        return name, b"\n".join([*lines[:at], entry, *lines[at:]])
    # replace the value of a `key: value` line
    line = lines[at]
    if b": " not in line:
        return name, data
    head = line.split(b": ", 1)[0]
    new = head + b": " + draw(values()).encode("utf-8", "surrogatepass")
    return name, b"\n".join([*lines[:at], new, *lines[at + 1 :]])


def mutations() -> st.SearchStrategy[list[tuple[str, bytes]]]:
    texts = {name: (EXAMPLE / name).read_bytes() for name in FILES}
    return st.lists(mutation(texts), min_size=1, max_size=3)


@contextmanager
def mutated(edits: list[tuple[str, bytes]]) -> Iterator[Path]:
    """A copy of the example with `edits` applied (later edits of a file win)."""
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / "desired-state"
        shutil.copytree(EXAMPLE, root)
        for name, data in edits:
            (root / name).write_bytes(data)
        yield root


FINDING_CODE = re.compile(r"PG[LSV][0-9]{3}")


def check_report(report: ValidationReport) -> None:
    """What every report must be: well-formed findings, each rendering in every format,
    each in a plugin's or a tenant's file naming who it is about."""
    for finding in report.findings:
        assert FINDING_CODE.fullmatch(finding.code), finding
        assert finding.message and finding.hint, finding
        json.dumps(finding.to_json())
        file = finding.location.file if finding.location else ""
        if file.startswith(("plugins/", "tenants/")):
            assert finding.subjects, finding
        assert "pw-FUZZ" not in finding.message + finding.hint  # a URL's password
    assert report.valid == (not report.errors)
    json.loads(render.render_json(report))
    render.render_github(report)
    render.print_text(report, Console(file=StringIO(), width=100), "desired-state")


@settings(
    max_examples=45,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutations())
@example([("tenants/hooli.yaml", b"apiVersion: plexica.io/v1alpha1\nkind: Tenant\n" * 2)])
@example(
    [
        (
            "plugins/inventory/plugin.yaml",
            (EXAMPLE / "plugins/inventory/plugin.yaml")
            .read_bytes()
            .replace(b"cpu: 250m", b'cpu: "250m\\n"'),
        )
    ]
)
def test_validate_never_raises(edits: list[tuple[str, bytes]]) -> None:
    with mutated(edits) as root:
        report = validate_directory(root)
    check_report(report)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_validate_cli_never_tracebacks(edits: list[tuple[str, bytes]]) -> None:
    with mutated(edits) as root:
        result = CliRunner().invoke(app, ["validate", str(root), "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    document = json.loads(result.stdout)
    assert document["valid"] == (result.exit_code == 0)
