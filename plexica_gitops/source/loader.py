"""Load desired-state YAML safely, keeping the source position of every value.

The loader is the first stage of ``validate`` and reads untrusted pull-request content,
so it never constructs Python objects from tags, bounds every resource it spends, and
reports problems as :class:`~plexica_gitops.findings.Finding` values instead of raising.

How a file is read
------------------
* Bytes are decoded as UTF-8 (a leading BOM is allowed) and parsed into events by
  libyaml's C parser (``yaml.CSafeLoader``; PyYAML's pure-Python ``SafeLoader`` parser
  when PyYAML was built without libyaml). The node tree is composed from the events
  here, without recursion, and plain values are built from the nodes, so that the
  position of every mapping entry (the line/column of its KEY) and of every sequence
  item (the item's own start) is recorded under its JSON path. Lines and columns are
  1-based and count characters, not bytes. A file of plain data (no anchor, alias,
  merge key, tag or problem: most files) is read in one pass over the events instead,
  to the same data and positions (`_regular_stream`); anything else in it, and every
  finding, comes from the composer.
* Scalars resolve as in YAML 1.1 (safe schema): null, bool, int, float, str.
  Timestamps and ``!!binary`` keep their source text as ``str`` - the data stays
  JSON-shaped. Mapping keys are always the key's source text (``on:`` -> ``"on"``,
  ``1:`` -> ``"1"``), so two keys are duplicates exactly when their text is equal.
* Merge keys (``<<: *base`` or ``<<: [*a, *b]``) are SUPPORTED with YAML 1.1 semantics:
  keys written in the mapping win over merged ones, and earlier mappings in a merge list
  win over later ones; a second ``<<`` in one mapping is a duplicate key (use a list).
  A merged entry's recorded position is where that entry is
  written (inside the anchored mapping), which is the place to edit it.
* Aliases are expanded (each use is an independent copy in ``data``). While the nodes
  are composed, and before anything is built, the alias-expanded tree is measured:
  more than ``LoadLimits.max_nodes_per_document`` nodes (every scalar, sequence and
  mapping, keys included) or more than ``LoadLimits.max_depth`` nested
  mappings/sequences stops the file at that point (the rest is not read). The
  measurement memoises each anchored node, so a "billion laughs" file is rejected in
  milliseconds without allocating the expansion, and an over-long document is never
  composed past the limit.
* A document's ``line`` is the line of its first content (its root node), e.g. the
  ``apiVersion:`` line, not the ``---`` separator. ``index`` counts every document of
  the file, including empty ones, which are skipped silently.
* Files named ``*.json`` (only reachable through :func:`load_file`, for manifests) are
  read with two JSON accommodations: tab characters (always whitespace in valid JSON)
  are accepted, and JSON numbers such as ``1e5`` are numbers, not strings.

Finding codes (all severity error unless noted)
-----------------------------------------------
======  ====================================================================================
Code    Meaning
======  ====================================================================================
PGL001  YAML syntax error (scanner/parser/composer error, duplicate anchor, undefined
        alias, control characters that YAML forbids).
PGL002  Duplicate key in a mapping (both lines are named).
PGL003  File larger than ``max_file_bytes`` (not parsed), or the directory's total size
        exceeds ``max_total_bytes`` (loading stops).
PGL004  Alias expansion exceeds ``max_nodes_per_document``, nesting exceeds ``max_depth``,
        or an alias refers to a node that contains it (recursive alias).
PGL005  A document's top level is not a mapping.
PGL006  Unsupported construct: a non-standard tag (``!custom``, ``!!python/...``,
        ``!!set``, ...), a complex (mapping/sequence) key, a value that does not fit its
        explicit tag (``!!int abc``), or a merge key whose value is not a mapping.
PGL007  A symlink (file or directory) resolves outside the root; it is not followed.
        This is an ERROR, not a warning: silently skipping it would shrink the desired
        state, and a reconciler turns missing resources into deletions. Content outside
        the reviewed tree cannot be trusted either.
PGL008  A file or directory cannot be read (permissions, broken symlink) or the file is
        not valid UTF-8.
PGL009  The root directory does not exist or is not a directory.
PGL010  WARNING: more than ``MAX_FINDINGS_PER_FILE`` problems in one file; the rest are
        not reported (the file has already failed with the errors that are reported).
PGL011  A path named like a desired-state file (``*.yaml``, a ``manifestFile``, a
        migration) is not a regular file: a FIFO, socket, device or directory. It is
        skipped without being opened (opening a FIFO blocks). An ERROR, as for PGL007.
PGL012  Not enough memory to load and validate the desired state (``validate`` reports
        it instead of a MemoryError traceback; nothing was checked).
PGL013  WARNING: the directory lies in a git work tree and differs from its HEAD commit
        (modified, added or deleted files): what is planned is not a commit. Reported by
        desired/build.py from the directory's revision (source/tree.py).
======  ====================================================================================

Directory walk
--------------
:func:`iter_directory` walks a directory on disk; :func:`iter_tree` walks any
:class:`~plexica_gitops.source.tree.SourceTree` (a git commit, read without a checkout)
with the same rules and findings, plus one: a git submodule is refused (PGL007), as its
files are no part of the commit. Both name files by their path relative to the root.
``*.yaml`` / ``*.yml`` (suffix matched case-insensitively) at any depth; names starting
with ``.`` (files and directories) are skipped. Symlinks that resolve inside the root are
followed; each real directory is walked at most once (the first path reached in the
sorted depth-first walk wins), which also stops symlink loops and link fan-out. Files
are processed in sorted order of their relative POSIX path. A file with any problem
contributes no documents.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import json
import os
import re
import stat
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from os.path import join
from pathlib import Path
from typing import Any, Protocol, cast

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from plexica_gitops.findings import Finding, Location, error, warning
from plexica_gitops.source.tree import (
    Entry,
    EntryKind,
    FileTooLarge,
    LinkProblem,
    NotARegularFile,
    SourceError,
    SourceTree,
    UnreadablePath,
    walk_followed,
)

__all__ = [
    "DEPTH_OR_ALIAS_LIMIT",
    "DUPLICATE_KEY",
    "MAX_FINDINGS_PER_FILE",
    "NOT_A_MAPPING",
    "NOT_REGULAR",
    "OUT_OF_MEMORY",
    "ROOT_MISSING",
    "SIZE_LIMIT",
    "SYMLINK_ESCAPE",
    "TOO_MANY_PROBLEMS",
    "UNREADABLE",
    "UNSUPPORTED",
    "WORK_TREE_DIRTY",
    "YAML_SYNTAX",
    "JsonPath",
    "LazyPositions",
    "LoadLimits",
    "LoadResult",
    "LoadedFile",
    "Positions",
    "Reuse",
    "SourceDocument",
    "broken_link",
    "iter_directory",
    "iter_tree",
    "load_directory",
    "load_file",
    "load_tree_file",
    "read_at_most",
    "read_regular_file",
    "read_tree_file",
]

YAML_SYNTAX = "PGL001"
DUPLICATE_KEY = "PGL002"
SIZE_LIMIT = "PGL003"
DEPTH_OR_ALIAS_LIMIT = "PGL004"
NOT_A_MAPPING = "PGL005"
UNSUPPORTED = "PGL006"
SYMLINK_ESCAPE = "PGL007"
UNREADABLE = "PGL008"
ROOT_MISSING = "PGL009"
TOO_MANY_PROBLEMS = "PGL010"
NOT_REGULAR = "PGL011"
OUT_OF_MEMORY = "PGL012"
WORK_TREE_DIRTY = "PGL013"

MAX_FINDINGS_PER_FILE = 100

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadLimits:
    max_file_bytes: int = 4 * 1024 * 1024
    # a platform of a million tenant bindings is about 270 MB of YAML (bench/cli_scale.py)
    max_total_bytes: int = 512 * 1024 * 1024
    # Counts nodes AFTER alias expansion (keys included): this stops "billion laughs".
    max_nodes_per_document: int = 1_000_000
    # Nesting of mappings/sequences; the document's top-level mapping is level 1.
    max_depth: int = 64


# One mapping's or list's positions: (its keys - one tuple shared by every mapping with
# the same keys - or, for a list, its length; where its entries start in the document's
# packed marks; then, only when some entry is a mapping or list, each entry's own node or
# None).
_PositionNode = Sequence[Any]


class Positions(Mapping[JsonPath, tuple[int, int]]):
    """Where each value of one document was written: JSON path -> (line, column), 1-based.

    Compact, because a desired state may hold millions of values, each with a position:
    one small tuple per mapping or list (keys shared with every mapping of the same keys)
    and one 8-byte entry per value, packed into one array for the document - 20 to 40
    bytes a value, where a dict of path tuples took about 230. A lookup walks the tree
    (a large mapping builds its key index once)."""

    __slots__ = ("_indexes", "_marks", "_root", "_start")

    def __init__(self, start: tuple[int, int], root: _PositionNode | None, marks: array[int]):
        self._start = start  # the document's root mapping
        self._root = root
        self._marks = marks
        self._indexes: dict[int, dict[str, int]] = {}  # id(keys) -> key -> entry

    def __getitem__(self, path: JsonPath) -> tuple[int, int]:
        if not path:
            return self._start
        node = self._root
        last = len(path) - 1
        for depth, part in enumerate(path):
            if node is None:
                break
            entry = self._entry(node[0], part)
            if entry is None:
                break
            if depth == last:
                packed = self._marks[node[1] + entry]
                return (packed >> 32, packed & 0xFFFFFFFF)
            node = node[2 + entry] if len(node) > 2 else None
        raise KeyError(path)

    def _entry(self, keys: tuple[str, ...] | int, part: str | int) -> int | None:
        if isinstance(keys, int):  # a list of `keys` items
            if isinstance(part, int) and not isinstance(part, bool) and 0 <= part < keys:
                return part
            return None
        if not isinstance(part, str):
            return None
        if len(keys) <= 8:
            return keys.index(part) if part in keys else None
        index = self._indexes.get(id(keys))
        if index is None:
            index = self._indexes[id(keys)] = {key: n for n, key in enumerate(keys)}
        return index.get(part)

    def __iter__(self) -> Iterator[JsonPath]:
        yield ()
        stack: list[tuple[JsonPath, _PositionNode]] = []
        if self._root is not None:
            stack.append(((), self._root))
        while stack:
            path, node = stack.pop()
            keys = node[0]
            parts: Sequence[str | int] = range(keys) if isinstance(keys, int) else keys
            for entry, part in enumerate(parts):
                yield (*path, part)
                child = node[2 + entry] if len(node) > 2 else None
                if child is not None:
                    stack.append(((*path, part), child))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_text(self) -> str:
        """JSON text that `LazyPositions` reads these positions from (the cache's form):
        the start, the tree of keys and offsets (lists for tuples), the packed marks in
        base64."""
        # pydantic's JSON writer: 4x json.dumps on these trees (a cold run with a cache
        # writes one per tenant); json.dumps for a key with a lone surrogate, which it
        # refuses. Imported here so that loading alone does not import pydantic.
        from pydantic_core import PydanticSerializationError, to_json

        marks = base64.b64encode(self._marks.tobytes()).decode("ascii")
        plain = [self._start[0], self._start[1], self._root, marks]
        try:
            return to_json(plain).decode()
        except PydanticSerializationError:
            return json.dumps(plain, separators=(",", ":"))


class LazyPositions(Mapping[JsonPath, tuple[int, int]]):
    """Positions kept as the cache's JSON text until a finding needs one (most documents
    read from the cache never report anything), then read as they are: JSON lists where
    `Positions` has tuples, which it reads alike. A tree that does not fit its marks (an
    entry tampered with) has no positions: findings then point at the document's start."""

    __slots__ = ("_positions", "_text")

    def __init__(self, text: str) -> None:
        self._text: str | None = text
        self._positions: Positions | None = None

    def _decoded(self) -> Positions | None:
        if self._text is not None:
            text, self._text = self._text, None
            try:
                line, column, root, packed = json.loads(text)
                marks = array("Q")
                marks.frombytes(base64.b64decode(packed, validate=True))
                if type(line) is int and type(column) is int:
                    self._positions = Positions((line, column), root, marks)
            except (TypeError, ValueError, RecursionError, binascii.Error):
                pass
        return self._positions

    def __getitem__(self, path: JsonPath) -> tuple[int, int]:
        positions = self._decoded()
        if positions is None:
            raise KeyError(path)
        try:
            return positions[path]
        except (TypeError, IndexError, AttributeError, ValueError):  # not a tree of marks
            raise KeyError(path) from None

    def __iter__(self) -> Iterator[JsonPath]:
        positions = self._decoded()
        if positions is None:
            return iter(())
        try:
            return iter(list(positions))
        except (TypeError, IndexError, AttributeError, ValueError):
            return iter(())

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class SourceDocument:
    file: str  # posix path relative to the root directory
    index: int  # 0-based document index in a multi-document file
    line: int  # 1-based line where the document's content starts
    data: Any  # JSON-shaped: dict[str, ...], list, str, int, float, bool, None
    # JSON path -> (line, column), 1-based: a `Positions` when loaded (any mapping will do)
    positions: Mapping[JsonPath, tuple[int, int]]

    def location(self, path: Sequence[str | int] = ()) -> Location:
        """Position of `path`, else of its nearest ancestor that has one, else the
        document start."""
        current = tuple(path)
        while True:
            position = self.positions.get(current)
            if position is not None:
                return Location(self.file, position[0], position[1])
            if not current:
                return Location(self.file, self.line)
            current = current[:-1]


