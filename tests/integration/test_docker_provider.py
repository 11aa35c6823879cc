"""The Docker provider against a real engine (Podman's Docker API), no mocks: containers are
created, probed over HTTP on 127.0.0.1, stopped, replaced and read back from the engine.
Plus unit tests of the CPU/memory quantities and of the HTTP probes."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from devenv.images import build_plugin_image
from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.live.model import LiveResources, LiveWorkload
from plexica_gitops.runtime.health import ProbeResult, probe, wait_ready
from plexica_gitops.runtime.provider import (
    Endpoint,
    ImagePullError,
    ProviderError,
    RolloutFailed,
    RolloutSettings,
    WorkloadSpec,
    load_provider,
)
from plexica_gitops_docker.provider import DockerProvider, DockerSettings
from plexica_gitops_docker.units import format_cpu, format_memory, parse_cpu, parse_memory

PLUGIN = "echo"
IMAGE = "localhost/plexica-test/echo"
NEVER_READY = "1.9.0"  # this version's image answers /health/ready with 404
SECRET = "s3cr3t-Value-that-must-not-leak"
FAST = RolloutSettings(
    ready_probes=2, probe_interval_seconds=0.2, timeout_seconds=5, grace_period_seconds=1
)
FAIL_FAST = RolloutSettings(
    ready_probes=2, probe_interval_seconds=0.2, timeout_seconds=2, grace_period_seconds=1
)


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nano"),
    [
        ("500m", 500_000_000),
        ("1", 1_000_000_000),
        ("1.5", 1_500_000_000),
        ("0.25", 250_000_000),
        ("2000m", 2_000_000_000),
        ("0.000000001", 1),
    ],
)
def test_parse_cpu(text: str, nano: int) -> None:
    assert parse_cpu(text) == nano


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("500M", 500_000_000),
        ("1G", 1_000_000_000),
        ("1048576", 1_048_576),
        ("1.5Gi", 3 * 2**29),
        ("64Ki", 65_536),
        ("100k", 100_000),
    ],
)
def test_parse_memory(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "m", "-1", "1.5m", "0", "0m", "one", "1e3", "500 m"])
def test_parse_cpu_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu(text)


@pytest.mark.parametrize("text", ["", "Mi", "-1Mi", "0", "1MB", "1mi", "512 Mi", "1.5.2G"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)


@pytest.mark.parametrize(
    ("nano", "text"), [(750_000_000, "750m"), (2_000_000_000, "2"), (1_500_000_000, "1500m")]
)
def test_format_cpu(nano: int, text: str) -> None:
    assert format_cpu(nano) == text
    assert parse_cpu(text) == nano


@pytest.mark.parametrize(
    ("size", "text"),
    [(256 * 2**20, "256Mi"), (2**30, "1Gi"), (1_000_000_000, "1G"), (1000, "1k"), (7, "7")],
)
def test_format_memory(size: int, text: str) -> None:
    assert format_memory(size) == text
    assert parse_memory(text) == size


# --- health probes against a real HTTP server ------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    ready_after = 0  # /flaky answers 503 this many times, then 200
    calls = 0

    def do_GET(self) -> None:
        if self.path == "/ok":
            self._answer(200, b"fine")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/flaky":
            type(self).calls += 1
            ok = type(self).calls > type(self).ready_after
            self._answer(200 if ok else 503, b"ready" if ok else b"warming up")
        else:
            self._answer(503, b"database   unavailable\n" + b"x" * 500)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.calls, _Handler.ready_after = 0, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_probe_answers(http_server: str) -> None:
    assert probe(f"{http_server}/ok").ok
    moved = probe(f"{http_server}/moved")
    assert moved.ok and moved.detail == "HTTP 302"  # not followed
    failed = probe(f"{http_server}/broken")
    assert not failed.ok
    assert failed.detail.startswith("HTTP 503: database unavailable x")
    assert len(failed.detail) == len("HTTP 503: ") + 200


def test_probe_connection_refused() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        result = probe(f"http://127.0.0.1:{port}/", timeout=1)
    assert result == ProbeResult(False, "connection refused")


def test_wait_ready_needs_consecutive_answers(http_server: str) -> None:
    _Handler.ready_after = 2
    settings = RolloutSettings(ready_probes=3, probe_interval_seconds=0.05, timeout_seconds=5)
    result = wait_ready(f"{http_server}/flaky", settings)
    assert result.ok
    assert _Handler.calls == 5  # two 503s, then three 200s in a row


def test_wait_ready_gives_up_with_the_last_answer(http_server: str) -> None:
    settings = RolloutSettings(ready_probes=1, probe_interval_seconds=0.1, timeout_seconds=0.5)
    started = time.monotonic()
    result = wait_ready(f"{http_server}/broken", settings)
    assert time.monotonic() - started < 1.5
    assert not result.ok and result.detail.startswith("HTTP 503: database")


# --- the provider against the engine -------------------------------------------------------


class _RacedContainers:
    """An engine listing that fails as Podman's does while another process removes one of
    the containers it is listing (500, not the 404 the SDK skips), `failures` times."""

    def __init__(self, failures: int, explanation: str) -> None:
        self.failures = failures
        self.explanation = explanation
        self.calls = 0

    def list(self, **_: Any) -> list[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise docker.errors.APIError("500 Server Error", explanation=self.explanation)
        return []


def _raced_provider(containers: _RacedContainers) -> DockerProvider:
    provider = DockerProvider(DockerSettings(base_url="unix:///nowhere.sock", scope="race"))
    provider._docker = SimpleNamespace(containers=containers)  # the SDK client it would use
    return provider


RACE = "container 3f2a9c does not exist in database: no such container"


def test_a_listing_raced_by_a_removal_is_taken_again() -> None:
    containers = _RacedContainers(failures=2, explanation=RACE)
    assert _raced_provider(containers).observe() == {}
    assert containers.calls == 3


def test_other_engine_failures_while_listing_are_not_retried() -> None:
    containers = _RacedContainers(failures=1, explanation="database is locked")
    with pytest.raises(ProviderError, match="database is locked"):
        _raced_provider(containers).observe()
    assert containers.calls == 1


@pytest.fixture(scope="session")
def provider_images(docker_client: Any) -> dict[str, str]:
    """Images of the `echo` test plugin: healthy 1.0.0 and 1.1.0, never-ready 1.9.0."""
    images = {}
    for version in ("1.0.0", "1.1.0", NEVER_READY):
        behaviour = "never-ready" if version == NEVER_READY else "healthy"
        ref = f"{IMAGE}:{version}"
        images[version] = build_plugin_image(
            docker_client, ref, PLUGIN, version, behaviour=behaviour
        )
    return images


@dataclass
class MemoryRoutes:
    """An in-memory RouteRegistry that remembers how few endpoints it ever held."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fewest_after_first: int | None = None

    def register(self, endpoint: Endpoint) -> None:
        with self.lock:
            self.endpoints[endpoint.url] = endpoint
            self._note()

    def deregister(self, endpoint: Endpoint) -> None:
        with self.lock:
            self.endpoints.pop(endpoint.url, None)
            self._note()

    def snapshot(self) -> list[Endpoint]:
        with self.lock:
            return list(self.endpoints.values())

    def _note(self) -> None:
        count = len(self.endpoints)
        if self.fewest_after_first is None:
            self.fewest_after_first = count
        self.fewest_after_first = min(self.fewest_after_first, count)

    def versions(self) -> set[str]:
        return {e.version for e in self.snapshot()}


