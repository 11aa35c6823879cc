"""Apply at 10,000 tenants against its floor: the same SQL straight through psycopg.

    python bench/apply_floor.py                                 # floor, 10,000 tenants x 3
    python bench/apply_floor.py --tenants 2000 --apply          # + the real apply, same size
    python bench/apply_floor.py --tenants 200 --apply --json    # a quick run

The desired state: 3 small plugins (no events, no dependencies, one replica each of the
busybox image from devenv/images.py, two migrations each: a table with an index, then a
column) and N tenants that each enable all three with a small configuration. Two applies:

1. **first**: from an empty store: per tenant its creation, 3 migration jobs and 3 bindings
   (7 steps; 7 N + 27 steps in all, the 27 being the plugins' own);
2. **bump**: one plugin to a new version with a third migration: a catalog update, a
   rolling replace of its workload, and that migration in every tenant (N + 2 steps).

**The floor** does, for each tenant, in ONE transaction on one of `--sessions` (4)
connections, exactly the SQL the steps write, with the journal and last-applied rows of
each step, as apply writes them (journal/catalog statements, the step ids and fingerprints
of the real plan): per step `journal started`, the step's own statements, `journal
finished` and its `last_applied` row. The tenant: INSERT into plexica.tenants and CREATE
SCHEMA; a migration job: `SET LOCAL search_path`, each file as one query, its history rows;
a binding: INSERT into plexica.tenant_plugins. The connections carry an apply's lease epoch,
as apply's do, so the fence trigger runs on every write as it does for apply. The plugins'
own steps (the catalog rows; no containers) are written before the clock starts: the floor
is of the tenant steps, which are all but 27 (or 2) of the steps.

**The apply** (`--apply`) runs the real `plexica-gitops apply DIR --auto-approve
--log-format json --parallelism P` against Podman (DOCKER_HOST when it answers) on its own
fresh PostgreSQL, for the same two applies, then a no-op `plan` and `apply` of the
converged platform. `python bench/apply_scale.py --tenants N` runs all of it and prints
the ratios.

Each variant gets a fresh PostgreSQL (devenv.postgres.PostgresServer, fsync off as in the
tests), because tens of thousands of relations created on one server slow the next round
(bench/README.md, migrations_scale.py). Figures: wall seconds, steps/s, the ratio to the
floor, and PostgreSQL's own count of sessions and commits during the run
(pg_stat_database).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from devenv.postgres import PostgresServer  # noqa: E402

PLUGINS = ("ledger", "notes", "tasks")
IMAGE = "localhost/plexica-bench/{pid}:{version}"
EPOCH = 1
SCOPE_PREFIX = "bench-floor"


def log(message: str) -> None:
    sys.stderr.write(f"[apply_floor {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- desired state


def _migrations(pid: str, bumped: bool) -> dict[str, str]:
    table = f"{pid}_items"
    files = {
        f"0001_create_{table}.sql": (
            f"CREATE TABLE {table} (\n"
            "    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            "    title      text NOT NULL,\n"
            "    created_at timestamptz NOT NULL DEFAULT now()\n"
            ");\n"
            f"CREATE INDEX {table}_created_idx ON {table} (created_at);\n"
        ),
        f"0002_add_{table}_owner.sql": f"ALTER TABLE {table} ADD COLUMN owner text;\n",
    }
    if bumped:
        files[f"0003_add_{table}_done.sql"] = (
            f"ALTER TABLE {table} ADD COLUMN done boolean NOT NULL DEFAULT false;\n"
        )
    return files


def _plugin_yaml(pid: str, version: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: plexica.io/v1alpha1
        kind: Plugin
        metadata: {{name: {pid}}}
        spec:
          state: active
          replicas: 1
          manifest:
            id: {pid}
            name: {pid.title()}
            version: {version}
            runtime:
              type: typescript
              image: {IMAGE.format(pid=pid, version=version)}
              resources: {{cpu: 100m, memory: 32Mi}}
            compat: {{core: ^2.0.0}}
            api: {{basePath: /api/plugins/{pid}, port: 8080}}
            configuration:
              schema:
                type: object
                additionalProperties: false
                properties:
                  pageSize: {{type: integer, minimum: 10, maximum: 200}}
            migrations: {{path: migrations}}
        """)


