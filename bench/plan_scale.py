"""Scale benchmark for `plexica-gitops plan` (`plexica_gitops.plan.builder.build_plan`).

Four measurements, each in a fresh child process. The parent reads the peak RSS of that one
child (`os.wait4(pid)` gives the child's own `ru_maxrss`, which is what
`getrusage(RUSAGE_CHILDREN)` reports when it is the only child), so each figure belongs to
that measurement alone.

1. Scale. 100 plugins x 10,000 tenants, every tenant binding every plugin: 1,000,000
   tenant-plugin bindings. Each plugin has 2 migrations, permissions, events and a
   dependency chain. The plugins come from `validate_scale.make_plugins`, with all of them
   active. The desired state is built IN MEMORY: the same document dicts the YAML would
   hold are parsed with the pydantic models, with a minimal `SourceDocument`. Parsing 1M
   bindings of YAML would measure the YAML parser, not the planner; figure 3 shows the YAML
   path at a smaller size. The live state is the converged platform (what a perfect apply
   of the desired state leaves), made about 1 % different, and written as JSON. The child
   parses it with `LiveState.from_json`, as `plan --live-state FILE` does:
     * 0.5 % of the bindings have another configuration in git (`configure`);
     * 0.5 % of the bindings were disabled outside plexica-gitops (drift: `enable`);
     * 3 plugins have a version bump in git, with a third migration: a catalog update, a
       rolling replace, and that migration in every tenant;
     * 1 tenant in 1,000 is new in git (onboarding: the tenant, all its migrations and
       bindings).
   Figures: plan time (median and best of 3, wall and CPU), number of actions, peak RSS,
   `render_json` time, and `LiveState.from_json` time. The same runs at 1,000 and
   3,000 tenants show whether the time per binding stays flat.
2. End to end from real YAML files at 100 x 1,000 (100,000 bindings): load, build, rules
   (the three stages of `validate_directory`), live-state parse, plan and `render_json`,
   to show where the time goes.
3. Terraform side by side, on the same action graph. A fresh install of 20 plugins x 240
   tenants against an empty platform gives about 10,000 actions. Each action becomes one
   `terraform_data` resource, whose `depends_on` mirrors the action's. The script runs
   `terraform init` once, offline (`terraform_data` is built in, so no provider is
   downloaded; the script checks this). It then times ONE `terraform plan -out=...`, about
   30 s. Our planner is timed on the same desired state, read from YAML.
4. `--profile N`: cProfile of the 1M-binding `build_plan`, top N by cumulative and by own
   time.

    python bench/plan_scale.py                          # everything (about 5 minutes)
    python bench/plan_scale.py --skip-terraform         # without figure 3
    python bench/plan_scale.py --plugins 50 --tenants 2000 --scale-tenants 500,1000
    python bench/plan_scale.py --json                   # one JSON object on stdout
    python bench/plan_scale.py --profile 15             # + cProfile of the largest plan
    python bench/plan_scale.py --skip-scale --skip-e2e  # only the Terraform comparison
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import gc
import hashlib
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import validate_scale as vs  # noqa: E402  (the generator of the validate benchmark)

TERRAFORM = os.environ.get("TERRAFORM", "/usr/local/bin/terraform")
MARKER = ".plan-scale-generated"

# --------------------------------------------------------------------------- the world
#
# Everything is derived from (plugins, tenants, seed), so every child process rebuilds
# exactly the same state. Each tenant has its own random stream, so one tenant can be made
# without making the others.

GIT_CHANGED_PER_MILLE = 5  # bindings whose configuration git changes
LIVE_DISABLED_PER_MILLE = 5  # bindings disabled outside plexica-gitops (drift)
NEW_TENANT_EVERY = 1000  # 1 tenant in 1,000 is not on the platform yet
DEFAULT_BUMPS = 3


def _platform_document() -> dict[str, Any]:
    """The platform of validate_scale's generator."""
    return vs.platform_document()


@dataclass
class World:
    plugins_n: int
    tenants_n: int
    seed: int
    drift: bool  # False: no changes at all (a fresh install plans against an empty platform)
    new_every: int = NEW_TENANT_EVERY
    plugins: list[vs.PluginSpec] = field(default_factory=list)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # plugin id -> doc
    bumped: list[str] = field(default_factory=list)
    slugs: list[str] = field(default_factory=list)

    @property
    def platform(self) -> dict[str, Any]:
        return _platform_document()

    def git_changed(self, tenant: int, plugin: int) -> bool:
        return self.drift and _mille(tenant, plugin) < GIT_CHANGED_PER_MILLE

    def live_disabled(self, tenant: int, plugin: int) -> bool:
        return (
            self.drift
            and GIT_CHANGED_PER_MILLE
            <= _mille(tenant, plugin)
            < GIT_CHANGED_PER_MILLE + LIVE_DISABLED_PER_MILLE
        )

    def new_tenant(self, tenant: int) -> bool:
        return self.drift and tenant % self.new_every == self.new_every // 2


def _mille(tenant: int, plugin: int) -> int:
    """A well-spread number in [0, 1000) for a binding (Knuth's multiplicative hash)."""
    return ((tenant * 1_000_003 + plugin * 7_919 + 12_345) * 2_654_435_761 % 2**32) % 1000


