"""A content-addressed cache of what reading a desired state computes, so that a pull request
that changes one tenant file re-reads only that file.

What is cached (see desired/build.py and desired/validate.py, which use it):

* per YAML file, keyed by its path and bytes: what building the desired state takes from it
  (a tenant's validated document, its findings, the places repaired, the positions of its
  values) - so an unchanged file is neither parsed nor validated again;
* per plugin configuration schema, keyed by the schema: the problems of each distinct
  tenant configuration checked against it (by a digest of the configuration's JSON), and
  that the schema passed the meta-schema;
* per rule that walks every configuration (secrets, references): the digests of the
  configurations it found nothing in;
* per directory, keyed by each file's path and the sha256 of its bytes: its ``sha256:``
  revision (source/files.py), so that a warm run does not read every file a second time.

Every key also holds the tool's fingerprint (:func:`tool_fingerprint`: the version, a
digest of the package's own source, the versions of the libraries that shape a result) and
:data:`FORMAT`, so an entry written by other code is never found, and an entry that claims
another fingerprint is ignored.

Safe to share between CI runs: an entry is written to a temporary file and renamed into
place (readers see a whole entry or none), and nothing read is trusted blindly: an entry
is JSON (never pickle: reading it cannot run code; a tenant file's entry is a JSON value
and JSON texts, a line each), it starts with a header naming its key
and fingerprint and a sha256 of its payload, and an entry that is truncated, corrupt, of
another version, under the wrong key or whose payload does not match its digest is
ignored (and rewritten by the run that needed it). A cache is only as trustworthy as the
directory it lives in: one restored from runs of untrusted code (a fork's pull request)
should not be used by an apply. Entries hold only what the YAML holds: references such as
``{fromEnv: NAME}``, never a resolved value.

Size: bounded by ``max_bytes`` (default 1 GiB). A run that wrote entries prunes the cache
(at most once an hour, by a stamp file): the least recently used entries go first until it
is under 80 % of the bound. An entry read is marked used (its mtime) at most once a day.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from plexica_gitops.source.loader import read_at_most

__all__ = [
    "ENV_CACHE_DIR",
    "FORMAT",
    "Cache",
    "default_cache_dir",
    "tool_fingerprint",
]

ENV_CACHE_DIR = "PLEXICA_CACHE_DIR"
FORMAT = 1  # bump when the shape of what is cached changes
MAGIC = b"plexica-gitops cache\n"
MAX_BYTES = 1 << 30
PRUNE_EVERY_S = 3600.0
TOUCH_AFTER_S = 86400.0
# Libraries whose behaviour shapes a cached result (parsing, validation, messages).
_LIBRARIES = ("PyYAML", "pydantic", "pydantic-core", "jsonschema", "jsonschema-rs")

_fingerprint: str | None = None


def tool_fingerprint() -> str:
    """What must be equal for a cached result to be reused: the package version, a digest
    of the package's source files (two builds of one version differ), the libraries'
    versions, the Python version and byte order (positions are packed)."""
    global _fingerprint
    if _fingerprint is not None:
        return _fingerprint
    import plexica_gitops

    digest = hashlib.sha256()
    package = Path(plexica_gitops.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    parts = [plexica_gitops.__version__, digest.hexdigest()[:16]]
    for name in _LIBRARIES:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    parts.append(f"py{sys.version_info[0]}.{sys.version_info[1]}-{sys.byteorder}")
    _fingerprint = " ".join(parts)
    return _fingerprint


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$PLEXICA_CACHE_DIR, else $XDG_CACHE_HOME/plexica-gitops, else ~/.cache/plexica-gitops."""
    env = os.environ if env is None else env
    chosen = env.get(ENV_CACHE_DIR)
    if chosen:
        return Path(chosen)
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "plexica-gitops"


