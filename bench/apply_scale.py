"""Apply against real containers: how long installs, rolling updates and rollbacks take;
and apply at platform scale against its psycopg floor.

    python bench/apply_scale.py [--plugins 20] [--replicas 2]
    python bench/apply_scale.py --tenants 10000 [--parallelism 4]   # the platform-scale case

Starts a throwaway PostgreSQL, uses Podman's Docker API (DOCKER_HOST when it answers,
else it starts one as the tests do), builds the tiny busybox plugin images, and runs the
real `plexica-gitops apply` (a subprocess, `--log-format json`) three times:

1. install: N plugins with R replicas each from nothing (each replica must answer its readiness
   probe `readyProbes` times in a row before it counts), compared with the floor measured
   in ENVIRONMENT.md (containers created and answering HTTP straight through the SDK);
2. rolling update of one plugin with 3 replicas, 1.0.0 → 1.1.0: the workload step's time
   against the sum of the three replicas' readiness waits, measured on their own with the
   same probe settings (the difference is our overhead: creating, registering,
   deregistering, stopping);
3. rollback: an update to a version that never becomes ready, with `timeoutSeconds` T —
   the step's time minus T is what the rollback itself costs (HotSwap's target for the
   whole thing: under 60 s).

With `--tenants N` it runs the platform-scale case instead (bench/apply_floor.py has the
desired state and the floor): 3 small plugins x N tenants, each tenant enabling all three,
on a fresh PostgreSQL and Podman each: the first apply (7 N + 27 steps), a plugin bump
with one new migration in every tenant (N + 2 steps) and a no-op `plan` + `apply`, each
next to the same SQL (journal and last-applied rows included) straight through psycopg,
one transaction per tenant on `--parallelism` sessions, run in the same benchmark; then
the engine's walk alone over the first apply's plan (no-op steps, no journal, no display).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402

from devenv.images import build_plugin_image  # noqa: E402
from devenv.podman import engine_answers, ensure_engine  # noqa: E402
from devenv.postgres import PostgresServer  # noqa: E402
from plexica_gitops.runtime.health import wait_ready  # noqa: E402
from plexica_gitops.runtime.provider import RolloutSettings  # noqa: E402

READY_PROBES = 3
PROBE_INTERVAL = 0.2
ROLLBACK_TIMEOUT = 10.0
IMAGE = "localhost/plexica-bench/{pid}:{version}"


def _plugin(pid: str, version: str, replicas: int, image: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: plexica.io/v1alpha1
        kind: Plugin
        metadata: {{name: {pid}}}
        spec:
          state: active
          replicas: {replicas}
          manifest:
            id: {pid}
            name: {pid.title()}
            version: {version}
            runtime:
              type: typescript
              image: {image}
              resources: {{cpu: 100m, memory: 32Mi}}
            compat: {{core: ^2.0.0}}
            api: {{basePath: /api/plugins/{pid}, port: 8080}}
        """)


def _platform(scope: str, timeout: float) -> str:
    return textwrap.dedent(f"""\
        apiVersion: plexica.io/v1alpha1
        kind: Platform
        metadata: {{name: bench}}
        spec:
          version: 2.4.0
          runtime: {{provider: docker, endpointMode: loopback, scope: {scope}}}
          rollout:
            strategy: rolling
            readyProbes: {READY_PROBES}
            probeIntervalSeconds: {PROBE_INTERVAL}
            timeoutSeconds: {timeout}
            gracePeriodSeconds: 2
        """)


def write_state(root: Path, scope: str, plugins: dict[str, tuple[str, int, str]]) -> None:
    """plugins: id -> (version, replicas, image)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "platform.yaml").write_text(_platform(scope, ROLLBACK_TIMEOUT), encoding="utf-8")
    for pid, (version, replicas, image) in plugins.items():
        path = root / "plugins" / pid / "plugin.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_plugin(pid, version, replicas, image), encoding="utf-8")


def apply(root: Path, env: dict[str, str], parallelism: int) -> tuple[float, dict[str, Any]]:
    """Wall seconds of `plexica-gitops apply` and its JSON log records by step."""
    command = [
        sys.executable, "-m", "plexica_gitops.cli", "apply", str(root), "--auto-approve",
        "--log-format", "json", "--parallelism", str(parallelism),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    steps = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["event"] == "step.finished":
                steps[record["step"]] = record
    if result.returncode not in (0, 1):
        raise SystemExit(f"apply exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return wall, steps


def readiness_floor(client: docker.DockerClient, image: str, count: int) -> float:
    """Sum of `count` readiness waits of fresh containers of `image`, one after another,
    with the bench's probe settings: the part of a rolling update nobody can skip."""
    settings = RolloutSettings(READY_PROBES, PROBE_INTERVAL, 30.0, 1.0)
    total = 0.0
    for _ in range(count):
        container = client.containers.run(
            image, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}, init=True
        )
        started = time.perf_counter()
        try:
            container.reload()
            port = container.ports["8080/tcp"][0]["HostPort"]
            result = wait_ready(f"http://127.0.0.1:{port}/health/ready", settings)
            assert result.ok, result
            total += time.perf_counter() - started
        finally:
            container.remove(force=True)
    return total


