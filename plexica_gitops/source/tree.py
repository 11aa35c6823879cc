"""The desired state as a read-only tree of entries: a directory, or a git revision.

The loader reads the desired state through :class:`SourceTree`, so one loading code reads
a plain directory (:class:`DirectoryTree`) and the git objects of a commit
(:class:`plexica_gitops.source.git.GitTree`) alike.

Paths are relative POSIX paths (``tenants/acme.yaml``); ``"."`` names the root itself.

* :meth:`SourceTree.walk` lists every entry under the root, sorted by path (plain string
  order, the order the loader reports files in). Names starting with ``.`` are left out,
  files and directories (never descended), as the loader skips them; ``.git`` with them.
  Symlinks are listed as SYMLINK entries, not followed: :meth:`SourceTree.resolve` says
  where one leads.
* :meth:`SourceTree.read` returns a regular file's bytes. It follows no symlink on the way
  (resolve first), never opens a FIFO or a device, and refuses files over ``max_bytes``
  before reading them whole.
* :meth:`SourceTree.resolve` follows symlinks with POSIX semantics: a relative target is
  resolved from the link's directory, ``..`` after a symlinked directory climbs from where
  the link led, and the result must end inside the root (going out and back in is fine,
  as for ``realpath``). The answer is the entry reached, or a :class:`LinkProblem`:
  ESCAPES (ends outside the root; for git also any absolute target), DANGLING (a
  component is missing or not a directory), LOOP (more than 40 links, as Linux).

:func:`walk_followed` is the loader's directory walk over any tree (links followed while
they stay inside the root, each directory once, first name wins), so the loader keeps
its behaviour when it reads through a tree.

Revisions: a git tree is identified by its commit (:class:`GitRevision`, rendered
``<ref>@sha1:<40 hex>`` as Flux does, ``sha1:<40 hex>`` for a detached sha). A directory
is identified by a content hash over the files that make up the desired state
(:class:`DirectoryRevision`, ``sha256:<hex>``, the value ``desired.py`` records today),
plus, when the directory lies inside a git work tree, that work tree's HEAD and whether
the directory differs from it (see :meth:`DirectoryTree.revision_of`).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from plexica_gitops.errors import SourceError as SourceError

__all__ = [
    "MAX_SYMLINKS",
    "DirectoryRevision",
    "DirectoryTree",
    "Entry",
    "EntryKind",
    "FileTooLarge",
    "FollowedWalk",
    "GitRevision",
    "LinkProblem",
    "LinkProblemKind",
    "NotARegularFile",
    "PathNotFound",
    "Reached",
    "Revision",
    "RootNotFound",
    "SourceError",
    "SourceTree",
    "UnreadablePath",
    "content_hash",
    "kind_of_mode",
    "split_path",
    "walk_followed",
]

MAX_SYMLINKS = 40  # Linux's MAXSYMLINKS: more links than this in one resolution is a loop
ROOT = "."


# --------------------------------------------------------------------------- entries


class EntryKind(enum.Enum):
    FILE = "file"
    SYMLINK = "symlink"
    DIRECTORY = "directory"
    SUBMODULE = "submodule"  # a git submodule (gitlink) or, on disk, a nested repository
    OTHER = "other"  # FIFO, socket, device: never opened


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative POSIX path; "." for the root
    kind: EntryKind
    size: int = 0  # a file's bytes; a symlink's target length; 0 for the other kinds
    executable: bool = False  # a FILE with the executable bit (git mode 100755)
    error: str | None = None  # a DIRECTORY that could not be listed: why (content unknown)


class LinkProblemKind(enum.Enum):
    ESCAPES = "escapes the root"
    DANGLING = "dangling"
    LOOP = "loop"


@dataclass(frozen=True, slots=True)
class LinkProblem:
    path: str  # the path that was resolved
    kind: LinkProblemKind
    target: str  # where it led, for messages (a real path on disk, a link target in git)
    # ESCAPES: whether what lies outside is a directory; None when it cannot be known
    # (git: an absolute target, or one above the repository's top)
    target_is_directory: bool | None = None


# --------------------------------------------------------------------------- errors


class RootNotFound(SourceError):
    pass


class PathNotFound(SourceError):
    def __init__(self, path: str, detail: str = "no such file") -> None:
        super().__init__(
            f"{path}: {detail}",
            "Check the path; paths are relative to the desired-state root, and symlinks on "
            "the way must be resolved first.",
        )
        self.path = path


class NotARegularFile(SourceError):
    def __init__(self, path: str, kind: EntryKind) -> None:
        super().__init__(
            f"{path}: not a regular file (a {kind.value})",
            "Replace it with a regular file, or remove it.",
        )
        self.path = path
        self.kind = kind


class FileTooLarge(SourceError):
    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(
            f"{path}: file is {size:,} bytes, over the limit of {limit:,} bytes; it was not read",
            "Split the file into smaller files; desired-state files are small.",
        )
        self.path = path
        self.size = size
        self.limit = limit


class UnreadablePath(SourceError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"{path}: cannot read ({reason})",
            "Make it readable, or remove it from the desired state.",
        )
        self.path = path
        self.reason = reason


# --------------------------------------------------------------------------- revisions


class Revision(ABC):
    """What identifies the desired state that was read. ``str()`` is the value recorded
    in plans and history; :meth:`describe` adds context for people."""

    @abstractmethod
    def __str__(self) -> str: ...

    def describe(self) -> str:
        return str(self)


@dataclass(frozen=True)
class GitRevision(Revision):
    sha: str  # 40 hex, the commit
    ref: str | None = None  # the ref it was resolved from ("main", "v1.2"); None: a sha

    def __str__(self) -> str:
        return f"{self.ref}@sha1:{self.sha}" if self.ref else f"sha1:{self.sha}"


@dataclass(frozen=True)
class DirectoryRevision(Revision):
    content: str  # "sha256:<hex>" over the files (see content_hash)
    # The enclosing git work tree's HEAD, when the directory lies inside one that has a
    # commit; None otherwise.
    work_tree: GitRevision | None = None
    # Inside a work tree: whether the directory differs from HEAD (None: not inside one).
    dirty: bool | None = None

    def __str__(self) -> str:
        return self.content

    def describe(self) -> str:
        if self.dirty is None:
            return self.content
        head = str(self.work_tree) if self.work_tree else "no commit yet"
        state = "dirty" if self.dirty else "clean"
        return f"{self.content} (inside git work tree: {head}, {state})"


# --------------------------------------------------------------------------- the protocol


class SourceTree(ABC):
    """A read-only tree of desired-state files (see the module docstring)."""

    @property
    @abstractmethod
    def root_label(self) -> str:
        """Where the tree comes from, for messages (never holds credentials)."""

    @abstractmethod
    def walk(self) -> list[Entry]:
        """Every entry under the root, sorted by path; hidden names left out."""

    @abstractmethod
    def entry(self, path: str) -> Entry | None:
        """The entry at `path` itself (a symlink is not followed), None when missing."""

    @abstractmethod
    def read(self, path: str, max_bytes: int) -> bytes:
        """The bytes of the regular file at `path`. Raises PathNotFound, NotARegularFile,
        FileTooLarge (before reading more than `max_bytes`), UnreadablePath."""

    @abstractmethod
    def resolve(self, path: str) -> Entry | LinkProblem:
        """The entry `path` leads to after following every symlink on the way."""

    @abstractmethod
    def revision_of(self, files: Sequence[str]) -> Revision:
        """The revision of the desired state made of `files` (paths of regular files)."""

    @property
    def revision(self) -> Revision:
        """The revision over every regular file the walk lists."""
        return self.revision_of([e.path for e in self.walk() if e.kind is EntryKind.FILE])

    def close(self) -> None:  # noqa: B027 - a hook: most trees hold nothing open
        """Release open files; the tree is not used afterwards."""

    def __enter__(self) -> SourceTree:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def split_path(path: str) -> tuple[str, ...]:
    """The components of a normalized relative path (``"."`` -> ``()``), or PathNotFound
    for anything else (absolute, empty components, ``.``/``..``)."""
    if path == ROOT:
        return ()
    parts = tuple(path.split("/"))
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise PathNotFound(path, "not a normalized path inside the tree")
    return parts


def content_hash(tree: SourceTree, files: Iterable[str]) -> str:
    """``sha256:<hex>`` over `files` (sorted): each path, NUL, its bytes, NUL; a file that
    cannot be read counts as ``<unreadable>``. The same value desired.py records today."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.encode() + b"\0")
        try:
            digest.update(_read_any_size(tree, relative))
        except SourceError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _read_any_size(tree: SourceTree, path: str) -> bytes:
    found = tree.entry(path)
    if found is not None and found.kind is EntryKind.FILE:
        return tree.read(path, max_bytes=found.size)
    resolved = tree.resolve(path)  # a symlinked file counts with its target's bytes
    if isinstance(resolved, LinkProblem):
        raise PathNotFound(path, f"symlink {resolved.kind.value}")
    return tree.read(resolved.path, max_bytes=resolved.size)