@dataclass
class LoadResult:
    root: Path
    # every YAML file read (relative posix, sorted), including files with problems
    files: list[str] = field(default_factory=list)
    documents: list[SourceDocument] = field(default_factory=list)  # in (file, index) order
    findings: list[Finding] = field(default_factory=list)  # a file with one: no documents


# --------------------------------------------------------------------------- public API


@dataclass
class LoadedFile:
    """What `iter_directory` yields: one file's documents and findings (a walk problem,
    such as a symlink escape, comes as a LoadedFile of its own that is not `listed`)."""

    file: str  # relative posix path; "" for a problem with the root itself
    documents: list[SourceDocument]
    findings: list[Finding]
    listed: bool  # one of LoadResult.files: a YAML file that was read (or tried)
    # With a `Reuse` hook: the cache key of the file's bytes (parsed, so the reader may
    # store what it makes of it), or what the hook had cached for them (not parsed).
    key: str | None = None
    cached: Any = None
    # With a `Reuse` hook, for a directory: the sha256 of the bytes read, when they were
    # read where the directory's revision reads them (the root joined with `file`, no
    # symlink on the way), so that the revision need not read them again.
    digest: bytes | None = None


# What a reader of the files may reuse instead of parsing: given a file's relative name
# and bytes, a LoadedFile made from what it cached, or the key to store the parse under.
Reuse = Callable[[str, bytes], "LoadedFile | str"]