class Cache:
    """Entries by (kind, key) under `directory`/desired-v<FORMAT>/. Never raises for what is
    on disk: a problem reading is a miss, a problem writing is a write not done."""

    def __init__(self, directory: Path, max_bytes: int = MAX_BYTES) -> None:
        self.directory = directory
        self.entries = directory / f"desired-v{FORMAT}"
        self._root = str(self.entries)
        self.max_bytes = max_bytes
        self.fingerprint = tool_fingerprint()
        self.written = 0
        self.hits = 0
        self.misses = 0
        self._directories: set[str] = set()  # made by this run (or found there)
        self._temporaries = 0
        self._header_prefixes: dict[str, str] = {}

    def key(self, kind: str, *parts: bytes) -> str:
        """The key of an entry: a digest of the fingerprint, the kind and `parts`."""
        digest = hashlib.sha256(f"{self.fingerprint}\0{FORMAT}\0{kind}\0".encode())
        for part in parts:
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.hexdigest()

    def _path(self, kind: str, key: str) -> str:
        # plain strings: a warm run looks up one entry per file, and pathlib's joins cost
        # more than reading the entry
        return os.path.join(self._root, kind, key[:2], key)

    def get(self, kind: str, key: str) -> Any | None:
        """The value stored under (kind, key), or None: missing, or not to be trusted."""
        payload = self._payload(kind, key)
        value = None if payload is None else _json(payload)
        self._count(value is not None)
        return value

    def get_texts(self, kind: str, key: str) -> tuple[Any, list[bytes]] | None:
        """What `put` stored with `texts` under (kind, key): the value and the texts (not
        read: their reader checks them), or None: missing, or not to be trusted."""
        payload = self._payload(kind, key)
        found = None
        if payload is not None:
            first, *texts = payload.split(b"\n")
            value = _json(first)
            found = None if value is None else (value, texts)
        self._count(found is not None)
        return found

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def _payload(self, kind: str, key: str) -> bytes | None:
        """The payload of the entry (kind, key) when its header is the one `put` writes
        for it, byte for byte: this tool's, for this key, of this size and sha256."""
        path = self._path(kind, key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            raw = read_at_most(fd, info.st_size, self.max_bytes)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not raw.startswith(MAGIC):
            return None
        header_end = raw.find(b"\n", len(MAGIC))
        if header_end < 0:
            return None
        payload = raw[header_end + 1 :]
        if raw[len(MAGIC) : header_end] != self._header(kind, key, payload):
            return None
        if time.time() - info.st_mtime > TOUCH_AFTER_S:
            _touch(path)
        return payload

    def _header(self, kind: str, key: str, payload: bytes) -> bytes:
        """What an entry's first line says (JSON): what wrote it, for which key, and its
        payload's size and digest (checked before the payload is read)."""
        prefix = self._header_prefixes.get(kind)
        if prefix is None:  # json.dumps of the first keys: the same text, once per kind
            plain = json.dumps({"format": FORMAT, "tool": self.fingerprint, "kind": kind})
            prefix = self._header_prefixes[kind] = plain[:-1]
        digest = hashlib.sha256(payload).hexdigest()
        rest = f', "key": {json.dumps(key)}, "size": {len(payload)}, "sha256": "{digest}"}}'
        return (prefix + rest).encode()

    def put(self, kind: str, key: str, value: Any, texts: Sequence[str] = ()) -> None:
        """Store `value` (plain JSON values) atomically: a temporary file renamed in place.
        `texts` (JSON texts of one line each) follow it a line each, as they are: reading
        a text inside the value's JSON would decode it twice (get_texts hands them back)."""
        try:
            lines = [json.dumps(value, separators=(",", ":"), allow_nan=False).encode()]
            lines += [text.encode() for text in texts]
        except (ValueError, TypeError, RecursionError):
            return  # not plain JSON (or a lone surrogate): not cached
        if any(b"\n" in text for text in lines[1:]):
            return  # not one line
        payload = b"\n".join(lines)
        data = MAGIC + self._header(kind, key, payload) + b"\n" + payload
        path = self._path(kind, key)
        try:
            fd, temporary = self._temporary(os.path.dirname(path))
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temporary, path)
            except BaseException:
                _unlink(temporary)
                raise
        except OSError:
            return  # a read-only or full cache slows the next run, nothing more
        self.written += len(data)

    def _temporary(self, directory: str) -> tuple[int, str]:
        """A new file in `directory` (made once a run) to write an entry into: named by
        this process and a counter (mkstemp's random names cost more than the write), or
        by mkstemp when that name is taken (a crashed run's, another host's)."""
        if directory not in self._directories:
            os.makedirs(directory, exist_ok=True)
            self._directories.add(directory)
        self._temporaries += 1
        name = os.path.join(directory, f".tmp-{os.getpid()}-{self._temporaries}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name
        except FileExistsError:
            return tempfile.mkstemp(prefix=".tmp-", dir=directory)
        except FileNotFoundError:  # removed since (another run pruned it)
            self._directories.discard(directory)
            os.makedirs(directory, exist_ok=True)
            return tempfile.mkstemp(prefix=".tmp-", dir=directory)

    def finish(self) -> None:
        """After a run: prune when it wrote anything (at most once an hour)."""
        if not self.written:
            return
        stamp = self.entries / ".pruned"
        try:
            if time.time() - stamp.stat().st_mtime < PRUNE_EVERY_S:
                return
        except OSError:
            pass
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.touch()
        except OSError:
            return
        self.prune()

    def prune(self) -> None:
        """Remove the least recently used entries until the cache is under 80 % of its
        bound (nothing when it is under the bound)."""
        found: list[tuple[float, int, str]] = []
        for directory, _, names in os.walk(self.entries):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                found.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in found)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(found):
            if total <= self.max_bytes * 0.8:
                break
            _unlink(path)
            total -= size


def _json(text: bytes) -> Any | None:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _touch(path: str) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