class Traffic(threading.Thread):
    """A client sending requests, round robin, to whatever the registry holds."""

    def __init__(self, routes: MemoryRoutes) -> None:
        super().__init__(daemon=True)
        self.routes = routes
        self.stopping = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()

    def run(self) -> None:
        turn = 0
        while not self.stopping.is_set():
            endpoints = self.routes.snapshot()
            if not endpoints:
                self.failures.append("no endpoint registered")
            else:
                turn += 1
                self._request(endpoints[turn % len(endpoints)])
            time.sleep(0.005)

    def _request(self, endpoint: Endpoint) -> None:
        try:
            answer = _get_json(f"{endpoint.url}/api/plugins/{PLUGIN}/index.html")
        except OSError as error:
            self.failures.append(f"{endpoint.url}: {error}")
            return
        self.ok += 1
        self.versions.add(answer["version"])

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(5)


def _get_json(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=3) as response:
        return dict(json.loads(response.read()))


def _spec(
    version: str = "1.0.0",
    *,
    replicas: int = 2,
    strategy: RolloutStrategy = RolloutStrategy.ROLLING,
    running: bool = True,
    cpu: str | None = "500m",
    memory: str | None = "64Mi",
    rollout: RolloutSettings = FAST,
) -> WorkloadSpec:
    return WorkloadSpec(
        plugin_id=PLUGIN,
        version=version,
        image=f"{IMAGE}:{version}",
        manifest_hash=f"m-{version}",
        replicas=replicas,
        cpu=cpu,
        memory=memory,
        port=8080,
        readiness_path="/health/ready",
        liveness_path="/health/live",
        env_hash="e-1",
        env={"PLEXICA_TOKEN": SECRET, "GREETING": "hello"},
        strategy=strategy,
        rollout=rollout,
        running=running,
    )


