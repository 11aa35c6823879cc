"""The files building the desired state reads, by path relative to its root: the YAML
walk, a file another file names (``manifestFile:``), a directory of migrations.

:func:`desired_files` picks the reading for a source:

* a directory (a ``Path`` or a :class:`DirectoryTree`) is read from the file system
  exactly as before the git source existed (``loader.iter_directory`` and friends: same
  walk, same findings, the same ``sha256:`` revision), plus whether it lies in a git work
  tree and differs from its HEAD (:class:`DirectoryRevision`);
* any other :class:`SourceTree` (a git commit, :class:`plexica_gitops.source.git.GitTree`)
  is read through the tree (``loader.iter_tree``): no checkout, the same rules, findings
  naming the same relative paths, and the commit as the revision.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from plexica_gitops.findings import Finding
from plexica_gitops.source import loader
from plexica_gitops.source.cache import Cache
from plexica_gitops.source.loader import LoadedFile, LoadLimits, Reuse, SourceDocument
from plexica_gitops.source.tree import (
    DirectoryRevision,
    DirectoryTree,
    EntryKind,
    LinkProblem,
    LinkProblemKind,
    Revision,
    SourceTree,
)

__all__ = ["DesiredFiles", "Located", "desired_files"]


@dataclass(frozen=True, slots=True)
class Located:
    path: str  # relative POSIX path inside the root, every symlink on the way followed
    kind: EntryKind | None  # None: nothing there (missing, or a broken link)


class DesiredFiles(ABC):
    """Read-only access to the desired state's files by relative POSIX path."""

    root: Path  # DesiredState.root: the directory, or the tree's label

    @abstractmethod
    def documents(self, reuse: Reuse | None = None) -> Iterator[LoadedFile]:
        """Every YAML file's documents, one file at a time (see loader.iter_directory);
        `reuse` may hand back what a cache holds for a file instead of parsing it."""

    @abstractmethod
    def locate(self, relative: str) -> Located | None:
        """Where `relative` leads once symlinks are followed; None when it leaves the root."""

    @abstractmethod
    def names(self, directory: Located) -> list[str]:
        """The names in a located directory, sorted."""

    @abstractmethod
    def load(self, located: Located) -> tuple[list[SourceDocument], list[Finding]]:
        """The documents of one located file (``*.json`` as JSON), or why not."""

    @abstractmethod
    def read(self, relative: str, max_bytes: int) -> bytes | Finding:
        """The bytes of a regular file (symlinks followed), or the finding saying why not."""

    @abstractmethod
    def revision(
        self,
        files: Sequence[str],
        cache: Cache | None = None,
        digests: Mapping[str, bytes] | None = None,
    ) -> Revision:
        """The revision of the desired state made of `files`. With a `cache`, a directory's
        is found there when `digests` (LoadedFile.digest by file) name what it was made of."""


def desired_files(source: Path | SourceTree) -> DesiredFiles:
    if isinstance(source, Path):
        return _DirectoryFiles(source)
    if isinstance(source, DirectoryTree):
        return _DirectoryFiles(source.path)
    return _TreeFiles(source)


