"""Assemble the desired state from loaded documents: kind dispatch, JSON-Schema checks at the
exact node, pydantic models, manifest files and migration files.

Findings here are structural (PGS1xx), identity clashes found while indexing (PGV2xx) and
migration-file problems (PGV8xx); the semantic rules run afterwards in `validate.py`.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pydantic
import pydantic_core
from jsonschema import ValidationError as SchemaError
from pydantic_core import PydanticSerializationError

from plexica_gitops.desired.model import (
    API_VERSION,
    DOCUMENT_MODELS,
    Manifest,
    PlatformDocument,
    PluginDocument,
    TenantDocument,
)
from plexica_gitops.desired.schemas import kind_fast_check, kind_validator
from plexica_gitops.findings import Finding, Location, Severity, error, warning
from plexica_gitops.interning import SharedValues
from plexica_gitops.source.cache import Cache
from plexica_gitops.source.files import DesiredFiles, Located, desired_files
from plexica_gitops.source.loader import (
    WORK_TREE_DIRTY,
    JsonPath,
    LazyPositions,
    LoadedFile,
    LoadLimits,
    Positions,
    SourceDocument,
)
from plexica_gitops.source.tree import DirectoryRevision, EntryKind, Revision, SourceTree

# The whole name, ASCII digits only: `٠٠٠٤_x.sql` is not migration 4, `0004_x.sql\n` no file.
MIGRATION_FILE = re.compile(r"(?P<number>[0-9]{4})_(?P<name>[a-z0-9][a-z0-9_]*)\.sql", re.ASCII)


@dataclass(frozen=True)
class MigrationFile:
    number: int
    name: str
    path: str  # relative to the desired-state root
    checksum: str  # sha256 of the file's bytes, hex
    sql: str

    @property
    def version(self) -> str:
        return f"{self.number:04d}"


@dataclass
class PlatformEntry:
    document: PlatformDocument
    source: SourceDocument

    def location(self, *path: str | int) -> Location:
        return self.source.location(path)


@dataclass
class PluginEntry:
    document: PluginDocument
    source: SourceDocument
    manifest: Manifest
    manifest_source: SourceDocument
    manifest_prefix: JsonPath  # where the manifest sits in manifest_source
    migrations: list[MigrationFile] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.document.metadata.name

    def location(self, *path: str | int) -> Location:
        return self.source.location(path)

    def manifest_location(self, *path: str | int) -> Location:
        return self.manifest_source.location((*self.manifest_prefix, *path))


@dataclass
class TenantEntry:
    """One tenant. Its `source` keeps the positions but not the parsed data (None): the
    model is the tenant, and a desired state holds many thousands of them."""

    document: TenantDocument
    source: SourceDocument
    # With a cache: each binding's `configuration_digest`, by plugin id (the key of its
    # configuration's check in the cache; computed once, when the file was parsed)
    configuration_digests: dict[str, str] | None = None

    @property
    def slug(self) -> str:
        return self.document.metadata.name

    def location(self, *path: str | int) -> Location:
        return self.source.location(path)


def share_tenant_values(document: TenantDocument, shared: SharedValues) -> None:
    """Make a tenant's bindings share equal values with the other tenants' (a million
    bindings repeat the same plugin ids, configuration keys and small values; see
    `SharedValues`): each configuration is replaced with an equal one built from shared
    values, the plugin ids are shared strings, and bindings whose pydantic "fields set" are
    equal share one set (pydantic only ever copies it; the models are frozen). Every field
    keeps an equal value of the same types and key order, so nothing that reads the
    document can tell, and nothing writes to it."""
    spec = document.spec
    string, configuration_of, fields_sets = shared.string, shared.configuration, shared.fields_sets
    plugins = spec.plugins
    for binding in plugins.values():
        configuration = binding.configuration
        if configuration:
            binding.__dict__["configuration"] = configuration_of(configuration)
        fields_set = binding.__pydantic_fields_set__
        one = fields_sets.setdefault(frozenset(fields_set), fields_set)
        if one is not fields_set:
            object.__setattr__(binding, "__pydantic_fields_set__", one)
    spec.__dict__["plugins"] = {string(pid, pid): binding for pid, binding in plugins.items()}


@dataclass
class DesiredState:
    root: Path
    platform: PlatformEntry | None
    plugins: dict[str, PluginEntry]
    tenants: dict[str, TenantEntry]
    # str(source_revision): "sha256:<hex>" over every file of a directory, or
    # "<ref>@sha1:<40 hex>" for a git commit (see source/tree.py)
    revision: str
    files: list[str]
    # Declared but not built (its document failed the schema beyond repair, its file did
    # not load): rules about references to them stay silent instead of calling them "not
    # declared" - the finding that rejected them is what to fix.
    unbuilt_plugins: frozenset[str] = frozenset()
    platform_unbuilt: bool = False
    source_revision: Revision | None = None  # None only for a report that built nothing
    # where results of earlier runs are reused (validate.py's configuration checks)
    cache: Cache | None = field(default=None, repr=False, compare=False)

    @property
    def work_tree_dirty(self) -> bool | None:
        """A directory inside a git work tree: whether it differs from HEAD; else None."""
        revision = self.source_revision
        return revision.dirty if isinstance(revision, DirectoryRevision) else None

    @property
    def work_tree_head(self) -> str | None:
        """A directory inside a git work tree: its HEAD commit ("<ref>@sha1:<hex>")."""
        revision = self.source_revision
        if isinstance(revision, DirectoryRevision) and revision.work_tree is not None:
            return str(revision.work_tree)
        return None


@dataclass
class BuildResult:
    desired: DesiredState
    findings: list[Finding]
    # Where an invalid value was dropped or replaced to check the rest of its document
    # (and the mapping that held it): rule findings there would only echo that error.
    repaired: frozenset[Location] = frozenset()


def build_desired_state(source: Path | SourceTree, cache: Cache | None = None) -> BuildResult:
    """Load and build `source` (a directory, or a git commit's tree) one file at a time:
    each file's documents are built (and their parsed data dropped where the model
    replaces it) before the next file is read, so memory follows what the desired state
    keeps, not its text. With a `cache`, a tenant file whose bytes were built before is
    not parsed again: its built documents and findings come from the cache."""
    files = desired_files(source)
    builder = _Builder(files, cache)
    with _kept_from_the_collector():
        desired = builder.build(files.documents(None if cache is None else builder.reuse))
    return BuildResult(desired, builder.findings, frozenset(builder.repaired))


@contextmanager
def _kept_from_the_collector() -> Iterator[None]:
    """Build with the cyclic garbage collector paused, then move what was built out of its
    reach (`gc.freeze`). A desired state is hundreds of thousands of objects that all stay
    until the run ends, and that each later pass would scan again, finding nothing: at
    10,000 tenant files read from the cache the passes during and after the build were a
    fifth of a warm run. Nothing built forms reference cycles (see loader._gc_paused), so
    reference counting still frees all of it once it is dropped; what is frozen is only
    never scanned. First what an earlier build froze goes back to the collector and a
    collection runs (in a CLI run: over the modules only), so that no garbage cycle is
    frozen with it, and a long-lived process (reconcile) frees the cycles that were alive
    during the last build (a test checks)."""
    if not gc.isenabled():
        yield
        return
    gc.unfreeze()
    gc.collect()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        gc.enable()


@dataclass
class _TenantOutcome:
    """What building one Tenant document gives, before it joins the others (where a slug
    declared twice is found): what the cache keeps of a tenant file."""

    source: SourceDocument  # without its data
    findings: list[Finding]
    repaired: set[Location]
    model: TenantDocument | None
    digests: dict[str, str] | None
    # Some configuration may hold a NaN or an infinity (its JSON has a bare NaN or
    # Infinity, or a string with those letters): `_model_json` then proves by a round trip
    # that the model's JSON is exact. Only what is stored needs this; a cached one is exact.
    may_not_be_finite: bool = False


class _Builder:
    def __init__(self, source: DesiredFiles, cache: Cache | None = None) -> None:
        self.source = source
        self.cache = cache
        # what `_checked` found of the last document: its kind and apiVersion accepted,
        # the paths repaired
        self._kind_accepted = False
        self._last_repaired: frozenset[JsonPath] = frozenset()
        self.root = source.root
        self.findings: list[Finding] = []
        self.files: list[str] = []  # the YAML files read (or tried)
        self.digests: dict[str, bytes] = {}  # LoadedFile.digest by file, for the revision
        self.failed: set[str] = set()  # files with a loading error: contributed nothing
        self.extra_files: set[str] = set()
        self.platform: PlatformEntry | None = None
        self.platform_seen = False  # a Platform document exists, even if it was rejected
        self.plugins: dict[str, PluginEntry] = {}
        self.tenants: dict[str, TenantEntry] = {}
        self.shared = SharedValues()
        self.repaired: set[Location] = set()
        self.unbuilt_plugins: set[str] = set()
        self.manifest_files: set[str] = set()  # named by a Plugin's `manifestFile:`

    def build(self, stream: Iterable[LoadedFile]) -> DesiredState:
        # A document without `kind` is an error unless it is a manifest file's, and the
        # Plugin naming that file may come later: such documents wait for the end.
        waiting: list[SourceDocument] = []
        for loaded in stream:
            if loaded.listed:
                self.files.append(loaded.file)
            if loaded.digest is not None:
                self.digests[loaded.file] = loaded.digest
            self.findings.extend(loaded.findings)
            if any(f.is_error for f in loaded.findings):
                self.failed.add(loaded.file)  # "" for the root itself
            if loaded.cached is not None:
                for outcome in loaded.cached:
                    self._add_outcome(outcome)
                continue
            # a file of Tenant documents only is kept in the cache as built
            outcomes: list[_TenantOutcome] | None = [] if loaded.key is not None else None
            for doc in loaded.documents:
                self._note_manifest_file(doc)
                if "kind" not in doc.data:
                    outcomes = None
                    waiting.append(doc)
                elif outcomes is not None and doc.data["kind"] == "Tenant":
                    outcomes.append(self._tenant_outcome(doc))
                    self._add_outcome(outcomes[-1])
                else:
                    outcomes = None
                    self._add_document(doc)
            if outcomes is not None and loaded.key is not None:
                self._store(loaded, outcomes)
        for doc in waiting:
            if doc.file not in self.manifest_files:
                self._add_document(doc)
        if not self.platform_seen and not self.failed:
            self.findings.append(
                error(
                    "PGS121",
                    "no Platform document found",
                    "Add platform.yaml with `kind: Platform` (version, runtime provider).",
                    Location("."),
                )
            )
        files = sorted({*self.files, *self.extra_files})
        self.unbuilt_plugins.update(_plugin_of(file) for file in self.failed)
        self.unbuilt_plugins.discard("")
        revision = self.source.revision(files, self.cache, self.digests)
        if isinstance(revision, DirectoryRevision) and revision.dirty:
            self.findings.append(_dirty(revision))
        return DesiredState(
            root=self.root,
            platform=self.platform,
            plugins=self.plugins,
            tenants=self.tenants,
            revision=str(revision),
            files=files,
            unbuilt_plugins=frozenset(self.unbuilt_plugins - set(self.plugins)),
            platform_unbuilt=self.platform is None and (self.platform_seen or bool(self.failed)),
            source_revision=revision,
            cache=self.cache,
        )

    # --- dispatch ------------------------------------------------------------------------

    def _note_manifest_file(self, doc: SourceDocument) -> None:
        """Files named by `manifestFile:` are manifests, not envelopes: not dispatched."""
        spec = doc.data.get("spec")
        if doc.data.get("kind") != "Plugin" or not isinstance(spec, dict):
            return
        target = spec.get("manifestFile")
        if isinstance(target, str):
            self.manifest_files.add(str(PurePosixPath(PurePosixPath(doc.file).parent / target)))

    # --- the cache ---------------------------------------------------------------------

    def reuse(self, rel: str, raw: bytes) -> LoadedFile | str:
        """What the cache holds for this file's bytes, or the key to store them under."""
        assert self.cache is not None
        key = self.cache.key("file", rel.encode(), raw)
        found = self.cache.get_texts("file", key)
        if found is None:
            return key
        try:
            return _cached_file(rel, *found)
        except (TypeError, ValueError, KeyError, pydantic.ValidationError):
            return key  # not what this code writes: parsed again, and rewritten

    def _store(self, loaded: LoadedFile, outcomes: list[_TenantOutcome]) -> None:
        assert self.cache is not None and loaded.key is not None
        documents = []
        texts = []  # each document's positions and model, JSON texts kept as they are
        for outcome in outcomes:
            model = (
                None
                if outcome.model is None
                else _model_json(outcome.model, outcome.may_not_be_finite)
            )
            positions = outcome.source.positions
            if (outcome.model is not None and model is None) or not isinstance(
                positions, Positions
            ):
                return  # a value JSON cannot carry exactly (NaN): not cached
            documents.append(
                {
                    "index": outcome.source.index,
                    "line": outcome.source.line,
                    "findings": [_plain_finding(f) for f in outcome.findings],
                    "repaired": [_plain_location(where) for where in sorted(outcome.repaired)],
                    "digests": outcome.digests,
                }
            )
            texts += [positions.to_text(), "null" if model is None else model]
        entry = {"findings": [_plain_finding(f) for f in loaded.findings], "documents": documents}
        self.cache.put("file", loaded.key, entry, texts)

    def _tenant_outcome(self, doc: SourceDocument) -> _TenantOutcome:
        """`_add_document` of a Tenant document, up to adding it to the tenants."""
        outer = self.findings, self.repaired
        self.findings, self.repaired = [], set()
        try:
            model = self._checked(doc)
        finally:
            findings, repaired = self.findings, self.repaired
            self.findings, self.repaired = outer
        tenant = model if isinstance(model, TenantDocument) else None
        digests = None
        suspect = False
        if tenant is not None and self.cache is not None:
            digests = {}
            for pid, binding in tenant.spec.plugins.items():
                text = _configuration_json(binding.configuration)
                digests[pid] = _digest(text)
                suspect = suspect or b"NaN" in text or b"Infinity" in text
        source = dataclasses.replace(doc, data=None)
        return _TenantOutcome(source, findings, repaired, tenant, digests, suspect)

    def _add_outcome(self, outcome: _TenantOutcome) -> None:
        self.findings.extend(outcome.findings)
        self.repaired.update(outcome.repaired)
        if outcome.model is not None:
            self._add_tenant(outcome.model, outcome.source, outcome.digests)

    # --- documents -----------------------------------------------------------------------

    def _add_document(self, doc: SourceDocument) -> None:
        kind = doc.data.get("kind")
        model = self._checked(doc)
        if isinstance(model, PlatformDocument):
            self._add_platform(model, doc)
        elif isinstance(model, PluginDocument):
            if not self._add_plugin(model, doc, self._last_repaired):
                self.unbuilt_plugins.add(model.metadata.name)
        elif isinstance(model, TenantDocument):
            self._add_tenant(model, doc)
        elif kind == "Plugin" and self._kind_accepted:
            self.unbuilt_plugins.add(_declared_name(doc.data))

    def _checked(self, doc: SourceDocument) -> pydantic.BaseModel | None:
        """The model of a document (its kind and apiVersion checked, then its schema), or
        None; the paths repaired are left in `_last_repaired`."""
        self._kind_accepted = False
        self._last_repaired = frozenset()
        kind = doc.data.get("kind")
        api_version = doc.data.get("apiVersion")
        if kind is None or api_version is None:
            missing = "kind" if kind is None else "apiVersion"
            self.findings.append(
                error(
                    "PGS101",
                    f"document has no `{missing}`",
                    f"Start every document with `apiVersion: {API_VERSION}` and `kind: "
                    "Platform | Plugin | Tenant`.",
                    doc.location(()),
                )
            )
            return None
        if not isinstance(kind, str) or kind not in DOCUMENT_MODELS:
            self.findings.append(
                error(
                    "PGS102",
                    f"unknown kind {kind!r}",
                    "Use one of: " + ", ".join(sorted(DOCUMENT_MODELS)) + ".",
                    doc.location(("kind",)),
                )
            )
            return None
        if api_version != API_VERSION:
            self.findings.append(
                error(
                    "PGS103",
                    f"unsupported apiVersion {api_version!r} for kind {kind}",
                    f"Use `apiVersion: {API_VERSION}`.",
                    doc.location(("apiVersion",)),
                )
            )
            return None
        self.platform_seen |= kind == "Platform"
        self._kind_accepted = True
        model, self._last_repaired = self._parse(doc, kind, doc.data)
        return model

    def _parse(
        self, doc: SourceDocument, kind: str, data: dict[str, Any], wrapper: JsonPath = ()
    ) -> tuple[pydantic.BaseModel | None, frozenset[JsonPath]]:
        """Schema-check then model-parse `data`. `wrapper` is the path at which `doc`'s own
        content sits inside `data` (a manifest file is checked wrapped in a Plugin).

        A document with errors is reported, then REPAIRED to check the rest of it: each
        invalid value is dropped (a required text becomes empty), so that one typo does
        not hide the document's other problems; what cannot be repaired (a required
        mapping, the document itself) rejects it, as before. The places repaired are
        remembered, so that rules do not report them a second time; the paths repaired
        (inside `doc`) are returned with the model."""
        subjects = _document_subjects(kind, data)
        fast = kind_fast_check(kind)
        errors = (
            []
            if fast is not None and fast.valid(data)
            else sorted(kind_validator(kind).iter_errors(data), key=lambda e: list(e.path))
        )
        for schema_error in errors:
            for finding in _schema_findings(schema_error, doc, wrapper):
                self.findings.append(dataclasses.replace(finding, subjects=subjects))
        repair = _Repair(kind, data)
        if not repair.fix_schema(errors):
            return None, frozenset()
        reported = bool(errors)
        for _ in range(_MAX_REPAIRS):
            try:
                model = DOCUMENT_MODELS[kind].model_validate(repair.data)
            except pydantic.ValidationError as exc:
                # Values JSON Schema cannot express, such as .nan for a positive number.
                first = exc.errors()[0]
                loc: JsonPath = tuple(first["loc"])
                if not reported:
                    self.findings.append(
                        error(
                            "PGS113",
                            f"`{_dotted(loc)}`: {first['msg']}",
                            "Fix the value to match the schema (schemas/ documents every field).",
                            doc.location(loc[len(wrapper) :]),
                            subjects,
                        )
                    )
                    reported = True
                if not repair.drop(loc):
                    return None, frozenset()
                continue
            self.repaired.update(doc.location(path[len(wrapper) :]) for path in repair.places())
            return model, frozenset(path[len(wrapper) :] for path in repair.paths)
        return None, frozenset()

    def _add_platform(self, model: PlatformDocument, doc: SourceDocument) -> None:
        if self.platform is not None:
            first = self.platform.location()
            self.findings.append(
                error(
                    "PGS120",
                    f"a second Platform document (the first is at {first})",
                    "Keep exactly one `kind: Platform` document in the repository.",
                    doc.location(("kind",)),
                )
            )
            return
        self.platform = PlatformEntry(model, doc)

    def _add_tenant(
        self, model: TenantDocument, doc: SourceDocument, digests: dict[str, str] | None = None
    ) -> None:
        slug = model.metadata.name
        if slug in self.tenants:
            first = self.tenants[slug].location("metadata", "name")
            self.findings.append(
                error(
                    "PGV203",
                    f"tenant {slug!r} is declared twice (first at {first})",
                    "Tenant slugs (metadata.name) must be unique; rename or delete one.",
                    doc.location(("metadata", "name")),
                    (slug,),
                )
            )
            return
        share_tenant_values(model, self.shared)
        source = doc if doc.data is None else dataclasses.replace(doc, data=None)  # cached: None
        self.tenants[slug] = TenantEntry(model, source, digests)

    # --- plugins -------------------------------------------------------------------------

    def _add_plugin(
        self, model: PluginDocument, doc: SourceDocument, repaired: frozenset[JsonPath]
    ) -> bool:
        plugin_id = model.metadata.name
        if {("spec", "manifest"), ("spec", "manifestFile")} & repaired:
            return False  # the manifest itself was invalid: reported, nothing to build
        located = self._plugin_manifest(model, doc)
        if located is None:
            return False
        manifest, manifest_doc, prefix = located
        entry = PluginEntry(model, doc, manifest, manifest_doc, prefix)
        if manifest.id != plugin_id:
            self.findings.append(
                error(
                    "PGS131",
                    f"manifest id {manifest.id!r} differs from metadata.name {plugin_id!r}",
                    "The plugin id is metadata.name; set manifest.id to the same value.",
                    entry.manifest_location("id"),
                    (plugin_id, manifest.id),
                )
            )
            return False
        if plugin_id in self.plugins:
            first = self.plugins[plugin_id].location("metadata", "name")
            self.findings.append(
                error(
                    "PGV202",
                    f"plugin {plugin_id!r} is declared twice (first at {first})",
                    "Plugin ids must be unique across files; rename or delete one.",
                    doc.location(("metadata", "name")),
                    (plugin_id,),
                )
            )
            return False
        entry.migrations = self._migrations(entry)
        self.plugins[plugin_id] = entry
        return True

    def _plugin_manifest(
        self, model: PluginDocument, doc: SourceDocument
    ) -> tuple[Manifest, SourceDocument, JsonPath] | None:
        spec = model.spec
        if (spec.manifest is None) == (spec.manifest_file is None):
            self.findings.append(
                error(
                    "PGS130",
                    "a Plugin needs exactly one of `manifest` and `manifestFile`",
                    "Inline the spec 004 manifest under spec.manifest, or point "
                    "spec.manifestFile at a YAML/JSON file beside plugin.yaml.",
                    doc.location(("spec",)),
                    (model.metadata.name,),
                )
            )
            return None
        if spec.manifest is not None:
            return spec.manifest, doc, ("spec", "manifest")
        assert spec.manifest_file is not None
        return self._manifest_from_file(spec.manifest_file, doc, model.metadata.name)

    def _manifest_from_file(
        self, relative: str, doc: SourceDocument, plugin_id: str
    ) -> tuple[Manifest, SourceDocument, JsonPath] | None:
        where = doc.location(("spec", "manifestFile"))
        path = self._inside_root(PurePosixPath(doc.file).parent, relative, where, plugin_id)
        if path is None:
            return None
        if path.kind is None:
            self.findings.append(
                error(
                    "PGS132",
                    f"manifest file {relative!r} does not exist",
                    "Point spec.manifestFile at a file relative to this plugin.yaml.",
                    where,
                    (plugin_id,),
                )
            )
            return None
        documents, load_findings = self.source.load(path)  # a FIFO is never opened
        self.findings.extend(_about(plugin_id, load_findings))
        if load_findings:
            return None
        if len(documents) != 1:
            self.findings.append(
                error(
                    "PGS132",
                    f"manifest file {relative!r} holds {len(documents)} documents",
                    "A manifest file holds exactly one manifest mapping.",
                    where,
                    (plugin_id,),
                )
            )
            return None
        manifest_doc = documents[0]
        if manifest_doc.file == doc.file:
            self.findings.append(
                error(
                    "PGS132",
                    f"manifestFile {relative!r} points at this plugin's own file",
                    "Point spec.manifestFile at a separate manifest file (e.g. manifest.yaml).",
                    where,
                    (plugin_id,),
                )
            )
            return None
        self.extra_files.add(manifest_doc.file)
        wrapped = {"apiVersion": API_VERSION, "kind": "Plugin", "metadata": {"name": plugin_id}}
        wrapped["spec"] = {"state": "active", "manifest": manifest_doc.data}
        parsed, _ = self._parse(manifest_doc, "Plugin", wrapped, wrapper=("spec", "manifest"))
        if not isinstance(parsed, PluginDocument) or parsed.spec.manifest is None:
            return None
        return parsed.spec.manifest, manifest_doc, ()

    def _inside_root(
        self, base: PurePosixPath, relative: str, where: Location, plugin_id: str
    ) -> Located | None:
        """Resolve a path named in a file; refuse absolute paths, `..` and symlink escapes."""
        candidate = PurePosixPath(relative)
        escapes = candidate.is_absolute() or ".." in candidate.parts
        resolved = None if escapes else self.source.locate((base / candidate).as_posix())
        if resolved is None:
            self.findings.append(
                error(
                    "PGV801",
                    f"path {relative!r} leaves the desired-state repository",
                    "Use a relative path below the plugin's directory, without `..`, "
                    "absolute paths or symlinks that point outside the repository.",
                    where,
                    (plugin_id,),
                )
            )
            return None
        return resolved

    def _migrations(self, entry: PluginEntry) -> list[MigrationFile]:
        spec = entry.manifest.migrations
        if spec is None:
            return []
        where = entry.manifest_location("migrations", "path")
        base = PurePosixPath(entry.manifest_source.file).parent
        directory = self._inside_root(base, spec.path, where, entry.id)
        if directory is None:
            return []
        if directory.kind is not EntryKind.DIRECTORY:
            self.findings.append(
                error(
                    "PGV804",
                    f"migrations directory {spec.path!r} of plugin {entry.id!r} does not exist",
                    "Create it beside plugin.yaml, or remove `migrations` from the manifest.",
                    where,
                    (entry.id,),
                )
            )
            return []
        return self._migration_files(entry, directory)

    def _migration_files(self, entry: PluginEntry, directory: Located) -> list[MigrationFile]:
        found: dict[int, MigrationFile] = {}
        for name in self.source.names(directory):
            if PurePosixPath(name).suffix != ".sql":
                continue
            relative = str(PurePosixPath(directory.path, name))
            where = Location(relative)
            match = MIGRATION_FILE.fullmatch(name)
            if match is None:
                self.findings.append(
                    error(
                        "PGV802",
                        f"migration file name {name!r} is not NNNN_description.sql",
                        "Name migrations like 0001_create_contacts.sql: four digits, an "
                        "underscore, lowercase words joined by underscores.",
                        where,
                        (entry.id,),
                    )
                )
                continue
            if self.source.locate(relative) is None:
                self.findings.append(
                    error(
                        "PGV801",
                        f"migration {name!r} is a symlink leaving the repository",
                        "Commit the SQL file itself, not a link to a file outside.",
                        where,
                        (entry.id,),
                    )
                )
                continue
            migration = self._read_migration(relative, match, entry.id)
            if migration is None:
                continue
            clash = found.get(migration.number)
            if clash is not None:
                self.findings.append(
                    error(
                        "PGV803",
                        f"migration number {migration.version} of plugin {entry.id!r} is used "
                        f"twice: {clash.path} and {migration.path}",
                        "Renumber one of them; numbers order migrations and must be unique.",
                        where,
                        (entry.id,),
                    )
                )
                continue
            found[migration.number] = migration
        self.extra_files.update(m.path for m in found.values())
        return [found[number] for number in sorted(found)]

    def _read_migration(
        self, relative: str, match: re.Match[str], plugin_id: str
    ) -> MigrationFile | None:
        raw = self.source.read(relative, LoadLimits().max_file_bytes)
        if isinstance(raw, Finding):  # a directory or FIFO named NNNN_x.sql, too large, ...
            self.findings.extend(_about(plugin_id, [raw]))
            return None
        try:
            sql = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.findings.append(
                error(
                    "PGV802",
                    f"migration {PurePosixPath(relative).name!r} is not UTF-8 text",
                    "Save the SQL file as UTF-8.",
                    Location(relative),
                    (plugin_id,),
                )
            )
            return None
        return MigrationFile(
            number=int(match["number"]),
            name=match["name"],
            path=relative,
            checksum=hashlib.sha256(raw).hexdigest(),
            sql=sql,
        )


