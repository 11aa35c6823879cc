"""A Docker-API container engine for the tests and the demo: Podman's API service.

`ensure_engine(state_dir)` makes one available and returns its DOCKER_HOST url, from
whatever the machine has: it installs Debian's podman, runc, busybox-static and catatonit
when podman is missing (root), configures Podman for these hosts, and starts
`podman system service --time=0 unix://<state_dir>/podman.sock` in the background, in its
own session (it outlives the caller; `stop_engine` ends it). An engine already answering
on that socket is reused, so calling it again is cheap.

Configuration (ENVIRONMENT.md): crun fails here ("cgroups in hybrid mode") and Podman's
default ulimits exceed the host's hard limit, so runc and small ulimits are set in a
drop-in, /etc/containers/containers.conf.d/plexica.conf (Podman 4.3 reads drop-ins; a key
in a drop-in replaces the same key of containers.conf, other settings are untouched). It is
written only when the effective configuration lacks either setting.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from devenv.servers import ServerStartError, cause_from_log

CONFIG_FILES = (
    Path("/usr/share/containers/containers.conf"),
    Path("/etc/containers/containers.conf"),
)
DROP_IN_DIRS = (
    Path("/usr/share/containers/containers.conf.d"),
    Path("/etc/containers/containers.conf.d"),
)
DROP_IN = Path("/etc/containers/containers.conf.d/plexica.conf")
DROP_IN_TEXT = """\
# Written by devenv/podman.py: crun fails on these hosts (cgroups in hybrid mode) and
# Podman's default ulimits exceed the host's hard limit.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
"""
PACKAGES = ("podman", "runc", "busybox-static", "catatonit")
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes, with its terminating NUL
_SERVICES: list[subprocess.Popen[bytes]] = []  # keeps the Popen objects of started services


class EngineError(ServerStartError):
    """The engine could not be started (one line: the cause and the log file)."""


def ensure_engine(state_dir: Path, *, timeout: float = 30.0) -> str:
    """A DOCKER_HOST url (`unix://...`) of an engine answering the Docker API."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    socket_path = state_dir / "podman.sock"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise EngineError("Podman's API service", f"socket path too long: {socket_path}")
    url = f"unix://{socket_path}"
    if engine_answers(url):
        return url
    install_packages()
    configure_containers()
    if _service_pid(state_dir) is None:  # not one of ours still starting up
        _start_service(state_dir, url)
    _wait_until_answering(url, state_dir, timeout)
    return url


def stop_engine(state_dir: Path, *, timeout: float = 10.0) -> None:
    """Stop the service `ensure_engine` started for this state directory (only that one:
    the pid it recorded, checked to still be that service). Containers are left alone."""
    state_dir = state_dir.resolve()
    pid = _service_pid(state_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    for name in ("podman.pid", "podman.sock"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    for service in list(_SERVICES):
        if service.poll() is not None:
            _SERVICES.remove(service)


def engine_answers(url: str) -> bool:
    """Whether a Docker-API engine answers a ping at `url`."""
    import docker

    try:
        client = docker.DockerClient(base_url=url, version="1.41", timeout=5)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def install_packages() -> None:
    """Debian's podman, runc, busybox-static and catatonit, when any is missing (root)."""
    present = {
        "podman": shutil.which("podman"),
        "runc": shutil.which("runc"),
        "busybox-static": Path("/bin/busybox").exists() or None,
        "catatonit": shutil.which("catatonit") or Path("/usr/libexec/podman/catatonit").exists(),
    }
    if all(present.values()):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env)


def configure_containers() -> None:
    """Write the drop-in unless runc and default ulimits are configured already."""
    settings = effective_settings()
    runtime = settings.get("engine", {}).get("runtime")
    ulimits = settings.get("containers", {}).get("default_ulimits") or []
    if runtime == "runc" and any(str(u).startswith("nofile=") for u in ulimits):
        return
    DROP_IN.parent.mkdir(parents=True, exist_ok=True)
    DROP_IN.write_text(DROP_IN_TEXT, encoding="utf-8")


def effective_settings() -> dict[str, dict[str, Any]]:
    """containers.conf as Podman merges it: the files, then drop-ins in name order, a key
    of a later file replacing the same key of an earlier one. Unreadable files are
    skipped (the drop-in is then written, which is harmless)."""
    files = [path for path in CONFIG_FILES if path.exists()]
    for directory in DROP_IN_DIRS:
        if directory.is_dir():
            files.extend(sorted(directory.glob("*.conf")))
    merged: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        for table, values in data.items():
            if isinstance(values, dict):
                merged.setdefault(table, {}).update(values)
    return merged


def _start_service(state_dir: Path, url: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "podman.sock").unlink()  # stale: nothing answered on it
    log = (state_dir / "podman.log").open("ab")
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", url],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives the caller and its terminal's signals
    )
    log.close()
    _SERVICES.append(service)
    (state_dir / "podman.pid").write_text(str(service.pid), encoding="utf-8")


def _wait_until_answering(url: str, state_dir: Path, timeout: float) -> None:
    log = state_dir / "podman.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_answers(url):
            return
        if not _recorded_alive(state_dir):
            cause = cause_from_log(log, "podman system service exited")
            raise EngineError("Podman's API service", cause, log)
        time.sleep(0.2)
    cause = cause_from_log(log, f"no answer on {url} within {timeout:g} s")
    raise EngineError("Podman's API service", cause, log)


def _recorded_alive(state_dir: Path) -> bool:
    """Whether the recorded pid still runs (its command line may not be podman's yet,
    just after the fork)."""
    try:
        return _alive(int((state_dir / "podman.pid").read_text(encoding="utf-8").strip()))
    except (OSError, ValueError):
        return False


def _service_pid(state_dir: Path) -> int | None:
    """The recorded service's pid, if that process still runs as our podman service."""
    try:
        pid = int((state_dir / "podman.pid").read_text(encoding="utf-8").strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    socket_url = f"unix://{state_dir / 'podman.sock'}".encode()
    if b"service" not in command or socket_url not in command or not _alive(pid):
        return None
    return pid


def _alive(pid: int) -> bool:
    for service in _SERVICES:  # our own child: reap it, or it stays a zombie
        if service.pid == pid:
            return service.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
