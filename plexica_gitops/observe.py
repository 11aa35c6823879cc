"""Observe the whole live platform: the store's records, the runtime's workloads and the
broker's topics, put together into the one `LiveState` the planner reads. It sits above
the adapters it reads (store/, runtime/, broker/), not in live/, which they import. Also
what `status` observed (`StatusView`), which render/status.py draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from plexica_gitops.broker.kafka import BrokerError, EventBroker
from plexica_gitops.live.model import LiveState, LiveWorkload, ObservedPart
from plexica_gitops.runtime.provider import Provider, ProviderError
from plexica_gitops.store import catalog
from plexica_gitops.store.catalog import Endpoint
from plexica_gitops.store.connection import connect
from plexica_gitops.store.observe import observe_store


def observe_platform(
    database_url: str,
    provider: Provider | None,
    broker: EventBroker | None = None,
    *,
    strict: bool = False,
    problems: dict[ObservedPart, str] | None = None,
) -> LiveState:
    """The store's live state with each plugin's workload as the provider reports it and
    the topics as the broker reports them (with the owners the store recorded).

    Without a provider or a broker, or when one cannot be reached, `workloads_observed` /
    `topics_observed` is false: the planner then plans no changes there and says so. With
    `strict` (apply), an unreachable provider or broker raises instead; without it, why
    each could not be read is put in `problems`. Workloads of plugins
    the store does not know are left out: they are not ours to plan."""
    with connect(database_url) as conn:
        live = observe_store(conn)
        owners = catalog.topic_owners(conn) if broker is not None else {}
        registered = catalog.endpoint_urls_by_plugin(conn) if provider is not None else {}
    update: dict[str, object] = {"workloads_observed": False}
    if provider is not None:
        try:
            workloads = provider.observe()
        except ProviderError as error:
            if strict:
                raise
            _note(problems, ObservedPart.RUNTIME, error.message)
        else:
            update["plugins"] = {
                pid: plugin.model_copy(
                    update={
                        "workload": _with_registry(
                            workloads.get(pid),
                            registered.get(pid, set()),
                            routed=plugin.routes is not None,
                            provider=provider,
                            plugin_id=pid,
                        )
                    }
                )
                for pid, plugin in live.plugins.items()
            }
            update["workloads_observed"] = True
    if broker is not None:
        try:
            topics = broker.observe()
        except BrokerError as error:
            if strict:
                raise
            _note(problems, ObservedPart.BROKER, error.message)
        else:
            update["topics"] = {
                name: topic.live(owners.get(name)) for name, topic in sorted(topics.items())
            }
            update["topics_observed"] = True
    return live.model_copy(update=update)


def _with_registry(
    workload: LiveWorkload | None,
    registered: set[str],
    *,
    routed: bool,
    provider: Provider,
    plugin_id: str,
) -> LiveWorkload | None:
    """The workload with the service registry compared to its replicas: endpoints whose
    replica no longer runs (stale), and ready replicas of a routed plugin that the registry
    does not list (unregistered: they get no traffic)."""
    if workload is None:
        return None  # no replicas at all: the planner recreates the workload anyway
    if workload.instances:
        running = {r.url for r in workload.instances if r.running and r.url}
        ready = {r.url for r in workload.instances if r.ready and r.url}
    else:  # a provider that does not list its replicas: only stale ones can be told
        listed = provider.endpoints(plugin_id, ready_only=False) if registered else []
        running, ready = {e.url for e in listed}, registered
    stale = len(registered - running)
    unregistered = len(ready - registered) if routed else 0
    if not stale and not unregistered:
        return workload
    return workload.model_copy(
        update={"stale_endpoints": stale, "unregistered_endpoints": unregistered}
    )


def _note(problems: dict[ObservedPart, str] | None, part: ObservedPart, text: str) -> None:
    if problems is not None:
        problems[part] = text


class SettingsSource(StrEnum):
    """Where the runtime provider's settings came from."""

    STORE = "store"
    DESIRED_STATE = "desired-state"


@dataclass(frozen=True)
class StatusView:
    """Everything `status` observed, ready to render."""

    live: LiveState
    endpoints: Mapping[str, Sequence[Endpoint]]
    provider: str | None = None
    settings_from: SettingsSource | None = None
    warnings: list[str] = field(default_factory=list)
