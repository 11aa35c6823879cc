"""Where the desired state is read from: a directory or a git revision (see tree.py).

The git implementation lives in plexica_gitops.source.git (it imports dulwich)."""

from plexica_gitops.source.tree import (
    DirectoryRevision,
    DirectoryTree,
    Entry,
    EntryKind,
    FileTooLarge,
    FollowedWalk,
    GitRevision,
    LinkProblem,
    LinkProblemKind,
    NotARegularFile,
    PathNotFound,
    Reached,
    Revision,
    RootNotFound,
    SourceError,
    SourceTree,
    UnreadablePath,
    content_hash,
    walk_followed,
)

__all__ = [
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
    "walk_followed",
]