def _platform_yaml(scope: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: plexica.io/v1alpha1
        kind: Platform
        metadata: {{name: bench}}
        spec:
          version: 2.4.0
          runtime: {{provider: docker, endpointMode: loopback, scope: {scope}}}
          rollout:
            strategy: rolling
            readyProbes: 1
            probeIntervalSeconds: 0.2
            timeoutSeconds: 60
            gracePeriodSeconds: 1
        """)


def write_state(root: Path, tenants: int, scope: str, bumped: bool) -> None:
    """The desired state; `bumped`: the first plugin at 1.1.0 with a third migration."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "platform.yaml").write_text(_platform_yaml(scope), encoding="utf-8")
    for index, pid in enumerate(PLUGINS):
        bump = bumped and index == 0
        directory = root / "plugins" / pid
        (directory / "migrations").mkdir(parents=True, exist_ok=True)
        version = "1.1.0" if bump else "1.0.0"
        (directory / "plugin.yaml").write_text(_plugin_yaml(pid, version), encoding="utf-8")
        for name, text in _migrations(pid, bump).items():
            (directory / "migrations" / name).write_text(text, encoding="utf-8")
    tenants_dir = root / "tenants"
    tenants_dir.mkdir(exist_ok=True)
    for number in range(tenants):
        slug = f"t{number:05d}"
        configuration = f"{{pageSize: {10 + number % 190}}}"
        bindings = "".join(
            f"    {pid}:\n      enabled: true\n      configuration: {configuration}\n"
            for pid in PLUGINS
        )
        tenant_id = uuid.UUID(int=number + 1, version=4)
        (tenants_dir / f"{slug}.yaml").write_text(
            "apiVersion: plexica.io/v1alpha1\nkind: Tenant\n"
            f"metadata: {{name: {slug}}}\n"
            f"spec:\n  id: {tenant_id}\n  schema: tenant_{slug}\n  status: active\n"
            f"  plugins:\n{bindings}",
            encoding="utf-8",
        )


# --------------------------------------------------------------------------- the floor

JOURNAL_STARTED = (
    "INSERT INTO plexica_gitops.journal (apply_id, step_id, status) VALUES (%s, %s, 'started')"
    " ON CONFLICT (apply_id, step_id) DO UPDATE"
    " SET status = 'started', detail = NULL, started_at = now(), finished_at = NULL"
)
JOURNAL_FINISHED = (
    "INSERT INTO plexica_gitops.journal (apply_id, step_id, status, detail, finished_at)"
    " VALUES (%s, %s, %s, %s, now())"
    " ON CONFLICT (apply_id, step_id) DO UPDATE"
    " SET status = excluded.status, detail = excluded.detail, finished_at = now()"
)
LAST_APPLIED = (
    "INSERT INTO plexica_gitops.last_applied (address, fingerprint, apply_id)"
    " VALUES (%s, %s, %s) ON CONFLICT (address) DO UPDATE"
    " SET fingerprint = EXCLUDED.fingerprint, apply_id = EXCLUDED.apply_id, applied_at = now()"
)
HISTORY = (
    "INSERT INTO plexica.tenant_migrations"
    " (tenant_id, plugin_id, version, name, checksum, duration_ms) VALUES (%s, %s, %s, %s, %s, %s)"
)


def _plan(root: Path, dsn: str | None) -> tuple[Any, Any]:
    """The desired state and the plan `apply` would carry out (against the store at `dsn`,
    or an empty platform), with every workload and topic taken as converged."""
    from plexica_gitops.desired.validate import validate_directory
    from plexica_gitops.live.model import LiveState
    from plexica_gitops.plan.builder import build_plan
    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.observe import observe_store

    report = validate_directory(root)
    if report.errors:
        raise SystemExit(f"the generated state is invalid: {report.errors[:3]}")
    if dsn is None:
        live = LiveState()
    else:
        with connect(dsn) as conn:
            live = observe_store(conn)
    return report.desired, build_plan(report.desired, live)


def _tenant_sql(conn: psycopg.Connection[Any], action: Any, desired: Any) -> None:
    """The statements of one tenant step, as steps.py writes them (inside the caller's
    transaction)."""
    parts = action.address.split(".")
    spec = desired.tenants[parts[1]].document.spec
    if len(parts) == 2:
        conn.execute(
            "INSERT INTO plexica.tenants (id, slug, schema_name, status) VALUES (%s, %s, %s, %s)",
            (spec.id, parts[1], spec.schema_name, spec.status.value),
        )
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(spec.schema_name))
        )
        return
    pid = parts[3]
    if parts[2] == "plugin":
        binding = spec.plugins[pid]
        conn.execute(
            "INSERT INTO plexica.tenant_plugins (tenant_id, plugin_id, enabled, configuration)"
            " VALUES (%s, %s, %s, %s)",
            (spec.id, pid, binding.enabled, Jsonb(binding.configuration)),
        )
        return
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(spec.schema_name)))
    applied = {
        int(v)
        for (v,) in conn.execute(
            "SELECT version FROM plexica.tenant_migrations WHERE tenant_id = %s AND plugin_id = %s",
            (spec.id, pid),
        )
    }
    rows = []
    for migration in desired.plugins[pid].migrations:
        if migration.number in applied:
            continue
        conn.execute(migration.sql.encode())  # one simple-protocol query, as migrate.py
        rows.append((spec.id, pid, migration.number, migration.name, migration.checksum, 1))
    with conn.cursor() as cursor:
        cursor.executemany(HISTORY, rows)
    conn.execute("SET LOCAL search_path TO DEFAULT")


