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
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from plexica_gitops.findings import Finding
from plexica_gitops.source import loader
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
    def revision(self, files: Sequence[str]) -> Revision:
        """The revision of the desired state made of `files`."""


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

    def revision(self, files: Sequence[str]) -> DirectoryRevision:
        content = _content_hash(self.root, files)
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


def _content_hash(root: Path, files: Sequence[str]) -> str:
    """``sha256:`` over each file's path and bytes, as recorded since the first release."""
    digest = hashlib.sha256()
    limit = LoadLimits().max_file_bytes
    for relative in files:
        digest.update(relative.encode() + b"\0")
        raw = loader.read_regular_file(str(root / relative), relative, limit)  # never a FIFO
        digest.update(b"<unreadable>" if isinstance(raw, Finding) else raw)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


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

    def revision(self, files: Sequence[str]) -> Revision:
        return self.tree.revision_of(files)
