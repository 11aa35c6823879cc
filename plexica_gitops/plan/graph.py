"""The action graph: ordering, waves and targeting (drawings: render/graph.py).

A wave is the longest chain of dependencies before an action: everything in one wave is
independent of everything else in it, so apply may run a wave's actions concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from plexica_gitops.addresses import ResourceKind, is_below, parsed_or_none
from plexica_gitops.plan.model import Action


class PlanCycleError(RuntimeError):
    """The planner produced steps that wait on each other: a planner bug, never user input
    (dependency cycles in git are validation errors)."""


def order(steps: Mapping[str, tuple[Action, Sequence[str]]]) -> list[Action]:
    """Keep the dependencies that name planned steps, assign waves, and list actions so each
    comes after all it depends on; ties broken by address, then step."""
    # Plain dicts and sets rather than a networkx graph: tens of thousands of steps at a
    # million bindings. networkx is used only to name a cycle.
    predecessors: dict[str, set[str]] = {}
    successors: dict[str, list[str]] = {sid: [] for sid in steps}
    for step_id, (_, deps) in steps.items():
        found = predecessors[step_id] = {d for d in deps if d in steps and d != step_id}
        for dep in found:
            successors[dep].append(step_id)
    waiting = {sid: len(found) for sid, found in predecessors.items()}
    ready = [sid for sid, count in waiting.items() if not count]
    waves: dict[str, int] = {}
    while ready:
        step_id = ready.pop()
        waves[step_id] = max((waves[p] + 1 for p in predecessors[step_id]), default=0)
        for following in successors[step_id]:
            waiting[following] -= 1
            if not waiting[following]:
                ready.append(following)
    if len(waves) != len(steps):
        # Only to name the cycle (a planner bug): networkx costs a planning process 24 MB.
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(steps)
        for step_id, (_, deps) in steps.items():
            graph.add_edges_from((dep, step_id) for dep in deps if dep in steps and dep != step_id)
        cycle = nx.find_cycle(graph)
        raise PlanCycleError("plan steps wait on each other: " + " → ".join(a for a, _ in cycle))
    ordered = sorted(steps, key=lambda sid: (waves[sid], steps[sid][0].address, sid))
    return [
        replace(
            steps[sid][0],
            depends_on=tuple(sorted(predecessors[sid])),
            wave=waves[sid],
        )
        for sid in ordered
    ]


def select_targets(actions: Sequence[Action], targets: Iterable[str]) -> list[Action]:
    """Terraform's -target: the targeted actions and every action they depend on,
    transitively. A target names an action id, an address, or everything below an address;
    `plugin.<id>` also names what the plugin owns elsewhere: the topics of the events it
    publishes. Tenant-scoped actions (a tenant's binding and migrations of the plugin)
    belong to the tenant: they come in only as dependencies."""
    prefixes = list(targets)
    owners = {p for p in map(_plugin_named, prefixes) if p is not None}
    by_id = {action.id: action for action in actions}
    keep: set[str] = set()
    stack = [
        a.id
        for a in actions
        if any(is_below(a.address, p) or a.id == p for p in prefixes)
        or (a.plugin in owners and a.resource.kind is ResourceKind.TOPIC)
    ]
    while stack:
        step_id = stack.pop()
        if step_id in keep:
            continue
        keep.add(step_id)
        stack.extend(by_id[step_id].depends_on)
    return [a for a in actions if a.id in keep]


def _plugin_named(target: str) -> str | None:
    """The plugin a `plugin.<id>` target names (not one of its resources or steps)."""
    address = parsed_or_none(target)
    return address.plugin if address and address.kind is ResourceKind.PLUGIN else None