# --------------------------------------------------------------------------- followed walk


@dataclass(frozen=True, slots=True)
class Reached:
    path: str  # the name the file is known by: the path walked, through followed links
    target: Entry | LinkProblem  # what is there, or a DANGLING / LOOP link (unreadable)


@dataclass
class FollowedWalk:
    files: list[Reached] = field(default_factory=list)  # sorted by path
    escapes: list[LinkProblem] = field(default_factory=list)  # path: the link as walked
    unlistable: list[Entry] = field(default_factory=list)  # directories with an error
    # Submodules (nested repositories on disk) are not walked: their content is no part
    # of the commit. The loader should refuse them like escaping links (a part of the
    # desired state it cannot read must not turn into deletions).
    submodules: list[Entry] = field(default_factory=list)


def walk_followed(tree: SourceTree, include: Callable[[str], bool]) -> FollowedWalk:
    """The loader's walk over any tree: depth first in name order, symlinks followed
    while they stay inside the root, each directory walked once (the first name that
    reaches it wins, which also ends link loops and fan-out). Only entries whose name
    `include` accepts are reported, plus every escaping link to a directory (or to
    anything git cannot see), as the loader reports them."""
    children: dict[str, list[Entry]] = {}
    for entry in tree.walk():
        parent = entry.path.rpartition("/")[0] or ROOT
        children.setdefault(parent, []).append(entry)
    result = FollowedWalk()
    visited: set[str] = set()
    stack = [("", ROOT)]  # (name prefix, directory it stands for)
    while stack:
        prefix, directory = stack.pop()
        if directory in visited:
            continue
        visited.add(directory)
        subdirs: list[tuple[str, str]] = []
        for entry in sorted(children.get(directory, []), key=lambda e: e.path):
            name = prefix + entry.path.rpartition("/")[2]
            target = tree.resolve(entry.path) if entry.kind is EntryKind.SYMLINK else entry
            _place(result, subdirs, name, target, include)
        stack.extend(reversed(subdirs))
    result.files.sort(key=lambda reached: reached.path)
    return result


