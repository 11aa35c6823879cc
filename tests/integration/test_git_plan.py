"""The desired state at a git revision, end to end through the CLI: `validate`, `plan` and
`apply` with --repo/--ref/--path read the commit's objects (a bare repository served over
file:// as the remote, commits made by the test), record `<ref>@sha1:<sha>` in the plan,
the saved plan, the apply history and last-applied; a directory inside a work tree says
whether it is dirty."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli, write_files
from git_repos import DesiredRepo, commit_all, desired_repo, git, init
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.plan.wire import plan_from_json, plan_to_json
from plexica_gitops.store.connection import connect
from plexica_gitops.store.ddl import DDL_VERSIONS
from plexica_gitops.store.journal import history, start_apply
from plexica_gitops.store.schema import init_store, store_version

EMPTY_LIVE = "{}"


@pytest.fixture
def repo(tmp_path: Path) -> DesiredRepo:
    return desired_repo(tmp_path)


@pytest.fixture
def remote(repo: DesiredRepo, tmp_path: Path) -> str:
    """The work tree's history in a bare repository, named by a file:// URL."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.work), str(bare))
    return bare.as_uri()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "live.json").write_text(EMPTY_LIVE)
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Exit code, standard output, standard error; a traceback fails the test."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def plan_json(env: dict[str, str], live: Path, *source: str) -> dict[str, Any]:
    code, out, err = cli(
        env,
        "plan",
        *source,
        "--live-state",
        str(live),
        "--unobserved",
        "broker",
        "--format",
        "json",
    )
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def without_revision(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plan.items() if k not in ("desired_revision", "desired_work_tree")}


def checkout(repo: DesiredRepo, sha: str, target: Path) -> Path:
    """The desired state of commit `sha` as a plain directory (no .git around it)."""
    git(repo.work.parent, "clone", "-q", str(repo.work), str(target))
    git(target, "checkout", "-q", sha)
    shutil.rmtree(target / ".git")
    return target / "desired-state"


# --------------------------------------------------------------------------- plan


def test_plans_at_two_refs_differ_as_the_commits_do(
    repo: DesiredRepo, remote: str, env: dict[str, str], tmp_path: Path
) -> None:
    live = tmp_path / "live.json"
    at = {
        ref: plan_json(env, live, "--repo", remote, "--ref", ref, "--path", "desired-state")
        for ref in ("main", "v1")
    }
    assert at["main"]["desired_revision"] == f"main@sha1:{repo.second}"
    assert at["v1"]["desired_revision"] == f"v1@sha1:{repo.first}"
    assert "desired_work_tree" not in at["main"]  # the commit names everything
    # each plan is exactly the plan of that commit's files in a directory
    for ref, sha in (("main", repo.second), ("v1", repo.first)):
        directory = plan_json(env, live, str(checkout(repo, sha, tmp_path / f"co-{ref}")))
        assert without_revision(at[ref]) == without_revision(directory)
    # and they differ as the second commit did: umbrella gone, acme renamed acme-corp
    main = {a["address"] for a in at["main"]["actions"]}
    older = {a["address"] for a in at["v1"]["actions"]}
    assert {a.split(".")[1] for a in older - main} == {"acme", "umbrella"}
    assert {a.split(".")[1] for a in main - older} == {"acme-corp"}
    # the same commit by sha, from a local path: the same plan, named by its sha
    by_sha = plan_json(
        env, live, "--repo", str(repo.work), "--ref", repo.first, "--path", "desired-state"
    )
    assert by_sha["desired_revision"] == f"sha1:{repo.first}"
    assert without_revision(by_sha) == without_revision(at["v1"])