def make_world(
    plugins_n: int, tenants_n: int, seed: int, drift: bool, bumps: int, new_every: int
) -> World:
    world = World(plugins_n, tenants_n, seed, drift, new_every)
    rng = random.Random(seed)
    world.plugins = vs.make_plugins(plugins_n, rng)
    for plugin in world.plugins:
        plugin.state = "active"  # every tenant binds every plugin, so all must be active
    for plugin in world.plugins:
        world.documents[plugin.id] = plugin.document(rng)
    if drift and bumps:
        # the level-0 plugin most others depend on, one in the middle, the last (a leaf)
        dependents = Counter(d.id for p in world.plugins for d, _ in p.dependencies)
        chosen = [max(world.plugins, key=lambda p: (dependents[p.id], p.id)).id]
        for candidate in (world.plugins[len(world.plugins) // 2], world.plugins[-1]):
            if candidate.id not in chosen:
                chosen.append(candidate.id)
        world.bumped = chosen[:bumps]
    for index in range(tenants_n):
        words = vs.WORDS
        world.slugs.append(
            f"{words[index % len(words)]}-{words[(index // len(words)) % len(words)]}-{index}"
        )
    return world


def plugin_document(world: World, spec: vs.PluginSpec, variant: str) -> dict[str, Any]:
    document = world.documents[spec.id]
    if variant != "new" or spec.id not in world.bumped:
        return document
    document = copy.deepcopy(document)
    manifest = document["spec"]["manifest"]
    major, minor, patch = spec.version
    version = f"{major}.{minor}.{patch + 1}"
    manifest["version"] = version
    manifest["runtime"]["image"] = f"registry.example.com/plexica/{spec.id}:{version}"
    return document


def migration_files(world: World, spec: vs.PluginSpec, variant: str) -> dict[str, str]:
    files = spec.migrations()
    if variant == "new" and spec.id in world.bumped:
        files[f"0003_add_{spec.table}_archived_at.sql"] = (
            f"ALTER TABLE {spec.table}_items ADD COLUMN archived_at timestamptz;\n"
        )
    return files


def tenant_document(world: World, index: int, variant: str) -> dict[str, Any]:
    slug = world.slugs[index]
    rng = random.Random(world.seed * 1_000_003 + index)
    changes = random.Random(-(world.seed * 1_000_003 + index) - 1)
    plugins: dict[str, Any] = {}
    for number, spec in enumerate(world.plugins):
        configuration = spec.configuration(rng, slug)
        if variant == "new" and world.git_changed(index, number):
            for _ in range(5):  # another valid configuration; a few tries to make it differ
                changed = spec.configuration(changes, slug)
                if changed != configuration:
                    break
            configuration = changed
        plugins[spec.id] = {"enabled": True, "configuration": configuration}
    return {
        "apiVersion": vs.API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": slug, "labels": {"plan": vs.PLANS[index % len(vs.PLANS)]}},
        "spec": {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "displayName": slug.replace("-", " ").title(),
            "schema": "tenant_" + slug.replace("-", "_"),
            "status": "active",
            "plugins": plugins,
        },
    }


# --------------------------------------------------------------------------- in memory


def build_desired(world: World, variant: str) -> Any:
    """The DesiredState `build_desired_state` would give for the YAML of this world, built
    from the same document dicts without YAML (no positions are kept: locations point at
    the file only)."""
    from plexica_gitops.desired.build import (
        DesiredState,
        MigrationFile,
        PlatformEntry,
        PluginEntry,
        TenantEntry,
        share_tenant_values,
    )
    from plexica_gitops.desired.model import PlatformDocument, PluginDocument, TenantDocument
    from plexica_gitops.interning import SharedValues
    from plexica_gitops.source.loader import SourceDocument

    def source(file: str) -> SourceDocument:
        return SourceDocument(file=file, index=0, line=1, data={}, positions={})

    platform_entry = PlatformEntry(
        PlatformDocument.model_validate(world.platform), source("platform.yaml")
    )
    digest = hashlib.sha256()
    plugins = {}
    for spec in world.plugins:
        document = plugin_document(world, spec, variant)
        model = PluginDocument.model_validate(document)
        assert model.spec.manifest is not None
        where = source(f"plugins/{spec.id}/plugin.yaml")
        migrations = []
        for name, sql in sorted(migration_files(world, spec, variant).items()):
            match = re.match(r"^(\d{4})_(.+)\.sql$", name)
            assert match is not None
            raw = sql.encode()
            migrations.append(
                MigrationFile(
                    number=int(match[1]),
                    name=match[2],
                    path=f"plugins/{spec.id}/migrations/{name}",
                    checksum=hashlib.sha256(raw).hexdigest(),
                    sql=sql,
                )
            )
            digest.update(raw)
        plugins[spec.id] = PluginEntry(
            model, where, model.spec.manifest, where, ("spec", "manifest"), migrations
        )
        digest.update(json.dumps(document, sort_keys=True).encode())
    tenants = {}
    shared = SharedValues()
    for index, slug in enumerate(world.slugs):
        model = TenantDocument.model_validate(tenant_document(world, index, variant))
        share_tenant_values(model, shared)  # as build_desired_state does
        tenants[slug] = TenantEntry(model, source(f"tenants/{slug}.yaml"))
    return DesiredState(
        root=Path("<in-memory>"),
        platform=platform_entry,
        plugins=plugins,
        tenants=tenants,
        revision="sha256:" + digest.hexdigest(),
        files=[],
    )


# --------------------------------------------------------------------------- converged live
#
# What a perfect apply of a desired state leaves on the platform (tests/simulator.py is the
# executable specification; `check` compares the two on a small state), as JSON-shaped
# dicts, one piece at a time so a million bindings can be streamed to a file.


class Converged:
    def __init__(self, desired: Any) -> None:
        from plexica_gitops.desired.view import desired_plugin
        from plexica_gitops.lifecycle import DEPLOYED, RUNNING

        self.desired = desired
        self.deployed = DEPLOYED
        self.running = RUNNING
        self.plugins = {
            pid: desired_plugin(e, desired) for pid, e in sorted(desired.plugins.items())
        }
        self.last_applied: dict[str, str] = {}

    def plugin(self, pid: str) -> dict[str, Any] | None:
        from plexica_gitops.desired.view import consumer_group, env_hash
        from plexica_gitops.hashing import stable_hash
        from plexica_gitops.lifecycle import LifecycleStatus

        entry, dp = self.desired.plugins[pid], self.plugins[pid]
        target = dp.target
        if target is LifecycleStatus.UNINSTALLED:
            return None
        deployed = target in self.deployed
        running = target in self.running
        record: dict[str, Any] = {
            "status": target.value,
            "version": dp.version,
            "manifest_hash": dp.manifest_hash,
            "dependencies": {d.plugin: d.version for d in entry.manifest.dependencies},
            "error": None,
            "workload": None,
            "permissions": {},
            "routes": None,
            "subscriptions": {},
        }
        if deployed:
            want = {**dp.workload, "running": running}
            record["workload"] = {
                "image": want["image"],
                "version": want["version"],
                "manifest_hash": dp.manifest_hash,
                "replicas": want["replicas"],
                "ready_replicas": want["replicas"] if running else 0,
                "running": running,
                "resources": {"cpu": want["cpu"], "memory": want["memory"]},
                "env_hash": env_hash(want["env"]),
            }
            self.last_applied[f"plugin.{pid}.workload"] = stable_hash(want)
            if dp.permissions:
                record["permissions"] = {k: dict(v) for k, v in dp.permissions.items()}
                self.last_applied[f"plugin.{pid}.permissions"] = stable_hash(dp.permissions)
        if target is LifecycleStatus.ACTIVE:
            record["routes"] = dict(dp.routes)
            self.last_applied[f"plugin.{pid}.routes"] = stable_hash(dp.routes)
            subscriptions = {event: consumer_group(pid) for event in dp.subscribes}
            if subscriptions:
                record["subscriptions"] = subscriptions
                self.last_applied[f"plugin.{pid}.subscriptions"] = stable_hash(subscriptions)
        return record

    def topics(self) -> dict[str, Any]:
        from plexica_gitops.hashing import stable_hash

        platform = self.desired.platform
        defaults = platform.document.spec.events.defaults if platform else None
        wanted: dict[str, tuple[str, dict[str, Any]]] = {}
        for pid, dp in self.plugins.items():
            if dp.target in self.deployed:
                for event in dp.publishes:
                    wanted[event] = (
                        pid,
                        {
                            "partitions": defaults.partitions if defaults else 1,
                            "replication_factor": defaults.replication_factor if defaults else 1,
                            "config": dict(defaults.config) if defaults else {},
                        },
                    )
        topics = {}
        for event, (pid, want) in sorted(wanted.items()):
            topics[event] = {"owner": pid, **want}
            self.last_applied[f"topic.{event}"] = stable_hash(want)
        return topics

    def tenant(self, slug: str, entry: Any, disabled: set[str] = frozenset()) -> dict[str, Any]:
        from plexica_gitops.hashing import stable_hash

        spec = entry.document.spec
        if spec.status.value == "deleted":
            raise ValueError("deleted tenants are not generated")
        self.last_applied[f"tenant.{slug}"] = stable_hash(
            {"id": spec.id, "schema": spec.schema_name, "status": spec.status.value}
        )
        bindings = {}
        for pid, binding in sorted(spec.plugins.items()):
            want = {"enabled": binding.enabled, "configuration": binding.configuration}
            self.last_applied[f"tenant.{slug}.plugin.{pid}"] = stable_hash(want)
            # a binding disabled outside plexica-gitops: the platform differs, last-applied not
            bindings[pid] = {**want, "enabled": binding.enabled and pid not in disabled}
        migrations = {}
        if spec.status.value == "active":
            for pid, dp in self.plugins.items():
                if dp.target in self.deployed and dp.migrations:
                    migrations[pid] = [
                        {"version": v, "name": n, "checksum": c} for v, n, c in dp.migrations
                    ]
        return {
            "id": spec.id,
            "schema_name": spec.schema_name,
            "status": spec.status.value,
            "plugins": bindings,
            "migrations": migrations,
        }

    def live_state(self) -> dict[str, Any]:
        """The whole converged LiveState as a dict (small states only)."""
        plugins = {pid: self.plugin(pid) for pid in self.plugins}
        topics = self.topics()
        tenants = {
            slug: self.tenant(slug, entry) for slug, entry in sorted(self.desired.tenants.items())
        }
        return {
            "platform_version": None,
            "plugins": {k: v for k, v in plugins.items() if v is not None},
            "tenants": tenants,
            "topics": topics,
            "topics_observed": True,
            "last_applied": dict(sorted(self.last_applied.items())),
        }


def write_live_json(world: World, path: Path) -> dict[str, int]:
    """Stream the converged live state of `world` (made from the OLD desired state), with
    the drift of `world`, to `path` as JSON."""
    from plexica_gitops.desired.build import TenantEntry
    from plexica_gitops.desired.model import TenantDocument

    old = build_desired_tenantless(world)
    converged = Converged(old)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    counts = Counter()
    with path.open("w", encoding="utf-8") as out:
        out.write('{"platform_version":null,"plugins":')
        plugins = {pid: converged.plugin(pid) for pid in converged.plugins}
        out.write(dumps({k: v for k, v in plugins.items() if v is not None}))
        out.write(',"topics":')
        out.write(dumps(converged.topics()))
        out.write(',"topics_observed":true,"tenants":{')
        first = True
        for index, slug in enumerate(world.slugs):
            if world.new_tenant(index):
                counts["tenants_missing"] += 1
                continue
            model = TenantDocument.model_validate(tenant_document(world, index, "old"))
            disabled = {
                spec.id
                for number, spec in enumerate(world.plugins)
                if world.live_disabled(index, number)
            }
            counts["bindings_disabled"] += len(disabled)
            counts["bindings_git_changed"] += sum(
                world.git_changed(index, n) for n in range(len(world.plugins))
            )
            record = converged.tenant(slug, TenantEntry(model, None), disabled)
            counts["bindings"] += len(record["plugins"])
            out.write(("" if first else ",") + dumps(slug) + ":" + dumps(record))
            first = False
        out.write('},"last_applied":')
        out.write(dumps(dict(sorted(converged.last_applied.items()))))
        out.write("}")
    counts["bytes"] = path.stat().st_size
    return dict(counts)


def build_desired_tenantless(world: World) -> Any:
    """The OLD desired state without tenants (tenants are made one at a time)."""
    return build_desired(dataclasses.replace(world, tenants_n=0, slugs=[]), "old")


# --------------------------------------------------------------------------- YAML


def write_yaml(world: World, root: Path, variant: str) -> int:
    """The desired state of `world` as a directory, like validate_scale's generator."""
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(json.dumps({"plugins": world.plugins_n, "tenants": world.tenants_n}))
    (root / "platform.yaml").write_text(
        vs.to_yaml(
            world.platform, "# yaml-language-server: $schema=../schemas/platform.schema.json"
        )
    )
    files = 1
    for spec in world.plugins:
        directory = root / "plugins" / spec.id
        (directory / "migrations").mkdir(parents=True, exist_ok=True)
        (directory / "plugin.yaml").write_text(
            vs.to_yaml(
                plugin_document(world, spec, variant),
                "# yaml-language-server: $schema=../../../schemas/plugin.schema.json",
            )
        )
        for name, sql in migration_files(world, spec, variant).items():
            (directory / "migrations" / name).write_text(sql)
            files += 1
        files += 1
    tenants = root / "tenants"
    tenants.mkdir(exist_ok=True)
    header = "# yaml-language-server: $schema=../../schemas/tenant.schema.json"
    for index, slug in enumerate(world.slugs):
        document = tenant_document(world, index, variant)
        (tenants / f"{slug}.yaml").write_text(vs.to_yaml(document, header))
        files += 1
    return files


# --------------------------------------------------------------------------- terraform


def terraform_config(actions: list[Any]) -> dict[str, Any]:
    """One `terraform_data` per action, `depends_on` mirroring the action's."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for action in actions:
        base = re.sub(r"[^A-Za-z0-9_-]", "_", action.id)
        if not (base[0].isalpha() or base[0] == "_"):
            base = "_" + base
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names[action.id] = name
    resources: dict[str, Any] = {}
    for action in actions:
        resource_body: dict[str, Any] = {
            "input": {"address": action.address, "step": action.step, "action": action.kind.value}
        }
        if action.depends_on:
            resource_body["depends_on"] = [f"terraform_data.{names[d]}" for d in action.depends_on]
        resources[names[action.id]] = resource_body
    return {"resource": {"terraform_data": resources}}


# --------------------------------------------------------------------------- children


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return vs._rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _trim() -> bool:
    """Give freed heap pages back to the OS (glibc), so that RSS is what is in use."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


class RssSampler:
    """The highest RSS seen while the block runs (sampled every 10 ms by a thread): the
    process's peak RSS is a high-water mark, set by the live-state parse before planning."""

    def __init__(self) -> None:
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_now_mb())

    def __enter__(self) -> RssSampler:
        self.peak = _rss_now_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_now_mb())


