"""Tenants and their plugin bindings: tenants created, suspended, reactivated or deleted as
git says; bindings enabled, configured or disabled, held off while their plugin is not to
be ACTIVE, and disabled under a plugin that leaves ACTIVE."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Set as AbstractSet
from functools import cached_property
from itertools import compress, filterfalse, repeat
from operator import attrgetter, ne
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from plexica_gitops.addresses import Address, ResourceKind
from plexica_gitops.desired.build import TenantEntry
from plexica_gitops.desired.model import TenantStatus
from plexica_gitops.findings import error, warning
from plexica_gitops.lifecycle import S
from plexica_gitops.live.model import LiveTenant, LiveTenantPlugin, not_read
from plexica_gitops.plan.model import Action, ActionKind, Cause, fingerprint_of
from plexica_gitops.sensitive import mask

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder

_BINDING_VALUES = attrgetter("enabled", "configuration")
_NO_BINDING = SimpleNamespace(enabled=None, configuration=None)  # not on the platform
HELD_NAMES_SHOWN = 5  # tenants named in a PGP109 warning; the rest are counted


def plan_tenants(b: PlanBuilder) -> None:
    _Tenants(b).plan()


class _Tenants:
    """One per plan: held-off bindings are gathered across tenants, one PGP109 warning per
    plugin, and the views of the live state below are made once."""

    def __init__(self, b: PlanBuilder) -> None:
        self.b = b
        # plugin -> tenants whose bindings git enables while the plugin is not to serve
        self.held_tenants: dict[str, list[str]] = defaultdict(list)

    def plan(self) -> None:
        for slug, tenant in sorted(self.b.desired.tenants.items()):
            live_tenant = self.b.live.tenants.get(slug)
            self.plan_tenant(slug, tenant, live_tenant)
            if tenant.document.spec.status is not TenantStatus.DELETED:
                self.plan_bindings(slug, tenant, live_tenant)
        self.note_held_bindings()
        for slug, live_tenant in sorted(self.b.live.tenants.items()):
            if slug in self.b.desired.tenants:
                continue
            self.plan_forced_binding_disables(slug, live_tenant, declared=set())
            if not self.b.prune or live_tenant.status is TenantStatus.DELETED:
                self.b.unmanaged.append(f"tenant.{slug}")
                continue
            self.b.add(
                Action(
                    f"tenant.{slug}",
                    "delete",
                    ActionKind.DELETE,
                    "not in git and platform.prune is true (schema and data are kept)",
                    before={"status": live_tenant.status},
                    after={"status": TenantStatus.DELETED.value},
                    tenant=slug,
                    cause=Cause.PRUNE,
                )
            )

    def plan_tenant(self, slug: str, tenant: TenantEntry, live: LiveTenant | None) -> None:
        spec = tenant.document.spec
        address = f"tenant.{slug}"
        want = {"id": spec.id, "schema": spec.schema_name, "status": spec.status.value}
        if live is None:
            if spec.status is TenantStatus.DELETED:
                return
            cause, reason = self.b.why(
                address,
                want,
                "new tenant in git: create its schema and record",
                "drift: the tenant's record was deleted outside plexica-gitops: create it again",
            )
            self.b.add(
                Action(
                    address,
                    "create",
                    ActionKind.CREATE,
                    reason,
                    after=want,
                    tenant=slug,
                    fingerprint=fingerprint_of(want),
                    cause=cause,
                    contains_failure_to=slug,  # one tenant's schema: spec 004 edge case 2
                )
            )
            return
        if live.id != spec.id or live.schema_name != spec.schema_name:
            field_name = "id" if live.id != spec.id else "schema"
            self.b.errors.append(
                error(
                    "PGP105",
                    f"tenant {slug!r} exists with {field_name} "
                    f"{live.id if field_name == 'id' else live.schema_name!r}; git asks for "
                    f"{spec.id if field_name == 'id' else spec.schema_name!r}",
                    "A tenant's id and schema never change: restore the live value in git, or "
                    "create a new tenant and migrate its data.",
                    tenant.location("spec", field_name),
                    (slug,),
                )
            )
            return
        if live.status is spec.status:
            self.b.in_sync(address, want)
            return
        deleting = spec.status is TenantStatus.DELETED
        cause, reason = self.b.why(
            address,
            want,
            "tenant deleted in git (schema and data are kept)"
            if deleting
            else f"tenant {live.status} → {spec.status.value} in git",
            f"drift: tenant {live.status} outside plexica-gitops; git says {spec.status.value}",
        )
        self.b.add(
            Action(
                address,
                "delete" if deleting else "update",
                ActionKind.DELETE if deleting else ActionKind.UPDATE,
                reason,
                before={"status": live.status},
                after={"status": spec.status.value},
                tenant=slug,
                fingerprint=fingerprint_of(want),
                cause=cause,
            )
        )

    def plan_bindings(self, slug: str, tenant: TenantEntry, live: LiveTenant | None) -> None:
        bindings = tenant.document.spec.plugins
        live_bindings = live.plugins if live else {}
        get = live_bindings.get
        # The bindings that differ from the platform, in C: (enabled, configuration) of the
        # desired and the live binding; one missing on the platform never equals.
        changed = compress(
            bindings,
            map(
                ne,
                map(_BINDING_VALUES, bindings.values()),
                map(_BINDING_VALUES, map(get, bindings, repeat(_NO_BINDING))),
            ),
        )
        held = self.hold_bindings(slug, bindings, live_bindings) if self.not_serving else ()
        broken = self.unreadable_bindings.get(slug, {}) if self.b.live.unreadable else {}
        differ = {*changed, *(p for p in broken if p in bindings)}
        for pid in sorted(differ):
            if pid in held:
                continue
            binding = bindings[pid]
            self.plan_binding(
                slug, pid, binding.enabled, binding.configuration, get(pid), broken.get(pid)
            )
        if live is not None:
            self.note_unrecorded_bindings(slug, bindings, differ.union(held))
            self.plan_forced_binding_disables(slug, live, declared=bindings.keys())
            self.check_stranded_bindings(slug, tenant, live)

    def note_unrecorded_bindings(
        self, slug: str, bindings: dict[str, Any], planned: AbstractSet[str]
    ) -> None:
        """`PlanBuilder.in_sync` for the bindings not `planned`: the lookup of every
        binding's row runs in C, as a million of them may be in sync."""
        prefix = f"tenant.{slug}.plugin."
        applied = self.b.live.last_applied
        for address in filterfalse(applied.__contains__, map(prefix.__add__, bindings)):
            pid = address[len(prefix) :]
            if pid not in planned:
                binding = bindings[pid]
                want = {"enabled": binding.enabled, "configuration": binding.configuration}
                self.b.in_sync(address, want)

    @cached_property
    def unreadable_bindings(self) -> dict[str, dict[str, str]]:
        """tenant slug -> plugin id -> why its stored configuration was not read."""
        found: dict[str, dict[str, str]] = defaultdict(dict)
        for text, why in self.b.live.unreadable.items():
            address = Address.parse(text)
            if address.kind is ResourceKind.BINDING:
                assert address.tenant is not None and address.plugin is not None
                found[address.tenant][address.plugin] = why
        return found

    @cached_property
    def not_serving(self) -> list[str]:
        """Plugins in git that are not to be ACTIVE: no tenant binding of theirs is on."""
        return sorted(pid for pid, p in self.b.plugins.items() if p.target is not S.ACTIVE)

    def hold_bindings(
        self, slug: str, bindings: dict[str, Any], live: dict[str, LiveTenantPlugin]
    ) -> list[str]:
        """The bindings git enables for plugins that are not to be ACTIVE (a plugin
        disabled for a while): held off, the tenant's intent kept in git. One on the
        platform is disabled; one not there yet is not created. Once the plugin is active
        again, the bindings are enabled as git says."""
        held = [pid for pid in self.not_serving if pid in bindings and bindings[pid].enabled]
        for pid in held:
            self.held_tenants[pid].append(slug)
            current = live.get(pid)
            if current is not None and current.enabled:
                state = self.b.desired.plugins[pid].document.spec.state.value
                self.add_forced_disable(
                    slug,
                    pid,
                    f"plugin {pid} is desired {state}: held off until it is active again",
                    Cause.DEPENDENCY,
                )
        return held

    def note_held_bindings(self) -> None:
        for pid, slugs in sorted(self.held_tenants.items()):
            entry = self.b.desired.plugins[pid]
            state = entry.document.spec.state.value
            shown = ", ".join(slugs[:HELD_NAMES_SHOWN])
            more = len(slugs) - HELD_NAMES_SHOWN
            named = f"{shown} and {more:,} more" if more > 0 else shown
            tenants = f"{len(slugs):,} tenant{'s' * (len(slugs) != 1)}"
            self.b.warnings.append(
                warning(
                    "PGP109",
                    f"plugin {pid!r} is desired {state}, and {tenants} enable it in git "
                    f"({named}): their bindings are held off until it is active again",
                    f"Set plugins/{pid} back to `state: active` to serve them again, or set "
                    "`enabled: false` in those tenants.",
                    entry.location("spec", "state"),
                    (pid, *slugs),
                )
            )

    def check_stranded_bindings(self, slug: str, tenant: TenantEntry, live: LiveTenant) -> None:
        """Spec 004 edge case 5 inside a tenant: git disables a plugin for the tenant while a
        binding git does not declare, and that stays enabled, depends on it."""
        bindings = tenant.document.spec.plugins
        for pid in sorted([pid for pid, binding in bindings.items() if not binding.enabled]):
            current = live.plugins.get(pid)
            if current is None or not current.enabled:
                continue
            for dependent in sorted(self.b.dependents.get(pid, [])):
                other = live.plugins.get(dependent)
                if dependent in bindings or other is None or not other.enabled:
                    continue
                if self.b.prune or self.b.targets.get(dependent) not in (S.ACTIVE, None):
                    continue  # that binding is disabled by this plan too
                self.b.errors.append(
                    error(
                        "PGP107",
                        f"tenant {slug!r}: disabling {pid!r} leaves {dependent!r} (enabled on "
                        "the platform, not in git) without its dependency",
                        f"Declare {dependent} for this tenant in git and disable it too, or "
                        f"keep {pid} enabled.",
                        tenant.location("spec", "plugins", pid),
                        (slug, pid, dependent),
                    )
                )

    def plan_binding(
        self,
        slug: str,
        pid: str,
        enabled: bool,
        configuration: dict[str, Any],
        current: Any,
        unreadable: str | None = None,
    ) -> None:
        """`unreadable`: why the live configuration could not be read (it is then restored
        from git, and never shown)."""
        address = f"tenant.{slug}.plugin.{pid}"
        want = {"enabled": enabled, "configuration": configuration}
        desired = self.b.plugins.get(pid)
        deps = [f"tenant.{slug}:create", f"tenant.{slug}:update"]
        if current is None or (enabled and not current.enabled):
            step = "enable" if enabled else "configure"
            deps += [f"plugin.{pid}:activate", f"tenant.{slug}.migrations.{pid}:apply"]
            deps += [
                f"tenant.{slug}.plugin.{d}:enable"
                for d in (desired.dependencies if desired else ())
            ]
        elif not enabled and current.enabled:
            step = "disable"
            deps += [f"tenant.{slug}.plugin.{d}:disable" for d in self.b.dependents.get(pid, [])]
            self.b.before(f"plugin.{pid}.routes:delete", f"{address}:disable")
        else:
            step = "configure"
        cause, reason = self.b.why(
            address,
            want,
            {
                "enable": "enabled for the tenant in git",
                "disable": "disabled for the tenant in git",
                "configure": "configuration changed in git",
            }[step],
            "drift: changed outside plexica-gitops",
        )
        shown = current.configuration if current else None
        if unreadable is not None:
            cause = Cause.DRIFT
            reason = f"drift: the stored {unreadable}: write git's configuration over it"
            shown = not_read(unreadable)
        self.b.add(
            Action(
                address,
                step,
                ActionKind.CREATE if current is None else ActionKind.UPDATE,
                reason,
                before=mask({"enabled": current.enabled, "configuration": shown})
                if current
                else None,
                after=mask(want),
                plugin=pid,
                tenant=slug,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
            after=deps,
        )

    def plan_forced_binding_disables(
        self, slug: str, live: LiveTenant, declared: AbstractSet[str]
    ) -> None:
        """A live binding git does not declare is left alone, unless its plugin is leaving
        ACTIVE (the tenant would be left with a dead plugin) or prune is on."""
        for pid in sorted(live.plugins.keys() - declared):
            current = live.plugins[pid]
            if not current.enabled:
                continue
            target = self.b.targets.get(pid)
            leaving = pid in self.b.targets and target is not None and target is not S.ACTIVE
            if not leaving and not self.b.prune:
                continue
            self.add_forced_disable(
                slug,
                pid,
                f"plugin {pid} is leaving ACTIVE"
                if leaving
                else "not in git and platform.prune is true",
                Cause.DEPENDENCY if leaving else Cause.PRUNE,
            )

    def add_forced_disable(self, slug: str, pid: str, reason: str, cause: Cause) -> None:
        """Disable a live binding whatever git says of it, dependents' bindings first, and
        before the plugin's routes go."""
        address = f"tenant.{slug}.plugin.{pid}"
        deps = [f"tenant.{slug}.plugin.{d}:disable" for d in self.b.dependents.get(pid, [])]
        self.b.add(
            Action(
                address,
                "disable",
                ActionKind.UPDATE,
                reason,
                before={"enabled": True},
                after={"enabled": False},
                plugin=pid,
                tenant=slug,
                cause=cause,
            ),
            after=deps,
        )
        self.b.before(f"plugin.{pid}.routes:delete", f"{address}:disable")
