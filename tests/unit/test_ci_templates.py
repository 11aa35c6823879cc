"""The CI templates of examples/ci: the workflows pass actionlint and GitLab's schema, the
scripts pass shellcheck, the commands they call exist with those flags, and the scripts run
green on a real git repository made here, with `plexica-gitops validate` and `plan` really
run on the example desired state: the ONE plan comment (marker, previous plan collapsed,
the saved plan's sha256 checked before apply), the drift issue, the Code Quality report.
gitlab.sh talks to a local stand-in for GitLab's REST API over real HTTP (real curl)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from git_repos import EXAMPLE, commit_all, init
from typer.testing import CliRunner

from plexica_gitops.cli import app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
SCRIPTS = CI / "scripts"
WORKFLOWS = sorted((CI / "github").glob("*.yml"))
GITLAB_CI = CI / "gitlab" / ".gitlab-ci.yml"
MARKER = "<!-- plexica-gitops-plan -->"
# The nightly drift job's command line, exactly (its exit drives the issue: 0, 2, 1).
DRIFT_COMMAND = "plexica-gitops drift desired-state --format markdown --fail-on drift"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    """A linter from the dev dependencies: missing is a failure (CI installs the lock), never a
    skip that would let the templates rot unchecked."""
    found = shutil.which(name, path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail(
            f"{name} is not installed: the CI templates' tests need it; install the dev "
            "dependencies (pip install -r requirements.lock)."
        )
    return found


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **extra}


def _run(
    *args: str | Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=60
    )


# --- linters ------------------------------------------------------------------------------


def test_github_workflows_pass_actionlint(tmp_path: Path) -> None:
    actionlint = _tool("actionlint")
    _tool("shellcheck")  # actionlint checks the run: scripts with it when it is on PATH
    assert len(WORKFLOWS) == 3
    done = _run(actionlint, "-no-color", *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr

    # the lint is live: a step output that does not exist is caught
    broken = tmp_path / "broken.yml"
    text = (CI / "github" / "plexica-plan.yml").read_text()
    broken.write_text(text.replace("steps.plan.outputs.status", "steps.plann.outputs.status"))
    done = _run(actionlint, "-no-color", broken)
    assert done.returncode == 1 and "plann" in done.stdout


def test_gitlab_ci_passes_gitlabs_schema(tmp_path: Path) -> None:
    check = _tool("check-jsonschema")
    done = _run(check, "--builtin-schema", "vendor.gitlab-ci", GITLAB_CI)
    assert done.returncode == 0, done.stdout + done.stderr

    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(GITLAB_CI.read_text().replace("resource_group:", "resource_groups:"))
    done = _run(check, "--builtin-schema", "vendor.gitlab-ci", broken)
    assert done.returncode == 1


def test_scripts_pass_shellcheck() -> None:
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert {p.name for p in scripts} == {"comment.sh", "github.sh", "gitlab.sh"}
    done = _run(_tool("shellcheck"), "--shell=sh", "--severity=style", *scripts)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(os.access(p, os.X_OK) for p in scripts)  # the templates run them directly


def _template_lines() -> list[str]:
    """The lines of the templates that run something, shell continuations joined."""
    text = "\n".join(p.read_text() for p in [*WORKFLOWS, GITLAB_CI])
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    return [line for line in lines if not re.match(r"\s*(#|.*\becho )", line)]


def _cli(*args: str | Path) -> tuple[int, str]:
    """plexica-gitops in this process (its imports take seconds per process): exit, stdout."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def _cli_flags() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return {
        name: {flag for param in command.params for flag in param.opts if flag.startswith("--")}
        for name, command in group.commands.items()
    }


def test_the_commands_and_scripts_the_templates_call_exist() -> None:
    used: dict[str, set[str]] = {}
    for line in _template_lines():
        for command, rest in re.findall(r"plexica-gitops ([a-z]+)([^|>]*)", line):
            used.setdefault(command, set()).update(re.findall(r"--[a-z-]+", rest))
        for script, sub in re.findall(r"examples/ci/scripts/([a-z]+\.sh) ([a-z-]+)", line):
            assert f"\n{sub})" in (SCRIPTS / script).read_text(), (script, sub)
    assert set(used) == {"validate", "plan", "apply", "drift"}
    assert used["drift"] == {"--format", "--fail-on"}
    assert "--require-saved-plan" in used["apply"]  # the merge-time apply: saved plans only
    assert any(DRIFT_COMMAND in line for line in _template_lines())
    # its values parse (a bad one is a usage error, exit 2): without a database it gets as
    # far as asking for one
    args = [str(EXAMPLE) if a == "desired-state" else a for a in DRIFT_COMMAND.split()[1:]]
    result = CliRunner().invoke(app, args, env={"PLEXICA_DATABASE_URL": None})
    assert result.exit_code == 1 and "PLEXICA_DATABASE_URL" in result.output, result.output
    known = _cli_flags()
    for command, flags in used.items():
        missing = flags - known[command]
        assert not missing, f"plexica-gitops {command} has no {missing}"