def _world(params: dict[str, Any]) -> World:
    return make_world(
        params["plugins"],
        params["tenants"],
        params["seed"],
        params["drift"],
        params["bumps"],
        params.get("new_every", NEW_TENANT_EVERY),
    )


def _plan_stats(plan: Any) -> dict[str, Any]:
    steps = Counter()
    for action in plan.actions:
        head = action.address.split(".")
        # plugin, plugin.workload, tenant, tenant.plugin, tenant.migrations, topic
        kind = head[0] if head[0] == "topic" or len(head) < 3 else f"{head[0]}.{head[2]}"
        steps[f"{kind}:{action.step}"] += 1
    return {
        "actions": len(plan.actions),
        "summary": plan.summary.to_json(),
        "waves": 1 + max((a.wave for a in plan.actions), default=-1),
        "edges": sum(len(a.depends_on) for a in plan.actions),
        "plan_errors": len(plan.errors),
        "plan_warnings": len(plan.warnings),
        "steps": dict(sorted(steps.items())),
    }


def _timed(call: Any) -> tuple[Any, float, float]:
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - start, time.process_time() - cpu


def child_generate(params: dict[str, Any]) -> dict[str, Any]:
    world = _world(params)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    if params.get("live"):
        out["live"] = write_live_json(world, Path(params["live"]))
    if params.get("yaml"):
        out["yaml_files"] = write_yaml(world, Path(params["yaml"]), "new")
    out["generate_s"] = time.perf_counter() - start
    return out


