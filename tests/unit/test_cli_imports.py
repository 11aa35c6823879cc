"""The commands that neither apply nor talk to the runtime start fast: `--help`,
`validate`, `plan --live-state` and `show` import none of apply's machinery, nor the
store's, the broker's or the runtimes' clients (issue 15: they cost over a second a run).

Each command runs in a fresh interpreter, since this process has long imported them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plexica_gitops.cli import app

pytestmark = pytest.mark.slow  # a fresh interpreter per command: seconds in all

EXAMPLE = Path(__file__).resolve().parents[2] / "desired-state"

# What only apply (and the reconcile loop) needs, and the clients of the store, the broker
# and the runtimes.
APPLY_ONLY = (
    "plexica_gitops.apply.session",
    "plexica_gitops.apply.steps",
    "plexica_gitops.reconcile",
)
CLIENTS = ("psycopg", "confluent_kafka", "docker", "kubernetes")
# What a desired state without a dependency cycle never needs: networkx only names a cycle.
CYCLES_ONLY = ("networkx",)
# What a command runs, which `--help` runs none of: the service, validation (and its schema
# library), the planner, the renderers, git, the store.
COMMANDS_ONLY = (
    "plexica_gitops.service",
    "plexica_gitops.desired.build",
    "plexica_gitops.desired.validate",
    "plexica_gitops.plan.builder",
    "plexica_gitops.render.findings",
    "plexica_gitops.render.text",
    "plexica_gitops.store.connection",
    "jsonschema",
    "networkx",
    "dulwich",
)
# The other formats of a plan and the plan file, which a text plan without --out never uses.
OTHER_PLAN_OUTPUTS = (
    "plexica_gitops.render.markdown",
    "plexica_gitops.render.json",
    "plexica_gitops.render.drift",
    "plexica_gitops.render.graph",
    "plexica_gitops.plan.planfile",
    "plexica_gitops.plan.wire",
)
# What only planning reads or prints, which `validate` never needs.
PLAN_ONLY = (
    *OTHER_PLAN_OUTPUTS,
    "plexica_gitops.render.text",
    "plexica_gitops.runtime.spec",
    "plexica_gitops.live.codec",
)

# Runs the CLI as `plexica-gitops ARGS…` would, then writes which of MODULES it imported.
_PROBE = """
import json, sys
from plexica_gitops import cli
args, modules, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
try:
    cli.app(args, prog_name="plexica-gitops")
    code = 0
except SystemExit as exit:
    code = exit.code
with open(out, "w") as handle:
    json.dump({"exit": code, "imported": [m for m in modules if m in sys.modules]}, handle)
"""


def _imported(
    tmp_path: Path, args: list[str], modules: tuple[str, ...]
) -> tuple[object, list[str]]:
    """The exit code of the command and which of `modules` it imported."""
    out = tmp_path / "probe.json"
    env = {**os.environ, "PLEXICA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PLEXICA_DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(modules), str(out)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=120,
    )
    result = json.loads(out.read_text(encoding="utf-8"))
    return result["exit"], result["imported"]


@pytest.fixture
def empty_platform(tmp_path: Path) -> Path:
    snapshot = tmp_path / "live.json"
    snapshot.write_text("{}", encoding="utf-8")
    return snapshot


def test_help_imports_neither_apply_nor_the_clients(tmp_path: Path) -> None:
    code, imported = _imported(tmp_path, ["--help"], APPLY_ONLY + CLIENTS)
    assert (code, imported) == (0, [])


def test_validate_imports_neither_apply_nor_the_clients(tmp_path: Path) -> None:
    code, imported = _imported(tmp_path, ["validate", str(EXAMPLE)], APPLY_ONLY + CLIENTS)
    assert (code, imported) == (0, [])


def test_plan_of_a_snapshot_imports_neither_apply_nor_the_clients(
    tmp_path: Path, empty_platform: Path
) -> None:
    args = ["plan", str(EXAMPLE), "--live-state", str(empty_platform)]
    code, imported = _imported(tmp_path, args, APPLY_ONLY + CLIENTS)
    assert (code, imported) == (0, [])


def test_show_imports_neither_apply_nor_the_clients(tmp_path: Path, empty_platform: Path) -> None:
    saved = tmp_path / "release.plan"
    made = CliRunner().invoke(
        app, ["plan", str(EXAMPLE), "--live-state", str(empty_platform), "--out", str(saved)]
    )
    assert made.exit_code == 0, made.output
    code, imported = _imported(tmp_path, ["show", str(saved)], APPLY_ONLY + CLIENTS)
    assert (code, imported) == (0, [])


def test_an_observing_plan_imports_nothing_of_apply(tmp_path: Path) -> None:
    """It loads the provider and the broker's client it observes through, and no more (a
    store that refuses the connection ends it: exit 1, as a user would see)."""
    args = ["plan", str(EXAMPLE), "--database-url", "postgresql://plexica@127.0.0.1:1/none"]
    code, imported = _imported(tmp_path, args, APPLY_ONLY)
    assert (code, imported) == (1, [])


def test_validate_of_a_state_without_a_cycle_imports_no_networkx(tmp_path: Path) -> None:
    code, imported = _imported(tmp_path, ["validate", str(EXAMPLE)], CYCLES_ONLY)
    assert (code, imported) == (0, [])


def test_plan_of_a_snapshot_imports_no_networkx(tmp_path: Path, empty_platform: Path) -> None:
    args = ["plan", str(EXAMPLE), "--live-state", str(empty_platform)]
    code, imported = _imported(tmp_path, args, CYCLES_ONLY)
    assert (code, imported) == (0, [])


def test_help_imports_none_of_what_the_commands_run(tmp_path: Path) -> None:
    code, imported = _imported(tmp_path, ["--help"], COMMANDS_ONLY)
    assert (code, imported) == (0, [])


def test_validate_imports_nothing_only_planning_needs(tmp_path: Path) -> None:
    code, imported = _imported(tmp_path, ["validate", str(EXAMPLE)], PLAN_ONLY)
    assert (code, imported) == (0, [])


def test_a_text_plan_imports_neither_the_other_formats_nor_the_plan_file(
    tmp_path: Path, empty_platform: Path
) -> None:
    args = ["plan", str(EXAMPLE), "--live-state", str(empty_platform)]
    code, imported = _imported(tmp_path, args, OTHER_PLAN_OUTPUTS)
    assert (code, imported) == (0, [])