# --- the scripts on a real repository -----------------------------------------------------


@dataclass
class Repo:
    work: Path
    revisions: list[str] = field(default_factory=list)

    def plan(self, name: str) -> tuple[int, Path, Path]:
        """`plan --format markdown --out` as the workflow runs it (a --live-state snapshot of
        an empty platform instead of the store): (exit, markdown, saved plan)."""
        markdown, saved = self.work / f"{name}.md", self.work / f"{name}.bin"
        status, out = _cli(
            "plan", "desired-state", "--format", "markdown", "--out", saved,
            "--detailed-exitcode", "--live-state", "live.json", "--unobserved", "runtime,broker",
        )  # fmt: skip
        markdown.write_text(out)
        return status, markdown, saved

    def comment(self, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        return _run(self.work / "ci" / "comment.sh", *args, cwd=self.work, **env)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A git repository with the example desired state and the scripts, the working
    directory as in a CI job."""
    work = init(tmp_path / "platform")
    monkeypatch.chdir(work)
    shutil.copytree(EXAMPLE, work / "desired-state")
    shutil.copytree(SCRIPTS, work / "ci")
    (work / "live.json").write_text("{}")
    return Repo(work, [commit_all(work, "desired state")])


def _edit_and_commit(repo: Repo, path: str, old: str, new: str, message: str) -> str:
    file = repo.work / "desired-state" / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    repo.revisions.append(commit_all(repo.work, message))
    return repo.revisions[-1]


def _desired(plan_md: Path) -> str:
    """The plan's desired revision: tells one plan's Markdown from another's."""
    match = re.search(r"Desired revision `(sha256:[0-9a-f]{64})`", plan_md.read_text())
    assert match, plan_md.read_text()[:500]
    return match[1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_plan_comment_updated_in_place_with_the_previous_plan_collapsed(repo: Repo) -> None:
    status, first_md, first_bin = repo.plan("first")
    assert status == 2 and first_bin.exists()  # changes: the empty platform gets everything
    meta = {"PLAN_RUN": "101", "PLAN_URL": "https://ci.example/runs/101"}
    done = repo.comment(
        "plan-body", first_md, PLAN_FILE=str(first_bin), PLAN_REVISION=repo.revisions[0], **meta
    )
    assert done.returncode == 0, done.stderr
    first_body = repo.work / "first-comment.md"
    first_body.write_text(done.stdout)
    lines = done.stdout.splitlines()
    assert lines[0] == MARKER
    assert f"run=101 revision={repo.revisions[0]} sha256={_sha256(first_bin)}" in lines[1]
    assert first_md.read_text().strip() in done.stdout  # the whole plan, as plan printed it
    assert "Previous plan" not in done.stdout

    # a push to the pull request: the crm plugin scaled, planned again
    second = _edit_and_commit(
        repo, "plugins/crm/plugin.yaml", "replicas: 2", "replicas: 3", "crm x3"
    )
    _, second_md, second_bin = repo.plan("second")
    done = repo.comment(
        "plan-body", second_md, first_body, PLAN_FILE=str(second_bin), PLAN_REVISION=second
    )
    assert done.returncode == 0, done.stderr
    second_body = repo.work / "second-comment.md"
    second_body.write_text(done.stdout)
    body = done.stdout
    assert body.count(MARKER) == 1 and body.startswith(MARKER + "\n")
    current, _, previous = body.partition("<details><summary>Previous plan")
    assert _desired(second_md) in current and _desired(second_md) not in previous
    assert previous.startswith(f" (`{repo.revisions[0][:12]}`)")
    assert _desired(first_md) in previous
    assert "sha256=" not in previous and "Plan of" not in previous  # the old footer is gone
    assert _run("sh", "-c", f"grep -c '^<details>' {second_body}").stdout.strip() == str(
        body.count("\n<details>")
    )

    # a third push keeps one previous plan only: the comment does not grow without end
    third = _edit_and_commit(repo, "plugins/crm/plugin.yaml", "replicas: 3", "replicas: 4", "x4")
    _, third_md, third_bin = repo.plan("third")
    done = repo.comment(
        "plan-body", third_md, second_body, PLAN_FILE=str(third_bin), PLAN_REVISION=third
    )
    assert done.stdout.count("Previous plan") == 1
    assert f"Previous plan (`{second[:12]}`)" in done.stdout
    assert _desired(first_md) not in done.stdout


def test_only_the_reviewed_plan_passes_the_check_before_apply(repo: Repo) -> None:
    _, first_md, first_bin = repo.plan("first")
    head = repo.revisions[0]
    done = repo.comment("plan-body", first_md, PLAN_FILE=str(first_bin), PLAN_REVISION=head)
    body = repo.work / "comment.md"
    body.write_text(done.stdout)
    assert repo.comment("field", "revision", body).stdout.strip() == head

    assert repo.comment("verify", body, first_bin, head).returncode == 0
    # a plan made for a later push, or another artifact, is not what was reviewed
    later = _edit_and_commit(repo, "plugins/crm/plugin.yaml", "replicas: 2", "replicas: 3", "x3")
    _, _, second_bin = repo.plan("second")
    refused = repo.comment("verify", body, second_bin, head)
    assert refused.returncode == 1 and "is not the plan shown for review" in refused.stderr
    refused = repo.comment("verify", body, first_bin, later)
    assert refused.returncode == 1 and "re-run the plan" in refused.stderr


def test_an_invalid_desired_state_gives_annotations_and_a_comment_with_nothing_to_apply(
    repo: Repo,
) -> None:
    _edit_and_commit(repo, "plugins/crm/plugin.yaml", "version: 1.2.0", "version: one", "bad")
    status, annotations = _cli("validate", "desired-state", "--format", "github")
    assert status == 1
    assert re.search(
        r"^::error file=desired-state/plugins/crm/plugin\.yaml,line=\d+,", annotations, re.M
    )
    status, plan_md, plan_bin = repo.plan("plan")
    assert status == 1 and not plan_bin.exists() and "PGV301" in plan_md.read_text()
    done = repo.comment("plan-body", plan_md, PLAN_FILE=str(plan_bin), PLAN_REVISION="f" * 40)
    assert "PGV301" in done.stdout and "nothing will be applied" in done.stdout
    body = repo.work / "comment.md"
    body.write_text(done.stdout)
    refused = repo.comment("verify", body, plan_bin)
    assert refused.returncode == 1 and "records no saved plan" in refused.stderr

    report = repo.work / "validate.json"
    report.write_text(_cli("validate", "desired-state", "--format", "json")[1])
    quality = json.loads(repo.comment("codequality", report, "desired-state").stdout)
    [finding] = [f for f in quality if f["check_name"] == "PGV301"]
    assert finding["severity"] == "major"
    assert finding["location"]["path"] == "desired-state/plugins/crm/plugin.yaml"
    assert finding["location"]["lines"]["begin"] > 1
    assert len({f["fingerprint"] for f in quality}) == len(quality)


def test_a_plan_too_long_for_a_comment_keeps_its_summary(repo: Repo) -> None:
    _, plan_md, plan_bin = repo.plan("plan")
    assert len(plan_md.read_bytes()) > 8_000
    done = repo.comment("plan-body", plan_md, PLAN_FILE=str(plan_bin), PLAN_COMMENT_LIMIT="8000")
    assert len(done.stdout.encode()) <= 8_000
    assert "**Plan: 73 to add" in done.stdout and "Too long for a comment" in done.stdout
    assert "<details>" not in done.stdout  # cut before the first section: nothing left open
    assert done.stdout.count("```") % 2 == 0
    assert f"sha256={_sha256(plan_bin)}" in done.stdout  # the whole plan is still the artifact


def test_the_bots_comment_is_picked_not_one_that_copies_the_marker(repo: Repo) -> None:
    bot, page_two = "github-actions[bot]", repo.work / "comments.json"
    listing = [
        [{"id": n, "user": {"login": "alice"}, "body": f"looks good {n}"} for n in range(1, 101)],
        [
            {"id": 150, "user": {"login": "mallory"}, "body": f"{MARKER}\nforged"},
            {"id": 170, "user": {"login": bot}, "body": f"{MARKER}\nthe plan"},
        ],
    ]
    page_two.write_text("".join(json.dumps(page) for page in listing))  # gh --paginate's output
    assert repo.comment("pick", MARKER, bot, page_two).stdout.strip() == "170"
    assert repo.comment("pick", MARKER, "nobody", page_two).stdout.strip() == ""
    notes = repo.work / "notes.json"
    notes.write_text(json.dumps([{"id": 9, "author": {"username": "bot"}, "body": MARKER}]))
    assert repo.comment("pick", MARKER, "bot", notes).stdout.strip() == "9"


# --- gitlab.sh against a local stand-in for GitLab's API ----------------------------------

TOKEN = "glpat-test-token"
PROJECT = "42"
MR = 7
BOT = "project_42_bot"


@dataclass
class FakeGitLab:
    """The few endpoints gitlab.sh calls, in memory."""

    head: str = ""
    notes: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    next_id: int = 1000

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def handle(self, method: str, path: str, query: dict[str, str], form: dict[str, str]) -> Any:
        base = f"/api/v4/projects/{PROJECT}"
        mr_notes = f"{base}/merge_requests/{MR}/notes"
        if (method, path) == ("GET", "/api/v4/user"):
            return {"username": BOT}
        if (method, path) == ("GET", mr_notes):
            return self.page(self.notes, query)
        if (method, path) == ("POST", mr_notes):
            note = {"id": self.new_id(), "body": form["body"], "author": {"username": BOT}}
            self.notes.append(note)
            return note
        if method == "PUT" and path.startswith(mr_notes + "/"):
            [note] = [n for n in self.notes if str(n["id"]) == path.rsplit("/", 1)[1]]
            note["body"] = form["body"]
            return note
        if method == "GET" and re.fullmatch(rf"{base}/repository/commits/\w+/merge_requests", path):
            return [{"iid": MR, "state": "merged"}]
        if (method, path) == ("GET", f"{base}/merge_requests/{MR}"):
            return {"iid": MR, "sha": self.head}
        if method == "GET" and path.startswith(f"{base}/jobs/"):
            job = path.split("/")[6]
            return self.artifacts.get(job, 404)
        if (method, path) == ("GET", f"{base}/issues"):
            opened = [i for i in self.issues if i["state"] == "opened"]
            return self.page([i for i in opened if query["labels"] in i["labels"]], query)
        if (method, path) == ("POST", f"{base}/issues"):
            issue: dict[str, Any] = {
                "id": self.new_id(),
                "iid": len(self.issues) + 1,
                "state": "opened",
                "title": form["title"],
                "description": form["description"],
                "labels": form["labels"].split(","),
                "author": {"username": BOT},
                "notes": [],
                "web_url": "https://gitlab.example/i",
            }
            self.issues.append(issue)
            return issue
        match = re.fullmatch(rf"{base}/issues/(\d+)(/notes)?", path)
        if match:
            [issue] = [i for i in self.issues if str(i["iid"]) == match[1]]
            if match[2]:
                issue["notes"].append(form["body"])
            elif form.get("state_event") == "close":
                issue["state"] = "closed"
            else:
                issue.update(title=form["title"], description=form["description"])
            return issue
        return 404

    @staticmethod
    def page(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
        size, number = int(query["per_page"]), int(query["page"])
        return items[(number - 1) * size : number * size]


@pytest.fixture
def gitlab() -> Iterator[tuple[FakeGitLab, dict[str, str]]]:
    fake = FakeGitLab()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            fake.requests.append(f"{self.command} {url.path}")
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if self.headers.get("PRIVATE-TOKEN") != TOKEN:
                answer: Any = 401
            else:
                answer = fake.handle(
                    self.command, url.path, dict(urllib.parse.parse_qsl(url.query)), form
                )
            status = answer if isinstance(answer, int) else 200
            body = (
                answer
                if isinstance(answer, bytes)
                else json.dumps(
                    {"message": str(status)} if isinstance(answer, int) else answer
                ).encode()
            )
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    env = {
        "CI_API_V4_URL": f"http://127.0.0.1:{server.server_address[1]}/api/v4",
        "CI_PROJECT_ID": PROJECT,
        "CI_MERGE_REQUEST_IID": str(MR),
        "PLEXICA_GITLAB_TOKEN": TOKEN,
    }
    try:
        yield fake, env
    finally:
        server.shutdown()
        server.server_close()


def _gitlab(
    repo: Repo, env: dict[str, str], *args: str | Path, **more: str
) -> subprocess.CompletedProcess[str]:
    return _run(repo.work / "ci" / "gitlab.sh", *args, cwd=repo.work, **env, **more)


def test_gitlab_plan_note_is_one_note_and_the_merge_applies_only_the_reviewed_plan(
    repo: Repo, gitlab: tuple[FakeGitLab, dict[str, str]]
) -> None:
    fake, env = gitlab
    fake.notes = [{"id": n, "body": "lgtm", "author": {"username": "bob"}} for n in range(120)]
    fake.notes.append({"id": 500, "body": f"{MARKER}\nforged", "author": {"username": "eve"}})

    _, first_md, first_bin = repo.plan("first")
    done = _gitlab(repo, env, "plan-note", first_md, PLAN_FILE=str(first_bin),
                   PLAN_REVISION=repo.revisions[0], PLAN_RUN="9001")  # fmt: skip
    assert done.returncode == 0, done.stderr
    fake.artifacts["9001"] = first_bin.read_bytes()
    second = _edit_and_commit(repo, "plugins/crm/plugin.yaml", "replicas: 2", "replicas: 3", "x3")
    _, second_md, second_bin = repo.plan("second")
    done = _gitlab(repo, env, "plan-note", second_md, PLAN_FILE=str(second_bin),
                   PLAN_REVISION=second, PLAN_RUN="9002")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Updated the plan note" in done.stdout
    ours = [n for n in fake.notes if n["author"]["username"] == BOT]
    assert len(ours) == 1 and "Previous plan" in ours[0]["body"]
    assert fake.notes[120]["body"] == f"{MARKER}\nforged"  # someone else's note untouched

    # the merge: the artifact of job 9002 is downloaded and checked against the note
    fake.head = second
    fake.artifacts["9002"] = second_bin.read_bytes()
    done = _gitlab(repo, env, "reviewed-plan", second, "reviewed")
    assert done.returncode == 0, done.stderr
    assert (repo.work / "reviewed" / "plan.bin").read_bytes() == second_bin.read_bytes()
    fake.artifacts["9002"] = first_bin.read_bytes()  # an artifact that is not the one reviewed
    done = _gitlab(repo, env, "reviewed-plan", second, "tampered")
    assert done.returncode == 1 and "refusing to apply it" in done.stderr
    fake.head = "e" * 40  # pushed after the last plan ran
    fake.artifacts["9002"] = second_bin.read_bytes()
    done = _gitlab(repo, env, "reviewed-plan", second, "stale")
    assert done.returncode == 1 and "re-run the plan" in done.stderr

    bad = {**env, "PLEXICA_GITLAB_TOKEN": "wrong"}
    done = _gitlab(repo, bad, "plan-note", second_md)
    assert done.returncode != 0 and "401" in done.stderr and "wrong" not in done.stderr


def test_gitlab_drift_issue_is_opened_updated_and_closed(
    repo: Repo, gitlab: tuple[FakeGitLab, dict[str, str]]
) -> None:
    fake, env = gitlab
    report = repo.work / "drift.md"
    report.write_text("## plexica-gitops drift\n\n- plugin.crm.workload: replicas 2 → 1\n")
    assert _gitlab(repo, env, "drift-issue", report, "0").returncode == 0
    assert fake.issues == []  # in sync and no issue: nothing to say

    done = _gitlab(repo, env, "drift-issue", report, "2")
    assert done.returncode == 2, done.stderr  # the scheduled job fails on drift
    [issue] = fake.issues
    assert issue["description"].startswith("<!-- plexica-gitops-drift -->\n**Drift detected**")
    assert "replicas 2 → 1" in issue["description"]

    done = _gitlab(repo, env, "drift-issue", report, "1")
    assert done.returncode == 1
    assert len(fake.issues) == 1 and "could not be checked" in issue["description"]
    assert issue["title"].startswith("Drift check failed")

    assert _gitlab(repo, env, "drift-issue", report, "0").returncode == 0
    assert issue["state"] == "closed" and "**In sync**" in issue["notes"][-1]
    assert _gitlab(repo, env, "drift-issue", report, "2").returncode == 2
    assert len(fake.issues) == 2  # drift again later: a new issue, the closed one stays closed