# --- the cache's form of a built tenant file -----------------------------------------------


def configuration_digest(configuration: dict[str, Any]) -> str:
    """What a configuration's check is cached under (the problems found against a schema,
    and that a rule found nothing in it): a digest of its JSON. The digest must tell apart
    any two configurations that a check could tell apart - values of another type (1,
    1.0, true), -0.0 from 0.0, NaN from the infinities, keys in another order (a message
    may list keys in the order written) - and it does, as their JSON texts differ."""
    return _digest(_configuration_json(configuration))


def _configuration_json(configuration: dict[str, Any]) -> bytes:
    """JSON text that differs for configurations that differ: pydantic's writer (several
    times faster than json.dumps), which writes a NaN or an infinity as a bare NaN or
    Infinity; a string with a lone surrogate, which UTF-8 cannot carry, by json.dumps
    after a 0xff byte (never in UTF-8, so never equal to the writer's text). A
    configuration is JSON-shaped (the loader keeps timestamps as text): no date or tuple
    that would write as a string or a list."""
    try:
        return pydantic_core.to_json(configuration, inf_nan_mode="constants")
    except PydanticSerializationError:
        text = json.dumps(configuration, default=str, separators=(",", ":"))
        return b"\xff" + text.encode("utf-8", "surrogatepass")


