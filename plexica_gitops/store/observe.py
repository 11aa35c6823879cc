"""Observe the live state held in PostgreSQL: plugins (with their dependencies, permissions
and routes), tenants (with their plugin bindings and applied migrations) and what the
reconciler last applied.

Everything is read in ONE repeatable-read, read-only transaction, so the snapshot is
consistent, and with a FIXED number of statements whatever the number of tenants or
plugins (no N+1): six in all - SET TRANSACTION, two for the store's schema version, one
query for plugins, one for tenants and one for last-applied fingerprints (plus one per
tenant holding a binding out of bounds, which is read again without it). At 10,000
tenants x 100 plugins that is 1,000,000 tenant_plugins and 2,000,000 tenant_migrations
rows; bench/observe_scale.py measures it, and bench/README.md says how the choices below
were made.

* The tenants query aggregates on the server, one row per tenant, and has no ORDER BY, so
  the server can stream it (a merge join of index scans on tenant id) while the client is
  still turning earlier rows into objects: `cursor.stream`.
* Bindings come as one JSON object per tenant that pydantic validates in Rust
  (`TypeAdapter(dict[str, LiveTenantPlugin]).validate_json`), without building Python
  dicts first.
* Migrations come as flat arrays per tenant and are grouped per plugin here. The same
  migration (plugin, version, name, checksum) is applied in every tenant, so its
  `AppliedMigration` is built once and shared: the models are frozen and hold only
  immutable values.
* The cyclic garbage collector is paused while millions of objects are created (it would
  otherwise rescan the growing heap again and again) and restored afterwards.

Workloads and topics do not live in PostgreSQL: the runtime provider and Kafka fill them
in. Here every plugin's `workload` is None, `topics` is empty and `topics_observed` False.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from pydantic import TypeAdapter

from plexica_gitops.desired.model import TenantStatus
from plexica_gitops.hashing import stable_hash
from plexica_gitops.live.model import (
    UNREADABLE,
    AppliedMigration,
    LivePermission,
    LivePlugin,
    LiveRoutes,
    LiveState,
    LiveTenant,
    LiveTenantPlugin,
)
from plexica_gitops.store.schema import recorded_versions, require_current

STREAM_ROWS = 64  # rows libpq hands over at a time while streaming (chunked mode, libpq 17+)

# JSON from the store is read only within bounds (the YAML loader's, for files): nested at
# most MAX_JSON_DEPTH levels, at most MAX_JSON_BYTES of JSON text. Both are checked by the
# server (jsonpath `.**{n}` finds anything nested n levels down) before any value reaches
# the JSON decoder, pydantic or a recursive function here; a value out of bounds is not
# read at all, and its address is reported (`LiveState.unreadable`).
MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 1 << 20
# The size is that of the JSON text; a value small as stored (inline, not compressed) is not
# converted to text to measure it.
_OUT_OF_BOUNDS = (
    "(jsonb_path_exists({column}, 'strict $.**{{" + str(MAX_JSON_DEPTH + 1) + "}}')"
    " OR CASE WHEN pg_column_size({column}) <= 2048 THEN false"
    " ELSE octet_length({column}::text) > " + str(MAX_JSON_BYTES) + " END)"
)
_BAD_MANIFEST = _OUT_OF_BOUNDS.format(column="p.manifest")

PLUGINS_QUERY = f"""
SELECT p.id, p.status, p.version, p.manifest_hash, p.last_error,
       CASE WHEN {_BAD_MANIFEST} THEN NULL ELSE p.manifest END,
       pm.permissions::text,
       r.backend_prefix, r.frontend_prefix, r.remote_entry,
       sub.subscriptions::text,
       p.name, {_BAD_MANIFEST}
