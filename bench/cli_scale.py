"""The real command at platform scale: `plexica-gitops validate DIR` and `plexica-gitops plan
DIR`, run as a user runs them, on large generated desired states.

For each size (`--sizes`, default 100x1000,100x10000,200x10000x20):

* PxT: P plugins x T tenants, every tenant binding every plugin (plan_scale.py's world: the
  YAML of its "new" desired state, the live state converged from its "old" one, about 1 %
  different: git changes, drift, 3 version bumps, 1 tenant in 1,000 new);
* PxTxK: validate_scale.py's skewed generator (K bindings per tenant, Zipf-like
  popularity, suspended tenants, plugins not active), the live state converged from that
  same desired state with plan_scale.py's drift (0.5 % of bindings disabled outside
  plexica-gitops, 1 tenant in 1,000 missing).

Three commands, each run three times, each run a fresh process measured by the parent with
`os.wait4` (wall, CPU = user + system, peak RSS of that one process):

    validate     plexica-gitops validate DIR
    plan-json    plexica-gitops plan DIR --live-state live.json
    plan-db      plexica-gitops plan DIR --unobserved runtime,broker   (PLEXICA_DATABASE_URL)

`plan-db` observes a real PostgreSQL (devenv.postgres.PostgresServer, a database per size,
`plexica-gitops init`) holding the converged platform: the rows a perfect apply leaves,
bulk-loaded with COPY from the same snapshot `plan-json` reads. Workloads live in the
container engine and topics in the broker, not in PostgreSQL, so the plan observes neither:
`--unobserved runtime,broker` says so (without it, plan refuses to plan blind).

Runs, each command with its own cache directory (PLEXICA_CACHE_DIR, source/cache.py),
emptied before the first: "cold" (the cache empty: everything parsed, checked and written
to it), "warm" (the same command again, the cache full), "changed" (after one tenant file
changed, one binding disabled: the pull-request case, the cache full but for that file) and
"nocache" (the same changed state with `--no-cache`: what every run cost before the cache).
The cold run is instrumented: it runs the CLI's own `app` in-process (`--_cli`) with timers
around the package's stage functions (table STAGES), so its stage shares come from the same
process the parent measures; the others run the plain `plexica-gitops` console script.

Terraform plans the same action graph (the plan of plan-json, one `terraform_data` per
action, plan_scale.terraform_config) once per size: the ratio to our cold plan-json run.

    python bench/cli_scale.py                                # all three sizes (long)
    python bench/cli_scale.py --sizes 100x1000 --skip-terraform
    python bench/cli_scale.py --sizes 20x200,30x400x10 --json
    python bench/cli_scale.py --keep bench/out/cli           # keep (and reuse) the inputs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# The stages timed in the instrumented run: (module, function, stage), each patched in the
# module that calls it. Nested calls are taken out of the outer stage (build_desired_state
# reads files through iter_directory, a generator: each file it yields counts as `load`).
# When these functions move, update the table (and only it).
STAGES = (
    ("plexica_gitops.source.loader", "iter_directory", "load"),
    ("plexica_gitops.source.loader", "iter_tree", "load"),
    ("plexica_gitops.desired.validate", "build_desired_state", "build"),
    ("plexica_gitops.desired.validate", "validate_build", "rules"),
    ("plexica_gitops.service", "read_live_state", "live"),
    ("plexica_gitops.service", "_secret_rotations", "secrets"),
    ("plexica_gitops.service", "build_plan", "plan"),
    ("plexica_gitops.cli", "_render", "render"),
    ("plexica_gitops.render.findings", "print_text", "render"),
)
GENERATORS = {"iter_directory", "iter_tree"}  # timed per item yielded, not per call
NESTED = {"build": "load"}  # stage -> the stage it contains
_DONE = object()
STAGE_ORDER = ("load", "build", "rules", "live", "secrets", "plan", "render", "other")


def cli_instrumented(out: Path, argv: list[str]) -> int:
    """Runs in the measured process: the CLI's `app` with timers around its stages."""
    import importlib

    started, cpu_started = time.perf_counter(), time.process_time()
    import plexica_gitops.cli as cli

    imported, imported_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(original: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                wall[stage] = wall.get(stage, 0.0) + time.perf_counter() - start
                cpu[stage] = cpu.get(stage, 0.0) + time.process_time() - cpu_start

        return call

    def timed_items(original: Callable[..., Iterator[Any]], stage: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            items = original(*args, **kwargs)
            step = timed(lambda: next(items, _DONE), stage)
            while (item := step()) is not _DONE:
                yield item

        return call

    for module_name, function, stage in STAGES:
        module = importlib.import_module(module_name)
        wrap = timed_items if function in GENERATORS else timed
        setattr(module, function, wrap(getattr(module, function), stage))
    start, cpu_start = time.perf_counter(), time.process_time()
    code: Any = 0
    try:
        cli.app(argv, prog_name="plexica-gitops")
    except SystemExit as exit_:
        code = exit_.code
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    sys.stdout.flush()
    for outer, inner in NESTED.items():
        if outer in wall and inner in wall:
            wall[outer] -= wall[inner]
            cpu[outer] -= cpu[inner]
    wall["other"] = total - sum(wall.values())
    cpu["other"] = total_cpu - sum(cpu.values())
    figures = {
        "imports_s": imported,
        "imports_cpu_s": imported_cpu,
        "app_s": total,
        "app_cpu_s": total_cpu,
        "stages_s": wall,
        "stages_cpu_s": cpu,
        "exit_code": code,
    }
    out.write_text(json.dumps(figures), encoding="utf-8")
    return int(code or 0)


if __name__ == "__main__" and sys.argv[1:2] == ["--_cli"]:
    # the measured process: nothing but the CLI is imported (not the generators below)
    sys.exit(cli_instrumented(Path(sys.argv[2]), sys.argv[3:]))

for _extra in (BENCH_DIR, REPO_ROOT):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

import observe_scale  # noqa: E402  (COPY helpers)
import plan_scale as ps  # noqa: E402  (the world, the converged live state, Terraform)
import validate_scale as vs  # noqa: E402  (the skewed generator, YAML writer)

DEFAULT_SIZES = "100x1000,100x10000,200x10000x20"
COMMANDS = ("validate", "plan-json", "plan-db")
RUNS = ("cold", "warm", "changed", "nocache")
UNOBSERVED = "runtime,broker"
GENERATED = "generated.json"
TERRAFORM_TIMEOUT = 1200.0


@dataclasses.dataclass(frozen=True)
class Size:
    plugins: int
    tenants: int
    per_tenant: int | None  # None: every tenant binds every plugin

    @classmethod
    def parse(cls, text: str) -> Size:
        parts = [int(p) for p in text.lower().split("x")]
        if len(parts) not in (2, 3) or min(parts) < 1:
            raise argparse.ArgumentTypeError(f"size {text!r}: use PxT or PxTxK, e.g. 100x1000")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @property
    def label(self) -> str:
        tail = f"x{self.per_tenant}" if self.per_tenant else ""
        return f"{self.plugins}x{self.tenants}{tail}"

    @property
    def bindings(self) -> int:
        return self.tenants * (self.per_tenant or self.plugins)


def log(message: str) -> None:
    sys.stderr.write(f"[cli_scale {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- generation


def _catalog_rows(desired: Any) -> dict[str, Any]:
    """What apply writes into each plugin's catalog row (steps._register)."""
    from plexica_gitops.desired.view import catalog_manifest, manifest_hash

    return {
        pid: {
            "name": entry.manifest.name,
            "version": entry.manifest.version,
            "manifest": catalog_manifest(entry),
            "manifest_hash": manifest_hash(entry),
        }
        for pid, entry in desired.plugins.items()
    }


def _disable_change(root: Path, slug: str, plugin_id: str) -> dict[str, str]:
    """One tenant file changed: the binding of `plugin_id` (nothing in that tenant depends
    on it) disabled. The file's text before and after, to apply and undo."""
    path = root / "tenants" / f"{slug}.yaml"
    text = path.read_text(encoding="utf-8")
    needle = f"\n    {plugin_id}:\n      enabled: true\n"
    if text.count(needle) != 1:
        raise SystemExit(f"cannot find the binding of {plugin_id} in {path}")
    changed = text.replace(needle, f"\n    {plugin_id}:\n      enabled: false\n")
    return {"file": str(path), "before": text, "after": changed, "binding": f"{slug}/{plugin_id}"}


def _leaf_binding(desired: Any, slug: str) -> str:
    bound = sorted(desired.tenants[slug].document.spec.plugins)
    needed = {d.plugin for pid in bound for d in desired.plugins[pid].manifest.dependencies}
    return next(pid for pid in bound if pid not in needed)


def write_converged_live(desired: Any, path: Path) -> dict[str, int]:
    """The converged live state of `desired` with plan_scale's drift (bindings disabled
    outside plexica-gitops, 1 tenant in 1,000 not on the platform), streamed as JSON."""
    converged = ps.Converged(desired)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    counts = {"bindings": 0, "bindings_disabled": 0, "tenants_missing": 0}
    with path.open("w", encoding="utf-8") as out:
        plugins = {pid: converged.plugin(pid) for pid in converged.plugins}
        out.write('{"platform_version":null,"plugins":')
        out.write(dumps({k: v for k, v in plugins.items() if v is not None}))
        out.write(',"topics":' + dumps(converged.topics()) + ',"topics_observed":true,"tenants":{')
        first = True
        for index, (slug, entry) in enumerate(sorted(desired.tenants.items())):
            if index % ps.NEW_TENANT_EVERY == ps.NEW_TENANT_EVERY // 2:
                counts["tenants_missing"] += 1
                continue
            disabled = {
                pid
                for number, pid in enumerate(sorted(entry.document.spec.plugins))
                if ps.GIT_CHANGED_PER_MILLE
                <= ps._mille(index, number)
                < ps.GIT_CHANGED_PER_MILLE + ps.LIVE_DISABLED_PER_MILLE
            }
            record = converged.tenant(slug, entry, disabled)
            counts["bindings"] += len(record["plugins"])
            counts["bindings_disabled"] += len(disabled)
            out.write(("" if first else ",") + dumps(slug) + ":" + dumps(record))
            first = False
        out.write('},"last_applied":' + dumps(dict(sorted(converged.last_applied.items()))) + "}")
    return counts


def child_generate(params: dict[str, Any]) -> dict[str, Any]:
    """The desired state as YAML, the live snapshot, the catalog rows, the one-file change,
    and (unless skipped) the Terraform configuration of the plan."""
    from plexica_gitops.live.model import LiveState
    from plexica_gitops.plan.builder import build_plan

    size = Size(params["plugins"], params["tenants"], params["per_tenant"])
    root, live = Path(params["yaml"]), Path(params["live"])
    start = time.perf_counter()
    out: dict[str, Any] = {}
    if size.per_tenant is None:
        world = ps.make_world(
            size.plugins, size.tenants, params["seed"], True, ps.DEFAULT_BUMPS, ps.NEW_TENANT_EVERY
        )
        out["yaml_files"] = ps.write_yaml(world, root, "new")
        out["live"] = ps.write_live_json(world, live)
        catalog = _catalog_rows(ps.build_desired_tenantless(world))
        small = ps.build_desired(
            dataclasses.replace(world, tenants_n=1, slugs=world.slugs[:1]), "new"
        )
        change = _disable_change(root, world.slugs[0], _leaf_binding(small, world.slugs[0]))
        desired = ps.build_desired(world, "new") if params["terraform"] else None
    else:
        from plexica_gitops.desired.validate import validate_directory

        out["yaml"] = vs.generate(root, size.plugins, size.tenants, size.per_tenant, params["seed"])
        report = validate_directory(root)
        if report.errors:
            raise SystemExit(f"generated state is INVALID: {report.errors[:5]}")
        desired = report.desired
        out["live"] = write_converged_live(desired, live)
        catalog = _catalog_rows(desired)
        first = sorted(desired.tenants)[0]
        change = _disable_change(root, first, _leaf_binding(desired, first))
    Path(params["catalog"]).write_text(json.dumps(catalog), encoding="utf-8")
    Path(params["change"]).write_text(json.dumps(change), encoding="utf-8")
    if desired is not None and params["terraform"]:
        plan = build_plan(desired, LiveState.from_json(live.read_bytes()))
        if plan.errors:
            raise SystemExit(f"the generated state does not plan: {plan.errors[:3]}")
        config = ps.terraform_config(plan.actions)
        directory = Path(params["terraform"])
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "main.tf.json").write_text(json.dumps(config, indent=1))
        out["plan"] = ps._plan_stats(plan)
    out["generate_s"] = time.perf_counter() - start
    out["live_mb"] = live.stat().st_size / 1e6
    out["yaml_mb"] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6
    return out


# --------------------------------------------------------------------------- the store


def _lines(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    for row in rows:
        yield "\t".join(observe_scale._copy_text(str(value)) for value in row) + "\n"


def child_load_db(params: dict[str, Any]) -> dict[str, Any]:
    """The store of the converged platform: plugins through catalog.py (as apply writes
    them), everything per tenant with COPY, then checks that observe_store reads back the
    snapshot (without workloads and topics, which are not in PostgreSQL)."""
    from plexica_gitops.lifecycle import LifecycleStatus as S
    from plexica_gitops.live.model import LiveState, ObservedPart
    from plexica_gitops.store import catalog
    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.observe import observe_store

    start = time.perf_counter()
    live = LiveState.from_json(Path(params["live"]).read_bytes())
    rows = json.loads(Path(params["catalog"]).read_text(encoding="utf-8"))
    walks = {
        S.REGISTERED: [],
        S.INSTALLED: [S.INSTALLING, S.INSTALLED],
        S.ACTIVE: [S.INSTALLING, S.INSTALLED, S.ACTIVE],
        S.DISABLED: [S.INSTALLING, S.INSTALLED, S.ACTIVE, S.DISABLED],
    }
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with connect(params["dsn"]) as conn:
        with conn.transaction():
            for pid, plugin in live.plugins.items():
                row = rows[pid]
                assert row["manifest_hash"] == plugin.manifest_hash, pid
                catalog.register_plugin(
                    conn, pid, row["name"], row["version"], row["manifest"], row["manifest_hash"]
                )
                current = S.REGISTERED
                for step in walks[plugin.status]:
                    catalog.transition(conn, pid, current, step)
                    current = step
                if plugin.permissions:
                    catalog.register_permissions(
                        conn,
                        pid,
                        {k: (p.name, p.description) for k, p in plugin.permissions.items()},
                    )
                if plugin.routes is not None:
                    routes = plugin.routes
                    catalog.register_routes(
                        conn, pid, routes.base_path, routes.frontend_prefix, routes.remote_entry
                    )
                if plugin.subscriptions:
                    catalog.set_subscriptions(conn, pid, plugin.subscriptions)
            for name, topic in live.topics.items():
                if topic.owner:
                    catalog.record_topic(conn, name, topic.owner)
        tenants = live.tenants
        observe_scale._copy(
            conn,
            "COPY plexica.tenants (id, slug, schema_name, status) FROM STDIN",
            _lines((t.id, slug, t.schema_name, t.status.value) for slug, t in tenants.items()),
        )
        observe_scale._copy(
            conn,
            "COPY plexica.tenant_plugins (tenant_id, plugin_id, enabled, configuration) FROM STDIN",
            _lines(
                (t.id, pid, "t" if b.enabled else "f", dumps(b.configuration))
                for t in tenants.values()
                for pid, b in t.plugins.items()
            ),
        )
        observe_scale._copy(
            conn,
            "COPY plexica.tenant_migrations "
            "(tenant_id, plugin_id, version, name, checksum, duration_ms) FROM STDIN",
            _lines(
                (t.id, pid, m.version, m.name, m.checksum, 1)
                for t in tenants.values()
                for pid, applied in t.migrations.items()
                for m in applied
            ),
        )
        row = conn.execute(
            "INSERT INTO plexica_gitops.applies (desired_revision, plan_hash, host, pid, "
            "result) VALUES ('bench', 'bench', 'bench', 1, 'succeeded') RETURNING id"
        ).fetchone()
        assert row is not None
        observe_scale._copy(
            conn,
            "COPY plexica_gitops.last_applied (address, fingerprint, apply_id) FROM STDIN",
            _lines((a, f, row[0]) for a, f in live.last_applied.items()),
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        loaded_s = time.perf_counter() - start
        observed = observe_store(conn)
    expected = live.without({ObservedPart.RUNTIME, ObservedPart.BROKER})
    _check_same(expected, observed)
    return {
        "load_db_s": loaded_s,
        "tenants": len(tenants),
        "bindings": sum(len(t.plugins) for t in tenants.values()),
        "migrations": sum(len(a) for t in tenants.values() for a in t.migrations.values()),
        "last_applied": len(live.last_applied),
    }


def _check_same(expected: Any, observed: Any) -> None:
    """The store holds exactly the snapshot (the catalog's own fields aside)."""
    if observed.last_applied != expected.last_applied:
        raise SystemExit("check: last_applied read back from the store differs")
    if sorted(observed.tenants) != sorted(expected.tenants):
        raise SystemExit("check: the tenants read back from the store differ")
    for slug, tenant in expected.tenants.items():
        if observed.tenants[slug].model_dump() != tenant.model_dump():
            raise SystemExit(f"check: tenant {slug} read back from the store differs")
    for pid, plugin in expected.plugins.items():
        mine = observed.plugins[pid].model_dump(exclude={"name", "stored_manifest_hash"})
        if mine != plugin.model_dump(exclude={"name", "stored_manifest_hash"}):
            raise SystemExit(f"check: plugin {pid} read back from the store differs")


# --------------------------------------------------------------------------- the CLI


def _command(name: str, root: Path, live: Path) -> list[str]:
    if name == "validate":
        return ["validate", str(root)]
    if name == "plan-json":
        return ["plan", str(root), "--live-state", str(live)]
    return ["plan", str(root), "--unobserved", UNOBSERVED]


def run_cli(
    name: str, run: str, directory: Path, env: dict[str, str], stages_file: Path | None
) -> dict[str, Any]:
    """One measured run of a command: the console script, or (`stages_file`) the same CLI
    instrumented in-process."""
    args = _command(name, directory / "state", directory / "live.json")
    if run == "nocache":
        args.append("--no-cache")
    cache = directory / f"cache-{name}"
    if run == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    env = {**env, "PLEXICA_CACHE_DIR": str(cache)}
    if stages_file is None:
        command = [str(Path(sys.executable).parent / "plexica-gitops"), *args]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--_cli", str(stages_file), *args]
    output_file = directory / f"out-{name}-{run}.txt"
    load = os.getloadavg()[0]
    with output_file.open("wb") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=directory, env=env, stdout=output, stderr=output)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    text = output_file.read_text(encoding="utf-8", errors="replace")
    figures: dict[str, Any] = {
        "command": name,
        "run": run,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": vs._rss_mb(usage.ru_maxrss),
        "exit_code": code,
        "output_mb": len(text.encode()) / 1e6,
        "summary": _summary_line(text),
        "loadavg_1m_before": load,
        "cache_mb": sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6,
    }
    if code != 0:
        raise SystemExit(f"{name} ({run}) exited {code}:\n{text[-3000:]}")
    if stages_file is not None:
        figures |= json.loads(stages_file.read_text(encoding="utf-8"))
    return figures


def _summary_line(text: str) -> str:
    """The line that says what the command found (validate's verdict, the plan's totals)."""
    for line in text.splitlines():
        if line.startswith(("Plan:", "No changes", "Valid", "valid", "The platform matches")):
            return line.strip()
    return text.strip().splitlines()[-1][:200] if text.strip() else ""


# --------------------------------------------------------------------------- per size


def _child(mode: str, params: dict[str, Any], cwd: Path) -> tuple[dict[str, Any], float, float]:
    """A helper child of this script (generation, store load): its result, wall, peak RSS."""
    result_file = cwd / f"{mode}.result.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--_child", mode, json.dumps(params)]
    command += [str(result_file)]
    text, wall, peak, _ = ps.run_measured(command, cwd, dict(os.environ))
    if text.strip():
        sys.stderr.write(text)
    return json.loads(result_file.read_text(encoding="utf-8")), wall, peak


def generate(size: Size, directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    params = {
        "plugins": size.plugins,
        "tenants": size.tenants,
        "per_tenant": size.per_tenant,
        "seed": args.seed,
        "yaml": str(directory / "state"),
        "live": str(directory / "live.json"),
        "catalog": str(directory / "catalog.json"),
        "change": str(directory / "change.json"),
        "terraform": None if args.skip_terraform else str(directory / "terraform"),
    }
    done = directory / GENERATED
    if done.exists():
        saved = json.loads(done.read_text(encoding="utf-8"))
        wants_terraform = params["terraform"] is None or "plan" in saved["figures"]
        if saved["params"] == {**params, "terraform": saved["params"]["terraform"]} and (
            wants_terraform
        ):
            log(f"{size.label}: reusing the inputs generated in {directory}")
            return saved["figures"]
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    log(f"{size.label}: generating YAML, live snapshot, catalog rows, Terraform configuration")
    figures, wall, _ = _child("generate", params, directory)
    figures["generate_wall_s"] = wall
    done.write_text(json.dumps({"params": params, "figures": figures}), encoding="utf-8")
    return figures


def load_store(server: Any, size: Size, directory: Path) -> tuple[str, dict[str, Any]]:
    import psycopg

    database = f"cli_{size.label}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    dsn = server.dsn.rsplit("/", 1)[0] + "/" + database
    env = {**os.environ, "PLEXICA_DATABASE_URL": dsn}
    init, init_s, _, _ = ps.run_measured(
        [str(Path(sys.executable).parent / "plexica-gitops"), "init"], directory, env
    )
    log(f"{size.label}: {init.strip()} ({init_s:.1f} s); loading the converged platform")
    params = {
        "dsn": dsn,
        "live": str(directory / "live.json"),
        "catalog": str(directory / "catalog.json"),
    }
    figures, wall, _ = _child("load-db", params, directory)
    figures |= {"load_db_wall_s": wall, "init_s": init_s}
    return dsn, figures


def measure_size(
    size: Size, directory: Path, args: argparse.Namespace, server: Any
) -> dict[str, Any]:
    result: dict[str, Any] = {"size": size.label, "bindings": size.bindings}
    result["generated"] = generate(size, directory, args)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PLEXICA_"))}
    envs = {"validate": base_env, "plan-json": base_env}
    commands = [c for c in args.commands if c != "plan-db" or server is not None]
    if server is not None:
        dsn, result["store"] = load_store(server, size, directory)
        envs["plan-db"] = {**base_env, "PLEXICA_DATABASE_URL": dsn}
    change = json.loads((directory / "change.json").read_text(encoding="utf-8"))
    result["change"] = change["binding"]
    runs: list[dict[str, Any]] = []
    try:
        for run in args.runs:
            if run == "changed":
                Path(change["file"]).write_text(change["after"], encoding="utf-8")
            for name in commands:
                log(f"{size.label}: {name} ({run})")
                stages = directory / f"stages-{name}.json" if run == "cold" else None
                figures = run_cli(name, run, directory, envs[name], stages)
                log(
                    f"{size.label}: {name} ({run}) {figures['wall_s']:.1f} s wall, "
                    f"{figures['cpu_s']:.1f} s CPU, {figures['peak_rss_mb']:,.0f} MB; "
                    f"{figures['summary']}"
                )
                runs.append(figures)
    finally:
        Path(change["file"]).write_text(change["before"], encoding="utf-8")
    result["runs"] = runs
    if not args.skip_terraform and "plan-json" in commands:
        log(f"{size.label}: terraform plan of the same graph")
        terraform = ps.terraform_plan(directory / "terraform", args.terraform_timeout)
        ours = next(r for r in runs if r["command"] == "plan-json" and r["run"] == "cold")
        if terraform["terraform_plan_s"] is not None:
            terraform["ratio"] = terraform["terraform_plan_s"] / ours["wall_s"]
        else:
            terraform["ratio_at_least"] = args.terraform_timeout / ours["wall_s"]
        result["terraform"] = terraform
    if server is not None and not args.keep:
        import psycopg

        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "cli_{size.label}"')
    return result


# --------------------------------------------------------------------------- main


def _machine_speed() -> str:
    """A yardstick for comparing figures taken on other days or machines."""
    import timeit

    best = min(timeit.repeat("sum(range(10**6))", number=10, repeat=5)) / 10
    return f"sum(range(10**6)) in {best * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time `validate` and `plan` as a user runs them.")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="PxT or PxTxK, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--runs",
        type=lambda text: [r for r in RUNS if r in text.split(",")],
        default=list(RUNS),
        help="which runs of each command: cold,warm,changed,nocache (default all; cold is "
        "always run)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--skip-terraform", action="store_true")
    parser.add_argument("--skip-db", action="store_true", help="no PostgreSQL, no plan-db")
    parser.add_argument(
        "--commands",
        type=lambda text: [c for c in COMMANDS if c in text.split(",")],
        default=list(COMMANDS),
        help="which commands: validate,plan-json,plan-db (default all); the Terraform "
        "ratio needs plan-json",
    )
    parser.add_argument(
        "--terraform-timeout",
        type=float,
        default=TERRAFORM_TIMEOUT,
        help="seconds before terraform plan is stopped (the ratio is then a lower bound)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="generate into DIR, keep it, reuse it next time"
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="print a saved --json result")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report is not None:
        print_report(json.loads(args.report.read_text(encoding="utf-8")))
        return 0
    if args._child is not None:
        mode, params, out = args._child
        child = {"generate": child_generate, "load-db": child_load_db}[mode]
        Path(out).write_text(json.dumps(child(json.loads(params))), encoding="utf-8")
        return 0
    sizes = [Size.parse(s) for s in args.sizes.split(",") if s.strip()]
    if "cold" not in args.runs:
        args.runs.insert(0, "cold")  # it holds the stage shares and the Terraform ratio
    temp = None
    if args.keep is not None:
        tmp = args.keep.resolve()
        tmp.mkdir(parents=True, exist_ok=True)
    else:
        temp = tempfile.TemporaryDirectory(prefix="plexica-cli-scale-")
        tmp = Path(temp.name)
    shutil.rmtree(tmp / "package", ignore_errors=True)
    result: dict[str, Any] = {
        "measured": ps.snapshot_package(tmp / "package"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "machine_speed": _machine_speed(),
        "sizes": [],
    }
    server = None
    try:
        if not args.skip_db and "plan-db" in args.commands:
            from devenv.postgres import PostgresServer

            server = PostgresServer()
            server.start()
            result["postgres"] = "devenv.postgres.PostgresServer (fsync=off, as the tests)"
        for size in sizes:
            result["sizes"].append(measure_size(size, tmp / size.label, args, server))
            if args.keep is not None:
                saved = tmp / f"result-{args.sizes.replace(',', '_')}.json"
                saved.write_text(json.dumps(result, indent=1), encoding="utf-8")
    finally:
        if server is not None:
            server.stop()
        if temp is not None:
            temp.cleanup()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_report(result)
    return 0


# --------------------------------------------------------------------------- report


def print_report(r: dict[str, Any]) -> None:
    print(f"cli scale benchmark, {r['date']}, {r['machine']}, Python {r['python']}")
    print(f"plexica_gitops: {r['measured']}; machine: {r.get('machine_speed', '?')}")
    for s in r["sizes"]:
        generated = s["generated"]
        plan = generated.get("plan", {})
        print(
            f"\n{s['size']}: {s['bindings']:,} bindings; YAML {generated['yaml_mb']:.0f} MB, "
            f"live snapshot {generated['live_mb']:.0f} MB; "
            f"plan of the snapshot: {plan.get('actions', '?'):,} actions"
            if plan
            else f"\n{s['size']}: {s['bindings']:,} bindings"
        )
        if "store" in s:
            st = s["store"]
            print(
                f"   store: {st['tenants']:,} tenants, {st['bindings']:,} bindings, "
                f"{st['migrations']:,} migrations, {st['last_applied']:,} last-applied rows, "
                f"loaded in {st['load_db_s']:.0f} s (read back and checked)"
            )
        header = ["command", "run", "wall s", "CPU s", "peak RSS MB", "cache MB", "load", "result"]
        rows = [
            [
                x["command"],
                x["run"],
                f"{x['wall_s']:.2f}",
                f"{x['cpu_s']:.2f}",
                f"{x['peak_rss_mb']:,.0f}",
                f"{x.get('cache_mb', 0):,.0f}",
                f"{x['loadavg_1m_before']:.1f}",
                x["summary"][:70],
            ]
            for x in s["runs"]
        ]
        ps._print_table(header, rows)
        print("   stage shares of the cold runs (in-process timers; wall s, share of the run):")
        header = ["command", "python start+exit", "imports", *STAGE_ORDER]
        rows = []
        for x in s["runs"]:
            if x["run"] != "cold":
                continue
            startup = x["wall_s"] - x["app_s"] - x["imports_s"]
            cells = [f"{v:.2f} ({v / x['wall_s']:.0%})" for v in (startup, x["imports_s"])]
            for stage in STAGE_ORDER:
                value = x["stages_s"].get(stage)
                cells.append("-" if value is None else f"{value:.2f} ({value / x['wall_s']:.0%})")
            rows.append([x["command"], *cells])
        ps._print_table(header, rows)
        t = s.get("terraform")
        if t:
            if t["terraform_plan_s"] is None:
                print(
                    f"   terraform {t['terraform_version']}: plan stopped after "
                    f"{t['terraform_timeout_s']:.0f} s; at least {t['ratio_at_least']:,.0f}x "
                    "our plan-json (cold)"
                )
            else:
                print(
                    f"   terraform {t['terraform_version']}: plan {t['terraform_plan_s']:.1f} s "
                    f"wall, {t['terraform_plan_cpu_s']:.1f} s CPU, "
                    f"{t['terraform_peak_rss_mb']:,.0f} MB; {t['ratio']:,.1f}x our plan-json "
                    "(cold, whole CLI)"
                )


if __name__ == "__main__":
    sys.exit(main())
