"""The fast JSON codec of the live state (`plan --live-state FILE`): a million bindings
parsed in seconds and far less memory than pydantic's own parser, with exactly its result
and errors, within the store's bounds."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from plexica_gitops.desired.model import TenantPlugin, TenantStatus
from plexica_gitops.errors import LiveStateError as LiveStateError
from plexica_gitops.interning import (
    MAX_JSON_DEPTH,
    SharedValues,
    TooDeep,
    json_depth,
    same_json,
)
from plexica_gitops.live.model import (
    AppliedMigration,
    LiveState,
    LiveTenant,
    LiveTenantPlugin,
)

if TYPE_CHECKING:
    from plexica_gitops.desired.build import DesiredState

# A snapshot's values are read within the bounds the store's are (store/observe.py) and
# YAML's (source/loader.py): a configuration nested at most MAX_JSON_DEPTH levels, and a
# tenant's entry at most MAX_TENANT_BYTES of JSON text. Checked as each part is decoded, before
# pydantic, the planner or any recursive function sees it.
MAX_TENANT_BYTES = 64 << 20


def check_bounds(state: LiveState) -> None:
    """Raise LiveStateError when a configuration of `state` nests too deep (the slow path:
    a state that pydantic built)."""
    for slug, tenant in state.tenants.items():
        for pid, binding in tenant.plugins.items():
            if json_depth(binding.configuration, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                raise LiveStateError(_too_deep(f"tenants.{slug}.plugins.{pid}.configuration"))


def _too_deep(where: str) -> str:
    return f"{where} is nested deeper than {MAX_JSON_DEPTH} levels"


def parse_live_state(data: str | bytes, desired: DesiredState | None = None) -> LiveState:
    """`LiveState.model_validate_json(data)`: the same state, and the same errors, with far
    less time and memory for a large snapshot.

    A million bindings and two million migration records, validated by pydantic from JSON,
    take half a minute and several GB at the peak (pydantic holds the whole parsed document
    while it builds the models). Here the document is parsed with `json.loads`; tenants are
    built directly from it, each `AppliedMigration` once per distinct record and shared by
    every tenant that applied it (as `store.observe` does), and so is each distinct list
    of them; the configurations are rebuilt from shared strings and nested values (see
    `SharedValues`), or, given the `desired` state, a configuration that is the same JSON
    value as the desired one of its binding is that very object (a converged platform's
    are: half the memory of the live state, and the planner's comparison is then one of
    identity). Everything else is validated by pydantic. Whenever the document is not
    plainly of the expected shape and types (a value pydantic would coerce or reject, an
    unknown key, invalid JSON, a lone surrogate), `LiveState.model_validate_json` decides,
    so its result or its error is exactly what the caller gets.

    Bounds (MAX_JSON_DEPTH, MAX_TENANT_BYTES) hold on both paths: what breaks them raises
    LiveStateError naming where."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return _by_pydantic(data)  # its error
    state = _parse_plain(_Text(text), desired)
    return state if state is not None else _by_pydantic(data)


def read_live_state_file(path: Path, desired: DesiredState | None = None) -> LiveState:
    """`parse_live_state(path.read_text(encoding="utf-8"), desired)`, the file read a piece at a
    time: the same state and the same errors (OSError, UnicodeDecodeError), without ever
    holding its whole text (half a GB for a million bindings) next to the state built
    from it. Only a document pydantic has to decide is read whole, as before."""
    with path.open(encoding="utf-8") as file:  # universal newlines, as read_text
        try:
            state = _parse_plain(_Text("", file.read), desired)
        except LiveStateError:
            while file.read(PIECE):  # an undecodable byte further on is what read_text
                pass  # would have raised first
            raise
    return state if state is not None else _by_pydantic(path.read_text(encoding="utf-8"))


def _by_pydantic(data: str | bytes) -> LiveState:
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


def _parse_plain(text: _Text, desired: DesiredState | None) -> LiveState | None:
    """The state, or None to let pydantic decide. The top-level object is walked here so
    that each tenant is decoded and turned into a LiveTenant on its own: the whole parsed
    document never exists at once (nor, read from a file, its whole text)."""
    if not _SHAPES_KNOWN:  # pragma: no cover - a model changed without this parser
        return None
    try:
        text.start()
        document: dict[str, Any] = {}
        tenants: dict[str, LiveTenant] | None = None
        more, end = text.step(_object_start, 0)
        while more:
            key, end = text.step(_key, end)
            if key in document or (key == "tenants" and tenants is not None):
                return None  # a repeated key
            is_object, end = text.step(_peek_object, end)
            try:
                if key == "tenants" and is_object:
                    tenants, end = _plain_tenants(text, end, desired)
                    if tenants is None:
                        return None
                elif key == "last_applied" and is_object:
                    document[key], end = _plain_members(text, end)
                else:
                    document[key], end = text.step(_decode, end)
            except RecursionError:
                raise LiveStateError(_too_deep(key)) from None
            more, end = text.step(_next_member, end)
        if not text.blank_from(end):
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


# Characters read from a snapshot file at a time: the text in hand is about this much
# (more while one value longer than it is read), never the whole file.
PIECE = 1 << 20

_Parsed = TypeVar("_Parsed")


