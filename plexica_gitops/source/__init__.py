"""Where the desired state is read from: a directory or a git revision (see tree.py)."""

from plexica_gitops.source.tree import (
    DirectoryRevision,
    DirectoryTree,
    Entry,
    EntryKind,
    FileTooLarge,
    GitRevision,
    LinkProblem,
    LinkProblemKind,
    NotARegularFile,
    PathNotFound,
    Revision,
    RootNotFound,
    SourceError,
    SourceTree,
    UnreadablePath,
    content_hash,
)

__all__ = [
    "DirectoryRevision",
    "DirectoryTree",
    "Entry",
    "EntryKind",
    "FileTooLarge",
    "GitRevision",
    "LinkProblem",
    "LinkProblemKind",
    "NotARegularFile",
    "PathNotFound",
    "Revision",
    "RootNotFound",
    "SourceError",
    "SourceTree",
    "UnreadablePath",
    "content_hash",
]
