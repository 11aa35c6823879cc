"""The desired state read from the git objects of one commit, without a checkout (dulwich).

``GitTree(repo, ref, path=None)``:

* `repo` is a local repository (a work tree's top directory, or a bare repository), or a
  remote URL: ``file://``, ``https://`` (``http://``), ``ssh://`` or ``user@host:path``.
  A remote is fetched into a bare mirror under the cache directory
  (``$XDG_CACHE_HOME/plexica-gitops/git/<sha256 of the URL>``, ``~/.cache`` by default):
  only the wanted ref, incrementally (what the mirror has is not sent again), depth 1
  from a server (file:// in full: see _Fetcher._depth); a sha that is no branch or tag
  tip fetches every branch and tag in full; a full sha already in the mirror needs no
  network at all. One fetch at a time per mirror (a file lock); a mirror left broken
  by a crash is made anew.
* Credentials come from the environment only, never from the URL or from YAML:
  ``PLEXICA_GIT_USERNAME`` + ``PLEXICA_GIT_PASSWORD``, or ``PLEXICA_GIT_TOKEN`` (user
  ``PLEXICA_GIT_USERNAME``, default ``x-access-token``) for HTTPS; for SSH the ssh client
  with its agent (``SSH_AUTH_SOCK``), ``GIT_SSH_COMMAND`` / ``GIT_SSH``, or a key file in
  ``PLEXICA_GIT_SSH_KEY``. No git credential helper or git config is consulted. Errors
  and labels show URLs without their user info.
* `ref` is resolved as git does: a full sha; ``HEAD``; ``refs/...``; a name tried as
  ``refs/<name>``, ``refs/tags/<name>``, ``refs/heads/<name>``, ``refs/remotes/<name>``,
  ``refs/remotes/<name>/HEAD``; an abbreviated sha (4+ hex digits, unique). Annotated
  tags are peeled to their commit.
* `path` selects a subdirectory of the commit as the root.

Blobs are read lazily; a blob's size is read from its object header (loose or packed,
delta or not), so a blob over the limit is refused without being inflated.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import mmap
import os
import re
import shutil
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import urllib3.exceptions
from dulwich.client import HTTPUnauthorized, default_urllib3_manager, get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.object_store import BaseObjectStore, DiskObjectStore, peel_sha
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.pack import Pack, PackFileDisappeared
from dulwich.porcelain import INFINITE_DEPTH
from dulwich.refs import Ref
from dulwich.repo import Repo

from plexica_gitops.source.tree import (
    MAX_SYMLINKS,
    ROOT,
    DirectoryTree,
    Entry,
    EntryKind,
    FileTooLarge,
    GitRevision,
    LinkProblem,
    LinkProblemKind,
    NotARegularFile,
    PathNotFound,
    SourceError,
    SourceTree,
    kind_of_mode,
    split_path,
)

__all__ = [
    "AmbiguousRef",
    "AuthenticationFailed",
    "CredentialsInUrl",
    "GitTree",
    "PathNotInTree",
    "RefNotFound",
    "RemoteUnreachable",
    "RepositoryNotFound",
    "default_cache_dir",
    "is_remote",
    "scrub_url",
    "work_tree_state",
]

FETCH_TIMEOUT_SECONDS = 60.0
_HEX = re.compile(r"[0-9a-fA-F]+")
# Where an address names a port (`port=38401`, `host:38401`): not an HTTP status.
_PORT_MENTION = re.compile(r"port=\d+|:\d+")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:]{2,}):(?!//)")  # user@host:path
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_MODE_SYMLINK = 0o120000
_MODE_TREE = 0o040000


# --------------------------------------------------------------------------- errors


class RepositoryNotFound(SourceError):
    pass


class RefNotFound(SourceError):
    def __init__(self, ref: str, where: str, close: Sequence[str]) -> None:
        hint = (
            "Did you mean " + ", ".join(close) + "?"
            if close
            else "Pass a branch, a tag, a commit sha, HEAD or a full refs/... name."
        )
        super().__init__(f"{where}: ref {ref!r} not found", hint)
        self.ref = ref
        self.close = list(close)


class AmbiguousRef(SourceError):
    pass


class PathNotInTree(SourceError):
    pass


class RemoteUnreachable(SourceError):
    def __init__(self, url: str, host: str, port: int | None, detail: str) -> None:
        where = f"{host}:{port}" if port else host
        super().__init__(
            f"{url}: cannot reach the git server at {where} ({detail})",
            "Check the URL, the network and any proxy; the next run tries again.",
            transient=True,
        )
        self.host = host
        self.port = port


class AuthenticationFailed(SourceError):
    pass


class CredentialsInUrl(SourceError):
    pass


# --------------------------------------------------------------------------- URLs


def is_remote(repo: str | Path) -> bool:
    """A URL (file:// included) or an scp-like ``host:path``; else a local path."""
    if isinstance(repo, Path):
        return False
    if _URL.match(repo):
        return True
    return bool(_SCP.match(repo)) and not os.path.exists(repo)


def scrub_url(url: str) -> str:
    """`url` without its user info (user names and passwords)."""
    if _URL.match(url):
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=netloc))
    match = _SCP.match(url)
    if match and match["user"]:
        return url[len(match["user"]) + 1 :]
    return url