def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()[:32]


def _model_json(model: TenantDocument, may_not_be_finite: bool) -> str | None:
    """The model as JSON that gives it back exactly (fields set included); None when JSON
    cannot carry it (a NaN, an infinity, a lone surrogate).

    Exact without reading it back: a tenant's fields are text, booleans, enums, None and
    dicts of them, but for the configurations, which hold what the loader builds (dict,
    list, str, int, float, bool, None); the models have no validators. pydantic writes all
    of that as JSON that reads back equal and of the same types - ints of any size, -0.0,
    keys in their order, any text UTF-8 carries - except a NaN or an infinity, which it
    writes as null, and a lone surrogate, which it refuses. So only a model whose
    configurations may hold a NaN or an infinity (`may_not_be_finite`) is read back and
    compared. tests/unit/test_cache.py checks the model still has that shape."""
    try:
        text = model.model_dump_json(by_alias=True, exclude_unset=True)
    except PydanticSerializationError:
        return None  # a lone surrogate
    if not may_not_be_finite:
        return text
    try:
        again = TenantDocument.model_validate_json(text)
    except (ValueError, pydantic.ValidationError):
        return None
    if again != model or again.model_dump_json(by_alias=True, exclude_unset=True) != text:
        return None
    return text


def _plain_location(where: Location | None) -> list[Any] | None:
    return None if where is None else [where.file, where.line, where.column]


