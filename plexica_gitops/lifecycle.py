"""Spec 004's plugin lifecycle: the statuses the platform records, the edges between them,
and what each status means for a plugin's resources and for its dependencies. Shared by
validation, the planner, the store's compare-and-set and apply."""

from __future__ import annotations

from collections import deque
from enum import StrEnum


class LifecycleStatus(StrEnum):
    """Spec 004 FR-003: the plugin lifecycle as the platform records it."""

    REGISTERED = "REGISTERED"
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    UNINSTALLING = "UNINSTALLING"
    UNINSTALLED = "UNINSTALLED"


S = LifecycleStatus

# The status each desired `spec.state` (desired.model.PluginState, a StrEnum: its members
# are these strings) converges to.
TARGET_STATUS: dict[str, LifecycleStatus] = {
    "registered": S.REGISTERED,
    "installed": S.INSTALLED,
    "active": S.ACTIVE,
    "disabled": S.DISABLED,
    "absent": S.UNINSTALLED,
}

# Spec 004 FR-003 edges, plus three the spec leaves implicit: an INSTALLED plugin that never
# served can be disabled (stopped) directly, a DISABLED one can be started without routes,
# and a REGISTERED one that was never installed can be dropped.
LIFECYCLE_EDGES: dict[LifecycleStatus | None, list[tuple[LifecycleStatus, str]]] = {
    None: [(S.REGISTERED, "register")],
    S.UNINSTALLED: [(S.REGISTERED, "register")],
    S.REGISTERED: [(S.INSTALLING, "install"), (S.UNINSTALLED, "deregister")],
    S.INSTALLING: [(S.INSTALLED, "mark-installed")],
    S.INSTALLED: [(S.ACTIVE, "activate"), (S.DISABLED, "disable")],
    S.ACTIVE: [(S.DISABLED, "disable")],
    S.DISABLED: [(S.ACTIVE, "activate"), (S.INSTALLED, "start"), (S.UNINSTALLING, "uninstall")],
    S.UNINSTALLING: [(S.UNINSTALLED, "mark-uninstalled")],
}


DEPLOYED = frozenset({S.INSTALLED, S.ACTIVE, S.DISABLED})  # workload, permissions, data, topics
RUNNING = frozenset({S.INSTALLED, S.ACTIVE})
MAY_RUN = frozenset({S.INSTALLING, *DEPLOYED, S.UNINSTALLING})  # containers may exist
# What a plugin in a status needs of its dependencies: the one definition, which validation's
# REQUIRED_DEPENDENCY_STATES (in desired states) is derived from.
NEEDED_BY: dict[LifecycleStatus, frozenset[LifecycleStatus]] = {
    S.ACTIVE: frozenset({S.ACTIVE}),
    S.INSTALLED: DEPLOYED,
    S.DISABLED: DEPLOYED,
    S.INSTALLING: DEPLOYED,
}

Edge = tuple[LifecycleStatus | None, LifecycleStatus, str]


def lifecycle_path(start: LifecycleStatus | None, target: LifecycleStatus | None) -> list[Edge]:
    """Shortest walk along lifecycle edges; [] when already there (or absent and gone)."""
    if target is None or start == target:
        return []
    if target is S.UNINSTALLED and start is None:
        return []
    previous: dict[LifecycleStatus | None, Edge] = {}
    queue: deque[LifecycleStatus | None] = deque([start])
    seen = {start}
    while queue:
        state = queue.popleft()
        for following, verb in LIFECYCLE_EDGES.get(state, []):
            if following in seen:
                continue
            seen.add(following)
            previous[following] = (state, following, verb)
            if following == target:
                path = []
                node: LifecycleStatus | None = following
                while node != start:
                    edge = previous[node]
                    path.append(edge)
                    node = edge[0]
                return path[::-1]
            queue.append(following)
    raise ValueError(f"no lifecycle path from {start} to {target}")
