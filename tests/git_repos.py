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


def _timed(action: Callable[[], object], runs: int) -> float:
    """Median wall time of `action` in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _walk_and_read(open_tree: Callable[[], SourceTree]) -> Callable[[], int]:
    def run() -> int:
        total = 0
        with open_tree() as tree:
            for entry in tree.walk():
                if entry.kind is EntryKind.FILE:
                    total += len(tree.read(entry.path, 4 * 1024 * 1024))
        return total

    return run


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
    """Walk + read every file: GitTree at a ref vs DirectoryTree on a checkout."""
    example = desired_repo(tmp)
    print(f"example desired state ({len(example.second_files)} files), median of {runs}:")
    loose = _timed(_walk_and_read(lambda: GitTree(example.work, "main", "desired-state")), runs)
    git(example.work, "gc", "-q")
    packed = _timed(_walk_and_read(lambda: GitTree(example.work, "main", "desired-state")), runs)
    disk = _timed(_walk_and_read(lambda: DirectoryTree(example.work / "desired-state")), runs)
    print(f"  GitTree loose {loose:.1f} ms, packed {packed:.1f} ms; DirectoryTree {disk:.1f} ms")
    work = _tenant_repo(tmp, 10_000)
    print("10,000 tenant files + the example, median of 3:")
    loose = _timed(_walk_and_read(lambda: GitTree(work, "main", "desired-state")), 3)
    git(work, "gc", "-q")
    packed = _timed(_walk_and_read(lambda: GitTree(work, "main", "desired-state")), 3)
    disk = _timed(_walk_and_read(lambda: DirectoryTree(work / "desired-state")), 3)
    directory = DirectoryTree(work / "desired-state")
    files = [e.path for e in directory.walk() if e.kind is EntryKind.FILE]
    dirty = _timed(lambda: directory.revision_of(files), 3)
    print(f"  GitTree loose {loose:.0f} ms, packed {packed:.0f} ms; DirectoryTree {disk:.0f} ms")
    print(f"  DirectoryTree.revision_of (content hash + dirty check): {dirty:.0f} ms")


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        bench(Path(scratch), int(sys.argv[1]) if len(sys.argv) > 1 else 10)