def _plain_finding(finding: Finding) -> list[Any]:
    return [
        finding.code,
        finding.severity.value,
        finding.message,
        finding.hint,
        _plain_location(finding.location),
        list(finding.subjects),
    ]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("text expected")
    return value


def _number(value: Any) -> int | None:
    if value is None or (type(value) is int and value >= 0):
        return value
    raise TypeError("a line or column is a number")


def _location_of(plain: Any) -> Location | None:
    if plain is None:
        return None
    file, line, column = plain
    return Location(_text(file), _number(line), _number(column))


def _finding_of(plain: Any) -> Finding:
    code, severity, message, hint, where, subjects = plain
    return Finding(
        _text(code),
        Severity(severity),
        _text(message),
        _text(hint),
        _location_of(where),
        tuple(map(_text, subjects)),
    )


def _cached_file(rel: str, plain: Any, texts: list[bytes]) -> LoadedFile:
    """A LoadedFile of a cache entry `_Builder._store` wrote (its value and texts); a
    TypeError, ValueError or KeyError when it is not one."""
    outcomes = []
    documents = plain["documents"]
    if len(texts) != 2 * len(documents):
        raise ValueError("a positions text and a model text per document")
    for number, document in enumerate(documents):
        positions_text, model = texts[2 * number], texts[2 * number + 1]
        digests = document["digests"]
        if digests is not None and not (
            isinstance(digests, dict) and all(isinstance(d, str) for d in digests.values())
        ):
            raise TypeError("digests are text by plugin id")
        index, line = document["index"], document["line"]
        if type(index) is not int or type(line) is not int:
            raise TypeError("index and line are numbers")
        positions = LazyPositions(positions_text.decode())
        source = SourceDocument(rel, index, line, None, positions)
        tenant = None if model == b"null" else TenantDocument.model_validate_json(model)
        bindings = tenant.spec.plugins if tenant is not None else None
        if bindings is not None and digests is not None and digests.keys() != bindings.keys():
            raise ValueError("one digest per binding")
        repaired = {_location_of(where) for where in document["repaired"]}
        outcomes.append(
            _TenantOutcome(
                source,
                [_finding_of(f) for f in document["findings"]],
                {where for where in repaired if where is not None},
                tenant,
                digests,
            )
        )
    findings = [_finding_of(f) for f in plain["findings"]]
    return LoadedFile(rel, [], findings, listed=True, cached=outcomes)


