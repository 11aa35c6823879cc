"""The demo (`python -m devenv.demo`) on a machine that already runs other servers: real
PostgreSQL and Tansu servers of someone else on the demo's ports, real containers of
another installation on the same engine."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from conftest import EXAMPLE_DESIRED_STATE

from devenv import demo, images
from devenv.kube import KubeCluster
from devenv.postgres import PersistentPostgres, PostgresServer
from devenv.servers import ServerRecord, ServerStartError, free_port, port_is_free
from devenv.tansu import PersistentTansu, TansuBroker, cluster_id_at


def _port_the_demo_would_use(default: int) -> int:
    """The demo's default port when it is free here (it is on a clean machine), else
    another free one that the test makes the demo's default."""
    return default if port_is_free(default) else free_port()


@pytest.fixture
def demo_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The demo's state directory for this test (where the postgres user can reach it);
    its servers are stopped and it is removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="plexica-demo-test-"))
    directory.chmod(0o755)
    monkeypatch.setenv("PLEXICA_DEMO_DIR", str(directory))
    monkeypatch.delenv("PLEXICA_DEMO_PG_PORT", raising=False)
    monkeypatch.delenv("PLEXICA_DEMO_KAFKA_PORT", raising=False)
    try:
        yield directory
    finally:
        PersistentTansu(directory / "tansu", 0).stop()
        if (directory / "postgres" / "data").exists():
            PersistentPostgres(directory / "postgres", 0).stop_keeping_data()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def foreign_postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    """Someone else's PostgreSQL, on the port the demo would use first."""
    server = PostgresServer()
    server.port = _port_the_demo_would_use(demo.PG_PORT[1])
    monkeypatch.setattr(demo, "PG_PORT", (demo.PG_PORT[0], server.port))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _data_directory(dsn: str) -> str:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return str(row[0])


def test_the_demo_postgres_never_reuses_another_server(
    demo_dir: Path, foreign_postgres: PostgresServer
) -> None:
    dsn = demo.start_postgres(demo_dir)
    assert f":{foreign_postgres.port}/" not in dsn  # another free port, not theirs
    ours = str((demo_dir / "postgres" / "data").resolve())
    assert _data_directory(dsn) == ours
    assert _data_directory(foreign_postgres.dsn) == str(foreign_postgres.data)  # untouched

    # a second run finds its own server (server.json: pid, port, token) and reuses it
    record = ServerRecord.load(demo_dir / "postgres" / "server.json")
    assert record is not None and f":{record.port}/" in dsn
    assert demo.start_postgres(demo_dir) == dsn


