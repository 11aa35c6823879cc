"""The database side of plan actions: small typed writes to the platform catalog.

Each function takes a connection and leaves transactions to the caller, except where it
says otherwise. A function that writes more than one statement runs them in a
`with conn.transaction():` block, so it is all-or-nothing on its own, and a savepoint
inside the caller's transaction when there is one.

Lifecycle changes are compare-and-set (`UPDATE ... WHERE id = %s AND status = %s`) along
the edges of spec 004 (`lifecycle.LIFECYCLE_EDGES`) plus the failure edge INSTALLING →
REGISTERED (spec 004 edge case 1): a plugin that somebody else moved in the meantime is
never moved again on stale information. SQL identifiers (tenant schemas) are always
composed with `psycopg.sql.Identifier`, never by string formatting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from plexica_gitops.lifecycle import LIFECYCLE_EDGES, LifecycleStatus
from plexica_gitops.store.connection import StoreError

S = LifecycleStatus
Connection = psycopg.Connection[Any]

# Spec 004 edge case 1: an install that fails (e.g. the image cannot be pulled) leaves the
# plugin REGISTERED with the error recorded, ready for a retry.
FAILURE_EDGES: frozenset[tuple[LifecycleStatus, LifecycleStatus]] = frozenset(
    {(S.INSTALLING, S.REGISTERED)}
)
ALLOWED_EDGES: frozenset[tuple[LifecycleStatus, LifecycleStatus]] = frozenset(
    {(start, end) for start, ends in LIFECYCLE_EDGES.items() if start for end, _ in ends}
    | FAILURE_EDGES
)
TENANT_STATUSES = ("active", "suspended", "deleted")
# Schemas a tenant may never use (validate.py refuses them in git as well).
RESERVED_SCHEMAS = frozenset({"public", "information_schema", "plexica", "plexica_gitops"})


class TransitionError(StoreError):
    """A lifecycle change that is not an edge of spec 004, or whose plugin is not in the
    status the caller expected (somebody else moved it, or the plan is stale)."""

    def __init__(
        self,
        message: str,
        hint: str,
        *,
        plugin_id: str,
        expected: LifecycleStatus | None,
        actual: LifecycleStatus | None,
        wanted: LifecycleStatus,
    ) -> None:
        super().__init__(message, hint)
        self.plugin_id = plugin_id
        self.expected = expected
        self.actual = actual
        self.wanted = wanted


class ConflictError(StoreError):
    """A compare-and-set write found the store other than the plan observed it: another
    writer changed it while this apply ran. Nothing was written."""

    def __init__(self, address: str, expected: str, found: str) -> None:
        super().__init__(
            f"conflict at {address}: expected {expected}, found {found} (another writer "
            "changed it while this apply ran); nothing was written",
            "re-plan: run `plexica-gitops plan`, review what changed, then apply again",
        )
        self.address = address
        self.expected = expected
        self.found = found


class PermissionConflict(StoreError):
    """Spec 004 edge case 6: permission keys already registered by another plugin."""

    def __init__(self, plugin_id: str, conflicts: Mapping[str, str]) -> None:
        self.plugin_id = plugin_id
        self.conflicts = dict(sorted(conflicts.items()))  # key -> owning plugin
        owners = sorted(set(self.conflicts.values()))
        described = ", ".join(f"{k!r} (owned by plugin {o!r})" for k, o in self.conflicts.items())
        noun = "permission" if len(self.conflicts) == 1 else "permissions"
        super().__init__(
            f"plugin {plugin_id!r} cannot register {noun} {described}: permission keys are "
            "unique across plugins (spec 004 edge case 6); nothing was registered",
            f"rename the key in {plugin_id}'s manifest, or remove it from "
            f"{' and '.join(owners)} first",
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready replica the gateway may route a plugin's traffic to."""

    plugin_id: str
    endpoint: str
    instance: str
    version: str
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class Routes:
    """A plugin's gateway route and frontend remote entry."""

    backend_prefix: str
    frontend_prefix: str | None
    remote_entry: str | None


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    schema_name: str