FROM plexica.plugins AS p
LEFT JOIN (
    SELECT plugin_id,
           json_object_agg(key, json_build_object('name', name, 'description', description))
               AS permissions
    FROM plexica.permissions
    GROUP BY plugin_id
) AS pm ON pm.plugin_id = p.id
LEFT JOIN plexica.routes AS r ON r.plugin_id = p.id
LEFT JOIN (
    SELECT plugin_id, json_object_agg(topic, consumer_group) AS subscriptions
    FROM plexica.event_subscriptions
    GROUP BY plugin_id
) AS sub ON sub.plugin_id = p.id
ORDER BY p.id
"""

# One row per tenant, without ORDER BY anywhere, so the server streams it: a merge join of
# two group aggregates over the primary-key index scans. Bindings come as one JSON object
# per tenant, {"<plugin>": {"enabled": ..., "configuration": ...}, ...}, put together from
# to_json(plugin_id) (a JSON string), enabled::text (true/false) and jsonb's own text form;
# that is about 40 % cheaper for the server than json_object_agg(json_build_object(...)).
# Migrations come as four parallel arrays; their order is restored client-side.
# Bindings whose configuration is out of bounds are listed apart (`unreadable`); their
# tenants' bindings are read again one by one after the stream, without those values.
TENANTS_QUERY = f"""
SELECT t.id::text, t.slug, t.schema_name, t.status,
       tp.bindings,
       tm.plugin_ids, tm.versions, tm.names, tm.checksums,
       tp.unreadable
FROM plexica.tenants AS t
LEFT JOIN (
    SELECT tenant_id,
           '{{' || string_agg(
               to_json(plugin_id)::text || ':{{"enabled":' || enabled::text
                   || ',"configuration":' || configuration::text || '}}',
               ','
           ) || '}}' AS bindings,
           array_agg(plugin_id) FILTER (WHERE {_OUT_OF_BOUNDS.format(column="configuration")})
               AS unreadable
    FROM plexica.tenant_plugins
    GROUP BY tenant_id
) AS tp ON tp.tenant_id = t.id
LEFT JOIN (
    SELECT tenant_id,
           array_agg(plugin_id) AS plugin_ids,
           array_agg(version) AS versions,
           array_agg(name) AS names,
           array_agg(checksum) AS checksums
    FROM plexica.tenant_migrations
    GROUP BY tenant_id
) AS tm ON tm.tenant_id = t.id
"""

LAST_APPLIED_QUERY = "SELECT address, fingerprint FROM plexica_gitops.last_applied ORDER BY address"

_BINDINGS: TypeAdapter[dict[str, LiveTenantPlugin]] = TypeAdapter(dict[str, LiveTenantPlugin])


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def observe_store(conn: psycopg.Connection[Any]) -> LiveState:
    """The live state recorded in the store, read in one consistent snapshot.

    Needs a connection with no transaction open. Raises StoreError when the database has
    no store schema (run `plexica-gitops init`) or one this code cannot read."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("observe_store needs a connection with no transaction open")
    with _gc_paused(), conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        require_current(conn, recorded_versions(conn))
        unreadable: dict[str, str] = {}
        plugins = _observe_plugins(conn, unreadable)
        tenants = _observe_tenants(conn, unreadable)
        last_applied = _observe_last_applied(conn)
    return LiveState.model_construct(
        plugins=plugins,
        tenants=tenants,
        topics={},
        topics_observed=False,
        last_applied=last_applied,
        unreadable=unreadable,
    )


def _dependencies(raw: Any) -> dict[str, str]:
    """plugin id -> version range, from the manifest's `dependencies: [{plugin, version}]`."""
    if not isinstance(raw, list):
        return {}
    found: dict[str, str] = {}
    for entry in raw:
        if isinstance(entry, dict) and isinstance(entry.get("plugin"), str):
            version = entry.get("version")
            found[entry["plugin"]] = version if isinstance(version, str) else "*"
    return found


def _observe_plugins(
    conn: psycopg.Connection[Any], unreadable: dict[str, str]
) -> dict[str, LivePlugin]:
    plugins: dict[str, LivePlugin] = {}
    for row in conn.execute(PLUGINS_QUERY).fetchall():
        if row[12]:
            unreadable[f"plugin.{row[0]}"] = (
                f"manifest nested deeper than {MAX_JSON_DEPTH} levels or larger than "
                f"{MAX_JSON_BYTES // 1024} KiB"
            )
        pid, status, version, manifest_hash, error, manifest, permissions = row[:7]
        backend_prefix, frontend_prefix, remote_entry, subscriptions, name, bad = row[7:]
        plugins[pid] = LivePlugin(
            status=status,
            version=version,
            manifest_hash=manifest_hash,
            dependencies=_dependencies(manifest.get("dependencies"))
            if isinstance(manifest, dict)
            else {},
            error=error,
            workload=None,
            permissions={
                key: LivePermission(**value)
                for key, value in sorted(json.loads(permissions).items())
            }
            if permissions
            else {},
            routes=LiveRoutes(
                base_path=backend_prefix,
                frontend_prefix=frontend_prefix,
                remote_entry=remote_entry,
            )
            if backend_prefix is not None
            else None,
            subscriptions=dict(sorted(json.loads(subscriptions).items())) if subscriptions else {},
            name=name,
            stored_manifest_hash=UNREADABLE if bad else stable_hash(manifest),
        )
    return plugins