def _floor_worker(
    dsn: str, jobs: list[list[Any]], desired: Any, apply_id: int, errors: list[BaseException]
) -> None:
    from plexica_gitops.store.connection import connect

    try:
        with connect(dsn, application_name="plexica-bench floor", epoch=EPOCH) as conn:
            conn.autocommit = False
            for steps in jobs:
                with conn.transaction():
                    for action in steps:
                        conn.execute(JOURNAL_STARTED, (apply_id, action.id))
                        _tenant_sql(conn, action, desired)
                        conn.execute(JOURNAL_FINISHED, (apply_id, action.id, "succeeded", "ok"))
                        if action.fingerprint:
                            conn.execute(
                                LAST_APPLIED, (action.address, action.fingerprint, apply_id)
                            )
                conn.commit()
    except BaseException as error:  # reported by the caller
        errors.append(error)


def _catalog_steps(dsn: str, desired: Any, plan: Any, apply_id: int) -> int:
    """The plugins' own steps, as far as the store goes (no containers): catalog rows,
    versions, journal and last-applied. Not timed."""
    from plexica_gitops.desired.view import catalog_manifest, manifest_hash
    from plexica_gitops.lifecycle import LifecycleStatus as S
    from plexica_gitops.store import catalog
    from plexica_gitops.store.connection import connect

    steps = [a for a in plan.actions if a.tenant is None]
    with connect(dsn, epoch=EPOCH) as conn:
        for pid, entry in desired.plugins.items():
            status = catalog.plugin_status(conn, pid)
            manifest, digest = catalog_manifest(entry), manifest_hash(entry)
            if status is None:
                catalog.register_plugin(
                    conn, pid, entry.manifest.name, entry.manifest.version, manifest, digest
                )
                for start, end in ((S.REGISTERED, S.INSTALLING), (S.INSTALLING, S.INSTALLED),
                                   (S.INSTALLED, S.ACTIVE)):  # fmt: skip
                    catalog.transition(conn, pid, start, end)
            elif any(a.id == f"plugin.{pid}:update" for a in steps):
                catalog.update_plugin(conn, pid, entry.manifest.version, manifest, digest)
        for action in steps:
            conn.execute(JOURNAL_STARTED, (apply_id, action.id))
            conn.execute(JOURNAL_FINISHED, (apply_id, action.id, "succeeded", "ok"))
            if action.fingerprint:
                conn.execute(LAST_APPLIED, (action.address, action.fingerprint, apply_id))
    return len(steps)