# --- repairing a document that failed its schema ----------------------------------------

_MAX_REPAIRS = 16  # rounds; each drops or fills at least one value
_DROP = object()


class _Repair:
    """Copy-on-write repairs of one document's data (the loaded data is never changed):
    the value at each error's path is dropped, an unknown key removed, a missing required
    text filled with "". A value inside a list drops the whole list, so that the indexes
    of the items kept still point at their lines."""

    def __init__(self, kind: str, data: dict[str, Any]) -> None:
        self.kind = kind
        self.data = data
        self.paths: list[JsonPath] = []

    def places(self) -> Iterator[JsonPath]:
        """Each repaired path and the mapping that held it."""
        for path in self.paths:
            yield path
            yield path[:-1]

    def fix_schema(self, errors: list[SchemaError]) -> bool:
        """Repair until the data passes the schema; False when it cannot."""
        for _ in range(_MAX_REPAIRS):
            if not errors:
                return True
            for schema_error in errors:
                if not self._fix(schema_error):
                    return False
            errors = list(kind_validator(self.kind).iter_errors(self.data))
        return False

    def drop(self, loc: JsonPath) -> bool:
        """Drop the value at a model error's `loc` (cut to the part that is in the data),
        then repair the schema again."""
        path: list[str | int] = []
        node: Any = self.data
        for part in loc:
            in_mapping = isinstance(node, dict) and isinstance(part, str) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if not (in_mapping or in_list):
                break
            node = node[part]
            path.append(part)
        if not self._drop(tuple(path)):
            return False
        return self.fix_schema(list(kind_validator(self.kind).iter_errors(self.data)))

    def _fix(self, schema_error: SchemaError) -> bool:
        path: JsonPath = tuple(schema_error.absolute_path)
        instance = schema_error.instance
        schema: Any = schema_error.schema
        required: Any = schema_error.validator_value
        if schema_error.validator == "additionalProperties" and isinstance(instance, dict):
            known = schema.get("properties", {})
            return all(self._drop((*path, key)) for key in instance if key not in known)
        if schema_error.validator == "required" and isinstance(instance, dict):
            properties = schema.get("properties", {})
            for key in required:
                if key in instance:
                    continue
                if properties.get(key, {}).get("type") != "string":
                    return False  # a required mapping or choice: nothing to check without it
                self._replace((*path, key), "")
            return True
        return self._drop(path)

    def _drop(self, path: JsonPath) -> bool:
        cut = next((i for i, part in enumerate(path) if isinstance(part, int)), len(path))
        path = path[:cut]
        if not path:
            return False  # the document itself
        self._replace(path, _DROP)
        return True

    def _replace(self, path: JsonPath, value: Any) -> None:
        def rebuilt(node: Any, rest: JsonPath) -> Any:
            head = rest[0]
            present = (isinstance(node, dict) and head in node) or (
                isinstance(node, list) and isinstance(head, int) and head < len(node)
            )
            if not present and (len(rest) > 1 or value is _DROP or not isinstance(node, dict)):
                return node  # already gone with an earlier repair
            copy: Any = dict(node) if isinstance(node, dict) else list(node)
            if len(rest) > 1:
                copy[head] = rebuilt(node[head], rest[1:])
            elif value is _DROP:
                del copy[head]
            else:
                copy[head] = value
            return copy

        self.data = rebuilt(self.data, path)
        self.paths.append(path)