def load_directory(root: Path, limits: LoadLimits = LoadLimits()) -> LoadResult:
    """Load every ``*.yaml`` / ``*.yml`` file under `root` (see the module docstring)."""
    result = LoadResult(root=root)
    for loaded in iter_directory(root, limits):
        if loaded.listed:
            result.files.append(loaded.file)
        result.documents.extend(loaded.documents)
        result.findings.extend(loaded.findings)
    # walk problems (symlinks, unreadable directories) in file order; stable within a file
    result.findings.sort(key=lambda finding: finding.location.file if finding.location else "")
    return result


def iter_directory(
    root: Path, limits: LoadLimits = LoadLimits(), reuse: Reuse | None = None
) -> Iterator[LoadedFile]:
    """`load_directory` one file at a time, so that a caller can use and drop each file's
    documents before the next is parsed: memory then follows what is kept, not the size
    of the whole desired state. Walk problems come first, then the files in order."""
    if not root.exists():
        problem = f"desired-state directory {root} does not exist"
        hint = "Pass the directory that holds the desired-state YAML files."
        yield LoadedFile("", [], [error(ROOT_MISSING, problem, hint)], listed=False)
        return
    if not root.is_dir():
        problem = f"desired-state root {root} is a file, not a directory"
        hint = "Pass the directory that holds the desired-state YAML files, not one file."
        yield LoadedFile("", [], [error(ROOT_MISSING, problem, hint)], listed=False)
        return
    real_root = os.path.realpath(root)
    candidates, walk_findings = _walk(root, real_root)
    # The directory's revision reads root/rel: the same file when no link leads to it (its
    # real path is then that path, spelled from the real root).
    readers = [
        (rel, partial(_read, real, rel, limits.max_file_bytes), real == join(real_root, rel))
        for rel, real in candidates
    ]
    yield from _load_files(walk_findings, readers, limits, reuse)


def iter_tree(
    tree: SourceTree, limits: LoadLimits = LoadLimits(), reuse: Reuse | None = None
) -> Iterator[LoadedFile]:
    """`iter_directory` over any source tree (a git commit): the same walk (symlinks
    followed while they stay inside the root, each directory once), the same findings;
    a submodule is refused like an escaping link (its files are no part of the commit)."""
    walked = walk_followed(tree, _is_yaml_name)
    findings = [_escape_finding(link.path, link.target, is_symlink=True) for link in walked.escapes]
    findings += [_submodule_finding(entry.path) for entry in walked.submodules]
    findings += [_unlistable(entry.path, entry.error or "") for entry in walked.unlistable]
    findings.sort(key=lambda finding: finding.location.file if finding.location else "")
    readers: list[_Reader] = []
    for reached in walked.files:
        target = reached.target
        if isinstance(target, LinkProblem):
            readers.append((reached.path, partial(broken_link, reached.path, target), False))
        else:
            read = partial(read_tree_file, tree, target, reached.path, limits)
            readers.append((reached.path, read, False))  # a commit's revision is its id
    yield from _load_files(findings, readers, limits, reuse)


# A file to read: its relative name, how to read it, whether LoadedFile.digest applies.
_Reader = tuple[str, Callable[[], "bytes | Finding"], bool]


def _load_files(
    walk_findings: list[Finding],
    readers: Sequence[_Reader],
    limits: LoadLimits,
    reuse: Reuse | None = None,
) -> Iterator[LoadedFile]:
    """Walk problems first, then each file (relative name, how to read it) in order."""
    for finding in walk_findings:
        yield LoadedFile(finding.location.file if finding.location else "", [], [finding], False)
    shared = _Shared()
    total = 0
    for position, (rel, read, revised) in enumerate(readers):
        raw = read()
        if isinstance(raw, Finding):
            yield LoadedFile(rel, [], [raw], listed=True)
            continue
        total += len(raw)
        if total > limits.max_total_bytes:
            not_loaded = len(readers) - position
            yield LoadedFile(
                rel,
                [],
                [
                    error(
                        SIZE_LIMIT,
                        f"{rel}: the desired state exceeds the total size limit of "
                        f"{limits.max_total_bytes:,} bytes; loading stopped at this file "
                        f"({not_loaded} file(s) not loaded)",
                        "Remove files that do not belong to the desired state, or split "
                        "it into several roots.",
                        Location(rel),
                    )
                ],
                listed=False,
            )
            return
        if reuse is None:
            documents, findings = _parse(raw, rel, limits, json_mode=False, shared=shared)
            del raw
            yield LoadedFile(rel, documents, findings, listed=True)
            continue
        digest = hashlib.sha256(raw).digest() if revised else None
        reused = reuse(rel, raw)
        if isinstance(reused, LoadedFile):
            reused.digest = digest
            yield reused
            continue
        documents, findings = _parse(raw, rel, limits, json_mode=False, shared=shared)
        del raw
        yield LoadedFile(rel, documents, findings, listed=True, key=reused, digest=digest)


def load_tree_file(
    tree: SourceTree, entry: Entry, rel: str, limits: LoadLimits = LoadLimits()
) -> tuple[list[SourceDocument], list[Finding]]:
    """`load_file` of the entry a tree path resolved to (``*.json`` read as JSON)."""
    raw = read_tree_file(tree, entry, rel, limits)
    if isinstance(raw, Finding):
        return [], [raw]
    return _parse(raw, rel, limits, json_mode=rel.lower().endswith(".json"))


def read_tree_file(
    tree: SourceTree, entry: Entry, rel: str, limits: LoadLimits = LoadLimits()
) -> bytes | Finding:
    """`read_regular_file` for a tree: the bytes of `entry` (what `rel` resolved to), or
    the same findings (PGL011 not a regular file, PGL003 too large, PGL008 unreadable)."""
    if entry.kind is EntryKind.SUBMODULE:
        return _submodule_finding(rel)
    if entry.kind is not EntryKind.FILE:
        return _not_regular_kind(rel, entry.kind)
    try:
        return tree.read(entry.path, limits.max_file_bytes)
    except FileTooLarge as exc:
        return _too_large(rel, exc.size, limits.max_file_bytes)
    except NotARegularFile as exc:
        return _not_regular_kind(rel, exc.kind)
    except SourceError as exc:
        reason = exc.reason if isinstance(exc, UnreadablePath) else exc.message
        return error(
            UNREADABLE,
            f"{rel}: cannot read file ({reason})",
            "Make the file readable, or remove it.",
            Location(rel),
        )


def broken_link(rel: str, problem: LinkProblem | None) -> Finding:
    """PGL008 for a tree path that leads nowhere (a dangling or looping link; None: gone)."""
    detail = f"symlink {problem.kind.value}: {problem.target}" if problem else "no such file"
    return error(
        UNREADABLE,
        f"{rel}: cannot read file ({detail})",
        "Fix the broken symlink, or remove it.",
        Location(rel),
    )


def _submodule_finding(rel: str) -> Finding:
    return error(
        SYMLINK_ESCAPE,
        f"{rel}: is a git submodule; its files are no part of the commit and were not read",
        "Commit the desired-state files themselves instead of a submodule.",
        Location(rel),
    )


def _unlistable(rel: str, reason: str) -> Finding:
    return error(
        UNREADABLE,
        f"{rel}: cannot list directory ({reason})",
        "Make the directory readable, or remove it from the desired state.",
        Location(rel),
    )


_KIND_TEXT = {
    EntryKind.DIRECTORY: "a directory",
    EntryKind.SYMLINK: "a symlink",
    EntryKind.SUBMODULE: "a git submodule",
}


def _not_regular_kind(rel: str, kind: EntryKind) -> Finding:
    what = _KIND_TEXT.get(kind, "not a regular file (a FIFO, socket or device)")
    return _not_regular_text(rel, what)