def child_scale(params: dict[str, Any]) -> dict[str, Any]:
    """In-memory desired state, live state parsed from JSON, plan x repeats, render."""
    from plexica_gitops.live.model import LiveState
    from plexica_gitops.plan.builder import build_plan
    from plexica_gitops.render.json import render_json

    world = _world(params)
    figures: dict[str, Any] = {"rss_imports_mb": _rss_now_mb()}
    desired, figures["desired_build_s"], _ = _timed(lambda: build_desired(world, "new"))
    figures["rss_desired_mb"] = _rss_now_mb()
    raw = Path(params["live"]).read_text(encoding="utf-8")  # as `plan --live-state FILE`
    live, figures["live_parse_s"], figures["live_parse_cpu_s"] = _timed(
        functools.partial(LiveState.from_json, raw)
    )
    figures["live_json_mb"] = Path(params["live"]).stat().st_size / 1e6
    del raw
    gc.collect()
    figures["rss_inputs_mb"] = _rss_now_mb()
    figures["peak_before_plan_mb"] = _peak_mb()
    _trim()
    figures["rss_inputs_trimmed_mb"] = _rss_now_mb()
    walls, cpus, increases = [], [], []
    plan = None
    for _ in range(params["repeats"]):
        plan = None
        gc.collect()
        before = _rss_now_mb()
        with RssSampler() as sampler:
            plan, wall, cpu = _timed(lambda: build_plan(desired, live))
        walls.append(wall)
        cpus.append(cpu)
        increases.append(sampler.peak - before)
    figures["plan_rss_increase_mb"] = max(increases)
    figures["peak_after_plan_mb"] = _peak_mb()
    figures["rss_with_plan_mb"] = _rss_now_mb()
    figures["plan_s"] = walls
    figures["plan_cpu_s"] = cpus
    assert plan is not None
    figures |= _plan_stats(plan)
    text, figures["render_json_s"], _ = _timed(lambda: render_json(plan))
    figures["plan_json_mb"] = len(text) / 1e6
    del text
    figures |= _render_people(plan)
    figures["bindings"] = sum(len(t.document.spec.plugins) for t in desired.tenants.values())
    figures["live_bindings"] = sum(len(t.plugins) for t in live.tenants.values())
    figures["child_peak_mb"] = _peak_mb()
    return figures


