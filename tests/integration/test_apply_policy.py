"""Issue 14, item 5: the approval policy. With platform.yaml's
`spec.policy.requireSavedPlan: true`, `apply --require-saved-plan` or
PLEXICA_REQUIRE_SAVED_PLAN=1, an apply carries out only a plan saved with `plan --out`
(reviewed): a directory or a git revision is refused before anything is observed, and a
stale saved plan is still refused. Against a real PostgreSQL and the Podman engine (the
plugin is only registered, so no container has to start)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from apply_support import EchoPlatform, plugin_statuses, run_cli
from git_repos import commit_all, init

from plexica_gitops.desired.validate import validate_directory

POLICY = "  policy:\n    requireSavedPlan: true\n"
HINT = "Run `plexica-gitops plan"


def _write(echo: EchoPlatform, *, policy: bool, version: str = "1.0.0") -> str:
    """The echo platform, only registered (nothing to run), with or without the policy."""
    root = echo.write(version, state="registered")
    if policy:
        platform = echo.root / "platform.yaml"
        platform.write_text(platform.read_text(encoding="utf-8") + POLICY, encoding="utf-8")
    return root


def _applies(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM plexica_gitops.applies").fetchone()
    assert row is not None
    return int(row[0])


def _refused(output: str, why: str) -> None:
    assert "refusing to apply" in output and "without a saved plan" in output, output
    assert why in output, output
    assert HINT in output and "--out FILE`, review it, then `plexica-gitops apply FILE" in output


def test_the_platform_policy_refuses_a_directory_and_applies_its_saved_plan(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    root = _write(echo, policy=True)
    dsn = environment["PLEXICA_DATABASE_URL"]
    assert run_cli(environment, "init")[0] == 0

    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 1
    _refused(output, "platform.yaml:")  # names the line that sets it
    assert "spec.policy.requireSavedPlan" in output
    assert f"then `plexica-gitops apply FILE --desired-state {root}`" in output
    assert _applies(dsn) == 0 and "echo" not in plugin_statuses(dsn)  # nothing was applied

    saved = tmp_path / "release.plan"
    code, output = run_cli(environment, "plan", root, "--out", str(saved))
    assert code == 0, output
    code, output = run_cli(
        environment, "apply", str(saved), "--desired-state", root, "--auto-approve"
    )
    assert code == 0, output
    assert plugin_statuses(dsn)["echo"] == ("REGISTERED", None)


def test_the_flag_refuses_a_directory_and_applies_a_saved_plan(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    root = _write(echo, policy=False)
    dsn = environment["PLEXICA_DATABASE_URL"]
    assert run_cli(environment, "init")[0] == 0

    code, output = run_cli(environment, "apply", root, "--auto-approve", "--require-saved-plan")
    assert code == 1
    _refused(output, "--require-saved-plan was given")
    assert _applies(dsn) == 0

    saved = tmp_path / "release.plan"
    assert run_cli(environment, "plan", root, "--out", str(saved))[0] == 0
    code, output = run_cli(
        environment,
        "apply",
        str(saved),
        "--desired-state",
        root,
        "--auto-approve",
        "--require-saved-plan",
    )
    assert code == 0, output
    assert plugin_statuses(dsn)["echo"] == ("REGISTERED", None)


def test_the_environment_variable_refuses_a_directory(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    root = _write(echo, policy=False)
    assert run_cli(environment, "init")[0] == 0
    on = {**environment, "PLEXICA_REQUIRE_SAVED_PLAN": "1"}
    code, output = run_cli(on, "apply", root, "--auto-approve")
    assert code == 1
    _refused(output, "PLEXICA_REQUIRE_SAVED_PLAN is set")
    garbled = {**environment, "PLEXICA_REQUIRE_SAVED_PLAN": "maybe"}
    code, output = run_cli(garbled, "apply", root, "--auto-approve")
    assert code == 2 and "PLEXICA_REQUIRE_SAVED_PLAN='maybe'" in output
    assert _applies(environment["PLEXICA_DATABASE_URL"]) == 0


def test_the_policy_of_a_git_revision_refuses_it_and_a_stale_saved_plan_stays_refused(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    root = Path(_write(echo, policy=True))
    init(root)
    first = commit_all(root, "echo, apply only saved plans")
    env = {**environment, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    source = ("--repo", str(root), "--ref", "main")
    assert run_cli(env, "init")[0] == 0

    code, output = run_cli(env, "apply", *source, "--auto-approve")
    assert code == 1
    _refused(output, "platform.yaml:")
    named = f"--repo {root} --ref main"
    assert (
        f"plan {named} --out FILE`, review it, then `plexica-gitops apply FILE {named}`" in output
    )

    saved = tmp_path / "release.plan"
    assert run_cli(env, "plan", *source, "--out", str(saved))[0] == 0
    code, output = run_cli(env, "apply", str(saved), *source, "--auto-approve")
    assert code == 0, output  # the reviewed commit's plan applies
    dsn = environment["PLEXICA_DATABASE_URL"]
    assert plugin_statuses(dsn)["echo"] == ("REGISTERED", None)

    _write(echo, policy=True, version="1.1.0")  # a newer commit: the saved plan is stale
    commit_all(root, "echo 1.1.0")
    code, output = run_cli(env, "apply", str(saved), *source, "--auto-approve")
    assert code == 1 and "desired state changed" in output, output
    with psycopg.connect(dsn) as conn:
        revisions = conn.execute("SELECT desired_revision FROM plexica_gitops.applies").fetchall()
    assert revisions == [(f"main@sha1:{first}",)]


def test_validate_knows_the_policy_field(tmp_path: Path) -> None:
    echo = EchoPlatform(tmp_path, "policy")
    _write(echo, policy=True)
    assert validate_directory(echo.root).valid
    platform = echo.root / "platform.yaml"
    platform.write_text(
        platform.read_text(encoding="utf-8").replace("requireSavedPlan", "requireSavedPlans"),
        encoding="utf-8",
    )
    report = validate_directory(echo.root)
    assert not report.valid
    assert any("requireSavedPlans" in f.message and f.location for f in report.findings)
