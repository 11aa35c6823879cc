"""The live state: what exists on the platform, as the planner sees it.

It is a plain value, observed from PostgreSQL, the runtime provider and Kafka (or read from
a JSON file with `plan --live-state FILE`, where `{}` is an empty platform). The planner
never performs I/O; everything it needs about the world is in here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Set as AbstractSet
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from plexica_gitops.desired.model import TenantStatus
from plexica_gitops.hashing import canonical_json
from plexica_gitops.lifecycle import LifecycleStatus

if TYPE_CHECKING:
    from plexica_gitops.desired.build import DesiredState


class ObservedPart(StrEnum):
    """A part of the live platform observed apart from the store; a plan made without one
    (`plan --unobserved PART`) says so."""

    RUNTIME = "runtime"  # the runtime provider: workloads
    BROKER = "broker"  # the event broker: topics

    @property
    def holds(self) -> str:
        return "workloads" if self is ObservedPart.RUNTIME else "topics"

    @property
    def label(self) -> str:
        return "the runtime provider" if self is ObservedPart.RUNTIME else "the event broker"


class _Live(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiveResources(_Live):
    cpu: str | None = None
    memory: str | None = None


class LiveReplica(_Live):
    """One replica (container, pod) as the runtime reports it, whatever spec built it."""

    name: str
    version: str
    image: str = ""
    manifest_hash: str = ""
    env_hash: str = ""
    running: bool = True
    ready: bool = False  # answered its readiness probe when observed
    url: str | None = None  # where the gateway would send traffic; None: no address yet

    @property
    def build(self) -> tuple[str, str, str, str]:
        """What tells replicas of one spec from another's."""
        return (self.version, self.image, self.manifest_hash, self.env_hash)


