"""The live state: what exists on the platform, as the planner sees it.

It is a plain value, observed from PostgreSQL, the runtime provider and Kafka (or read from
a JSON file with `plan --live-state FILE`, where `{}` is an empty platform). The planner
never performs I/O; everything it needs about the world is in here.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from plexica_gitops.model import TenantStatus


class LifecycleStatus(StrEnum):
    """Spec 004 FR-003: the plugin lifecycle as the platform records it."""

    REGISTERED = "REGISTERED"
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    UNINSTALLING = "UNINSTALLING"
    UNINSTALLED = "UNINSTALLED"


class _Live(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiveResources(_Live):
    cpu: str | None = None
    memory: str | None = None


class LiveWorkload(_Live):
    """The plugin's containers (or Deployment) as the runtime provider reports them."""

    image: str
    version: str
    manifest_hash: str = ""
    replicas: int = Field(ge=0, description="Replicas that exist (running or stopped).")
    ready_replicas: int = Field(default=0, ge=0)
    running: bool = True
    resources: LiveResources = Field(default_factory=LiveResources)
    env_hash: str = ""  # hash of the env *specification* (names and references), never values


class LivePermission(_Live):
    name: str
    description: str = ""


class LiveRoutes(_Live):
    base_path: str
    frontend_prefix: str | None = None
    remote_entry: str | None = None


class LivePlugin(_Live):
    status: LifecycleStatus
    version: str
    manifest_hash: str = ""
    dependencies: dict[str, str] = Field(default_factory=dict)  # plugin id -> version range
    error: str | None = None  # last recorded failure, e.g. an image pull error
    workload: LiveWorkload | None = None
    permissions: dict[str, LivePermission] = Field(default_factory=dict)
    routes: LiveRoutes | None = None
    subscriptions: dict[str, str] = Field(default_factory=dict)  # topic -> consumer group


class LiveTopic(_Live):
    owner: str | None = None  # plugin id that created it; None: not created by us
    partitions: int = Field(ge=1)
    replication_factor: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)


# A million bindings and twice as many migration records: these two are slotted pydantic
# dataclasses rather than models, about a third less memory each and faster to parse.
_SMALL = ConfigDict(extra="forbid")


@pydantic_dataclass(frozen=True, slots=True, config=_SMALL)
class LiveTenantPlugin:
    enabled: bool
    configuration: dict[str, Any] = Field(default_factory=dict)


@pydantic_dataclass(frozen=True, slots=True, config=_SMALL)
class AppliedMigration:
    version: int
    name: str
    checksum: str


class LiveTenant(_Live):
    id: str
    schema_name: str
    status: TenantStatus
    plugins: dict[str, LiveTenantPlugin] = Field(default_factory=dict)
    migrations: dict[str, list[AppliedMigration]] = Field(default_factory=dict)


class LiveState(_Live):
    """Everything observed. `topics_observed` is false when the broker could not be read,
    `workloads_observed` when the runtime provider was not: the planner then plans no
    changes there rather than recreating what it cannot see."""

    platform_version: str | None = None
    plugins: dict[str, LivePlugin] = Field(default_factory=dict)
    tenants: dict[str, LiveTenant] = Field(default_factory=dict)
    topics: dict[str, LiveTopic] = Field(default_factory=dict)
    topics_observed: bool = True
    # False when no runtime provider was asked: workload changes are then left out of the
    # plan (a plugin that may have containers is not planned to get new ones).
    workloads_observed: bool = True
    # address -> fingerprint of the desired attributes the reconciler last applied there;
    # lets a plan tell drift (live changed out of band) from a change made in git.
    last_applied: dict[str, str] = Field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of everything observed that does not depend on the order the observer
        happened to read things in. Tenants and bindings are many (a million bindings), so
        they are hashed entry by entry rather than dumped whole."""
        digest = hashlib.sha256()
        flags = (self.platform_version, self.topics_observed, self.workloads_observed)
        digest.update(json.dumps(flags).encode())
        for section in (self.plugins, self.topics):
            for key in sorted(section):
                entry = section[key].model_dump(mode="json")
                digest.update(json.dumps([key, entry], sort_keys=True).encode())
        for slug in sorted(self.tenants):
            tenant = self.tenants[slug]
            parts = [slug, tenant.id, tenant.schema_name, tenant.status.value]
            for pid in sorted(tenant.plugins):
                binding = tenant.plugins[pid]
                parts += (pid, str(binding.enabled), _canonical_json(binding.configuration))
            for pid in sorted(tenant.migrations):
                parts += (
                    f"{pid}:{m.version}:{m.name}:{m.checksum}" for m in tenant.migrations[pid]
                )
            digest.update("\x1f".join(parts).encode())
        applied = self.last_applied
        digest.update("\x1f".join(f"{a}={applied[a]}" for a in sorted(applied)).encode())
        return "sha256:" + digest.hexdigest()


def _canonical_json(value: dict[str, Any]) -> str:
    # Key order differs between sources (jsonb sorts keys, a JSON file keeps them).
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else "{}"


def stable_hash(value: Any) -> str:
    """A short, deterministic hash of a JSON-compatible value (manifests, env specs)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
