"""The end-to-end demo: from a fresh machine to the example platform running.

    python -m devenv.demo            # install what is missing, start, build, init, plan, apply
    python -m devenv.demo --down     # remove the demo's containers, stop its servers
    python -m devenv.demo --provider kubernetes          # the same on a Kubernetes control
    python -m devenv.demo --provider kubernetes --down   # plane of its own (pods: kwok)

It installs and starts what it needs (PostgreSQL, Podman's Docker-API socket — Debian
packages, so run it as root — and a Tansu broker for the event topics), builds the demo
plugin images locally (no registry is reachable), then runs the real CLI: `validate`,
`init`, `plan --out` (the plan, shown once), `apply` of that saved plan, `status`, and
`plan` once more to show that the platform has converged. The servers keep running; the
environment to use them is printed at the end, the demo's made-up secrets included.

Its servers are its own, recorded under $PLEXICA_DEMO_DIR (default /var/tmp/plexica-demo):
a second run reuses them, and a port another program answers on is never reused — the
demo picks a free one instead (unless $PLEXICA_DEMO_PG_PORT / $PLEXICA_DEMO_KAFKA_PORT ask
for exactly that port). Podman's API service is its own too (a socket in that directory),
and `--down` removes only the containers of the desired state's runtime `scope`.

With `--provider kubernetes` the plugins run on the devenv control plane (devenv/kube.py:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler 1.37.2; kwok simulates the
node and the pods, so no container runs): its own PostgreSQL, broker and control plane
under $PLEXICA_DEMO_DIR/kubernetes, and a copy of the desired state whose platform.yaml
names the kubernetes provider. `--down` then stops those three, and nothing else.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DESIRED_STATE = REPO_ROOT / "desired-state"
DEFAULT_STATE_DIR = "/var/tmp/plexica-demo"
PG_PORT = ("PLEXICA_DEMO_PG_PORT", 55432)
KAFKA_PORT = ("PLEXICA_DEMO_KAFKA_PORT", 59092)
KUBE_SCOPE = "kubernetes"  # the Kubernetes demo's directory inside the demo's
MANAGED_BY = "io.plexica.managed-by=plexica-gitops"
SCOPE_LABEL = "io.plexica.scope"


class DemoError(Exception):
    """Stops the demo with one line (no traceback)."""


def state_dir() -> Path:
    return Path(os.environ.get("PLEXICA_DEMO_DIR", DEFAULT_STATE_DIR))


def _say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _cli(*args: str, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> int:
    shown = " ".join(shlex.quote(a) for a in ("plexica-gitops", *args))
    print(f"$ {shown}", flush=True)
    command = [sys.executable, "-m", "plexica_gitops.cli", *args]
    code = subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode
    if code not in ok:
        raise DemoError(f"`{shown}` exited {code}")
    return code


# --- the servers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    database_url: str
    docker_host: str  # "" on Kubernetes
    bootstrap: str
    kubeconfig: str = ""  # the demo's control plane (Kubernetes only)


def _port(setting: tuple[str, int]) -> tuple[int, bool]:
    """The port to try first, and whether the user asked for exactly that one."""
    variable, default = setting
    value = os.environ.get(variable)
    if value is None:
        return default, False
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DemoError(f"{variable}={value!r} is not a port number")
    return int(value), True


def start_postgres(directory: Path) -> str:
    from devenv.postgres import PersistentPostgres, install_server

    install_server()
    port, required = _port(PG_PORT)
    return PersistentPostgres(directory / "postgres", port, port_required=required).ensure()


def start_broker(directory: Path) -> str:
    from devenv.tansu import PersistentTansu

    port, required = _port(KAFKA_PORT)
    return PersistentTansu(directory / "tansu", port, port_required=required).ensure()


def start_servers(directory: Path) -> Servers:
    from devenv.podman import ensure_engine

    _say("PostgreSQL (the platform's core database)")
    dsn = start_postgres(directory)
    print(f"running at {dsn}")
    _say("Podman serving the Docker Engine API (the demo's own socket)")
    docker_host = ensure_engine(directory / "podman")
    print(f"DOCKER_HOST={docker_host}")
    _say("A Kafka-protocol broker (Tansu, memory storage) for the plugins' event topics")
    bootstrap = start_broker(directory)
    print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    return Servers(dsn, docker_host, bootstrap)


# --- what the desired state needs from the environment ---------------------------------


def _desired() -> Any:
    from plexica_gitops.desired.validate import validate_directory

    result = validate_directory(DESIRED_STATE)
    if not result.valid:
        raise DemoError(f"{DESIRED_STATE} is not valid: run `plexica-gitops validate`")
    return result.desired


def demo_scope(desired: Any) -> str:
    """The container scope of the demo's platform (platform.yaml runtime `scope`)."""
    runtime = desired.platform.document.spec.runtime
    return str((runtime.model_extra or {}).get("scope", "default"))