# --- plugins ------------------------------------------------------------------------------


def plugin_status(conn: Connection, plugin_id: str) -> LifecycleStatus | None:
    """The plugin's recorded status, None when it is not registered."""
    row = conn.execute("SELECT status FROM plexica.plugins WHERE id = %s", (plugin_id,)).fetchone()
    return S(row[0]) if row else None


def registration(conn: Connection, plugin_id: str) -> tuple[LifecycleStatus, str] | None:
    """The plugin's recorded (status, manifest hash), None when it is not registered."""
    row = conn.execute(
        "SELECT status, manifest_hash FROM plexica.plugins WHERE id = %s", (plugin_id,)
    ).fetchone()
    return (S(row[0]), str(row[1])) if row else None


def register_plugin(
    conn: Connection,
    plugin_id: str,
    name: str,
    version: str,
    manifest: Mapping[str, Any],
    manifest_hash: str,
) -> None:
    """Record a plugin as REGISTERED: a new one, or one that was UNINSTALLED (the two
    `register` edges of the lifecycle). Any other status raises TransitionError."""
    row = conn.execute(
        """
        INSERT INTO plexica.plugins AS p (id, name, version, manifest, manifest_hash, status)
        VALUES (%s, %s, %s, %s, %s, 'REGISTERED')
        ON CONFLICT (id) DO UPDATE
            SET name = EXCLUDED.name, version = EXCLUDED.version,
                manifest = EXCLUDED.manifest, manifest_hash = EXCLUDED.manifest_hash,
                status = 'REGISTERED', last_error = NULL, updated_at = now()
            WHERE p.status = 'UNINSTALLED'
        RETURNING id
        """,
        (plugin_id, name, version, Jsonb(dict(manifest)), manifest_hash),
    ).fetchone()
    if row is None:
        actual = plugin_status(conn, plugin_id)
        raise TransitionError(
            f"cannot register plugin {plugin_id!r}: it is already registered with status "
            f"{actual.value if actual else 'unknown'}; only a new or UNINSTALLED plugin can be "
            "registered",
            "re-run `plexica-gitops plan`: the live state changed since this plan was made",
            plugin_id=plugin_id,
            expected=S.UNINSTALLED,
            actual=actual,
            wanted=S.REGISTERED,
        )


def _check_edge(plugin_id: str, start: LifecycleStatus | None, end: LifecycleStatus) -> None:
    if start is not None and (start, end) in ALLOWED_EDGES:
        return
    legal = sorted(e.value for s, e in ALLOWED_EDGES if s == start)
    raise TransitionError(
        f"plugin {plugin_id!r}: {start.value if start else '(not registered)'} → {end.value} is "
        "not a lifecycle edge of spec 004"
        + (f"; from {start.value} it can go to {', '.join(legal)}" if start else ""),
        "a plan walks the lifecycle one edge at a time: re-run `plexica-gitops plan`"
        if start
        else "register the plugin first",
        plugin_id=plugin_id,
        expected=start,
        actual=None,
        wanted=end,
    )


def transition(
    conn: Connection,
    plugin_id: str,
    from_status: LifecycleStatus,
    to_status: LifecycleStatus,
    error: str | None = None,
) -> None:
    """Move a plugin along one lifecycle edge, compare-and-set: only when it is still in
    `from_status`. Sets last_error to `error` (a successful step passes None and clears it).
    Raises TransitionError for an illegal edge or a status mismatch; nothing changes then."""
    from_status, to_status = S(from_status), S(to_status)
    _check_edge(plugin_id, from_status, to_status)
    row = conn.execute(
        """
        UPDATE plexica.plugins SET status = %s, last_error = %s, updated_at = now()
        WHERE id = %s AND status = %s
        RETURNING id
        """,
        (to_status.value, error, plugin_id, from_status.value),
    ).fetchone()
    if row is not None:
        return
    actual = plugin_status(conn, plugin_id)
    if actual is None:
        message = f"plugin {plugin_id!r} is not registered (expected status {from_status.value})"
    else:
        message = (
            f"plugin {plugin_id!r} is {actual.value}, expected {from_status.value} to move it to "
            f"{to_status.value}; nothing was changed"
        )
    raise TransitionError(
        message,
        "the plugin changed outside this apply (or the plan is stale): re-run "
        "`plexica-gitops plan`",
        plugin_id=plugin_id,
        expected=from_status,
        actual=actual,
        wanted=to_status,
    )


