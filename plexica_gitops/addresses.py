"""Resource addresses and action ids: the one place their wire strings are read and written.

The wire form is what plans, saved plan files, the apply journal, last-applied records and
`--target`/`--replace` carry; it never changes, so plans and journals written before this
module existed still read:

==============================  ==============  ==============================================
address                         kind            names
==============================  ==============  ==============================================
plugin.<id>                     PLUGIN          the plugin's lifecycle and catalog row
plugin.<id>.workload            WORKLOAD        its containers
plugin.<id>.permissions         PERMISSIONS     its permissions in the registry
plugin.<id>.routes              ROUTES          its gateway routes and remote entry
plugin.<id>.subscriptions       SUBSCRIPTIONS   its consumer groups in the registry
plugin.<id>.data                DATA            its tables in every tenant schema (purge)
topic.<event>                   TOPIC           an event's topic (`<event>` has dots itself)
tenant.<slug>                   TENANT          the tenant's record and schema
tenant.<slug>.plugin.<id>       BINDING         the tenant's binding of a plugin
tenant.<slug>.migrations.<id>   MIGRATIONS      the plugin's migrations in the tenant schema
==============================  ==============  ==============================================

An action id is `<address>:<step>` (addresses hold no colon).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AddressError(ValueError):
    """Text that is not an address (or action id) of any resource kind."""


class ResourceKind(StrEnum):
    PLUGIN = "plugin"
    WORKLOAD = "workload"
    PERMISSIONS = "permissions"
    ROUTES = "routes"
    SUBSCRIPTIONS = "subscriptions"
    DATA = "data"
    TOPIC = "topic"
    TENANT = "tenant"
    BINDING = "binding"
    MIGRATIONS = "migrations"


# The part after `plugin.<id>.` for each kind of a plugin's resource.
PLUGIN_PARTS = {
    kind.value: kind
    for kind in (
        ResourceKind.WORKLOAD,
        ResourceKind.PERMISSIONS,
        ResourceKind.ROUTES,
        ResourceKind.SUBSCRIPTIONS,
        ResourceKind.DATA,
    )
}
# The part after `tenant.<slug>.` for each kind of a tenant's resource of a plugin.
TENANT_PARTS = {"plugin": ResourceKind.BINDING, "migrations": ResourceKind.MIGRATIONS}
_TENANT_PART_OF = {kind: part for part, kind in TENANT_PARTS.items()}


@dataclass(frozen=True, slots=True)
class Address:
    """A resource: its kind and the plugin, tenant or topic (event name) it is of. A topic's
    publisher is not part of its address (the action's `plugin` says it)."""

    kind: ResourceKind
    plugin: str | None = None
    tenant: str | None = None
    topic: str | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        head, _, rest = text.partition(".")
        if not rest or ":" in text:
            raise AddressError(f"{text!r} is not a resource address")
        if head == "topic":
            return cls(ResourceKind.TOPIC, topic=rest)
        parts = rest.split(".")
        if head == "plugin" and parts[0]:
            if len(parts) == 1:
                return cls(ResourceKind.PLUGIN, plugin=parts[0])
            kind = PLUGIN_PARTS.get(parts[1]) if len(parts) == 2 else None
            if kind is not None:
                return cls(kind, plugin=parts[0])
        if head == "tenant" and parts[0]:
            if len(parts) == 1:
                return cls(ResourceKind.TENANT, tenant=parts[0])
            kind = TENANT_PARTS.get(parts[1]) if len(parts) == 3 and parts[2] else None
            if kind is not None:
                return cls(kind, plugin=parts[2], tenant=parts[0])
        raise AddressError(f"{text!r} is not a resource address")

    def __str__(self) -> str:
        kind = self.kind
        if kind is ResourceKind.TOPIC:
            return f"topic.{self.topic}"
        if kind is ResourceKind.PLUGIN:
            return f"plugin.{self.plugin}"
        if kind is ResourceKind.TENANT:
            return f"tenant.{self.tenant}"
        if kind in _TENANT_PART_OF:
            return f"tenant.{self.tenant}.{_TENANT_PART_OF[kind]}.{self.plugin}"
        return f"plugin.{self.plugin}.{kind.value}"

    @property
    def owner_plugin(self) -> str | None:
        """The plugin whose resource this is (a binding's and a migration's too); None for
        a tenant, and for a topic (its publisher is the action's)."""
        return self.plugin

    @property
    def tenant_scoped(self) -> bool:
        """A tenant's own resource: its record, its bindings, its migrations."""
        return self.tenant is not None

    def is_below(self, prefix: str) -> bool:
        return is_below(str(self), prefix)


def is_below(address: str, prefix: str) -> bool:
    """Whether `address` is `prefix` or a resource under it, as `--target` selects:
    `plugin.crm` covers `plugin.crm.workload`, `tenant.acme` covers `tenant.acme.plugin.crm`
    (on the wire strings: a plan holds a million of them)."""
    return address == prefix or address.startswith(prefix + ".")


@dataclass(frozen=True, slots=True)
class ActionId:
    """What `depends_on`, the journal and `--target` name an action by."""

    address: Address
    step: str

    @classmethod
    def parse(cls, text: str) -> ActionId:
        address, colon, step = text.partition(":")
        if not colon or not step:
            raise AddressError(f"{text!r} is not an action id (<address>:<step>)")
        return cls(Address.parse(address), step)

    def __str__(self) -> str:
        return action_id(str(self.address), self.step)


def parsed_or_none(text: str) -> Address | None:
    try:
        return Address.parse(text)
    except AddressError:
        return None


def with_any_tenant(address: str, tenant: str) -> str:
    """`tenant.acme.migrations.crm` of tenant `acme` -> `tenant.*.migrations.crm`: the
    same resource in every tenant (the text renderer collapses them; on the wire string,
    as it runs once per action)."""
    prefix = f"tenant.{tenant}"
    rest = address[len(prefix) :]
    if address.startswith(prefix) and (not rest or rest.startswith(".")):
        return "tenant.*" + rest
    return address


def action_id(address: str, step: str) -> str:
    return f"{address}:{step}"


def parse_target(text: str) -> Address:
    """The address a `--target` names (an address, or an action id's address)."""
    address, _, _ = text.partition(":")
    return Address.parse(address)