def _db_counters(dsn: str) -> tuple[int, int]:
    time.sleep(1.0)  # backends that just exited flush their statistics (not timed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _take_lease(dsn: str) -> None:
    """The lease an apply holds (store/lock.py), so fenced writes are accepted."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE plexica_gitops.apply_lease SET epoch = %s, host = 'bench', pid = 1,"
            " acquired_at = now(), heartbeat_at = now(), lease_until = now() + interval '1 day'",
            (EPOCH,),
        )


def floor_apply(dsn: str, root: Path, sessions: int, label: str) -> dict[str, Any]:
    from plexica_gitops.store import journal
    from plexica_gitops.store.connection import connect

    desired, plan = _plan(root, None if label == "first" else dsn)
    with connect(dsn, epoch=EPOCH) as conn:
        apply_id = journal.start_apply(conn, plan.desired_revision, "floor", "bench", 1, EPOCH)
    plugin_steps = _catalog_steps(dsn, desired, plan, apply_id)
    by_tenant: dict[str, list[Any]] = defaultdict(list)
    for action in plan.actions:
        if action.tenant is not None:
            by_tenant[action.tenant].append(action)  # in plan order: create, migrate, bind
    tenants = list(by_tenant.values())
    shares = [tenants[i::sessions] for i in range(sessions)]
    errors: list[BaseException] = []
    sessions_before, commits_before = _db_counters(dsn)
    started = time.perf_counter()
    cpu = time.process_time()
    threads = [
        threading.Thread(target=_floor_worker, args=(dsn, share, desired, apply_id, errors))
        for share in shares
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - cpu
    sessions_after, commits_after = _db_counters(dsn)
    if errors:
        raise errors[0]
    with connect(dsn, epoch=EPOCH) as conn:
        journal.finish_apply(conn, apply_id, "succeeded", {})
    steps = sum(len(t) for t in tenants)
    return {
        "variant": "floor",
        "apply": label,
        "steps": steps + plugin_steps,
        "tenant_steps": steps,
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "steps_per_s": steps / wall,
        "sessions": sessions_after - sessions_before - 1,  # the counter's own read
        "commits": commits_after - commits_before - 1,
    }


# --------------------------------------------------------------------------- the apply


def real_apply(
    dsn: str, root: Path, env: dict[str, str], parallelism: int, label: str
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "plexica_gitops.cli", "apply", str(root), "--auto-approve",
        "--log-format", "json", "--parallelism", str(parallelism),
    ]  # fmt: skip
    sessions_before, commits_before = _db_counters(dsn)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    sessions_after, commits_after = _db_counters(dsn)
    statuses: dict[str, int] = defaultdict(int)
    engine_s = 0.0  # the walk of the plan, from the log: the rest is start, observe, plan
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "step.finished":
                statuses[record["status"]] += 1
            elif record.get("event") == "apply.finished":
                engine_s = float(record["seconds"])
    if result.returncode != 0:
        raise SystemExit(
            f"apply ({label}) exited {result.returncode}:\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    steps = sum(statuses.values())
    return {
        "variant": "apply",
        "apply": label,
        "steps": steps,
        "statuses": dict(statuses),
        "wall_s": wall,
        "engine_s": engine_s,
        "steps_per_s": steps / wall,
        "sessions": sessions_after - sessions_before - 1,
        "commits": commits_after - commits_before - 1,
    }


def _cli(env: dict[str, str], *arguments: str) -> tuple[int, float, str]:
    command = [sys.executable, "-m", "plexica_gitops.cli", *arguments]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return result.returncode, time.perf_counter() - started, result.stdout + result.stderr


def noop(root: Path, env: dict[str, str], parallelism: int) -> dict[str, Any]:
    """`plan` and `apply` of the converged platform: both must find nothing to do."""
    code, plan_s, output = _cli(env, "plan", str(root), "--detailed-exitcode")
    if code != 0:
        raise SystemExit(f"no-op plan exited {code}:\n{output[-3000:]}")
    code, apply_s, output = _cli(
        env, "apply", str(root), "--auto-approve", "--log-format", "json",
        "--parallelism", str(parallelism),
    )  # fmt: skip
    if code != 0 or '"no-changes"' not in output:
        raise SystemExit(f"no-op apply exited {code}:\n{output[-3000:]}")
    return {
        "variant": "apply", "apply": "no-op", "steps": 0, "wall_s": plan_s + apply_s,
        "plan_s": plan_s, "apply_s": apply_s, "steps_per_s": 0.0, "sessions": 0, "commits": 0,
    }  # fmt: skip


def walk_seconds(root: Path, parallelism: int) -> tuple[int, float]:
    """The engine's walk alone: every step of the first apply's plan, each doing nothing,
    with no journal and no display (steps, seconds)."""
    from plexica_gitops.apply.engine import execute

    class Nothing:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: None

    _, plan = _plan(root, None)
    started = time.perf_counter()
    execute(plan.actions, lambda action: "", Nothing(), Nothing(), parallelism=parallelism)
    return len(plan.actions), time.perf_counter() - started


# --------------------------------------------------------------------------- main


def _fresh_store(server: PostgresServer) -> str:
    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.schema import init_store

    with connect(server.dsn) as conn:
        init_store(conn)
    return server.dsn


def run_floor(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    server = PostgresServer()
    server.start()
    try:
        dsn = _fresh_store(server)
        _take_lease(dsn)
        results = []
        for label, bumped in (("first", False), ("bump", True)):
            root = work / f"floor-{label}"
            write_state(root, args.tenants, "unused", bumped)
            log(f"floor, {label} apply: {args.tenants:,} tenants on {args.sessions} sessions")
            results.append(floor_apply(dsn, root, args.sessions, label))
            log(f"floor, {label}: {results[-1]['wall_s']:.1f} s")
        return results
    finally:
        server.stop()


def run_real(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    import docker

    from devenv.images import build_plugin_image
    from devenv.podman import engine_answers, ensure_engine

    docker_host = os.environ.get("DOCKER_HOST", "")
    if not (docker_host and engine_answers(docker_host)):
        docker_host = ensure_engine(Path(tempfile.gettempdir()) / "plexica-test-podman")
    client = docker.DockerClient(base_url=docker_host)
    scope = f"{SCOPE_PREFIX}-{uuid.uuid4().hex[:8]}"
    for index, pid in enumerate(PLUGINS):
        build_plugin_image(client, IMAGE.format(pid=pid, version="1.0.0"), pid, "1.0.0")
        if index == 0:
            build_plugin_image(client, IMAGE.format(pid=pid, version="1.1.0"), pid, "1.1.0")
    server = PostgresServer()
    server.start()
    try:
        dsn = _fresh_store(server)
        env = {**os.environ, "PLEXICA_DATABASE_URL": dsn, "DOCKER_HOST": docker_host}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        root = work / "apply"
        results = []
        for label, bumped in (("first", False), ("bump", True)):
            write_state(root, args.tenants, scope, bumped)
            log(f"apply, {label}: {args.tenants:,} tenants, parallelism {args.parallelism}")
            results.append(real_apply(dsn, root, env, args.parallelism, label))
            log(f"apply, {label}: {results[-1]['wall_s']:.1f} s")
        results.append(noop(root, env, args.parallelism))
        log(f"no-op plan + apply: {results[-1]['wall_s']:.1f} s")
        return results
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"io.plexica.scope={scope}"}
        ):
            container.remove(force=True)
        client.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply at scale against its psycopg floor.")
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=4, help="floor connections")
    parser.add_argument("--parallelism", type=int, default=4, help="apply --parallelism")
    parser.add_argument("--apply", action="store_true", help="also run the real apply")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="plexica-apply-floor-") as tmp:
        work = Path(tmp)
        if not args.skip_floor:
            results += run_floor(args, work)
        if args.apply:
            results += run_real(args, work)
    floors = {r["apply"]: r["wall_s"] for r in results if r["variant"] == "floor"}
    for r in results:
        if r["variant"] == "apply" and r["apply"] in floors:
            r["vs_floor"] = r["wall_s"] / floors[r["apply"]]
    if args.json:
        print(json.dumps({"tenants": args.tenants, "results": results}, indent=1))
        return 0
    print(f"apply at {args.tenants:,} tenants x {len(PLUGINS)} plugins (floor: {args.sessions} "
          f"sessions; apply: --parallelism {args.parallelism})")  # fmt: skip
    for r in results:
        ratio = f", {r['vs_floor']:.1f}x the floor" if "vs_floor" in r else ""
        print(
            f"  {r['variant']:>5} {r['apply']:>5}: {r['steps']:,} steps, {r['wall_s']:.1f} s "
            f"({r['steps_per_s']:,.0f} steps/s), {r['sessions']:,} sessions, "
            f"{r['commits']:,} commits{ratio}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