def record_install_failure(conn: Connection, plugin_id: str, error: str) -> None:
    """Spec 004 edge case 1: INSTALLING → REGISTERED with the error recorded (retry later)."""
    transition(conn, plugin_id, S.INSTALLING, S.REGISTERED, error=error)


def update_plugin(
    conn: Connection,
    plugin_id: str,
    version: str,
    manifest: Mapping[str, Any],
    manifest_hash: str,
    *,
    expected: tuple[str, str] | None = None,
) -> None:
    """Record a new version / manifest of a registered plugin (its status is unchanged).
    The display name follows the manifest's `name` when it has one. With `expected`
    (version, manifest hash), compare-and-set: ConflictError when the catalog records
    neither that nor the new version (a retry finds the new one: success)."""
    name = manifest.get("name")
    row = conn.execute(
        """
        UPDATE plexica.plugins
        SET version = %(version)s, manifest = %(manifest)s, manifest_hash = %(hash)s,
            name = COALESCE(%(name)s, name), updated_at = now()
        WHERE id = %(id)s
          AND (NOT %(check)s OR (version, manifest_hash) = (%(was_version)s, %(was_hash)s))
        RETURNING id
        """,
        {
            "version": version,
            "manifest": Jsonb(dict(manifest)),
            "hash": manifest_hash,
            "name": name,
            "id": plugin_id,
            "check": expected is not None,
            "was_version": expected[0] if expected else None,
            "was_hash": expected[1] if expected else None,
        },
    ).fetchone()
    if row is not None:
        return
    found = conn.execute(
        "SELECT version, manifest_hash FROM plexica.plugins WHERE id = %s", (plugin_id,)
    ).fetchone()
    if found is None:
        raise StoreError(
            f"cannot update plugin {plugin_id!r}: it is not registered",
            "re-run `plexica-gitops plan`: the live state changed since this plan was made",
        )
    if tuple(found) == (version, manifest_hash):
        return  # a retry after a reply lost in transit
    assert expected is not None
    raise ConflictError(
        f"plugin.{plugin_id}",
        f"version {expected[0]} (manifest {expected[1][:16]})",
        f"version {found[0]} (manifest {str(found[1])[:16]})",
    )


# --- permissions --------------------------------------------------------------------------


def register_permissions(
    conn: Connection, plugin_id: str, permissions: Mapping[str, tuple[str, str]]
) -> None:
    """Make the plugin's registered permissions exactly `permissions` (key -> (name,
    description)): new keys are added, changed ones updated, dropped ones removed. Keys
    that another plugin owns raise PermissionConflict naming both plugins, and nothing is
    written (spec 004 edge case 6). Atomic on its own."""
    keys = sorted(permissions)
    names = [permissions[k][0] for k in keys]
    descriptions = [permissions[k][1] for k in keys]
    with conn.transaction():
        if plugin_status(conn, plugin_id) is None:
            raise StoreError(
                f"cannot register permissions of plugin {plugin_id!r}: it is not registered",
                "register the plugin first",
            )
        rows = conn.execute(
            """
            INSERT INTO plexica.permissions AS p (key, plugin_id, name, description)
            SELECT k, %s, n, d FROM unnest(%s::text[], %s::text[], %s::text[]) AS u (k, n, d)
            ON CONFLICT (key) DO UPDATE
                SET name = EXCLUDED.name, description = EXCLUDED.description
                WHERE p.plugin_id = EXCLUDED.plugin_id
            RETURNING key
            """,
            (plugin_id, keys, names, descriptions),
        ).fetchall()
        if len(rows) != len(keys):
            written = {r[0] for r in rows}
            owners = conn.execute(
                "SELECT key, plugin_id FROM plexica.permissions WHERE key = ANY(%s)",
                ([k for k in keys if k not in written],),
            ).fetchall()
            raise PermissionConflict(plugin_id, {k: o for k, o in owners if o != plugin_id})
        conn.execute(
            "DELETE FROM plexica.permissions WHERE plugin_id = %s AND NOT (key = ANY(%s))",
            (plugin_id, keys),
        )