def platform_scale(tenants: int, parallelism: int) -> int:
    """The first apply, a one-migration bump and a no-op plan + apply at `tenants`
    tenants, each against its psycopg floor at the same parallelism."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import apply_floor

    args = argparse.Namespace(tenants=tenants, sessions=parallelism, parallelism=parallelism)
    with tempfile.TemporaryDirectory(prefix="plexica-apply-scale-") as tmp:
        work = Path(tmp)
        floors = {r["apply"]: r for r in apply_floor.run_floor(args, work)}
        applies = apply_floor.run_real(args, work)
        apply_floor.write_state(work / "walk", tenants, "unused", bumped=False)
        steps, walk = apply_floor.walk_seconds(work / "walk", parallelism)
    print(f"platform scale: 3 plugins x {tenants:,} tenants, --parallelism {parallelism}; "
          f"floor: the same SQL through psycopg, a transaction per tenant on {parallelism} "
          "sessions")  # fmt: skip
    for r in applies:
        floor = floors.get(r["apply"])
        if floor is None:
            print(f"  no-op plan + apply: plan {r['plan_s']:.1f} s + apply {r['apply_s']:.1f} s"
                  f" = {r['wall_s']:.1f} s (target <= 3 s)")  # fmt: skip
            continue
        print(f"  {r['apply']:>5}: {r['steps']:,} steps; apply {r['wall_s']:.1f} s "
              f"(its steps {r['engine_s']:.1f} s) "
              f"({r['steps_per_s']:,.0f} steps/s, {r['sessions']:,} sessions, "
              f"{r['commits']:,} commits); floor {floor['wall_s']:.1f} s ({floor['sessions']} "
              f"sessions, {floor['commits']:,} commits): {r['wall_s'] / floor['wall_s']:.2f}x "
              "(target <= 1.5x)")  # fmt: skip
    print(f"  the walk alone: {steps:,} no-op steps in {walk:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--tenants", type=int, help="run the platform-scale case instead")
    args = parser.parse_args(argv)
    if args.tenants:
        return platform_scale(args.tenants, args.parallelism)

    docker_host = os.environ.get("DOCKER_HOST", "")
    if not (docker_host and engine_answers(docker_host)):
        docker_host = ensure_engine(Path(tempfile.gettempdir()) / "plexica-test-podman")
    client = docker.DockerClient(base_url=docker_host)
    scope = f"bench-{uuid.uuid4().hex[:8]}"
    server = PostgresServer()
    server.start()
    env = {**os.environ, "PLEXICA_DATABASE_URL": server.dsn, "DOCKER_HOST": docker_host}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    try:
        subprocess.run(
            [sys.executable, "-m", "plexica_gitops.cli", "init"], env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        ids = [f"p{i:02d}" for i in range(1, args.plugins + 1)]
        images = {pid: IMAGE.format(pid=pid, version="1.0.0") for pid in ids}
        for pid, image in images.items():
            build_plugin_image(client, image, pid, "1.0.0")
        new = build_plugin_image(client, IMAGE.format(pid="p01", version="1.1.0"), "p01", "1.1.0")
        broken = build_plugin_image(
            client, IMAGE.format(pid="p01", version="1.2.0"), "p01", "1.2.0",
            behaviour="never-ready",
        )  # fmt: skip
        root = Path(tempfile.mkdtemp(prefix="plexica-bench-apply-")) / "state"

        plugins = {pid: ("1.0.0", args.replicas, images[pid]) for pid in ids}
        plugins["p01"] = ("1.0.0", 3, images["p01"])
        write_state(root, scope, plugins)
        wall, steps = apply(root, env, args.parallelism)
        failed = [s for s, r in steps.items() if r["status"] != "succeeded"]
        containers = args.replicas * (args.plugins - 1) + 3
        print(f"install: {args.plugins} plugins, {containers} containers, readyProbes "
              f"{READY_PROBES} every {PROBE_INTERVAL} s, parallelism {args.parallelism}: "
              f"{wall:.1f} s wall ({len(steps)} steps, {len(failed)} failed)")  # fmt: skip
        creates = [r["seconds"] for s, r in steps.items() if s.endswith(".workload:create")]
        print(f"  workload:create per plugin: median {sorted(creates)[len(creates) // 2]:.2f} s, "
              f"max {max(creates):.2f} s")  # fmt: skip

        plugins["p01"] = ("1.1.0", 3, new)
        write_state(root, scope, plugins)
        wall, steps = apply(root, env, args.parallelism)
        step = steps["plugin.p01.workload:replace"]
        floor = readiness_floor(client, new, 3)
        print(f"rolling update of 3 replicas: apply {wall:.1f} s wall, workload step "
              f"{step['seconds']:.2f} s; sum of the 3 readiness waits alone {floor:.2f} s; "
              f"overhead {step['seconds'] - floor:.2f} s ({step['status']})")  # fmt: skip

        plugins["p01"] = ("1.2.0", 3, broken)
        write_state(root, scope, plugins)
        wall, steps = apply(root, env, args.parallelism)
        step = steps["plugin.p01.workload:replace"]
        print(f"rollback (timeoutSeconds {ROLLBACK_TIMEOUT:.0f}): apply {wall:.1f} s wall, "
              f"workload step {step['seconds']:.2f} s ({step['status']}), rollback itself "
              f"{step['seconds'] - ROLLBACK_TIMEOUT:.2f} s")  # fmt: skip
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"io.plexica.scope={scope}"}
        ):
            container.remove(force=True)
        client.close()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