class LiveWorkload(_Live):
    """The plugin's containers (or Deployment) as the runtime provider reports them.

    `instances` lists every replica. A rollout cut short by a crash leaves replicas of two
    versions: the counts (`replicas`, `ready_replicas`, `running`) cover all of them, and
    `image`, `version` and the hashes are those of the most common build. Snapshots from
    before `instances` existed leave it empty: the other fields then describe them all."""

    image: str
    version: str
    manifest_hash: str = ""
    replicas: int = Field(ge=0, description="Replicas that exist (running or stopped).")
    ready_replicas: int = Field(default=0, ge=0)
    running: bool = True
    resources: LiveResources = Field(default_factory=LiveResources)
    env_hash: str = ""  # hash of the env *specification* (names and references), never values
    # keyed digest of the env values the replicas run with (workload.env_digest); "mixed"
    # when they differ, "" when unknown (replicas made before digests were labelled)
    env_digest: str = ""
    # hash of the autoscaling and egress applied (desired.view.policy_hash); "" for none,
    # or from a provider that ignores them
    policy_hash: str = ""
    # Registered endpoints (service registry) whose replica no longer runs: traffic sent
    # there fails. Filled in when the store and the runtime are observed together.
    stale_endpoints: int = Field(default=0, ge=0)
    # Ready replicas of a routed plugin that the service registry does not list: they get
    # no traffic. Filled in like `stale_endpoints`.
    unregistered_endpoints: int = Field(default=0, ge=0)
    instances: tuple[LiveReplica, ...] = ()

    def builds(self) -> dict[tuple[str, str, str, str], int]:
        """How many replicas each build has, most common first (ties by version)."""
        counts: dict[tuple[str, str, str, str], int] = {}
        for replica in self.instances:
            counts[replica.build] = counts.get(replica.build, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


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
    # The rest of what apply writes to the catalog row, read back so that an edit made
    # outside plexica-gitops shows as drift; None: not observed (an older snapshot).
    name: str | None = None
    # `stable_hash` of the manifest the row holds, recomputed when observed (the
    # manifest_hash column can be edited apart from it); UNREADABLE when the stored
    # manifest is too deep or too large to read.
    stored_manifest_hash: str | None = None


UNREADABLE = "(unreadable)"


def not_read(why: str) -> str:
    """What a plan shows for a stored value it did not read (out of bounds): apply's
    compare-and-set accepts whatever is stored there, since the plan overwrites it."""
    return f"{NOT_READ_PREFIX}{why})"


NOT_READ_PREFIX = "(not read: "


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
    # address -> why a value there could not be read (nested too deep, too large): it was
    # left out (a binding's configuration reads as {}), never shown.
    unreadable: dict[str, str] = Field(default_factory=dict)

    def without(self, parts: AbstractSet[ObservedPart]) -> LiveState:
        """This state as if `parts` had not been observed (`plan --unobserved`)."""
        update: dict[str, Any] = {}
        if ObservedPart.BROKER in parts:
            update.update(topics={}, topics_observed=False)
        if ObservedPart.RUNTIME in parts:
            plugins = {
                pid: plugin.model_copy(update={"workload": None})
                for pid, plugin in self.plugins.items()
            }
            update.update(plugins=plugins, workloads_observed=False)
        return self.model_copy(update=update) if update else self

    @classmethod
    def from_json(cls, data: str | bytes, desired: DesiredState | None = None) -> LiveState:
        """`model_validate_json`, with the same result and errors, faster and in far less
        memory for large snapshots; configurations equal to the `desired` state's are its
        objects: see `live.codec.parse_live_state`."""
        from plexica_gitops.live.codec import parse_live_state  # the codec builds this model

        return parse_live_state(data, desired)

    @classmethod
    def from_json_file(cls, path: Path, desired: DesiredState | None = None) -> LiveState:
        """`from_json(path.read_text(encoding="utf-8"), desired)`, the file read a piece at
        a time: see `live.codec.read_live_state_file`."""
        from plexica_gitops.live.codec import read_live_state_file

        return read_live_state_file(path, desired)

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
                if section is self.plugins:
                    _drop_unset(entry, _LATER_PLUGIN_FIELDS)
                workload = entry.get("workload")
                if workload:
                    _drop_unset(workload, _LATER_WORKLOAD_FIELDS)
                digest.update(json.dumps([key, entry], sort_keys=True).encode())
        # The same migration record is usually shared by every tenant (observe_store and
        # parse_live_state build it once): its text is made once per record object.
        records: dict[int, str] = {}
        canonical = canonical_json
        update = digest.update
        for slug in sorted(self.tenants):
            tenant = self.tenants[slug]
            parts = [slug, tenant.id, tenant.schema_name, tenant.status.value]
            bindings = tenant.plugins
            for pid in sorted(bindings):
                binding = bindings[pid]
                configuration = binding.configuration
                parts += (
                    pid,
                    "True" if binding.enabled else "False",
                    canonical(configuration) if configuration else "{}",
                )
            migrations = tenant.migrations
            for pid in sorted(migrations):
                for m in migrations[pid]:
                    text = records.get(id(m))
                    if text is None:
                        text = records[id(m)] = f":{m.version}:{m.name}:{m.checksum}"
                    parts.append(pid + text)
            update("\x1f".join(parts).encode())
        # A million entries: "=".join over the sorted pairs, in C (keys are unique, so the
        # pairs sort as their keys do), hashed a slice at a time: the text of them all would
        # be a few hundred MB at once.
        applied = self.last_applied
        addresses = sorted(applied)
        for start in range(0, len(addresses), _APPLIED_SLICE):
            chunk = addresses[start : start + _APPLIED_SLICE]
            text = "\x1f".join(
                map("=".join, zip(chunk, map(applied.__getitem__, chunk), strict=True))
            )
            update(("\x1f" + text if start else text).encode())
        if self.unreadable:  # hashed only when there is any: older fingerprints stay the same
            digest.update(json.dumps(self.unreadable, sort_keys=True).encode())
        return "sha256:" + digest.hexdigest()


_APPLIED_SLICE = 10_000  # last-applied entries hashed at a time

# Workload fields added after the fingerprint was first defined are hashed only when set:
# a state that does not use them keeps the fingerprint it always had.
_LATER_WORKLOAD_FIELDS = {"unregistered_endpoints": 0, "instances": [], "policy_hash": ""}
_LATER_PLUGIN_FIELDS = {"name": None, "stored_manifest_hash": None}


def _drop_unset(entry: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, default in fields.items():
        if entry.get(name) == default:
            del entry[name]
