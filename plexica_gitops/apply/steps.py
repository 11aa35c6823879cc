"""What each plan action does to the world: the map from an action (address + step) to
store writes, provider calls and migrations.

Every executor is written to be safe to run again after a crash or a retry: lifecycle
moves are compare-and-set and accept finding the plugin already where it was going,
writes are upserts, provider calls converge. An executor returns a short detail for the
journal and raises `StepFailed` (with what to do) when the step did not happen."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from plexica_gitops.addresses import AddressError, ResourceKind
from plexica_gitops.broker.kafka import BrokerError, EventBroker
from plexica_gitops.desired.build import DesiredState, PluginEntry
from plexica_gitops.desired.view import consumer_group, manifest_hash, topic_settings
from plexica_gitops.errors import StepFailed as StepFailed
from plexica_gitops.lifecycle import DEPLOYED, TARGET_STATUS, LifecycleStatus
from plexica_gitops.live.model import NOT_READ_PREFIX
from plexica_gitops.plan.model import Action
from plexica_gitops.runtime.provider import (
    Cancelled,
    Endpoint,
    ImagePullError,
    Provider,
    ProviderError,
    RolloutFailed,
    WorkloadSpec,
)
from plexica_gitops.runtime.spec import EnvResolutionError, rollout_settings, workload_spec
from plexica_gitops.sensitive import mask
from plexica_gitops.store import catalog
from plexica_gitops.store.connection import StoreError
from plexica_gitops.store.migrate import FailureKind, TenantMigrationJob, run_job
from plexica_gitops.store.pool import ConnectionPool
from plexica_gitops.store.purge import purge_plugin_data

S = LifecycleStatus


@dataclass
class StepContext:
    desired: DesiredState
    pool: ConnectionPool
    provider: Provider | None
    environ: Mapping[str, str]
    broker: EventBroker | None = None
    lock_timeout_ms: int = 5000
    statement_timeout_ms: int = 300000
    lost: threading.Event = field(default_factory=threading.Event)  # the apply lock's
    digest_key: bytes | None = None  # labels replicas with the keyed digest of env values
    replace_id: str = ""  # this apply's: replacements are forced with it (retries keep it)
    _tenant_ids: dict[str, str] = field(default_factory=dict)

    def check_lock(self) -> None:
        """Cancelled once the apply lost its lock: nothing more may be written or started."""
        if self.lost.is_set():
            raise Cancelled(
                "cancelled: this apply lost its lock",
                "another apply may be running now; run plan once it is done",
            )

    def require_provider(self, action: Action) -> Provider:
        if self.provider is None:
            raise StepFailed(
                f"{action.id} needs the runtime provider, and none is configured",
                "declare spec.runtime.provider in platform.yaml",
            )
        return self.provider

    def plugin_entry(self, plugin_id: str) -> PluginEntry:
        entry = self.desired.plugins.get(plugin_id)
        if entry is None:
            raise StepFailed(
                f"plugin {plugin_id!r} is not in the desired state this plan was made from",
                "run plan again against the current desired state",
            )
        return entry

    def tenant_id(self, slug: str) -> str:
        if slug not in self._tenant_ids:
            with self.pool.connection() as conn:
                tenant = catalog.tenant_by_slug(conn, slug)
            if tenant is None:
                raise StepFailed(f"tenant {slug!r} does not exist", "create the tenant first")
            self._tenant_ids[slug] = tenant.id
        return self._tenant_ids[slug]


class StoreRouteRegistry:
    """Endpoints go into the service registry only while the plugin has routes (it is
    ACTIVE); before that a rollout has nobody to announce its replicas to.

    Compare-and-set, without ever breaking a rollout off half-way (that would leave two
    versions running): the plan does not carry endpoint URLs, so what the step expects is
    the registry it found when it started, with its own writes applied. During the rollout
    a write touches only the rows of the step's own replicas, and one that finds another
    writer's change records the conflict; at the end of the step (`sync`, `finish`) a
    registry that is not the expected one is a ConflictError, and nothing is synced."""

    def __init__(self, context: StepContext, plugin_id: str) -> None:
        self.context = context
        self.pool = context.pool
        self.plugin_id = plugin_id
        self._mutex = threading.Lock()  # a rollout retires old replicas in the background
        self.conflicts: list[catalog.ConflictError] = []
        with self.pool.connection() as conn:
            self.expected = {e.endpoint for e in catalog.endpoints(conn, plugin_id)}

    def register(self, endpoint: Endpoint) -> None:
        self.context.check_lock()
        url = endpoint.url
        with self._mutex, self.pool.connection() as conn:
            if not catalog.has_routes(conn, self.plugin_id):
                return
            if url in self.expected:  # a row this step knows: its to overwrite
                catalog.add_endpoint(conn, self.plugin_id, url, endpoint.instance, endpoint.version)
            elif not catalog.add_own_endpoint(
                conn, self.plugin_id, url, endpoint.instance, endpoint.version
            ):
                self._conflict(f"{url} free", f"{url} registered by another writer")
                return
            self.expected.add(url)

    def deregister(self, endpoint: Endpoint) -> None:
        self.context.check_lock()
        url = endpoint.url
        with self._mutex, self.pool.connection() as conn:
            if url in self.expected:
                if not catalog.remove_endpoint(conn, self.plugin_id, url):
                    self._conflict(f"{url} registered", f"{url} removed by another writer")
                self.expected.discard(url)
            elif any(e.endpoint == url for e in catalog.endpoints(conn, self.plugin_id)):
                self._conflict(f"{url} not registered", f"{url} registered by another writer")

    def sync(self, ready: list[Endpoint], running: set[str]) -> None:
        """The registry lists exactly the live replicas (see `_sync_endpoints`) — if it is
        still the expected one."""
        self.context.check_lock()
        with self._mutex, self.pool.connection() as conn, conn.transaction():
            found = catalog.endpoint_urls_for_update(conn, self.plugin_id)
            extra, missing = found - self.expected, self.expected - found
            if extra or missing:
                differences = [f"also {_endpoints(extra)}"] if extra else []
                differences += [f"without {_endpoints(missing)}"] if missing else []
                self._conflict("the endpoints of this rollout", " and ".join(differences))
            self.finish()
            _sync_endpoints(conn, self.plugin_id, ready, running)
        self.expected = {e.url for e in ready} | (found & running)

    def finish(self) -> None:
        """The first conflict the step met, if any."""
        if self.conflicts:
            raise self.conflicts[0]

    def _conflict(self, expected: str, found: str) -> None:
        address = f"plugin.{self.plugin_id}.routes"
        self.conflicts.append(catalog.ConflictError(address, expected, found))


def _endpoints(urls: set[str]) -> str:
    shown = sorted(urls)
    more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
    return ", ".join(shown[:3]) + more


Executor = Callable[[Action, StepContext], str]


def run_step(action: Action, context: StepContext) -> str:
    """Carry out one action; the detail for the journal, or StepFailed."""
    executor = _executor_for(action)
    if context.lost.is_set():
        raise StepFailed(
            "not started: this apply lost its lock", "run plan once the other apply is done"
        )
    try:
        return executor(action, context)
    except StepFailed:
        raise
    except Cancelled as error:
        raise StepFailed(
            f"{error.message}; the step stopped where it was (replicas that never served were "
            "removed)",
            error.hint,
        ) from None
    except RolloutFailed as error:
        raise StepFailed(error.message, error.hint, rolled_back=error.rolled_back) from None
    except EnvResolutionError as error:
        raise StepFailed(error.message, error.hint) from None
    except StoreError as error:
        raise StepFailed(error.message, error.hint) from None


def _executor_for(action: Action) -> Executor:
    try:
        kind = action.resource.kind
    except AddressError:
        raise StepFailed(
            f"no executor for {action.id}", "this is a bug: please report it"
        ) from None
    if kind is ResourceKind.PLUGIN:
        return _lifecycle if action.step != "update" else _catalog_update
    return _EXECUTORS[kind]


def _plugin_of(action: Action) -> str:
    pid = action.plugin or action.resource.owner_plugin
    assert pid is not None, f"{action.id} names no plugin"
    return pid


def _tenant_of(action: Action) -> str:
    slug = action.tenant or action.resource.tenant
    assert slug is not None, f"{action.id} names no tenant"
    return slug


def _event_of(action: Action) -> str:
    topic = action.resource.topic
    assert topic is not None, f"{action.id} names no topic"
    return topic


# --- plugins ------------------------------------------------------------------------------


def _lifecycle(action: Action, context: StepContext) -> str:
    pid = _plugin_of(action)
    target = S(action.after["status"]) if action.after else S.UNINSTALLED
    if action.step == "register":
        return _register(context, pid)
    start = S(action.before["status"]) if action.before else None
    assert start is not None, f"{action.id} has no starting status"
    if action.step in ("uninstall", "deregister"):
        _require_leaving(action, context, pid)
    _move(context, pid, start, target)
    if action.step == "install":
        _pull_or_fail_install(context, action, pid)
    return f"{start.value} → {target.value}"


def _register(context: StepContext, pid: str) -> str:
    entry = context.plugin_entry(pid)
    manifest = entry.manifest.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = manifest_hash(entry)
    with context.pool.connection() as conn:
        try:
            catalog.register_plugin(
                conn, pid, entry.manifest.name, entry.manifest.version, manifest, digest
            )
        except catalog.TransitionError:
            # A retry after a reply lost in transit finds it registered with this manifest.
            if catalog.registration(conn, pid) != (S.REGISTERED, digest):
                raise
    return f"registered {pid} {entry.manifest.version}"


def _move(context: StepContext, pid: str, start: LifecycleStatus, end: LifecycleStatus) -> None:
    with context.pool.connection() as conn:
        try:
            catalog.transition(conn, pid, start, end)
        except catalog.TransitionError as error:
            if error.actual is not end:  # already there: a retry after a lost reply
                raise


def _pull_or_fail_install(context: StepContext, action: Action, pid: str) -> None:
    """Spec 004 edge case 1: an image that cannot be had leaves the plugin REGISTERED with
    the error recorded, and nothing else of the install happens."""
    provider = context.require_provider(action)
    image = context.plugin_entry(pid).manifest.runtime.image
    try:
        provider.ensure_image(image)
    except ImagePullError as error:
        with context.pool.connection() as conn:
            catalog.record_install_failure(conn, pid, error.message)
        raise StepFailed(
            f"cannot pull image {image} of plugin {pid!r}: {error.message}; the plugin is "
            "REGISTERED again with the error recorded",
            error.hint or "make the image available, then apply again",
        ) from None


def _catalog_update(action: Action, context: StepContext) -> str:
    pid = _plugin_of(action)
    entry = context.plugin_entry(pid)
    manifest = entry.manifest.model_dump(mode="json", by_alias=True, exclude_none=True)
    before = action.before or {}
    expected = (before["version"], before["manifest_hash"]) if "manifest_hash" in before else None
    with context.pool.connection() as conn:
        catalog.update_plugin(
            conn, pid, entry.manifest.version, manifest, manifest_hash(entry), expected=expected
        )
    return f"catalog records {pid} {entry.manifest.version}"


def _spec(action: Action, context: StepContext, pid: str) -> WorkloadSpec:
    """A replace step replaces every replica, even one that matches the spec (a changed
    secret's, `apply --replace`): its replicas carry the apply's replace id."""
    running = bool(action.after.get("running", True)) if action.after else True
    return workload_spec(
        context.plugin_entry(pid),
        context.desired,
        running=running,
        environ=context.environ,
        digest_key=context.digest_key,
        replace_id=context.replace_id if action.step == "replace" else "",
    )


def _workload(action: Action, context: StepContext) -> str:
    pid = _plugin_of(action)
    provider = context.require_provider(action)
    routes = StoreRouteRegistry(context, pid)
    try:
        if action.step == "delete":
            _require_uninstalled(action, context, pid)
            provider.remove(pid, routes)
            routes.finish()
            return "containers removed"
        if action.step == "stop":
            provider.stop(pid, routes, _grace_period(context, pid))
            routes.finish()
            return "stopped (containers kept)"
        spec = _spec(action, context, pid)
        if action.step == "create":
            detail = _create_workload(context, provider, spec, routes)
        elif action.step == "replace":
            provider.ensure_image(spec.image)
            provider.update(spec, routes)
            detail = f"{spec.strategy.value} update to {spec.version}: {spec.replicas} ready"
        elif action.step == "scale":
            provider.scale(spec, routes)
            detail = f"{spec.replicas} replicas"
        else:
            provider.start(spec, routes)
            detail = f"{spec.replicas} replicas running and ready"
        if spec.running:
            _refresh_endpoints(context, provider, pid, routes)
        routes.finish()
        return detail
    except ProviderError as error:
        if isinstance(error, RolloutFailed | Cancelled) or error.transient:
            raise  # RolloutFailed, Cancelled: run_step reports it; transient: the engine retries
        raise StepFailed(error.message, error.hint) from None


def _grace_period(context: StepContext, pid: str) -> float:
    entry = context.desired.plugins.get(pid)
    if entry is not None:
        return rollout_settings(entry, context.desired).grace_period_seconds
    platform = context.desired.platform
    return platform.document.spec.rollout.grace_period_seconds if platform else 10.0


def _create_workload(
    context: StepContext, provider: Provider, spec: WorkloadSpec, routes: StoreRouteRegistry
) -> str:
    try:
        provider.ensure_image(spec.image)
        provider.deploy(spec, routes)
    except ProviderError as error:
        if isinstance(error, Cancelled):
            raise
        if error.transient and not isinstance(error, RolloutFailed):
            raise  # the engine retries it; deploy picks up what the first attempt created
        _record_failed_install(context, spec.plugin_id, error.message)
        raise StepFailed(
            error.message,
            error.hint or "fix the cause, then apply again (the install is retried)",
        ) from None
    state = "running and ready" if spec.running else "created, stopped"
    return f"{spec.replicas} replicas of {spec.version} {state}"


def _record_failed_install(context: StepContext, pid: str, message: str) -> None:
    """A workload that cannot be created during an install sends the plugin back to
    REGISTERED with the error, like a failed pull: the next apply installs it again."""
    with context.pool.connection() as conn:
        if catalog.plugin_status(conn, pid) is S.INSTALLING:
            catalog.record_install_failure(conn, pid, message)


def _permissions(action: Action, context: StepContext) -> str:
    pid = _plugin_of(action)
    with context.pool.connection() as conn:
        if action.step == "delete":
            _require_uninstalled(action, context, pid, conn)
            count = catalog.deregister_permissions(conn, pid)
            return f"{count} permissions deregistered"
        manifest = context.plugin_entry(pid).manifest
        permissions = {p.key: (p.name, p.description) for p in manifest.permissions}
        catalog.register_permissions(conn, pid, permissions)
    return f"{len(permissions)} permissions registered"


def _routes(action: Action, context: StepContext) -> str:
    pid = _plugin_of(action)
    if action.step == "delete":
        with context.pool.connection() as conn:
            catalog.deregister_routes(conn, pid)
        return "routes and endpoints deregistered"
    manifest = context.plugin_entry(pid).manifest
    frontend = manifest.frontend
    ready, running = _live_endpoints(context.require_provider(action), pid)
    if not ready:
        raise StepFailed(
            f"plugin {pid!r} has no ready replica to route traffic to",
            "check the workload (`plexica-gitops plan` shows its ready replicas), then apply again",
        )
    base_path = manifest.api.base_path.rstrip("/")
    want = {
        "base_path": base_path,
        "frontend_prefix": frontend.route_prefix.rstrip("/") if frontend else None,
        "remote_entry": frontend.remote_entry if frontend else None,
    }
    with context.pool.connection() as conn, conn.transaction():
        routes = catalog.routes_for_update(conn, pid)
        found = _routes_found(routes) if routes else None
        _expect(action, action.before, found, want)
        catalog.register_routes(conn, pid, base_path, want["frontend_prefix"], want["remote_entry"])
        _sync_endpoints(conn, pid, ready, running)
    return f"routes registered with {len(ready)} ready endpoints"


def _routes_found(routes: catalog.Routes) -> dict[str, Any]:
    """The registered routes, keyed as the plan shows them."""
    return {
        "base_path": routes.backend_prefix,
        "frontend_prefix": routes.frontend_prefix,
        "remote_entry": routes.remote_entry,
    }


def _subscriptions(action: Action, context: StepContext) -> str:
    pid = _plugin_of(action)
    wanted: dict[str, str] = {}
    if action.step != "delete":
        subscribes = context.plugin_entry(pid).manifest.events.subscribes
        wanted = {event: consumer_group(pid) for event in subscribes}
    with context.pool.connection() as conn:
        catalog.set_subscriptions(conn, pid, wanted)
    return f"{len(wanted)} subscriptions as consumer group {consumer_group(pid)}"


def _sync_endpoints(
    conn: catalog.Connection, pid: str, ready: list[Endpoint], running: set[str]
) -> None:
    """Register the ready replicas, and deregister the endpoints of replicas that no longer
    run (removed by hand, or gone with the engine): they must not receive traffic. A
    running replica that fails one probe now keeps its registration: the registry is not
    a health checker, and nothing would register it again once it recovers."""
    for registered in catalog.endpoints(conn, pid):
        if registered.endpoint not in running:
            catalog.remove_endpoint(conn, pid, registered.endpoint)
    for endpoint in ready:
        catalog.add_endpoint(conn, pid, endpoint.url, endpoint.instance, endpoint.version)


def _live_endpoints(provider: Provider, pid: str) -> tuple[list[Endpoint], set[str]]:
    """The ready replicas, and the URLs of every running one (ready or not)."""
    ready = provider.endpoints(pid)
    running = {e.url for e in provider.endpoints(pid, ready_only=False)}
    return ready, running | {e.url for e in ready}


def _refresh_endpoints(
    context: StepContext, provider: Provider, pid: str, routes: StoreRouteRegistry
) -> None:
    """After a workload step, the registry of a routed plugin lists its live replicas."""
    with context.pool.connection() as conn:
        if not catalog.has_routes(conn, pid):
            return
    ready, running = _live_endpoints(provider, pid)
    routes.sync(ready, running)


def _purge(action: Action, context: StepContext) -> str:
    """purgeDataOnUninstall: drop the plugin's tables and its migration history in every
    tenant schema (store/purge.py), once git asks for it and the plugin is uninstalled."""
    pid = _plugin_of(action)
    _require_purge(action, context, pid)
    with context.pool.connection() as conn:
        _require_uninstalled(action, context, pid, conn)
        purged = purge_plugin_data(conn, pid)
    return f"{purged.tables} tables dropped in {purged.tenants} tenant schemas"


# --- destructive steps: their preconditions, checked when they run --------------------------
# A plan is checked against a fresh plan before it applies (planfile.check_justified); these
# checks hold whatever the plan says, at the moment the step runs.

_UNINSTALLED = frozenset({S.UNINSTALLING, S.UNINSTALLED})


def _refuse(action: Action, why: str) -> StepFailed:
    return StepFailed(
        f"refusing {action.id}: {why}; nothing was changed",
        "a step that destroys something runs only while git and the platform still ask for "
        "it: run plan again and review it",
    )


def _require_leaving(action: Action, context: StepContext, pid: str) -> None:
    """Uninstall only a plugin git wants gone: absent (or only registered), or not in git
    with platform.prune."""
    entry = context.desired.plugins.get(pid)
    if entry is None:
        _require_prune(action, context, f"plugin {pid!r}")
        return
    state = entry.document.spec.state
    if TARGET_STATUS[state] in DEPLOYED:
        raise _refuse(action, f"git wants plugin {pid!r} {state.value}")


def _require_prune(action: Action, context: StepContext, what: str) -> None:
    """What git does not declare goes only with platform.prune."""
    platform = context.desired.platform
    if platform is None or not platform.document.spec.prune:
        raise _refuse(action, f"{what} is not in git and platform.prune is not true")


def _require_uninstalled(
    action: Action,
    context: StepContext,
    pid: str,
    conn: catalog.Connection | None = None,
) -> None:
    """A plugin's workload, permissions and data go only once it is being uninstalled."""
    with contextlib.ExitStack() as stack:
        if conn is None:
            conn = stack.enter_context(context.pool.connection())
        status = catalog.plugin_status(conn, pid)
    if status not in _UNINSTALLED:
        found = status.value if status else "not registered"
        raise _refuse(action, f"plugin {pid!r} is {found}, not UNINSTALLING or UNINSTALLED")


def _require_purge(action: Action, context: StepContext, pid: str) -> None:
    entry = context.desired.plugins.get(pid)
    if entry is None or not entry.document.spec.purge_data_on_uninstall:
        raise _refuse(action, f"git does not set purgeDataOnUninstall: true for plugin {pid!r}")


def _require_topic_purge(action: Action, context: StepContext, name: str) -> None:
    """Delete only a topic this reconciler created for a plugin that git uninstalls with
    purgeDataOnUninstall."""
    with context.pool.connection() as conn:
        owner = catalog.topic_owners(conn).get(name)
        status = catalog.plugin_status(conn, owner) if owner else None
    if owner is None or owner != action.plugin:
        raise _refuse(action, f"plexica-gitops did not create topic {name!r} for {action.plugin}")
    _require_purge(action, context, owner)
    if status is not None and (status in DEPLOYED or status is S.INSTALLING):
        raise _refuse(action, f"its plugin {owner!r} is {status.value}")


def _require_tenant_deletion(action: Action, context: StepContext, slug: str) -> None:
    tenant = context.desired.tenants.get(slug)
    if tenant is None:
        _require_prune(action, context, f"tenant {slug!r}")
        return
    status = tenant.document.spec.status.value
    if status != "deleted":
        raise _refuse(action, f"git wants tenant {slug!r} {status}")


# --- topics -------------------------------------------------------------------------------


def _topic(action: Action, context: StepContext) -> str:
    """Topics are created, changed and deleted only as planned: the planner never plans a
    change to a topic plexica-gitops did not create (ownership is recorded here)."""
    if context.broker is None:
        raise StepFailed(
            f"{action.id}: no event broker is configured for apply",
            "set KAFKA_BOOTSTRAP_SERVERS to the platform's broker",
        )
    name = _event_of(action)
    try:
        if action.step == "delete":
            _require_topic_purge(action, context, name)
            context.broker.delete_topic(name)
            with context.pool.connection() as conn:
                catalog.forget_topic(conn, name)
            return "deleted"
        want = _topic_settings(context.desired, name)
        if action.step == "create":
            # Ownership first: a crash between the two must not leave a topic we created
            # looking like somebody else's (then it could never be updated or purged).
            with context.pool.connection() as conn:
                catalog.record_topic(conn, name, action.plugin or "")
            try:
                context.broker.create_topic(
                    name, want["partitions"], want["replication_factor"], want["config"]
                )
            except BrokerError as error:
                if not error.transient:
                    with context.pool.connection() as conn:
                        catalog.forget_topic(conn, name)
                raise
            return f"{want['partitions']} partitions"
        context.broker.update_topic(name, want["partitions"], want["config"])
    except BrokerError as error:
        if error.transient:
            raise  # the engine retries it
        raise StepFailed(error.message, error.hint) from None
    return f"{want['partitions']} partitions, config {sorted(want['config'])}"


def _topic_settings(desired: DesiredState, name: str) -> dict[str, Any]:
    for entry in desired.plugins.values():
        if name in entry.manifest.events.publishes:
            defaults = desired.platform.document.spec.events.defaults if desired.platform else None
            return topic_settings(defaults, entry.document.spec.topics.get(name))
    raise StepFailed(
        f"no plugin in the desired state publishes {name!r}",
        "run plan again against the current desired state",
    )


# --- tenants ------------------------------------------------------------------------------


def _tenant(action: Action, context: StepContext) -> str:
    slug = _tenant_of(action)
    after = action.after or {}
    if action.step == "create":
        spec = context.desired.tenants[slug].document.spec
        with context.pool.connection() as conn:
            try:
                catalog.create_tenant(conn, spec.id, slug, spec.schema_name, spec.status.value)
            except StoreError:
                # A retry after a reply lost in transit finds its own row: that is success.
                if catalog.tenant_by_slug(conn, slug) != catalog.Tenant(spec.id, spec.schema_name):
                    raise
        return f"schema {spec.schema_name} created"
    if action.step == "delete":
        _require_tenant_deletion(action, context, slug)
    tenant_id = context.tenant_id(slug)  # before taking a connection: the pool is bounded
    with context.pool.connection() as conn:
        catalog.set_tenant_status(conn, tenant_id, after["status"])
    return f"status {after['status']}"


def _binding(action: Action, context: StepContext) -> str:
    """Compare-and-set against the binding the plan observed (`before`, masked as the plan
    shows it): one changed by another writer meanwhile is a ConflictError."""
    slug = _tenant_of(action)
    pid = _plugin_of(action)
    tenant_id = context.tenant_id(slug)
    tenant = context.desired.tenants.get(slug)
    binding = tenant.document.spec.plugins.get(pid) if tenant else None
    with context.pool.connection() as conn, conn.transaction():
        current = catalog.binding_for_update(conn, tenant_id, pid)
        found = {"enabled": current[0], "configuration": current[1]} if current else None
        if binding is None:  # not declared in git: only ever disabled, configuration kept
            kept = found["configuration"] if found else {}
            _expect(action, action.before, found, {"enabled": False, "configuration": kept})
            catalog.disable_tenant_plugin(conn, tenant_id, pid)
            return "disabled"
        # A binding held off while its plugin is not active (PGP109): the plan's `after`
        # says disabled although git keeps the tenant's intent (enabled).
        enabled = binding.enabled and bool((action.after or {}).get("enabled", True))
        want = {"enabled": enabled, "configuration": binding.configuration}
        _expect(action, action.before, found, want)
        catalog.upsert_tenant_plugin(conn, tenant_id, pid, enabled, binding.configuration)
    return "enabled" if enabled else "disabled"


def _expect(
    action: Action,
    expected: dict[str, Any] | None,
    found: dict[str, Any] | None,
    want: dict[str, Any],
) -> None:
    """Compare-and-set: the store must still hold what the plan observed (`expected`, whose
    values may be masked: compared masked, field by field) — or already what the step
    writes (a retry after a lost reply, or another writer that did the same)."""
    if found == want:
        return
    if expected is None:
        if found is None:
            return
    elif found is not None:
        seen = mask(found)
        if all(seen.get(key) == value or _not_read(value) for key, value in expected.items()):
            return
    raise catalog.ConflictError(action.address, _shown(expected), _shown(found))


def _not_read(expected: Any) -> bool:
    """A value the plan could not read (out of bounds, PGP110): it overwrites whatever is
    there, so nothing can be compared."""
    return isinstance(expected, str) and expected.startswith(NOT_READ_PREFIX)


def _shown(value: dict[str, Any] | None) -> str:
    """For a conflict message: masked, and short."""
    if value is None:
        return "nothing"
    text = json.dumps(mask(value), sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:159] + "…"


def _migrations(action: Action, context: StepContext) -> str:
    """A tenant's pending migrations of one plugin, in one transaction on a pooled
    connection. A connection that broke meanwhile (a stale pooled one, a restarted server)
    is dropped by the pool and the step retried as transient: the job is one transaction
    and skips what its history holds, so running it again is safe."""
    slug = _tenant_of(action)
    pid = _plugin_of(action)
    spec = context.desired.tenants[slug].document.spec
    job = TenantMigrationJob(
        slug, spec.id, spec.schema_name, pid, context.plugin_entry(pid).migrations
    )
    with context.pool.connection() as conn:
        result = run_job(
            conn,
            job,
            lock_timeout_ms=context.lock_timeout_ms,
            statement_timeout_ms=context.statement_timeout_ms,
        )
        if result.failure is not None and result.failure.kind is FailureKind.CONNECTION:
            raise psycopg.OperationalError(result.failure.message)
    if result.failure is not None:
        raise StepFailed(result.failure.message, result.failure.hint)
    return f"{len(result.applied)} migrations applied in {result.duration_ms:.0f} ms"


# The executor of each kind of resource (a plugin's own steps: `_executor_for`).
_EXECUTORS: dict[ResourceKind, Executor] = {
    ResourceKind.WORKLOAD: _workload,
    ResourceKind.PERMISSIONS: _permissions,
    ResourceKind.ROUTES: _routes,
    ResourceKind.SUBSCRIPTIONS: _subscriptions,
    ResourceKind.DATA: _purge,
    ResourceKind.TOPIC: _topic,
    ResourceKind.TENANT: _tenant,
    ResourceKind.BINDING: _binding,
    ResourceKind.MIGRATIONS: _migrations,
}
