"""Observe the whole live platform: the store's records and the runtime's workloads, put
together into the one `LiveState` the planner reads."""

from __future__ import annotations

from plexica_gitops.live import LiveState
from plexica_gitops.provider import Provider, ProviderError
from plexica_gitops.store.connection import connect
from plexica_gitops.store.observe import observe_store


def observe_platform(
    database_url: str, provider: Provider | None, *, require_workloads: bool = False
) -> LiveState:
    """The store's live state with each plugin's workload as the provider reports it.

    Without a provider, or when it cannot be reached, `workloads_observed` is false (the
    planner then plans no workload changes and says so) — unless `require_workloads`, when
    the ProviderError is raised instead. Workloads of plugins the store does not know are
    left out: they are not ours to plan."""
    with connect(database_url) as conn:
        live = observe_store(conn)
    if provider is None:
        return live.model_copy(update={"workloads_observed": False})
    try:
        workloads = provider.observe()
    except ProviderError:
        if require_workloads:
            raise
        return live.model_copy(update={"workloads_observed": False})
    plugins = {
        pid: plugin.model_copy(update={"workload": workloads.get(pid)})
        for pid, plugin in live.plugins.items()
    }
    return live.model_copy(update={"plugins": plugins, "workloads_observed": True})