def install_permissions(
    conn: Connection,
    plugin_id: str,
    permissions: Mapping[str, tuple[str, str]],
    *,
    status_to: LifecycleStatus | None = None,
    status_from: LifecycleStatus | None = None,
) -> None:
    """`register_permissions` and, when `status_to` is given, the plugin's move to it, in
    ONE transaction: a permission conflict leaves the status unchanged and an illegal or
    stale status change leaves the permissions unchanged. Without `status_from` the
    plugin's current status is read (and locked) and the edge from it checked."""
    with conn.transaction():
        if status_to is not None and status_from is None:
            row = conn.execute(
                "SELECT status FROM plexica.plugins WHERE id = %s FOR UPDATE", (plugin_id,)
            ).fetchone()
            status_from = S(row[0]) if row else None
            _check_edge(plugin_id, status_from, S(status_to))
        register_permissions(conn, plugin_id, permissions)
        if status_to is not None:
            assert status_from is not None  # _check_edge refused an unregistered plugin
            transition(conn, plugin_id, status_from, status_to)


def deregister_permissions(conn: Connection, plugin_id: str) -> int:
    """Remove every permission the plugin registered; returns how many."""
    cursor = conn.execute("DELETE FROM plexica.permissions WHERE plugin_id = %s", (plugin_id,))
    return cursor.rowcount


# --- routes (service registry) ------------------------------------------------------------


def register_routes(
    conn: Connection,
    plugin_id: str,
    backend_prefix: str,
    frontend_prefix: str | None,
    remote_entry: str | None,
) -> None:
    """Register (or change) the gateway route and the frontend remote entry of a plugin."""
    try:
        conn.execute(
            """
            INSERT INTO plexica.routes (plugin_id, backend_prefix, frontend_prefix, remote_entry)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (plugin_id) DO UPDATE
                SET backend_prefix = EXCLUDED.backend_prefix,
                    frontend_prefix = EXCLUDED.frontend_prefix,
                    remote_entry = EXCLUDED.remote_entry, updated_at = now()
            """,
            (plugin_id, backend_prefix, frontend_prefix, remote_entry),
        )
    except errors.ForeignKeyViolation:
        raise StoreError(
            f"cannot register routes of plugin {plugin_id!r}: it is not registered",
            "register the plugin first",
        ) from None


def deregister_routes(conn: Connection, plugin_id: str) -> bool:
    """Remove the plugin's routes and all of its endpoints; False when it had none."""
    cursor = conn.execute("DELETE FROM plexica.routes WHERE plugin_id = %s", (plugin_id,))
    return cursor.rowcount > 0


def routes_for_update(conn: Connection, plugin_id: str) -> Routes | None:
    """The plugin's registered routes, row-locked until the caller's transaction ends: the
    base of a compare-and-set. None when it has none."""
    row = conn.execute(
        "SELECT backend_prefix, frontend_prefix, remote_entry FROM plexica.routes"
        " WHERE plugin_id = %s FOR UPDATE",
        (plugin_id,),
    ).fetchone()
    return Routes(*row) if row else None


