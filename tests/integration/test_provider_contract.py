"""The runtime provider contract: what every provider promises the apply engine, checked
through the `Provider` interface only, against each provider of tests/provider_contract.py
(the in-memory fake, Docker on a real Podman, Kubernetes on a real control plane).

Where providers legitimately differ the promise is the common one: an endpoint is what the
gateway routes to (one per container for Docker, the Service for Kubernetes), so a ready
plugin has between one and `replicas` endpoints, and the route registry holds exactly the
ones `endpoints()` reports."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

import pytest
from provider_contract import PLUGIN, Contract

from plexica_gitops.runtime.provider import (
    Cancelled,
    Endpoint,
    Provider,
    RolloutFailed,
    RolloutSettings,
    WorkloadSpec,
)

SECRET = "s3cr3t-contract-value"
FAST = RolloutSettings(
    ready_probes=1, probe_interval_seconds=0.1, timeout_seconds=2, grace_period_seconds=1
)


def spec_of(contract: Contract, version: str = "1.0.0", **changes: object) -> WorkloadSpec:
    image = contract.images[version]
    number = "1.2.0" if version == "never-ready" else version
    base = WorkloadSpec(
        plugin_id=PLUGIN,
        version=number,
        image=image,
        manifest_hash=f"m-{number}",
        replicas=1,
        cpu="250m",
        memory="128Mi",
        port=8080,
        readiness_path="/health/ready",
        liveness_path="/health/live",
        env_hash="e-1",
        env={"GREETING": "hello", "PLEXICA_TOKEN": SECRET},
        rollout=FAST,
        env_digest="hmac-sha256:" + "ab" * 32,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Routes:
    """An in-memory route registry (keyed by URL, as the store's is) with its history."""

    current: dict[str, Endpoint] = field(default_factory=dict)
    registered: list[Endpoint] = field(default_factory=list)
    fewest: int | None = None  # the fewest endpoints it held after its first change
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, endpoint: Endpoint) -> None:
        with self.lock:
            self.current[endpoint.url] = endpoint
            self.registered.append(endpoint)
            self._note()

    def deregister(self, endpoint: Endpoint) -> None:
        with self.lock:
            self.current.pop(endpoint.url, None)
            self._note()

    def snapshot(self) -> list[Endpoint]:
        with self.lock:
            return list(self.current.values())

    def _note(self) -> None:
        count = len(self.current)
        self.fewest = count if self.fewest is None else min(self.fewest, count)

    def following(self) -> Routes:
        """A registry holding what this one holds now, with a fresh history."""
        return Routes(current=dict(self.current))


class Traffic(threading.Thread):
    """Requests, round robin, to whatever the registry holds, for as long as it runs."""

    def __init__(self, contract: Contract, routes: Routes) -> None:
        super().__init__(daemon=True)
        self.reach = contract.reach
        self.routes = routes
        self.stopping = threading.Event()
        self.failures: list[str] = []
        self.answers = 0

    def run(self) -> None:
        turn = 0
        while self.reach is not None and not self.stopping.is_set():
            endpoints = self.routes.snapshot()
            turn += 1
            if not endpoints:
                self.failures.append("no endpoint registered")
            else:
                self._request(endpoints[turn % len(endpoints)])
            self.stopping.wait(0.01)

    def _request(self, endpoint: Endpoint) -> None:
        assert self.reach is not None
        try:
            self.reach(endpoint)
        except OSError as error:
            if self.routes.current.get(endpoint.url) == endpoint:  # not deregistered since
                self.failures.append(f"{endpoint.url}: {error}")
            return
        self.answers += 1

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(5)


def served(provider: Provider, routes: Routes, spec: WorkloadSpec) -> list[Endpoint]:
    """Check the common endpoint promise for a plugin running `spec`; its endpoints."""
    endpoints = provider.endpoints(spec.plugin_id)
    assert 1 <= len(endpoints) <= spec.replicas, endpoints
    assert {e.version for e in endpoints} == {spec.version}
    assert sorted(routes.snapshot(), key=_url) == sorted(endpoints, key=_url)
    every = provider.endpoints(spec.plugin_id, ready_only=False)
    assert {e.url for e in endpoints} <= {e.url for e in every}
    return endpoints


def assert_reads_back(provider: Provider, spec: WorkloadSpec, *, running: bool = True) -> None:
    workload = provider.observe()[spec.plugin_id]
    assert (workload.image, workload.version) == (spec.image, spec.version)
    assert (workload.manifest_hash, workload.env_hash) == (spec.manifest_hash, spec.env_hash)
    assert workload.env_digest == spec.env_digest
    assert (workload.resources.cpu, workload.resources.memory) == (spec.cpu, spec.memory)
    assert (workload.replicas, workload.running) == (spec.replicas, running)
    assert workload.ready_replicas == (spec.replicas if running else 0)
    assert SECRET not in workload.model_dump_json()


def _url(endpoint: Endpoint) -> str:
    return endpoint.url


# --- the contract --------------------------------------------------------------------------


