"""What a plugin registers on the platform: its permissions, its gateway routes (and
remote entry), and its event subscriptions (consumer groups)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plexica_gitops.desired.view import DesiredPlugin, consumer_group
from plexica_gitops.findings import Location, error
from plexica_gitops.lifecycle import DEPLOYED, LifecycleStatus, S
from plexica_gitops.live.model import LivePlugin
from plexica_gitops.plan.model import Action, ActionKind, fingerprint_of

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder


def plan_permissions(
    b: PlanBuilder,
    pid: str,
    desired: DesiredPlugin | None,
    live: LivePlugin | None,
    final: LifecycleStatus,
    install_step: str,
) -> str | None:
    address = f"plugin.{pid}.permissions"
    current = {
        k: {"name": v.name, "description": v.description}
        for k, v in (live.permissions.items() if live else [])
    }
    if final not in DEPLOYED or desired is None:
        if not current:
            return None
        return b.add(
            Action(
                address,
                "delete",
                ActionKind.DELETE,
                "uninstall: deregister the plugin's permissions",
                before={"keys": sorted(current)},
                plugin=pid,
                cause=b.teardown_cause(pid, live),
            ),
            after=[f"plugin.{pid}:uninstall"],
        )
    want = desired.permissions
    if want == current:
        b.in_sync(address, want)
        return None
    deps = [install_step]
    for key in sorted(set(want) - set(current)):
        owner = _permission_owner(b, key, pid)
        if owner is None:
            continue
        if _releases_permission(b, owner, key):
            deps.append(f"plugin.{owner}.permissions:update")
            deps.append(f"plugin.{owner}.permissions:delete")
            continue
        b.errors.append(
            error(
                "PGP106",
                f"permission {key!r} of plugin {pid!r} is registered on the platform by "
                f"plugin {owner!r}",
                "Permission keys are unique (spec 004 edge case 6): rename the key, or "
                f"remove it from {owner} first.",
                _permission_location(b, pid, key),
                (pid, owner),
            )
        )
    after = {"keys": sorted(want)}
    kind = ActionKind.CREATE if not current else ActionKind.UPDATE
    cause, reason = b.why(
        address,
        want,
        "register the plugin's permissions" if not current else "permissions changed in git",
        "drift: permissions changed outside plexica-gitops",
    )
    return b.add(
        Action(
            address,
            "create" if not current else "update",
            kind,
            reason,
            before={"keys": sorted(current)} if current else None,
            after=after,
            plugin=pid,
            fingerprint=fingerprint_of(want),
            cause=cause,
        ),
        after=deps,
    )


def _permission_location(b: PlanBuilder, pid: str, key: str) -> Location:
    entry = b.desired.plugins[pid]
    keys = [p.key for p in entry.manifest.permissions]
    return entry.manifest_location("permissions", keys.index(key), "key")


def _permission_owner(b: PlanBuilder, key: str, pid: str) -> str | None:
    for other, live_plugin in b.live.plugins.items():
        if other != pid and key in live_plugin.permissions:
            return other
    return None


def _releases_permission(b: PlanBuilder, owner: str, key: str) -> bool:
    target = b.targets.get(owner)
    if target is None:
        return False  # unmanaged: we never touch it
    desired = b.plugins.get(owner)
    return target not in DEPLOYED or desired is None or key not in desired.permissions


def plan_routes(
    b: PlanBuilder,
    pid: str,
    desired: DesiredPlugin | None,
    live: LivePlugin | None,
    final: LifecycleStatus,
    workload: str | None,
) -> str | None:
    address = f"plugin.{pid}.routes"
    current = live.routes.model_dump() if live and live.routes else None
    if final is not S.ACTIVE or desired is None:
        if current is None:
            return None
        deps = [f"plugin.{d}:disable" for d in b.dependents.get(pid, [])]
        return b.add(
            Action(
                address,
                "delete",
                ActionKind.DELETE,
                "stop routing traffic to the plugin (new requests get 404)",
                before=current,
                plugin=pid,
                cause=b.teardown_cause(pid, live),
            ),
            after=deps,
        )
    want = desired.routes
    if current == want:
        b.in_sync(address, want)
        return None
    deps = [x for x in (workload,) if x]
    deps += [f"plugin.{d}:activate" for d in desired.dependencies]
    deps += [f"topic.{event}:create" for event in desired.subscribes]
    deps.append(f"plugin.{pid}:mark-installed")
    cause, reason = b.why(
        address,
        want,
        "register gateway routes and the remote entry once ready"
        if current is None
        else "routes changed in git",
        "drift: routes changed or removed outside plexica-gitops",
    )
    return b.add(
        Action(
            address,
            "create" if current is None else "update",
            ActionKind.CREATE if current is None else ActionKind.UPDATE,
            reason,
            before=current,
            after=want,
            plugin=pid,
            fingerprint=fingerprint_of(want),
            cause=cause,
        ),
        after=deps,
    )


def plan_subscriptions(
    b: PlanBuilder,
    pid: str,
    desired: DesiredPlugin | None,
    live: LivePlugin | None,
    final: LifecycleStatus,
) -> str | None:
    """The consumer group (`plugin-<id>`) of each subscribed event, in the registry
    while the plugin is ACTIVE: the platform wires consumers from it."""
    address = f"plugin.{pid}.subscriptions"
    current = dict(live.subscriptions) if live else {}
    if final is not S.ACTIVE or desired is None:
        if not current:
            return None
        return b.add(
            Action(
                address,
                "delete",
                ActionKind.DELETE,
                "stop consuming: remove the plugin's subscriptions from the registry",
                before={"subscriptions": current},
                plugin=pid,
                cause=b.teardown_cause(pid, live),
            )
        )
    _check_subscriptions(b, pid, desired)
    want = {event: consumer_group(pid) for event in desired.subscribes}
    if want == current:
        b.in_sync(address, want)
        return None
    cause, reason = b.why(
        address,
        want,
        "register the plugin's event subscriptions"
        if not current
        else "subscriptions changed in git",
        "drift: subscriptions changed outside plexica-gitops",
    )
    return b.add(
        Action(
            address,
            "create" if not current else "update",
            ActionKind.CREATE if not current else ActionKind.UPDATE,
            reason,
            before={"subscriptions": current} if current else None,
            after={"subscriptions": want},
            plugin=pid,
            fingerprint=fingerprint_of(want),
            cause=cause,
        ),
        after=[
            f"plugin.{pid}:mark-installed",
            *(f"topic.{event}:create" for event in desired.subscribes),
        ],
    )


def _check_subscriptions(b: PlanBuilder, pid: str, desired: DesiredPlugin) -> None:
    """An active plugin consuming a topic that no active plugin publishes (and the
    core does not either) would wait forever for its events."""
    platform = b.desired.platform
    core_topics = set(platform.document.spec.events.platform_topics) if platform else set()
    active_publishers = {
        event: other.id
        for other in b.plugins.values()
        if other.target is S.ACTIVE
        for event in other.publishes
    }
    entry = b.desired.plugins[pid]
    for index, event in enumerate(desired.subscribes):
        if event in core_topics or event in active_publishers:
            continue
        publisher = next((p.id for p in b.plugins.values() if event in p.publishes), None)
        b.errors.append(
            error(
                "PGP108",
                f"plugin {pid!r} is to be active and subscribes to {event!r}, but "
                + (
                    f"its publisher {publisher!r} is not to be active"
                    if publisher
                    else "no plugin publishes it"
                ),
                f"Keep {publisher} active, or drop the subscription from {pid}."
                if publisher
                else "Fix the event name, or list it in the platform's events.platformTopics.",
                entry.manifest_location("events", "subscribes", index),
                (pid, publisher) if publisher else (pid,),
            )
        )
