"""`plexica-gitops validate`: exit codes and the text, JSON and GitHub output formats."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner, Result

from plexica_gitops.cli import app

if TYPE_CHECKING:
    from conftest import DesiredStateCopy

DIR = "desired-state"  # passed relative to the working directory, as CI would
INVENTORY = "plugins/inventory/plugin.yaml"
HOOLI = "tenants/hooli.yaml"
SUMMARY = re.compile(r"6 plugins, 5 tenants in \d+ files")


@pytest.fixture
def repo(desired_state_copy: DesiredStateCopy, monkeypatch: pytest.MonkeyPatch) -> DesiredStateCopy:
    """The example copy, with the working directory set to its parent (so DIR works)."""
    assert desired_state_copy.root.name == DIR
    monkeypatch.chdir(desired_state_copy.root.parent)
    return desired_state_copy


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["validate", *args])


def two_errors(repo: DesiredStateCopy) -> tuple[str, str]:
    """An error in two files; return the `line:col` of each."""
    memory = repo.replace(INVENTORY, "memory: 384Mi", "memory: 512MB")
    tenant_id = repo.replace(HOOLI, "id: deb11b4d-6355-4379-b0a2-d69759655852", "id: hooli-1")
    return f"{memory.line}:{memory.column}", f"{tenant_id.line}:{tenant_id.column}"


# --------------------------------------------------------------------------- exit codes


def test_good_example_exits_0_with_a_valid_summary(repo: DesiredStateCopy) -> None:
    result = run(DIR)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("✓ valid: ")
    assert SUMMARY.search(lines[0])


def test_an_error_exits_1(repo: DesiredStateCopy) -> None:
    repo.replace(INVENTORY, "memory: 384Mi", "memory: 512MB")
    assert run(DIR).exit_code == 1


def test_warnings_alone_exit_0(repo: DesiredStateCopy) -> None:
    repo.replace(INVENTORY, "inventory:0.9.0", "inventory:latest")
    result = run(DIR)
    assert result.exit_code == 0, result.output
    assert "PGV303" in result.stdout
    last = result.stdout.splitlines()[-1]
    assert last.startswith("✓ valid: ") and last.endswith(", 1 warning")


@pytest.mark.parametrize(
    "args",
    [
        [DIR, "--frobnicate"],
        [DIR, "--format", "xml"],
        [DIR, "--format"],
        [DIR, "extra-argument"],
    ],
)
def test_usage_errors_exit_2(repo: DesiredStateCopy, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_missing_directory_is_an_error_not_a_crash(repo: DesiredStateCopy) -> None:
    result = run("no-such-directory", "--format", "json")
    assert result.exit_code == 2  # a usage error, still reported as a finding for machines
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["code"] == "PGL009"


@pytest.mark.slow
def test_console_script_runs(repo: DesiredStateCopy) -> None:
    script = Path(sys.executable).parent / "plexica-gitops"
    command = str(script) if script.exists() else shutil.which("plexica-gitops")
    assert command, "the plexica-gitops console script is not installed"
    env = {**os.environ, "NO_COLOR": "1"}
    completed = subprocess.run(
        [command, "validate", DIR], capture_output=True, text=True, timeout=60, env=env
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "valid" in completed.stdout
    assert SUMMARY.search(completed.stdout)


# --------------------------------------------------------------------------- text


def test_text_groups_findings_under_their_file_and_ends_with_a_summary(
    repo: DesiredStateCopy,
) -> None:
    memory, tenant_id = two_errors(repo)
    result = run(DIR)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    header_plugin = lines.index(f"{DIR}/{INVENTORY}")
    header_tenant = lines.index(f"{DIR}/{HOOLI}")
    assert header_plugin < header_tenant  # files in sorted order
    # each header is followed by its finding and the finding's hint
    assert re.match(
        rf"^\s+{memory}\s+error\s+PGV504\s+plugin 'inventory'", lines[header_plugin + 1]
    )
    assert lines[header_plugin + 2].strip().startswith("hint: ")
    assert re.match(rf"^\s+{tenant_id}\s+error\s+PGV207\s+tenant 'hooli'", lines[header_tenant + 1])
    assert lines[header_tenant + 2].strip().startswith("hint: ")
    assert lines[-1].startswith("✗ invalid: 2 errors, 0 warnings (")
    assert SUMMARY.search(lines[-1])
    assert len(lines) == 7


# --------------------------------------------------------------------------- json


def test_json_output(repo: DesiredStateCopy) -> None:
    memory, tenant_id = two_errors(repo)
    result = run(DIR, "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    findings = document["findings"]
    assert [f["code"] for f in findings] == ["PGV504", "PGV207"]
    for finding in findings:
        assert {"code", "severity", "file", "line", "column", "message", "hint"} <= set(finding)
        assert finding["severity"] == "error"
        assert not finding["file"].startswith(("/", DIR))  # relative to DIR
        assert (repo.root / finding["file"]).is_file()
    assert (findings[0]["file"], f"{findings[0]['line']}:{findings[0]['column']}") == (
        INVENTORY,
        memory,
    )
    assert (findings[1]["file"], f"{findings[1]['line']}:{findings[1]['column']}") == (
        HOOLI,
        tenant_id,
    )
    assert findings[1]["subjects"] == ["hooli"]


def test_json_output_of_the_good_example(repo: DesiredStateCopy) -> None:
    result = run(DIR, "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["findings"] == []


def test_json_output_with_only_a_warning_is_valid(repo: DesiredStateCopy) -> None:
    repo.replace(INVENTORY, "inventory:0.9.0", "inventory:latest")
    result = run(DIR, "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert [(f["code"], f["severity"]) for f in document["findings"]] == [("PGV303", "warning")]


# --------------------------------------------------------------------------- github


GITHUB_LINE = re.compile(
    r"^::(?P<severity>error|warning) file=(?P<file>[^,]+),line=(?P<line>\d+),col=(?P<col>\d+),"
    r"title=(?P<code>PG[SVL]\d{3})::(?P<message>.+)$"
)


def test_github_annotations(repo: DesiredStateCopy) -> None:
    memory, tenant_id = two_errors(repo)
    result = run(DIR, "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    matches = [GITHUB_LINE.match(line) for line in lines]
    assert all(matches), lines
    got = [(m["severity"], m["file"], f"{m['line']}:{m['col']}", m["code"]) for m in matches if m]
    assert got == [
        ("error", f"{DIR}/{INVENTORY}", memory, "PGV504"),
        ("error", f"{DIR}/{HOOLI}", tenant_id, "PGV207"),
    ]
    first = matches[0]
    assert first is not None
    assert "'512MB'" in first["message"]
    assert "512Mi" in first["message"]  # the hint follows the message


def test_github_annotation_for_a_warning(repo: DesiredStateCopy) -> None:
    repo.replace(INVENTORY, "inventory:0.9.0", "inventory:latest")
    result = run(DIR, "--format", "github")
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    match = GITHUB_LINE.match(line)
    assert match and match["severity"] == "warning" and match["code"] == "PGV303"


def test_github_output_of_the_good_example_is_empty(repo: DesiredStateCopy) -> None:
    result = run(DIR, "--format", "github")
    assert result.exit_code == 0
    assert result.stdout == ""


# --------------------------------------------------------------------------- secrets


def test_literal_secrets_never_appear_in_any_output_format(repo: DesiredStateCopy) -> None:
    secrets = ["hunter2-TENANT-SECRET", "sk_live_PLUGIN-SECRET", "hunter2-PLATFORM-SECRET"]
    repo.replace(
        "tenants/globex.yaml",
        "password: {fromEnv: GLOBEX_SMTP_PASSWORD}",
        f"password: {secrets[0]}",
    )
    repo.replace(
        "plugins/billing/plugin.yaml",
        "STRIPE_API_KEY:\n      fromEnv: BILLING_STRIPE_API_KEY",
        f"STRIPE_API_KEY: {secrets[1]}",
    )
    repo.replace("platform.yaml", "  env:\n", f"  env:\n    DATABASE_PASSWORD: {secrets[2]}\n")
    for output_format in ("text", "json", "github"):
        result = run(DIR, "--format", output_format)
        assert result.exit_code == 1
        assert result.output.count("PGV701") == 3, result.output
        for secret in secrets:
            assert secret not in result.output, (output_format, secret)


# --------------------------------------------------------------------------- out of memory


def test_out_of_memory_is_a_finding_not_a_traceback(
    repo: DesiredStateCopy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plexica_gitops.desired import build as desired

    def exhausted(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr(desired, "share_tenant_values", exhausted)
    result = run(DIR, "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    (finding,) = document["findings"]
    assert finding["code"] == "PGL012"
    assert "6x the size" in finding["hint"]


def many_tenants(root: Path, files: int, tenants_per_file: int) -> None:
    """The example with `files` more tenant files of `tenants_per_file` tenants (acme's
    bindings), written by the test: big inputs do not belong in git."""
    acme = (root / "tenants" / "acme.yaml").read_text(encoding="utf-8")
    for number in range(files):
        documents = []
        for index in range(tenants_per_file):
            n = number * tenants_per_file + index + 1
            documents.append(
                acme.replace("name: acme ", f"name: bulk{n} ")
                .replace("tenant_acme", f"tenant_bulk{n}")
                .replace(
                    "7be72c81-2e45-42c0-b2f0-8962a8006663", f"00000000-0000-4000-8000-{n:012d}"
                )
            )
        (root / "tenants" / f"bulk{number}.yaml").write_text("---\n".join(documents))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc")
def test_validate_under_a_memory_limit_ends_with_a_finding(repo: DesiredStateCopy) -> None:
    """A real MemoryError: `plexica-gitops validate` in a process whose address space is a
    little more than the program needs; the desired state needs more."""
    many_tenants(repo.root, files=8, tenants_per_file=500)  # ~9 MB of YAML
    probe = "import plexica_gitops.cli; print(open('/proc/self/status').read())"
    status = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    match = re.search(r"VmSize:\s+(\d+) kB", status.stdout)
    assert match is not None, status.stderr
    limit = (int(match[1]) + 24 * 1024) * 1024  # what the program needs, and 24 MB

    def limited() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [sys.executable, "-m", "plexica_gitops.cli", "validate", DIR]
    result = subprocess.run(
        command, preexec_fn=limited, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PGL012" in result.stdout and "not enough memory" in result.stdout