def test_a_finding_in_a_committed_file_points_at_its_path_and_line(
    repo: DesiredRepo, remote: str, env: dict[str, str], tmp_path: Path
) -> None:
    bad = repo.work / "desired-state/tenants/globex.yaml"
    lines = bad.read_text().splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines, 1) if line.startswith("  schema:"))
    lines[number - 1] = "  schema: Not A Schema\n"
    bad.write_text("".join(lines))
    sha = commit_all(repo.work, "a bad schema name")
    git(repo.work, "push", "-q", remote, "main")
    source = ("--repo", remote, "--ref", "main", "--path", "desired-state")

    code, out, _ = cli(env, "validate", *source, "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["revision"] == f"main@sha1:{sha}"
    found = [f for f in report["findings"] if f["file"] == "tenants/globex.yaml"]
    assert found and found[0]["line"] == number, report["findings"]
    # annotations name the file from the repository's top, where GitHub looks for it
    code, out, _ = cli(env, "validate", *source, "--format", "github")
    assert f"file=desired-state/tenants/globex.yaml,line={number}," in out
    # a plan of that commit holds only the errors (and says which commit)
    code, out, _ = cli(
        env, "plan", *source, "--live-state", str(tmp_path / "live.json"), "--format", "json"
    )
    assert code == 1
    plan = json.loads(out)
    assert plan["desired_revision"] == f"main@sha1:{sha}"
    first_error = plan["errors"][0]
    assert (first_error["file"], first_error["line"]) == ("tenants/globex.yaml", number)


def test_a_directory_in_a_work_tree_says_whether_it_is_dirty(
    repo: DesiredRepo, env: dict[str, str], tmp_path: Path
) -> None:
    live = tmp_path / "live.json"
    directory = str(repo.work / "desired-state")
    clean = plan_json(env, live, directory)
    assert clean["desired_revision"].startswith("sha256:")  # as before: the files' hash
    assert clean["desired_work_tree"] == {"head": f"main@sha1:{repo.second}", "dirty": False}
    assert not [w for w in clean["warnings"] if w["code"] == "PGL013"]

    tenant = repo.work / "desired-state/tenants/hooli.yaml"
    tenant.write_text(tenant.read_text().replace("status: active", "status: suspended"))
    dirty = plan_json(env, live, directory)
    assert dirty["desired_work_tree"] == {"head": f"main@sha1:{repo.second}", "dirty": True}
    assert [w["code"] for w in dirty["warnings"] if w["code"] == "PGL013"] == ["PGL013"]
    code, out, _ = cli(env, "validate", directory)
    assert code == 0 and "PGL013" in out and "differs from the HEAD" in out
    # the saved plan keeps it
    saved = tmp_path / "dirty.plan"
    code, _, err = cli(
        env,
        "plan",
        directory,
        "--live-state",
        str(live),
        "--unobserved",
        "broker",
        "--out",
        str(saved),
    )
    assert code == 0, err
    assert json.loads(saved.read_text())["plan"]["desired_work_tree"]["dirty"] is True


def test_a_directory_outside_any_work_tree_plans_as_before(
    repo: DesiredRepo, env: dict[str, str], tmp_path: Path
) -> None:
    plain = checkout(repo, repo.second, tmp_path / "plain")
    plan = plan_json(env, tmp_path / "live.json", str(plain))
    assert "desired_work_tree" not in plan
    assert plan_from_json(plan).desired_dirty is None
    assert plan_to_json(plan_from_json(plan)) == plan


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--repo", "REMOTE", "--ref", "no-such-branch"), 1, "ref 'no-such-branch' not found"),
        (("--repo", "REMOTE", "--ref", "main", "--path", "nowhere"), 1, "'nowhere' does not exist"),
        (
            ("--repo", "https://127.0.0.1:1/x.git", "--ref", "main"),
            1,
            "cannot reach the git server",
        ),
        (("--repo", "/nonexistent/repo", "--ref", "main"), 1, "does not exist"),
        (("--repo", "REMOTE"), 2, "--repo needs --ref"),
        (("DIR", "--ref", "main"), 2, "--ref needs --repo"),
        (("DIR", "--repo", "REMOTE", "--ref", "main"), 2, "both a directory"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan", "apply", "drift"])
def test_a_source_that_cannot_be_read_is_one_error_with_a_hint(
    remote: str,
    repo: DesiredRepo,
    env: dict[str, str],
    tmp_path: Path,
    command: str,
    args: tuple[str, ...],
    code: int,
    words: str,
) -> None:
    named = [
        remote if a == "REMOTE" else str(repo.work / "desired-state") if a == "DIR" else a
        for a in args
    ]
    extra = ["--live-state", str(tmp_path / "live.json")] if command == "plan" else []
    env = {**env, "PLEXICA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    exit_code, out, err = cli(env, command, *named, *extra)
    assert exit_code == code, out + err
    assert words in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hint:" in err and "Traceback" not in out + err


# --------------------------------------------------------------------------- apply


def _state(scope: str, tenants: list[str]) -> dict[str, str]:
    files = {
        "platform.yaml": f"""
            apiVersion: plexica.io/v1alpha1
            kind: Platform
            metadata: {{name: test}}
            spec:
              version: 2.4.0
              runtime: {{provider: docker, endpointMode: loopback, scope: {scope}}}
        """
    }
    for number, slug in enumerate(tenants, 1):
        files[f"tenants/{slug}.yaml"] = f"""
            apiVersion: plexica.io/v1alpha1
            kind: Tenant
            metadata: {{name: {slug}}}
            spec:
              id: 00000000-0000-4000-8000-{number:012d}
              schema: tenant_{slug}
              plugins: {{}}
        """
    return files


def _commit(work: Path, files: dict[str, str], message: str) -> str:
    write_files(work / "platform", files)
    return commit_all(work, message)


def test_the_revision_is_in_the_plan_the_saved_plan_the_history_and_last_applied(
    environment: dict[str, str], docker_scope: str, tmp_path: Path
) -> None:
    work = init(tmp_path / "platform-repo")
    first = _commit(work, _state(docker_scope, ["acme"]), "acme")
    bare = tmp_path / "platform.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    env = {**environment, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    source = ("--repo", bare.as_uri(), "--ref", "main", "--path", "platform")
    assert run_cli(env, "init")[0] == 0

    saved = tmp_path / "release.plan"
    code, out, err = cli(env, "plan", *source, "--out", str(saved), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["desired_revision"] == f"main@sha1:{first}"
    assert json.loads(saved.read_text())["plan"]["desired_revision"] == f"main@sha1:{first}"
    code, output = run_cli(env, "apply", str(saved), *source, "--auto-approve")
    assert code == 0, output

    # a new commit on the remote: the saved plan of the old one is stale
    second = _commit(work, _state(docker_scope, ["acme", "globex"]), "globex")
    git(work, "push", "-q", str(bare), "main")
    code, output = run_cli(env, "apply", str(saved), *source, "--auto-approve")
    assert code == 1 and "desired state changed" in output
    code, output = run_cli(env, "apply", *source, "--auto-approve")
    assert code == 0, output

    dsn = environment["PLEXICA_DATABASE_URL"]
    with connect(dsn) as conn:
        records = history(conn)
    assert [(r.desired_revision, r.result) for r in records] == [
        (f"main@sha1:{second}", "succeeded"),
        (f"main@sha1:{first}", "succeeded"),
    ]
    code, output = run_cli(env, "history")
    assert code == 0 and f"main@{second[:12]}" in output and f"main@{first[:12]}" in output
    with psycopg.connect(dsn) as conn:
        rows = dict(
            conn.execute("SELECT address, revision FROM plexica_gitops.last_applied").fetchall()
        )
    assert rows["tenant.globex"] == f"main@sha1:{second}"
    assert rows["tenant.acme"] == f"main@sha1:{first}"  # unchanged since the first commit


def test_workloads_are_labelled_with_the_revision_that_made_them(
    echo: EchoPlatform,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
    docker_scope: str,
) -> None:
    init(echo.root)
    echo.write("1.0.0")
    first = commit_all(echo.root, "echo 1.0.0")
    source = ("--repo", str(echo.root), "--ref", "main")
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(environment, "apply", *source, "--auto-approve")
    assert code == 0, output
    made = containers_of(docker_client, docker_scope, "echo")
    assert [c.labels["io.plexica.revision"] for c in made] == [f"main@sha1:{first}"] * 2

    # a commit that changes nothing about the workload replaces nothing
    echo.write("1.0.0", tenants=("acme", "globex"))
    commit_all(echo.root, "globex")
    code, output = run_cli(environment, "apply", *source, "--auto-approve")
    assert code == 0, output
    again = containers_of(docker_client, docker_scope, "echo")
    assert sorted(c.id for c in again) == sorted(c.id for c in made)
    # an upgrade's replicas carry the commit that made them
    echo.write("1.1.0", tenants=("acme", "globex"))
    third = commit_all(echo.root, "echo 1.1.0")
    code, output = run_cli(environment, "apply", *source, "--auto-approve")
    assert code == 0, output
    upgraded = containers_of(docker_client, docker_scope, "echo")
    assert {c.labels["io.plexica.revision"] for c in upgraded} == {f"main@sha1:{third}"}


def test_a_version_4_store_upgrades_keeping_what_was_last_applied(postgres_database: str) -> None:
    revision_version = next(v for v, _, ddl in DDL_VERSIONS if "last_applied ADD COLUMN" in ddl)
    with connect(postgres_database) as conn:
        for version, description, ddl in DDL_VERSIONS[: revision_version - 1]:
            with conn.transaction():
                conn.execute(ddl)  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO plexica_gitops.schema_version (version, description)"
                    " VALUES (%s, %s)",
                    (version, description),
                )
        old = conn.execute(
            "INSERT INTO plexica_gitops.applies (desired_revision, plan_hash, host, pid)"
            " VALUES ('sha256:abc', 'sha256:def', 'h', 1) RETURNING id"
        ).fetchone()
        assert old is not None
        conn.execute(
            "INSERT INTO plexica_gitops.last_applied (address, fingerprint, apply_id)"
            " VALUES ('tenant.acme', 'f', %s)",
            (old[0],),
        )
        assert store_version(conn) == revision_version - 1
        assert init_store(conn) == [revision_version]
        row = conn.execute("SELECT revision FROM plexica_gitops.last_applied").fetchone()
        assert row == ("sha256:abc",)  # filled from the apply that applied it
        long_ref = "refs/heads/" + "release/" * 30 + "2026-12"
        start_apply(conn, f"{long_ref}@sha1:{'a' * 40}", "sha256:def", "h", 2)
        assert history(conn)[0].desired_revision == f"{long_ref}@sha1:{'a' * 40}"