class _DirectoryFiles(DesiredFiles):
    """A directory, read as the loader always read it (byte-identical findings)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def documents(self, reuse: Reuse | None = None) -> Iterator[LoadedFile]:
        return loader.iter_directory(self.root, reuse=reuse)

    def locate(self, relative: str) -> Located | None:
        real_root = self.root.resolve()
        resolved = (self.root / relative).resolve()
        if not resolved.is_relative_to(real_root):
            return None
        path = resolved.relative_to(real_root).as_posix()
        if resolved.is_dir():
            return Located(path, EntryKind.DIRECTORY)
        return Located(path, EntryKind.FILE if resolved.exists() else None)

    def names(self, directory: Located) -> list[str]:
        return sorted(path.name for path in (self.root.resolve() / directory.path).iterdir())

    def load(self, located: Located) -> tuple[list[SourceDocument], list[Finding]]:
        return loader.load_file(self.root.resolve() / located.path, self.root)

    def read(self, relative: str, max_bytes: int) -> bytes | Finding:
        real = self.root.resolve() / relative
        return loader.read_regular_file(str(real), relative, max_bytes)  # never a FIFO

    def revision(
        self,
        files: Sequence[str],
        cache: Cache | None = None,
        digests: Mapping[str, bytes] | None = None,
    ) -> DirectoryRevision:
        content = _content_hash(str(self.root), files, cache, digests or {})
        if not self.root.is_dir():
            return DirectoryRevision(content)
        from plexica_gitops.source.git import work_tree_state  # dulwich only when needed

        try:
            with closing(DirectoryTree(self.root)) as tree:
                state = work_tree_state(tree)
        except Exception:  # a broken enclosing repository must not stop a plan
            return DirectoryRevision(content)
        if state is None:
            return DirectoryRevision(content)
        return DirectoryRevision(content, state[0], state[1])


def _content_hash(
    root: str, files: Sequence[str], cache: Cache | None, known: Mapping[str, bytes]
) -> str:
    """``sha256:`` over each file's path and bytes, as recorded since the first release.

    Reading every file again costs a warm run more than all else it does, so with a cache
    the value is kept under the list of each file's path and the sha256 of what it hashes:
    equal lists hash equal streams, so a hit is the value this would compute. The digests
    are the loader's (`known`: of the bytes it parsed), read here for the files it lacks."""
    if cache is not None:
        digests = [known.get(relative) or _file_digest(root, relative) for relative in files]
        found = cache.get(_REVISION, _revision_key(cache, files, digests))
        if isinstance(found, str) and _CONTENT_HASH.fullmatch(found):
            return found
    digest = hashlib.sha256()
    read: list[bytes] = []
    for relative in files:
        content = _content(root, relative)
        digest.update(relative.encode() + b"\0")
        digest.update(content)
        digest.update(b"\0")
        if cache is not None:
            read.append(hashlib.sha256(content).digest())
    value = "sha256:" + digest.hexdigest()
    if cache is not None:
        # under what was hashed now: a file changed since the loader read it is not
        # stored under the loader's digest of it
        cache.put(_REVISION, _revision_key(cache, files, read), value)
    return value


_REVISION = "revision"
_CONTENT_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_UNREADABLE = b"<unreadable>"


def _content(root: str, relative: str) -> bytes:
    """What the revision hashes of a file: its bytes, or ``<unreadable>``."""
    limit = LoadLimits().max_file_bytes
    path = os.path.join(root, relative)
    raw = loader.read_regular_file(path, relative, limit)  # never a FIFO
    return _UNREADABLE if isinstance(raw, Finding) else raw


def _file_digest(root: str, relative: str) -> bytes:
    return hashlib.sha256(_content(root, relative)).digest()


def _revision_key(cache: Cache, files: Sequence[str], digests: Sequence[bytes]) -> str:
    parts = (f.encode() + b"\0" + d for f, d in zip(files, digests, strict=True))
    return cache.key(_REVISION, *parts)


class _TreeFiles(DesiredFiles):
    """Any source tree (a git commit), read through the tree."""

    def __init__(self, tree: SourceTree) -> None:
        self.tree = tree
        self.root = Path(tree.root_label)
        self._children: dict[str, list[str]] | None = None

    def documents(self, reuse: Reuse | None = None) -> Iterator[LoadedFile]:
        return loader.iter_tree(self.tree, reuse=reuse)

    def locate(self, relative: str) -> Located | None:
        found = self.tree.resolve(relative)
        if isinstance(found, LinkProblem):
            return None if found.kind is LinkProblemKind.ESCAPES else Located(relative, None)
        return Located(found.path, found.kind)

    def names(self, directory: Located) -> list[str]:
        if self._children is None:
            self._children = {}
            for entry in self.tree.walk():
                parent, _, name = entry.path.rpartition("/")
                self._children.setdefault(parent or ".", []).append(name)
        return sorted(self._children.get(directory.path, []))

    def load(self, located: Located) -> tuple[list[SourceDocument], list[Finding]]:
        entry = self.tree.entry(located.path)
        if entry is None:
            return [], [loader.broken_link(located.path, None)]
        return loader.load_tree_file(self.tree, entry, located.path)

    def read(self, relative: str, max_bytes: int) -> bytes | Finding:
        found = self.tree.resolve(relative)
        if isinstance(found, LinkProblem):
            return loader.broken_link(relative, found)
        return loader.read_tree_file(
            self.tree, found, relative, LoadLimits(max_file_bytes=max_bytes)
        )

    def revision(
        self,
        files: Sequence[str],
        cache: Cache | None = None,
        digests: Mapping[str, bytes] | None = None,
    ) -> Revision:
        return self.tree.revision_of(files)  # a commit's id: nothing to read
