"""A perfect apply, as an executable specification of the planner.

`simulate(plan, desired, live)` applies every action of `plan`, in plan order, to a copy of
`live`, exactly as an apply that never fails would, and returns the resulting live state.
While it does so it checks what the design promises about a plan:

* each action comes after every step it depends on;
* every lifecycle step is an edge of `LIFECYCLE_EDGES` from the plugin's CURRENT status
  (a plan never skips an edge);
* a few safety rules of the design (`SimulationError` names the action that broke them):
  a plugin is activated only when its dependencies are active and its workload serves,
  installed only when its dependencies are installed, and is not disabled or uninstalled
  while a plugin that depends on it still needs it; routes are registered only on a
  running workload; a tenant enables a plugin only once it is active, and after its
  dependencies are enabled for that tenant.

Attribute values are taken from the desired state (`planner.desired_plugin()`, the
`TenantEntry`, the `MigrationFile`s), never from an action's `after`, which is masked for
display. Actions with a fingerprint record it in `last_applied`, as apply does.

Who depends on whom: a plugin being installed or activated needs git's dependencies (the
manifest being installed); a plugin already on the platform needs what its catalog record
names, unless git's new version of it no longer does (the new version may run before the
plan records it in the catalog). `purge` drops the plugin's migration history in every
tenant, as dropping its tables does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.model import API_VERSION, TenantStatus
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.desired.view import (
    DesiredPlugin,
    consumer_group,
    desired_plugin,
    env_hash,
    manifest_hash,
    policy_hash,
)
from plexica_gitops.lifecycle import LIFECYCLE_EDGES, LifecycleStatus
from plexica_gitops.live.model import (
    AppliedMigration,
    LivePermission,
    LivePlugin,
    LiveResources,
    LiveRoutes,
    LiveState,
    LiveTenant,
    LiveTenantPlugin,
    LiveTopic,
    LiveWorkload,
)
from plexica_gitops.plan.model import Action, Plan

S = LifecycleStatus
LIFECYCLE_STEPS = {verb for edges in LIFECYCLE_EDGES.values() for _, verb in edges}
DEPLOYED = {S.INSTALLED, S.ACTIVE, S.DISABLED}
RUNNING = {S.INSTALLED, S.ACTIVE}
# Statuses in which a plugin needs its dependencies to exist (deployed).
NEEDS_DEPENDENCIES = {S.INSTALLING, S.INSTALLED, S.ACTIVE, S.DISABLED}


class SimulationError(AssertionError):
    """The plan cannot be applied as written: the message names the action and why."""


@dataclass
class _World:
    """The mutable copy of the live state the simulation works on."""

    plugins: dict[str, LivePlugin]
    tenants: dict[str, LiveTenant]
    topics: dict[str, LiveTopic]
    last_applied: dict[str, str]
    topics_observed: bool = True
    done: set[str] = field(default_factory=set)


def simulate(
    plan: Plan, desired: DesiredState, live: LiveState, *, check_safety: bool = True
) -> LiveState:
    """Apply `plan` perfectly to a copy of `live`; raise `SimulationError` on a plan that a
    correct planner would never produce (see the module docstring)."""
    world = _World(
        plugins=dict(live.plugins),
        tenants=dict(live.tenants),
        topics=dict(live.topics),
        last_applied=dict(live.last_applied),
        topics_observed=live.topics_observed,
    )
    sim = _Simulator(desired, world, check_safety)
    seen_ids: set[str] = set()
    for action in plan.actions:
        if action.id in seen_ids:
            raise SimulationError(f"{action.id}: planned twice")
        seen_ids.add(action.id)
        missing = [dep for dep in action.depends_on if dep not in world.done]
        if missing:
            raise SimulationError(f"{action.id} runs before its dependencies {missing}")
        sim.apply(action)
        world.done.add(action.id)
    for address, fingerprint in plan.unrecorded.items():  # as apply records them
        world.last_applied.setdefault(address, fingerprint)
    return live.model_copy(
        update={
            "plugins": dict(sorted(world.plugins.items())),
            "tenants": dict(sorted(world.tenants.items())),
            "topics": dict(sorted(world.topics.items())),
            "last_applied": dict(sorted(world.last_applied.items())),
        }
    )


class _Simulator:
    def __init__(self, desired: DesiredState, world: _World, check_safety: bool) -> None:
        self.desired = desired
        self.world = world
        self.check_safety = check_safety
        self.plugins: dict[str, DesiredPlugin] = {
            pid: desired_plugin(entry, desired) for pid, entry in desired.plugins.items()
        }

    # --- dispatch ------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        parts = action.address.split(".")
        kind = parts[0]
        if kind == "plugin" and len(parts) == 2:
            self.plugin_step(action, parts[1])
        elif kind == "plugin" and len(parts) == 3:
            pid, resource = parts[1], parts[2]
            handler = {
                "workload": self.workload_step,
                "permissions": self.permissions_step,
                "routes": self.routes_step,
                "subscriptions": self.subscriptions_step,
                "data": self.data_step,
            }.get(resource)
            if handler is None:
                raise SimulationError(f"{action.id}: unknown plugin resource {resource!r}")
            handler(action, pid)
        elif kind == "topic":
            self.topic_step(action, action.address[len("topic.") :])
        elif kind == "tenant" and len(parts) == 2:
            self.tenant_step(action, parts[1])
        elif kind == "tenant" and len(parts) == 4 and parts[2] == "migrations":
            self.migrations_step(action, parts[1], parts[3])
        elif kind == "tenant" and len(parts) == 4 and parts[2] == "plugin":
            self.binding_step(action, parts[1], parts[3])
        else:
            raise SimulationError(f"{action.id}: unknown address")
        if action.fingerprint is not None:
            self.world.last_applied[action.address] = action.fingerprint
        elif action.step == "delete":
            self.world.last_applied.pop(action.address, None)

    def fail(self, action: Action, message: str) -> None:
        raise SimulationError(f"{action.id}: {message}")

    def safety(self, action: Action, ok: bool, message: str) -> None:
        if self.check_safety and not ok:
            self.fail(action, message)

    def desired_of(self, action: Action, pid: str) -> DesiredPlugin:
        desired = self.plugins.get(pid)
        if desired is None:
            self.fail(action, f"plugin {pid!r} is not in the desired state")
        assert desired is not None
        return desired

    def live_plugin(self, action: Action, pid: str) -> LivePlugin:
        plugin = self.world.plugins.get(pid)
        if plugin is None:
            self.fail(action, f"plugin {pid!r} does not exist on the platform")
        assert plugin is not None
        return plugin

    def status(self, pid: str) -> LifecycleStatus | None:
        plugin = self.world.plugins.get(pid)
        return plugin.status if plugin else None

    def dependencies(self, pid: str) -> set[str]:
        """What `pid` needs once this plan has brought it where git wants it: git's
        dependencies for a plugin git manages, the platform's record for one it does not."""
        if pid in self.plugins:
            return set(self.plugins[pid].dependencies)
        plugin = self.world.plugins.get(pid)
        return set(plugin.dependencies) if plugin else set()

    def dependents(self, pid: str) -> list[str]:
        """Plugins on the platform that use `pid`: their catalog record (the version that
        runs) names it, and, for a plugin git manages, so does git (a new version that drops
        the dependency may run before the plan records it in the catalog)."""
        return sorted(
            other
            for other, plugin in self.world.plugins.items()
            if other != pid
            and pid in plugin.dependencies
            and (other not in self.plugins or pid in self.plugins[other].dependencies)
        )

    # --- plugin lifecycle ----------------------------------------------------------------

    def plugin_step(self, action: Action, pid: str) -> None:
        if action.step == "update":
            self.catalog_update(action, pid)
            return
        if action.step not in LIFECYCLE_STEPS:
            self.fail(action, f"unknown plugin step {action.step!r}")
        current = self.status(pid)
        edges = {verb: following for following, verb in LIFECYCLE_EDGES.get(current, [])}
        if action.step not in edges:
            legal = sorted(edges) or ["none"]
            self.fail(
                action,
                f"{action.step!r} is not a lifecycle edge from "
                f"{current.value if current else 'nothing'} (legal: {', '.join(legal)})",
            )
        following = edges[action.step]
        if action.after and action.after.get("status") not in (None, following.value):
            self.fail(action, f"claims status {action.after['status']}, edge gives {following}")
        self.lifecycle_safety(action, pid)
        if action.step == "register":
            desired = self.desired_of(action, pid)
            entry = self.desired.plugins[pid]
            self.world.plugins[pid] = LivePlugin(
                status=following,
                version=desired.version,
                manifest_hash=manifest_hash(entry),
                dependencies={d.plugin: d.version for d in entry.manifest.dependencies},
            )
            return
        plugin = self.live_plugin(action, pid)
        update: dict[str, Any] = {"status": following}
        if action.step == "install":  # what is installed is git's manifest
            entry = self.desired.plugins[pid]
            update["dependencies"] = {d.plugin: d.version for d in entry.manifest.dependencies}
        if following is S.UNINSTALLED:
            update |= {
                "workload": None,
                "permissions": {},
                "routes": None,
                "subscriptions": {},
                "error": None,
            }
        if following is S.INSTALLED and action.step == "mark-installed":
            update["error"] = None
        self.world.plugins[pid] = plugin.model_copy(update=update)

    def lifecycle_safety(self, action: Action, pid: str) -> None:
        plugin = self.world.plugins.get(pid)
        deps = self.dependencies(pid)
        if action.step == "install":
            for dep in sorted(deps):
                self.safety(
                    action,
                    self.status(dep) in DEPLOYED,
                    f"installs before its dependency {dep!r} is installed "
                    f"(it is {self.status(dep)})",
                )
        if action.step == "activate":
            for dep in sorted(deps):
                self.safety(
                    action,
                    self.status(dep) is S.ACTIVE,
                    f"activates before its dependency {dep!r} is active (it is {self.status(dep)})",
                )
            workload = plugin.workload if plugin else None
            self.safety(
                action,
                workload is not None and workload.running,
                "activates a plugin whose workload is not running",
            )
        if action.step == "disable":
            for other in self.dependents(pid):
                self.safety(
                    action,
                    self.status(other) is not S.ACTIVE,
                    f"disables it while {other!r}, which depends on it, is still ACTIVE",
                )
        if action.step in ("uninstall", "deregister"):
            for other in self.dependents(pid):
                self.safety(
                    action,
                    self.status(other) not in NEEDS_DEPENDENCIES,
                    f"{action.step}s it while {other!r}, which depends on it, is "
                    f"{self.status(other)}",
                )

    def catalog_update(self, action: Action, pid: str) -> None:
        desired = self.desired_of(action, pid)
        plugin = self.live_plugin(action, pid)
        entry = self.desired.plugins[pid]
        self.world.plugins[pid] = plugin.model_copy(
            update={
                "version": desired.version,
                "manifest_hash": manifest_hash(entry),
                "dependencies": {d.plugin: d.version for d in entry.manifest.dependencies},
            }
        )

    # --- plugin resources ----------------------------------------------------------------

    def workload_step(self, action: Action, pid: str) -> None:
        plugin = self.live_plugin(action, pid)
        current = plugin.workload
        step = action.step
        if step == "delete":
            if current is None:
                self.fail(action, "deletes a workload that does not exist")
            self.set_plugin(pid, workload=None)
            return
        if step == "stop":
            if current is None:
                self.fail(action, "stops a workload that does not exist")
            assert current is not None
            self.safety(
                action,
                plugin.routes is None,
                "stops the containers while gateway routes still send traffic to them",
            )
            self.set_plugin(
                pid, workload=current.model_copy(update={"running": False, "ready_replicas": 0})
            )
            return
        if step not in ("create", "replace", "scale", "start"):
            self.fail(action, f"unknown workload step {step!r}")
        if step == "create" and current is not None:
            self.fail(action, "creates a workload that already exists")
        if step != "create" and current is None:
            self.fail(action, f"{step}s a workload that does not exist")
        desired = self.desired_of(action, pid)
        running = self.wanted_running(action, pid)
        if step == "replace":
            self.safety(
                action,
                running or plugin.routes is None,
                "replaces the workload with stopped containers while routes still send "
                "traffic to it",
            )
        want = desired.workload
        replicas = int(want["replicas"])
        self.set_plugin(
            pid,
            workload=LiveWorkload(
                image=want["image"],
                version=want["version"],
                manifest_hash=desired.manifest_hash,
                replicas=replicas,
                ready_replicas=replicas if running else 0,
                running=running,
                resources=LiveResources(cpu=want["cpu"], memory=want["memory"]),
                env_hash=env_hash(want["env"]),
                policy_hash=policy_hash(want.get("policy")),
            ),
        )

    def wanted_running(self, action: Action, pid: str) -> bool:
        """`start` runs the containers; any other step leaves them as the desired lifecycle
        state wants them (running when installed or active, stopped when disabled)."""
        return action.step == "start" or self.desired_of(action, pid).target in RUNNING

    def permissions_step(self, action: Action, pid: str) -> None:
        self.live_plugin(action, pid)
        if action.step == "delete":
            self.set_plugin(pid, permissions={})
            return
        if action.step not in ("create", "update"):
            self.fail(action, f"unknown permissions step {action.step!r}")
        desired = self.desired_of(action, pid)
        for key in desired.permissions:
            for other, plugin in self.world.plugins.items():
                if other != pid and key in plugin.permissions:
                    self.fail(action, f"permission {key!r} is still registered by {other!r}")
        self.set_plugin(
            pid,
            permissions={
                key: LivePermission(name=value["name"], description=value["description"])
                for key, value in desired.permissions.items()
            },
        )

    def routes_step(self, action: Action, pid: str) -> None:
        plugin = self.live_plugin(action, pid)
        if action.step == "delete":
            self.set_plugin(pid, routes=None)
            return
        if action.step not in ("create", "update"):
            self.fail(action, f"unknown routes step {action.step!r}")
        workload = plugin.workload
        self.safety(
            action,
            workload is not None and workload.running and workload.ready_replicas > 0,
            "registers routes before the workload is running and ready",
        )
        routes = self.desired_of(action, pid).routes
        self.set_plugin(pid, routes=LiveRoutes(**routes))

    @property
    def core_topics(self) -> set[str]:
        platform = self.desired.platform
        return set(platform.document.spec.events.platform_topics) if platform else set()

    def subscriptions_step(self, action: Action, pid: str) -> None:
        self.live_plugin(action, pid)
        if action.step == "delete":
            self.set_plugin(pid, subscriptions={})
            return
        if action.step not in ("create", "update"):
            self.fail(action, f"unknown subscriptions step {action.step!r}")
        if self.world.topics_observed:
            missing = [
                event
                for event in self.desired_of(action, pid).subscribes
                if event not in self.world.topics and event not in self.core_topics
            ]
            self.safety(action, not missing, f"subscribes before topics {missing} exist")
        subscribes = self.desired_of(action, pid).subscribes
        self.set_plugin(pid, subscriptions={event: consumer_group(pid) for event in subscribes})

    def data_step(self, action: Action, pid: str) -> None:
        if action.step != "purge":
            self.fail(action, f"unknown data step {action.step!r}")
        self.safety(
            action,
            self.status(pid) in (S.UNINSTALLING, S.UNINSTALLED),
            f"purges data of a plugin that is {self.status(pid)}",
        )
        for slug, tenant in list(self.world.tenants.items()):
            if pid in tenant.migrations:
                migrations = {k: v for k, v in tenant.migrations.items() if k != pid}
                self.world.tenants[slug] = tenant.model_copy(update={"migrations": migrations})

    def set_plugin(self, pid: str, **update: Any) -> None:
        self.world.plugins[pid] = self.world.plugins[pid].model_copy(update=update)

    # --- topics --------------------------------------------------------------------------

    def topic_step(self, action: Action, event: str) -> None:
        current = self.world.topics.get(event)
        if action.step == "delete":
            if current is None:
                self.fail(action, "deletes a topic that does not exist")
            assert current is not None
            if current.owner is None:
                self.fail(action, "deletes a topic plexica-gitops did not create")
            del self.world.topics[event]
            return
        after = action.after or {}
        if action.step == "create":
            if current is not None:
                self.fail(action, "creates a topic that already exists")
            self.world.topics[event] = LiveTopic(
                owner=action.plugin,
                partitions=int(after["partitions"]),
                replication_factor=int(after["replication_factor"]),
                config=dict(after["config"]),
            )
            return
        if action.step != "update":
            self.fail(action, f"unknown topic step {action.step!r}")
        if current is None:
            self.fail(action, "updates a topic that does not exist")
        assert current is not None
        if current.owner is None:
            self.fail(action, "changes a topic plexica-gitops did not create")
        if int(after["partitions"]) < current.partitions:
            self.fail(action, "shrinks a topic's partitions")
        self.world.topics[event] = current.model_copy(
            update={
                "partitions": int(after["partitions"]),
                "config": {**current.config, **after["config"]},
            }
        )

    # --- tenants -------------------------------------------------------------------------

    def tenant_step(self, action: Action, slug: str) -> None:
        current = self.world.tenants.get(slug)
        entry = self.desired.tenants.get(slug)
        if action.step == "create":
            if current is not None:
                self.fail(action, "creates a tenant that already exists")
            if entry is None:
                self.fail(action, "creates a tenant that is not in the desired state")
            assert entry is not None
            spec = entry.document.spec
            self.world.tenants[slug] = LiveTenant(
                id=spec.id, schema_name=spec.schema_name, status=spec.status.value
            )
            return
        if current is None:
            self.fail(action, f"{action.step}s a tenant that does not exist")
        assert current is not None
        if action.step == "delete":
            self.world.tenants[slug] = current.model_copy(update={"status": TenantStatus.DELETED})
            return
        if action.step != "update":
            self.fail(action, f"unknown tenant step {action.step!r}")
        if entry is None:
            self.fail(action, "updates a tenant that is not in the desired state")
        assert entry is not None
        self.world.tenants[slug] = current.model_copy(update={"status": entry.document.spec.status})

    def migrations_step(self, action: Action, slug: str, pid: str) -> None:
        if action.step != "apply":
            self.fail(action, f"unknown migrations step {action.step!r}")
        tenant = self.world.tenants.get(slug)
        if tenant is None:
            self.fail(action, "applies migrations in a tenant that does not exist")
        assert tenant is not None
        # A suspended tenant is migrated just before it becomes active again, never a
        # tenant git keeps suspended (or deleted).
        desired_tenant = self.desired.tenants.get(slug)
        self.safety(
            action,
            desired_tenant is not None
            and desired_tenant.document.spec.status is TenantStatus.ACTIVE,
            f"applies migrations in a tenant git wants {tenant.status}",
        )
        self.safety(
            action,
            self.status(pid) in (S.INSTALLING, *DEPLOYED),
            f"applies migrations of a plugin that is {self.status(pid)}",
        )
        entry = self.desired.plugins.get(pid)
        if entry is None:
            self.fail(action, f"plugin {pid!r} is not in the desired state")
        assert entry is not None
        applied = list(tenant.migrations.get(pid, []))
        done = {m.version for m in applied}
        newest = max(done, default=0)
        for migration in entry.migrations:
            if migration.number in done:
                continue
            if migration.number < newest:
                self.fail(action, f"applies {migration.path} below applied {newest:04d}")
            applied.append(
                AppliedMigration(
                    version=migration.number, name=migration.name, checksum=migration.checksum
                )
            )
        self.world.tenants[slug] = tenant.model_copy(
            update={"migrations": {**tenant.migrations, pid: applied}}
        )

    def binding_step(self, action: Action, slug: str, pid: str) -> None:
        tenant = self.world.tenants.get(slug)
        if tenant is None:
            self.fail(action, "changes a plugin binding of a tenant that does not exist")
        assert tenant is not None
        current = tenant.plugins.get(pid)
        entry = self.desired.tenants.get(slug)
        binding = entry.document.spec.plugins.get(pid) if entry else None
        step = action.step
        if step not in ("enable", "disable", "configure"):
            self.fail(action, f"unknown binding step {step!r}")
        if binding is not None:
            # a binding git enables is held off while its plugin is not to be active: the
            # action's `after` says so (steps._binding does the same)
            enabled = binding.enabled and bool((action.after or {}).get("enabled", True))
            if binding.enabled and not enabled:
                self.safety(
                    action,
                    pid in self.plugins and self.plugins[pid].target is not S.ACTIVE,
                    f"holds off a binding of {pid!r}, which is to be active",
                )
            configuration = dict(binding.configuration)
        else:  # not declared in git: only ever forced off, configuration kept
            if step != "disable":
                self.fail(action, f"{step}s a binding git does not declare")
            enabled = False
            configuration = dict(current.configuration) if current else {}
        if step == "enable" and not enabled:
            self.fail(action, "enables a binding git declares disabled")
        if step == "disable" and enabled:
            self.fail(action, "disables a binding git declares enabled")
        if enabled and not (current and current.enabled):
            self.safety(
                action,
                self.status(pid) is S.ACTIVE,
                f"enables {pid!r} for the tenant while it is {self.status(pid)}",
            )
            for dep in sorted(self.dependencies(pid)):
                dep_binding = tenant.plugins.get(dep)
                self.safety(
                    action,
                    dep_binding is not None and dep_binding.enabled,
                    f"enables {pid!r} before its dependency {dep!r} is enabled for the tenant",
                )
        if not enabled and current is not None and current.enabled:
            for other, other_binding in sorted(tenant.plugins.items()):
                if other_binding.enabled and other in self.dependents(pid):
                    self.safety(
                        action,
                        False,
                        f"disables {pid!r} while {other!r}, which depends on it, is still "
                        "enabled for the tenant",
                    )
        self.world.tenants[slug] = tenant.model_copy(
            update={
                "plugins": {
                    **tenant.plugins,
                    pid: LiveTenantPlugin(enabled=enabled, configuration=configuration),
                }
            }
        )