def _containers(client: Any, scope: str) -> list[Any]:
    labels = [f"io.plexica.scope={scope}", f"io.plexica.plugin={PLUGIN}"]
    return sorted(client.containers.list(all=True, filters={"label": labels}), key=lambda c: c.name)


def _answering(routes: MemoryRoutes) -> set[str]:
    """Versions the registered endpoints answer with (each must answer)."""
    return {
        _get_json(f"{e.url}/api/plugins/{PLUGIN}/index.html")["version"] for e in routes.snapshot()
    }


@pytest.fixture
def provider(docker_provider: DockerProvider, provider_images: dict[str, str]) -> DockerProvider:
    return docker_provider


def test_deploy_confines_and_limits_the_containers(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec(), routes)

    containers = _containers(docker_client, docker_scope)
    assert len(containers) == 2
    assert _answering(routes) == {"1.0.0"}
    assert {e.instance for e in routes.snapshot()} == {c.name for c in containers}
    for container in containers:
        host, config = container.attrs["HostConfig"], container.attrs["Config"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 64 * 2**20
        assert host["ReadonlyRootfs"] is True
        assert host["Privileged"] is False
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["Init"] is True
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert config["User"] == "65534:65534"
        assert f"PLEXICA_TOKEN={SECRET}" in config["Env"]  # the runtime gets the value...
        assert SECRET not in json.dumps(config["Labels"])  # ...labels do not
        assert config["Labels"]["io.plexica.cpu"] == "500m"
        assert config["Labels"]["io.plexica.version"] == "1.0.0"
        assert config["Labels"]["io.plexica.env-hash"] == "e-1"
        status = container.exec_run(["/bin/busybox", "cat", "/proc/self/status"]).output
        assert b"CapEff:\t0000000000000000" in status
        assert b"NoNewPrivs:\t1" in status
        touched = container.exec_run(["/bin/busybox", "touch", "/etc/x"])
        assert touched.exit_code != 0 and b"Read-only" in touched.output
        assert container.exec_run(["/bin/busybox", "touch", "/tmp/x"]).exit_code == 0
        assert provider.settings.network in container.attrs["NetworkSettings"]["Networks"]


def test_observe_round_trip_and_hand_made_changes(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec(), routes)
    expected = LiveWorkload(
        image=f"{IMAGE}:1.0.0",
        version="1.0.0",
        manifest_hash="m-1.0.0",
        replicas=2,
        ready_replicas=2,
        running=True,
        resources=LiveResources(cpu="500m", memory="64Mi"),
        env_hash="e-1",
    )
    observed = provider.observe()
    assert list(observed) == [PLUGIN]
    assert observed[PLUGIN].model_copy(update={"instances": ()}) == expected
    replicas = observed[PLUGIN].instances
    assert [(r.version, r.manifest_hash, r.env_hash, r.running, r.ready) for r in replicas] == [
        ("1.0.0", "m-1.0.0", "e-1", True, True)
    ] * 2
    assert {r.url for r in replicas} == {e.url for e in routes.snapshot()}

    first, second = _containers(docker_client, docker_scope)
    first.stop(timeout=1)  # by hand, behind the reconciler's back
    assert provider.observe()[PLUGIN].ready_replicas == 1
    assert [e.instance for e in provider.endpoints(PLUGIN)] == [second.name]

    # Someone recreates a replica with other limits: observe shows the engine's values.
    labels = dict(first.labels)
    first.remove(force=True)
    docker_client.containers.create(
        f"{IMAGE}:1.0.0", labels=labels, nano_cpus=750_000_000, mem_limit=256 * 2**20
    )
    live = provider.observe()[PLUGIN]
    assert live.resources == LiveResources(cpu="750m", memory="256Mi")
    assert (live.replicas, live.ready_replicas, live.running) == (2, 1, True)

    provider.stop(PLUGIN, routes, 1)
    live = provider.observe()[PLUGIN]
    assert (live.replicas, live.ready_replicas, live.running) == (2, 0, False)
    # Only the endpoint of the container removed by hand is left: the provider cannot see
    # it any more, and the RouteRegistry protocol has no listing to reconcile against.
    assert [e.instance for e in routes.snapshot()] == [first.name]


def test_observe_reports_every_replica_and_update_retires_the_strays(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    """A rolling update cut short leaves 1.0.0 and 1.1.0 replicas side by side: observe
    shows them all (not only the majority), and update leaves exactly the desired ones."""
    routes = MemoryRoutes()
    provider.deploy(_spec("1.0.0"), routes)
    stray = provider._launch(_spec("1.1.0"), "cut0ff", 0)  # the rollout's first new replica
    routes.register(stray.endpoint)  # registered, then the apply was killed
    olds = [c for c in _containers(docker_client, docker_scope) if c.name != stray.name]
    olds[0].stop(timeout=1)  # an old one already drained and stopped

    live = provider.observe()[PLUGIN]
    assert (live.version, live.replicas) == ("1.0.0", 3)
    assert sorted((r.version, r.running) for r in live.instances) == [
        ("1.0.0", False),
        ("1.0.0", True),
        ("1.1.0", True),
    ]
    assert len(live.builds()) == 2

    provider.update(_spec("1.1.0"), routes)
    live = provider.observe()[PLUGIN]
    assert [(r.version, r.running, r.ready) for r in live.instances] == [("1.1.0", True, True)] * 2
    assert {e.url for e in routes.snapshot()} == {r.url for r in live.instances}
    assert len(_containers(docker_client, docker_scope)) == 2


def test_observe_is_limited_to_the_scope(
    provider: DockerProvider, docker_host: str, docker_scope: str
) -> None:
    provider.deploy(_spec(replicas=1), MemoryRoutes())
    other = DockerProvider(DockerSettings(base_url=docker_host, scope=f"{docker_scope}-other"))
    try:
        assert other.observe() == {}
        other.remove(PLUGIN, MemoryRoutes())  # touches nothing of the first scope
    finally:
        other.close()
    assert provider.observe()[PLUGIN].replicas == 1


def test_ensure_image(provider: DockerProvider) -> None:
    provider.ensure_image(f"{IMAGE}:1.0.0")  # present locally
    started = time.monotonic()
    with pytest.raises(ImagePullError) as caught:
        provider.ensure_image("registry.invalid/plexica/missing:1.0.0")
    assert time.monotonic() - started < 10
    assert "registry.invalid" in caught.value.message  # the engine's own words
    assert "build the image" in caught.value.hint


def test_rolling_update_serves_throughout(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec("1.0.0"), routes)
    old = {c.name for c in _containers(docker_client, docker_scope)}
    with Traffic(routes) as traffic:
        started = time.monotonic()
        provider.update(_spec("1.1.0"), routes)
        took = time.monotonic() - started
        time.sleep(0.2)
    print(f"rolling update: {traffic.ok} requests, {len(traffic.failures)} failed, {took:.1f} s")
    assert traffic.failures == []
    assert traffic.ok > 20
    assert traffic.versions == {"1.0.0", "1.1.0"}
    assert routes.fewest_after_first is not None and routes.fewest_after_first >= 1
    assert _answering(routes) == {"1.1.0"} and len(routes.snapshot()) == 2
    now = _containers(docker_client, docker_scope)
    assert len(now) == 2 and not old & {c.name for c in now}
    assert provider.observe()[PLUGIN].version == "1.1.0"


def test_rolling_update_to_a_never_ready_version_rolls_back(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec("1.0.0"), routes)
    with Traffic(routes) as traffic, pytest.raises(RolloutFailed) as caught:
        provider.update(_spec(NEVER_READY, rollout=FAIL_FAST), routes)
    failure = caught.value
    assert failure.rolled_back
    assert failure.last_probe.startswith("HTTP 404")
    assert f"{PLUGIN} {NEVER_READY}" in failure.message and "HTTP 404" in failure.message
    assert SECRET not in str(failure)
    assert traffic.failures == []
    assert _answering(routes) == {"1.0.0"} and len(routes.snapshot()) == 2
    versions = {c.labels["io.plexica.version"] for c in _containers(docker_client, docker_scope)}
    assert versions == {"1.0.0"}
    assert provider.observe()[PLUGIN].ready_replicas == 2


def test_rolling_update_rolls_back_after_a_first_replica_succeeded(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    """The second new replica dies (stopped by hand while it starts) after the first one
    replaced an old one: the retired old one is started and registered again before the
    new ones go."""
    routes = MemoryRoutes()
    provider.deploy(_spec("1.0.0"), routes)
    slow = f"{IMAGE}:1.1.0-slow"  # httpd starts after 1.5 s: time to stop it before
    build_plugin_image(docker_client, slow, PLUGIN, "1.1.0", startup_delay=1.5)
    spec = replace(_spec("1.1.0", rollout=FAIL_FAST), image=slow)
    second = [f"io.plexica.scope={docker_scope}", "io.plexica.version=1.1.0"]
    second.append("io.plexica.replica=1")
    killer = _StopWhenCreated(docker_client, second)
    with killer, Traffic(routes) as traffic, pytest.raises(RolloutFailed) as caught:
        provider.update(spec, routes)
    assert killer.stopped
    assert caught.value.rolled_back
    assert traffic.failures == []
    assert "1.1.0" in traffic.versions  # the first new replica did serve
    assert _answering(routes) == {"1.0.0"} and len(routes.snapshot()) == 2
    versions = [c.labels["io.plexica.version"] for c in _containers(docker_client, docker_scope)]
    assert versions == ["1.0.0", "1.0.0"]


class _StopWhenCreated(threading.Thread):
    """Stops (SIGKILL, no restart: a stop by hand) the first container with `labels`."""

    def __init__(self, client: Any, labels: list[str]) -> None:
        super().__init__(daemon=True)
        self.client, self.labels = client, labels
        self.done = threading.Event()
        self.stopped = False

    def run(self) -> None:
        while not self.done.is_set():
            for container in self.client.containers.list(filters={"label": self.labels}):
                container.stop(timeout=0)
                self.stopped = True
                return
            time.sleep(0.05)

    def __enter__(self) -> _StopWhenCreated:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(5)


def test_blue_green_update(provider: DockerProvider, docker_client: Any, docker_scope: str) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec("1.0.0"), routes)
    blue_green = RolloutStrategy.BLUE_GREEN
    with Traffic(routes) as traffic, pytest.raises(RolloutFailed) as caught:
        provider.update(_spec(NEVER_READY, strategy=blue_green, rollout=FAIL_FAST), routes)
    assert caught.value.rolled_back and traffic.failures == []
    assert _answering(routes) == {"1.0.0"}
    with Traffic(routes) as traffic:
        provider.update(_spec("1.1.0", strategy=blue_green), routes)
        time.sleep(0.2)
    assert traffic.failures == [] and traffic.versions == {"1.0.0", "1.1.0"}
    assert _answering(routes) == {"1.1.0"} and len(routes.snapshot()) == 2
    versions = [c.labels["io.plexica.version"] for c in _containers(docker_client, docker_scope)]
    assert versions == ["1.1.0", "1.1.0"]


def test_stop_and_start_keep_the_containers(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec(), routes)
    before = {c.id for c in _containers(docker_client, docker_scope)}
    urls = {e.url for e in routes.snapshot()}
    provider.stop(PLUGIN, routes, 1)
    assert routes.snapshot() == []
    stopped = _containers(docker_client, docker_scope)
    assert {c.id for c in stopped} == before and {c.status for c in stopped} == {"exited"}
    provider.stop(PLUGIN, routes, 1)  # idempotent

    provider.start(_spec(), routes)
    assert {c.id for c in _containers(docker_client, docker_scope)} == before
    assert {e.url for e in routes.snapshot()} == urls  # same host ports after a restart
    assert _answering(routes) == {"1.0.0"}

    # A replica removed by hand is recreated by start.
    _containers(docker_client, docker_scope)[0].remove(force=True)
    provider.start(_spec(), routes)
    assert len(_containers(docker_client, docker_scope)) == 2
    assert len(provider.endpoints(PLUGIN)) == 2


def test_disabled_plugin_is_created_and_updated_stopped(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec(running=False), routes)
    assert [c.status for c in _containers(docker_client, docker_scope)] == ["created"] * 2
    provider.update(_spec("1.1.0", running=False), routes)
    containers = _containers(docker_client, docker_scope)
    assert [c.labels["io.plexica.version"] for c in containers] == ["1.1.0"] * 2
    assert {c.status for c in containers} == {"created"} and routes.snapshot() == []
    live = provider.observe()[PLUGIN]
    assert (live.version, live.running, live.ready_replicas) == ("1.1.0", False, 0)


def test_deploy_of_a_never_ready_version_leaves_nothing(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    with pytest.raises(RolloutFailed) as caught:
        provider.deploy(_spec(NEVER_READY, rollout=FAIL_FAST), routes)
    assert caught.value.rolled_back and "HTTP 404" in caught.value.last_probe
    assert _containers(docker_client, docker_scope) == [] and routes.snapshot() == []


def test_scale_and_remove(provider: DockerProvider, docker_client: Any, docker_scope: str) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec(replicas=1), routes)
    provider.scale(_spec(replicas=3), routes)
    assert len(_containers(docker_client, docker_scope)) == 3 and len(routes.snapshot()) == 3
    provider.scale(_spec(replicas=1), routes)
    assert len(_containers(docker_client, docker_scope)) == 1 and len(routes.snapshot()) == 1
    assert _answering(routes) == {"1.0.0"}
    provider.remove(PLUGIN, routes)
    assert _containers(docker_client, docker_scope) == [] and routes.snapshot() == []
    provider.remove(PLUGIN, routes)  # idempotent
    assert provider.observe() == {}


def test_update_retried_after_success_keeps_the_containers(
    provider: DockerProvider, docker_client: Any, docker_scope: str
) -> None:
    routes = MemoryRoutes()
    provider.deploy(_spec(), routes)
    before = {c.id for c in _containers(docker_client, docker_scope)}
    provider.update(_spec(), routes)  # a retry after a lost reply
    provider.deploy(_spec(), routes)
    assert {c.id for c in _containers(docker_client, docker_scope)} == before
    assert len(routes.snapshot()) == 2


def test_network_is_found_by_its_exact_name(
    docker_host: str, docker_client: Any, docker_scope: str, provider_images: dict[str, str]
) -> None:
    """Engines match network names by substring or regex: an existing `<name>-other`
    must not pass for `<name>`."""
    name = f"plexica-{docker_scope}"
    docker_client.networks.create(f"{name}-other")
    settings = DockerSettings(base_url=docker_host, network=name, scope=docker_scope)
    provider = DockerProvider(settings)
    try:
        provider.deploy(_spec(replicas=1), MemoryRoutes())
        (container,) = _containers(docker_client, docker_scope)
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [name]
    finally:
        provider.close()
        for leftover in _containers(docker_client, docker_scope):
            leftover.remove(force=True)  # before their network goes
        for network in docker_client.networks.list(names=[name]):
            network.remove()


def test_unreachable_engine_says_what_to_do(tmp_path: Any) -> None:
    provider = DockerProvider(DockerSettings(base_url=f"unix://{tmp_path}/none.sock"))
    with pytest.raises(ProviderError) as caught:
        provider.observe()
    assert caught.value.transient
    assert "DOCKER_HOST" in caught.value.hint


def test_load_provider_with_settings(docker_host: str) -> None:
    provider = load_provider(
        "docker", {"baseUrl": docker_host, "network": "plexica", "endpointMode": "loopback"}
    )
    assert isinstance(provider, DockerProvider)
    assert provider.settings.network == "plexica" and provider.settings.scope == "default"
    with pytest.raises(ProviderError, match="unknown docker runtime setting"):
        load_provider("docker", {"netwrok": "plexica"})
    with pytest.raises(ProviderError, match="endpointMode"):
        load_provider("docker", {"endpointMode": "host"})