def has_routes(conn: Connection, plugin_id: str) -> bool:
    """Whether the plugin is routed (it is ACTIVE): only then are its endpoints registered."""
    row = conn.execute("SELECT 1 FROM plexica.routes WHERE plugin_id = %s", (plugin_id,)).fetchone()
    return row is not None


def add_endpoint(
    conn: Connection, plugin_id: str, endpoint: str, instance: str, version: str
) -> None:
    """Register a ready replica (e.g. http://10.0.0.7:8080) behind the plugin's routes."""
    try:
        conn.execute(
            """
            INSERT INTO plexica.route_endpoints (plugin_id, endpoint, instance, version)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (plugin_id, endpoint) DO UPDATE
                SET instance = EXCLUDED.instance, version = EXCLUDED.version,
                    registered_at = now()
            """,
            (plugin_id, endpoint, instance, version),
        )
    except errors.ForeignKeyViolation:
        raise StoreError(
            f"cannot add endpoint {endpoint!r} to plugin {plugin_id!r}: the plugin has no routes",
            "register the plugin's routes first",
        ) from None


def add_own_endpoint(
    conn: Connection, plugin_id: str, endpoint: str, instance: str, version: str
) -> bool:
    """Register a replica's endpoint unless another instance holds that URL (a row another
    writer made): then nothing is written, and False returned."""
    row = conn.execute(
        """
        INSERT INTO plexica.route_endpoints AS e (plugin_id, endpoint, instance, version)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (plugin_id, endpoint) DO UPDATE
            SET version = EXCLUDED.version, registered_at = now()
            WHERE e.instance = EXCLUDED.instance
        RETURNING 1
        """,
        (plugin_id, endpoint, instance, version),
    ).fetchone()
    return row is not None


def remove_endpoint(conn: Connection, plugin_id: str, endpoint: str) -> bool:
    """Deregister one endpoint; False when it was not registered."""
    cursor = conn.execute(
        "DELETE FROM plexica.route_endpoints WHERE plugin_id = %s AND endpoint = %s",
        (plugin_id, endpoint),
    )
    return cursor.rowcount > 0


def endpoints(conn: Connection, plugin_id: str) -> list[Endpoint]:
    """The plugin's registered endpoints, by endpoint."""
    rows = conn.execute(
        """
        SELECT plugin_id, endpoint, instance, version, registered_at
        FROM plexica.route_endpoints WHERE plugin_id = %s ORDER BY endpoint
        """,
        (plugin_id,),
    ).fetchall()
    return [Endpoint(*row) for row in rows]


def endpoint_urls_for_update(conn: Connection, plugin_id: str) -> set[str]:
    """The plugin's registered endpoint URLs, row-locked until the caller's transaction
    ends: a rollout's last compare-and-set of the registry."""
    rows = conn.execute(
        "SELECT endpoint FROM plexica.route_endpoints WHERE plugin_id = %s FOR UPDATE",
        (plugin_id,),
    )
    return {row[0] for row in rows}


def endpoint_urls_by_plugin(conn: Connection) -> dict[str, set[str]]:
    """Every registered endpoint URL, by plugin (what observe compares the replicas to)."""
    registered: dict[str, set[str]] = {}
    for plugin_id, endpoint in conn.execute(
        "SELECT plugin_id, endpoint FROM plexica.route_endpoints"
    ):
        registered.setdefault(plugin_id, set()).add(endpoint)
    return registered


# --- event subscriptions -----------------------------------------------------------------


