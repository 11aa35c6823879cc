"""The live state: what exists on the platform, as the planner sees it.

It is a plain value, observed from PostgreSQL, the runtime provider and Kafka (or read from
a JSON file with `plan --live-state FILE`, where `{}` is an empty platform). The planner
never performs I/O; everything it needs about the world is in here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from plexica_gitops.model import TenantStatus


class LifecycleStatus(StrEnum):
    """Spec 004 FR-003: the plugin lifecycle as the platform records it."""

    REGISTERED = "REGISTERED"
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    UNINSTALLING = "UNINSTALLING"
    UNINSTALLED = "UNINSTALLED"


class ObservedPart(StrEnum):
    """A part of the live platform observed apart from the store; a plan made without one
    (`plan --unobserved PART`) says so."""

    RUNTIME = "runtime"  # the runtime provider: workloads
    BROKER = "broker"  # the event broker: topics

    @property
    def holds(self) -> str:
        return "workloads" if self is ObservedPart.RUNTIME else "topics"

    @property
    def label(self) -> str:
        return "the runtime provider" if self is ObservedPart.RUNTIME else "the event broker"


class _Live(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiveResources(_Live):
    cpu: str | None = None
    memory: str | None = None


class LiveReplica(_Live):
    """One replica (container, pod) as the runtime reports it, whatever spec built it."""

    name: str
    version: str
    image: str = ""
    manifest_hash: str = ""
    env_hash: str = ""
    running: bool = True
    ready: bool = False  # answered its readiness probe when observed
    url: str | None = None  # where the gateway would send traffic; None: no address yet

    @property
    def build(self) -> tuple[str, str, str, str]:
        """What tells replicas of one spec from another's."""
        return (self.version, self.image, self.manifest_hash, self.env_hash)


class LiveWorkload(_Live):
    """The plugin's containers (or Deployment) as the runtime provider reports them.

    `instances` lists every replica. A rollout cut short by a crash leaves replicas of two
    versions: the counts (`replicas`, `ready_replicas`, `running`) cover all of them, and
    `image`, `version` and the hashes are those of the most common build. Snapshots from
    before `instances` existed leave it empty: the other fields then describe them all."""

    image: str
    version: str
    manifest_hash: str = ""
    replicas: int = Field(ge=0, description="Replicas that exist (running or stopped).")
    ready_replicas: int = Field(default=0, ge=0)
    running: bool = True
    resources: LiveResources = Field(default_factory=LiveResources)
    env_hash: str = ""  # hash of the env *specification* (names and references), never values
    # keyed digest of the env values the replicas run with (workload.env_digest); "mixed"
    # when they differ, "" when unknown (replicas made before digests were labelled)
    env_digest: str = ""
    # Registered endpoints (service registry) whose replica no longer runs: traffic sent
    # there fails. Filled in when the store and the runtime are observed together.
    stale_endpoints: int = Field(default=0, ge=0)
    # Ready replicas of a routed plugin that the service registry does not list: they get
    # no traffic. Filled in like `stale_endpoints`.
    unregistered_endpoints: int = Field(default=0, ge=0)
    instances: tuple[LiveReplica, ...] = ()

    def builds(self) -> dict[tuple[str, str, str, str], int]:
        """How many replicas each build has, most common first (ties by version)."""
        counts: dict[tuple[str, str, str, str], int] = {}
        for replica in self.instances:
            counts[replica.build] = counts.get(replica.build, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


class LivePermission(_Live):
    name: str
    description: str = ""


class LiveRoutes(_Live):
    base_path: str
    frontend_prefix: str | None = None
    remote_entry: str | None = None


class LivePlugin(_Live):
    status: LifecycleStatus
    version: str
    manifest_hash: str = ""
    dependencies: dict[str, str] = Field(default_factory=dict)  # plugin id -> version range
    error: str | None = None  # last recorded failure, e.g. an image pull error
    workload: LiveWorkload | None = None
    permissions: dict[str, LivePermission] = Field(default_factory=dict)
    routes: LiveRoutes | None = None
    subscriptions: dict[str, str] = Field(default_factory=dict)  # topic -> consumer group
    # The rest of what apply writes to the catalog row, read back so that an edit made
    # outside plexica-gitops shows as drift; None: not observed (an older snapshot).
    name: str | None = None
    # `stable_hash` of the manifest the row holds, recomputed when observed (the
    # manifest_hash column can be edited apart from it); UNREADABLE when the stored
    # manifest is too deep or too large to read.
    stored_manifest_hash: str | None = None


UNREADABLE = "(unreadable)"


def not_read(why: str) -> str:
    """What a plan shows for a stored value it did not read (out of bounds): apply's
    compare-and-set accepts whatever is stored there, since the plan overwrites it."""
    return f"{NOT_READ_PREFIX}{why})"


NOT_READ_PREFIX = "(not read: "


class LiveTopic(_Live):
    owner: str | None = None  # plugin id that created it; None: not created by us
    partitions: int = Field(ge=1)
    replication_factor: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)