def test_asking_for_a_taken_port_is_a_one_line_error(
    demo_dir: Path, foreign_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXICA_DEMO_PG_PORT", str(foreign_postgres.port))
    with pytest.raises(ServerStartError) as raised:
        demo.start_postgres(demo_dir)
    message = str(raised.value)
    assert "\n" not in message
    assert f"port {foreign_postgres.port}" in message and "PostgreSQL" in message


def test_a_server_that_fails_to_start_is_one_line_naming_the_cause_and_the_log(
    demo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo.start_postgres(demo_dir)
    postgres = PersistentPostgres(demo_dir / "postgres", 0)
    postgres.stop_keeping_data()
    with (postgres.data / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'plenty'\n")

    assert demo.main([]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error  # one line, no traceback
    assert error.startswith("demo: PostgreSQL did not start: ")
    assert "shared_buffers" in error and f"(log: {postgres.log})" in error


class _Listener:
    """A program that accepts TCP connections and never speaks Kafka."""

    def __init__(self, port: int) -> None:
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.socket.listen()
        self.port = port

    def close(self) -> None:
        self.socket.close()


@pytest.mark.parametrize("other", ["tcp-listener", "another-broker"])
def test_the_demo_broker_never_reuses_another_program(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch, other: str
) -> None:
    port = _port_the_demo_would_use(demo.KAFKA_PORT[1])
    monkeypatch.setattr(demo, "KAFKA_PORT", (demo.KAFKA_PORT[0], port))
    foreign: _Listener | TansuBroker
    if other == "tcp-listener":
        foreign = _Listener(port)
    else:
        foreign = TansuBroker(port)
        foreign.start()
    try:
        bootstrap = demo.start_broker(demo_dir)
        assert bootstrap != f"127.0.0.1:{port}"
        record = ServerRecord.load(demo_dir / "tansu" / "server.json")
        assert record is not None and bootstrap == f"127.0.0.1:{record.port}"
        assert cluster_id_at(bootstrap) == record.token  # our broker answers there
        assert demo.start_broker(demo_dir) == bootstrap  # reused on the next run
        if isinstance(foreign, TansuBroker):
            assert cluster_id_at(foreign.bootstrap) == foreign.cluster_id  # theirs still runs
    finally:
        if isinstance(foreign, TansuBroker):
            foreign.stop()
        else:
            foreign.close()


def test_a_recorded_port_now_used_by_someone_else_is_not_ours(demo_dir: Path) -> None:
    """Our broker stopped (a reboot), and another program took its port since."""
    bootstrap = demo.start_broker(demo_dir)
    record = ServerRecord.load(demo_dir / "tansu" / "server.json")
    assert record is not None
    PersistentTansu(demo_dir / "tansu", 0).stop()
    record.save(demo_dir / "tansu" / "server.json")  # as a crash would leave it
    squatter = TansuBroker(record.port)
    squatter.start()
    try:
        again = demo.start_broker(demo_dir)
        assert again != bootstrap
        assert cluster_id_at(squatter.bootstrap) == squatter.cluster_id  # left alone
    finally:
        squatter.stop()


def test_down_removes_only_the_demo_scope(
    docker_client: docker.DockerClient,
    docker_host: str,
    docker_scope: str,
    echo_images: dict[str, str],
) -> None:
    other_scope = f"{docker_scope}-other"
    made = []
    try:
        for scope in (docker_scope, other_scope):
            made.append(
                docker_client.containers.create(
                    echo_images["1.0.0"],
                    labels={"io.plexica.managed-by": "plexica-gitops", "io.plexica.scope": scope},
                )
            )
        assert demo.remove_containers(docker_host, docker_scope) == 1
        survivors = docker_client.containers.list(
            all=True, filters={"label": f"io.plexica.scope={other_scope}"}
        )
        assert [c.id for c in survivors] == [made[1].id]
    finally:
        for container in made:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def test_the_demo_scope_is_the_one_its_platform_declares() -> None:
    desired = demo._desired()
    assert demo.demo_scope(desired) == "default"  # desired-state/platform.yaml sets none


def test_every_variable_to_use_the_servers_is_printed_made_up_secrets_marked(
    tmp_path: Path,
) -> None:
    desired = demo._desired()
    servers = demo.Servers("postgresql://postgres@127.0.0.1:1/postgres", "unix:///x", "h:1")
    env = {k: v for k, v in demo._environment(servers).items() if k != "BILLING_STRIPE_API_KEY"}
    made_up = demo.made_up_secrets(desired, tmp_path, env)
    assert set(made_up) == {"BILLING_STRIPE_API_KEY"}  # the servers' variables are real
    assert demo.made_up_secrets(desired, tmp_path, env) == made_up  # kept for the next run
    lines = demo.exports({**env, **made_up}, made_up)
    exported = {line.split()[1].split("=")[0] for line in lines}
    assert exported == {*demo.SERVER_VARIABLES, "BILLING_STRIPE_API_KEY"}
    (billing,) = [line for line in lines if "BILLING_STRIPE_API_KEY" in line]
    assert "made up by the demo, not a real secret" in billing
    assert (tmp_path / "made-up-secrets.env").stat().st_mode & 0o077 == 0


def test_an_image_for_a_new_version_to_try_an_upgrade(
    docker_client: docker.DockerClient, docker_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    image = "localhost/plexica/crm:1.3.0"
    args = ["build", "--plugin", "crm", "--version", "1.3.0"]
    assert images.main([*args, "--desired-state", str(EXAMPLE_DESIRED_STATE)]) == 0
    container = docker_client.containers.run(
        image, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}, labels={"test": "images"}
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        answer = _get_json(f"http://127.0.0.1:{port}/api/plugins/crm/")
        assert answer == {"plugin": "crm", "version": "1.3.0"}
    finally:
        container.remove(force=True)
        docker_client.images.remove(image)


def _get_json(url: str) -> object:
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_image_for_version_replaces_only_the_tag() -> None:
    assert images.image_for_version("localhost/plexica/crm:1.2.0", "1.3.0") == (
        "localhost/plexica/crm:1.3.0"
    )
    assert images.image_for_version("localhost:5000/crm", "2.0.0") == "localhost:5000/crm:2.0.0"


# --- the demo on Kubernetes ---------------------------------------------------------------


@pytest.fixture
def kube_demo_dir(demo_dir: Path) -> Iterator[Path]:
    """The Kubernetes demo's directory inside `demo_dir`; its control plane and servers are
    stopped afterwards (by their records: only what the demo started)."""
    from devenv import kube

    if not kube.built():
        pytest.fail(f"the Kubernetes binaries are not built in {kube.bin_dir()}: run "
                    "`python3 -m devenv.kube build` first")  # fmt: skip
    directory = demo_dir / demo.KUBE_SCOPE
    try:
        yield directory
    finally:
        cluster = kube.KubeCluster.recorded(directory / "kube")
        if cluster is not None:
            cluster.stop()
        PersistentTansu(directory / "tansu", 0).stop()
        if (directory / "postgres" / "data").exists():
            PersistentPostgres(directory / "postgres", 0).stop_keeping_data()


def _exported(output: str) -> dict[str, str]:
    """The variables the demo printed to use its servers (`export NAME=value   # ...`)."""
    found = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, value = shlex.split(line, comments=True)[1].split("=", 1)
            found[name] = value
    return found


def test_the_demo_on_kubernetes_ends_with_every_deployment_healthy(
    kube_demo_dir: Path, kube_cluster: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """`kube_cluster` is someone else's control plane on the same machine: `--down` stops
    the demo's, never that one."""
    begun = time.monotonic()
    assert demo.main(["--provider", "kubernetes"]) == 0
    took = time.monotonic() - begun
    output = capfd.readouterr().out
    assert "simulated by kwok" in output
    assert output.count("Plan: ") == 1  # shown once: `plan --out`, then apply of that plan
    assert "No changes. The platform matches the desired state." in output  # converged
    env = _exported(output)
    assert set(env) == {*demo.KUBE_SERVER_VARIABLES, "BILLING_STRIPE_API_KEY"}

    status = subprocess.run(
        [sys.executable, "-m", "plexica_gitops.cli", "status", "--format", "json"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    view = json.loads(status.stdout)
    assert view["runtime"]["provider"] == "kubernetes"
    plugins = {p["id"]: p for p in view["plugins"]}
    assert set(plugins) == {"analytics", "billing", "contacts", "crm", "inventory", "notifications"}
    for pid, plugin in plugins.items():
        workload = plugin["workload"]
        assert workload["observed"] and workload["running"], pid
        assert workload["ready"] == workload["replicas"] >= 1, pid  # every Deployment healthy
    assert plugins["crm"]["endpoints"][0]["url"] == (
        "http://plexica-crm.plexica-plugins.svc.cluster.local:8080"
    )
    print(f"kubernetes demo: {took:.1f} s")  # ≤ 90 s on an idle machine

    server = KubeCluster.recorded(kube_demo_dir / "kube")
    assert server is not None and server.answers()
    assert demo.main(["--provider", "kubernetes", "--down"]) == 0
    assert not server.answers()  # the demo's control plane is stopped...
    assert kube_cluster.request("GET", "/api/v1/nodes")["items"]  # ...the other one is not