def made_up_secrets(desired: Any, directory: Path, environ: dict[str, str]) -> dict[str, str]:
    """A value for every env reference of the plugins that the environment does not
    provide: made up once, kept in the state directory (so a second run deploys the same
    values), never a real secret. `secretRef`s become files under <dir>/secrets."""
    from plexica_gitops.desired.view import desired_plugin

    store = directory / "made-up-secrets.env"
    kept = dict(line.split("=", 1) for line in _read_lines(store) if "=" in line)
    made: dict[str, str] = {}
    secrets_dir = Path(environ.get("PLEXICA_SECRETS_DIR", directory / "secrets"))
    for entry in desired.plugins.values():
        for reference in desired_plugin(entry, desired).workload["env"].values():
            if isinstance(reference, str):
                continue
            if "fromEnv" in reference and reference["fromEnv"] not in environ:
                name = reference["fromEnv"]
                made[name] = kept.get(name) or f"made-up-{secrets.token_hex(12)}"
            elif "secretRef" in reference:
                ref = reference["secretRef"]
                path = secrets_dir / ref["name"] / ref["key"]
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"made-up-{secrets.token_hex(12)}\n", encoding="utf-8")
                made["PLEXICA_SECRETS_DIR"] = str(secrets_dir)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("".join(f"{k}={v}\n" for k, v in sorted(made.items())), encoding="utf-8")
    store.chmod(0o600)
    return made


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def _environment(servers: Servers) -> dict[str, str]:
    runtime = {"KUBECONFIG": servers.kubeconfig} if servers.kubeconfig else {}
    if servers.docker_host:
        runtime = {"DOCKER_HOST": servers.docker_host}
    return {
        **os.environ,
        "PLEXICA_DATABASE_URL": servers.database_url,
        **runtime,
        "KAFKA_BOOTSTRAP_SERVERS": servers.bootstrap,
        # What platform.yaml's env references resolve to inside the plugin containers.
        "PLEXICA_PLUGIN_DATABASE_URL": servers.database_url,
        "PLEXICA_KAFKA_BOOTSTRAP_SERVERS": servers.bootstrap,
        "COLUMNS": os.environ.get("COLUMNS", "120"),
    }


SERVER_VARIABLES = (
    "PLEXICA_DATABASE_URL",
    "DOCKER_HOST",
    "KAFKA_BOOTSTRAP_SERVERS",
    "PLEXICA_PLUGIN_DATABASE_URL",
    "PLEXICA_KAFKA_BOOTSTRAP_SERVERS",
)
KUBE_SERVER_VARIABLES = tuple(
    "KUBECONFIG" if name == "DOCKER_HOST" else name for name in SERVER_VARIABLES
)


def exports(
    env: dict[str, str], made_up: dict[str, str], variables: tuple[str, ...] = SERVER_VARIABLES
) -> list[str]:
    """The lines a user pastes to use the servers (and apply again) themselves."""
    lines = [f"export {name}={shlex.quote(env[name])}" for name in variables]
    lines += [
        f"export {name}={shlex.quote(value)}   # made up by the demo, not a real secret"
        for name, value in sorted(made_up.items())
    ]
    return lines


# --- up and down --------------------------------------------------------------------------


def _build_images(docker_host: str) -> None:
    import docker

    from devenv.images import build_desired_state_images

    _say("Building the demo plugin images locally")
    client = docker.DockerClient(base_url=docker_host)
    try:
        for image in build_desired_state_images(client, DESIRED_STATE):
            print(f"  {image}")
    finally:
        client.close()


