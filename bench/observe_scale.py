"""Scale benchmark for observing the store (`plexica_gitops.store.observe.observe_store`).

Starts its own throwaway PostgreSQL (tests/postgres_server.py), creates the store with
`init_store`, loads a large platform (default: 100 plugins and 10,000 tenants that each bind
every plugin = 1,000,000 tenant_plugins rows; 2 migrations per binding = 2,000,000
tenant_migrations rows; a last-applied fingerprint per plugin, tenant, binding and tenant
migration set = 2,010,400 rows), with COPY for the big tables, then times `observe_store`
in a fresh child process: best of N runs, wall and CPU time of the client and of the
server backend, and the child's peak RSS.

    python bench/observe_scale.py                      # 100 plugins x 10,000 tenants
    python bench/observe_scale.py --tenants 1000       # a smaller run
    python bench/observe_scale.py --last-applied none  # without last-applied rows
    python bench/observe_scale.py --compare            # + the other ways to build LiveState
    python bench/observe_scale.py --json               # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "observe_bench"
COPY_CHUNK = 1 << 20  # bytes per COPY write
# Plugin statuses, cycled: mostly ACTIVE (with routes), some INSTALLED, DISABLED, REGISTERED.
STATUSES = ["ACTIVE"] * 17 + ["INSTALLED", "DISABLED", "REGISTERED"]
BUILDS = ("shipped", "model_validate", "model_construct")


def _import_package() -> None:
    """Measure the checkout this script lives in (and find devenv/postgres.py)."""
    for extra in (REPO_ROOT / "tests", REPO_ROOT):
        if str(extra) not in sys.path:
            sys.path.insert(1, str(extra))


def _rss_mb(maxrss: int) -> float:
    return maxrss / 1024 if sys.platform != "darwin" else maxrss / 1024 / 1024


def _current_rss_mb() -> float:
    return _rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# --------------------------------------------------------------------------- generation


def _sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def make_manifest(pid: str, index: int, ids: list[str], rng: random.Random) -> dict[str, Any]:
    deps = rng.sample(ids[:index], min(index, rng.choice([0, 0, 1, 1, 2]))) if index else []
    version = f"{1 + index % 3}.{index % 7}.{index % 5}"
    return {
        "id": pid,
        "name": f"Plugin {index}",
        "version": version,
        "description": f"Synthetic plugin {index} for the observe benchmark.",
        "runtime": {
            "type": "typescript",
            "image": f"registry.example.com/plexica/{pid}:{version}",
            "resources": {"cpu": "250m", "memory": "256Mi"},
        },
        "dependencies": [{"plugin": d, "version": "^1.0.0"} for d in sorted(deps)],
        "api": {"basePath": f"/api/plugins/{pid}", "healthCheck": "/health/ready"},
        "frontend": {
            "remoteEntry": f"https://cdn.example.com/{pid}/{version}/remoteEntry.js",
            "routePrefix": f"/{pid}",
            "exposes": {},
        },
        "permissions": [
            {"key": f"{pid}:res{k}:read", "name": f"Read res{k}", "description": f"Read res{k}."}
            for k in range(2 + index % 5)
        ],
        "events": {"publishes": [f"{pid}.thing.created"], "subscribes": []},
        "configuration": {"schema": {"type": "object"}},
        "migrations": {"path": "migrations"},
    }


def make_configuration(rng: random.Random, slug: str) -> dict[str, Any]:
    """A tenant's configuration of a plugin: 15 % empty, otherwise 1-4 keys, some nested."""
    if rng.random() < 0.15:
        return {}
    config: dict[str, Any] = {"region": rng.choice(["eu-west", "us-east", "ap-south"])}
    if rng.random() < 0.7:
        config["limit"] = rng.randint(1, 10_000)
    if rng.random() < 0.5:
        config["notify"] = {"email": f"ops@{slug}.example.com", "daily": rng.random() < 0.5}
    if rng.random() < 0.3:
        config["tags"] = rng.sample(["a", "b", "c", "d", "e"], 2)
    return config


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _chunks(lines: Iterator[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= COPY_CHUNK:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


def _copy(conn: Any, statement: str, lines: Iterator[str]) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in _chunks(lines):
            copy.write(chunk)


def load(dsn: str, args: argparse.Namespace) -> dict[str, int]:
    """Create the store and load the synthetic platform; returns the row counts."""
    from plexica_gitops.hashing import stable_hash
    from plexica_gitops.lifecycle import LifecycleStatus as S
    from plexica_gitops.store import catalog
    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.schema import init_store

    rng = random.Random(args.seed)
    ids = [f"plugin-{i:03d}" for i in range(args.plugins)]
    walks = {
        "REGISTERED": [],
        "INSTALLED": [S.INSTALLING, S.INSTALLED],
        "ACTIVE": [S.INSTALLING, S.INSTALLED, S.ACTIVE],
        "DISABLED": [S.INSTALLING, S.INSTALLED, S.ACTIVE, S.DISABLED],
    }
    with connect(dsn) as conn:
        init_store(conn)
        with conn.transaction():  # plugins go through catalog.py, as apply writes them
            for index, pid in enumerate(ids):
                manifest = make_manifest(pid, index, ids, rng)
                catalog.register_plugin(
                    conn,
                    pid,
                    manifest["name"],
                    manifest["version"],
                    manifest,
                    stable_hash(manifest),
                )
                status = STATUSES[index % len(STATUSES)]
                current = S.REGISTERED
                for step in walks[status]:
                    catalog.transition(conn, pid, current, step)
                    current = step
                if status != "REGISTERED":
                    permissions = {
                        p["key"]: (p["name"], p["description"]) for p in manifest["permissions"]
                    }
                    catalog.register_permissions(conn, pid, permissions)
                if status == "ACTIVE":
                    frontend = manifest["frontend"]
                    catalog.register_routes(
                        conn, pid, manifest["api"]["basePath"], frontend["routePrefix"],
                        frontend["remoteEntry"],
                    )  # fmt: skip
        tenants = [
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                f"t{i:05d}",
                "suspended" if rng.random() < 0.1 else "active",
            )
            for i in range(args.tenants)
        ]
        _copy(
            conn,
            "COPY plexica.tenants (id, slug, schema_name, status) FROM STDIN",
            (f"{tid}\t{slug}\ttenant_{slug}\t{status}\n" for tid, slug, status in tenants),
        )

        def bindings() -> Iterator[str]:
            for tid, slug, _ in tenants:
                for pid in ids:
                    enabled = "t" if rng.random() < 0.95 else "f"
                    config = json.dumps(make_configuration(rng, slug), separators=(",", ":"))
                    yield f"{tid}\t{pid}\t{enabled}\t{_copy_text(config)}\n"

        _copy(
            conn,
            "COPY plexica.tenant_plugins (tenant_id, plugin_id, enabled, configuration) FROM STDIN",
            bindings(),
        )
        versions = range(1, args.migrations + 1)
        checksums = {(pid, v): _sha(pid, v) for pid in ids for v in versions}

        def applied() -> Iterator[str]:
            for tid, _, _ in tenants:
                for pid in ids:
                    for v in versions:
                        name, duration = f"{v:04d}_step_{v}", rng.randint(1, 900)
                        yield f"{tid}\t{pid}\t{v}\t{name}\t{checksums[pid, v]}\t{duration}\n"

        _copy(
            conn,
            "COPY plexica.tenant_migrations "
            "(tenant_id, plugin_id, version, name, checksum, duration_ms) FROM STDIN",
            applied(),
        )
        counts = {
            "plugins": len(ids),
            "tenants": len(tenants),
            "tenant_plugins": len(tenants) * len(ids),
            "tenant_migrations": len(tenants) * len(ids) * len(versions),
            "last_applied": 0,
        }
        if args.last_applied == "all":
            row = conn.execute(
                "INSERT INTO plexica_gitops.applies (desired_revision, plan_hash, host, pid, "
                "result) VALUES ('bench', 'bench', 'bench', 1, 'succeeded') RETURNING id"
            ).fetchone()
            assert row is not None
            apply_id = row[0]

            def fingerprints() -> Iterator[str]:
                for pid in ids:
                    for suffix in ("", ".workload", ".permissions", ".routes"):
                        yield f"plugin.{pid}{suffix}\t{_sha(pid, suffix)[:16]}\t{apply_id}\n"
                for _, slug, _ in tenants:
                    yield f"tenant.{slug}\t{_sha(slug)[:16]}\t{apply_id}\n"
                    for pid in ids:
                        yield f"tenant.{slug}.plugin.{pid}\t{_sha(slug, pid)[:16]}\t{apply_id}\n"
                        fingerprint = _sha(slug, pid, "m")[:16]
                        yield f"tenant.{slug}.migrations.{pid}\t{fingerprint}\t{apply_id}\n"

            _copy(
                conn,
                "COPY plexica_gitops.last_applied (address, fingerprint, apply_id) FROM STDIN",
                fingerprints(),
            )
            counts["last_applied"] = len(ids) * 4 + len(tenants) * (1 + 2 * len(ids))
        conn.execute("VACUUM ANALYZE")
    return counts


# --------------------------------------------------------------------------- measuring


def _backend_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a PostgreSQL backend on this machine, if readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _build_model_validate(conn: Any, plugins: Any, last_applied: Any) -> Any:
    """Alternative: the server nests everything as JSON per tenant; the client parses it
    to dicts and validates the whole LiveState with `LiveState.model_validate`."""
    from plexica_gitops.live.model import LiveState

    query = """
    SELECT t.slug, json_build_object(
        'id', t.id, 'schema_name', t.schema_name, 'status', t.status,
        'plugins', COALESCE(tp.plugins, '{}'), 'migrations', COALESCE(tm.migrations, '{}'))::text
    FROM plexica.tenants AS t
    LEFT JOIN (SELECT tenant_id, json_object_agg(plugin_id, json_build_object(
                   'enabled', enabled, 'configuration', configuration)) AS plugins
               FROM plexica.tenant_plugins GROUP BY tenant_id) AS tp ON tp.tenant_id = t.id
    LEFT JOIN (SELECT tenant_id, json_object_agg(plugin_id, applied) AS migrations
               FROM (SELECT tenant_id, plugin_id, json_agg(json_build_object(
                         'version', version, 'name', name, 'checksum', checksum)
                         ORDER BY version) AS applied
                     FROM plexica.tenant_migrations GROUP BY tenant_id, plugin_id) AS m
               GROUP BY tenant_id) AS tm ON tm.tenant_id = t.id
    """
    with conn.cursor() as cursor:
        tenants = {slug: json.loads(text) for slug, text in cursor.stream(query, size=64)}
    return LiveState.model_validate(
        {
            "plugins": plugins,
            "tenants": tenants,
            "topics_observed": False,
            "last_applied": last_applied,
        }
    )


def _build_model_construct(conn: Any, plugins: Any, last_applied: Any) -> Any:
    """Alternative: raw rows, one per binding and per migration, streamed; every object
    made with `model_construct` (no validation, nothing shared)."""
    from plexica_gitops.desired.model import TenantStatus
    from plexica_gitops.live.model import AppliedMigration, LiveState, LiveTenant, LiveTenantPlugin

    bindings: dict[str, dict[str, Any]] = {}
    migrations: dict[str, dict[str, list[Any]]] = {}
    with conn.cursor(binary=True) as cursor:
        for tid, pid, enabled, config in cursor.stream(
            "SELECT tenant_id::text, plugin_id, enabled, configuration::text "
            "FROM plexica.tenant_plugins",
            size=1024,
        ):
            # slotted pydantic dataclasses have no model_construct: the constructor
            bindings.setdefault(tid, {})[pid] = LiveTenantPlugin(
                enabled=enabled, configuration=json.loads(config)
            )
        for tid, pid, version, name, checksum in cursor.stream(
            "SELECT tenant_id::text, plugin_id, version, name, checksum "
            "FROM plexica.tenant_migrations ORDER BY tenant_id, plugin_id, version",
            size=1024,
        ):
            migrations.setdefault(tid, {}).setdefault(pid, []).append(
                AppliedMigration(version=version, name=name, checksum=checksum)
            )
        tenants = {
            slug: LiveTenant.model_construct(
                id=tid,
                schema_name=schema,
                status=TenantStatus(status),
                plugins=bindings.get(tid, {}),
                migrations=migrations.get(tid, {}),
            )
            for tid, slug, schema, status in cursor.execute(
                "SELECT id::text, slug, schema_name, status FROM plexica.tenants"
            )
        }
    return LiveState.model_construct(
        plugins=plugins, tenants=tenants, topics_observed=False, last_applied=last_applied
    )


def child_measure(dsn: str, mode: str, repeats: int) -> None:
    """Runs in a fresh process; prints one JSON object."""
    _import_package()
    import psycopg

    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.observe import (
        _gc_paused,
        _observe_last_applied,
        _observe_plugins,
        observe_store,
    )
    from plexica_gitops.store.schema import recorded_versions, require_current

    baseline = _current_rss_mb()
    conn: psycopg.Connection[Any] = connect(dsn)
    backend = conn.info.backend_pid

    def alternative(build: Callable[[Any, Any, Any], Any]) -> Callable[[Any], Any]:
        """The same transaction and plugin / last-applied reads as observe_store; only the
        tenants are read and built another way."""

        def run(conn: Any) -> Any:
            with _gc_paused(), conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                require_current(conn, recorded_versions(conn))
                plugins = _observe_plugins(conn)
                last_applied = _observe_last_applied(conn)
                return build(conn, plugins, last_applied)

        return run

    call = {
        "shipped": observe_store,
        "model_validate": alternative(_build_model_validate),
        "model_construct": alternative(_build_model_construct),
    }[mode]
    runs = []
    shape: dict[str, int] = {}
    for _ in range(repeats):
        gc.collect()
        server_before = _backend_cpu_s(backend)
        cpu, wall = time.process_time(), time.perf_counter()
        state = call(conn)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server_after = _backend_cpu_s(backend)
        server = (
            server_after - server_before
            if server_after is not None and server_before is not None
            else None
        )
        runs.append({"wall_s": wall, "client_cpu_s": cpu, "server_cpu_s": server})
        shape = {
            "plugins": len(state.plugins),
            "tenants": len(state.tenants),
            "tenant_plugins": sum(len(t.plugins) for t in state.tenants.values()),
            "tenant_migrations": sum(
                len(m) for t in state.tenants.values() for m in t.migrations.values()
            ),
            "last_applied": len(state.last_applied),
        }
        del state
    conn.close()
    print(
        json.dumps(
            {
                "mode": mode,
                "runs": runs,
                "shape": shape,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": _current_rss_mb(),  # ru_maxrss: this process's peak so far
            }
        )
    )


def run_child(dsn: str, mode: str, repeats: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--_child", dsn, "--_mode", mode, "--repeats", str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    best = min(result["runs"], key=lambda r: r["wall_s"])
    result["best"] = best
    return result


def describe_source() -> str:
    import plexica_gitops

    package = Path(plexica_gitops.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return str(package)
    return f"{package} @ {commit}" + (" (uncommitted changes)" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--migrations", type=int, default=2, help="per binding (default 2)")
    parser.add_argument("--last-applied", choices=["all", "none"], default="all")
    parser.add_argument("--repeats", type=int, default=3, help="observe runs; best is shown")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compare", action="store_true", help="also time the alternatives")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_mode", default="shipped", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        child_measure(args._child, args._mode, args.repeats)
        return 0

    _import_package()
    import psycopg

    from devenv.postgres import PostgresServer

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    server = PostgresServer()
    say(f"starting PostgreSQL in {server.base} ...")
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
            version = admin.execute("SHOW server_version").fetchone()
        dsn = server.dsn.rsplit("/", 1)[0] + "/" + DATABASE
        say(f"loading {args.plugins} plugins x {args.tenants:,} tenants ...")
        started = time.perf_counter()
        counts = load(dsn, args)
        load_s = time.perf_counter() - started
        say(f"loaded in {load_s:.1f} s; observing ({args.repeats} runs per build) ...")
        modes = BUILDS if args.compare else BUILDS[:1]
        results = {mode: run_child(dsn, mode, args.repeats) for mode in modes}
    finally:
        server.stop()
    for mode, result in results.items():
        if result["shape"] != counts:
            print(f"{mode}: observed {result['shape']}, loaded {counts}", file=sys.stderr)
            return 1
    report = {
        "rows": counts,
        "load_s": load_s,
        "results": results,
        "python": platform.python_version(),
        "postgresql": version[0] if version else None,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "source": describe_source(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    rows = report["rows"]
    print(
        f"\nrows: {rows['plugins']} plugins, {rows['tenants']:,} tenants, "
        f"{rows['tenant_plugins']:,} tenant_plugins, {rows['tenant_migrations']:,} "
        f"tenant_migrations, {rows['last_applied']:,} last_applied (loaded in "
        f"{report['load_s']:.1f} s)\n"
    )
    print("| build | best wall s | client CPU s | server CPU s | runs (wall s) | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for mode, result in report["results"].items():
        best = result["best"]
        server = f"{best['server_cpu_s']:.2f}" if best["server_cpu_s"] is not None else "n/a"
        runs = ", ".join(f"{r['wall_s']:.2f}" for r in result["runs"])
        peak = f"{result['peak_rss_mb']:.0f}"
        print(
            f"| {mode} | {best['wall_s']:.2f} | {best['client_cpu_s']:.2f} | {server} | "
            f"{runs} | {peak} (imports {result['baseline_rss_mb']:.0f}) |"
        )
    load = ", ".join(f"{x:.1f}" for x in report["load_average"])
    print(
        f"\nPython {report['python']}, PostgreSQL {report['postgresql']}, {report['cpus']} CPUs, "
        f"load average {load}\n{report['source']}"
    )


if __name__ == "__main__":
    sys.exit(main())