def _place(
    result: FollowedWalk,
    subdirs: list[tuple[str, str]],
    name: str,
    target: Entry | LinkProblem,
    include: Callable[[str], bool],
) -> None:
    if isinstance(target, LinkProblem):
        if target.kind is not LinkProblemKind.ESCAPES:
            if include(name):
                result.files.append(Reached(name, target))
        elif include(name) or target.target_is_directory is not False:
            result.escapes.append(LinkProblem(name, target.kind, target.target))
        return
    if target.kind is EntryKind.SUBMODULE:
        result.submodules.append(Entry(name, target.kind))
    elif target.kind is EntryKind.DIRECTORY:
        if target.error is not None:
            result.unlistable.append(Entry(name, target.kind, error=target.error))
        else:
            subdirs.append((name + "/", target.path))
    elif include(name):
        result.files.append(Reached(name, target))


# --------------------------------------------------------------------------- directories

_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check must not block
    | getattr(os, "O_BINARY", 0)
)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


GITLINK = 0o160000  # a submodule's mode in a git tree (no file-system type has it)


def kind_of_mode(mode: int) -> EntryKind:
    """The kind of an lstat mode, or of a git tree entry's mode."""
    if stat.S_IFMT(mode) == GITLINK:
        return EntryKind.SUBMODULE
    if stat.S_ISREG(mode):
        return EntryKind.FILE
    if stat.S_ISLNK(mode):
        return EntryKind.SYMLINK
    if stat.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    return EntryKind.OTHER