def _with_secrets(
    desired: Any, servers: Servers, directory: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of the CLI (the values made up for the references included), and
    those made-up values."""
    env = _environment(servers)
    made_up = made_up_secrets(desired, directory, env)
    return {**env, **made_up}, made_up


def up() -> None:
    directory = state_dir()
    desired = _desired()
    servers = start_servers(directory)
    env, made_up = _with_secrets(desired, servers, directory)
    _build_images(servers.docker_host)
    _converge(str(DESIRED_STATE.relative_to(REPO_ROOT)), directory, env)
    _say("Use it yourself")
    for line in exports(env, made_up):
        print(line)
    print("plexica-gitops status   # python -m devenv.demo --down to stop")


def _converge(desired_state: str, directory: Path, env: dict[str, str]) -> None:
    """The real CLI, as a user runs it: validate, init, the plan once (saved), apply of
    that plan, status, and a plan that has nothing left to do."""
    planfile = str(directory / "demo.plan")
    _say("Validate the desired state")
    _cli("validate", desired_state, env=env)
    _say("Create or upgrade the store's tables")
    _cli("init", env=env)
    _say("Plan against the live platform")
    changes = _cli(
        "plan", desired_state, "--out", planfile, "--detailed-exitcode", env=env, ok=(0, 2)
    )
    if changes == 2:
        _say("Apply the saved plan")
        _cli("apply", planfile, "--desired-state", desired_state, "--auto-approve", env=env)
    _say("The platform, live")
    _cli("status", env=env)
    if changes == 2:
        _say("Plan again: nothing left to do")
        _cli("plan", desired_state, "--detailed-exitcode", env=env)


# --- on Kubernetes --------------------------------------------------------------------------

SIMULATED = (
    "The pods are simulated by kwok (no container runs): the real scheduler, Deployment and "
    "ReplicaSet controllers roll them out, and kwok marks them Running and Ready."
)
_RUNTIME_BLOCK = re.compile(r"^  runtime:\n(?:    .*\n|\s*\n)*", re.MULTILINE)


def kube_dir() -> Path:
    """Everything of the Kubernetes demo: its servers, control plane and desired state."""
    return state_dir() / KUBE_SCOPE


def start_control_plane(directory: Path) -> Any:
    """The demo's control plane (a devenv.kube.KubeCluster kept in `directory`): reused
    when the one recorded there still answers, else started (built first, once)."""
    from devenv import kube

    recorded = kube.KubeCluster.recorded(directory)
    if recorded is not None and recorded.answers():
        return recorded
    if recorded is not None:
        recorded.stop()  # what is left of it (only processes running its recorded binaries)
    if not kube.built():
        print(f"building it first, once (about 25 minutes on 2 cores): {kube.bin_dir()}")
    cluster = kube.KubeCluster(directory)
    cluster.start()
    return cluster


def kube_desired_state(directory: Path, kubeconfig: str) -> Path:
    """A copy of desired-state/ whose platform.yaml runs the plugins on the demo's control
    plane (made anew each run, so an edit of desired-state/ is what the next run plans)."""
    copy = directory / "desired-state"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(DESIRED_STATE, copy)
    platform = copy / "platform.yaml"
    text = platform.read_text(encoding="utf-8")
    runtime = (
        "  runtime:\n    provider: kubernetes\n"
        "    # the demo's control plane (devenv/kube.py); kwok simulates the pods\n"
        f"    kubeconfig: {kubeconfig}\n\n"
    )
    replaced, count = _RUNTIME_BLOCK.subn(runtime, text, count=1)
    if count != 1:
        raise DemoError(f"{DESIRED_STATE / 'platform.yaml'} has no `runtime:` block to replace")
    platform.write_text(replaced, encoding="utf-8")
    return copy


def start_kube_servers(directory: Path) -> Servers:
    _say("PostgreSQL (the platform's core database; the Kubernetes demo's own)")
    dsn = start_postgres(directory)
    print(f"running at {dsn}")
    _say("A Kafka-protocol broker (Tansu, memory storage) for the plugins' event topics")
    bootstrap = start_broker(directory)
    print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    _say(
        "A Kubernetes 1.37.2 control plane of its own (etcd, kube-apiserver, "
        "controller-manager, scheduler; kwok plays the node)"
    )
    cluster = start_control_plane(directory / "kube")
    print(f"running at {cluster.server}")
    print(f"KUBECONFIG={cluster.kubeconfig}")
    print(SIMULATED)
    return Servers(dsn, "", bootstrap, kubeconfig=str(cluster.kubeconfig))


def up_kubernetes() -> None:
    directory = kube_dir()
    desired = _desired()
    servers = start_kube_servers(directory)
    env, made_up = _with_secrets(desired, servers, directory)
    copy = kube_desired_state(directory, servers.kubeconfig)
    print(f"\ndesired state: {copy} (desired-state/ with `runtime: provider: kubernetes`)")
    _converge(str(copy), directory, env)
    print(SIMULATED)
    _say("Use it yourself")
    for line in exports(env, made_up, KUBE_SERVER_VARIABLES):
        print(line)
    print(f"plexica-gitops status   # plexica-gitops plan {shlex.quote(str(copy))}")
    print("python -m devenv.demo --provider kubernetes --down   # to stop")


def down_kubernetes() -> None:
    """Stop the Kubernetes demo's control plane and servers (only those: each is stopped
    by the pid it recorded, checked to still run what was started); data stays."""
    from devenv import kube
    from devenv.postgres import PersistentPostgres
    from devenv.tansu import PersistentTansu

    directory = kube_dir()
    cluster = kube.KubeCluster.recorded(directory / "kube")
    if cluster is not None:
        cluster.stop()
        print(f"stopped the demo's control plane ({directory / 'kube'})")
    PersistentTansu(directory / "tansu", KAFKA_PORT[1]).stop()
    PersistentPostgres(directory / "postgres", PG_PORT[1]).stop_keeping_data()
    print(f"stopped; data kept in {directory} (delete it for a fresh start)")


def remove_containers(docker_host: str, scope: str) -> int:
    """Remove the containers plexica-gitops manages in `scope`, and no other."""
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        labels = [MANAGED_BY, f"{SCOPE_LABEL}={scope}"]
        containers = client.containers.list(all=True, filters={"label": labels})
        for container in containers:
            container.remove(force=True)
    finally:
        client.close()
    return len(containers)


def down() -> None:
    """Remove the demo's containers and stop the servers the demo started; data stays."""
    from devenv.podman import engine_answers, stop_engine
    from devenv.postgres import PersistentPostgres
    from devenv.tansu import PersistentTansu

    directory = state_dir()
    docker_host = f"unix://{(directory / 'podman' / 'podman.sock').resolve()}"
    if engine_answers(docker_host):
        scope = demo_scope(_desired())
        print(f"removed {remove_containers(docker_host, scope)} containers (scope {scope})")
    stop_engine(directory / "podman")
    PersistentTansu(directory / "tansu", KAFKA_PORT[1]).stop()
    PersistentPostgres(directory / "postgres", PG_PORT[1]).stop_keeping_data()
    print(f"stopped; data kept in {directory} (delete it for a fresh start)")


def main(argv: list[str] | None = None) -> int:
    from devenv.kube import KubeError
    from devenv.servers import ServerStartError

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--down", action="store_true", help="Stop the demo's servers.")
    parser.add_argument(
        "--provider",
        choices=("docker", "kubernetes"),
        default="docker",
        help="Where the plugins run: containers on Podman (default), or a Kubernetes "
        "control plane of the demo's own, its pods simulated by kwok.",
    )
    args = parser.parse_args(argv)
    steps = {
        ("docker", False): up,
        ("docker", True): down,
        ("kubernetes", False): up_kubernetes,
        ("kubernetes", True): down_kubernetes,
    }
    try:
        steps[args.provider, args.down]()
    except (DemoError, ServerStartError, KubeError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:  # installing a Debian package
        command = " ".join(shlex.quote(str(a)) for a in error.cmd)
        print(f"demo: `{command}` failed with exit status {error.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
