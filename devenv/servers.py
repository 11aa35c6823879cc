"""What the local servers (PostgreSQL, Tansu) share: free loopback ports, the state file
that recognises a server we started earlier, and a one-line error when one fails to start.

A long-lived server (the demo's) records `server.json` in its state directory: its pid,
port and a random token that the server itself answers with (PostgreSQL's
`cluster_name`, Tansu's cluster id). It is reused only when that process still runs AND
the server answering on the port gives the same token: a server someone else runs on a
port we used before is never mistaken for ours."""

from __future__ import annotations

import json
import re
import secrets
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
TOKEN_PREFIX = "plexica-devenv-"


class ServerStartError(RuntimeError):
    """A server could not be started; the message is one line: what, why, where the log is."""

    def __init__(self, what: str, cause: str, log: Path | None = None) -> None:
        where = f" (log: {log})" if log is not None else ""
        super().__init__(f"{what} did not start: {cause}{where}")


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing answers on the loopback port, and we could listen on it."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((LOOPBACK, port)) == 0:
            return False
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pick_port(what: str, preferred: int, *, required: bool) -> int:
    """`preferred` when it is free; otherwise another free port, or (when the user asked
    for exactly that port) a ServerStartError naming it."""
    if port_is_free(preferred):
        return preferred
    if required:
        raise ServerStartError(
            what,
            f"port {preferred} on {LOOPBACK} is taken by another program (unset the port "
            "variable to let the demo pick a free one)",
        )
    return free_port()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_hex(8)


@dataclass(frozen=True)
class ServerRecord:
    """`server.json`: which process we started, on which port, answering with which token."""

    pid: int
    port: int
    token: str

    @classmethod
    def load(cls, path: Path) -> ServerRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["pid"]), int(data["port"]), str(data["token"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)) + "\n", encoding="utf-8")


def process_runs(pid: int, *needles: str) -> bool:
    """Whether `pid` runs (not a zombie) with every needle in its command line."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return False
    return state != "Z" and all(needle in command for needle in needles)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:.]+Z?( [A-Z]{2,5})?( \[\d+\])? ")
_SEVERE = re.compile(r"\b(FATAL|PANIC|ERROR|panicked)\b")
_DETAIL = ("HINT:", "DETAIL:", "WARNING:", "CONTEXT:")
_ROUTINE = re.compile(r"starting PostgreSQL|listening on")


def cause_from_log(path: Path, fallback: str) -> str:
    """The words of a server log that say why it stopped: a line about a port in use
    first (the usual cause); else the last FATAL/ERROR/panic line, after the LOG line that
    explains it when there is one (PostgreSQL: `invalid value for parameter ...`); else
    `fallback`."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fallback
    lines = [
        _TIMESTAMP.sub("", " ".join(_ANSI.sub("", line).split())) for line in text.splitlines()
    ]
    lines = [line for line in lines if line]
    in_use = [line for line in lines if re.search(r"in use|AddrInUse", line, re.I)]
    if in_use:
        return _short(in_use[-1])
    for index in range(len(lines) - 1, -1, -1):
        if not _SEVERE.search(lines[index]):
            continue
        before = index - 1
        while before >= 0 and lines[before].startswith(_DETAIL):
            before -= 1
        reason = lines[before] if before >= 0 else ""
        if reason.startswith("LOG:") and not _ROUTINE.search(reason):
            return _short(f"{reason.removeprefix('LOG:').strip()}; {lines[index]}")
        return _short(lines[index])
    return fallback


def _short(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."