def _render_people(plan: Any) -> dict[str, Any]:
    """The plan as `plan` writes it to a file or pipe, what CI posts (text, tenant actions
    collapsed, and with `--verbose` every action listed), `--verbose` on a colour terminal,
    and as the pull-request comment (Markdown), timed."""
    from rich.console import Console

    from plexica_gitops.render.markdown import render_markdown
    from plexica_gitops.render.text import print_plan

    figures: dict[str, Any] = {}
    for key, verbose, terminal in (
        ("render_text_s", False, False),
        ("render_text_verbose_s", True, False),
        ("render_text_verbose_terminal_s", True, True),
    ):
        sink = io.StringIO()
        console = Console(
            file=sink,
            width=120,
            color_system="standard" if terminal else None,
            force_terminal=terminal,
        )
        _, figures[key], _ = _timed(lambda c=console, v=verbose: print_plan(plan, c, verbose=v))
        figures[key.replace("_s", "_mb")] = len(sink.getvalue()) / 1e6
    comment, figures["render_markdown_s"], _ = _timed(lambda: render_markdown(plan))
    figures["render_markdown_kb"] = len(comment) / 1e3
    return figures


def child_profile(params: dict[str, Any]) -> dict[str, Any]:
    import cProfile
    import io
    import pstats

    from plexica_gitops.live.model import LiveState
    from plexica_gitops.plan.builder import build_plan

    world = _world(params)
    desired = build_desired(world, "new")
    live = LiveState.from_json(Path(params["live"]).read_bytes())
    gc.collect()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    plan = profiler.runcall(build_plan, desired, live)
    seconds = time.perf_counter() - start
    stream = io.StringIO()
    stream.write(
        f"cProfile of build_plan: {len(plan.actions):,} actions, "
        f"{sum(len(t.document.spec.plugins) for t in desired.tenants.values()):,} bindings, "
        f"{seconds:.1f} s under the profiler\n"
    )
    stats = pstats.Stats(profiler, stream=stream)
    top = params["top"]
    stream.write(f"\n=== top {top} by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    stream.write(f"\n=== top {top} by own time\n")
    stats.sort_stats("tottime").print_stats(top)
    text = stream.getvalue()
    import pydantic

    import plexica_gitops

    for directory, label in (
        (Path(pydantic.__file__).parent.parent, "site-packages"),
        (Path(plexica_gitops.__file__).parent.parent, "."),
        (REPO_ROOT, "."),
        (Path(sys.prefix) / "lib", "lib"),
    ):
        text = text.replace(str(directory) + os.sep, label + os.sep)
    return {"profile": text}


def _already_loaded(loaded: Any, *_args: Any, **_kwargs: Any) -> Any:
    return loaded


def child_e2e(params: dict[str, Any]) -> dict[str, Any]:
    """validate_directory's three stages, live parse, plan, render; optionally the
    Terraform configuration of the plan."""
    import plexica_gitops.desired.build as desired_module
    from plexica_gitops.desired.build import build_desired_state
    from plexica_gitops.desired.schemas import kind_validator
    from plexica_gitops.desired.validate import validate_build
    from plexica_gitops.live.model import LiveState
    from plexica_gitops.plan.builder import build_plan
    from plexica_gitops.render.json import render_json
    from plexica_gitops.source.loader import load_directory

    for kind in ("Platform", "Plugin", "Tenant"):  # a one-off start-up cost, as in validate
        kind_validator(kind)
    root = Path(params["yaml"])
    figures: dict[str, Any] = {"rss_imports_mb": _rss_now_mb()}
    loaded, figures["load_s"], _ = _timed(lambda: load_directory(root))
    original = desired_module.load_directory
    desired_module.load_directory = functools.partial(_already_loaded, loaded)
    try:
        built, figures["build_s"], _ = _timed(lambda: build_desired_state(root))
    finally:
        desired_module.load_directory = original
    del loaded
    report, figures["rules_s"], _ = _timed(functools.partial(validate_build, built))
    del built
    if report.errors:
        figures["first_errors"] = [
            f"{f.code} {f.location}: {f.message}" for f in report.errors[:20]
        ]
        return figures
    figures["findings"] = len(report.findings)
    figures["rss_desired_mb"] = _rss_now_mb()
    raw = Path(params["live"]).read_bytes() if params.get("live") else b"{}"
    live, figures["live_parse_s"], _ = _timed(functools.partial(LiveState.from_json, raw))
    del raw
    walls, cpus = [], []
    plan = None
    for _ in range(params["repeats"]):
        plan = None
        plan, wall, cpu = _timed(lambda: build_plan(report.desired, live))
        walls.append(wall)
        cpus.append(cpu)
    assert plan is not None
    figures["plan_s"] = walls
    figures["plan_cpu_s"] = cpus
    figures |= _plan_stats(plan)
    text, figures["render_json_s"], _ = _timed(lambda: render_json(plan))
    figures["plan_json_mb"] = len(text) / 1e6
    del text
    figures["bindings"] = sum(len(t.document.spec.plugins) for t in report.desired.tenants.values())
    if params.get("terraform"):
        directory = Path(params["terraform"])
        directory.mkdir(parents=True, exist_ok=True)
        config = terraform_config(plan.actions)
        (directory / "main.tf.json").write_text(json.dumps(config, indent=1))
        figures["terraform_resources"] = len(config["resource"]["terraform_data"])
    figures["child_peak_mb"] = _peak_mb()
    return figures


def child_check(params: dict[str, Any]) -> dict[str, Any]:
    """On a small state: the converged live state built here is what the simulator's
    perfect apply gives; the converged state plans nothing; the drifted state's plan,
    applied by the simulator, converges."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from simulator import simulate

    from plexica_gitops.live.model import LiveState
    from plexica_gitops.plan.builder import build_plan

    def canonical(state: LiveState) -> str:
        return json.dumps(state.model_dump(mode="json"), sort_keys=True)

    world = _world(params)
    old = build_desired(world, "old")
    applied = simulate(build_plan(old, LiveState()), old, LiveState())
    ours = LiveState.model_validate(Converged(old).live_state())
    if canonical(ours) != canonical(applied):
        mine, theirs = ours.model_dump(mode="json"), applied.model_dump(mode="json")
        diff = [k for k in mine if mine[k] != theirs[k]]
        raise SystemExit(f"check: converged live state differs from the simulator's in {diff}")
    noop = build_plan(old, ours)
    if noop.actions or noop.errors:
        raise SystemExit(f"check: the converged state plans {len(noop.actions)} actions")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "live.json"
        write_live_json(world, path)
        drifted = LiveState.from_json(path.read_bytes())
    new = build_desired(world, "new")
    plan = build_plan(new, drifted)
    if plan.errors:
        raise SystemExit(f"check: the drifted plan has errors: {plan.errors[:3]}")
    after = simulate(plan, new, drifted)
    again = build_plan(new, after)
    if again.actions:
        raise SystemExit(f"check: the drifted plan does not converge ({len(again.actions)} left)")
    return {"check_actions": len(plan.actions), "check_steps": _plan_stats(plan)["steps"]}


CHILDREN = {
    "generate": child_generate,
    "scale": child_scale,
    "profile": child_profile,
    "e2e": child_e2e,
    "check": child_check,
}


# --------------------------------------------------------------------------- parent


def run_child(mode: str, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run a child; returns what it printed (JSON) and ITS peak RSS in MB (os.wait4)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--_child", mode, json.dumps(params)]
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as stdout:
        process = subprocess.Popen(command, stdout=stdout)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        text = stdout.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{mode} child failed (exit {process.returncode})")
    result = json.loads(text)
    result["loadavg_1m_before"] = load  # other processes on the machine slow the wall time
    return result, vs._rss_mb(usage.ru_maxrss)


def run_measured(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float | None = None
) -> tuple[str, float, float, float]:
    """Run a command; its output, wall seconds, peak RSS MB and CPU seconds (all threads).
    TimeoutError (the command killed) when it runs longer than `timeout` seconds."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
        timer = threading.Timer(timeout, process.kill) if timeout else None
        if timer is not None:
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if timer is not None:
            timer.cancel()
            if wall >= timeout:
                raise TimeoutError(f"{command[0]} ran longer than {timeout:.0f} s")
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"{' '.join(command[:2])} failed (exit {process.returncode})")
    return text, wall, vs._rss_mb(usage.ru_maxrss), usage.ru_utime + usage.ru_stime


