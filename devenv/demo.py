"""The end-to-end demo: from a fresh machine to the example platform running.

    python -m devenv.demo            # install what is missing, start, build, init, plan, apply
    python -m devenv.demo --down     # remove the demo's containers, stop its servers

It installs and starts what it needs (PostgreSQL, Podman's Docker-API socket — Debian
packages, so run it as root — and a Tansu broker for the event topics), builds the demo
plugin images locally (no registry is reachable), then runs the real CLI: `validate`,
`init`, `plan`, `apply --auto-approve`,
`status`, and `plan` once more to show that the platform has converged. The servers keep
running afterwards; the environment to use them is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DESIRED_STATE = REPO_ROOT / "desired-state"
STATE_DIR = Path(os.environ.get("PLEXICA_DEMO_DIR", "/var/tmp/plexica-demo"))
POSTGRES_PORT = int(os.environ.get("PLEXICA_DEMO_PG_PORT", "55432"))
KAFKA_PORT = int(os.environ.get("PLEXICA_DEMO_KAFKA_PORT", "59092"))


def _say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _cli(*args: str, env: dict[str, str], check: bool = True) -> int:
    shown = " ".join(shlex.quote(a) for a in ("plexica-gitops", *args))
    print(f"$ {shown}", flush=True)
    command = [sys.executable, "-m", "plexica_gitops.cli", *args]
    code = subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode
    if check and code != 0:
        raise SystemExit(f"demo: `{shown}` exited {code}")
    return code


def _environment() -> dict[str, str]:
    from devenv.podman import ensure_engine
    from devenv.postgres import PersistentPostgres, install_server

    _say("PostgreSQL (the platform's core database)")
    install_server()
    dsn = PersistentPostgres(STATE_DIR / "postgres", POSTGRES_PORT).ensure()
    print(f"running at {dsn}")

    _say("Podman serving the Docker Engine API")
    docker_host = ensure_engine(STATE_DIR / "podman")
    print(f"DOCKER_HOST={docker_host}")

    _say("A Kafka-protocol broker (Tansu, memory storage) for the plugins' event topics")
    bootstrap = _ensure_broker()
    print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    return {
        **os.environ,
        "PLEXICA_DATABASE_URL": dsn,
        "DOCKER_HOST": docker_host,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        # What platform.yaml's env references resolve to inside the plugin containers.
        "PLEXICA_PLUGIN_DATABASE_URL": dsn,
        "PLEXICA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        # billing's STRIPE_API_KEY is a `fromEnv` reference: a real pipeline exports the
        # key; the demo makes up a throwaway one (never printed) unless one is exported.
        "BILLING_STRIPE_API_KEY": os.environ.get(
            "BILLING_STRIPE_API_KEY", f"sk_test_demo_{secrets.token_hex(12)}"
        ),
        "COLUMNS": os.environ.get("COLUMNS", "120"),
    }


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ensure_broker() -> str:
    """A broker that outlives the demo process (its own session); reused when running."""
    from devenv.tansu import TansuBroker

    if not _listening(KAFKA_PORT):
        broker = TansuBroker(port=KAFKA_PORT)
        broker.start()
        assert broker.process is not None
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / "tansu.pid").write_text(str(broker.process.pid), encoding="utf-8")
    return f"127.0.0.1:{KAFKA_PORT}"


def _stop_broker() -> None:
    pid_file = STATE_DIR / "tansu.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pid_file.read_text(encoding="utf-8")), signal.SIGTERM)
    pid_file.unlink()


def _build_images(env: dict[str, str]) -> None:
    import docker

    from devenv.images import build_desired_state_images

    _say("Building the demo plugin images locally")
    client = docker.DockerClient(base_url=env["DOCKER_HOST"])
    try:
        for image in build_desired_state_images(client, DESIRED_STATE):
            print(f"  {image}")
    finally:
        client.close()


def up() -> None:
    env = _environment()
    _build_images(env)
    desired = str(DESIRED_STATE.relative_to(REPO_ROOT))
    _say("Validate the desired state")
    _cli("validate", desired, env=env)
    _say("Create or upgrade the store's tables")
    _cli("init", env=env)
    _say("Plan against the live platform")
    _cli("plan", desired, env=env)
    _say("Apply")
    _cli("apply", desired, "--auto-approve", env=env)
    _say("The platform, live")
    _cli("status", desired, env=env)
    _say("Plan again: nothing left to do")
    _cli("plan", desired, "--detailed-exitcode", env=env)
    _say("Use it yourself")
    for name in (
        "PLEXICA_DATABASE_URL",
        "DOCKER_HOST",
        "KAFKA_BOOTSTRAP_SERVERS",
        "PLEXICA_PLUGIN_DATABASE_URL",
        "PLEXICA_KAFKA_BOOTSTRAP_SERVERS",
    ):
        print(f"export {name}={shlex.quote(env[name])}")
    print("plexica-gitops status desired-state   # python -m devenv.demo --down to stop")


def down() -> None:
    """Remove the demo's containers and stop what the demo started; data stays."""
    import docker

    from devenv.podman import engine_answers, stop_engine
    from devenv.postgres import PersistentPostgres

    docker_host = f"unix://{STATE_DIR / 'podman' / 'podman.sock'}"
    if engine_answers(docker_host):
        client = docker.DockerClient(base_url=docker_host)
        containers = client.containers.list(
            all=True, filters={"label": "io.plexica.managed-by=plexica-gitops"}
        )
        for container in containers:
            container.remove(force=True)
        client.close()
        print(f"removed {len(containers)} containers")
    stop_engine(STATE_DIR / "podman")
    _stop_broker()
    PersistentPostgres(STATE_DIR / "postgres", POSTGRES_PORT).stop_keeping_data()
    print(f"stopped; data kept in {STATE_DIR} (delete it for a fresh start)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", action="store_true", help="Stop the demo's servers.")
    args = parser.parse_args(argv)
    down() if args.down else up()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
