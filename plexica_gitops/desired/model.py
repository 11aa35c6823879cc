"""The desired-state format: pydantic models for the three kinds, Platform, Plugin and Tenant.

These models are the edge of the system: the JSON Schemas in `schemas/` are generated from
them (`plexica-gitops schemas`), so editors and the validator see one contract. Semantic
rules (id formats, version ranges, cross-file references) live in `validate.py`, where each
has a stable code and can point at the exact node.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

API_VERSION = "plexica.io/v1alpha1"


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class PluginState(StrEnum):
    """Desired lifecycle state of a plugin (spec 004 FR-003, as seen from git)."""

    REGISTERED = "registered"
    INSTALLED = "installed"
    ACTIVE = "active"
    DISABLED = "disabled"
    ABSENT = "absent"


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class RolloutStrategy(StrEnum):
    ROLLING = "rolling"
    BLUE_GREEN = "blue-green"


# --- references: how values that must not live in git are named -------------------------


class FromEnv(_Model):
    """The value is read from the reconciler's environment at apply time."""

    from_env: str = Field(description="Name of an environment variable of the apply process.")


class SecretName(_Model):
    name: str = Field(description="Secret name in the runtime's secret store.")
    key: str = Field(description="Key inside that secret.")


class SecretRef(_Model):
    """The value lives in the runtime's secret store (a Kubernetes Secret, a Docker secret)."""

    secret_ref: SecretName


Reference = FromEnv | SecretRef
EnvValue = str | FromEnv | SecretRef


# --- Platform ----------------------------------------------------------------------------


