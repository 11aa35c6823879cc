"""Scale benchmark for tenant migrations (`plexica_gitops.store.migrate.run_migrations`).

Every round starts its own throwaway PostgreSQL (tests/postgres_server.py), so no round
pays for what an earlier one left behind; creates a database with the store schema and N
tenant schemas (default 1,000, registered in plexica.tenants); then applies the same three
migration files (tables, indexes, a foreign key, an added column) to every tenant and
times it:

  psql xS     the floor: the same SQL through `psql -f`, one transaction per tenant
              (BEGIN; SET LOCAL search_path; the three files; the history INSERT; COMMIT),
              in S sessions at once (the tenants split between them)
  ours xP     run_migrations(..., parallelism=P): one transaction per tenant on P pooled
              connections, with its checks (tenant registered, schema exists, history read
              and compared by checksum) and a history row per file

Server start and schema creation are not timed. Each round checks its result: every
tenant has the three tables and three history rows. Besides wall time, it reports the CPU
time of the client (this process, or the psql processes) and of the server's processes.

    python bench/migrations_scale.py                  # 1,000 tenants; ours x1/x4/x8, psql x1/x4
    python bench/migrations_scale.py --repeat 3       # best of 3, variants interleaved
    python bench/migrations_scale.py --tenants 200    # smaller
    python bench/migrations_scale.py --parallelism 2,4 --psql-sessions 1,2
    python bench/migrations_scale.py --json           # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(REPO_ROOT))

from devenv.postgres import PostgresServer  # noqa: E402
from plexica_gitops.desired.build import MigrationFile  # noqa: E402
from plexica_gitops.store.ddl import DDL_VERSIONS  # noqa: E402
from plexica_gitops.store.migrate import TenantMigrationJob, run_migrations  # noqa: E402

PLUGIN = "crm"
# ENVIRONMENT.md, measured on these machines (2 cores), for reference
ENVIRONMENT_FLOOR_S = {1: 8.5, 4: 5.2}

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_create_contacts.sql",
        """\
CREATE TABLE contacts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    first_name  text NOT NULL,
    last_name   text NOT NULL,
    email       text,
    company     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_email_key ON contacts (lower(email));
CREATE TABLE contact_notes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id  uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
""",
    ),
    (
        "0002_create_deals.sql",
        """\
CREATE TABLE deals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id  uuid NOT NULL REFERENCES contacts (id),
    title       text NOT NULL,
    amount      numeric(12, 2) NOT NULL CHECK (amount >= 0),
    stage       text NOT NULL DEFAULT 'lead',
    closed_at   timestamptz
);
CREATE INDEX deals_contact ON deals (contact_id);
CREATE INDEX deals_open ON deals (stage) WHERE closed_at IS NULL;
""",
    ),
    (
        "0003_contact_phone.sql",
        """\
ALTER TABLE contacts ADD COLUMN phone text;
CREATE INDEX contacts_company ON contacts (company);
""",
    ),
]


def migration_files() -> list[MigrationFile]:
    files = []
    for file_name, text in MIGRATIONS:
        number, name = file_name.removesuffix(".sql").split("_", 1)
        files.append(
            MigrationFile(
                number=int(number),
                name=name,
                path=f"plugins/{PLUGIN}/migrations/{file_name}",
                checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                sql=text,
            )
        )
    return files


@dataclass(frozen=True)
class Tenant:
    slug: str
    id: uuid.UUID
    schema: str


@dataclass
class Round:
    mode: str  # "psql" | "ours"
    concurrency: int
    wall_s: float
    client_cpu_s: float  # ours: this process (all threads); psql: the psql processes
    server_cpu_s: float  # every process of the throwaway PostgreSQL server
    tenants: int
    server_version: str

    @property
    def label(self) -> str:
        return f"{self.mode} x{self.concurrency}"

    @property
    def tenants_per_s(self) -> float:
        return self.tenants / self.wall_s

    @property
    def cpu_s(self) -> float:
        return self.client_cpu_s + self.server_cpu_s


def _proc_times(pid: int) -> tuple[int, list[int]]:
    """(ppid, [utime, stime, cutime, cstime]) in clock ticks, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), [int(v) for v in fields[11:15]]