def _entry_from_stat(path: str, info: os.stat_result) -> Entry:
    kind = kind_of_mode(info.st_mode)
    if kind is EntryKind.FILE:
        return Entry(path, kind, info.st_size, bool(info.st_mode & stat.S_IXUSR))
    if kind is EntryKind.SYMLINK:
        return Entry(path, kind, info.st_size)
    return Entry(path, kind)


def _is_within(real: str, real_root: str) -> bool:
    try:
        return os.path.commonpath([real, real_root]) == real_root
    except ValueError:  # different drives (Windows)
        return False


class DirectoryTree(SourceTree):
    """The desired state in a directory on the file system (never written to). Holds one
    directory open between calls (close() releases it); not for use by several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            what = "is a file, not a directory" if self.path.exists() else "does not exist"
            raise RootNotFound(
                f"desired-state directory {self.path} {what}",
                "Pass the directory that holds the desired-state YAML files.",
            )
        self._real_root = os.path.realpath(self.path)
        self._parent: tuple[tuple[str, ...], int] | None = None  # see _parent_fd

    @property
    def root_label(self) -> str:
        return str(self.path)

    @property
    def real_root(self) -> str:
        return self._real_root

    # --- walk ---------------------------------------------------------------------------

    def walk(self) -> list[Entry]:
        entries: list[Entry] = []
        try:
            names = self._list(self._real_root)
        except OSError as exc:
            raise UnreadablePath(ROOT, exc.strerror or str(exc)) from exc
        stack = [("", self._real_root, names)]
        while stack:
            prefix, directory, listing = stack.pop()
            for name, info in listing:
                rel = prefix + name
                if not stat.S_ISDIR(info.st_mode):
                    entries.append(_entry_from_stat(rel, info))
                    continue
                full = os.path.join(directory, name)
                try:
                    children = self._list(full)
                except OSError as exc:
                    entries.append(Entry(rel, EntryKind.DIRECTORY, error=exc.strerror))
                    continue
                if self._is_nested_repository(full):
                    entries.append(Entry(rel, EntryKind.SUBMODULE))
                    continue
                entries.append(Entry(rel, EntryKind.DIRECTORY))
                stack.append((rel + "/", full, children))
        entries.sort(key=lambda entry: entry.path)
        return entries

    @staticmethod
    def _list(directory: str) -> list[tuple[str, os.stat_result]]:
        with os.scandir(directory) as iterator:
            return [
                (item.name, item.stat(follow_symlinks=False))
                for item in iterator
                if not item.name.startswith(".")
            ]

    @staticmethod
    def _is_nested_repository(directory: str) -> bool:
        # git records a directory holding its own .git as a gitlink, not as files
        return os.path.lexists(os.path.join(directory, ".git"))

    # --- single entries -----------------------------------------------------------------

    def entry(self, path: str) -> Entry | None:
        parts = split_path(path)
        if not parts:
            return Entry(ROOT, EntryKind.DIRECTORY)
        try:
            directory_fd = self._parent_fd(path, parts)  # no symlink on the way, as in git
            info = os.stat(parts[-1], dir_fd=directory_fd, follow_symlinks=False)
        except (SourceError, OSError):
            return None
        found = _entry_from_stat(path, info)
        full = os.path.join(self._real_root, *parts)
        if found.kind is EntryKind.DIRECTORY and self._is_nested_repository(full):
            return Entry(path, EntryKind.SUBMODULE)
        return found

    def read(self, path: str, max_bytes: int) -> bytes:
        parts = split_path(path)
        if not parts:
            raise NotARegularFile(path, EntryKind.DIRECTORY)
        return self._read_in(self._parent_fd(path, parts), path, parts[-1], max_bytes)

    def _parent_fd(self, path: str, parts: tuple[str, ...]) -> int:
        """The directory of `path`, kept open for the next call: files are read in path
        order, so most share the previous one's directory (a third of the system calls)."""
        key = parts[:-1]
        if self._parent is not None and self._parent[0] == key:
            return self._parent[1]
        fd = self._open_parent(path, parts)
        self.close()
        self._parent = (key, fd)
        return fd

    def close(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def __del__(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self.close()

    def _open_parent(self, path: str, parts: tuple[str, ...]) -> int:
        """A descriptor of the file's directory, reached without following symlinks."""
        try:
            fd = os.open(self._real_root, _DIR_FLAGS)
        except OSError as exc:
            raise UnreadablePath(ROOT, exc.strerror or str(exc)) from exc
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError) as exc:
                os.close(fd)
                raise PathNotFound(path) from exc
            except OSError as exc:
                is_link = stat.S_ISLNK(_lstat_in(fd, part))
                os.close(fd)
                if is_link:
                    raise PathNotFound(path, "a directory on the way is a symlink") from exc
                raise UnreadablePath(path, exc.strerror or str(exc)) from exc
            os.close(fd)
            fd = next_fd
        return fd

    @staticmethod
    def _read_in(directory_fd: int, path: str, name: str, max_bytes: int) -> bytes:
        try:
            info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise PathNotFound(path) from exc
        except OSError as exc:
            raise UnreadablePath(path, exc.strerror or str(exc)) from exc
        if not stat.S_ISREG(info.st_mode):  # checked before opening: a FIFO would block
            kind = kind_of_mode(info.st_mode)
            if kind is EntryKind.DIRECTORY and _lstat_in(directory_fd, name + "/.git"):
                kind = EntryKind.SUBMODULE
            raise NotARegularFile(path, kind)
        if info.st_size > max_bytes:
            raise FileTooLarge(path, info.st_size, max_bytes)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=directory_fd)
        except OSError as exc:
            raise UnreadablePath(path, exc.strerror or str(exc)) from exc
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if not stat.S_ISREG(opened.st_mode):  # replaced between the check and the open
                raise NotARegularFile(path, kind_of_mode(opened.st_mode))
            try:
                raw = handle.read(max_bytes + 1)
            except OSError as exc:
                raise UnreadablePath(path, exc.strerror or str(exc)) from exc
        if len(raw) > max_bytes:  # grew after the check
            raise FileTooLarge(path, max(opened.st_size, len(raw)), max_bytes)
        return raw

    def resolve(self, path: str) -> Entry | LinkProblem:
        if path.startswith("/"):
            return LinkProblem(path, LinkProblemKind.ESCAPES, path)
        joined = os.path.join(self._real_root, path)
        lexical = os.path.realpath(joined)  # outside is outside, even when missing there
        if not _is_within(lexical, self._real_root):
            return LinkProblem(path, LinkProblemKind.ESCAPES, lexical, os.path.isdir(lexical))
        try:
            real = os.path.realpath(joined, strict=True)
        except OSError as exc:
            kind = LinkProblemKind.LOOP if exc.errno == errno.ELOOP else LinkProblemKind.DANGLING
            return LinkProblem(path, kind, _readlink_or(joined))
        if not _is_within(real, self._real_root):  # changed in between
            return LinkProblem(path, LinkProblemKind.ESCAPES, real)
        found = self.entry(Path(os.path.relpath(real, self._real_root)).as_posix())
        if found is None:  # removed in between
            return LinkProblem(path, LinkProblemKind.DANGLING, real)
        return found

    # --- revision -----------------------------------------------------------------------

    def revision_of(self, files: Sequence[str]) -> DirectoryRevision:
        """The content hash of `files`, and the enclosing work tree's HEAD and dirtiness.

        Dirty means the loader would read something other than HEAD's tree at this
        directory: a file modified (staged or not), deleted, or added. Untracked files
        count, ignored ones too (the loader reads them); names starting with ``.`` do not
        (the loader skips them). Bytes are compared as stored: a checkout whose filters
        change line endings reads as dirty."""
        content = content_hash(self, files)
        from plexica_gitops.source.git import work_tree_state  # git.py imports this module

        state = work_tree_state(self)
        if state is None:
            return DirectoryRevision(content)
        head, dirty = state
        return DirectoryRevision(content, head, dirty)


def _lstat_in(fd: int, name: str) -> int:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
    except OSError:
        return 0


def _readlink_or(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return path