class Metadata(_Model):
    name: str = Field(description="Plugin id for a Plugin, tenant slug for a Tenant.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class RuntimeSettings(BaseModel):
    """`provider` picks the runtime provider; its own settings sit beside it."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    provider: str = Field(description="Runtime provider name, e.g. docker or kubernetes.")


# Bounds on every number the runtime or the broker receives, so an out-of-range value fails
# `validate` at its line instead of `apply` halfway. Kafka's wire allows 2^31-1 partitions
# and 2^15-1 replicas; no topic needs more than 10,000 partitions (a broker serves a few
# thousand in all) nor a cluster more than 32 copies of a partition.
MAX_PARTITIONS = 10_000
MAX_REPLICATION_FACTOR = 32
MAX_SECONDS = 86_400  # a day: longer waits are typos (a timeout in milliseconds, say)


class TopicDefaults(_Model):
    partitions: int = Field(default=3, ge=1, le=MAX_PARTITIONS)
    replication_factor: int = Field(default=1, ge=1, le=MAX_REPLICATION_FACTOR)
    config: dict[str, str] = Field(
        default_factory=dict, description="Topic configs, e.g. retention.ms, cleanup.policy."
    )


class EventSettings(_Model):
    platform_topics: list[str] = Field(
        default_factory=list, description="Topics the core publishes; plugins may subscribe."
    )
    defaults: TopicDefaults = Field(default_factory=TopicDefaults)


class Rollout(_Model):
    strategy: RolloutStrategy = RolloutStrategy.ROLLING
    ready_probes: int = Field(
        default=3, ge=1, le=100, description="Consecutive ready answers before a replica serves."
    )
    probe_interval_seconds: float = Field(default=1.0, ge=0.05, le=3600)
    timeout_seconds: float = Field(default=120.0, ge=1, le=MAX_SECONDS)
    grace_period_seconds: float = Field(default=10.0, ge=0, le=3600)


class RolloutOverrides(_Model):
    """Per-plugin overrides of the platform's rollout defaults; unset fields inherit."""

    strategy: RolloutStrategy | SkipJsonSchema[None] = None
    ready_probes: int | SkipJsonSchema[None] = Field(default=None, ge=1, le=100)
    probe_interval_seconds: float | SkipJsonSchema[None] = Field(default=None, ge=0.05, le=3600)
    timeout_seconds: float | SkipJsonSchema[None] = Field(default=None, ge=1, le=MAX_SECONDS)
    grace_period_seconds: float | SkipJsonSchema[None] = Field(default=None, ge=0, le=3600)


class DriftIgnore(_Model):
    """Drift that another system owns, left out of `drift`'s report (and counted there)."""

    address: str = Field(
        pattern=r"^[a-z0-9*?][a-z0-9.*?_-]{0,252}$",
        description="The resources it covers: an address, `*` and `?` matching any "
        "characters (e.g. plugin.*.workload, tenant.acme.plugin.crm).",
    )
    fields: list[str] = Field(
        default_factory=list,
        description="Only changes of these attributes (e.g. replicas); empty: any change.",
    )


class DriftSettings(_Model):
    ignore: list[DriftIgnore] = Field(
        default_factory=list, description="Drift owned by other systems (an autoscaler, ...)."
    )


class Policy(_Model):
    """Rules about how the platform may be changed."""

    require_saved_plan: bool = Field(
        default=False,
        description="Apply only a saved plan (`plan --out FILE`, reviewed, then `apply "
        "FILE`): an apply that would plan afresh from a directory or a git revision is "
        "refused, --auto-approve or not.",
    )


class PlatformSpec(_Model):
    version: str = Field(description="Platform (core) version, checked against compat.core.")
    runtime: RuntimeSettings
    events: EventSettings = Field(default_factory=EventSettings)
    rollout: Rollout = Field(default_factory=Rollout)
    prune: bool = Field(
        default=False,
        description="Remove live objects git does not declare. Off: they are reported only.",
    )
    env: dict[str, EnvValue] = Field(
        default_factory=dict, description="Env injected into every plugin: references only."
    )
    drift: DriftSettings = Field(default_factory=DriftSettings)
    policy: Policy = Field(default_factory=Policy)


class PlatformDocument(_Model):
    api_version: Literal["plexica.io/v1alpha1"]
    kind: Literal["Platform"]
    metadata: Metadata
    spec: PlatformSpec


# --- Plugin manifest (spec 004 §7) -------------------------------------------------------


class Resources(_Model):
    cpu: str | SkipJsonSchema[None] = Field(default=None, description="e.g. 500m, 1, 1.5")
    memory: str | SkipJsonSchema[None] = Field(default=None, description="e.g. 512Mi, 1Gi, 500M")


class Runtime(_Model):
    type: Literal["typescript", "node"]
    image: str = Field(description="Image reference with a tag matching version, or a digest.")
    resources: Resources = Field(default_factory=Resources)


class Dependency(_Model):
    plugin: str
    version: str = Field(description="npm-style range: ^1.2.0, ~1.2, 1.x, >=2.1 <3.0, a || b")


class Compat(_Model):
    core: str = Field(description="npm-style range of platform versions this plugin runs on.")


class Api(_Model):
    base_path: str = Field(description="Must be /api/plugins/<id> (spec 004 FR-012).")
    health_check: str = "/health"
    readiness: str = "/health/ready"
    liveness: str = "/health/live"
    openapi: str | SkipJsonSchema[None] = None
    port: int = Field(default=8080, ge=1, le=65535)


class Frontend(_Model):
    remote_entry: str
    route_prefix: str = Field(description="Must be /<id> (spec 004 FR-012).")
    exposes: dict[str, str] = Field(default_factory=dict)


class Permission(_Model):
    key: str = Field(description="<plugin>:<resource>:<action>, unique across plugins.")
    name: str
    description: str = ""


class Translations(_Model):
    namespaces: list[str] = Field(default_factory=list)
    supported_locales: list[str] = Field(default_factory=list)


class Events(_Model):
    publishes: list[str] = Field(default_factory=list)
    subscribes: list[str] = Field(default_factory=list)


class Configuration(_Model):
    schema_: dict[str, Any] = Field(
        default_factory=dict, alias="schema", description="JSON Schema of tenant configuration."
    )


class Migrations(_Model):
    path: str = Field(description="Directory of NNNN_description.sql files, beside plugin.yaml.")


class Manifest(_Model):
    id: str
    name: str
    version: str
    description: str = ""
    runtime: Runtime
    compat: Compat | SkipJsonSchema[None] = None
    capabilities: list[str] = Field(default_factory=list)
    dependencies: list[Dependency] = Field(default_factory=list)
    api: Api
    frontend: Frontend | SkipJsonSchema[None] = None
    permissions: list[Permission] = Field(default_factory=list)
    translations: Translations = Field(default_factory=Translations)
    events: Events = Field(default_factory=Events)
    configuration: Configuration = Field(default_factory=Configuration)
    migrations: Migrations | SkipJsonSchema[None] = None


class TopicOverrides(_Model):
    """Per-event overrides of the platform's topic defaults (`events.defaults`)."""

    partitions: int | SkipJsonSchema[None] = Field(
        default=None,
        ge=1,
        le=MAX_PARTITIONS,
        description="Partitions can only ever grow on a live topic.",
    )
    replication_factor: int | SkipJsonSchema[None] = Field(
        default=None, ge=1, le=MAX_REPLICATION_FACTOR
    )
    config: dict[str, str] = Field(
        default_factory=dict, description="Merged over the defaults' config, key by key."
    )


MAX_REPLICAS = 100


class Autoscaling(_Model):
    """Replicas between the bounds, by CPU utilisation (a Kubernetes HPA). While declared,
    the replica count is the autoscaler's: `replicas` only seeds it."""

    min_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS, description="At least minReplicas.")
    target_cpu_utilization_percentage: int = Field(
        default=80,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU use, in percent of the requested CPU, the autoscaler keeps.",
    )