def test_deploy_serves_the_spec_and_observe_reads_it_back(contract: Contract) -> None:
    provider, routes = contract.provider, Routes()
    spec = spec_of(contract, replicas=2)
    provider.ensure_image(spec.image)

    provider.deploy(spec, routes)

    assert_reads_back(provider, spec)
    endpoints = served(provider, routes, spec)
    if contract.reach is not None:
        assert {contract.reach(e) for e in endpoints} == {"1.0.0"}
    assert SECRET not in repr(endpoints)

    provider.deploy(spec, routes)  # a retry changes nothing
    assert_reads_back(provider, spec)
    assert served(provider, routes, spec) == endpoints


def test_stop_keeps_the_workload_and_start_brings_it_back(contract: Contract) -> None:
    provider, routes = contract.provider, Routes()
    spec = spec_of(contract)
    provider.deploy(replace(spec, running=False), routes)  # a plugin installed disabled

    assert_reads_back(provider, spec, running=False)
    assert provider.endpoints(PLUGIN, ready_only=False) == []
    assert routes.registered == []

    provider.start(spec, routes)
    assert_reads_back(provider, spec)
    served(provider, routes, spec)
    provider.start(spec, routes)  # idempotent
    served(provider, routes, spec)

    provider.stop(PLUGIN, routes, grace_period_seconds=1)
    assert routes.snapshot() == []
    assert_reads_back(provider, spec, running=False)
    assert provider.endpoints(PLUGIN) == provider.endpoints(PLUGIN, ready_only=False) == []
    provider.stop(PLUGIN, routes, grace_period_seconds=1)  # idempotent

    provider.start(spec, routes)
    assert_reads_back(provider, spec)
    served(provider, routes, spec)


def test_a_rolling_update_serves_throughout(contract: Contract) -> None:
    provider, first = contract.provider, Routes()
    spec = spec_of(contract)  # one replica: its replacement must serve before it goes
    provider.deploy(spec, first)
    routes = first.following()
    new = spec_of(contract, "1.1.0")

    with Traffic(contract, routes) as traffic:
        provider.update(new, routes)
        time.sleep(0.1)

    assert_reads_back(provider, new)
    endpoints = served(provider, routes, new)
    assert routes.fewest is not None and routes.fewest >= 1  # never without an endpoint
    assert traffic.failures == []
    if contract.reach is not None:
        assert traffic.answers > 0
        assert {contract.reach(e) for e in endpoints} == {"1.1.0"}


def test_a_version_that_never_gets_ready_is_rolled_back(contract: Contract) -> None:
    provider, first = contract.provider, Routes()
    spec = spec_of(contract)
    provider.deploy(spec, first)
    routes = first.following()

    with Traffic(contract, routes) as traffic, pytest.raises(RolloutFailed) as failed:
        provider.update(spec_of(contract, "never-ready"), routes)

    assert failed.value.rolled_back is True
    assert SECRET not in str(failed.value) + failed.value.hint + failed.value.last_probe
    assert [e for e in routes.registered if e.version != "1.0.0"] == []
    assert routes.fewest is None or routes.fewest >= 1
    assert traffic.failures == []
    assert_reads_back(provider, spec)
    served(provider, routes, spec)


def test_a_fresh_deploy_that_never_gets_ready_leaves_nothing(contract: Contract) -> None:
    provider, routes = contract.provider, Routes()

    with pytest.raises(RolloutFailed) as failed:
        provider.deploy(spec_of(contract, "never-ready"), routes)

    assert failed.value.rolled_back is True
    assert PLUGIN not in provider.observe()
    assert provider.endpoints(PLUGIN, ready_only=False) == []
    assert routes.snapshot() == []


def test_scale_adds_and_retires_replicas_while_serving(contract: Contract) -> None:
    provider, first = contract.provider, Routes()
    provider.deploy(spec_of(contract), first)
    routes = first.following()

    more = spec_of(contract, replicas=3)
    provider.scale(more, routes)
    assert_reads_back(provider, more)
    served(provider, routes, more)

    fewer = spec_of(contract, replicas=1)
    provider.scale(fewer, routes)
    assert_reads_back(provider, fewer)
    served(provider, routes, fewer)
    assert routes.fewest is not None and routes.fewest >= 1


def test_remove_takes_away_one_plugin_only(contract: Contract) -> None:
    provider, routes, others = contract.provider, Routes(), Routes()
    spec = spec_of(contract)
    other = replace(spec, plugin_id="other")
    provider.deploy(spec, routes)
    provider.deploy(other, others)

    provider.remove(PLUGIN, routes)

    assert routes.snapshot() == []
    assert provider.endpoints(PLUGIN, ready_only=False) == []
    assert sorted(provider.observe()) == ["other"]
    assert_reads_back(provider, other)
    served(provider, others, other)
    provider.remove(PLUGIN, routes)  # idempotent
    assert sorted(provider.observe()) == ["other"]


def test_cancelled_work_starts_nothing(contract: Contract) -> None:
    provider = contract.provider
    if type(provider).cancel_on is Provider.cancel_on:
        pytest.skip(f"{provider.name}: no cancel_on (optional: the apply's deadline stops it)")
    cancelled = threading.Event()
    provider.cancel_on(cancelled)
    cancelled.set()

    with pytest.raises(Cancelled):
        provider.deploy(spec_of(contract), Routes())

    assert PLUGIN not in provider.observe()
