"""What a person at a terminal sees: `--help` without type placeholders, and the apply
confirmation prompt, answered, refused and interrupted in a real pseudo-terminal against a
real PostgreSQL and real containers."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time

import docker
import pytest
from apply_support import EchoPlatform, containers_of, plugin_statuses, run_cli
from typer.testing import CliRunner

from plexica_gitops.cli import app

PLACEHOLDER = re.compile(r"<(bool|str|path|int|float|list\[[^\]]*\])[^>]*>")
PROMPT = b"Enter a value:"


@pytest.mark.parametrize(
    "command", [[], ["plan"], ["apply"], ["status"], ["validate"], ["show"], ["drift"]]
)
def test_help_shows_no_type_placeholders(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert PLACEHOLDER.findall(result.output) == []
    if command == ["plan"]:
        (target,) = [line for line in result.output.splitlines() if "--target" in line]
        assert "TEXT" in target
        (verbose,) = [line for line in result.output.splitlines() if "--verbose" in line]
        assert re.search(r"-v\s+List every tenant action", verbose)  # a flag takes no value


class Terminal:
    """`plexica-gitops ARGS` on the slave side of a new pseudo-terminal (its controlling
    terminal, so Ctrl-C typed there is a SIGINT, as for a person)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        environ = {**os.environ, **env, "COLUMNS": "120", "TERM": "dumb"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the CLI
            os.execvpe(sys.executable, [sys.executable, "-m", "plexica_gitops.cli", *args], environ)
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")[-2000:]
            if not self._read(deadline - time.monotonic()):
                break
        assert needle in self.output, self.output.decode(errors="replace")[-2000:]

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Exit code and everything shown; a CLI still running after `timeout` fails the
        test (the caller's kill() ends it) instead of hanging the suite in waitpid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(deadline - time.monotonic()):
            pass
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            assert time.monotonic() < deadline, (
                f"the CLI still runs after {timeout:g} s:\n"
                + self.output.decode(errors="replace")[-2000:]
            )
            self._read(0.2)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), self.output.decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def terminal_apply(echo: EchoPlatform, environment: dict[str, str]) -> tuple[dict[str, str], str]:
    """An initialised store and a one-plugin desired state: (environment, directory)."""
    assert run_cli(environment, "init")[0] == 0
    return environment, echo.write("1.0.0", replicas=1)


@pytest.mark.parametrize(
    ("keys", "code"),
    [(b"\x03", 130), (b"\x04", 130), (b"no\r", 1)],
    ids=["ctrl-c", "end-of-input", "no"],
)
def test_the_prompt_cancels_cleanly_and_changes_nothing(
    terminal_apply: tuple[dict[str, str], str],
    docker_client: docker.DockerClient,
    docker_scope: str,
    keys: bytes,
    code: int,
) -> None:
    env, root = terminal_apply
    terminal = Terminal(env, "apply", root)
    try:
        terminal.read_until(PROMPT)
        question = terminal.output.decode(errors="replace").split("Do you want to")[-1]
        expected = "perform these actions? Only 'yes' will be accepted to approve. Enter a value:"
        assert " ".join(question.split()) == expected  # no "[]" of an empty default
        terminal.type(keys)
        exit_code, output = terminal.finish()
    finally:
        terminal.kill()
    assert exit_code == code, output
    assert output.rstrip().endswith("Apply cancelled, nothing changed."), output[-500:]
    assert "Aborted" not in output and "Traceback" not in output
    assert plugin_statuses(env["PLEXICA_DATABASE_URL"]) == {}
    assert containers_of(docker_client, docker_scope, "echo") == []


def test_yes_at_the_prompt_applies(
    terminal_apply: tuple[dict[str, str], str],
) -> None:
    env, root = terminal_apply
    terminal = Terminal(env, "apply", root)
    try:
        terminal.read_until(PROMPT)
        terminal.type(b"yes\r")
        exit_code, output = terminal.finish(timeout=180)
    finally:
        terminal.kill()
    assert exit_code == 0, output[-2000:]
    assert plugin_statuses(env["PLEXICA_DATABASE_URL"])["echo"] == ("ACTIVE", None)


def test_help_renders_the_same_for_a_command_resolved_twice() -> None:
    """The placeholder fix is applied once per command object: a second run does not
    stack or lose it."""
    first = CliRunner().invoke(app, ["apply", "--help"], env={"COLUMNS": "120"}).output
    second = CliRunner().invoke(app, ["apply", "--help"], env={"COLUMNS": "120"}).output
    assert first == second