def _version(migration: AppliedMigration) -> int:
    return migration.version


def _observe_tenants(
    conn: psycopg.Connection[Any], unreadable: dict[str, str]
) -> dict[str, LiveTenant]:
    shared: dict[tuple[str, int, str, str], AppliedMigration] = {}
    tenants: dict[str, LiveTenant] = {}
    reread: list[tuple[str, str]] = []  # (tenant id, slug) with a binding out of bounds
    size = STREAM_ROWS if pq.version() >= 170000 else 1  # chunked rows need libpq 17
    with conn.cursor(binary=True) as cursor:
        for row in cursor.stream(TENANTS_QUERY, size=size):
            tenant_id, slug, schema_name, status, bindings, pids, versions, names, sums = row[:9]
            migrations: dict[str, list[AppliedMigration]] = {}
            unordered = False
            for key in zip(pids or (), versions or (), names or (), sums or (), strict=True):
                migration = shared.get(key)
                if migration is None:
                    migration = shared[key] = AppliedMigration(
                        version=key[1], name=key[2], checksum=key[3]
                    )
                applied = migrations.get(key[0])
                if applied is None:
                    migrations[key[0]] = [migration]
                else:
                    unordered = unordered or applied[-1].version > migration.version
                    applied.append(migration)
            if unordered:
                for applied in migrations.values():
                    applied.sort(key=_version)
            if row[9]:  # never hand an out-of-bounds value to the JSON parser
                reread.append((tenant_id, slug))
                bindings = None
            tenants[slug] = LiveTenant.model_construct(
                id=tenant_id,
                schema_name=schema_name,
                status=TenantStatus(status),
                plugins=_BINDINGS.validate_json(bindings) if bindings else {},
                migrations=migrations,
            )
    for tenant_id, slug in reread:  # still in the snapshot: the same transaction
        tenants[slug].plugins.update(_bounded_bindings(conn, tenant_id, slug, unreadable))
    return {slug: tenants[slug] for slug in sorted(tenants)}


BINDINGS_OF_TENANT = f"""
SELECT plugin_id, enabled,
       CASE WHEN {_OUT_OF_BOUNDS.format(column="configuration")} THEN NULL
            ELSE configuration END,
       jsonb_path_exists(configuration, 'strict $.**{{{MAX_JSON_DEPTH + 1}}}')
FROM plexica.tenant_plugins WHERE tenant_id = %s ORDER BY plugin_id
"""


def _bounded_bindings(
    conn: psycopg.Connection[Any], tenant_id: str, slug: str, unreadable: dict[str, str]
) -> dict[str, LiveTenantPlugin]:
    """A tenant's bindings, each configuration out of bounds read as {} and its address
    noted in `unreadable` (why, never the value)."""
    bindings: dict[str, LiveTenantPlugin] = {}
    for pid, enabled, configuration, deep in conn.execute(BINDINGS_OF_TENANT, (tenant_id,)):
        if configuration is None:
            unreadable[f"tenant.{slug}.plugin.{pid}"] = (
                f"configuration nested deeper than {MAX_JSON_DEPTH} levels"
                if deep
                else f"configuration larger than {MAX_JSON_BYTES // 1024} KiB"
            )
            configuration = {}
        bindings[pid] = LiveTenantPlugin(enabled=enabled, configuration=configuration)
    return bindings


def _observe_last_applied(conn: psycopg.Connection[Any]) -> dict[str, str]:
    size = STREAM_ROWS * 64 if pq.version() >= 170000 else 1
    with conn.cursor(binary=True) as cursor:
        return dict(cursor.stream(LAST_APPLIED_QUERY, size=size))