def _document_subjects(kind: str, data: dict[str, Any]) -> tuple[str, ...]:
    """Who a Plugin's or Tenant's findings are about: its metadata.name, as written."""
    name = _declared_name(data) if kind in ("Plugin", "Tenant") else ""
    return (name,) if name else ()


def _declared_name(data: dict[str, Any]) -> str:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _plugin_of(file: str) -> str:
    """The plugin id a file belongs to by the layout convention (plugins/<id>/...)."""
    parts = PurePosixPath(file).parts
    return parts[1] if len(parts) > 2 and parts[0] == "plugins" else ""


# --- schema errors -> findings -----------------------------------------------------------

_FRIENDLY_REFS = {
    "FromEnv": "{fromEnv: NAME}",
    "SecretRef": "{secretRef: {name, key}}",
}


def _schema_findings(
    schema_error: SchemaError, doc: SourceDocument, wrapper: JsonPath
) -> list[Finding]:
    """Findings located in `doc`; the error's path is inside the wrapped data."""
    path: JsonPath = tuple(schema_error.absolute_path)[len(wrapper) :]
    kind = schema_error.validator
    instance = schema_error.instance
    schema: Any = schema_error.schema
    expected: Any = schema_error.validator_value
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = sorted(schema.get("properties", {}))
        unknown = [key for key in instance if key not in known]
        return [_unknown_field(key, known, doc, (*path, key)) for key in unknown]
    if kind == "required" and isinstance(instance, dict):
        missing = [key for key in expected if key not in instance]
        where = ".".join(str(p) for p in path) or "the document"
        return [
            error(
                "PGS112",
                f"missing required field `{key}` in {where}",
                f"Add `{key}:` here (see the schema in schemas/ for what it takes).",
                doc.location(path),
            )
            for key in missing
        ]
    if kind == "type":
        return [
            error(
                "PGS111",
                f"`{_dotted(path)}` must be of type {expected}, not {_json_type(instance)}",
                f"Write a {expected} here.",
                doc.location(path),
            )
        ]
    if kind in ("anyOf", "oneOf"):
        forms = [_describe_subschema(s) for s in expected]
        return [
            error(
                "PGS111",
                f"`{_dotted(path)}` must be one of: {', '.join(forms)}",
                "Secrets are never written in git: use {fromEnv: NAME} or "
                "{secretRef: {name, key}} for them.",
                doc.location(path),
            )
        ]
    return [
        error(
            "PGS113",
            f"`{_dotted(path)}`: {_value_message(schema_error)}",
            "Fix the value to match the schema (schemas/ documents every field).",
            doc.location(path),
        )
    ]


