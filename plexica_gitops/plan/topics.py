"""Event topics: created for the events a deployed plugin publishes (before the publisher
is marked installed), grown or reconfigured as git says, deleted only with a purged
publisher; topics plexica-gitops did not create are left as they are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plexica_gitops.desired.view import topic_settings
from plexica_gitops.findings import Location, error, warning
from plexica_gitops.lifecycle import DEPLOYED
from plexica_gitops.live.model import LiveTopic, ObservedPart
from plexica_gitops.plan.model import Action, ActionKind, Cause, fingerprint_of

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder


def plan_topics(b: PlanBuilder) -> None:
    defaults = b.desired.platform.document.spec.events.defaults if b.desired.platform else None
    wanted: dict[str, tuple[str, dict[str, Any]]] = {}
    for pid, plugin in b.plugins.items():
        if plugin.target not in DEPLOYED:
            continue
        overrides = b.desired.plugins[pid].document.spec.topics
        for event in plugin.publishes:
            wanted[event] = (pid, topic_settings(defaults, overrides.get(event)))
    if not b.live.topics_observed:
        # Topics matter whenever a plugin in git publishes: to create them, to compare
        # them, or to purge them with an uninstalled publisher.
        if any(p.publishes for p in b.plugins.values()):
            b.unobserved.add(ObservedPart.BROKER)
            b.warnings.append(
                warning(
                    "PGP201",
                    "the event broker was not observed: topics are left out of this plan",
                    "Set KAFKA_BOOTSTRAP_SERVERS and make the broker reachable to plan "
                    "topics; nothing will be created or deleted for them now.",
                )
            )
        return
    for event, (pid, want) in sorted(wanted.items()):
        plan_topic(b, event, pid, want, b.live.topics.get(event))
    for event, topic in sorted(b.live.topics.items()):
        if event in wanted:
            continue
        owner = topic.owner
        if owner is None or owner not in b.plugins:
            b.unmanaged.append(f"topic.{event}")
            continue
        plugin = b.plugins[owner]
        if plugin.target in DEPLOYED or not plugin.purge_data:
            continue  # kept: topics outlive their publisher unless purge was asked for
        b.add(
            Action(
                f"topic.{event}",
                "delete",
                ActionKind.DELETE,
                f"{owner} is uninstalled with purgeDataOnUninstall",
                before=topic.model_dump(exclude={"owner"}),
                plugin=owner,
                cause=Cause.GIT_CHANGE,
            ),
            after=[f"plugin.{owner}:uninstall"],
        )


def plan_topic(
    b: PlanBuilder, event: str, pid: str, want: dict[str, Any], current: LiveTopic | None
) -> None:
    address = f"topic.{event}"
    if current is None:
        cause, reason = b.why(
            address,
            want,
            f"published by {pid}",
            "drift: the topic was deleted outside plexica-gitops",
        )
        created = b.add(
            Action(
                address,
                "create",
                ActionKind.CREATE,
                reason,
                after=want,
                plugin=pid,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
            after=[f"plugin.{pid}:install"],
        )
        # Topics exist before the publisher is marked installed (README, Plans: Order).
        b.before(f"plugin.{pid}:mark-installed", created)
        return
    if current.owner not in (None, pid):
        b.warnings.append(
            warning(
                "PGP202",
                f"topic {event!r} is published by {pid!r} but was created for {current.owner!r}",
                "Left as it is; ownership moves when the old owner is uninstalled.",
                location=_event_location(b, pid, event),
                subjects=(pid, current.owner),
            )
        )
        return
    if current.owner is None:
        b.warnings.append(
            warning(
                "PGP203",
                f"topic {event!r} already exists and was not created by plexica-gitops",
                "It is used as it is and never changed or deleted by plexica-gitops.",
                location=_event_location(b, pid, event),
                subjects=(pid,),
            )
        )
        return
    if want["partitions"] < current.partitions:
        b.errors.append(
            error(
                "PGP204",
                f"topic {event!r} has {current.partitions} partitions; git asks for "
                f"{want['partitions']}",
                "Kafka partitions can only grow: raise the setting back to at least "
                f"{current.partitions}.",
                location=b.desired.platform.location("spec", "events", "defaults")
                if b.desired.platform
                else None,
                subjects=(pid,),
            )
        )
        return
    drifted = {k: v for k, v in want["config"].items() if current.config.get(k) != v}
    if want["partitions"] == current.partitions and not drifted:
        b.in_sync(address, want)
        return
    cause, reason = b.why(
        address,
        want,
        "topic settings changed in git",
        "drift: topic settings changed outside plexica-gitops",
    )
    b.add(
        Action(
            address,
            "update",
            ActionKind.UPDATE,
            reason,
            before={
                "partitions": current.partitions,
                "config": {k: current.config.get(k) for k in drifted},
            },
            after={"partitions": want["partitions"], "config": drifted},
            plugin=pid,
            fingerprint=fingerprint_of(want),
            cause=cause,
        ),
    )


def _event_location(b: PlanBuilder, pid: str, event: str) -> Location | None:
    entry = b.desired.plugins.get(pid)
    if entry is None or event not in entry.manifest.events.publishes:
        return None
    index = entry.manifest.events.publishes.index(event)
    return entry.manifest_location("events", "publishes", index)