def set_subscriptions(conn: Connection, plugin_id: str, subscriptions: Mapping[str, str]) -> None:
    """Make the plugin's recorded subscriptions exactly `subscriptions` (topic -> consumer
    group), atomically."""
    topics = sorted(subscriptions)
    with conn.transaction():
        conn.execute(
            "DELETE FROM plexica.event_subscriptions"
            " WHERE plugin_id = %s AND NOT (topic = ANY(%s))",
            (plugin_id, topics),
        )
        try:
            conn.execute(
                """
                INSERT INTO plexica.event_subscriptions (plugin_id, topic, consumer_group)
                SELECT %s, t, g FROM unnest(%s::text[], %s::text[]) AS u (t, g)
                ON CONFLICT (plugin_id, topic) DO UPDATE
                    SET consumer_group = EXCLUDED.consumer_group
                """,
                (plugin_id, topics, [subscriptions[t] for t in topics]),
            )
        except errors.ForeignKeyViolation:
            raise StoreError(
                f"cannot record subscriptions of plugin {plugin_id!r}: it is not registered",
                "register the plugin first",
            ) from None


# --- topics the reconciler owns ----------------------------------------------------------


def record_topic(conn: Connection, name: str, plugin_id: str) -> None:
    """Remember that plexica-gitops created topic `name` for `plugin_id`: only such topics
    are ever changed or deleted by it."""
    conn.execute(
        "INSERT INTO plexica_gitops.topics (name, plugin_id) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET plugin_id = EXCLUDED.plugin_id",
        (name, plugin_id),
    )


def forget_topic(conn: Connection, name: str) -> None:
    conn.execute("DELETE FROM plexica_gitops.topics WHERE name = %s", (name,))


def topic_owners(conn: Connection) -> dict[str, str]:
    """Topic name -> the plugin plexica-gitops created it for."""
    rows = conn.execute("SELECT name, plugin_id FROM plexica_gitops.topics").fetchall()
    return {name: plugin_id for name, plugin_id in rows}


# --- tenants ------------------------------------------------------------------------------


def _check_tenant_status(status: str) -> None:
    if status not in TENANT_STATUSES:
        raise ValueError(f"tenant status must be one of {', '.join(TENANT_STATUSES)}: {status!r}")


def tenant_by_slug(conn: Connection, slug: str) -> Tenant | None:
    """The tenant with this slug (its id and schema), None when there is none."""
    row = conn.execute(
        "SELECT id::text, schema_name FROM plexica.tenants WHERE slug = %s", (slug,)
    ).fetchone()
    return Tenant(*row) if row else None


def create_tenant(
    conn: Connection, tenant_id: str, slug: str, schema_name: str, status: str
) -> None:
    """Record a tenant and create its schema (CREATE SCHEMA IF NOT EXISTS, the name quoted
    with sql.Identifier), atomically."""
    _check_tenant_status(status)
    if schema_name in RESERVED_SCHEMAS or schema_name.startswith("pg_"):
        raise StoreError(
            f"tenant {slug!r} cannot use schema {schema_name!r}: it is reserved",
            "give the tenant its own schema, e.g. `tenant_<slug>`",
        )
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO plexica.tenants (id, slug, schema_name, status) "
                "VALUES (%s, %s, %s, %s)",
                (tenant_id, slug, schema_name, status),
            )
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name))
            )
    except errors.UniqueViolation:
        raise StoreError(
            f"cannot create tenant {slug!r} (id {tenant_id}, schema {schema_name!r}): a tenant "
            "with that id, slug or schema already exists",
            "re-run `plexica-gitops plan`: the live state changed since this plan was made",
        ) from None


def set_tenant_status(conn: Connection, tenant_id: str, status: str) -> None:
    """Set a tenant's status (active | suspended | deleted); its schema and data stay."""
    _check_tenant_status(status)
    row = conn.execute(
        "UPDATE plexica.tenants SET status = %s, updated_at = now() WHERE id = %s RETURNING id",
        (status, tenant_id),
    ).fetchone()
    if row is None:
        raise StoreError(f"tenant {tenant_id} does not exist", "create the tenant first")


