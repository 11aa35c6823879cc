"""Which desired state a command reads: a directory, or a git revision (``--repo URL
--ref REV [--path SUBDIR]``). The CLI's `validate`, `plan` and `apply` declare the options
and call :func:`choose_source`; everything else about the choice is here.

* No ``--repo``: the directory argument (default ``desired-state``), read as always.
* ``--repo`` with ``--ref``: the commit's tree (:class:`GitTree`), read without a
  checkout; ``--path`` selects the desired-state directory inside the repository.
* A directory argument with ``--repo``, ``--repo`` without ``--ref``, or ``--ref`` /
  ``--path`` without ``--repo`` is a :class:`SourceUsageError` (exit 2). A repository,
  ref or path that cannot be read is another :class:`SourceError` (exit 1), one line
  with a hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from plexica_gitops.errors import UsageError
from plexica_gitops.source.cache import Cache
from plexica_gitops.source.tree import SourceError, SourceTree

__all__ = ["SourceChoice", "SourceUsageError", "choose_source", "short_revision"]

DEFAULT_DIRECTORY = Path("desired-state")


class SourceUsageError(SourceError, UsageError):
    """The options name no source, or two (a usage error: exit 2)."""


@dataclass(frozen=True)
class SourceChoice:
    source: Path | SourceTree  # what validate_directory / build_desired_state read
    label: str  # how messages name it: the directory, or "<repo>@<ref>[:<path>]"
    # What names a finding's file from where the user stands: the directory (relative
    # to the working directory) or the --path inside the repository; "" or "dir/".
    prefix: str
    arguments: str  # how to name it again on a command line ("dir", "--repo R --ref X")
    cache: Cache | None = None  # what reading it may reuse (source/cache.py)

    def close(self) -> None:
        if isinstance(self.source, SourceTree):
            self.source.close()


def choose_source(
    directory: Path | None,
    repo: str | None,
    ref: str | None,
    path: str | None,
    *,
    env: Mapping[str, str] | None = None,
    cache: Cache | None = None,
) -> SourceChoice:
    """The source the options name (see the module docstring)."""
    if repo is None:
        if ref is not None or path is not None:
            option = "--ref" if ref is not None else "--path"
            raise SourceUsageError(
                f"{option} needs --repo",
                "Name the repository with --repo PATH_OR_URL, or drop "
                f"{option} to read a directory.",
            )
        chosen = directory if directory is not None else DEFAULT_DIRECTORY
        prefix = "" if chosen == Path(".") else chosen.as_posix().rstrip("/") + "/"
        return SourceChoice(chosen, chosen.as_posix(), prefix, chosen.as_posix(), cache)
    if directory is not None:
        raise SourceUsageError(
            f"both a directory ({directory.as_posix()}) and --repo name the desired state",
            "Pass either the directory or --repo/--ref/--path, not both.",
        )
    if not ref:
        raise SourceUsageError(
            "--repo needs --ref",
            "Name the revision to read: a branch, a tag or a commit sha (--ref main).",
        )
    from plexica_gitops.source.git import GitTree, scrub_url  # dulwich only for git

    tree = GitTree(repo, ref, path, env=env)
    inside = (path or "").strip("/")
    arguments = f"--repo {scrub_url(repo)} --ref {ref}" + (f" --path {inside}" if inside else "")
    return SourceChoice(tree, tree.root_label, inside + "/" if inside else "", arguments, cache)


def short_revision(revision: str) -> str:
    """A revision for a column: 12 hex digits of a content hash, ``<ref>@<12 hex>`` of a
    commit (the ref is what tells commits apart for people)."""
    ref, at, sha = revision.rpartition("@sha1:")
    if at:
        return f"{ref}@{sha[:12]}" if ref else sha[:12]
    return revision.removeprefix("sha1:").removeprefix("sha256:")[:12]
