"""Plugin workloads as containers on a Docker-API engine (Docker, or Podman's API service).

One replica is one container. Containers are found by their labels only (managed-by,
scope, plugin), never by name; names (`plexica-<plugin>-<generation>-<n>`) are for people.
Each container carries what the reconciler needs to read it back without the spec:

    io.plexica.managed-by=plexica-gitops   io.plexica.scope=<scope>
    io.plexica.plugin, .version, .image, .manifest-hash, .env-hash
    io.plexica.env-digest                  keyed HMAC of the env values (never the values)
    io.plexica.replace-id                  the replacement that made it (`apply --replace`)
    io.plexica.revision                    the desired revision of the apply that made it
                                           (``<ref>@sha1:<hex>``; never compared)
    io.plexica.cpu, .memory                the desired quantities, as written in the manifest
    io.plexica.port, .readiness-path, .liveness-path, .generation, .replica

Env values go to the engine as the container's environment and nowhere else (no label, no
log line, no message: engine messages are scrubbed of them before they are raised).

Containers run with least privilege: not privileged, every capability dropped,
no-new-privileges, read-only root with a small tmpfs at /tmp, uid/gid 65534, an init
process (so SIGTERM reaches the plugin and a stop takes a fraction of a second), a pids
limit, and the restart policy of the settings.

Readiness is probed over HTTP by the provider itself (`plexica_gitops.runtime.health`): the
engine's HEALTHCHECK does not run everywhere (not under Podman without systemd).

Endpoint modes: `loopback` (the default, what tests and the demo use) publishes the plugin
port on 127.0.0.1 with a free host port picked by the engine, the endpoint being
`http://127.0.0.1:<host port>`; the port survives stop/start, so a stopped replica comes
back at the same address. `network` publishes nothing: the endpoint is
`http://<container name>:<port>` on the shared network, which the gateway (and the
reconciler, to probe) must be attached to.

The network of the settings is created when missing (`podman network create` works on
Podman 4.3 with netavark); if that fails in loopback mode, containers go on the engine's
default network with a warning, since loopback endpoints do not need it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors

from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.live.model import LiveReplica, LiveResources, LiveWorkload
from plexica_gitops.runtime.health import ProbeResult, probe, wait_ready
from plexica_gitops.runtime.provider import (
    MANAGED_BY,
    Cancelled,
    Endpoint,
    ImagePullError,
    Provider,
    ProviderError,
    RolloutFailed,
    RouteRegistry,
    WorkloadSpec,
)
from plexica_gitops_docker.settings import check_settings
from plexica_gitops_docker.units import (
    format_cpu,
    format_memory,
    parse_cpu,
    parse_memory,
    same_cpu,
    same_memory,
)

log = logging.getLogger(__name__)

LABEL_MANAGED_BY = "io.plexica.managed-by"
LABEL_SCOPE = "io.plexica.scope"
LABEL_PLUGIN = "io.plexica.plugin"
LABEL_VERSION = "io.plexica.version"
LABEL_IMAGE = "io.plexica.image"
LABEL_MANIFEST_HASH = "io.plexica.manifest-hash"
LABEL_ENV_HASH = "io.plexica.env-hash"
LABEL_ENV_DIGEST = "io.plexica.env-digest"
LABEL_REPLACE_ID = "io.plexica.replace-id"
LABEL_REVISION = "io.plexica.revision"
MIXED = "mixed"  # observed env digest of replicas that run with different env values
LABEL_CPU = "io.plexica.cpu"
LABEL_MEMORY = "io.plexica.memory"
LABEL_PORT = "io.plexica.port"
LABEL_READINESS = "io.plexica.readiness-path"
LABEL_LIVENESS = "io.plexica.liveness-path"
LABEL_GENERATION = "io.plexica.generation"
LABEL_REPLICA = "io.plexica.replica"

ENGINE_HINT = (
    "start the container engine (dockerd, or `podman system service`) and set DOCKER_HOST "
    "(or spec.runtime.baseUrl in platform.yaml) to its socket"
)
PULL_HINT = (
    "build the image and push it to a registry the engine can reach (or build it on the "
    "engine's host), and check the reference in manifest.runtime.image"
)
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class DockerSettings:
    """platform.yaml `spec.runtime` for `provider: docker` (camelCase keys there)."""

    base_url: str | None = None  # None: DOCKER_HOST (docker.from_env)
    network: str | None = None  # None: the engine's default network
    endpoint_mode: str = "loopback"
    scope: str = "default"  # label value separating independent reconcilers on one engine
    restart_policy: str = "unless-stopped"
    drain_seconds: float = 1.0  # between deregistering a replica and stopping it
    probe_timeout_seconds: float = 2.0  # one readiness probe in observe/endpoints
    stop_timeout_seconds: float = 10.0  # SIGTERM to SIGKILL when removing a plugin
    pids_limit: int = 256
    tmpfs_size: str = "16m"


_SETTING_NAMES = {
    "baseUrl": "base_url",
    "network": "network",
    "endpointMode": "endpoint_mode",
    "scope": "scope",
    "restartPolicy": "restart_policy",
    "drainSeconds": "drain_seconds",
    "probeTimeoutSeconds": "probe_timeout_seconds",
    "stopTimeoutSeconds": "stop_timeout_seconds",
    "pidsLimit": "pids_limit",
    "tmpfsSize": "tmpfs_size",
}


def parse_settings(settings: Mapping[str, Any]) -> DockerSettings:
    """DockerSettings from platform.yaml's runtime settings; ProviderError when unusable
    (the same checks `validate` reports as PGV514)."""
    problems = check_settings(settings)
    if problems:
        raise ProviderError(problems[0].message, problems[0].hint)
    values = {_SETTING_NAMES[k]: v for k, v in settings.items() if k in _SETTING_NAMES}
    return DockerSettings(**values)


@dataclass(frozen=True, slots=True)
class _Replica:
    """One container as read back from the engine."""

    container: Any = field(repr=False)
    name: str
    labels: Mapping[str, str] = field(repr=False)
    running: bool
    url: str | None  # None: no address yet (network mode before the first start)
    created: str

    @property
    def version(self) -> str:
        return self.labels.get(LABEL_VERSION, "")

    @property
    def index(self) -> int:
        value = self.labels.get(LABEL_REPLICA, "")
        return int(value) if value.isdigit() else 0

    @property
    def readiness_url(self) -> str | None:
        path = self.labels.get(LABEL_READINESS, "/")
        return f"{self.url}{path}" if self.url else None

    @property
    def endpoint(self) -> Endpoint | None:
        return Endpoint(self.name, self.url, self.version) if self.url else None

    def matches(self, spec: WorkloadSpec) -> bool:
        """Built from this spec (by everything the spec labels; env values by their hash)."""
        want = _spec_labels(spec)
        if any(self.labels.get(key) != value for key, value in want.items()):
            return False
        # A limit the spec no longer sets must not be on the container either.
        return all(key in want or key not in self.labels for key in (LABEL_CPU, LABEL_MEMORY))


class _NotReady(Exception):
    def __init__(self, replica: _Replica, result: ProbeResult) -> None:
        super().__init__(result.detail)
        self.replica = replica
        self.result = result


class DockerProvider(Provider):
    """The `docker` runtime provider. Every method is idempotent and may be retried."""

    name = "docker"

    def __init__(self, settings: DockerSettings | None = None, *, client: Any = None) -> None:
        """`client`: a `docker.DockerClient` to use instead of connecting lazily."""
        self.settings = settings or DockerSettings()
        self._docker: Any = client
        self._network_ready = False
        self._network: str | None = self.settings.network
        self._network_lock = threading.Lock()  # apply runs steps of several plugins at once
        self._cancelled = threading.Event()  # see cancel_on()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> DockerProvider:
        """Build from platform.yaml's `spec.runtime` (without `provider`). Does not connect:
        the engine is first reached by the first call that needs it."""
        return cls(parse_settings(settings))

    # --- the Provider interface ----------------------------------------------------------

    def observe(self) -> dict[str, LiveWorkload]:
        """Workloads by plugin id, every container in `instances` (whatever version or
        spec built it: a rollout interrupted by a crash leaves two). `replicas`, `running`,
        `ready_replicas` and `resources` cover all of them; `image`, `version` and the
        hashes are those of the build with the most containers (the newest container
        breaking ties). Readiness is one probe per running replica, all probed at once
        with a short timeout."""
        by_plugin: dict[str, list[_Replica]] = {}
        for replica in self._replicas():
            by_plugin.setdefault(replica.labels.get(LABEL_PLUGIN, ""), []).append(replica)
        by_plugin.pop("", None)
        running = [r for group in by_plugin.values() for r in group if r.running]
        answers = self._probe_now(running)
        return {pid: self._workload(group, answers) for pid, group in by_plugin.items()}

    def ensure_image(self, image: str) -> None:
        """Present locally: nothing to do. Otherwise pull it; ImagePullError with the
        engine's own message when that fails."""
        with self._engine_errors(f"looking up image {image}"):
            try:
                self._client().images.get(image)
                return
            except docker.errors.ImageNotFound:
                pass
        problem = self._pull(image)
        if problem is not None:
            raise ImagePullError(f"cannot pull image {image}: {problem}", PULL_HINT)

    def deploy(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Create `spec.replicas` containers. Running: start them, wait until all are
        ready, register them; any never ready: remove all of them and raise RolloutFailed.
        Not running: create them stopped. Containers already there (a retry, or a run that
        was interrupted) are brought to the spec by `start` or `update`."""
        existing = self._replicas(spec.plugin_id)
        if existing:
            self.update(spec, routes)
            return
        self._ensure_network()
        if spec.running:
            self._bring_up(spec, routes, spec.replicas)
        else:
            self._create_many(spec, spec.replicas)

    def start(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Start stopped replicas, recreate missing ones, replace running ones that do not
        answer readiness, retire extras; wait until ready and register. Replicas that end
        up ready are registered even when others fail (RolloutFailed, rolled_back=False:
        the failing ones are left running, unregistered, for the next attempt)."""
        self._ensure_network()
        replicas = self._replicas(spec.plugin_id)
        answers = self._probe_now([r for r in replicas if r.running])
        ranked = sorted(replicas, key=lambda r: _rank(r, answers))
        keep, extras = ranked[: spec.replicas], ranked[spec.replicas :]
        self._retire(extras, routes, spec.rollout.grace_period_seconds, remove=True)
        ready = [r for r in keep if _ok(answers, r)]
        unready = [r for r in keep if r.running and not _ok(answers, r)]
        stopped = [r for r in keep if not r.running]
        self._discard(unready, routes)
        restarted = [self._restart(r, spec, routes) for r in stopped]
        generation = secrets.token_hex(3)
        missing = range(spec.replicas - len(ready) - len(restarted))
        fresh = [self._launch(spec, generation, index) for index in missing]
        pending = restarted + fresh
        results = self._await_ready(pending, spec)
        good = ready + [r for r in pending if results[r.name].ok]
        self._register(routes, good)
        failed = [r for r in pending if not results[r.name].ok]
        if failed:
            raise self._rollout_failed(spec, failed[0], results[failed[0].name], False)

    def stop(self, plugin_id: str, routes: RouteRegistry, grace_period_seconds: float) -> None:
        """Deregister every replica, let the gateway drain (`drainSeconds`), then stop
        them all at once (SIGTERM, SIGKILL after the grace period). Containers are kept."""
        replicas = self._replicas(plugin_id)
        self._retire(replicas, routes, grace_period_seconds, remove=False)

    def update(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Replace every container of the plugin with ones built from `spec`.

        Rolling: for each replica, start a new one, wait for `ready_probes` consecutive
        ready answers, register it, then deregister one old replica and stop it; old
        containers are removed only once every new one is ready. If a new one never gets
        ready, the stopped old ones are started again and re-registered once ready, and
        then every new one is deregistered and removed: a ready endpoint is registered at
        every moment. Blue-green: start all new ones, wait until all are ready, register
        them, then deregister and retire all old ones; failure removes the new ones and the
        old ones never stopped serving.

        A plugin that is not running (disabled) has its stopped containers replaced by
        stopped new ones. Containers that already match `spec` are left alone (`start`
        makes sure they run, are ready and registered)."""
        olds = self._replicas(spec.plugin_id)
        if olds and len(olds) == spec.replicas and all(r.matches(spec) for r in olds):
            if spec.running:
                self.start(spec, routes)
            else:
                self._retire(olds, routes, spec.rollout.grace_period_seconds, remove=False)
            return
        self._ensure_network()
        if not spec.running:
            self._create_many(spec, spec.replicas)
            self._retire(olds, routes, spec.rollout.grace_period_seconds, remove=True)
        elif spec.strategy is RolloutStrategy.BLUE_GREEN:
            self._blue_green(spec, routes, olds)
        else:
            self._rolling(spec, routes, olds)

    def scale(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Add replicas built from `spec` (started, ready and registered when
        `spec.running`) or retire the surplus, least useful first (stopped, then unready,
        then the highest replica number)."""
        self._ensure_network()
        replicas = self._replicas(spec.plugin_id)
        if any(not r.matches(spec) for r in replicas):
            # Leftovers of another version (a crash mid-rollout): counting them as replicas
            # of this spec would keep them for good. Replace them properly.
            self.update(spec, routes)
            return
        if len(replicas) > spec.replicas:
            answers = self._probe_now([r for r in replicas if r.running])
            ranked = sorted(replicas, key=lambda r: _rank(r, answers))
            surplus = ranked[spec.replicas :]
            self._retire(surplus, routes, spec.rollout.grace_period_seconds, remove=True)
            return
        missing = spec.replicas - len(replicas)
        if missing > 0 and spec.running:
            self._bring_up(spec, routes, missing)
        elif missing > 0:
            self._create_many(spec, missing)

    def remove(self, plugin_id: str, routes: RouteRegistry) -> None:
        """Deregister every replica, drain, stop (`stopTimeoutSeconds`) and remove."""
        replicas = self._replicas(plugin_id)
        self._retire(replicas, routes, self.settings.stop_timeout_seconds, remove=True)

    def endpoints(self, plugin_id: str, *, ready_only: bool = True) -> list[Endpoint]:
        """Running replicas answering their readiness probe now (one probe each); every
        running replica with `ready_only=False`."""
        running = [r for r in self._replicas(plugin_id) if r.running]
        if not ready_only:
            return [r.endpoint for r in running if r.endpoint is not None]
        answers = self._probe_now(running)
        return [r.endpoint for r in running if _ok(answers, r) and r.endpoint is not None]

    def cancel_on(self, cancelled: threading.Event) -> None:
        """Checked before every container is created or started, and by every wait for
        readiness: the replicas being waited for never served, so they are removed."""
        self._cancelled = cancelled

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled(
                "the runtime work was cancelled: this apply lost its lock",
                "nothing more is started; the next apply continues from what runs",
            )

    def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None

    # --- rollouts ------------------------------------------------------------------------

    def _bring_up(self, spec: WorkloadSpec, routes: RouteRegistry, count: int) -> None:
        """Start `count` new replicas, wait until all are ready and register them;
        otherwise remove them all and raise RolloutFailed (rolled back: nothing else
        changed)."""
        generation = secrets.token_hex(3)
        started: list[_Replica] = []
        try:
            for index in range(count):
                started.append(self._launch(spec, generation, index))
            results = self._await_ready(started, spec)
        except BaseException:
            self._discard_quietly(started, routes)
            raise
        failed = [r for r in started if not results[r.name].ok]
        if failed:
            self._discard(started, routes)
            raise self._rollout_failed(spec, failed[0], results[failed[0].name], True)
        self._register(routes, started)

    def _blue_green(self, spec: WorkloadSpec, routes: RouteRegistry, olds: list[_Replica]) -> None:
        self._bring_up(spec, routes, spec.replicas)
        self._retire(olds, routes, spec.rollout.grace_period_seconds, remove=True)

    def _rolling(self, spec: WorkloadSpec, routes: RouteRegistry, olds: list[_Replica]) -> None:
        """One replica at a time: the new one serves before an old one is retired. The old
        one's drain and stop run in the background while the next new replica starts, so
        the drain period is not paid once per replica."""
        serving = sorted((r for r in olds if r.running), key=lambda r: r.index)
        idle = [r for r in olds if not r.running]
        generation = secrets.token_hex(3)
        fresh: list[_Replica] = []
        retired: list[_Replica] = []
        grace = spec.rollout.grace_period_seconds
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="retire") as background:
            retiring: list[Future[None]] = []
            try:
                for index in range(spec.replicas):
                    replica = self._launch(spec, generation, index)
                    fresh.append(replica)
                    result = self._await_ready([replica], spec)[replica.name]
                    if not result.ok:
                        raise _NotReady(replica, result)
                    self._register(routes, [replica])
                    if serving:
                        old = serving.pop(0)
                        self._deregister(routes, [old])
                        retiring.append(
                            background.submit(self._retire, [old], routes, grace, remove=False)
                        )
                        retired.append(old)
            except _NotReady as failure:
                _settle(retiring)  # an old replica must be stopped before it can restart
                restored = self._roll_back(
                    spec, routes, fresh, retired, others_serve=bool(serving), failed=fresh[-1]
                )
                raise self._rollout_failed(
                    spec, failure.replica, failure.result, restored
                ) from None
            except BaseException:
                _settle(retiring)
                with contextlib.suppress(Exception):
                    self._roll_back(
                        spec, routes, fresh, retired, others_serve=bool(serving), failed=None
                    )
                raise
            _settle(retiring)
        # Every new replica is ready: the surplus old ones (scale-down) are retired, and the
        # ones already drained and stopped are removed. A stopped one may still be in the
        # registry (stopped by hand, or by a crash mid-rollout): it is deregistered.
        self._retire(serving, routes, grace, remove=True)
        self._discard(retired, None)
        self._discard(idle, routes)

    def _deregister(self, routes: RouteRegistry, replicas: Iterable[_Replica]) -> None:
        for replica in replicas:
            if replica.endpoint is not None:
                routes.deregister(replica.endpoint)
                crash_point("deregistered")

    def _roll_back(
        self,
        spec: WorkloadSpec,
        routes: RouteRegistry,
        fresh: list[_Replica],
        retired: list[_Replica],
        *,
        others_serve: bool,
        failed: _Replica | None,
    ) -> bool:
        """Undo a rolling update that failed at `failed` (None: the failure was not a
        replica's, e.g. one could not be created); whether every retired old replica
        serves again. While old replicas not yet replaced still serve, the new ones go
        first: that frees their host ports, which the engine may have handed out again
        after the retired ones stopped. Otherwise the retired ones come back first; if they
        cannot, the new ones that are ready and registered keep serving (only the failed
        one goes), so the plugin is never left without an endpoint."""
        if others_serve:
            self._discard(fresh, routes)
            return self._restore(spec, routes, retired)
        restored = self._restore(spec, routes, retired)
        if restored:
            self._discard(fresh, routes)
        elif failed is not None:
            self._discard([failed], routes)
        return restored

    def _restore(self, spec: WorkloadSpec, routes: RouteRegistry, retired: list[_Replica]) -> bool:
        """Start old replicas retired during a failed rolling update again and register
        them once ready. Whether all of them are serving again."""
        restarted: list[_Replica] = []
        for replica in retired:
            try:
                restarted.append(self._start(replica))
            except ProviderError as error:
                log.warning("old replica %s did not start again: %s", replica.name, error)
        results = self._await_ready(restarted, spec)
        self._register(routes, [r for r in restarted if results[r.name].ok])
        return len(restarted) == len(retired) and all(r.ok for r in results.values())

    def _rollout_failed(
        self, spec: WorkloadSpec, replica: _Replica, result: ProbeResult, rolled_back: bool
    ) -> RolloutFailed:
        settings = spec.rollout
        # A plugin's error page may quote its own configuration: never let an env value
        # through into the error, the journal or the logs.
        answer = _scrub(result.detail, list(spec.env.values()))
        back = (
            "the previous replicas are serving again"
            if rolled_back
            else "the plugin is not fully serving"
        )
        return RolloutFailed(
            f"{spec.plugin_id} {spec.version}: replica {replica.name} was not ready within "
            f"{settings.timeout_seconds:g} s ({settings.ready_probes} ready answers in a row "
            f"from {spec.readiness_path} needed); last answer: {answer}; {back}",
            f"check that image {spec.image} answers {spec.readiness_path} on port {spec.port} "
            "with 2xx once started (its logs tell why not), or raise rollout.timeoutSeconds",
            rolled_back=rolled_back,
            last_probe=answer,
        )

    # --- replicas --------------------------------------------------------------------------

    def _replicas(self, plugin_id: str | None = None) -> list[_Replica]:
        filters = [f"{LABEL_MANAGED_BY}={MANAGED_BY}", f"{LABEL_SCOPE}={self.settings.scope}"]
        if plugin_id is not None:
            filters.append(f"{LABEL_PLUGIN}={plugin_id}")
        with self._engine_errors("listing containers"):
            containers = self._list_containers({"label": filters})
        found = [self._replica(c) for c in containers]
        # The label filter is the engine's; checking again costs nothing and guarantees
        # that a container this provider did not create is never touched.
        wanted = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SCOPE: self.settings.scope}
        if plugin_id is not None:
            wanted[LABEL_PLUGIN] = plugin_id
        mine = [r for r in found if all(r.labels.get(k) == v for k, v in wanted.items())]
        return sorted(mine, key=lambda r: (r.labels.get(LABEL_PLUGIN, ""), r.index, r.created))

    def _list_containers(self, filters: dict[str, Any]) -> list[Any]:
        """The SDK skips a container removed between listing and inspecting it when the
        engine says 404; Podman answers 500 "does not exist in database" for one removed by
        another process (a second apply or reconcile replica in the middle of a rollout),
        so the listing is taken again."""
        listing = self._client().containers.list
        for attempt in range(1, LISTING_ATTEMPTS):
            try:
                return list(listing(all=True, filters=filters, ignore_removed=True))
            except docker.errors.APIError as error:
                if not _removed_meanwhile(error):
                    raise
                time.sleep(0.05 * attempt)
        return list(listing(all=True, filters=filters, ignore_removed=True))

    def _replica(self, container: Any) -> _Replica:
        attrs = container.attrs
        labels: dict[str, str] = dict((attrs.get("Config") or {}).get("Labels") or {})
        return _Replica(
            container=container,
            name=str(container.name),
            labels=labels,
            running=bool((attrs.get("State") or {}).get("Running")),
            url=self._url(container.name, attrs, labels),
            created=str(attrs.get("Created", "")),
        )

    def _url(self, name: str, attrs: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
        port = labels.get(LABEL_PORT, "")
        if self.settings.endpoint_mode == "network":
            return f"http://{name}:{port}"
        key = f"{port}/tcp"
        for section, source in (("NetworkSettings", "Ports"), ("HostConfig", "PortBindings")):
            bindings = ((attrs.get(section) or {}).get(source) or {}).get(key) or []
            for binding in bindings:
                if binding.get("HostPort"):
                    return f"http://127.0.0.1:{binding['HostPort']}"
        return None

    def _create_many(self, spec: WorkloadSpec, count: int) -> list[_Replica]:
        generation = secrets.token_hex(3)
        created: list[_Replica] = []
        try:
            for index in range(count):
                created.append(self._create(spec, generation, index))
        except BaseException:
            self._discard_quietly(created, None)
            raise
        return created

    def _create(self, spec: WorkloadSpec, generation: str, index: int) -> _Replica:
        self._check_cancelled()
        name = f"plexica-{spec.plugin_id}-{generation}-{index}"
        labels = {**_spec_labels(spec), LABEL_SCOPE: self.settings.scope}
        labels.update({LABEL_GENERATION: generation, LABEL_REPLICA: str(index)})
        if spec.revision:  # not in _spec_labels: which commit made it is no reason to replace
            labels[LABEL_REVISION] = spec.revision
        options: dict[str, Any] = {
            "name": name,
            "labels": labels,
            "environment": dict(spec.env),
            "detach": True,
            **self._confinement(),
            **self._limits(spec),
        }
        if self.settings.endpoint_mode == "loopback":
            options["ports"] = {f"{spec.port}/tcp": ("127.0.0.1", None)}
        if self._network:
            options["network"] = self._network
        secret_values = list(spec.env.values())
        try:
            with self._engine_errors(f"creating container {name}", secret_values):
                container = self._client().containers.create(spec.image, **options)
            crash_point("created")
        except ProviderError as error:
            if "network" in error.message and "not found" in error.message:
                self._network_ready = False  # removed behind our back: the retry recreates it
            raise
        return self._replica(container)  # create() has inspected it already

    def _confinement(self) -> dict[str, Any]:
        """Least privilege (see the module docstring)."""
        return {
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": {"/tmp": f"size={self.settings.tmpfs_size},mode=1777"},
            "user": "65534:65534",
            "init": True,
            "pids_limit": self.settings.pids_limit,
            "restart_policy": {"Name": self.settings.restart_policy},
        }

    @staticmethod
    def _limits(spec: WorkloadSpec) -> dict[str, Any]:
        limits: dict[str, Any] = {}
        try:
            if spec.cpu is not None:
                limits["nano_cpus"] = parse_cpu(spec.cpu)
            if spec.memory is not None:
                limits["mem_limit"] = parse_memory(spec.memory)
        except ValueError as error:
            raise ProviderError(
                f"plugin {spec.plugin_id!r}: {error}", "fix runtime.resources in the manifest"
            ) from None
        return limits

    def _start(self, replica: _Replica) -> _Replica:
        self._check_cancelled()
        with self._engine_errors(f"starting container {replica.name}"):
            replica.container.start()
            replica.container.reload()
        crash_point("started")
        return self._replica(replica.container)

    def _restart(self, replica: _Replica, spec: WorkloadSpec, routes: RouteRegistry) -> _Replica:
        """Start a stopped replica; if the engine cannot (its host port was given to
        another container while it was stopped, say), replace it with a new one."""
        try:
            return self._start(replica)
        except ProviderError as error:
            log.warning("replacing %s, which did not start: %s", replica.name, error.message)
            self._discard([replica], routes)
            return self._launch(spec, secrets.token_hex(3), replica.index)

    def _launch(self, spec: WorkloadSpec, generation: str, index: int) -> _Replica:
        """Create and start a replica. The engine picks a free host port when it creates
        the container but binds it only at start; if something took the port in between
        (any outgoing connection's ephemeral port may), a new container is tried."""
        for attempt in range(1, 4):
            replica = self._create(spec, generation, index)
            try:
                return self._start(replica)
            except ProviderError as error:
                self._discard_quietly([replica], None)
                if "address already in use" not in error.message or attempt == 3:
                    raise
                log.warning("host port taken before %s started; retrying", replica.name)
        raise AssertionError("unreachable")  # pragma: no cover

    def _await_ready(
        self, replicas: Sequence[_Replica], spec: WorkloadSpec
    ) -> dict[str, ProbeResult]:
        """Wait for every replica at once; each gets the full rollout timeout. Cancelled
        meanwhile: they never served (nobody registers a replica before it is ready), so
        they are removed, and Cancelled raised."""

        def wait(replica: _Replica) -> ProbeResult:
            url = replica.readiness_url
            if url is None:
                return ProbeResult(False, "the container has no published port")
            result = wait_ready(url, spec.rollout, cancelled=self._cancelled)
            if result.ok:
                crash_point("ready")
            return result

        results = dict(zip((r.name for r in replicas), _parallel(wait, replicas), strict=True))
        if self._cancelled.is_set():
            self._discard_quietly(replicas, None)
            self._check_cancelled()
        return results

    def _probe_now(self, replicas: Sequence[_Replica]) -> dict[str, ProbeResult]:
        timeout = self.settings.probe_timeout_seconds

        def once(replica: _Replica) -> ProbeResult:
            url = replica.readiness_url
            return probe(url, timeout) if url else ProbeResult(False, "no published port")

        return dict(zip((r.name for r in replicas), _parallel(once, replicas), strict=True))

    def _register(self, routes: RouteRegistry, replicas: Iterable[_Replica]) -> None:
        for replica in replicas:
            if replica.endpoint is not None:
                routes.register(replica.endpoint)
                crash_point("registered")

    def _retire(
        self, replicas: Sequence[_Replica], routes: RouteRegistry, grace: float, *, remove: bool
    ) -> None:
        """Deregister, give the gateway `drainSeconds` to stop sending to them, then stop
        (and remove) them all at once."""
        if not replicas:
            return
        self._deregister(routes, replicas)
        if any(r.running for r in replicas):
            time.sleep(self.settings.drain_seconds)

        def finish(replica: _Replica) -> None:
            with self._engine_errors(f"stopping container {replica.name}", missing_ok=True):
                if replica.running:
                    replica.container.stop(timeout=math.ceil(grace))
                    crash_point("stopped")
                if remove:
                    replica.container.remove(force=True, v=True)
                    crash_point("removed")

        _parallel(finish, replicas)

    def _discard(self, replicas: Sequence[_Replica], routes: RouteRegistry | None) -> None:
        """Deregister and remove at once: replicas that never served."""
        for replica in replicas:
            if routes is not None and replica.endpoint is not None:
                routes.deregister(replica.endpoint)
                crash_point("deregistered")

        def drop(replica: _Replica) -> None:
            with self._engine_errors(f"removing container {replica.name}", missing_ok=True):
                replica.container.remove(force=True, v=True)
            crash_point("removed")

        _parallel(drop, replicas)

    def _discard_quietly(self, replicas: Sequence[_Replica], routes: RouteRegistry | None) -> None:
        """Clean-up on the way out of another failure, which is the one to report."""
        with contextlib.suppress(Exception):
            self._discard(replicas, routes)

    def _workload(self, group: list[_Replica], answers: Mapping[str, ProbeResult]) -> LiveWorkload:
        first = _most_common_build(group)[0]
        labels = first.labels
        cpu, memory = _resources(group)
        return LiveWorkload(
            image=_image(first),
            version=first.version,
            manifest_hash=labels.get(LABEL_MANIFEST_HASH, ""),
            replicas=len(group),
            ready_replicas=sum(1 for r in group if r.running and _ok(answers, r)),
            running=any(r.running for r in group),
            resources=LiveResources(cpu=cpu, memory=memory),
            env_hash=labels.get(LABEL_ENV_HASH, ""),
            instances=tuple(
                LiveReplica(
                    name=r.name,
                    version=r.version,
                    image=_image(r),
                    manifest_hash=r.labels.get(LABEL_MANIFEST_HASH, ""),
                    env_hash=r.labels.get(LABEL_ENV_HASH, ""),
                    running=r.running,
                    ready=r.running and _ok(answers, r),
                    url=r.url,
                )
                for r in sorted(group, key=lambda r: r.name)
            ),
            env_digest=_common(group, LABEL_ENV_DIGEST),
        )

    # --- the engine -------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._docker is None:
            with self._engine_errors("connecting"):
                if self.settings.base_url:
                    self._docker = docker.DockerClient(base_url=self.settings.base_url)
                else:
                    self._docker = docker.from_env()
        return self._docker

    def _engine_url(self) -> str:
        return self.settings.base_url or os.environ.get("DOCKER_HOST", "the default socket")

    @contextlib.contextmanager
    def _engine_errors(
        self, doing: str, secret_values: Sequence[str] = (), *, missing_ok: bool = False
    ) -> Iterator[None]:
        """Engine failures as ProviderErrors: 5xx and lost connections are transient.
        Messages are scrubbed of `secret_values` (env values) before they go anywhere."""
        try:
            yield
        except docker.errors.NotFound as error:
            if missing_ok:
                return
            raise ProviderError(
                f"{doing}: {_scrub(_explain(error), secret_values)}",
                "it was removed meanwhile, or the reference is wrong",
            ) from error
        except docker.errors.APIError as error:
            status = error.status_code or 0
            raise ProviderError(
                f"container engine failed {doing}: {_scrub(_explain(error), secret_values)}",
                "retried automatically" if status >= 500 else "",
                transient=status >= 500,
            ) from error
        except (docker.errors.DockerException, OSError) as error:
            # requests' ConnectionError and timeouts are OSErrors; DockerException without
            # a status is the SDK failing to reach the engine at all.
            raise ProviderError(
                f"cannot reach the container engine at {self._engine_url()} ({doing}): "
                f"{_scrub(str(error), secret_values)}",
                ENGINE_HINT,
                transient=True,
            ) from error

    def _pull(self, image: str) -> str | None:
        """Pull; the engine's error message, or None once the image is present."""
        problem: str | None = None
        with self._engine_errors(f"pulling image {image}"):
            try:
                # Podman reports a failed pull inside the stream; Docker as an HTTP error.
                for event in self._client().api.pull(image, stream=True, decode=True):
                    if isinstance(event, dict) and event.get("error"):
                        problem = str(event["error"])
            except docker.errors.APIError as error:
                problem = _explain(error)
            if problem is not None:
                return problem
            try:
                self._client().images.get(image)
            except docker.errors.ImageNotFound as error:
                return f"the engine pulled nothing: {_explain(error)}"
        return None

    def _ensure_network(self) -> None:
        """Create the shared network when it is missing. When that fails and endpoints are
        on loopback (which does not need it), containers go on the engine's default
        network instead, with a warning; in `network` mode it is an error."""
        with self._network_lock:
            if not self._network_ready and self.settings.network:
                self._create_network(self.settings.network)
                self._network_ready = True

    def _create_network(self, name: str) -> None:
        client = self._client()
        try:
            with self._engine_errors(f"creating network {name}"):
                if not _network_exists(client, name):
                    with contextlib.suppress(docker.errors.APIError):
                        client.networks.create(
                            name, driver="bridge", labels={LABEL_MANAGED_BY: MANAGED_BY}
                        )  # a concurrent creator may win: checked below
                if not _network_exists(client, name):
                    raise ProviderError(f"network {name} could not be created")
        except ProviderError as error:
            if self.settings.endpoint_mode == "network":
                raise ProviderError(
                    f"network {name} is missing and could not be created: {error.message}",
                    f"create it (`docker network create {name}`) or fix the engine",
                ) from error
            log.warning("network %s unavailable (%s): using the default network", name, error)
            self._network = None


# --- helpers -------------------------------------------------------------------------------

# TEST ONLY. `PLEXICA_TEST_CRASH_AT=<boundary>[@<n>]` makes the process SIGKILL itself the
# n-th time (default: the first) a rollout passes that boundary, so a test can kill apply at
# every step of an update rather than at random (tests/integration/test_rollout_crash.py).
# Boundaries: created, started, ready, registered, deregistered, stopped, removed. Never set
# it outside tests: it exists to prove that the next apply heals whatever a crash there leaves.
CRASH_AT_ENV = "PLEXICA_TEST_CRASH_AT"
LISTING_ATTEMPTS = 5  # a listing raced by removals (see _list_containers)


def _removed_meanwhile(error: docker.errors.APIError) -> bool:
    text = _explain(error).lower()
    return "does not exist in database" in text or "no such container" in text


CRASH_POINTS = ("created", "started", "ready", "registered", "deregistered", "stopped", "removed")
_crash_counts: Counter[str] = Counter()
_crash_lock = threading.Lock()


def crash_point(boundary: str) -> None:
    wanted = os.environ.get(CRASH_AT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != boundary:
        return
    with _crash_lock:
        _crash_counts[boundary] += 1
        if _crash_counts[boundary] == (int(nth) if nth.isdigit() else 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _network_exists(client: Any, name: str) -> bool:
    # The engine's name filter matches substrings (Docker) or regexes (Podman): "plexica"
    # would find "plexica-test", so the exact name is checked here.
    return any(network.name == name for network in client.networks.list(names=[name]))


def _spec_labels(spec: WorkloadSpec) -> dict[str, str]:
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PLUGIN: spec.plugin_id,
        LABEL_VERSION: spec.version,
        LABEL_IMAGE: spec.image,
        LABEL_MANIFEST_HASH: spec.manifest_hash,
        LABEL_ENV_HASH: spec.env_hash,
        LABEL_PORT: str(spec.port),
        LABEL_READINESS: spec.readiness_path,
        LABEL_LIVENESS: spec.liveness_path,
    }
    if spec.cpu is not None:
        labels[LABEL_CPU] = spec.cpu
    if spec.memory is not None:
        labels[LABEL_MEMORY] = spec.memory
    if spec.env_digest:
        labels[LABEL_ENV_DIGEST] = spec.env_digest
    if spec.replace_id:  # compared only while a replacement asks for it
        labels[LABEL_REPLACE_ID] = spec.replace_id
    return labels


def _build(replica: _Replica) -> tuple[str, ...]:
    labels = replica.labels
    keys = (LABEL_VERSION, LABEL_IMAGE, LABEL_MANIFEST_HASH, LABEL_ENV_HASH)
    return tuple(labels.get(key, "") for key in keys)


def _most_common_build(group: list[_Replica]) -> list[_Replica]:
    """The containers of the build with the most containers (newest wins ties)."""
    counts = Counter(_build(r) for r in group)
    newest = {_build(r): r.created for r in sorted(group, key=lambda r: r.created)}
    build = max(counts, key=lambda b: (counts[b], newest[b]))
    return [r for r in group if _build(r) == build]


def _image(replica: _Replica) -> str:
    return replica.labels.get(LABEL_IMAGE) or str(replica.container.attrs["Config"].get("Image"))


def _common(group: list[_Replica], label: str) -> str:
    """The label's value on every replica; MIXED when they differ (two keys at once)."""
    values = {r.labels.get(label, "") for r in group}
    return values.pop() if len(values) == 1 else MIXED


def _resources(group: list[_Replica]) -> tuple[str | None, str | None]:
    """CPU and memory as the engine enforces them: in the manifest's notation when equal
    to the labelled desired value, canonical otherwise. A replica differing from its own
    desired value is reported in preference, so drift on any replica shows."""
    readings = [_enforced(r) for r in group]
    drifted = [reading for reading in readings if reading[2]]
    cpu, memory, _ = (drifted or readings)[0]
    return cpu, memory


def _enforced(replica: _Replica) -> tuple[str | None, str | None, bool]:
    host = replica.container.attrs.get("HostConfig") or {}
    nano = int(host.get("NanoCpus") or 0)
    if not nano and host.get("CpuQuota") and host.get("CpuPeriod"):
        nano = int(host["CpuQuota"]) * 1_000_000_000 // int(host["CpuPeriod"])
    size = int(host.get("Memory") or 0)
    want_cpu, want_memory = replica.labels.get(LABEL_CPU), replica.labels.get(LABEL_MEMORY)
    cpu_same, memory_same = same_cpu(want_cpu, nano), same_memory(want_memory, size)
    cpu = want_cpu if cpu_same else (format_cpu(nano) if nano else None)
    memory = want_memory if memory_same else (format_memory(size) if size else None)
    return cpu, memory, not (cpu_same and memory_same)


def _rank(replica: _Replica, answers: Mapping[str, ProbeResult]) -> tuple[bool, bool, int]:
    """Sort key, most useful first: ready, then running, then lowest replica number."""
    return (not _ok(answers, replica), not replica.running, replica.index)


def _ok(answers: Mapping[str, ProbeResult], replica: _Replica) -> bool:
    answer = answers.get(replica.name)
    return answer is not None and answer.ok


def _settle(futures: Sequence[Future[None]]) -> None:
    """Wait for background retirements; their failures are logged, not raised: the old
    replica is stopped late at worst, and the next plan sees it."""
    for future in futures:
        error = future.exception()
        if error is not None:
            log.warning("retiring an old replica failed: %s", error)


def _parallel(function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """`function` over `items` in threads (probes and stops wait on the network or on
    grace periods, not on the CPU); results in order, the first exception re-raised."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(function, items))


def _explain(error: docker.errors.APIError) -> str:
    return str(error.explanation or error)


def _scrub(message: str, secret_values: Sequence[str]) -> str:
    for value in sorted(secret_values, key=len, reverse=True):
        if len(value) >= 3:  # shorter values would blank out ordinary words
            message = message.replace(value, "***")
    return message
