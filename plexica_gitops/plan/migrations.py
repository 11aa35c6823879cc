"""Per-tenant schema migrations of each plugin: the pending ones applied in every tenant
git wants active, append-only (an edited, removed or out-of-order migration is a finding)."""

from __future__ import annotations

from functools import cached_property
from itertools import compress, repeat
from operator import methodcaller, ne
from typing import TYPE_CHECKING, Any

from plexica_gitops.desired.build import TenantEntry
from plexica_gitops.desired.model import TenantStatus
from plexica_gitops.desired.view import DesiredPlugin
from plexica_gitops.findings import Location, error, warning
from plexica_gitops.lifecycle import DEPLOYED, LifecycleStatus
from plexica_gitops.live.model import LiveTenant
from plexica_gitops.plan.model import Action, ActionKind, Cause

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder


class TenantMigrations:
    """Made once per plan: every plugin's migrations walk the same active tenants."""

    def __init__(self, b: PlanBuilder) -> None:
        self.b = b

    def plan(
        self,
        pid: str,
        desired: DesiredPlugin | None,
        final: LifecycleStatus,
        install_step: str,
    ) -> list[str]:
        if desired is None or final not in DEPLOYED or not desired.migrations:
            return []
        wanted = list(desired.migrations)
        by_version = {m[0]: m for m in wanted}
        created: list[str] = []
        # Tenants whose records equal an up-to-date list are skipped first, in one pass.
        # Comparing lists of records is cheap when the tenants share the record objects
        # (observe and parse_live_state build each record once), and right when they do not.
        active = self.active_tenants
        current = next(
            (
                applied
                for _, _, live_tenant in active
                if live_tenant is not None
                and (applied := live_tenant.migrations.get(pid)) is not None
                and len(applied) == len(wanted)
                and [(a.version, a.name, a.checksum) for a in applied] == wanted
            ),
            None,
        )
        if current is not None:  # a filter run in C: a million (plugin, tenant) pairs
            applied_lists = map(methodcaller("get", pid), self.live_migrations)
            active = list(compress(active, map(ne, applied_lists, repeat(current))))
        for slug, tenant, live_tenant in active:
            applied = live_tenant.migrations.get(pid, []) if live_tenant else []
            if (
                len(applied) == len(wanted)
                and [(a.version, a.name, a.checksum) for a in applied] == wanted
            ):
                continue
            pending = self.pending_migrations(slug, tenant, pid, applied, by_version)
            if not pending:
                continue
            address = f"tenant.{slug}.migrations.{pid}"
            deps = [install_step, f"tenant.{slug}:create"]
            deps += [f"tenant.{slug}.migrations.{d}:apply" for d in desired.dependencies]
            created.append(
                self.b.add(
                    Action(
                        address,
                        "apply",
                        ActionKind.CREATE if not applied else ActionKind.UPDATE,
                        f"{len(pending)} pending migration{'s' * (len(pending) != 1)}",
                        before={"applied": [f"{a.version:04d}_{a.name}" for a in applied]}
                        if applied
                        else None,
                        after={
                            "applied": [
                                *(f"{a.version:04d}_{a.name}" for a in applied),
                                *(f"{v:04d}_{n}" for v, n, _ in pending),
                            ]
                        },
                        plugin=pid,
                        tenant=slug,
                        cause=Cause.GIT_CHANGE,
                        contains_failure_to=slug,  # one tenant's schema: spec 004 edge case 2
                    ),
                    after=deps,
                )
            )
            # A suspended tenant coming back is migrated before it serves again.
            self.b.before(f"tenant.{slug}:update", created[-1])
        return created

    @cached_property
    def active_tenants(self) -> list[tuple[str, TenantEntry, LiveTenant | None]]:
        """Tenants git wants active, sorted, with their live record: every plugin's
        migrations walk them (suspended tenants catch up when they become active)."""
        return [
            (slug, tenant, self.b.live.tenants.get(slug))
            for slug, tenant in sorted(self.b.desired.tenants.items())
            if tenant.document.spec.status is TenantStatus.ACTIVE
        ]

    @cached_property
    def live_migrations(self) -> list[dict[str, list[Any]]]:
        """The live migrations of each of `active_tenants` ({} for a new tenant)."""
        return [live.migrations if live else {} for _, _, live in self.active_tenants]

    def pending_migrations(
        self,
        slug: str,
        tenant: TenantEntry,
        pid: str,
        applied: list[Any],
        by_version: dict[int, tuple[int, str, str]],
    ) -> list[tuple[int, str, str]]:
        entry = self.b.desired.plugins[pid]
        done = {a.version for a in applied}
        for record in applied:
            wanted = by_version.get(record.version)
            if wanted is None:
                self.b.warnings.append(
                    warning(
                        "PGP102",
                        f"migration {record.version:04d}_{record.name} of {pid!r} is applied in "
                        f"tenant {slug!r} but no longer in git",
                        "Migrations are append-only: restore the file (it is never re-run).",
                        entry.location("spec"),
                        (slug, pid),
                    )
                )
            elif wanted[2] != record.checksum:
                path = next(m.path for m in entry.migrations if m.number == record.version)
                self.b.errors.append(
                    error(
                        "PGP101",
                        f"migration {path} was changed after it was applied in tenant "
                        f"{slug!r} (checksum {record.checksum[:12]}… applied, "
                        f"{wanted[2][:12]}… in git)",
                        "Never edit an applied migration: revert the file and add a new "
                        "NNNN_*.sql with the change.",
                        Location(path),
                        (slug, pid),
                    )
                )
        pending = [m for v, m in sorted(by_version.items()) if v not in done]
        newest = max(done, default=0)
        late = [m for m in pending if m[0] < newest]
        if late:
            self.b.errors.append(
                error(
                    "PGP103",
                    f"migration {late[0][0]:04d}_{late[0][1]} of {pid!r} is older than "
                    f"{newest:04d}, already applied in tenant {slug!r}",
                    "Give new migrations a number above every applied one.",
                    tenant.location("metadata", "name"),
                    (slug, pid),
                )
            )
            return []
        return pending