def server_cpu_seconds(server: PostgresServer) -> float:
    """CPU time used so far by the server: the postmaster, its live children, and the
    children it has reaped (exited backends count in the postmaster's cutime/cstime)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    ticks = sum(_proc_times(postmaster)[1])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == postmaster:
            continue
        try:
            ppid, times = _proc_times(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if ppid == postmaster:
            ticks += times[0] + times[1]
    return ticks / os.sysconf("SC_CLK_TCK")


def _database(server: PostgresServer, name: str) -> str:
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.dsn.rsplit("/", 1)[0] + "/" + name


def _drop(server: PostgresServer, name: str) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _prepare(dsn: str, count: int) -> list[Tenant]:
    """The store schema and `count` registered tenants with empty schemas (not timed)."""
    tenants = [Tenant(f"tenant-{i:04d}", uuid.uuid4(), f"tenant_{i:04d}") for i in range(count)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _version, _description, ddl in DDL_VERSIONS:
            with conn.transaction():
                conn.execute(ddl)  # our own DDL, no placeholders
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO plexica.tenants (id, slug, schema_name, status)"
                " VALUES (%s, %s, %s, 'active')",
                [(t.id, t.slug, t.schema) for t in tenants],
            )
            for t in tenants:
                cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(t.schema)))
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return tenants


def _check(dsn: str, tenants: list[Tenant], files: list[MigrationFile]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM plexica.tenant_migrations").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname LIKE 'tenant\\_%%'"
            " AND tablename IN ('contacts', 'contact_notes', 'deals')"
        ).fetchone()
        phones = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema LIKE 'tenant\\_%%' AND table_name = 'contacts'"
            " AND column_name = 'phone'"
        ).fetchone()
    expected = (len(tenants) * len(files), len(tenants) * 3, len(tenants))
    got = (rows[0] if rows else 0, tables[0] if tables else 0, phones[0] if phones else 0)
    if got != expected:
        raise SystemExit(
            f"round check failed: (history rows, tables, phone columns) {got} != {expected}"
        )


def _psql_scripts(
    dsn: str, tenants: list[Tenant], files: list[MigrationFile], sessions: int, out: Path
) -> list[Path]:
    """One script per session: per tenant BEGIN; SET LOCAL search_path; the files; the history
    INSERT; COMMIT. Identifiers and values are quoted by psycopg, never by hand."""
    with psycopg.connect(dsn) as conn:
        parts: list[list[str]] = [[] for _ in range(sessions)]
        for index, t in enumerate(tenants):
            values = sql.SQL(", ").join(
                sql.SQL("({}, {}, {}, {}, {}, 0)").format(
                    sql.Literal(str(t.id)),
                    sql.Literal(PLUGIN),
                    sql.Literal(f.number),
                    sql.Literal(f.name),
                    sql.Literal(f.checksum),
                )
                for f in files
            )
            block = sql.SQL(
                "BEGIN;\nSET LOCAL search_path TO {};\n{}\n"
                "INSERT INTO plexica.tenant_migrations"
                " (tenant_id, plugin_id, version, name, checksum, duration_ms) VALUES {};\n"
                "COMMIT;\n"
            ).format(
                sql.Identifier(t.schema),
                sql.SQL("\n".join(f.sql for f in files)),
                values,
            )
            parts[index % sessions].append(block.as_string(conn))
    paths = []
    for number, blocks in enumerate(parts):
        path = out / f"session-{number}.sql"
        path.write_text("".join(blocks), encoding="utf-8")
        paths.append(path)
    return paths


def _run_psql(server: PostgresServer, database: str, scripts: list[Path]) -> float:
    psql = shutil.which("psql") or str(server.bin / "psql")
    base = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
    base += ["-p", str(server.port), "-U", "postgres", "-d", database]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*base, "-f", str(s)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for s in scripts
    ]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - started
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode:
            raise SystemExit(f"psql failed ({proc.returncode}): {err}")
    return wall


def run_round(mode: str, concurrency: int, count: int) -> Round:
    """One timed run on its own fresh server: what earlier rounds left behind (tens of
    thousands of relation files created and unlinked, discards on the disk) must not slow
    the next one, so every variant starts from the same state."""
    server = PostgresServer()
    server.start()
    try:
        return _timed_round(server, mode, concurrency, count)
    finally:
        server.stop()


def _settle() -> None:
    """Flush what preparing the round wrote, so the timed part does not pay for it."""
    os.sync()
    time.sleep(1.0)


def _timed_round(server: PostgresServer, mode: str, concurrency: int, count: int) -> Round:
    files = migration_files()
    name = "bench"
    dsn = _database(server, name)
    try:
        tenants = _prepare(dsn, count)
        if mode == "psql":
            with tempfile.TemporaryDirectory(prefix="migrations-scale-") as tmp:
                scripts = _psql_scripts(dsn, tenants, files, concurrency, Path(tmp))
                _settle()
                children = os.times()
                server_before = server_cpu_seconds(server)
                wall = _run_psql(server, name, scripts)
                time.sleep(0.2)  # let the postmaster reap the closed backends
                server_cpu = server_cpu_seconds(server) - server_before
                after = os.times()
                client_cpu = (after.children_user + after.children_system) - (
                    children.children_user + children.children_system
                )
        else:
            jobs = [TenantMigrationJob(t.slug, t.id, t.schema, PLUGIN, files) for t in tenants]
            _settle()
            cpu_before = time.process_time()
            server_before = server_cpu_seconds(server)
            started = time.perf_counter()
            report = run_migrations(dsn, jobs, parallelism=concurrency)
            wall = time.perf_counter() - started
            client_cpu = time.process_time() - cpu_before
            time.sleep(0.2)  # let the postmaster reap the closed backends
            server_cpu = server_cpu_seconds(server) - server_before
            if not report.ok:
                first = report.failed[0].failure
                raise SystemExit(f"{len(report.failed)} tenant(s) failed, first: {first}")
        _check(dsn, tenants, files)
        with psycopg.connect(dsn) as conn:
            version = conn.info.parameter_status("server_version") or "?"
        return Round(mode, concurrency, wall, client_cpu, server_cpu, count, version)
    finally:
        _drop(server, name)


def _commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "plexica_gitops"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--parallelism", type=_ints, default=[1, 4, 8], help="ours, e.g. 1,4,8")
    parser.add_argument("--psql-sessions", type=_ints, default=[1, 4], help="the floor, e.g. 1,4")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant; best counts")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.tenants < 1:
        parser.error("--repeat and --tenants must be at least 1")

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    server_version = "?"
    walls: dict[tuple[str, int], list[Round]] = {}
    plan = [("psql", s) for s in args.psql_sessions] + [("ours", p) for p in args.parallelism]
    for repeat in range(args.repeat):
        # interleaved, so changes in the machine's load hit every variant; the order rotates
        # from one repeat to the next, so no variant always goes first
        offset = repeat % len(plan)
        for mode, concurrency in plan[offset:] + plan[:offset]:
            tag = f" (repeat {repeat + 1}/{args.repeat})" if args.repeat > 1 else ""
            say(f"{mode} x{concurrency}: {args.tenants} tenants x {len(MIGRATIONS)} files{tag}")
            done = run_round(mode, concurrency, args.tenants)
            server_version = done.server_version
            walls.setdefault((mode, concurrency), []).append(done)
            say(f"  {done.wall_s:.2f} s")

    # the best of the repeats: the least disturbed by other load on the machine
    rounds = [min(runs, key=lambda r: r.wall_s) for runs in walls.values()]
    floors = {r.concurrency: r for r in rounds if r.mode == "psql"}

    def floor_for(r: Round) -> Round | None:
        if not floors:
            return None
        if r.concurrency in floors:
            return floors[r.concurrency]
        below = [c for c in floors if c <= r.concurrency]
        return floors[max(below)] if below else floors[min(floors)]

    result: dict[str, Any] = {
        "tenants": args.tenants,
        "files": len(MIGRATIONS),
        "repeat": args.repeat,
        "postgresql": server_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "commit": _commit(),
        "environment_floor_s": ENVIRONMENT_FLOOR_S,
        "rounds": [],
    }
    for r in rounds:
        floor = floor_for(r) if r.mode == "ours" else None
        result["rounds"].append(
            {
                "mode": r.mode,
                "concurrency": r.concurrency,
                "wall_s": round(r.wall_s, 3),
                "all_wall_s": [round(x.wall_s, 3) for x in walls[(r.mode, r.concurrency)]],
                "tenants_per_s": round(r.tenants_per_s, 1),
                "client_cpu_s": round(r.client_cpu_s, 2),
                "server_cpu_s": round(r.server_cpu_s, 2),
                "floor": floor.label if floor else None,
                "overhead_vs_floor": round(r.wall_s / floor.wall_s - 1, 3) if floor else None,
                "cpu_overhead_vs_floor": round(r.cpu_s / floor.cpu_s - 1, 3) if floor else None,
            }
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    print()
    print(
        f"{args.tenants} tenant schemas x {len(MIGRATIONS)} migration files, "
        f"PostgreSQL {server_version}, Python {result['python']}, {result['cpus']} CPUs"
    )
    print(f"commit {result['commit']}, load average {result['load_average']:.2f}")
    if args.repeat > 1:
        print(f"best of {args.repeat} runs of each (all wall times: --json)")
    print(
        f"{'run':<10} {'wall s':>7} {'tenants/s':>9} {'client CPU s':>12} {'server CPU s':>12}"
        "  wall vs floor  CPU vs floor"
    )
    for r, row in zip(rounds, result["rounds"], strict=True):
        versus = (
            f"{row['overhead_vs_floor']:>+13.0%}  {row['cpu_overhead_vs_floor']:>+12.0%}"
            f" ({row['floor']})"
            if row["floor"]
            else ""
        )
        print(
            f"{r.label:<10} {r.wall_s:>7.2f} {r.tenants_per_s:>9.0f} {r.client_cpu_s:>12.2f}"
            f" {r.server_cpu_s:>12.2f}  {versus}"
        )
    print(
        "(ENVIRONMENT.md's floor for 1,000 tenants: "
        + ", ".join(f"psql x{k} {v} s" for k, v in ENVIRONMENT_FLOOR_S.items())
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
