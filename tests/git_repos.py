"""Real git repositories for the source tests, built with the git binary (the code under
test never runs git), and a tiny smart-HTTP git server (``git http-backend`` as CGI behind
basic auth) on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from plexica_gitops.source import loader
from plexica_gitops.source.git import GitTree
from plexica_gitops.source.tree import DirectoryTree, EntryKind, SourceTree

EXAMPLE = Path(__file__).resolve().parent.parent / "desired-state"

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    # no background `git gc --auto` racing with the reads and the explicit gc of a test
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "gc.auto",
    "GIT_CONFIG_VALUE_0": "0",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def init(path: Path, *, bare: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main", *(["--bare"] if bare else []))
    return path


def commit_all(work: Path, message: str) -> str:
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    return git(work, "rev-parse", "HEAD")


def snapshot(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every regular file (not through symlinks, no hidden)."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink():
            continue
        if path.is_file():
            files[rel.as_posix()] = path.read_bytes()
    return files


@dataclass
class DesiredRepo:
    work: Path  # a work tree whose HEAD is `second` on main
    first: str  # the example desired state under desired-state/
    second: str  # acme edited, umbrella deleted, a crm migration added
    first_files: dict[str, bytes]
    second_files: dict[str, bytes]


def desired_repo(tmp: Path) -> DesiredRepo:
    work = init(tmp / "work")
    shutil.copytree(EXAMPLE, work / "desired-state")
    (work / "README.md").write_text("the platform's desired state\n")
    first_files = snapshot(work / "desired-state")
    first = commit_all(work, "the example desired state")
    git(work, "tag", "-a", "v1", "-m", "first release")
    git(work, "tag", "light", first)
    acme = work / "desired-state/tenants/acme.yaml"
    acme.write_text(acme.read_text().replace("acme", "acme-corp", 1))
    (work / "desired-state/tenants/umbrella.yaml").unlink()
    (work / "desired-state/plugins/crm/migrations/0004_add_crm_notes.sql").write_text(
        "ALTER TABLE crm_deals ADD COLUMN notes text;\n"
    )
    second_files = snapshot(work / "desired-state")
    second = commit_all(work, "acme renamed, umbrella gone, crm notes")
    return DesiredRepo(work, first, second, first_files, second_files)


# --------------------------------------------------------------------------- HTTP server


def http_backend() -> Path | None:
    try:
        exec_path = git(Path.cwd(), "--exec-path")
    except (OSError, subprocess.CalledProcessError):
        return None
    backend = Path(exec_path) / "git-http-backend"
    return backend if backend.exists() else None


@dataclass
class GitHttpServer:
    url: str  # http://127.0.0.1:PORT
    requests: list[str]  # "METHOD path -> status", for assertions


@contextmanager
def serve_git_http(project_root: Path, username: str, password: str) -> Iterator[GitHttpServer]:
    """Serve the bare repositories under `project_root` over smart HTTP, basic auth."""
    backend = http_backend()
    assert backend is not None
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    log: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            if self.headers.get("Authorization") != expected:
                log.append(f"{self.command} {self.path} -> 401")
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                **os.environ,
                **GIT_ENV,
                "GIT_PROJECT_ROOT": str(project_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": username,
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            done = subprocess.run([str(backend)], input=body, env=env, capture_output=True)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            log.append(f"{self.command} {path} -> {status}")
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield GitHttpServer(f"http://127.0.0.1:{server.server_address[1]}", log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- measurement


def _timed(actions: dict[str, Callable[[], object]], runs: int) -> dict[str, str]:
    """Median wall and CPU time of each action in ms, the actions interleaved run by run
    (the machine is shared: interleaving spreads the noise over all of them)."""
    wall: dict[str, list[float]] = {name: [] for name in actions}
    cpu: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(runs):
        for name, action in actions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            action()
            wall[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
    return {
        name: f"{statistics.median(wall[name]):.1f} ms wall, "
        f"{statistics.median(cpu[name]):.1f} ms CPU"
        for name in actions
    }


def _walk_and_read(open_tree: Callable[[], SourceTree]) -> Callable[[], int]:
    def run() -> int:
        total = 0
        with open_tree() as tree:
            for entry in tree.walk():
                if entry.kind is EntryKind.FILE:
                    total += len(tree.read(entry.path, 4 * 1024 * 1024))
        return total

    return run


def _loader_walk_and_read(tree: DirectoryTree) -> int:
    found, _ = loader._walk(tree.path, tree.real_root)
    return sum(
        len(raw)
        for rel, real in found
        if isinstance(raw := loader._read(real, rel, 1 << 22), bytes)
    )


def _tenant_repo(tmp: Path, count: int) -> Path:
    work = init(tmp / f"tenants-{count}")
    shutil.copytree(EXAMPLE, work / "desired-state")
    template = (EXAMPLE / "tenants/acme.yaml").read_text()
    tenants = work / "desired-state/tenants"
    for n in range(count):
        (tenants / f"tenant-{n:05d}.yaml").write_text(template.replace("acme", f"t{n:05d}"))
    commit_all(work, f"{count} tenants")
    return work


def bench(tmp: Path, runs: int = 10) -> None:
    """Walk + read every file: GitTree at a ref (loose objects, then packed) vs
    DirectoryTree on the work tree of the same commit."""
    for name, work, count in (
        ("example desired state", desired_repo(tmp).work, runs),
        ("10,000 tenant files + the example", _tenant_repo(tmp, 10_000), max(3, runs // 2)),
    ):
        loose = _walk_and_read(lambda work=work: GitTree(work, "main", "desired-state"))
        print(f"{name}, median of {count}:")
        print(f"  GitTree, loose objects: {_timed({'loose': loose}, count)['loose']}")
        git(work, "gc", "-q")
        directory = DirectoryTree(work / "desired-state")
        files = [e.path for e in directory.walk() if e.kind is EntryKind.FILE]
        results = _timed(
            {
                "GitTree, packed": _walk_and_read(
                    lambda work=work: GitTree(work, "main", "desired-state")
                ),
                "DirectoryTree": _walk_and_read(
                    lambda work=work: DirectoryTree(work / "desired-state")
                ),
                "loader._walk + _read today": lambda root=directory: _loader_walk_and_read(root),
                "DirectoryTree.revision_of (hash + dirty)": (
                    lambda tree=directory, names=files: tree.revision_of(names)
                ),
            },
            count,
        )
        for label, result in results.items():
            print(f"  {label}: {result}")


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        bench(Path(scratch), int(sys.argv[1]) if len(sys.argv) > 1 else 10)