def _host_and_port(url: str) -> tuple[str, int | None]:
    if _URL.match(url):
        parts = urlsplit(url)
        return parts.hostname or "localhost", parts.port or _DEFAULT_PORTS.get(parts.scheme)
    match = _SCP.match(url)
    return (match["host"], 22) if match else (url, None)


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "plexica-gitops" / "git"


@dataclass(frozen=True)
class _Credentials:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    key_filename: str | None = None
    ssh_command: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> _Credentials:
        username = env.get("PLEXICA_GIT_USERNAME") or None
        password = env.get("PLEXICA_GIT_PASSWORD") or None
        token = env.get("PLEXICA_GIT_TOKEN") or None
        if token:
            username, password = username or "x-access-token", token
        return cls(
            username=username,
            password=password,
            key_filename=env.get("PLEXICA_GIT_SSH_KEY") or None,
            ssh_command=env.get("GIT_SSH_COMMAND") or env.get("GIT_SSH") or None,
        )

    def scrub(self, text: str) -> str:
        for secret in (self.password,):
            if secret:
                text = text.replace(secret, "***")
        return re.sub(r"(://)[^/@\s]+@", r"\1", text)


# --------------------------------------------------------------------------- refs


def _ref_candidates(ref: str) -> list[str]:
    if ref == "HEAD" or ref.startswith("refs/"):
        return [ref]
    return [
        f"refs/{ref}",
        f"refs/tags/{ref}",
        f"refs/heads/{ref}",
        f"refs/remotes/{ref}",
        f"refs/remotes/{ref}/HEAD",
    ]