class EgressRule(_Model):
    """A destination the plugin may reach besides the platform's own services (core,
    PostgreSQL, Kafka, DNS): pods by their labels (in namespaces by theirs; without
    `namespaceLabels`, the plugins' own namespace), or a network `cidr`; on `ports`."""

    pod_labels: dict[str, str] | SkipJsonSchema[None] = None
    namespace_labels: dict[str, str] | SkipJsonSchema[None] = None
    cidr: str | SkipJsonSchema[None] = Field(
        default=None, max_length=64, description="e.g. 10.0.0.0/8 or 2001:db8::/32"
    )
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list, max_length=32, description="Empty: every port."
    )
    protocols: list[Protocol] = Field(
        default_factory=lambda: [Protocol.TCP], min_length=1, max_length=3
    )


class Network(_Model):
    egress: list[EgressRule] = Field(
        default_factory=list,
        max_length=64,
        description="What the plugin may reach beyond the platform's services (enforced "
        "where the runtime can: a Kubernetes NetworkPolicy).",
    )


class PluginSpec(_Model):
    state: PluginState
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    autoscaling: Autoscaling | SkipJsonSchema[None] = None
    network: Network = Field(default_factory=Network)
    rollout: RolloutOverrides = Field(default_factory=RolloutOverrides)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    purge_data_on_uninstall: bool = Field(
        default=False, description="Drop plugin data (tables, topics) when it is uninstalled."
    )
    topics: dict[str, TopicOverrides] = Field(
        default_factory=dict,
        description="Topic settings by event name (one the manifest publishes), over the "
        "platform's events.defaults.",
    )
    manifest: Manifest | SkipJsonSchema[None] = None
    manifest_file: str | SkipJsonSchema[None] = Field(
        default=None, description="Path of the manifest (YAML/JSON), relative to this file."
    )


class PluginDocument(_Model):
    api_version: Literal["plexica.io/v1alpha1"]
    kind: Literal["Plugin"]
    metadata: Metadata
    spec: PluginSpec


# --- Tenant ------------------------------------------------------------------------------


class TenantPlugin(_Model):
    enabled: bool = True
    configuration: dict[str, Any] = Field(default_factory=dict)


class TenantSpec(_Model):
    id: Annotated[str, Field(description="Tenant UUID.")]
    display_name: str | SkipJsonSchema[None] = None
    schema_name: str = Field(alias="schema", description="PostgreSQL schema of the tenant.")
    status: TenantStatus = TenantStatus.ACTIVE
    plugins: dict[str, TenantPlugin] = Field(default_factory=dict)


class TenantDocument(_Model):
    api_version: Literal["plexica.io/v1alpha1"]
    kind: Literal["Tenant"]
    metadata: Metadata
    spec: TenantSpec


DOCUMENT_MODELS: dict[str, type[_Model]] = {
    "Platform": PlatformDocument,
    "Plugin": PluginDocument,
    "Tenant": TenantDocument,
}