def binding_for_update(
    conn: Connection, tenant_id: str, plugin_id: str
) -> tuple[bool, dict[str, Any]] | None:
    """A tenant's binding (enabled, configuration), row-locked until the caller's
    transaction ends: the base of a compare-and-set. None when there is none."""
    row = conn.execute(
        "SELECT enabled, configuration FROM plexica.tenant_plugins"
        " WHERE tenant_id = %s AND plugin_id = %s FOR UPDATE",
        (tenant_id, plugin_id),
    ).fetchone()
    return (bool(row[0]), dict(row[1] or {})) if row else None


def disable_tenant_plugin(conn: Connection, tenant_id: str, plugin_id: str) -> None:
    """Disable a tenant's binding, its configuration kept (nothing when there is none)."""
    conn.execute(
        "UPDATE plexica.tenant_plugins SET enabled = false, updated_at = now()"
        " WHERE tenant_id = %s AND plugin_id = %s",
        (tenant_id, plugin_id),
    )


def upsert_tenant_plugin(
    conn: Connection,
    tenant_id: str,
    plugin_id: str,
    enabled: bool,
    configuration: Mapping[str, Any],
) -> None:
    """Enable or disable a plugin for a tenant and set its configuration (tenant_plugins)."""
    try:
        conn.execute(
            """
            INSERT INTO plexica.tenant_plugins (tenant_id, plugin_id, enabled, configuration)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (tenant_id, plugin_id) DO UPDATE
                SET enabled = EXCLUDED.enabled, configuration = EXCLUDED.configuration,
                    updated_at = now()
            """,
            (tenant_id, plugin_id, enabled, Jsonb(dict(configuration))),
        )
    except errors.ForeignKeyViolation:
        raise StoreError(
            f"cannot bind plugin {plugin_id!r} to tenant {tenant_id}: the tenant or the plugin "
            "does not exist",
            "create the tenant and register the plugin first",
        ) from None


def record_migration(
    conn: Connection,
    tenant_id: str,
    plugin_id: str,
    version: int,
    name: str,
    checksum: str,
    duration_ms: int,
) -> None:
    """Record a migration applied in a tenant's schema (in the migration's transaction)."""
    conn.execute(
        """
        INSERT INTO plexica.tenant_migrations
            (tenant_id, plugin_id, version, name, checksum, duration_ms)
        VALUES (%s, %s, %s, %s, %s, %s)
        """,
        (tenant_id, plugin_id, version, name, checksum, duration_ms),
    )


# --- the reconciler's bookkeeping ---------------------------------------------------------


def env_digest_key(conn: Connection) -> bytes | None:
    """The installation's key of the env-value digests (workload.env_digest); None when
    this database role may not read it."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT key FROM plexica_gitops.env_digest_key").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return bytes(row[0]) if row else None


def record_last_applied(
    conn: Connection, address: str, fingerprint: str, apply_id: int | None
) -> None:
    """Remember the fingerprint of what was applied at `address` (drift vs change), and
    the desired revision of the apply that applied it."""
    conn.execute(
        """
        INSERT INTO plexica_gitops.last_applied (address, fingerprint, apply_id, revision)
        VALUES (%s, %s, %s,
                (SELECT desired_revision FROM plexica_gitops.applies WHERE id = %s))
        ON CONFLICT (address) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, apply_id = EXCLUDED.apply_id,
                revision = EXCLUDED.revision, applied_at = now()
        """,
        (address, fingerprint, apply_id, apply_id),
    )


def last_applied_revisions(conn: Connection) -> dict[str, str]:
    """address -> the desired revision its last-applied fingerprint came from."""
    rows = conn.execute(
        "SELECT address, revision FROM plexica_gitops.last_applied WHERE revision IS NOT NULL"
    ).fetchall()
    return {str(address): str(revision) for address, revision in rows}


def last_succeeded_revision(conn: Connection) -> str | None:
    """The desired revision of the latest apply that succeeded; None before any did."""
    row = conn.execute(
        "SELECT desired_revision FROM plexica_gitops.applies WHERE result = 'succeeded'"
        " ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else None