def _unknown_field(key: str, known: list[str], doc: SourceDocument, path: JsonPath) -> Finding:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"Did you mean `{close[0]}`?" if close else "Allowed here: " + ", ".join(known) + "."
    return error(
        "PGS110",
        f"unknown field `{key}` in {_dotted(path[:-1]) or 'the document'}",
        hint,
        doc.location(path),
    )


def _value_message(schema_error: SchemaError) -> str:
    kind = schema_error.validator
    if kind in ("enum", "const"):
        allowed = schema_error.validator_value
        options = allowed if isinstance(allowed, list) else [allowed]
        shown = ", ".join(repr(option) for option in options)
        return f"{schema_error.instance!r} is not allowed; use one of {shown}"
    return schema_error.message


def _describe_subschema(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _FRIENDLY_REFS.get(name, name)
    return str(schema.get("type", "value"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _dotted(path: JsonPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _about(plugin_id: str, findings: list[Finding]) -> list[Finding]:
    """Findings in a plugin's own files (its manifest file, its migrations) name it."""
    return [f if f.subjects else dataclasses.replace(f, subjects=(plugin_id,)) for f in findings]


def _dirty(revision: DirectoryRevision) -> Finding:
    head = str(revision.work_tree) if revision.work_tree else "no commit yet"
    return warning(
        WORK_TREE_DIRTY,
        f"the desired-state directory differs from the HEAD of its git work tree ({head}): "
        "what is read is not a commit",
        "Commit (or stash) the changes to plan what git holds, or plan a commit with "
        "--repo and --ref.",
        Location("."),
    )