# --- small desired states, written as directories ----------------------------------------
#
# Both test modules build desired states the way users do: YAML files in a directory, read
# back with `validate_directory`. These helpers write the documents; every value that the
# validator checks across files (tenant ids and schemas, image tags, base paths, migration
# contents) is derived from the names, so two states built from the same names agree.

PLATFORM_TOPICS = ("core.tenant.created",)
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"level": {"type": "integer"}, "apiToken": {"type": "string"}},
}


def tenant_id(slug: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{slug}.tenants.plexica.test"))


def migration_sql(pid: str, number: int) -> str:
    return f"-- {pid} migration {number}\nCREATE TABLE {pid}_t{number} (id bigint);\n"


def migration_file_name(pid: str, number: int) -> str:
    return f"{number:04d}_create_{pid}_t{number}.sql"


def platform_document(
    *,
    prune: bool = False,
    retention_ms: str = "604800000",
    partitions: int = 3,
    strategy: str = "rolling",
    env: dict[str, Any] | None = None,
    provider: str = "docker",
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Platform",
        "metadata": {"name": "test"},
        "spec": {
            "version": "2.4.0",
            "runtime": {"provider": provider},
            "events": {
                "platformTopics": list(PLATFORM_TOPICS),
                "defaults": {
                    "partitions": partitions,
                    "replicationFactor": 1,
                    "config": {"retention.ms": retention_ms},
                },
            },
            "rollout": {"strategy": strategy},
            "prune": prune,
            "env": {"DATABASE_URL": {"fromEnv": "PLEXICA_PLUGIN_DATABASE_URL"}, **(env or {})},
        },
    }


def plugin_document(
    pid: str,
    *,
    state: str = "active",
    version: str = "1.0.0",
    dependencies: Iterable[str] = (),
    replicas: int = 1,
    cpu: str = "250m",
    memory: str = "256Mi",
    env: dict[str, Any] | None = None,
    migrations: bool = False,
    publishes: Iterable[str] = (),
    subscribes: Iterable[str] = (),
    permissions: Iterable[str] | dict[str, str] = (),
    frontend: bool = False,
    purge: bool = False,
    strategy: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """A Plugin document; `permissions` are actions (`items:read`) prefixed with the id, or
    a mapping of full keys to display names."""
    named = (
        dict(permissions)
        if isinstance(permissions, dict)
        else {f"{pid}:{p}": p.replace(":", " ") for p in permissions}
    )
    manifest: dict[str, Any] = {
        "id": pid,
        "name": pid.title(),
        "version": version,
        "description": description,
        "runtime": {
            "type": "typescript",
            "image": f"registry.example.com/plugins/{pid}:{version}",
            "resources": {"cpu": cpu, "memory": memory},
        },
        "compat": {"core": "^2.0.0"},
        "dependencies": [{"plugin": d, "version": "^1.0.0"} for d in dependencies],
        "api": {"basePath": f"/api/plugins/{pid}", "port": 8080},
        "permissions": [
            {"key": key, "name": name, "description": ""} for key, name in named.items()
        ],
        "events": {"publishes": list(publishes), "subscribes": list(subscribes)},
        "configuration": {"schema": CONFIG_SCHEMA},
    }
    if frontend:
        manifest["frontend"] = {
            "remoteEntry": f"https://cdn.example.com/plugins/{pid}/remoteEntry.js",
            "routePrefix": f"/{pid}",
        }
    if migrations:
        manifest["migrations"] = {"path": "migrations"}
    spec: dict[str, Any] = {
        "state": state,
        "replicas": replicas,
        "env": dict(env or {}),
        "purgeDataOnUninstall": purge,
        "manifest": manifest,
    }
    if strategy is not None:
        spec["rollout"] = {"strategy": strategy}
    return {"apiVersion": API_VERSION, "kind": "Plugin", "metadata": {"name": pid}, "spec": spec}


def tenant_document(
    slug: str,
    *,
    status: str = "active",
    plugins: dict[str, dict[str, Any]] | None = None,
    tenant_uuid: str | None = None,
    schema: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": slug},
        "spec": {
            "id": tenant_uuid or tenant_id(slug),
            "schema": schema or f"tenant_{slug.replace('-', '_')}",
            "status": status,
            "plugins": dict(plugins or {}),
        },
    }


def write_desired_state(
    root: Path,
    platform: dict[str, Any],
    plugins: Iterable[dict[str, Any]] = (),
    tenants: Iterable[dict[str, Any]] = (),
    migrations: dict[str, int] | None = None,
) -> Path:
    """Write a desired-state directory; `migrations` maps a plugin id to how many
    migration files it has (its documents must say `migrations: true`)."""
    root.mkdir(parents=True, exist_ok=True)
    _dump(root / "platform.yaml", platform)
    for document in plugins:
        pid = document["metadata"]["name"]
        _dump(root / "plugins" / pid / "plugin.yaml", document)
        count = (migrations or {}).get(pid, 0)
        if document["spec"]["manifest"].get("migrations"):
            directory = root / "plugins" / pid / "migrations"
            directory.mkdir(parents=True, exist_ok=True)
            for number in range(1, count + 1):
                path = directory / migration_file_name(pid, number)
                path.write_text(migration_sql(pid, number), encoding="utf-8")
    for document in tenants:
        _dump(root / "tenants" / f"{document['metadata']['name']}.yaml", document)
    return root


def load_valid(root: Path) -> DesiredState:
    """The desired state of `root`, which must validate without errors."""
    report = validate_directory(root)
    problems = [f"{f.code} {f.location}: {f.message}" for f in report.errors]
    assert not problems, "generated desired state is invalid:\n" + "\n".join(problems)
    return report.desired


def _dump(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