def load_file(
    path: Path, root: Path, limits: LoadLimits = LoadLimits()
) -> tuple[list[SourceDocument], list[Finding]]:
    """Load one YAML (or ``*.json``) file that must lie inside `root`.

    `path` is an ordinary path (absolute, or relative to the working directory), not a
    path relative to `root`. Documents and findings name the file relative to `root`."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    rel = _relative_name(path, root, real, real_root)
    if rel is None or not _is_within(real, real_root):
        name = rel if rel is not None else path.as_posix()
        return [], [_escape_finding(name, real, is_symlink=rel is not None)]
    raw = read_regular_file(real, rel, limits.max_file_bytes)
    if isinstance(raw, Finding):
        return [], [raw]
    return _parse(raw, rel, limits, json_mode=path.name.lower().endswith(".json"))


# --------------------------------------------------------------------------- files


def _is_within(real: str, real_root: str) -> bool:
    try:
        return os.path.commonpath([real, real_root]) == real_root
    except ValueError:  # different drives (Windows)
        return False


def _relative_name(path: Path, root: Path, real: str, real_root: str) -> str | None:
    try:
        lexical = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        if not _is_within(real, real_root):
            return None
        return Path(os.path.relpath(real, real_root)).as_posix()
    return lexical.as_posix()


def _escape_finding(rel: str, real: str, *, is_symlink: bool) -> Finding:
    if is_symlink:
        message = (
            f"{rel}: symlink resolves outside the desired-state root (to {real}); "
            "it was not followed"
        )
        hint = (
            "Keep every desired-state file inside the root directory: copy the file or "
            "directory in instead of linking to it."
        )
    else:
        message = f"{rel}: file is outside the desired-state root; it was not read"
        hint = "Reference only files inside the desired-state root directory."
    return error(SYMLINK_ESCAPE, message, hint, Location(rel))


def _is_yaml_name(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml"))


def _walk(root: Path, real_root: str) -> tuple[list[tuple[str, str]], list[Finding]]:
    """(relative posix name, real path) of every YAML file, sorted by name."""
    found: list[tuple[str, str]] = []
    findings: list[Finding] = []
    visited: set[str] = set()
    stack: list[tuple[str, str, str]] = [(real_root, str(root), "")]  # real, path, prefix
    while stack:
        real_dir, dir_path, prefix = stack.pop()
        if real_dir in visited:
            continue
        visited.add(real_dir)
        try:
            with os.scandir(dir_path) as iterator:
                entries = sorted(iterator, key=lambda entry: entry.name)
        except OSError as exc:
            findings.append(_unlistable(prefix.rstrip("/") or ".", str(exc.strerror or exc)))
            continue
        subdirs: list[tuple[str, str, str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks; False when dangling
            except OSError:
                is_dir = False
            if not is_dir and not _is_yaml_name(entry.name):
                continue
            if _is_link(entry):
                real = os.path.realpath(entry.path)
                if not _is_within(real, real_root):  # only possible through a symlink
                    findings.append(_escape_finding(rel, real, is_symlink=True))
                    continue
            else:  # in a real directory, so real already (no lookup)
                real = os.path.join(real_dir, entry.name)
            if is_dir:
                subdirs.append((real, entry.path, rel + "/"))
                continue
            mode = _target_mode(entry, real)
            if stat.S_ISREG(mode):
                found.append((rel, real))
            else:
                findings.append(_not_regular(rel, mode))
        stack.extend(reversed(subdirs))
    found.sort()
    return found, findings


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return True  # the careful path: resolved and stat'ed


def _target_mode(entry: os.DirEntry[str], real: str) -> int:
    """The mode of the file `entry` names (a link's target); a regular file's when it
    cannot be read (dangling, gone, unreadable): reading it says why (PGL008)."""
    try:
        if entry.is_file(follow_symlinks=False):  # no link: the directory listing says
            return stat.S_IFREG
        return os.stat(real).st_mode
    except OSError:
        return stat.S_IFREG


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_regular(rel: str, mode: int) -> Finding:
    return _not_regular_text(rel, _kind_of(mode))


def _not_regular_text(rel: str, what: str) -> Finding:
    return error(
        NOT_REGULAR,
        f"{rel}: is {what}, not a regular file; it was skipped (never opened)",
        "Replace it with a regular file (the desired state is files committed to git), or "
        "remove it.",
        Location(rel),
    )


def read_regular_file(path: str, rel: str, max_bytes: int) -> bytes | Finding:
    """The bytes of the regular file at `path` (at most `max_bytes`), or the finding that
    says why not: PGL011 for anything but a regular file (a FIFO, socket, device or
    directory is never opened: opening a FIFO blocks, opening a device may act), PGL008
    when unreadable, PGL003 when too large. `rel` names it in the finding."""
    try:
        info = os.stat(path)  # follows symlinks; callers check where they lead
    except OSError as exc:
        return _unreadable(rel, exc)
    if not stat.S_ISREG(info.st_mode):
        return _not_regular(rel, info.st_mode)
    return _read(path, rel, max_bytes)


def _unreadable(rel: str, exc: OSError) -> Finding:
    return error(
        UNREADABLE,
        f"{rel}: cannot read file ({exc.strerror or exc})",
        "Make the file readable (or fix the broken symlink), or remove it.",
        Location(rel),
    )


def _read(real: str, rel: str, max_bytes: int) -> bytes | Finding:
    """Read at most `max_bytes`; refuse non-regular files. Callers stat first, so this
    check after opening (non-blocking, so a FIFO swapped in since cannot hang) only
    catches a race."""
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        return _unreadable(rel, exc)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return _not_regular(rel, info.st_mode)
        raw = read_at_most(fd, info.st_size, max_bytes + 1)
    except OSError as exc:
        return error(
            UNREADABLE,
            f"{rel}: cannot read file ({exc.strerror or exc})",
            "Make the file readable, or remove it.",
            Location(rel),
        )
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        return _too_large(rel, max(info.st_size, len(raw)), max_bytes)
    return raw


def read_at_most(fd: int, size: int, limit: int) -> bytes:
    """The bytes of an open file up to its end or `limit`, whichever comes first, asking
    first for its `size` (fstat's) and one more byte: a buffered read of `limit` bytes
    allocates all of them, which for a 1 KB file costs more than the read."""
    chunks = []
    total = 0
    want = min(size + 1, limit)
    while total < limit:
        chunk = os.read(fd, want)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = min(max(want, 1 << 16), limit - total)  # grew since the fstat
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(rel: str, size: int, max_bytes: int) -> Finding:
    return error(
        SIZE_LIMIT,
        f"{rel}: file is {size:,} bytes, over the limit of {max_bytes:,} bytes; it was not parsed",
        "Split the file into smaller files; desired-state files are small.",
        Location(rel),
    )


def _decode(raw: bytes, rel: str) -> str | Finding:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start
        line_start = raw.rfind(b"\n", 0, start) + 1
        line = raw.count(b"\n", 0, start) + 1
        column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        detail = " (it looks like UTF-16)" if utf16 else ""
        return error(
            UNREADABLE,
            f"{rel}: not valid UTF-8{detail}: byte 0x{raw[start]:02x} at line {line}, "
            f"column {column}",
            "Save the file as UTF-8 (a BOM is allowed).",
            Location(rel, line, column),
        )


# --------------------------------------------------------------------------- parsing


class _LimitError(Exception):
    def __init__(self, message: str, hint: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.mark = mark


class _TooManyProblems(Exception):
    pass


class _AliasNode(Node):
    """An alias use (``*name``): keeps the alias's own position, unlike PyYAML's
    composer, which hands back the anchored node itself."""

    id = "alias"

    def __init__(self, target: Node, anchor: str, start_mark: Mark, end_mark: Mark) -> None:
        super().__init__(target.tag, target.value, start_mark, end_mark)
        self.target = target
        self.anchor = anchor


def _target(node: Node) -> Node:
    return node.target if isinstance(node, _AliasNode) else node


def _depth_message(max_depth: int) -> tuple[str, str]:
    return (
        f"mappings and lists are nested deeper than {max_depth} levels "
        "(counting levels added by aliases)",
        "Flatten the structure; desired-state documents need only a few levels.",
    )


class _EventSource(Protocol):
    """What the composer needs from a parser: libyaml's ``CParser`` or PyYAML's
    pure-Python ``Parser`` (both yield the same ``yaml.events`` classes and marks)."""

    def get_event(self) -> Any: ...

    def dispose(self) -> None: ...


# libyaml's C scanner/parser is ~20x faster than PyYAML's pure-Python one; only its
# EVENTS are used (its C composer recurses, so a deeply nested file could overflow the C
# stack). Tests switch this off to run the pure-Python fallback.
_USE_LIBYAML: bool = yaml.__with_libyaml__


def _event_source(text: str) -> _EventSource:
    if _USE_LIBYAML:
        return yaml.CSafeLoader(text)
    return yaml.SafeLoader(text)


_Resolvers = tuple[tuple[str, re.Pattern[str]], ...]
_RESOLVED_CACHE_SIZE = 4096  # distinct plain scalars whose tag is remembered per file


def _implicit_resolvers() -> tuple[dict[str, _Resolvers], _Resolvers]:
    """SafeLoader's implicit resolvers (what ``Resolver.resolve`` tries for a plain
    scalar) by first character, each with the wildcard ones appended; and the wildcard
    ones alone, for other first characters. Read per file, as PyYAML does."""
    table = yaml.SafeLoader.yaml_implicit_resolvers
    wildcard: _Resolvers = tuple(table.get(None, []))
    by_first = {first: (*resolvers, *wildcard) for first, resolvers in table.items()}
    by_first.pop(None, None)
    return by_first, wildcard


def _plain_resolver() -> Callable[[str], str]:
    """The tag of a plain (unquoted, untagged) scalar, as ``Resolver.resolve`` gives it;
    the tags of the most recent distinct values are remembered (for one file)."""
    by_first, wildcard = _implicit_resolvers()
    resolved: dict[str, str] = {}

    def resolve(value: str) -> str:
        tag = resolved.get(value)
        if tag is not None:
            return tag
        tag = _STR
        for candidate, regexp in by_first.get(value[:1], wildcard):
            if regexp.match(value):
                tag = candidate
                break
        if len(resolved) < _RESOLVED_CACHE_SIZE:
            resolved[value] = tag
        return tag

    return resolve


def _compose(events: _EventSource, limits: LoadLimits) -> Iterator[Node]:
    """The root node of each document of the stream, in order, measured.

    Builds the node tree that ``yaml.composer.Composer`` builds from the same events
    (same tags, anchors and errors; alias uses become :class:`_AliasNode`), but
    iteratively - nesting costs list entries, not stack frames - and it measures the
    alias-expanded tree while composing, so a document over a limit stops the file
    (:class:`_LimitError`) before the parser reads any further:

    * a collection nested deeper than ``max_depth``, or an alias whose target's height
      would take it deeper, stops at that collection / alias;
    * each alias counts the expanded size of its target (memoised per anchor, so a
      "billion laughs" costs nothing to measure); as soon as a collection's expanded
      size exceeds ``max_nodes_per_document`` it stops at that collection's start;
    * an alias used inside the node it names is a recursive alias.
    """
    max_depth = limits.max_depth
    budget = limits.max_nodes_per_document
    resolve = _plain_resolver()
    next_event = events.get_event
    next_event()  # StreamStartEvent
    while True:
        event = next_event()
        if event.__class__ is StreamEndEvent:
            return
        # a DocumentStartEvent; anchors are scoped to their document
        anchors: dict[str, Node] = {}
        measured: dict[str, tuple[int, int]] = {}  # anchor -> (expanded size, height)
        total = 0  # expanded nodes of the document so far (keys included)
        # one entry per open collection, outermost first:
        parents: list[Node] = []
        keys: list[Node | None] = []  # a mapping's key that waits for its value
        starts: list[int] = []  # `total` before the collection; size = total - start
        heights: list[int] = []  # greatest height of its complete children
        names: list[str | None] = []  # its anchor
        while True:
            event = next_event()
            kind = event.__class__
            node: Node
            height = 0
            if kind is ScalarEvent:
                tag = event.tag
                value = event.value
                if tag is None or tag == "!":  # resolve as Resolver.resolve(ScalarNode, ...)
                    tag = resolve(value) if event.implicit[0] else _STR
                node = ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
                total += 1
                if event.anchor is not None:
                    _add_anchor(anchors, event, node)
                    measured[event.anchor] = (1, 0)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                node = parents.pop()
                keys.pop()
                height = heights.pop() + 1
                name = names.pop()
                if name is not None:
                    measured[name] = (total - starts[-1], height)
                starts.pop()
                node.end_mark = event.end_mark
            elif kind is AliasEvent:
                name = event.anchor
                target = anchors.get(name)
                if target is None:
                    raise ComposerError(
                        None, None, f"found undefined alias {name!r}", event.start_mark
                    )
                node = _AliasNode(target, name, event.start_mark, event.end_mark)
                known = measured.get(name)
                if known is None:
                    raise _LimitError(
                        f"alias *{name} is used inside the node it refers to (recursive alias)",
                        "Remove the alias from inside its own anchored mapping or list.",
                        event.start_mark,
                    )
                size, height = known
                if len(parents) + height > max_depth:
                    raise _LimitError(*_depth_message(max_depth), event.start_mark)
                total += size
            else:  # MappingStartEvent or SequenceStartEvent
                if len(parents) >= max_depth:
                    raise _LimitError(*_depth_message(max_depth), event.start_mark)
                tag = event.tag
                if kind is MappingStartEvent:
                    if tag is None or tag == "!":
                        tag = _MAP
                    node = MappingNode(tag, [], event.start_mark, None, event.flow_style)
                else:
                    if tag is None or tag == "!":
                        tag = _SEQ
                    node = SequenceNode(tag, [], event.start_mark, None, event.flow_style)
                if event.anchor is not None:
                    _add_anchor(anchors, event, node)
                parents.append(node)
                keys.append(None)
                starts.append(total)
                heights.append(0)
                names.append(event.anchor)
                total += 1
                continue
            # `node` is complete: attach it to the innermost open collection
            if not parents:
                break
            parent = parents[-1]
            if parent.__class__ is SequenceNode:
                parent.value.append(node)
            else:
                key = keys[-1]
                if key is None:
                    keys[-1] = node
                else:
                    parent.value.append((key, node))
                    keys[-1] = None
            if height > heights[-1]:
                heights[-1] = height
            if total - starts[-1] > budget:
                raise _LimitError(
                    f"the document expands to more than {budget:,} values once aliases "
                    "(*name) are expanded",
                    "This looks like an alias bomb ('billion laughs'); use fewer "
                    "nested anchors and aliases, or write the values out.",
                    parent.start_mark,
                )
        next_event()  # DocumentEndEvent
        yield node


def _add_anchor(anchors: dict[str, Node], event: Any, node: Node) -> None:
    anchor: str = event.anchor
    if anchor in anchors:
        raise ComposerError(
            f"found duplicate anchor {anchor!r}; first occurrence",
            anchors[anchor].start_mark,
            "second occurrence",
            event.start_mark,
        )
    anchors[anchor] = node


# The characters PyYAML's Reader (and libyaml's) refuse, checked up front so that both
# parsers report the first one, by character position, before any syntax error.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _check_printable(text: str) -> None:
    match = _NON_PRINTABLE.search(text)
    if match is not None:
        character = match.group()
        raise ReaderError("<text>", match.start(), ord(character), "unicode", "not printable")


def _packed(mark: Mark) -> int:
    """A value's position as `Positions` keeps it: 1-based line and column in one int."""
    return ((mark.line + 1) << 32) | (mark.column + 1)


def _position(mark: Mark | None) -> tuple[int, int]:
    if mark is None:
        return (1, 1)
    return (mark.line + 1, mark.column + 1)


def _parse(
    raw: bytes,
    rel: str,
    limits: LoadLimits,
    *,
    json_mode: bool,
    shared: _Shared | None = None,
) -> tuple[list[SourceDocument], list[Finding]]:
    text = _decode(raw, rel)
    del raw  # the text is what is parsed; do not hold both
    if isinstance(text, Finding):
        return [], [text]
    if json_mode:
        text = text.replace("\t", " ")  # valid JSON has tabs only as whitespace
    with _gc_paused():
        return _parse_text(
            text, rel, limits, _Shared() if shared is None else shared, json_mode=json_mode
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while one file is parsed and built.

    Parsing allocates hundreds of thousands of small objects that all stay alive until
    the document is built, so the collector's periodic passes find nothing yet cost
    15-40% of the loading time. Nothing built here forms reference cycles, so
    reference counting still frees everything as usual; the previous state is restored
    (and a collector that was already off is left alone)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse_text(
    text: str, rel: str, limits: LoadLimits, shared: _Shared, *, json_mode: bool
) -> tuple[list[SourceDocument], list[Finding]]:
    if _FAST_PATH:
        fast = _regular_documents(text, rel, limits, shared, json_mode=json_mode)
        if fast is not None:
            return fast, []
    sink = _Sink()
    documents: list[SourceDocument] = []
    events: _EventSource | None = None
    try:
        _check_printable(text)
        events = _event_source(text)
        for index, node in enumerate(_compose(events, limits)):
            document = _document(node, rel, index, sink, shared, json_mode=json_mode)
            if document is not None:
                documents.append(document)
    except _TooManyProblems:
        sink.items.append(
            warning(
                TOO_MANY_PROBLEMS,
                f"{rel}: more than {MAX_FINDINGS_PER_FILE} problems; the rest are not shown",
                "Fix the problems shown and validate again.",
                Location(rel),
            )
        )
    except _LimitError as exc:
        sink.items.append(_limit_finding(rel, exc))
    except ReaderError as exc:
        sink.items.append(_reader_finding(rel, text, exc))
    except MarkedYAMLError as exc:
        if _is_parser_nesting_limit(exc):
            sink.items.append(_parser_nesting_finding(rel, text, exc, limits.max_depth))
        else:
            sink.items.append(_syntax_finding(rel, text, exc))
    except yaml.YAMLError as exc:  # pragma: no cover - the parsers raise the two above
        sink.items.append(
            error(YAML_SYNTAX, f"{rel}: YAML error: {exc}", _SYNTAX_HINT, Location(rel))
        )
    except RecursionError:  # pragma: no cover - only with a very large max_depth
        message, hint = _depth_message(limits.max_depth)
        sink.items.append(error(DEPTH_OR_ALIAS_LIMIT, f"{rel}: {message}", hint, Location(rel)))
    finally:
        if events is not None:
            events.dispose()
    if sink.items:
        return [], sink.items
    return documents, []


# Most files are plain data: no anchor, alias, merge key, tag, duplicate key or problem of
# any kind. Those are read in one pass over the parser's events, straight into their data
# and positions, with no node tree and no second walk (half the loading time). Anything
# else stops that pass, and the file is read again by `_compose` and `_Builder`, which
# report exactly what they always did: a finding can only come from them. Tests switch
# this off to compare the two.
_FAST_PATH = True


class _Irregular(Exception):
    """What only the composer handles (an anchor, a tag, a problem): read the file again."""


def _regular_documents(
    text: str, rel: str, limits: LoadLimits, shared: _Shared, *, json_mode: bool
) -> list[SourceDocument] | None:
    """The file's documents, or None when it is not plain data (see `_FAST_PATH`)."""
    events: _EventSource | None = None
    try:
        _check_printable(text)
        events = _event_source(text)
        return _regular_stream(events, rel, limits, shared, json_mode)
    except (_Irregular, yaml.YAMLError):
        return None
    finally:
        if events is not None:
            events.dispose()


# An open mapping or list of `_regular_stream`: its data, its keys (None for a list), the
# packed marks of its entries, the positions nodes of the entries that are collections
# (by entry number), and the key whose value comes next.
_MAPPING_DATA, _KEYS, _MARKS, _CHILDREN, _PENDING = range(5)


def _regular_stream(
    events: _EventSource, rel: str, limits: LoadLimits, shared: _Shared, json_mode: bool
) -> list[SourceDocument]:
    """What `_compose` + `_document` give for a stream of plain documents; `_Irregular`
    at the first thing they would treat otherwise (before any limit, too)."""
    resolve = _plain_resolver()
    share = shared.strings.setdefault
    key_set = shared.key_sets.setdefault
    max_depth, budget = limits.max_depth, limits.max_nodes_per_document
    next_event = events.get_event
    documents: list[SourceDocument] = []
    next_event()  # StreamStartEvent
    while next_event().__class__ is not StreamEndEvent:  # a DocumentStartEvent
        event: Any = next_event()  # the root
        if event.__class__ is not MappingStartEvent:
            raise _Irregular  # not a mapping, or an empty document: the composer says
        event = cast(Any, event)  # any event from here on, told apart by its class
        start = _position(event.start_mark)
        marks = array("Q")
        stack: list[list[Any]] = []
        total = 0
        while True:
            kind = event.__class__
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _Irregular
                value = event.value
                total += 1
                frame = stack[-1]
                keys = frame[_KEYS]
                if keys is None or frame[_PENDING] is None:  # a list item's or a key's start
                    mark = event.start_mark  # `_packed`, written out: a call costs 5 %
                    frame[_MARKS].append(((mark.line + 1) << 32) | (mark.column + 1))
                    if keys is not None:  # a key
                        if value == "<<" and event.implicit[0]:
                            raise _Irregular  # a merge key
                        value = share(value, value)
                        keys.append(value)
                        frame[_PENDING] = value
                        event = next_event()
                        continue
                tag = resolve(value) if event.implicit[0] else _STR
                if tag is not _STR or json_mode:
                    try:
                        value = _scalar_value(tag, value, event.style, json_mode)
                    except (_Unconvertible, _UnsupportedTag):
                        raise _Irregular from None
                node = None
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None or len(stack) >= max_depth:
                    raise _Irregular
                total += 1
                if stack:
                    frame = stack[-1]
                    if frame[_KEYS] is None:  # a list item: its own start
                        frame[_MARKS].append(_packed(event.start_mark))
                    elif frame[_PENDING] is None:
                        raise _Irregular  # a mapping or list as a key
                mapping = kind is MappingStartEvent
                stack.append([{} if mapping else [], [] if mapping else None, [], None, None])
                event = next_event()
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                value = frame[_MAPPING_DATA]
                keys = frame[_KEYS]
                if keys is None:
                    head: Any = len(value)
                else:
                    if len(keys) != len(value):
                        raise _Irregular  # a duplicate key
                    head = tuple(keys)
                    head = key_set(head, head)
                offset = len(marks)
                marks.extend(frame[_MARKS])
                children = frame[_CHILDREN]
                if children is None:
                    node = (head, offset)
                else:
                    node = (head, offset, *(children.get(n) for n in range(len(frame[_MARKS]))))
                if not stack:
                    break
            else:
                raise _Irregular  # an alias
            if total > budget:
                raise _Irregular
            frame = stack[-1]
            data = frame[_MAPPING_DATA]
            if frame[_KEYS] is None:
                data.append(value)
                number = len(data) - 1
            else:
                data[frame[_PENDING]] = value
                frame[_PENDING] = None
                number = len(frame[_KEYS]) - 1
            if node is not None:
                if frame[_CHILDREN] is None:
                    frame[_CHILDREN] = {}
                frame[_CHILDREN][number] = node
            event = next_event()
        next_event()  # DocumentEndEvent
        positions = Positions(start, node, marks)
        documents.append(SourceDocument(rel, len(documents), start[0], value, positions))
    return documents


# libyaml's own nesting limit (1,000 levels unless an application changes it), which stops
# the parser before our composer sees the level over `max_depth`: its scanner reports
# "exceeded maximum nesting depth" (while increasing flow/block level; the libyaml in
# PyYAML 6.0.4's wheels), its parser "Maximum nesting level reached" (libyaml 0.2.6).
# Older builds have no limit, and the composer's own stops first.
_LIBYAML_NESTING_LIMIT = 1_000


def _is_parser_nesting_limit(exc: MarkedYAMLError) -> bool:
    text = f"{exc.context or ''} {exc.problem or ''}".lower()
    return "nest" in text and any(word in text for word in ("maximum", "max ", "exceed"))


def _parser_nesting_finding(rel: str, text: str, exc: MarkedYAMLError, max_depth: int) -> Finding:
    """The same finding (PGL004, our limit in the message) whichever parser stopped first;
    only the position is the parser's, further in than the level that crossed ours."""
    message, hint = _depth_message(max_depth)
    if max_depth >= _LIBYAML_NESTING_LIMIT:
        message = "mappings and lists are nested deeper than the YAML parser allows"
    line, column = _error_position(text, exc.problem_mark or exc.context_mark)
    return error(
        DEPTH_OR_ALIAS_LIMIT,
        f"{rel}: {message} (the parser stopped at line {line}, column {column})",
        hint,
        Location(rel, line, column),
    )


def _document(
    node: Node, rel: str, index: int, sink: _Sink, shared: _Shared, *, json_mode: bool
) -> SourceDocument | None:
    line, column = _position(node.start_mark)
    if isinstance(node, ScalarNode) and node.tag == _NULL and node.value == "" and not node.style:
        return None  # empty document, e.g. after a trailing `---`
    if not isinstance(node, MappingNode):
        kind = "a list" if isinstance(node, SequenceNode) else "a single value"
        sink.add(
            error(
                NOT_A_MAPPING,
                f"{rel}: document {index + 1} (line {line}) is {kind}, not a mapping",
                "Each document must be a mapping with apiVersion, kind, metadata and spec.",
                Location(rel, line, column),
            )
        )
        return None
    builder = _Builder(rel, sink, shared, json_mode=json_mode)
    before = len(sink.items)
    data, tree = builder.value(node)
    if len(sink.items) > before:
        return None
    positions = Positions((line, column), tree, array("Q", builder.marks))  # exact size
    return SourceDocument(rel, index, line, data, positions)


def _limit_finding(rel: str, exc: _LimitError) -> Finding:
    line, column = _position(exc.mark)
    return error(
        DEPTH_OR_ALIAS_LIMIT,
        f"{rel}: {exc.message}",
        exc.hint,
        Location(rel, line, column),
    )


# --------------------------------------------------------------------------- building


_YAML = "tag:yaml.org,2002:"
_STR = _YAML + "str"
_NULL = _YAML + "null"
_BOOL = _YAML + "bool"
_INT = _YAML + "int"
_FLOAT = _YAML + "float"
_MAP = _YAML + "map"
_SEQ = _YAML + "seq"
_MERGE = _YAML + "merge"
# Kept as their source text: timestamps, binary, and `<<` / `=` used as plain values.
_TEXT_TAGS = frozenset({_STR, _YAML + "timestamp", _YAML + "binary", _MERGE, _YAML + "value"})
_SCALAR_TAGS = _TEXT_TAGS | {_NULL, _BOOL, _INT, _FLOAT}
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")
_CONSTRUCTOR = SafeConstructor()

_UNSUPPORTED_HINT = (
    "Remove the tag: desired state is plain data (mappings, lists, strings, numbers, "
    "booleans, null); custom and language-specific tags are never constructed."
)


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


class _Sink:
    """Findings of one file: de-duplicated (an aliased node is built once per use) and
    capped, so a hostile file cannot make the report itself huge."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._seen: set[Finding] = set()

    def add(self, finding: Finding) -> None:
        if finding in self._seen:
            return
        if len(self.items) >= MAX_FINDINGS_PER_FILE:
            raise _TooManyProblems
        self._seen.add(finding)
        self.items.append(finding)


_Entry = tuple[str, Node, Node]  # key text, key node, value node


class _Shared:
    """What the documents of one load share: each key text once, each set of keys once."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.key_sets: dict[tuple[str, ...], tuple[str, ...]] = {}


class _Builder:
    def __init__(self, rel: str, sink: _Sink, shared: _Shared, *, json_mode: bool) -> None:
        self.rel = rel
        self.sink = sink
        self.json_mode = json_mode
        # mapping keys repeat across documents and files: one string object per key text,
        # one tuple per set of keys (the positions' nodes hold them)
        self.share = shared.strings.setdefault
        self.key_sets = shared.key_sets
        self.marks = array("Q")  # (line << 32 | column) of every value, a block per container

    def _problem(self, code: str, message: str, hint: str, mark: Mark | None) -> None:
        line, column = _position(mark)
        self.sink.add(
            error(
                code,
                f"{self.rel}: {message}",
                hint,
                Location(self.rel, line, column),
            )
        )

    def value(self, node: Node) -> tuple[Any, _PositionNode | None]:
        """The data of `node` and, for a mapping or list, its positions node."""
        target = node.target if node.__class__ is _AliasNode else node
        if target.__class__ is ScalarNode:
            return self._scalar(target), None
        expected = _MAP if isinstance(target, MappingNode) else _SEQ
        if target.tag != expected:
            self._problem(
                UNSUPPORTED,
                f"unsupported tag {_show_tag(target.tag)}",
                _UNSUPPORTED_HINT,
                target.start_mark,
            )
            return None, None
        if isinstance(target, SequenceNode):
            starts = [item.start_mark for item in target.value]
            offset = self._block(starts)
            children: list[_PositionNode | None] | None = None
            items: list[Any] = []
            for number, item in enumerate(target.value):
                data, child = self.value(item)
                items.append(data)
                if child is not None:
                    children = children or [None] * len(starts)
                    children[number] = child
            return items, (len(starts), offset, *(children or ()))
        assert isinstance(target, MappingNode)
        entries = self._entries(target)
        share = self.share
        keys = tuple(share(entry[0], entry[0]) for entry in entries)
        keys = self.key_sets.setdefault(keys, keys)
        offset = self._block([entry[1].start_mark for entry in entries])
        children = None
        result: dict[str, Any] = {}
        for number, (key, (_, _, value_node)) in enumerate(zip(keys, entries, strict=True)):
            data, child = self.value(value_node)
            result[key] = data
            if child is not None:
                children = children or [None] * len(keys)
                children[number] = child
        return result, (keys, offset, *(children or ()))

    def _block(self, marks: list[Mark]) -> int:
        """Record one container's entry positions together; where they start."""
        offset = len(self.marks)
        self.marks.extend(map(_packed, marks))
        return offset

    def _entries(self, node: MappingNode) -> list[_Entry]:
        """Entries in source order, the `<<` entry replaced by the merged entries that
        the mapping does not define itself."""
        first_seen: dict[str, Node] = {}
        written: list[_Entry | list[_Entry]] = []
        merges = False
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key is None:
                continue
            if key in first_seen:
                first_line = _position(first_seen[key].start_mark)[0]
                self._problem(
                    DUPLICATE_KEY,
                    f"duplicate key {key!r} on line {first_line} and again on line "
                    f"{_position(key_node.start_mark)[0]}",
                    "Remove one of the two entries; YAML would otherwise silently keep "
                    "only one of the values.",
                    key_node.start_mark,
                )
                continue
            first_seen[key] = key_node
            key_target = _target(key_node)
            if key_target.tag == _MERGE and isinstance(key_target, ScalarNode):
                written.append(self._merged(value_node))
                merges = True
            else:
                written.append((key, key_node, value_node))
        if not merges:
            return cast(list[_Entry], written)
        own = {entry[0] for entry in written if isinstance(entry, tuple)}
        entries: list[_Entry] = []
        for entry in written:
            if isinstance(entry, tuple):
                entries.append(entry)
                continue
            for merged in entry:
                if merged[0] not in own:
                    own.add(merged[0])
                    entries.append(merged)
        return entries

    def _merged(self, value_node: Node) -> list[_Entry]:
        """The entries a `<<` value brings in; earlier mappings in a list win."""
        target = _target(value_node)
        sources = target.value if isinstance(target, SequenceNode) else [value_node]
        entries: list[_Entry] = []
        taken: set[str] = set()
        for source in sources:
            mapping = _target(source)
            if not isinstance(mapping, MappingNode) or mapping.tag != _MAP:
                self._problem(
                    UNSUPPORTED,
                    "merge key '<<' needs a mapping or a list of mappings",
                    "Merge an anchored mapping ('<<: *base' or '<<: [*a, *b]'), or "
                    "quote '<<' if it is meant as a plain key.",
                    source.start_mark,
                )
                continue
            for entry in self._entries(mapping):
                if entry[0] not in taken:
                    taken.add(entry[0])
                    entries.append(entry)
        return entries

    def _key(self, key_node: Node) -> str | None:
        target = _target(key_node)
        if not isinstance(target, ScalarNode):
            self._problem(
                UNSUPPORTED,
                "a mapping or list used as a key (complex key)",
                "Use plain text keys; desired state is JSON-shaped.",
                key_node.start_mark,
            )
            return None
        if target.tag not in _SCALAR_TAGS:
            self._problem(
                UNSUPPORTED,
                f"unsupported tag {_show_tag(target.tag)} on a key",
                _UNSUPPORTED_HINT,
                key_node.start_mark,
            )
            return None
        return str(target.value)

    def _scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        text = str(node.value)
        try:
            return _scalar_value(tag, text, node.style, self.json_mode)
        except _Unconvertible as exc:
            self._problem(
                UNSUPPORTED,
                f"value {_clip(text)!r} cannot be read as {_show_tag(tag)}{exc.reason}",
                "Fix the value, or quote it (and drop the tag) if it is meant as text.",
                node.start_mark,
            )
        except _UnsupportedTag:
            self._problem(
                UNSUPPORTED, f"unsupported tag {_show_tag(tag)}", _UNSUPPORTED_HINT, node.start_mark
            )
        return None


class _Unconvertible(Exception):
    """A scalar its tag cannot read (``!!int abc``); `reason` is shown after the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _UnsupportedTag(Exception):
    pass


def _scalar_value(tag: str, text: str, style: str | None, json_mode: bool) -> Any:
    """The value of a scalar of `tag` (resolved or explicit) written as `text`."""
    if tag in _TEXT_TAGS:
        if json_mode and tag == _STR and not style:
            match = _JSON_NUMBER.match(text)
            if match:
                return float(text) if match.group(1) or match.group(2) else int(text)
        return text
    if tag == _NULL:
        return None
    try:
        if tag == _BOOL:
            return SafeConstructor.bool_values[text.lower()]
        if tag == _INT:
            if text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
                return int(text)  # what construct_yaml_int does for plain decimals
            return _CONSTRUCTOR.construct_yaml_int(ScalarNode(tag, text))
        if tag == _FLOAT:
            return _CONSTRUCTOR.construct_yaml_float(ScalarNode(tag, text))
    except (KeyError, ValueError) as exc:
        raise _Unconvertible(f" ({exc})" if isinstance(exc, ValueError) else "") from None
    raise _UnsupportedTag


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- YAML errors


_SYNTAX_HINT = (
    "Fix the YAML at the reported line and column; a YAML linter such as yamllint shows "
    "the problem in context."
)
_SPECIFIC_HINTS = (
    ("'\\t'", "Indent with spaces: YAML does not allow tab characters for indentation."),
    (
        "mapping values are not allowed",
        "A value probably contains ': ' or the indentation is off; quote the value or "
        "fix the indentation.",
    ),
    (
        "undefined alias",
        "Define the anchor (&name) before the alias (*name), in the same document.",
    ),
    ("duplicate anchor", "Give each anchor (&name) a unique name within the document."),
    (
        "could not find expected ':'",
        "Add the missing ':' after the key, or quote the text if it is a value.",
    ),
    ("found unexpected end of stream", "Close the open quote or bracket."),
)


_LINE_BREAKS = "\r\n\x85\u2028\u2029"


def _error_position(text: str, mark: Mark | None) -> tuple[int, int]:
    """1-based position of an error mark. At the end of a file without a final line
    break libyaml puts the mark on a virtual next line; report it where PyYAML does,
    after the last character."""
    if mark is None:
        return (1, 1)
    if mark.column == 0 and mark.index >= len(text) and text and text[-1] not in _LINE_BREAKS:
        last_break = max(text.rfind(character) for character in _LINE_BREAKS)
        return (mark.line, len(text) - last_break)
    return _position(mark)


def _syntax_finding(rel: str, text: str, exc: MarkedYAMLError) -> Finding:
    mark = exc.problem_mark or exc.context_mark
    line, column = _error_position(text, mark)
    problem = exc.problem
    if problem == "found character that cannot start any token" and mark is not None:
        # libyaml's wording; PyYAML's names the character, which is what the user needs
        character = text[mark.index : mark.index + 1]
        if character:
            problem = f"found character {character!r} that cannot start any token"
    parts: list[str] = []
    if exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context_line, context_column = _error_position(text, exc.context_mark)
            context += f" (line {context_line}, column {context_column})"
        parts.append(context)
    if problem:
        parts.append(problem)
    detail = ": ".join(parts) or "invalid YAML"
    combined = f"{exc.context or ''} {problem or ''}"
    hint = next((h for needle, h in _SPECIFIC_HINTS if needle in combined), _SYNTAX_HINT)
    return error(
        YAML_SYNTAX,
        f"{rel}: YAML syntax error at line {line}, column {column}: {detail}",
        hint,
        Location(rel, line, column) if mark is not None else Location(rel),
    )


def _reader_finding(rel: str, text: str, exc: ReaderError) -> Finding:
    position = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    character = exc.character
    if isinstance(character, str) and len(character) == 1:
        character = ord(character)
    shown = f"#x{character:04x}" if isinstance(character, int) else repr(character)
    return error(
        YAML_SYNTAX,
        f"{rel}: character {shown} at line {line}, column {column} is not allowed in YAML",
        "Remove the control character; the file must be plain UTF-8 text.",
        Location(rel, line, column),
    )