def _short(refname: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/"):
        if refname.startswith(prefix):
            return refname[len(prefix) :]
    return refname


def _find_named(refs: Mapping[str, str], ref: str) -> tuple[str, str] | None:
    """(full ref name, sha it points at) of the first candidate `refs` has."""
    for candidate in _ref_candidates(ref):
        sha = refs.get(candidate)
        if sha:
            return candidate, sha
    return None


def _tip_named(refs: Mapping[str, str], sha: str) -> tuple[str, str] | None:
    """A full sha that a branch or tag points at: (that ref, sha); fetched like the ref."""
    if not _is_sha_like(sha, full=True):
        return None
    names = sorted(name for name, tip in refs.items() if tip == sha.lower() and name != "HEAD")
    return (names[0], sha.lower()) if names else None


def _label(ref: str, refname: str, symrefs: Mapping[str, str]) -> str | None:
    """How the revision names its ref: as asked, except HEAD -> the branch it points at."""
    if ref != "HEAD":
        return ref
    target = symrefs.get("HEAD")
    return _short(target) if target else None


def _close_refs(ref: str, refs: Mapping[str, str]) -> list[str]:
    names = sorted({_short(name) for name in refs if not name.endswith("^{}")})
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    return close or names[:5]


def _decode_refs(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {
        os.fsdecode(name): os.fsdecode(sha)
        for name, sha in raw.items()
        if sha and not bytes(name).endswith(b"^{}")
    }


def _is_sha_like(ref: str, *, full: bool) -> bool:
    if not _HEX.fullmatch(ref):
        return False
    return len(ref) == 40 if full else 4 <= len(ref) < 40


# --------------------------------------------------------------------------- object sizes


class _ObjectSizes:
    """The inflated size of an object from its header, without inflating the object."""

    def __init__(self, store: BaseObjectStore) -> None:
        self._store = store
        self._maps: dict[str, mmap.mmap] = {}
        self._packs: list[Pack] | None = None  # listing the pack directory per blob is slow
        self._known: dict[str, int] = {}

    def size(self, sha: str) -> int:
        known = self._known.get(sha)
        if known is None:
            known = self._known[sha] = self._size(sha)  # walk and read both ask
        return known

    def _size(self, sha: str) -> int:
        raw_sha = sha.encode()
        for _ in range(2):  # a miss rereads the pack list once: a repack may have run
            packed = self._packed_size(raw_sha)
            if packed is not None:
                return packed
            loose = self._loose_path(sha)
            if loose is not None:
                return _loose_size(loose)
            self._packs = None
        return len(self._store.get_raw(ObjectID(raw_sha))[1])  # an alternate: inflate it

    def _packed_size(self, raw_sha: bytes) -> int | None:
        if self._packs is None:
            self._packs = list(getattr(self._store, "packs", ()))
        for pack in self._packs:
            try:
                offset = pack.index.object_offset(ObjectID(raw_sha))
                return self._packed(str(pack.data.path), offset)
            except KeyError:
                continue
            except (PackFileDisappeared, FileNotFoundError):  # git gc's temporary packs
                continue
        return None

    def _loose_path(self, sha: str) -> str | None:
        if not isinstance(self._store, DiskObjectStore):
            return None
        path = os.path.join(self._store.path, sha[:2], sha[2:])
        return path if os.path.exists(path) else None

    def _packed(self, path: str, offset: int) -> int:
        buffer = self._maps.get(path)
        if buffer is None:
            with open(path, "rb") as handle:
                buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self._maps[path] = buffer
        return _packed_size(buffer, offset)

    def close(self) -> None:
        for buffer in self._maps.values():
            buffer.close()
        self._maps.clear()


def _packed_size(buffer: mmap.mmap, offset: int) -> int:
    """Pack entry header: type and size; for a delta, the result size from the delta's
    own header (the first bytes of its zlib stream)."""
    byte = buffer[offset]
    type_num, size, shift, position = (byte >> 4) & 7, byte & 0x0F, 4, offset + 1
    while byte & 0x80:
        byte = buffer[position]
        position += 1
        size |= (byte & 0x7F) << shift
        shift += 7
    if type_num == 6:  # OFS_DELTA: a base offset, then the delta
        while buffer[position] & 0x80:
            position += 1
        position += 1
    elif type_num == 7:  # REF_DELTA: a base sha, then the delta
        position += 20
    else:
        return size
    head = _inflate_prefix(buffer, position, 20)
    _, index = _delta_varint(head, 0)  # base size
    result, _ = _delta_varint(head, index)
    return result


def _inflate_prefix(buffer: mmap.mmap | bytes, position: int, wanted: int) -> bytes:
    inflater = zlib.decompressobj()
    out = b""
    while len(out) < wanted and not inflater.eof and position < len(buffer):
        out += inflater.decompress(buffer[position : position + 256], wanted - len(out))
        position += 256
        if inflater.unconsumed_tail:  # output limit reached
            break
    return out


def _delta_varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index


def _loose_size(path: str) -> int:
    with open(path, "rb") as handle:
        head = _inflate_prefix(handle.read(512), 0, 32)
    kind_and_size = head.split(b"\0", 1)[0]
    return int(kind_and_size.split(b" ", 1)[1])


# --------------------------------------------------------------------------- fetching


def _open_local(path: str | Path) -> Repo:
    shown = str(path)
    if not os.path.exists(path):
        raise RepositoryNotFound(
            f"git repository {shown} does not exist",
            "Pass the top directory of a git work tree, a bare repository, or a URL.",
        )
    try:
        return Repo(str(path))
    except NotGitRepository as exc:
        raise RepositoryNotFound(
            f"{shown} is not a git repository",
            "Pass the top directory of a git work tree (the one holding .git), a bare "
            "repository, or a URL.",
        ) from exc


class _Fetcher:
    """Fetches one ref of a remote into a bare mirror in the cache and resolves it."""

    def __init__(self, url: str, cache_dir: Path, env: Mapping[str, str]) -> None:
        self.url = url
        self.shown = scrub_url(url)
        self.credentials = _Credentials.from_env(env)
        self.mirror_path = cache_dir / hashlib.sha256(self.shown.encode()).hexdigest()

    def open(self, ref: str) -> tuple[Repo, GitRevision]:
        self._refuse_inline_password()
        self.mirror_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            mirror = self._mirror()
            try:
                return mirror, self._resolve(mirror, ref)
            except BaseException:
                mirror.close()
                raise

    def _refuse_inline_password(self) -> None:
        if _URL.match(self.url) and urlsplit(self.url).password is not None:
            raise CredentialsInUrl(
                f"{self.shown}: the repository URL carries a password; it was not used",
                "Remove it from the URL and set PLEXICA_GIT_USERNAME and "
                "PLEXICA_GIT_PASSWORD (or PLEXICA_GIT_TOKEN) in the environment.",
            )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(str(self.mirror_path) + ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _mirror(self) -> Repo:
        if self.mirror_path.exists():
            try:
                return Repo(str(self.mirror_path))
            except NotGitRepository:  # a crash while it was created: it is only a cache
                shutil.rmtree(self.mirror_path)
        return Repo.init_bare(str(self.mirror_path), mkdir=True)

    def _resolve(self, mirror: Repo, ref: str) -> GitRevision:
        if _is_sha_like(ref, full=True) and ObjectID(ref.lower().encode()) in mirror:
            return _revision_for_sha(mirror, ref.lower(), self.shown)  # commits never change
        wanted: dict[str, tuple[str, str]] = {}
        advertised: dict[str, str] = {}

        def determine_wants(refs: Mapping[Any, Any], depth: int | None = None) -> list[Any]:
            advertised.update(_decode_refs(refs))
            found = _find_named(advertised, ref) or _tip_named(advertised, ref)
            if found is None:
                return []
            wanted["ref"] = found
            return [] if ObjectID(found[1].encode()) in mirror else [found[1].encode()]

        result = self._fetch(mirror, determine_wants, depth=self._depth())
        symrefs = {os.fsdecode(k): os.fsdecode(v) for k, v in result.symrefs.items()}
        if "ref" in wanted:
            refname, sha = wanted["ref"]
            self._record(mirror, refname, sha, symrefs)
            label = None if _is_sha_like(ref, full=True) else _label(ref, refname, symrefs)
            return _revision_from(mirror, sha, label, self.shown, ref)
        if _is_sha_like(ref, full=True) or _is_sha_like(ref, full=False):
            return self._resolve_sha(mirror, ref, advertised)
        raise RefNotFound(ref, self.shown, _close_refs(ref, advertised))

    def _depth(self) -> int | None:
        """1 for a server (git's upload-pack sends only what the mirror's shallow tips
        lack); full history for file://, whose in-process server (dulwich) would send the
        whole tree again to a shallow mirror, while history costs no network there."""
        return None if self.url.startswith("file:") else 1

    def _resolve_sha(self, mirror: Repo, ref: str, advertised: Mapping[str, str]) -> GitRevision:
        """A sha that is no branch or tag tip: fetch every branch and tag in full."""
        names = [n for n in advertised if n.startswith(("refs/heads/", "refs/tags/"))]

        def all_tips(refs: Mapping[Any, Any], depth: int | None = None) -> list[Any]:
            tips = _decode_refs(refs)
            return sorted({tips[n].encode() for n in names if n in tips})

        self._fetch(mirror, all_tips, depth=INFINITE_DEPTH)
        for name in names:
            mirror.refs[Ref(name.encode())] = ObjectID(advertised[name].encode())
        return _resolve_local(mirror, ref, self.shown)

    def _record(self, mirror: Repo, refname: str, sha: str, symrefs: Mapping[str, str]) -> None:
        """Keep the fetched tip as a ref: the next fetch sends it as a 'have'."""
        if refname == "HEAD":
            target = symrefs.get("HEAD")
            if target is None:
                mirror.refs[Ref(b"HEAD")] = ObjectID(sha.encode())
                return
            mirror.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(target.encode()))
            refname = target
        mirror.refs[Ref(refname.encode())] = ObjectID(sha.encode())

    def _fetch(self, mirror: Repo, determine_wants: Any, depth: int | None) -> Any:
        credentials = self.credentials
        host, port = _host_and_port(self.url)
        try:
            client, path = get_transport_and_path(
                self.url,
                username=credentials.username,
                password=credentials.password,
                key_filename=credentials.key_filename,
                ssh_command=credentials.ssh_command,
                pool_manager=cast(
                    Any, default_urllib3_manager(None, timeout=FETCH_TIMEOUT_SECONDS)
                ),
            )
            return client.fetch(path, mirror, determine_wants=determine_wants, depth=depth)
        except HTTPUnauthorized as exc:
            raise self._auth_failed() from exc
        except NotGitRepository as exc:
            raise self._not_found() from exc
        except HangupException as exc:
            raise self._hangup(exc, host, port) from exc
        except GitProtocolError as exc:
            detail = credentials.scrub(str(exc))
            if _http_status(detail, "404") or "not found" in detail.lower():
                raise self._not_found() from exc
            if _http_status(detail, "401", "403"):
                raise self._auth_failed() from exc
            raise RemoteUnreachable(self.shown, host, port, _network_detail(detail)) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            detail = _network_detail(credentials.scrub(str(exc)))
            raise RemoteUnreachable(self.shown, host, port, detail) from exc

    def _hangup(self, exc: HangupException, host: str, port: int | None) -> SourceError:
        lines = [os.fsdecode(line) for line in (exc.stderr_lines or [])]
        text = self.credentials.scrub(" ".join(lines).strip()) or "the connection was closed"
        lowered = text.lower()
        if "permission denied" in lowered or "authentication" in lowered:
            return self._auth_failed()
        if "not found" in lowered or "does not appear to be a git repository" in lowered:
            return self._not_found()
        return RemoteUnreachable(self.shown, host, port, text)

    def _auth_failed(self) -> AuthenticationFailed:
        return AuthenticationFailed(
            f"{self.shown}: the git server refused the credentials",
            "HTTPS: set PLEXICA_GIT_USERNAME and PLEXICA_GIT_PASSWORD, or PLEXICA_GIT_TOKEN; "
            "SSH: load the key into the ssh agent, or set PLEXICA_GIT_SSH_KEY or "
            "GIT_SSH_COMMAND. Check that they grant read access to this repository.",
        )

    def _not_found(self) -> RepositoryNotFound:
        return RepositoryNotFound(
            f"{self.shown}: no git repository at this URL",
            "Check the URL (and that the credentials may see the repository).",
        )


def _network_detail(text: str) -> str:
    """The innermost system error ("Connection refused"), not urllib3's whole story."""
    reasons = re.findall(r"\[Errno -?\d+\] ([^\"')\]]+)", text)
    if reasons:
        return str(reasons[-1]).strip()
    return text if len(text) <= 200 else text[:200] + "..."


# --------------------------------------------------------------------------- resolving


def _commit_of(repo: Repo, sha: str, shown: str, ref: str) -> Commit:
    try:
        _, peeled = peel_sha(repo.object_store, ObjectID(sha.encode()))
    except KeyError as exc:
        raise RefNotFound(ref, shown, []) from exc
    if not isinstance(peeled, Commit):
        raise RefNotFound(ref, shown, []) from None
    return peeled


def _revision_from(repo: Repo, sha: str, label: str | None, shown: str, ref: str) -> GitRevision:
    commit = _commit_of(repo, sha, shown, ref)
    return GitRevision(os.fsdecode(commit.id), label)


def _revision_for_sha(repo: Repo, sha: str, shown: str) -> GitRevision:
    return _revision_from(repo, sha, None, shown, sha)


def _resolve_local(repo: Repo, ref: str, shown: str) -> GitRevision:
    if _is_sha_like(ref, full=True) and ObjectID(ref.lower().encode()) in repo:
        return _revision_for_sha(repo, ref.lower(), shown)
    refs = _decode_refs(repo.get_refs())
    found = _find_named(refs, ref)
    if found is not None:
        symrefs = {os.fsdecode(k): os.fsdecode(v) for k, v in repo.refs.get_symrefs().items()}
        return _revision_from(repo, found[1], _label(ref, found[0], symrefs), shown, ref)
    if _is_sha_like(ref, full=False):
        return _revision_for_sha(repo, _unique_prefix(repo, ref.lower(), shown), shown)
    raise RefNotFound(ref, shown, _close_refs(ref, refs))


def _unique_prefix(repo: Repo, prefix: str, shown: str) -> str:
    commits = []
    for sha in repo.object_store.iter_prefix(prefix.encode()):
        try:
            _, peeled = peel_sha(repo.object_store, sha)
        except KeyError:
            continue
        if isinstance(peeled, Commit):
            commits.append(os.fsdecode(peeled.id))
    unique = sorted(set(commits))
    if len(unique) == 1:
        return unique[0]
    if not unique:
        raise RefNotFound(prefix, shown, [])
    raise AmbiguousRef(
        f"{shown}: abbreviated sha {prefix!r} matches {len(unique)} commits "
        f"({', '.join(sha[:12] for sha in unique[:5])})",
        "Give more digits of the sha, or the full 40.",
    )


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class _Node:
    mode: int
    sha: str


class GitTree(SourceTree):
    """The tree of one commit (see the module docstring)."""

    def __init__(
        self,
        repo: str | Path,
        ref: str,
        path: str | None = None,
        *,
        cache_dir: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        if is_remote(repo):
            cache = Path(cache_dir) if cache_dir else default_cache_dir(env)
            fetcher = _Fetcher(str(repo), cache, env)
            self._repo, self._revision = fetcher.open(ref)
            self._shown = fetcher.shown
            self.mirror_path: Path | None = fetcher.mirror_path
        else:
            self._repo = _open_local(repo)
            self._shown = str(repo)
            self.mirror_path = None
            try:
                self._revision = _resolve_local(self._repo, ref, self._shown)
            except BaseException:
                self._repo.close()
                raise
        self._setup(path)

    @classmethod
    def from_repo(cls, repo: Repo, revision: GitRevision, path: str | None = None) -> GitTree:
        """A tree over an already open repository at an already resolved commit."""
        tree = cls.__new__(cls)
        tree._repo, tree._revision, tree._shown = repo, revision, repo.path
        tree.mirror_path = None
        tree._setup(path)
        return tree

    def _setup(self, path: str | None) -> None:
        self._store = self._repo.object_store
        self._sizes = _ObjectSizes(self._store)
        self._trees: dict[str, dict[str, _Node]] = {}
        commit = self._store[ObjectID(self._revision.sha.encode())]
        assert isinstance(commit, Commit)
        self._commit_tree = os.fsdecode(commit.tree)
        self._path = (path or "").strip("/") or None
        self._prefix: tuple[str, ...] = ()
        if self._path is not None:
            self._prefix = self._check_subdirectory(self._path)

    def _check_subdirectory(self, path: str) -> tuple[str, ...]:
        try:
            prefix = split_path(path)
        except PathNotFound:
            prefix = ()
        node = self._lookup(prefix) if prefix else None
        if node is not None and node.mode == _MODE_TREE:
            return prefix
        children = self._children(self._commit_tree)
        top = [name for name, child in children.items() if child.mode == _MODE_TREE]
        what = "is not a directory" if node is not None else "does not exist"
        raise PathNotInTree(
            f"{self._shown}@{self._revision}: path {path!r} {what} in the commit",
            "Pass --path with a directory of the repository"
            + (f" (top-level directories: {', '.join(sorted(top)[:8])})." if top else "."),
        )

    # --- SourceTree ---------------------------------------------------------------------

    @property
    def root_label(self) -> str:
        ref = self._revision.ref or self._revision.sha[:12]
        return f"{self._shown}@{ref}" + (f":{self._path}" if self._path else "")

    @property
    def revision(self) -> GitRevision:
        return self._revision

    def revision_of(self, files: Sequence[str]) -> GitRevision:
        return self._revision  # the commit names every file it holds

    def walk(self) -> list[Entry]:
        entries: list[Entry] = []
        root = self._lookup(self._prefix) if self._prefix else _Node(_MODE_TREE, self._commit_tree)
        assert root is not None
        stack = [("", root.sha)]
        while stack:
            prefix, tree_sha = stack.pop()
            for name, node in self._children(tree_sha).items():
                if name.startswith("."):
                    continue
                rel = prefix + name
                entries.append(self._entry(rel, node))
                if node.mode == _MODE_TREE:
                    stack.append((rel + "/", node.sha))
        entries.sort(key=lambda entry: entry.path)
        return entries

    def entry(self, path: str) -> Entry | None:
        parts = split_path(path)
        if not parts:
            return Entry(ROOT, EntryKind.DIRECTORY)
        node = self._lookup(self._prefix + parts)
        return None if node is None else self._entry(path, node)

    def read(self, path: str, max_bytes: int) -> bytes:
        parts = split_path(path)
        node = self._lookup(self._prefix + parts) if parts else _Node(_MODE_TREE, "")
        if node is None:
            raise PathNotFound(path)
        kind = kind_of_mode(node.mode)
        if kind is not EntryKind.FILE:
            raise NotARegularFile(path, kind)
        size = self._sizes.size(node.sha)
        if size > max_bytes:
            raise FileTooLarge(path, size, max_bytes)
        return self._blob(node.sha)

    def resolve(self, path: str) -> Entry | LinkProblem:
        if path.startswith("/"):
            return LinkProblem(path, LinkProblemKind.ESCAPES, path)
        pending = [*self._prefix, *path.split("/")]
        current: list[str] = []
        followed = path  # the last link target followed, for messages
        links = 0
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if not current:  # above the repository's top
                    return LinkProblem(path, LinkProblemKind.ESCAPES, followed)
                current.pop()
                continue
            node = self._lookup((*current, name))
            if node is None:
                return LinkProblem(path, LinkProblemKind.DANGLING, followed)
            if node.mode == _MODE_SYMLINK:
                links += 1
                if links > MAX_SYMLINKS:
                    return LinkProblem(path, LinkProblemKind.LOOP, followed)
                followed = os.fsdecode(self._blob(node.sha))
                if followed.startswith("/"):  # outside any repository
                    return LinkProblem(path, LinkProblemKind.ESCAPES, followed)
                pending[:0] = followed.split("/")
                continue
            if node.mode != _MODE_TREE and any(part not in ("", ".") for part in pending):
                return LinkProblem(path, LinkProblemKind.DANGLING, followed)  # not a directory
            current.append(name)
        if tuple(current[: len(self._prefix)]) != self._prefix:
            outside = self._lookup(current)
            is_directory = outside is not None and outside.mode == _MODE_TREE
            return LinkProblem(path, LinkProblemKind.ESCAPES, followed, is_directory)
        found = self.entry("/".join(current[len(self._prefix) :]) or ROOT)
        assert found is not None
        return found

    def close(self) -> None:
        self._sizes.close()
        self._repo.close()

    # --- objects ------------------------------------------------------------------------

    def object_id(self, path: str) -> str | None:
        """The sha of the blob/tree/commit at `path` (not followed), None when missing."""
        node = self._lookup(self._prefix + split_path(path))
        return None if node is None else node.sha

    def read_link(self, path: str) -> bytes:
        """The target of the symlink at `path`, as stored."""
        node = self._lookup(self._prefix + split_path(path))
        if node is None or node.mode != _MODE_SYMLINK:
            raise PathNotFound(path, "no such symlink")
        return self._blob(node.sha)

    def _entry(self, path: str, node: _Node) -> Entry:
        kind = kind_of_mode(node.mode)
        if kind is EntryKind.FILE:
            return Entry(path, kind, self._sizes.size(node.sha), node.mode == 0o100755)
        if kind is EntryKind.SYMLINK:
            return Entry(path, kind, self._sizes.size(node.sha))
        return Entry(path, kind)

    def _children(self, tree_sha: str) -> dict[str, _Node]:
        children = self._trees.get(tree_sha)
        if children is None:
            tree = self._store[ObjectID(tree_sha.encode())]
            assert isinstance(tree, Tree)
            children = {
                os.fsdecode(item.path): _Node(item.mode, os.fsdecode(item.sha))
                for item in tree.iteritems()
            }
            self._trees[tree_sha] = children
        return children

    def _lookup(self, parts: Sequence[str]) -> _Node | None:
        """The node at `parts` from the commit's top, following no symlink."""
        node = _Node(_MODE_TREE, self._commit_tree)
        for part in parts:
            if node.mode != _MODE_TREE:
                return None
            child = self._children(node.sha).get(part)
            if child is None:
                return None
            node = child
        return node

    def _blob(self, sha: str) -> bytes:
        obj = self._store[ObjectID(sha.encode())]
        assert isinstance(obj, Blob)
        return obj.as_raw_string()


# --------------------------------------------------------------------------- work trees


def work_tree_state(directory: DirectoryTree) -> tuple[GitRevision | None, bool] | None:
    """(HEAD, dirty) of the git work tree `directory` lies in; None when it lies in none.
    HEAD is None (and dirty True) in a work tree without a commit. See
    DirectoryTree.revision_of for what dirty means."""
    try:
        repo = Repo.discover(directory.real_root)
    except NotGitRepository:
        return None
    with contextlib.closing(repo):
        if repo.bare:
            return None
        chain, sha = repo.refs.follow(Ref(b"HEAD"))
        if sha is None:
            return None, True
        label = _short(os.fsdecode(chain[-1])) if len(chain) > 1 else None
        head = GitRevision(os.fsdecode(sha), label)
        top = os.path.realpath(repo.path)
        relative = Path(os.path.relpath(directory.real_root, top)).as_posix()
        try:
            committed = GitTree.from_repo(repo, head, None if relative == "." else relative)
        except PathNotInTree:
            return head, True
        return head, _differs(directory, committed, repo, relative)


def _differs(directory: DirectoryTree, committed: GitTree, repo: Repo, relative: str) -> bool:
    on_disk = [e for e in directory.walk() if e.kind is not EntryKind.DIRECTORY or e.error]
    in_git = [e for e in committed.walk() if e.kind is not EntryKind.DIRECTORY]
    if [(e.path, e.kind, e.size) for e in on_disk] != [(e.path, e.kind, e.size) for e in in_git]:
        return True
    index = _StatIndex(repo, "" if relative == "." else relative + "/")
    for entry in on_disk:
        full = os.path.join(directory.real_root, entry.path)
        if entry.kind is EntryKind.SYMLINK:
            if os.fsencode(os.readlink(full)) != committed.read_link(entry.path):
                return True
        elif entry.kind is EntryKind.FILE:
            sha = committed.object_id(entry.path)
            if not index.unchanged(entry.path, full, sha) and _blob_sha(full) != sha:
                return True
    return False


class _StatIndex:
    """git's shortcut: a file whose stat matches its index entry, written before the
    index was, has the index entry's blob (racily-clean files are hashed instead)."""

    def __init__(self, repo: Repo, prefix: str) -> None:
        self._prefix = prefix
        try:
            self._index: Any = repo.open_index()
            self._written_ns = os.stat(self._index.path).st_mtime_ns
        except (OSError, NotGitRepository):
            self._index = None
            self._written_ns = 0

    def unchanged(self, path: str, full: str, sha: str | None) -> bool:
        if self._index is None or sha is None:
            return False
        try:
            recorded = self._index[os.fsencode(self._prefix + path)]
            info = os.lstat(full)
        except (KeyError, OSError):
            return False
        if os.fsdecode(recorded.sha) != sha or recorded.size != info.st_size:
            return False
        return _mtime_ns(recorded.mtime) == info.st_mtime_ns < self._written_ns


def _mtime_ns(value: int | float | tuple[int, int]) -> int:
    if isinstance(value, tuple):
        return value[0] * 1_000_000_000 + value[1]
    return int(value * 1_000_000_000)


def _blob_sha(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _http_status(detail: str, *codes: str) -> bool:
    """Whether dulwich's error text reports one of these HTTP statuses — as a number of its
    own, not inside the port of the address it also names (port 38401 is not a 401)."""
    text = _PORT_MENTION.sub(" ", detail)
    return any(re.search(rf"(?<!\d){code}(?!\d)", text) for code in codes)
