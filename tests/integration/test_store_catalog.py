"""The store against a real PostgreSQL 15 (tests/postgres_server.py): connecting, `init`,
observing the live state, and the catalog writes plan actions make. No mocks."""

from __future__ import annotations

import socket
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import pq

from plexica_gitops.hashing import stable_hash
from plexica_gitops.lifecycle import LifecycleStatus
from plexica_gitops.live.model import (
    AppliedMigration,
    LivePermission,
    LivePlugin,
    LiveRoutes,
    LiveState,
    LiveTenant,
    LiveTenantPlugin,
)
from plexica_gitops.store import catalog
from plexica_gitops.store.catalog import PermissionConflict, TransitionError
from plexica_gitops.store.connection import (
    ENV_DATABASE_URL,
    StoreError,
    connect,
    database_url,
)
from plexica_gitops.store.ddl import DDL_VERSIONS
from plexica_gitops.store.observe import observe_store
from plexica_gitops.store.schema import LATEST_VERSION, init_store, store_version

S = LifecycleStatus
ACME = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
GLOBEX = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"
INITECH = "11111111-2222-4333-8444-555555555555"
CHECKSUM = {n: f"{n:x}" * 64 for n in range(1, 4)}


@pytest.fixture
def store(postgres_database: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a fresh database with the store schema."""
    with connect(postgres_database) as conn:
        assert init_store(conn) == [v for v, _, _ in DDL_VERSIONS]
        yield conn


def manifest(pid: str, version: str, deps: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": pid,
        "name": pid.title(),
        "version": version,
        "runtime": {"type": "typescript", "image": f"registry.example.com/{pid}:{version}"},
        "dependencies": [{"plugin": d, "version": r} for d, r in (deps or {}).items()],
        "api": {"basePath": f"/api/plugins/{pid}"},
    }


def register(conn: psycopg.Connection[Any], pid: str, version: str = "1.0.0", **deps: str) -> None:
    catalog.register_plugin(
        conn, pid, pid.title(), version, manifest(pid, version, deps), f"hash-{pid}-{version}"
    )


def walk(conn: psycopg.Connection[Any], pid: str, *statuses: LifecycleStatus) -> None:
    current = catalog.plugin_status(conn, pid)
    assert current is not None
    for status in statuses:
        catalog.transition(conn, pid, current, status)
        current = status


def row(conn: psycopg.Connection[Any], query: str, *params: Any) -> tuple[Any, ...] | None:
    return conn.execute(query, params).fetchone()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


# --- connecting ---------------------------------------------------------------------------


def test_database_url_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATABASE_URL, "postgresql://env@db/env")
    assert database_url("postgresql://arg@db/arg") == "postgresql://arg@db/arg"
    assert database_url(None) == "postgresql://env@db/env"


def test_database_url_missing_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    with pytest.raises(StoreError) as caught:
        database_url(None)
    assert "--database-url" in caught.value.message
    assert ENV_DATABASE_URL in caught.value.message
    assert f"export {ENV_DATABASE_URL}=" in caught.value.hint


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://alice:{pw_encoded}@127.0.0.1:{port}/plexica",
        "host=127.0.0.1 port={port} dbname=plexica user=alice password={pw}",
        "postgresql://alice@127.0.0.1:{port}/plexica?password={pw_encoded}",
    ],
)
def test_unreachable_server_error_names_target_never_the_password(template: str) -> None:
    password = "S3cret/p@ss"
    port = closed_port()
    url = template.format(pw=password, pw_encoded="S3cret%2Fp%40ss", port=port)
    with pytest.raises(StoreError) as caught:
        connect(url)
    error = caught.value
    shown = "\n".join(
        [str(error), repr(error), error.message, error.hint, *traceback.format_exception(error)]
    )
    assert f"127.0.0.1:{port}" in error.message
    assert "'plexica'" in error.message
    assert "refused" in error.message.lower()
    assert "running" in error.hint
    for secret in (password, "S3cret%2Fp%40ss", "S3cret"):
        assert secret not in shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:S3cret/p@ss@127.0.0.1:5432/plexica",
        "postgresql://alice:S3c@ret@127.0.0.1:5432/plexica",
        "postgres://alice:S3c?ret@127.0.0.1:5432/plexica",
        "postgresql://alice:S3c#ret@127.0.0.1/plexica",
    ],
)
def test_unencoded_password_in_a_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        connect(url)
    shown = f"{caught.value}\n{caught.value!r}"
    assert "percent-encoded" in caught.value.message
    assert "%40" in caught.value.hint
    for fragment in ("S3c", "ret", "p@ss"):
        assert fragment not in shown


def test_invalid_connection_string_is_refused_without_echoing_it() -> None:
    with pytest.raises(StoreError) as caught:
        connect("host=127.0.0.1 password='S3cret unterminated")
    assert "not valid" in caught.value.message
    assert "S3cret" not in str(caught.value)


def test_missing_database_is_named_with_a_hint(postgres_database: str) -> None:
    url = postgres_database.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StoreError) as caught:
        connect(url)
    assert "'no_such_db'" in caught.value.message
    assert "does not exist" in caught.value.message
    assert "create the database" in caught.value.hint


def test_connect_sets_application_name_and_autocommit(postgres_database: str) -> None:
    with connect(postgres_database, application_name="plexica-gitops-test") as conn:
        assert conn.autocommit
        assert row(conn, "SHOW application_name") == ("plexica-gitops-test",)


# --- init ---------------------------------------------------------------------------------


def test_init_creates_the_schema_and_is_idempotent(postgres_database: str) -> None:
    with connect(postgres_database) as conn:
        assert store_version(conn) is None
        assert init_store(conn) == [v for v, _, _ in DDL_VERSIONS]
        assert store_version(conn) == LATEST_VERSION
        assert init_store(conn) == []
        tables = {
            f"{r[0]}.{r[1]}"
            for r in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema IN ('plexica', 'plexica_gitops')"
            )
        }
        assert tables == {
            "plexica.plugins",
            "plexica.tenants",
            "plexica.tenant_plugins",
            "plexica.permissions",
            "plexica.routes",
            "plexica.route_endpoints",
            "plexica.tenant_migrations",
            "plexica.event_subscriptions",
            "plexica_gitops.schema_version",
            "plexica_gitops.applies",
            "plexica_gitops.journal",
            "plexica_gitops.topics",
            "plexica_gitops.last_applied",
            "plexica_gitops.runtime",
            "plexica_gitops.apply_lease",
            "plexica_gitops.env_digest_key",
        }
        assert row(conn, "SELECT count(*) FROM plexica_gitops.schema_version") == (
            len(DDL_VERSIONS),
        )
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE


def test_concurrent_inits_apply_each_version_once(postgres_database: str) -> None:
    runners = 4
    barrier = threading.Barrier(runners)
    results: list[list[int]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with connect(postgres_database) as conn:
                barrier.wait(timeout=10)
                results.append(init_store(conn))
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    # each version is applied by exactly one of them (not necessarily the same one)
    assert sorted(v for applied in results for v in applied) == [v for v, _, _ in DDL_VERSIONS]
    assert len(results) == runners
    with connect(postgres_database) as conn:
        assert row(conn, "SELECT count(*) FROM plexica_gitops.schema_version") == (
            len(DDL_VERSIONS),
        )


def test_init_refuses_tables_it_did_not_create(postgres_database: str) -> None:
    with connect(postgres_database) as conn:
        conn.execute("CREATE SCHEMA plexica; CREATE TABLE plexica.plugins (id text)")
        with pytest.raises(StoreError) as caught:
            init_store(conn)
        assert "cannot create store schema version 1" in caught.value.message
        assert "did not create" in caught.value.hint
        assert store_version(conn) is None  # the whole version rolled back
        assert row(conn, "SELECT to_regclass('plexica.tenants')") == (None,)


def test_newer_store_is_refused(store: psycopg.Connection[Any]) -> None:
    newer = LATEST_VERSION + 1
    store.execute(
        "INSERT INTO plexica_gitops.schema_version (version, description) VALUES (%s, 'future')",
        (newer,),
    )
    for call in (init_store, observe_store):
        with pytest.raises(StoreError) as caught:
            call(store)
        assert f"schema version {newer}" in caught.value.message
        assert "upgrade plexica-gitops" in caught.value.hint
    assert store_version(store) == newer


def test_observing_a_database_without_the_schema_says_run_init(postgres_database: str) -> None:
    with connect(postgres_database) as conn:
        with pytest.raises(StoreError) as caught:
            observe_store(conn)
        assert "no plexica-gitops store schema" in caught.value.message
        assert "run `plexica-gitops init`" in caught.value.hint
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE


def test_empty_store_observes_as_an_empty_live_state(store: psycopg.Connection[Any]) -> None:
    assert observe_store(store) == LiveState(topics_observed=False)


# --- observe ------------------------------------------------------------------------------


def populate(conn: psycopg.Connection[Any]) -> None:
    """A platform written only through catalog.py."""
    register(conn, "contacts")
    walk(conn, "contacts", S.INSTALLING, S.INSTALLED, S.ACTIVE)
    catalog.register_permissions(
        conn,
        "contacts",
        {"contacts:read": ("Read contacts", "See contacts."), "contacts:write": ("Write", "")},
    )
    catalog.register_routes(
        conn, "contacts", "/api/plugins/contacts", "/contacts", "https://cdn.example/c/re.js"
    )
    catalog.add_endpoint(conn, "contacts", "http://10.0.0.5:8080", "contacts-1", "1.0.0")

    register(conn, "crm", "2.1.0", contacts="^1.0.0")
    catalog.transition(conn, "crm", S.REGISTERED, S.INSTALLING)
    catalog.install_permissions(
        conn, "crm", {"crm:deals:read": ("Read deals", "")}, status_to=S.INSTALLED
    )
    walk(conn, "crm", S.ACTIVE)
    catalog.register_routes(conn, "crm", "/api/plugins/crm", None, None)
    catalog.set_subscriptions(conn, "crm", {"contacts.created": "plugin-crm", "x": "old"})
    catalog.set_subscriptions(  # replaces the set: "x" goes, the other is kept
        conn, "crm", {"contacts.created": "plugin-crm", "contacts.deleted": "plugin-crm"}
    )

    register(conn, "billing", "0.9.0", crm="~2.1", contacts=">=1.0.0 <2.0.0")
    catalog.transition(conn, "billing", S.REGISTERED, S.INSTALLING)
    catalog.record_install_failure(conn, "billing", "image pull failed: manifest unknown")

    register(conn, "legacy")
    walk(conn, "legacy", S.INSTALLING, S.INSTALLED, S.ACTIVE, S.DISABLED)
    catalog.register_permissions(conn, "legacy", {"legacy:use": ("Use legacy", "Old.")})

    register(conn, "old")
    walk(conn, "old", S.UNINSTALLED)

    catalog.create_tenant(conn, ACME, "acme", "tenant_acme", "active")
    catalog.create_tenant(conn, GLOBEX, "globex", "tenant_globex", "active")
    catalog.set_tenant_status(conn, GLOBEX, "suspended")
    catalog.create_tenant(conn, INITECH, "initech", "tenant_initech", "deleted")
    crm_config = {"currency": "EUR", "limits": {"deals": 100, "ratio": 0.5}, "tags": ["a", "b"]}
    catalog.upsert_tenant_plugin(conn, ACME, "crm", False, {})
    catalog.upsert_tenant_plugin(conn, ACME, "crm", True, crm_config)  # an update
    catalog.upsert_tenant_plugin(conn, ACME, "contacts", True, {})
    catalog.upsert_tenant_plugin(conn, ACME, "billing", False, {"note": 'quote " and \\'})
    catalog.upsert_tenant_plugin(conn, INITECH, "contacts", True, {"x": None})
    # recorded out of order: observe returns them by version
    catalog.record_migration(conn, ACME, "crm", 2, "0002_deal_stages", CHECKSUM[2], 12)
    catalog.record_migration(conn, ACME, "crm", 1, "0001_create_deals", CHECKSUM[1], 40)
    catalog.record_migration(conn, ACME, "contacts", 1, "0001_init", CHECKSUM[3], 7)
    catalog.record_migration(conn, INITECH, "contacts", 1, "0001_init", CHECKSUM[3], 9)
    catalog.record_last_applied(conn, "plugin.crm", "fp-crm", None)
    catalog.record_last_applied(conn, "tenant.acme.plugin.crm", "fp-old", None)
    catalog.record_last_applied(conn, "tenant.acme.plugin.crm", "fp-binding", None)


EXPECTED = LiveState(
    topics_observed=False,
    plugins={
        "billing": LivePlugin(
            status=S.REGISTERED,
            version="0.9.0",
            manifest_hash="hash-billing-0.9.0",
            dependencies={"crm": "~2.1", "contacts": ">=1.0.0 <2.0.0"},
            error="image pull failed: manifest unknown",
        ),
        "contacts": LivePlugin(
            status=S.ACTIVE,
            version="1.0.0",
            manifest_hash="hash-contacts-1.0.0",
            permissions={
                "contacts:read": LivePermission(name="Read contacts", description="See contacts."),
                "contacts:write": LivePermission(name="Write"),
            },
            routes=LiveRoutes(
                base_path="/api/plugins/contacts",
                frontend_prefix="/contacts",
                remote_entry="https://cdn.example/c/re.js",
            ),
        ),
        "crm": LivePlugin(
            status=S.ACTIVE,
            version="2.1.0",
            manifest_hash="hash-crm-2.1.0",
            dependencies={"contacts": "^1.0.0"},
            permissions={"crm:deals:read": LivePermission(name="Read deals")},
            routes=LiveRoutes(base_path="/api/plugins/crm"),
            subscriptions={"contacts.created": "plugin-crm", "contacts.deleted": "plugin-crm"},
        ),
        "legacy": LivePlugin(
            status=S.DISABLED,
            version="1.0.0",
            manifest_hash="hash-legacy-1.0.0",
            permissions={"legacy:use": LivePermission(name="Use legacy", description="Old.")},
        ),
        "old": LivePlugin(status=S.UNINSTALLED, version="1.0.0", manifest_hash="hash-old-1.0.0"),
    },
    tenants={
        "acme": LiveTenant(
            id=ACME,
            schema_name="tenant_acme",
            status="active",
            plugins={
                "billing": LiveTenantPlugin(
                    enabled=False, configuration={"note": 'quote " and \\'}
                ),
                "contacts": LiveTenantPlugin(enabled=True),
                "crm": LiveTenantPlugin(
                    enabled=True,
                    configuration={
                        "currency": "EUR",
                        "limits": {"deals": 100, "ratio": 0.5},
                        "tags": ["a", "b"],
                    },
                ),
            },
            migrations={
                "contacts": [AppliedMigration(version=1, name="0001_init", checksum=CHECKSUM[3])],
                "crm": [
                    AppliedMigration(version=1, name="0001_create_deals", checksum=CHECKSUM[1]),
                    AppliedMigration(version=2, name="0002_deal_stages", checksum=CHECKSUM[2]),
                ],
            },
        ),
        "globex": LiveTenant(id=GLOBEX, schema_name="tenant_globex", status="suspended"),
        "initech": LiveTenant(
            id=INITECH,
            schema_name="tenant_initech",
            status="deleted",
            plugins={"contacts": LiveTenantPlugin(enabled=True, configuration={"x": None})},
            migrations={
                "contacts": [AppliedMigration(version=1, name="0001_init", checksum=CHECKSUM[3])]
            },
        ),
    },
    last_applied={"plugin.crm": "fp-crm", "tenant.acme.plugin.crm": "fp-binding"},
)
# What else apply writes to a row, read back: the name, and the stored manifest's own hash.
EXPECTED = EXPECTED.model_copy(
    update={
        "plugins": {
            pid: plugin.model_copy(
                update={
                    "name": pid.title(),
                    "stored_manifest_hash": stable_hash(
                        manifest(pid, plugin.version, plugin.dependencies)
                    ),
                }
            )
            for pid, plugin in EXPECTED.plugins.items()
        }
    }
)


def test_observe_round_trips_every_field_kept_in_postgres(store: psycopg.Connection[Any]) -> None:
    populate(store)
    observed = observe_store(store)
    assert observed == EXPECTED
    assert observed.model_dump(mode="json") == EXPECTED.model_dump(mode="json")
    assert observed.fingerprint() == EXPECTED.fingerprint()
    # what observe built without validation is what validation would have built
    assert LiveState.model_validate(observed.model_dump()) == observed
    assert LiveState.model_validate_json(observed.model_dump_json()) == observed
    assert list(observed.plugins) == sorted(observed.plugins)
    assert list(observed.tenants) == sorted(observed.tenants)
    assert all(p.workload is None for p in observed.plugins.values())
    assert observed.topics == {} and observed.topics_observed is False
    assert store.info.transaction_status == pq.TransactionStatus.IDLE


def test_observe_reads_dependencies_from_the_manifest_defensively(
    store: psycopg.Connection[Any],
) -> None:
    odd = {
        "dependencies": [{"plugin": "a"}, {"version": "1"}, "b", {"plugin": "c", "version": "^2"}]
    }
    catalog.register_plugin(store, "odd", "Odd", "1.0.0", odd, "h")
    catalog.register_plugin(store, "none", "None", "1.0.0", {"dependencies": "nope"}, "h")
    plugins = observe_store(store).plugins
    assert plugins["odd"].dependencies == {"a": "*", "c": "^2"}
    assert plugins["none"].dependencies == {}


class CountingCursor(psycopg.Cursor[Any]):
    """Counts the statements a connection runs (conn.execute goes through a cursor too)."""

    log: list[tuple[str, pq.TransactionStatus]]
    after: Callable[[int], None] | None = None

    def _note(self, query: Any) -> None:
        text = query if isinstance(query, str) else repr(query)
        self.log.append((" ".join(text.split())[:80], self.connection.info.transaction_status))
        if CountingCursor.after is not None:
            CountingCursor.after(len(self.log))

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        result = super().execute(query, params, **kwargs)
        self._note(query)
        return result

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._note(query)
        return super().stream(query, params, **kwargs)


@pytest.fixture
def counting(store: psycopg.Connection[Any]) -> Iterator[list[tuple[str, pq.TransactionStatus]]]:
    log: list[tuple[str, pq.TransactionStatus]] = []
    CountingCursor.log = log
    store.cursor_factory = CountingCursor
    try:
        yield log
    finally:
        store.cursor_factory = psycopg.Cursor
        CountingCursor.after = None


def add_tenants(conn: psycopg.Connection[Any], count: int, plugins: list[str]) -> None:
    for index in range(count):
        tenant_id = str(uuid.uuid4())
        slug = f"t{index:04d}"
        catalog.create_tenant(conn, tenant_id, slug, f"tenant_{slug}", "active")
        for version, pid in enumerate(plugins, start=1):
            catalog.upsert_tenant_plugin(conn, tenant_id, pid, True, {"n": index})
            catalog.record_migration(conn, tenant_id, pid, version, f"m{version}", "c" * 64, 1)


def test_observe_runs_a_fixed_number_of_statements_in_one_snapshot(
    store: psycopg.Connection[Any], counting: list[tuple[str, pq.TransactionStatus]]
) -> None:
    register(store, "crm")
    register(store, "contacts")
    add_tenants(store, 1, ["crm"])
    counting.clear()
    small = observe_store(store)
    few = list(counting)
    store.execute("DELETE FROM plexica.tenant_migrations")
    store.execute("DELETE FROM plexica.tenant_plugins")
    store.execute("DELETE FROM plexica.tenants")
    add_tenants(store, 40, ["crm", "contacts"])
    counting.clear()
    large = observe_store(store)
    assert len(small.tenants) == 1 and len(large.tenants) == 40
    assert sum(len(t.plugins) for t in large.tenants.values()) == 80
    assert [s for s, _ in counting] == [s for s, _ in few]
    assert len(counting) <= 6
    assert counting[0][0] == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    assert {status for _, status in counting} == {pq.TransactionStatus.INTRANS}


def test_observe_sees_one_consistent_snapshot(
    postgres_database: str,
    store: psycopg.Connection[Any],
    counting: list[tuple[str, pq.TransactionStatus]],
) -> None:
    register(store, "crm")
    with connect(postgres_database) as other:

        def write_meanwhile(statements: int) -> None:
            if statements == 3:  # after the store check, before plugins and tenants are read
                register(other, "late")
                catalog.create_tenant(other, ACME, "acme", "tenant_acme", "active")
                catalog.record_last_applied(other, "plugin.late", "fp", None)

        CountingCursor.after = write_meanwhile
        during = observe_store(store)
        CountingCursor.after = None
    assert set(during.plugins) == {"crm"} and not during.tenants and not during.last_applied
    after = observe_store(store)
    assert set(after.plugins) == {"crm", "late"} and set(after.tenants) == {"acme"}


def test_observe_refuses_a_connection_inside_a_transaction(
    store: psycopg.Connection[Any],
) -> None:
    with store.transaction(), pytest.raises(ValueError, match="no transaction open"):
        observe_store(store)


# --- lifecycle ----------------------------------------------------------------------------


def plugin_row(conn: psycopg.Connection[Any], pid: str) -> tuple[Any, ...] | None:
    return row(
        conn, "SELECT status, last_error, updated_at FROM plexica.plugins WHERE id = %s", pid
    )


def test_illegal_transition_is_refused_and_changes_nothing(store: psycopg.Connection[Any]) -> None:
    register(store, "crm")
    before = plugin_row(store, "crm")
    with pytest.raises(TransitionError) as caught:
        catalog.transition(store, "crm", S.REGISTERED, S.ACTIVE)
    error = caught.value
    assert "'crm'" in error.message
    assert "REGISTERED → ACTIVE is not a lifecycle edge" in error.message
    assert "INSTALLING" in error.message and "UNINSTALLED" in error.message  # the legal ones
    assert (error.plugin_id, error.expected, error.wanted) == ("crm", S.REGISTERED, S.ACTIVE)
    assert plugin_row(store, "crm") == before


def test_transition_is_compare_and_set(store: psycopg.Connection[Any]) -> None:
    register(store, "crm")
    walk(store, "crm", S.INSTALLING, S.INSTALLED, S.ACTIVE)
    before = plugin_row(store, "crm")
    with pytest.raises(TransitionError) as caught:
        catalog.transition(store, "crm", S.INSTALLED, S.DISABLED)  # legal edge, stale status
    error = caught.value
    assert error.message == (
        "plugin 'crm' is ACTIVE, expected INSTALLED to move it to DISABLED; nothing was changed"
    )
    assert "plexica-gitops plan" in error.hint
    assert (error.expected, error.actual) == (S.INSTALLED, S.ACTIVE)
    assert plugin_row(store, "crm") == before
    with pytest.raises(TransitionError, match="'ghost' is not registered"):
        catalog.transition(store, "ghost", S.REGISTERED, S.INSTALLING)


def test_every_lifecycle_edge_and_the_failure_edge_are_allowed(
    store: psycopg.Connection[Any],
) -> None:
    register(store, "crm")
    walk(store, "crm", S.INSTALLING, S.INSTALLED, S.DISABLED, S.INSTALLED, S.ACTIVE, S.DISABLED)
    walk(store, "crm", S.ACTIVE, S.DISABLED, S.UNINSTALLING, S.UNINSTALLED)
    register(store, "crm", "1.1.0")  # UNINSTALLED → REGISTERED
    walk(store, "crm", S.INSTALLING, S.REGISTERED, S.UNINSTALLED)
    assert catalog.plugin_status(store, "crm") is S.UNINSTALLED
    assert observe_store(store).plugins["crm"].version == "1.1.0"


def test_register_is_refused_unless_new_or_uninstalled(store: psycopg.Connection[Any]) -> None:
    register(store, "crm")
    walk(store, "crm", S.INSTALLING, S.INSTALLED)
    with pytest.raises(TransitionError, match="already registered with status INSTALLED"):
        register(store, "crm", "9.9.9")
    assert observe_store(store).plugins["crm"].version == "1.0.0"


def test_install_failure_leaves_it_registered_with_the_error(
    store: psycopg.Connection[Any],
) -> None:
    register(store, "crm")
    catalog.transition(store, "crm", S.REGISTERED, S.INSTALLING)
    catalog.record_install_failure(store, "crm", "pull access denied for crm:2.0.0")
    live = observe_store(store).plugins["crm"]
    assert (live.status, live.error) == (S.REGISTERED, "pull access denied for crm:2.0.0")
    catalog.transition(store, "crm", S.REGISTERED, S.INSTALLING)  # the retry clears it
    assert plugin_row(store, "crm")[:2] == ("INSTALLING", None)  # type: ignore[index]
    catalog.transition(store, "crm", S.INSTALLING, S.INSTALLED)
    with pytest.raises(TransitionError, match="'crm' is INSTALLED, expected INSTALLING"):
        catalog.record_install_failure(store, "crm", "too late")
    assert plugin_row(store, "crm")[:2] == ("INSTALLED", None)  # type: ignore[index]


def test_update_plugin_changes_version_and_manifest(store: psycopg.Connection[Any]) -> None:
    register(store, "crm", contacts="^1.0.0")
    walk(store, "crm", S.INSTALLING, S.INSTALLED, S.ACTIVE)
    new = manifest("crm", "2.0.0", {"contacts": "^2.0.0"}) | {"name": "CRM Pro"}
    catalog.update_plugin(store, "crm", "2.0.0", new, "hash-2")
    live = observe_store(store).plugins["crm"]
    assert (live.status, live.version, live.manifest_hash) == (S.ACTIVE, "2.0.0", "hash-2")
    assert live.dependencies == {"contacts": "^2.0.0"}
    assert row(store, "SELECT name FROM plexica.plugins WHERE id = 'crm'") == ("CRM Pro",)
    with pytest.raises(StoreError, match="'ghost': it is not registered"):
        catalog.update_plugin(store, "ghost", "1.0.0", {}, "h")


# --- permissions --------------------------------------------------------------------------


def permissions_of(conn: psycopg.Connection[Any], pid: str) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        "SELECT key, name, description FROM plexica.permissions WHERE plugin_id = %s", (pid,)
    )
    return {k: (n, d) for k, n, d in rows}


def test_permission_conflict_names_both_plugins_and_writes_nothing(
    store: psycopg.Connection[Any],
) -> None:
    register(store, "crm")
    walk(store, "crm", S.INSTALLING)
    catalog.install_permissions(
        store, "crm", {"deals:read": ("Read deals", "crm's")}, status_to=S.INSTALLED
    )
    register(store, "sales")
    walk(store, "sales", S.INSTALLING)
    with pytest.raises(PermissionConflict) as caught:
        catalog.install_permissions(
            store,
            "sales",
            {"sales:read": ("Read sales", ""), "deals:read": ("Read deals", "sales'")},
            status_to=S.INSTALLED,
        )
    error = caught.value
    assert "'sales'" in error.message and "'crm'" in error.message
    assert "'deals:read'" in error.message and "edge case 6" in error.message
    assert error.conflicts == {"deals:read": "crm"}
    assert permissions_of(store, "sales") == {}
    assert catalog.plugin_status(store, "sales") is S.INSTALLING
    assert permissions_of(store, "crm") == {"deals:read": ("Read deals", "crm's")}
    assert catalog.plugin_status(store, "crm") is S.INSTALLED


def test_permission_conflict_inside_a_callers_transaction_writes_nothing(
    store: psycopg.Connection[Any],
) -> None:
    register(store, "crm")
    register(store, "sales")
    catalog.register_permissions(store, "crm", {"deals:read": ("Read deals", "")})
    with store.transaction():
        catalog.register_permissions(store, "sales", {"sales:read": ("Read", "")})
        with pytest.raises(PermissionConflict):
            catalog.register_permissions(
                store, "sales", {"sales:write": ("Write", ""), "deals:read": ("X", "")}
            )
    assert permissions_of(store, "sales") == {"sales:read": ("Read", "")}


def test_status_change_refused_means_no_permissions_either(
    store: psycopg.Connection[Any],
) -> None:
    register(store, "crm")  # REGISTERED: INSTALLED is not one edge away
    with pytest.raises(TransitionError, match="REGISTERED → INSTALLED is not a lifecycle edge"):
        catalog.install_permissions(store, "crm", {"a:b": ("A", "")}, status_to=S.INSTALLED)
    with pytest.raises(TransitionError, match="is REGISTERED, expected INSTALLING"):
        catalog.install_permissions(
            store, "crm", {"a:b": ("A", "")}, status_from=S.INSTALLING, status_to=S.INSTALLED
        )
    assert permissions_of(store, "crm") == {}
    assert catalog.plugin_status(store, "crm") is S.REGISTERED


def test_register_permissions_makes_the_set_exact(store: psycopg.Connection[Any]) -> None:
    register(store, "crm")
    catalog.register_permissions(store, "crm", {"a": ("A", "1"), "b": ("B", "2")})
    catalog.register_permissions(store, "crm", {"b": ("B2", "changed"), "c": ("C", "")})
    assert permissions_of(store, "crm") == {"b": ("B2", "changed"), "c": ("C", "")}
    assert catalog.deregister_permissions(store, "crm") == 2
    assert permissions_of(store, "crm") == {}
    with pytest.raises(StoreError, match="'ghost': it is not registered"):
        catalog.register_permissions(store, "ghost", {"x": ("X", "")})


# --- routes and endpoints -----------------------------------------------------------------


def test_routes_and_endpoints(store: psycopg.Connection[Any]) -> None:
    register(store, "crm")
    with pytest.raises(StoreError, match="has no routes"):
        catalog.add_endpoint(store, "crm", "http://10.0.0.1:8080", "crm-1", "1.0.0")
    with pytest.raises(StoreError, match="'ghost': it is not registered"):
        catalog.register_routes(store, "ghost", "/api/plugins/ghost", None, None)
    catalog.register_routes(store, "crm", "/api/plugins/crm", "/crm", "https://cdn/re.js")
    catalog.add_endpoint(store, "crm", "http://10.0.0.2:8080", "crm-2", "1.0.0")
    catalog.add_endpoint(store, "crm", "http://10.0.0.1:8080", "crm-1", "1.0.0")
    catalog.add_endpoint(store, "crm", "http://10.0.0.1:8080", "crm-1b", "1.1.0")  # re-register
    found = catalog.endpoints(store, "crm")
    assert [(e.endpoint, e.instance, e.version) for e in found] == [
        ("http://10.0.0.1:8080", "crm-1b", "1.1.0"),
        ("http://10.0.0.2:8080", "crm-2", "1.0.0"),
    ]
    assert all(e.plugin_id == "crm" and e.registered_at.tzinfo for e in found)
    catalog.register_routes(store, "crm", "/api/plugins/crm", None, None)  # update keeps them
    assert observe_store(store).plugins["crm"].routes == LiveRoutes(base_path="/api/plugins/crm")
    assert len(catalog.endpoints(store, "crm")) == 2
    assert catalog.remove_endpoint(store, "crm", "http://10.0.0.2:8080")
    assert not catalog.remove_endpoint(store, "crm", "http://10.0.0.2:8080")
    assert catalog.deregister_routes(store, "crm")
    assert not catalog.deregister_routes(store, "crm")
    assert catalog.endpoints(store, "crm") == []  # cascaded
    assert observe_store(store).plugins["crm"].routes is None


# --- tenants ------------------------------------------------------------------------------


def schemas(conn: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata")}


def test_create_tenant_creates_its_schema(store: psycopg.Connection[Any]) -> None:
    catalog.create_tenant(store, ACME, "acme", "tenant_acme", "active")
    assert "tenant_acme" in schemas(store)
    assert observe_store(store).tenants["acme"] == LiveTenant(
        id=ACME, schema_name="tenant_acme", status="active"
    )


def test_tenant_schema_names_are_quoted_identifiers(store: psycopg.Connection[Any]) -> None:
    """validate.py never lets such names through; the catalog quotes them anyway."""
    hostile = 'x"; DROP TABLE plexica.plugins; --'
    catalog.create_tenant(store, ACME, "odd", "Tenant-Acme", "active")
    catalog.create_tenant(store, GLOBEX, "hostile", hostile, "active")
    assert {"Tenant-Acme", hostile} <= schemas(store)
    assert row(store, "SELECT to_regclass('plexica.plugins') IS NOT NULL") == (True,)


def test_create_tenant_is_atomic_and_refuses_clashes(store: psycopg.Connection[Any]) -> None:
    catalog.create_tenant(store, ACME, "acme", "tenant_acme", "active")
    with pytest.raises(StoreError, match=r"'globex'.*already exists"):
        catalog.create_tenant(store, GLOBEX, "globex", "tenant_acme", "active")
    with pytest.raises(StoreError, match="reserved"):
        catalog.create_tenant(store, GLOBEX, "globex", "plexica_gitops", "active")
    with pytest.raises(ValueError, match="tenant status"):
        catalog.create_tenant(store, GLOBEX, "globex", "tenant_globex", "gone")
    assert "tenant_globex" not in schemas(store)
    assert set(observe_store(store).tenants) == {"acme"}


def test_tenant_status_and_bindings(store: psycopg.Connection[Any]) -> None:
    register(store, "crm")
    catalog.create_tenant(store, ACME, "acme", "tenant_acme", "active")
    catalog.set_tenant_status(store, ACME, "suspended")
    catalog.upsert_tenant_plugin(store, ACME, "crm", True, {"a": 1})
    catalog.upsert_tenant_plugin(store, ACME, "crm", False, {"a": 2})
    tenant = observe_store(store).tenants["acme"]
    assert tenant.status == "suspended"
    assert tenant.plugins == {"crm": LiveTenantPlugin(enabled=False, configuration={"a": 2})}
    with pytest.raises(StoreError, match="does not exist"):
        catalog.set_tenant_status(store, GLOBEX, "active")
    with pytest.raises(StoreError, match="the tenant or the plugin does not exist"):
        catalog.upsert_tenant_plugin(store, ACME, "ghost", True, {})


def test_record_last_applied_replaces_the_fingerprint(store: psycopg.Connection[Any]) -> None:
    apply_id = row(
        store,
        "INSERT INTO plexica_gitops.applies (desired_revision, plan_hash, host, pid) "
        "VALUES ('r', 'p', 'h', 1) RETURNING id",
    )[0]  # type: ignore[index]
    catalog.record_last_applied(store, "tenant.acme", "one", apply_id)
    catalog.record_last_applied(store, "tenant.acme", "two", apply_id)
    assert observe_store(store).last_applied == {"tenant.acme": "two"}
    assert row(store, "SELECT apply_id FROM plexica_gitops.last_applied") == (apply_id,)