def snapshot_package(tmp: Path) -> str:
    """Copy plexica_gitops once and make every child import the copy: others edit the
    checkout while a run takes minutes, and all figures must come from one version. A
    copy named on PYTHONPATH is measured as it is (that is how another revision is)."""
    if os.environ.get("PYTHONPATH"):
        import plexica_gitops

        package = Path(plexica_gitops.__file__).parent
        return f"{package} (from PYTHONPATH), content {_content_digest(package)}"
    source = REPO_ROOT / "plexica_gitops"
    described = vs.describe_source(str(source))
    copy_root = tmp / "measured"
    shutil.copytree(
        source, copy_root / "plexica_gitops", ignore=shutil.ignore_patterns("__pycache__")
    )
    os.environ["PYTHONPATH"] = str(copy_root)
    return f"{described}, content {_content_digest(copy_root / 'plexica_gitops')} (copied at start)"


def _content_digest(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def log(message: str) -> None:
    sys.stderr.write(f"[plan_scale {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def measure_scale(args: argparse.Namespace, tmp: Path, tenants: int) -> dict[str, Any]:
    params = {
        "plugins": args.plugins,
        "tenants": tenants,
        "seed": args.seed,
        "drift": True,
        "bumps": args.bumps,
        "repeats": args.repeats,
    }
    live = tmp / f"live-{args.plugins}x{tenants}.json"
    log(f"scale {args.plugins} x {tenants:,}: generating the live state")
    generated, _ = run_child("generate", {**params, "live": str(live)})
    log(f"scale {args.plugins} x {tenants:,}: measuring (build, parse, {args.repeats} plans)")
    figures, peak = run_child("scale", {**params, "live": str(live)})
    figures["peak_rss_mb"] = peak
    figures["generated"] = generated
    figures["tenants"] = tenants
    figures["plugins"] = args.plugins
    figures["plan_median_s"] = statistics.median(figures["plan_s"])
    figures["plan_best_s"] = min(figures["plan_s"])
    figures["us_per_binding"] = figures["plan_median_s"] / figures["bindings"] * 1e6
    if args.profile and tenants == args.tenants:
        log(f"scale {args.plugins} x {tenants:,}: cProfile of build_plan")
        profiled, _ = run_child("profile", {**params, "live": str(live), "top": args.profile})
        figures["profile"] = profiled["profile"]
    if not args.keep:
        live.unlink()
    return figures


def measure_e2e(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    plugins, tenants = args.e2e_plugins, args.e2e_tenants
    params = {
        "plugins": plugins,
        "tenants": tenants,
        "seed": args.seed,
        "drift": True,
        "bumps": args.bumps,
        "repeats": args.repeats,
    }
    root, live = tmp / f"e2e-{plugins}x{tenants}", tmp / f"e2e-{plugins}x{tenants}.json"
    log(f"e2e {plugins} x {tenants:,}: writing YAML and the live state")
    generated, _ = run_child("generate", {**params, "live": str(live), "yaml": str(root)})
    log(f"e2e {plugins} x {tenants:,}: load + validate + parse + plan")
    figures, peak = run_child("e2e", {**params, "live": str(live), "yaml": str(root)})
    if "first_errors" in figures:
        raise SystemExit("generated state is INVALID:\n  " + "\n  ".join(figures["first_errors"]))
    figures["peak_rss_mb"] = peak
    figures["generated"] = generated
    figures["plugins"], figures["tenants"] = plugins, tenants
    figures["plan_median_s"] = statistics.median(figures["plan_s"])
    figures["validate_s"] = figures["load_s"] + figures["build_s"] + figures["rules_s"]
    figures["total_s"] = figures["validate_s"] + figures["live_parse_s"] + figures["plan_median_s"]
    if not args.keep:
        shutil.rmtree(root)
        live.unlink()
    return figures


def measure_terraform(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    plugins, tenants = args.tf_plugins, args.tf_tenants
    params = {
        "plugins": plugins,
        "tenants": tenants,
        "seed": args.seed,
        "drift": False,
        "bumps": 0,
        "repeats": args.repeats,
    }
    root, directory = tmp / f"tf-{plugins}x{tenants}", tmp / "terraform"
    log(f"terraform {plugins} x {tenants:,}: writing YAML (fresh install, empty platform)")
    run_child("generate", {**params, "yaml": str(root)})
    log("terraform: our plan (load + validate + plan), and the Terraform configuration")
    ours, peak = run_child("e2e", {**params, "yaml": str(root), "terraform": str(directory)})
    if "first_errors" in ours:
        raise SystemExit("generated state is INVALID:\n  " + "\n  ".join(ours["first_errors"]))
    ours["peak_rss_mb"] = peak
    ours["plan_median_s"] = statistics.median(ours["plan_s"])
    ours["validate_s"] = ours["load_s"] + ours["build_s"] + ours["rules_s"]
    log(f"terraform plan of {ours['terraform_resources']:,} terraform_data resources (one run)")
    result = {"plugins": plugins, "tenants": tenants, "ours": ours, **terraform_plan(directory)}
    tf_plan_s = result["terraform_plan_s"]
    result["ratio_plan"] = tf_plan_s / ours["plan_median_s"]
    result["ratio_validate_plan"] = tf_plan_s / (ours["validate_s"] + ours["plan_median_s"])
    if not args.keep:
        shutil.rmtree(root)
        shutil.rmtree(directory)
    return result


def terraform_plan(directory: Path, timeout: float | None = None) -> dict[str, Any]:
    """`terraform init` (offline: checked) and ONE timed `terraform plan -out` of the
    configuration in `directory`; its figures (`terraform_plan_s` None after `timeout`)."""
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    log("terraform init (offline: terraform_data is built in)")
    init_out, init_s, _, _ = run_measured(
        [TERRAFORM, "init", "-input=false", "-no-color"], directory, env
    )
    providers = directory / ".terraform" / "providers"
    downloaded = [p.name for p in providers.rglob("*") if p.is_file()] if providers.exists() else []
    if downloaded or "Installing" in init_out:
        raise SystemExit(f"terraform init downloaded providers: {downloaded or init_out}")
    load = os.getloadavg()[0]
    result: dict[str, Any] = {
        "terraform_version": _terraform_version(env),
        "terraform_init_s": init_s,
        "terraform_init_offline": True,
        "terraform_loadavg_1m_before": load,
        "config_mb": (directory / "main.tf.json").stat().st_size / 1e6,
    }
    try:
        plan_out, tf_plan_s, tf_peak, tf_cpu = run_measured(
            [TERRAFORM, "plan", "-input=false", "-no-color", "-out=tfplan"],
            directory,
            env,
            timeout,
        )
    except TimeoutError:
        return result | {"terraform_plan_s": None, "terraform_timeout_s": timeout}
    match = re.search(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy", plan_out)
    return result | {
        "terraform_plan_s": tf_plan_s,
        "terraform_plan_cpu_s": tf_cpu,
        "terraform_peak_rss_mb": tf_peak,
        "terraform_to_add": int(match[1]) if match else None,
        "terraform_plan_file_mb": (directory / "tfplan").stat().st_size / 1e6,
    }


def _terraform_version(env: dict[str, str]) -> str:
    try:
        text = subprocess.run(
            [TERRAFORM, "version", "-json"], capture_output=True, text=True, env=env, check=True
        ).stdout
        return json.loads(text)["terraform_version"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure `plan` at scale, and against Terraform.")
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=10_000, help="the largest scale run")
    parser.add_argument(
        "--scale-tenants",
        default="1000,3000",
        help="smaller tenant counts for the linearity rows (comma-separated; '' for none)",
    )
    parser.add_argument(
        "--bumps", type=int, default=DEFAULT_BUMPS, help="plugins with a new version"
    )
    parser.add_argument("--repeats", type=int, default=3, help="plans per measurement (median)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--e2e-plugins", type=int, default=100)
    parser.add_argument("--e2e-tenants", type=int, default=1000)
    parser.add_argument("--tf-plugins", type=int, default=20)
    parser.add_argument("--tf-tenants", type=int, default=240)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-terraform", action="store_true")
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=15,
        default=0,
        metavar="N",
        help="also cProfile the largest plan (own child): top N (default 15)",
    )
    parser.add_argument("--keep", action="store_true", help="keep generated files (--out)")
    parser.add_argument("--out", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="print the table of a result saved with --json, and exit",
    )
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report is not None:
        print_report(json.loads(args.report.read_text()))
        return 0

    if args._child is not None:
        vs._import_package()
        mode, params = args._child
        print(json.dumps(CHILDREN[mode](json.loads(params))))
        return 0

    vs._import_package()
    temp = None
    if args.out is not None:
        tmp = args.out
        if tmp.exists() and any(tmp.iterdir()) and not (tmp / MARKER).exists():
            raise SystemExit(f"--out {tmp} is not empty and was not made by this script")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / MARKER).write_text("plan_scale\n")
    else:
        temp = tempfile.TemporaryDirectory(prefix="plexica-plan-scale-")
        tmp = Path(temp.name)
    result: dict[str, Any] = {
        "measured": snapshot_package(tmp),
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "rss_method": "the child's own ru_maxrss (os.wait4), i.e. getrusage(RUSAGE_CHILDREN) "
        "of a parent with that one child",
    }
    try:
        if not args.skip_check:
            log("check: converged state = simulator's apply; the drifted plan converges")
            result["check"], _ = run_child(
                "check",
                {
                    "plugins": 12,
                    "tenants": 40,
                    "seed": args.seed,
                    "drift": True,
                    "bumps": args.bumps,
                    "new_every": 10,
                },
            )
        if not args.skip_scale:
            sizes = [int(s) for s in args.scale_tenants.split(",") if s.strip()]
            sizes = sorted({*sizes, args.tenants})
            result["scale"] = [measure_scale(args, tmp, n) for n in sizes]
        if not args.skip_e2e:
            result["e2e"] = measure_e2e(args, tmp)
        if not args.skip_terraform:
            result["terraform"] = measure_terraform(args, tmp)
    finally:
        if temp is not None:
            temp.cleanup()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


# --------------------------------------------------------------------------- report


def print_report(r: dict[str, Any]) -> None:
    print(f"plan scale benchmark, {r['date']}, {r['machine']}, Python {r['python']}")
    print(f"plexica_gitops: {r['measured']}")
    if "check" in r:
        print(
            f"check: OK (12 x 40 state: converged = simulated apply; drifted plan of "
            f"{r['check']['check_actions']} actions converges)"
        )
    if "scale" in r:
        rows = r["scale"]
        print("\n1. plan at scale (in-memory desired state; live state parsed from JSON)")
        header = [
            "plugins x tenants",
            "bindings",
            "actions",
            "plan s (median/best)",
            "plan CPU s",
            "us/binding",
            "peak RSS MB",
            "plan +MB",
            "live parse s",
            "live JSON MB",
            "render_json s",
            "text s (verbose; on a terminal)",
            "markdown s",
            "load",
        ]
        table = [
            [
                f"{x['plugins']} x {x['tenants']:,}",
                f"{x['bindings']:,}",
                f"{x['actions']:,}",
                f"{x['plan_median_s']:.2f} / {x['plan_best_s']:.2f}",
                f"{statistics.median(x['plan_cpu_s']):.2f}",
                f"{x['us_per_binding']:.2f}",
                f"{x['peak_rss_mb']:,.0f}",
                f"{x['plan_rss_increase_mb']:,.0f}",
                f"{x['live_parse_s']:.2f}",
                f"{x['live_json_mb']:.0f}",
                f"{x['render_json_s']:.2f}",
                f"{x['render_text_s']:.2f} ({x['render_text_verbose_s']:.2f}; "
                f"{x.get('render_text_verbose_terminal_s', float('nan')):.2f})",
                f"{x['render_markdown_s']:.2f}",
                f"{x['loadavg_1m_before']:.1f}",
            ]
            for x in rows
        ]
        _print_table(header, table)
        big = rows[-1]
        print(
            f"   largest: {big['summary']}, {big['waves']} waves, {big['edges']:,} edges, "
            f"{big['plan_errors']} errors; plan JSON {big['plan_json_mb']:.0f} MB"
        )
        print(
            f"   RSS MB: after imports {big['rss_imports_mb']:,.0f}, with the desired state "
            f"{big['rss_desired_mb']:,.0f}, with the live state {big['rss_inputs_mb']:,.0f} "
            f"({big['rss_inputs_trimmed_mb']:,.0f} after malloc_trim); peak before planning "
            f"{big['peak_before_plan_mb']:,.0f} (the parse), after "
            f"{big['peak_after_plan_mb']:,.0f}; the plan itself adds "
            f"{big['plan_rss_increase_mb']:,.0f} (sampled)"
        )
        print(
            f"   in-memory desired state built in {big['desired_build_s']:.1f} s; 'load' is the "
            "1-minute load average before the child started (2 CPUs)"
        )
        print("   steps: " + ", ".join(f"{k} {v:,}" for k, v in big["steps"].items()))
        if big["bindings"] >= 1_000_000:
            time_ok, memory_ok = big["plan_median_s"] < 10, big["peak_rss_mb"] < 2048
            print(
                f"   target at 1M bindings, plan < 10 s: {'met' if time_ok else 'MISSED'} "
                f"({big['plan_median_s']:.1f} s); < 2 GB: {'met' if memory_ok else 'MISSED'} "
                f"({big['peak_rss_mb']:,.0f} MB peak for the whole process)"
            )
    if "e2e" in r:
        e = r["e2e"]
        print(
            f"\n2. end to end from YAML, {e['plugins']} x {e['tenants']:,} "
            f"({e['bindings']:,} bindings, {e['actions']:,} actions)"
        )
        header = [
            "load s",
            "build s",
            "rules s",
            "live parse s",
            "plan s",
            "total s",
            "render_json s",
            "peak RSS MB",
        ]
        total = e["total_s"]
        table = [
            [
                f"{e['load_s']:.2f} ({e['load_s'] / total:.0%})",
                f"{e['build_s']:.2f} ({e['build_s'] / total:.0%})",
                f"{e['rules_s']:.2f} ({e['rules_s'] / total:.0%})",
                f"{e['live_parse_s']:.2f} ({e['live_parse_s'] / total:.0%})",
                f"{e['plan_median_s']:.2f} ({e['plan_median_s'] / total:.0%})",
                f"{total:.2f}",
                f"{e['render_json_s']:.2f}",
                f"{e['peak_rss_mb']:,.0f}",
            ]
        ]
        _print_table(header, table)
    if "terraform" in r:
        t = r["terraform"]
        o = t["ours"]
        print(
            f"\n3. Terraform {t['terraform_version']} side by side: fresh install of "
            f"{t['plugins']} x {t['tenants']} against an empty platform, "
            f"{o['actions']:,} actions = {o['terraform_resources']:,} terraform_data "
            f"({o['edges']:,} depends_on edges, {o['waves']} waves)"
        )
        header = ["", "wall s", "CPU s", "peak RSS MB", "notes"]
        table = [
            [
                "terraform plan -out",
                f"{t['terraform_plan_s']:.2f}",
                f"{t.get('terraform_plan_cpu_s', float('nan')):.2f}",
                f"{t['terraform_peak_rss_mb']:,.0f}",
                f"one run; {t['terraform_to_add']:,} to add; init {t['terraform_init_s']:.1f} s, "
                "offline (no provider downloaded)",
            ],
            [
                "build_plan",
                f"{o['plan_median_s']:.3f}",
                f"{statistics.median(o['plan_cpu_s']):.3f}",
                f"{o['peak_rss_mb']:,.0f}",
                f"median of {len(o['plan_s'])}; Terraform takes {t['ratio_plan']:,.0f}x as long",
            ],
            [
                "load+validate+plan",
                f"{o['validate_s'] + o['plan_median_s']:.2f}",
                "",
                "",
                f"from YAML; Terraform takes {t['ratio_validate_plan']:,.0f}x as long",
            ],
        ]
        _print_table(header, table)
    for row in r.get("scale", []):
        if "profile" in row:
            print("\n4. " + row["profile"])


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    print("   " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("   " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
