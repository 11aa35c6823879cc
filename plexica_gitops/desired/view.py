"""Derived views of the desired state that the planner, the workload spec and the step
executors share: a plugin's attributes as the plan compares them, its manifest and env
hashes, its topics' settings and consumer group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plexica_gitops.desired.build import DesiredState, PluginEntry
from plexica_gitops.desired.model import RolloutStrategy, TopicDefaults, TopicOverrides
from plexica_gitops.hashing import stable_hash
from plexica_gitops.lifecycle import TARGET_STATUS, LifecycleStatus


@dataclass(frozen=True, slots=True)
class DesiredPlugin:
    """The attributes of a plugin the planner compares, derived once from its entry."""

    id: str
    target: LifecycleStatus
    version: str
    manifest_hash: str
    name: str
    stored_manifest_hash: str  # of the manifest as the catalog row holds it
    dependencies: tuple[str, ...]
    workload: dict[str, Any]
    permissions: dict[str, dict[str, str]]
    routes: dict[str, Any]
    publishes: tuple[str, ...]
    subscribes: tuple[str, ...]
    migrations: tuple[tuple[int, str, str], ...]  # (version, name, checksum)
    purge_data: bool


def desired_plugin(entry: PluginEntry, desired: DesiredState) -> DesiredPlugin:
    manifest = entry.manifest
    spec = entry.document.spec
    platform_env: dict[str, Any] = {}
    strategy = RolloutStrategy.ROLLING
    if desired.platform is not None:
        platform_spec = desired.platform.document.spec
        platform_env = {k: _env_value(v) for k, v in platform_spec.env.items()}
        strategy = platform_spec.rollout.strategy
    env = {**platform_env, **{k: _env_value(v) for k, v in spec.env.items()}}
    frontend = manifest.frontend
    workload: dict[str, Any] = {
        "image": manifest.runtime.image,
        "version": manifest.version,
        "replicas": spec.replicas,
        "cpu": manifest.runtime.resources.cpu,
        "memory": manifest.runtime.resources.memory,
        "env": env,
        "strategy": (spec.rollout.strategy or strategy).value,
    }
    policy = _policy(entry, desired)
    if policy:  # only when declared: the fingerprints of every other workload stay the same
        workload["policy"] = policy
    return DesiredPlugin(
        id=entry.id,
        target=TARGET_STATUS[spec.state],
        version=manifest.version,
        manifest_hash=manifest_hash(entry),
        name=manifest.name,
        stored_manifest_hash=stable_hash(catalog_manifest(entry)),
        dependencies=tuple(sorted(d.plugin for d in manifest.dependencies)),
        workload=workload,
        permissions={
            p.key: {"name": p.name, "description": p.description} for p in manifest.permissions
        },
        routes={
            "base_path": manifest.api.base_path.rstrip("/"),
            "frontend_prefix": frontend.route_prefix.rstrip("/") if frontend else None,
            "remote_entry": frontend.remote_entry if frontend else None,
        },
        publishes=tuple(manifest.events.publishes),
        subscribes=tuple(manifest.events.subscribes),
        migrations=tuple((m.number, m.name, m.checksum) for m in entry.migrations),
        purge_data=spec.purge_data_on_uninstall,
    )


def consumer_group(plugin_id: str) -> str:
    """The documented consumer group of a subscribing plugin (one per plugin: its replicas
    share the partitions)."""
    return f"plugin-{plugin_id}"


def manifest_hash(entry: PluginEntry) -> str:
    return stable_hash(entry.manifest.model_dump(mode="json", by_alias=True))


def catalog_manifest(entry: PluginEntry) -> dict[str, Any]:
    """The manifest as apply writes it into the catalog row (steps._register,
    steps._catalog_update)."""
    return entry.manifest.model_dump(mode="json", by_alias=True, exclude_none=True)


def env_hash(env: dict[str, Any]) -> str:
    """Hash of the env *specification*; the provider labels workloads with it."""
    return stable_hash(env)


# The runtime providers that ignore autoscaling and egress (validate warns, PGV518): there
# is nothing to apply, so a change of either plans nothing there.
POLICY_IGNORED_BY = frozenset({"docker"})


def _policy(entry: PluginEntry, desired: DesiredState) -> dict[str, Any]:
    """The plugin's autoscaling and egress as the workload view compares them ({} when it
    declares neither, or its provider ignores both)."""
    platform = desired.platform
    if platform is not None and platform.document.spec.runtime.provider in POLICY_IGNORED_BY:
        return {}
    spec = entry.document.spec
    policy: dict[str, Any] = {}
    if spec.autoscaling is not None:
        policy["autoscaling"] = spec.autoscaling.model_dump(mode="json", by_alias=True)
    if spec.network.egress:
        policy["egress"] = [
            rule.model_dump(mode="json", by_alias=True, exclude_none=True)
            for rule in spec.network.egress
        ]
    return policy


def policy_hash(policy: dict[str, Any] | None) -> str:
    """Hash of a workload view's `policy` ("" when there is none); the provider records
    it on what it applied, so a change in git is seen."""
    return stable_hash(policy) if policy else ""


def _env_value(value: Any) -> Any:
    return value if isinstance(value, str) else value.model_dump(by_alias=True)


def topic_settings(
    defaults: TopicDefaults | None, override: TopicOverrides | None
) -> dict[str, Any]:
    """The platform's topic defaults with one event's overrides applied."""
    settings: dict[str, Any] = {
        "partitions": defaults.partitions if defaults else 1,
        "replication_factor": defaults.replication_factor if defaults else 1,
        "config": dict(defaults.config) if defaults else {},
    }
    if override is None:
        return settings
    if override.partitions is not None:
        settings["partitions"] = override.partitions
    if override.replication_factor is not None:
        settings["replication_factor"] = override.replication_factor
    settings["config"].update(override.config)
    return settings