# A million bindings and twice as many migration records: these two are slotted pydantic
# dataclasses rather than models, about a third less memory each and faster to parse.
_SMALL = ConfigDict(extra="forbid")


@pydantic_dataclass(frozen=True, slots=True, config=_SMALL)
class LiveTenantPlugin:
    enabled: bool
    configuration: dict[str, Any] = Field(default_factory=dict)


@pydantic_dataclass(frozen=True, slots=True, config=_SMALL)
class AppliedMigration:
    version: int
    name: str
    checksum: str


class LiveTenant(_Live):
    id: str
    schema_name: str
    status: TenantStatus
    plugins: dict[str, LiveTenantPlugin] = Field(default_factory=dict)
    migrations: dict[str, list[AppliedMigration]] = Field(default_factory=dict)


class LiveState(_Live):
    """Everything observed. `topics_observed` is false when the broker could not be read,
    `workloads_observed` when the runtime provider was not: the planner then plans no
    changes there rather than recreating what it cannot see."""

    platform_version: str | None = None
    plugins: dict[str, LivePlugin] = Field(default_factory=dict)
    tenants: dict[str, LiveTenant] = Field(default_factory=dict)
    topics: dict[str, LiveTopic] = Field(default_factory=dict)
    topics_observed: bool = True
    # False when no runtime provider was asked: workload changes are then left out of the
    # plan (a plugin that may have containers is not planned to get new ones).
    workloads_observed: bool = True
    # address -> fingerprint of the desired attributes the reconciler last applied there;
    # lets a plan tell drift (live changed out of band) from a change made in git.
    last_applied: dict[str, str] = Field(default_factory=dict)
    # address -> why a value there could not be read (nested too deep, too large): it was
    # left out (a binding's configuration reads as {}), never shown.
    unreadable: dict[str, str] = Field(default_factory=dict)

    def without(self, parts: AbstractSet[ObservedPart]) -> LiveState:
        """This state as if `parts` had not been observed (`plan --unobserved`)."""
        update: dict[str, Any] = {}
        if ObservedPart.BROKER in parts:
            update.update(topics={}, topics_observed=False)
        if ObservedPart.RUNTIME in parts:
            plugins = {
                pid: plugin.model_copy(update={"workload": None})
                for pid, plugin in self.plugins.items()
            }
            update.update(plugins=plugins, workloads_observed=False)
        return self.model_copy(update=update) if update else self

    @classmethod
    def from_json(cls, data: str | bytes) -> LiveState:
        """`model_validate_json`, with the same result and errors, faster and in far less
        memory for large snapshots: see `parse_live_state`."""
        return parse_live_state(data)

    def fingerprint(self) -> str:
        """A hash of everything observed that does not depend on the order the observer
        happened to read things in. Tenants and bindings are many (a million bindings), so
        they are hashed entry by entry rather than dumped whole."""
        digest = hashlib.sha256()
        flags = (self.platform_version, self.topics_observed, self.workloads_observed)
        digest.update(json.dumps(flags).encode())
        for section in (self.plugins, self.topics):
            for key in sorted(section):
                entry = section[key].model_dump(mode="json")
                if section is self.plugins:
                    _drop_unset(entry, _LATER_PLUGIN_FIELDS)
                workload = entry.get("workload")
                if workload:
                    _drop_unset(workload, _LATER_WORKLOAD_FIELDS)
                digest.update(json.dumps([key, entry], sort_keys=True).encode())
        # The same migration record is usually shared by every tenant (observe_store and
        # parse_live_state build it once): its text is made once per record object.
        records: dict[int, str] = {}
        canonical = _canonical_json
        for slug in sorted(self.tenants):
            tenant = self.tenants[slug]
            parts = [slug, tenant.id, tenant.schema_name, tenant.status.value]
            bindings = tenant.plugins
            for pid in sorted(bindings):
                binding = bindings[pid]
                configuration = binding.configuration
                parts += (
                    pid,
                    "True" if binding.enabled else "False",
                    canonical(configuration) if configuration else "{}",
                )
            migrations = tenant.migrations
            for pid in sorted(migrations):
                for m in migrations[pid]:
                    text = records.get(id(m))
                    if text is None:
                        text = records[id(m)] = f":{m.version}:{m.name}:{m.checksum}"
                    parts.append(pid + text)
            digest.update("\x1f".join(parts).encode())
        applied = self.last_applied
        digest.update("\x1f".join(f"{a}={applied[a]}" for a in sorted(applied)).encode())
        if self.unreadable:  # hashed only when there is any: older fingerprints stay the same
            digest.update(json.dumps(self.unreadable, sort_keys=True).encode())
        return "sha256:" + digest.hexdigest()