class _Text:
    """A document's text, or the part of it in hand while a file is read piece by piece.

    The parsers below read `text` from an index and return what they parsed and where it
    ends. `step` runs one and, when it fails or ends at the end of the text in hand (a
    number, a literal or whitespace may go on in the next piece), drops the text before
    the index, reads on, and runs it again: an index is only good for the text it came
    from, so each step takes the one the last returned. A whole text (`read` None) is
    parsed as it is."""

    def __init__(self, text: str, read: Callable[[int], str] | None = None) -> None:
        self.text = text
        self._read = read
        self._ended = read is None
        self._tail = ""  # the end of the last piece: an escape may straddle two

    def start(self) -> None:
        if self._ended:
            self._check(self.text)
        else:
            self._more(0)

    def step(
        self, parse: Callable[[str, int], tuple[_Parsed, int]], index: int
    ) -> tuple[_Parsed, int]:
        while True:
            try:
                value, end = parse(self.text, index)
            except ValueError:
                if self._ended:
                    raise
            else:
                if end < len(self.text) or self._ended:
                    return value, end
            index = self._more(index)

    def blank_from(self, index: int) -> bool:
        """Whether nothing but whitespace follows index, to the end of the document."""
        while True:
            index = _skip(self.text, index)
            if index < len(self.text) or self._ended:
                return index == len(self.text)
            index = self._more(index)

    def _more(self, index: int) -> int:
        """Read on; the text from index is kept and starts at 0. A value longer than a
        piece doubles what is read each time, so that reading it stays linear."""
        assert self._read is not None
        rest = self.text[index:]
        piece = self._read(max(PIECE, len(rest)))
        if not piece:
            self._ended = True
        self._check(self._tail + piece)
        self._tail = piece[-2:]
        self.text = rest + piece
        return 0

    @staticmethod
    def _check(text: str) -> None:
        if "\\ud" in text or "\\uD" in text:
            # surrogates: json.loads and pydantic's parser disagree on lone ones
            raise _Malformed


def _peek_object(text: str, index: int) -> tuple[bool, int]:
    """Whether an object starts at index."""
    if index >= len(text):
        raise _Malformed  # read on (or, at the end of the document, not plain)
    return text.startswith("{", index), index


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


def _plain_tenants(
    text: _Text, index: int, desired: DesiredState | None
) -> tuple[dict[str, LiveTenant] | None, int]:
    shared: dict[tuple[int, str, str], AppliedMigration] = {}
    values = SharedValues(bounded=True)
    tenants: dict[str, LiveTenant] = {}
    desired_tenants = desired.tenants if desired is not None else {}
    more, end = text.step(_object_start, index)
    while more:
        slug, end = text.step(_key, end)
        try:
            (raw, size), end = text.step(_sized, end)
        except RecursionError:
            raise LiveStateError(_too_deep(f"tenants.{slug}")) from None
        if size > MAX_TENANT_BYTES:
            raise LiveStateError(
                f"tenants.{slug} is larger than {MAX_TENANT_BYTES >> 20} MiB of JSON"
            )
        try:
            entry = desired_tenants.get(slug)
            known = entry.document.spec.plugins if entry is not None else _NOTHING
            tenant = _plain_tenant(raw, shared, values, known)
        except TooDeep as too_deep:
            where = f"tenants.{slug}.plugins.{too_deep}.configuration"
            raise LiveStateError(_too_deep(where)) from None
        if tenant is None or slug in tenants:
            return None, end
        tenants[slug] = tenant
        more, end = text.step(_next_member, end)
    return tenants, end


def _sized(text: str, index: int) -> tuple[tuple[Any, int], int]:
    """The value at index and the length of its text."""
    value, end = _decode(text, index)
    return (value, end - index), end


def _plain_members(text: _Text, index: int) -> tuple[dict[str, Any], int]:
    """The object at index, decoded a member at a time (`last_applied`: a million of
    them), as `_decode` would give it: a repeated key keeps its place and its last value."""
    members: dict[str, Any] = {}
    more, end = text.step(_object_start, index)
    while more:
        end = _plain_pairs(text.text, end, members)
        _, end = text.step(_blank, end)
        key, end = text.step(_key, end)
        members[key], end = text.step(_decode, end)
        more, end = text.step(_next_member, end)
    return members, end


# A member `"key": "value",` whose strings hold no escape and no control character (which
# JSON forbids in a string): its key and value are the text between the quotes. Matched in
# C, one after another, where decoding a member at a time costs a few microseconds each.
_PLAIN_PAIR = re.compile(
    r'[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*,'
)


def _plain_pairs(text: str, index: int, members: dict[str, Any]) -> int:
    """Add the plain members from index on (see _PLAIN_PAIR); where they end."""
    # a scanner's match() is anchored where the last one ended (no Python loop to place it)
    scanner = _PLAIN_PAIR.scanner(text, index)  # type: ignore[attr-defined]
    for match in iter(scanner.match, None):
        key, value = match.groups()
        members[key] = value
        index = match.end()
    return index


def _blank(text: str, index: int) -> tuple[None, int]:
    return None, _skip(text, index)


def _plain_tenant(
    raw: Any,
    shared: dict[tuple[int, str, str], AppliedMigration],
    values: SharedValues,
    known: Mapping[str, TenantPlugin],
) -> LiveTenant | None:
    """`known`: the tenant's desired bindings, whose configurations the live ones share."""
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
        want = known.get(pid)
        if want is not None and same_json(configuration, want.configuration):
            # equal to a desired one, which the loader bounded (MAX_JSON_DEPTH and more)
            configuration = want.configuration
        elif configuration:
            try:
                configuration = configuration_of(configuration)
            except TooDeep:
                raise TooDeep(pid) from None
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
_NOTHING: Mapping[str, TenantPlugin] = {}


# The slots' own setters: a binding is made without running the (validating) __init__.
_BINDING_SLOTS = (
    LiveTenantPlugin.__dict__["enabled"].__set__,
    LiveTenantPlugin.__dict__["configuration"].__set__,
)
