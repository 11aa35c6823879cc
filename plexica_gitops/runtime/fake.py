"""An in-memory runtime provider, shipped with the library for tests of the planner, the
apply engine and third-party code (as httpx ships a mock transport).

`FakeProvider` keeps the promises of `Provider` (tests/integration/test_provider_contract.py
runs the same suite against it as against the real providers): replicas are created, become ready,
are registered, stopped, rolled (one at a time, or blue-green), rolled back when the new
ones never get ready, scaled and removed, and `observe` reads them back. Nothing waits: a
replica is ready the moment it starts, unless its image is in `never_ready`.

What a test can do beyond the interface:
- `never_ready` / `unpullable`: images whose replicas never answer readiness, or that
  `ensure_image` cannot pull;
- `fail_next(method, error)`: the next call of that method raises `error` before doing
  anything (a transient engine error, a lost connection);
- `answer(url)`: the version a request to a registered URL would get (None: nothing
  serves there), for tests that send traffic through a rollout;
- `crash(plugin_id)`: every replica of the plugin stops by itself, still registered (what
  a node loss or an OOM kill leaves: stale endpoints);
- `calls`: every interface call so far, as (method, plugin id), in order."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.live.model import LiveReplica, LiveResources, LiveWorkload
from plexica_gitops.runtime.provider import (
    Cancelled,
    Endpoint,
    ImagePullError,
    Provider,
    ProviderError,
    RolloutFailed,
    RouteRegistry,
    WorkloadSpec,
)

MIXED = "mixed"  # observed env digest of replicas that run with different env values


@dataclass(frozen=True, slots=True)
class FakeReplica:
    """One replica: the spec that built it (env values stay in memory, as in a runtime)."""

    name: str
    spec: WorkloadSpec
    index: int
    running: bool
    ready: bool

    @property
    def url(self) -> str:
        return f"http://{self.name}.fake:{self.spec.port}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.url, self.spec.version)

    @property
    def serving(self) -> bool:
        return self.running and self.ready

    def matches(self, spec: WorkloadSpec) -> bool:
        return _build_key(self.spec) == _build_key(spec)


class FakeProvider(Provider):
    """The `fake` runtime provider: replicas in memory (see the module docstring)."""

    name = "fake"

    def __init__(self, *, never_ready: Iterable[str] = (), unpullable: Iterable[str] = ()) -> None:
        self.never_ready = set(never_ready)
        self.unpullable = set(unpullable)
        self.images: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self._replicas: dict[str, list[FakeReplica]] = {}
        self._failures: dict[str, list[ProviderError]] = {}
        self._serial = itertools.count(1)
        self._lock = threading.RLock()  # apply runs steps of several plugins at once
        self._cancelled = threading.Event()

    # --- test controls ---------------------------------------------------------------------

    def fail_next(self, method: str, error: ProviderError) -> None:
        """The next call of `method` (e.g. "deploy") raises `error` and changes nothing."""
        with self._lock:
            self._failures.setdefault(method, []).append(error)

    def crash(self, plugin_id: str) -> None:
        """Every replica of the plugin stops by itself; the registry is not told."""
        with self._lock:
            self._set(plugin_id, [replace(r, running=False) for r in self._of(plugin_id)])

    def answer(self, url: str) -> str | None:
        """The version the replica at `url` serves, None when nothing serves there (what a
        request the gateway routes to that URL would get)."""
        with self._lock:
            for group in self._replicas.values():
                for replica in group:
                    if replica.url == url and replica.serving:
                        return replica.spec.version
            return None

    # --- the Provider interface ----------------------------------------------------------

    def observe(self) -> dict[str, LiveWorkload]:
        with self._lock:
            self._enter("observe", "", work=False)
            return {pid: _workload(group) for pid, group in sorted(self._replicas.items())}

    def ensure_image(self, image: str) -> None:
        with self._lock:
            self._enter("ensure_image", image, work=False)
            if image in self.unpullable:
                raise ImagePullError(
                    f"cannot pull image {image}: not found in the fake registry",
                    "build the image and push it to a registry the engine can reach",
                )
            self.images.add(image)

    def deploy(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        with self._lock:
            self._enter("deploy", spec.plugin_id)
            if self._of(spec.plugin_id):
                self._update(spec, routes)  # a retry: bring what is there to the spec
            elif spec.running:
                self._bring_up(spec, routes, spec.replicas)
            else:
                self._add(spec, spec.replicas, running=False)

    def start(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        with self._lock:
            self._enter("start", spec.plugin_id)
            self._start(spec, routes)

    def stop(self, plugin_id: str, routes: RouteRegistry, grace_period_seconds: float) -> None:
        with self._lock:
            self._enter("stop", plugin_id)
            self._retire(self._of(plugin_id), routes, remove=False)

    def update(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        with self._lock:
            self._enter("update", spec.plugin_id)
            self._update(spec, routes)

    def scale(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        with self._lock:
            self._enter("scale", spec.plugin_id)
            current = self._of(spec.plugin_id)
            if any(not r.matches(spec) for r in current):
                self._update(spec, routes)  # leftovers of another build are replaced
                return
            surplus = _ranked(current)[spec.replicas :]
            self._retire(surplus, routes, remove=True)
            missing = spec.replicas - len(current)
            if missing > 0 and spec.running:
                self._bring_up(spec, routes, missing)
            elif missing > 0:
                self._add(spec, missing, running=False)

    def remove(self, plugin_id: str, routes: RouteRegistry) -> None:
        with self._lock:
            self._enter("remove", plugin_id)
            self._retire(self._of(plugin_id), routes, remove=True)

    def endpoints(self, plugin_id: str, *, ready_only: bool = True) -> list[Endpoint]:
        with self._lock:
            self._enter("endpoints", plugin_id, work=False)
            return [
                r.endpoint for r in self._of(plugin_id) if r.running and (r.ready or not ready_only)
            ]

    def cancel_on(self, cancelled: threading.Event) -> None:
        self._cancelled = cancelled

    # --- rollouts ----------------------------------------------------------------------------

    def _start(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Keep the serving replicas, restart stopped ones, replace unready ones, add the
        missing, retire extras; register what serves. Failures are left for a retry."""
        ranked = _ranked(self._of(spec.plugin_id))
        keep, extras = ranked[: spec.replicas], ranked[spec.replicas :]
        self._retire(extras, routes, remove=True)
        unready = [r for r in keep if r.running and not r.ready]
        self._discard(unready, routes)
        for replica in keep:
            if not replica.running:
                self._put(self._run(replica))
        self._add(spec, spec.replicas - len(keep) + len(unready), running=True)
        current = self._of(spec.plugin_id)
        self._register(routes, current)
        failed = [r for r in current if not r.serving]
        if failed:
            raise _rollout_failed(failed[0], rolled_back=False)

    def _update(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        olds = self._of(spec.plugin_id)
        if olds and len(olds) == spec.replicas and all(r.matches(spec) for r in olds):
            if spec.running:
                self._start(spec, routes)
            else:
                self._retire(olds, routes, remove=False)
        elif not spec.running:
            self._add(spec, spec.replicas, running=False)
            self._retire(olds, routes, remove=True)
        elif spec.strategy is RolloutStrategy.BLUE_GREEN:
            self._bring_up(spec, routes, spec.replicas)
            self._retire(olds, routes, remove=True)
        else:
            self._rolling(spec, routes, olds)

    def _rolling(self, spec: WorkloadSpec, routes: RouteRegistry, olds: list[FakeReplica]) -> None:
        """One new replica at a time, registered once ready, then one old one deregistered
        and stopped; a new one that never gets ready: the stopped old ones start again and
        are registered, then every new one goes (a ready endpoint is always registered)."""
        serving = sorted((r for r in olds if r.running), key=lambda r: r.index)
        idle = [r for r in olds if not r.running]
        fresh: list[FakeReplica] = []
        retired: list[FakeReplica] = []
        for index in range(spec.replicas):
            replica = self._create(spec, index, running=True)
            fresh.append(replica)
            if not replica.ready:
                for old in retired:
                    self._put(self._run(old))
                self._register(routes, self._named(retired))
                self._discard(fresh, routes)
                raise _rollout_failed(replica, rolled_back=True)
            self._register(routes, [replica])
            if serving:
                old = serving.pop(0)
                self._retire([old], routes, remove=False)
                retired.append(old)
        self._retire(serving, routes, remove=True)
        self._discard(self._named(retired) + idle, routes)

    def _bring_up(self, spec: WorkloadSpec, routes: RouteRegistry, count: int) -> None:
        """`count` new replicas, registered once all are ready; otherwise all removed."""
        base = len(self._of(spec.plugin_id))
        started = [self._create(spec, base + i, running=True) for i in range(count)]
        failed = [r for r in started if not r.ready]
        if failed:
            self._discard(started, routes)
            raise _rollout_failed(failed[0], rolled_back=True)
        self._register(routes, started)

    # --- replicas ----------------------------------------------------------------------------

    def _add(self, spec: WorkloadSpec, count: int, *, running: bool) -> list[FakeReplica]:
        return [self._create(spec, index, running=running) for index in range(count)]

    def _create(self, spec: WorkloadSpec, index: int, *, running: bool) -> FakeReplica:
        self._check_cancelled()
        name = f"plexica-{spec.plugin_id}-{next(self._serial)}"
        replica = FakeReplica(name, spec, index, running=False, ready=False)
        replica = self._run(replica) if running else replica
        self._replicas.setdefault(spec.plugin_id, []).append(replica)
        return replica

    def _run(self, replica: FakeReplica) -> FakeReplica:
        self._check_cancelled()
        return replace(replica, running=True, ready=replica.spec.image not in self.never_ready)

    def _retire(self, replicas: list[FakeReplica], routes: RouteRegistry, *, remove: bool) -> None:
        """Deregister, then stop (and remove)."""
        for replica in replicas:
            routes.deregister(replica.endpoint)
            if remove:
                self._drop(replica)
            else:
                self._put(replace(replica, running=False, ready=False))

    def _discard(self, replicas: list[FakeReplica], routes: RouteRegistry) -> None:
        for replica in replicas:
            routes.deregister(replica.endpoint)
            self._drop(replica)

    def _register(self, routes: RouteRegistry, replicas: Iterable[FakeReplica]) -> None:
        for replica in replicas:
            if replica.serving:
                routes.register(replica.endpoint)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _enter(self, method: str, subject: str, *, work: bool = True) -> None:
        self.calls.append((method, subject))
        if work:
            self._check_cancelled()
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled(
                "the runtime work was cancelled: this apply lost its lock",
                "nothing more is started; the next apply continues from what runs",
            )

    def _of(self, plugin_id: str) -> list[FakeReplica]:
        return list(self._replicas.get(plugin_id, ()))

    def _named(self, replicas: list[FakeReplica]) -> list[FakeReplica]:
        """The current state of these replicas (they may have been restarted since)."""
        names = {r.name for r in replicas}
        return [r for group in self._replicas.values() for r in group if r.name in names]

    def _set(self, plugin_id: str, replicas: list[FakeReplica]) -> None:
        if replicas:
            self._replicas[plugin_id] = replicas
        else:
            self._replicas.pop(plugin_id, None)

    def _put(self, replica: FakeReplica) -> None:
        pid = replica.spec.plugin_id
        self._set(pid, [replica if r.name == replica.name else r for r in self._of(pid)])

    def _drop(self, replica: FakeReplica) -> None:
        pid = replica.spec.plugin_id
        self._set(pid, [r for r in self._of(pid) if r.name != replica.name])


def _build_key(spec: WorkloadSpec) -> tuple[object, ...]:
    """What tells replicas of one spec from another's (env values by their hashes)."""
    return (
        spec.version,
        spec.image,
        spec.manifest_hash,
        spec.env_hash,
        spec.env_digest,
        spec.replace_id,
        spec.cpu,
        spec.memory,
        spec.port,
        spec.readiness_path,
        spec.liveness_path,
    )


def _ranked(replicas: list[FakeReplica]) -> list[FakeReplica]:
    """Most useful first: serving, then running, then the lowest replica number."""
    return sorted(replicas, key=lambda r: (not r.serving, not r.running, r.index))


def _workload(group: list[FakeReplica]) -> LiveWorkload:
    """Counts cover every replica; image, version and hashes are the most common build's."""
    builds = Counter(_build_key(r.spec) for r in group)
    top = max(builds, key=lambda key: builds[key])
    spec = next(r.spec for r in group if _build_key(r.spec) == top)
    digests = {r.spec.env_digest for r in group}
    return LiveWorkload(
        image=spec.image,
        version=spec.version,
        manifest_hash=spec.manifest_hash,
        replicas=len(group),
        ready_replicas=sum(r.serving for r in group),
        running=any(r.running for r in group),
        resources=LiveResources(cpu=spec.cpu, memory=spec.memory),
        env_hash=spec.env_hash,
        env_digest=digests.pop() if len(digests) == 1 else MIXED,
        policy_hash=spec.policy_hash,
        instances=tuple(
            LiveReplica(
                name=r.name,
                version=r.spec.version,
                image=r.spec.image,
                manifest_hash=r.spec.manifest_hash,
                env_hash=r.spec.env_hash,
                running=r.running,
                ready=r.serving,
                url=r.url,
            )
            for r in sorted(group, key=lambda r: r.name)
        ),
    )


def _rollout_failed(replica: FakeReplica, *, rolled_back: bool) -> RolloutFailed:
    spec = replica.spec
    back = "the previous replicas are serving again" if rolled_back else "not fully serving"
    return RolloutFailed(
        f"{spec.plugin_id} {spec.version}: replica {replica.name} was not ready "
        f"(image {spec.image} never answers {spec.readiness_path}); {back}",
        f"check that image {spec.image} answers {spec.readiness_path} on port {spec.port}",
        rolled_back=rolled_back,
        last_probe="never ready",
    )