# Workload fields added after the fingerprint was first defined are hashed only when set:
# a state that does not use them keeps the fingerprint it always had.
_LATER_WORKLOAD_FIELDS = {"unregistered_endpoints": 0, "instances": []}
_LATER_PLUGIN_FIELDS = {"name": None, "stored_manifest_hash": None}


def _drop_unset(entry: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, default in fields.items():
        if entry.get(name) == default:
            del entry[name]


# Key order differs between sources (jsonb sorts keys, a JSON file keeps them). The text
# is json.dumps(value, sort_keys=True, separators=(",", ":")); a million of them are made
# per fingerprint, so the C encoder json.dumps ends up in is made once and called directly.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_canonical = (
    _c_make_encoder(
        None,  # markers: no circular-reference check (the values come from JSON)
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
    if _c_make_encoder is not None
    else None
)


def _canonical_json(value: dict[str, Any]) -> str:
    if _encode_canonical is None:  # pragma: no cover - CPython without its _json module
        return _CANONICAL.encode(value)
    return "".join(_encode_canonical(value, 0))


# The JSON text of a value, keys in their order (-0.0, 1.0, 1 and true all differ): what
# SharedValues tells nested values apart by.
_encode_plain = (
    _c_make_encoder(
        None,
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,  # sort_keys: the order is part of the value as read
        False,
        True,
    )
    if _c_make_encoder is not None
    else None
)
_PLAIN = json.JSONEncoder(separators=(",", ":"))


def _json_text(value: Any) -> str:
    if _encode_plain is None:  # pragma: no cover - CPython without its _json module
        return _PLAIN.encode(value)
    return "".join(_encode_plain(value, 0))


def stable_hash(value: Any) -> str:
    """A short, deterministic hash of a JSON-compatible value (manifests, env specs)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# A snapshot's values are read within the bounds the store's are (store/observe.py) and
# YAML's (loader.py): a configuration nested at most MAX_JSON_DEPTH levels, and a tenant's
# entry at most MAX_TENANT_BYTES of JSON text. Checked as each part is decoded, before
# pydantic, the planner or any recursive function sees it.
MAX_JSON_DEPTH = 64
MAX_TENANT_BYTES = 64 << 20


class LiveStateError(Exception):
    """A snapshot that cannot be read safely: `message` names where, never the value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _TooDeep(Exception):
    pass


def _depth(value: Any, limit: int) -> int:
    """How deep lists and objects nest in `value` (0 for a scalar), counted without
    recursion; stops once past `limit`."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is dict:
            children = item.values()
        elif kind is list:
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level) for child in children if type(child) in (dict, list))
    return deepest


def check_bounds(state: LiveState) -> None:
    """Raise LiveStateError when a configuration of `state` nests too deep (the slow path:
    a state that pydantic built)."""
    for slug, tenant in state.tenants.items():
        for pid, binding in tenant.plugins.items():
            if _depth(binding.configuration, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                raise LiveStateError(_too_deep(f"tenants.{slug}.plugins.{pid}.configuration"))


def _too_deep(where: str) -> str:
    return f"{where} is nested deeper than {MAX_JSON_DEPTH} levels"


def parse_live_state(data: str | bytes) -> LiveState:
    """`LiveState.model_validate_json(data)`: the same state, and the same errors, with far
    less time and memory for a large snapshot.

    A million bindings and two million migration records, validated by pydantic from JSON,
    take half a minute and several GB at the peak (pydantic holds the whole parsed document
    while it builds the models). Here the document is parsed with `json.loads`; tenants are
    built directly from it, each `AppliedMigration` once per distinct record and shared by
    every tenant that applied it (as `store.observe` does), and so is each distinct list
    of them; the configurations are rebuilt from shared strings and nested values (see
    `SharedValues`). Everything else is validated by pydantic. Whenever the document is not
    plainly of the expected shape and types (a value pydantic would coerce or reject, an
    unknown key, invalid JSON, a lone surrogate), `LiveState.model_validate_json` decides,
    so its result or its error is exactly what the caller gets.

    Bounds (MAX_JSON_DEPTH, MAX_TENANT_BYTES) hold on both paths: what breaks them raises
    LiveStateError naming where."""
    state = _parse_plain(data)
    if state is not None:
        return state
    try:
        state = LiveState.model_validate_json(data)
    except RecursionError:
        raise LiveStateError(_too_deep("the document")) from None
    check_bounds(state)
    return state


_TENANT_KEYS = frozenset({"id", "schema_name", "status", "plugins", "migrations"})
_STATUSES = {status.value: status for status in TenantStatus}
# The fields the plain path builds. Should the models gain one, it steps aside for pydantic
# rather than leave it out.
_SHAPES_KNOWN = (
    LiveTenant.model_fields.keys() == _TENANT_KEYS
    and [f.name for f in dataclasses.fields(LiveTenantPlugin)] == ["enabled", "configuration"]
    and [f.name for f in dataclasses.fields(AppliedMigration)] == ["version", "name", "checksum"]
)


def _parse_plain(data: str | bytes) -> LiveState | None:
    """The state, or None to let pydantic decide. The top-level object is walked here so
    that each tenant is decoded and turned into a LiveTenant on its own: the whole parsed
    document never exists at once."""
    if not _SHAPES_KNOWN:  # pragma: no cover - a model changed without this parser
        return None
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        if "\\ud" in text or "\\uD" in text:
            return None  # surrogates: json.loads and pydantic's parser disagree on lone ones
        document: dict[str, Any] = {}
        tenants: dict[str, LiveTenant] | None = None
        more, end = _object_start(text, 0)
        while more:
            key, end = _key(text, end)
            if key in document or (key == "tenants" and tenants is not None):
                return None  # a repeated key
            if key == "tenants" and text.startswith("{", end):
                tenants, end = _plain_tenants(text, end)
                if tenants is None:
                    return None
            else:
                try:
                    document[key], end = _decode(text, end)
                except RecursionError:
                    raise LiveStateError(_too_deep(key)) from None
            more, end = _next_member(text, end)
        if _skip(text, end) != len(text):
            return None
        update: dict[str, Any] = {}
        if tenants is not None:
            update["tenants"] = tenants
        # A million addresses: kept as decoded when plainly strings, not copied by pydantic.
        applied = document.get("last_applied")
        if type(applied) is dict and all(type(v) is str for v in applied.values()):
            update["last_applied"] = document.pop("last_applied")
        state = LiveState.model_validate(document)
        return state.model_copy(update=update) if update else state
    except (ValueError, TypeError, KeyError, IndexError):  # a ValidationError is a ValueError
        return None


_decode = json.JSONDecoder().raw_decode  # the value at an index; no whitespace before it
_scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's


def _skip(text: str, index: int) -> int:
    """Past the whitespace at index."""
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


class _Malformed(ValueError):
    pass


def _object_start(text: str, index: int) -> tuple[bool, int]:
    """The object at index: whether it has members, and where the first key starts (or,
    when it is empty, where the object ends)."""
    end = _skip(text, index)
    if not text.startswith("{", end):
        raise _Malformed
    end = _skip(text, end + 1)
    return (False, end + 1) if text.startswith("}", end) else (True, end)


def _key(text: str, index: int) -> tuple[str, int]:
    """A member's key at index: the key and where its value starts."""
    if not text.startswith('"', index):
        raise _Malformed
    key, end = _scan_string(text, index + 1)
    end = _skip(text, end)
    if not text.startswith(":", end):
        raise _Malformed
    return key, _skip(text, end + 1)


def _next_member(text: str, index: int) -> tuple[bool, int]:
    """After a member's value: whether another member follows, and where its key starts
    (or where the object ends)."""
    end = _skip(text, index)
    if text.startswith(",", end):
        return True, _skip(text, end + 1)
    if not text.startswith("}", end):
        raise _Malformed
    return False, end + 1


def _plain_tenants(text: str, index: int) -> tuple[dict[str, LiveTenant] | None, int]:
    shared: dict[tuple[int, str, str], AppliedMigration] = {}
    values = SharedValues(bounded=True)
    tenants: dict[str, LiveTenant] = {}
    more, end = _object_start(text, index)
    while more:
        slug, end = _key(text, end)
        start = end
        try:
            raw, end = _decode(text, end)
        except RecursionError:
            raise LiveStateError(_too_deep(f"tenants.{slug}")) from None
        if end - start > MAX_TENANT_BYTES:
            raise LiveStateError(
                f"tenants.{slug} is larger than {MAX_TENANT_BYTES >> 20} MiB of JSON"
            )
        try:
            tenant = _plain_tenant(raw, shared, values)
        except _TooDeep as too_deep:
            where = f"tenants.{slug}.plugins.{too_deep}.configuration"
            raise LiveStateError(_too_deep(where)) from None
        if tenant is None or slug in tenants:
            return None, end
        tenants[slug] = tenant
        more, end = _next_member(text, end)
    return tenants, end


def _plain_tenant(
    raw: Any, shared: dict[tuple[int, str, str], AppliedMigration], values: SharedValues
) -> LiveTenant | None:
    if type(raw) is not dict or not raw.keys() <= _TENANT_KEYS:
        return None
    tenant_id, schema_name, status = raw["id"], raw["schema_name"], raw["status"]
    if type(tenant_id) is not str or type(schema_name) is not str or type(status) is not str:
        return None
    raw_plugins = raw.get("plugins", {})
    raw_migrations = raw.get("migrations", {})
    if type(raw_plugins) is not dict or type(raw_migrations) is not dict:
        return None
    plugins: dict[str, LiveTenantPlugin] = {}
    new = object.__new__
    set_enabled, set_configuration = _BINDING_SLOTS
    string, configuration_of = values.string, values.configuration
    histories = values.histories
    for pid, binding in raw_plugins.items():
        if type(binding) is not dict:
            return None
        enabled = binding.get("enabled")
        configuration = binding.get("configuration", _EMPTY) if len(binding) == 2 else _EMPTY
        if type(enabled) is not bool or type(configuration) is not dict:
            return None
        if configuration is _EMPTY:
            if len(binding) != 1:
                return None
            configuration = {}
        elif configuration:
            try:
                configuration = configuration_of(configuration)
            except _TooDeep:
                raise _TooDeep(pid) from None
        plugin = new(LiveTenantPlugin)
        set_enabled(plugin, enabled)
        set_configuration(plugin, configuration)
        plugins[string(pid, pid)] = plugin
    migrations: dict[str, list[AppliedMigration]] = {}
    for pid, records in raw_migrations.items():
        if type(records) is not list:
            return None
        applied: list[AppliedMigration] = []
        for record in records:
            if type(record) is not dict or len(record) != 3:
                return None
            key = (record["version"], record["name"], record["checksum"])
            if type(key[0]) is not int:
                return None
            migration = shared.get(key)
            if migration is None:
                if type(key[1]) is not str or type(key[2]) is not str:
                    return None
                migration = shared[key] = AppliedMigration(*key)
            applied.append(migration)
        # the records are shared, so equal lists are too: one per distinct history
        history = tuple(map(id, applied))
        migrations[string(pid, pid)] = histories.setdefault(history, applied)
    tenant_status = _STATUSES.get(status)
    if tenant_status is None:
        return None
    return LiveTenant.model_construct(
        _fields_set=set(raw),
        id=tenant_id,
        schema_name=schema_name,
        status=tenant_status,
        plugins=plugins,
        migrations=migrations,
    )


_EMPTY: dict[str, Any] = {}


class SharedValues:
    """Equal values read for different tenants, made one object. A million bindings repeat
    the same plugin ids, configuration keys and enum-like values, and many small nested
    values (a time window, a list of options): each distinct string, and each distinct list
    or object nested in a configuration, is kept once and shared. A configuration itself
    stays one object per binding (most differ). Safe because nothing mutates a
    configuration once it is read (the planner, renderers and steps only read it, and copy
    before changing it), and what replaces a value is equal to it, of the same types and
    key order."""

    def __init__(self, *, bounded: bool = False) -> None:
        """`bounded`: a nested value deeper than MAX_JSON_DEPTH raises _TooDeep."""
        self.bounded = bounded
        self.strings: dict[str, str] = {}
        self.string = self.strings.setdefault
        # the JSON text of a nested list or object (keys in their order) -> the shared one
        self.nested: dict[str, Any] = {}
        # the ids of a tenant's applied records (shared objects) -> the one list of them
        self.histories: dict[tuple[int, ...], list[AppliedMigration]] = {}
        self.fields_sets: dict[frozenset[str], set[str]] = {}

    def configuration(self, configuration: dict[str, Any]) -> dict[str, Any]:
        """An equal configuration built from shared keys and values."""
        string, nested, check = self.string, self._nested, self.bounded
        shared: dict[str, Any] = {}
        for k, v in configuration.items():
            kind = type(v)
            if kind is str:
                v = string(v, v)
            elif kind is dict or kind is list:
                v = nested(v, check)
            shared[string(k, k) if type(k) is str else k] = v
        return shared

    def _nested(self, item: Any, check: bool) -> Any:
        """The shared list or object equal to `item`. Its JSON text tells it apart from
        almost every unequal value (1, 1.0, true and -0.0 all differ; the C encoder makes
        it cheap); what the text cannot tell (a key that is not a string, a tuple) the
        type and equality check on a hit does. Values JSON cannot hold stay as they are.
        `check`: a new value nested too deep raises _TooDeep (checked once per distinct
        value: equal ones share it, and its parts are shallower)."""
        try:
            key = _json_text(item)
        except RecursionError:
            if check:
                raise _TooDeep from None
            return item  # a recursive alias from YAML
        except (TypeError, ValueError):
            return item  # a date from YAML, ...
        found = self.nested.get(key)
        if found is None:
            # the configuration holding it is one level more
            if check and _depth(item, MAX_JSON_DEPTH) >= MAX_JSON_DEPTH:
                raise _TooDeep
            found = self.nested[key] = self._rebuilt(item)
            return found
        return found if type(found) is type(item) and found == item else item

    def _rebuilt(self, item: Any) -> Any:
        string, nested = self.string, self._nested
        if type(item) is dict:
            return {
                string(k, k) if type(k) is str else k: (
                    string(v, v)
                    if type(v) is str
                    else nested(v, False)
                    if type(v) is dict or type(v) is list
                    else v
                )
                for k, v in item.items()
            }
        return [
            string(v, v)
            if type(v) is str
            else nested(v, False)
            if type(v) is dict or type(v) is list
            else v
            for v in item
        ]


# The slots' own setters: a binding is made without running the (validating) __init__.
_BINDING_SLOTS = (
    LiveTenantPlugin.__dict__["enabled"].__set__,
    LiveTenantPlugin.__dict__["configuration"].__set__,
)
