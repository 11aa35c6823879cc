"""A plugin's workload: its containers, created, replaced (rolling, health-gated), scaled,
started or stopped as git and the lifecycle walk say, and removed on uninstall."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plexica_gitops.desired.view import DesiredPlugin, env_hash, policy_hash
from plexica_gitops.findings import warning
from plexica_gitops.lifecycle import DEPLOYED, MAY_RUN, RUNNING, LifecycleStatus
from plexica_gitops.live.model import LivePlugin, LiveWorkload, ObservedPart
from plexica_gitops.plan.model import Action, ActionKind, Cause, fingerprint_of
from plexica_gitops.sensitive import mask

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder, Why


def _note_unobserved_workloads(b: PlanBuilder) -> None:
    if ObservedPart.RUNTIME in b.unobserved:
        return
    b.unobserved.add(ObservedPart.RUNTIME)
    b.warnings.append(
        warning(
            "PGP205",
            "the runtime provider was not observed: workload changes are left out of this plan",
            "Plan with the runtime provider reachable (or a full --live-state "
            "snapshot) to see workload drift and updates.",
        )
    )


def plan_workload(
    b: PlanBuilder,
    pid: str,
    desired: DesiredPlugin | None,
    live: LivePlugin | None,
    final: LifecycleStatus,
    verbs: set[str],
    install_step: str,
    migrations: list[str],
) -> str | None:
    address = f"plugin.{pid}.workload"
    current = live.workload if live else None
    if not b.live.workloads_observed and live is not None and live.status in MAY_RUN:
        _note_unobserved_workloads(b)
        return None
    if final not in DEPLOYED or desired is None:
        if current is None:
            return None
        stop = None
        if current.running:
            stop = b.add(
                Action(
                    address,
                    "stop",
                    ActionKind.UPDATE,
                    "disable before uninstall: stop serving",
                    before={"running": True},
                    after={"running": False},
                    plugin=pid,
                    cause=b.teardown_cause(pid, live),
                ),
                after=[f"plugin.{pid}.routes:delete"],
            )
        return b.add(
            Action(
                address,
                "delete",
                ActionKind.DELETE,
                "uninstall: remove the containers (data is kept)",
                before=_workload_view(current),
                plugin=pid,
                cause=b.teardown_cause(pid, live),
            ),
            after=[f"plugin.{pid}:uninstall", *([stop] if stop else [])],
        )
    want = {**desired.workload, "running": final in RUNNING}
    shown = mask(want)
    shown["env"] = sorted(want["env"])  # names only: values are references or literals
    fingerprint = fingerprint_of(want)
    if current is None:
        cause, reason = b.why(
            address,
            want,
            "install: pull the image, start the containers, wait until healthy",
            "drift: the workload was removed outside plexica-gitops",
        )
        return b.add(
            Action(
                address,
                "create",
                ActionKind.CREATE,
                reason,
                after=shown,
                plugin=pid,
                fingerprint=fingerprint,
                cause=cause,
            ),
            after=[install_step, *migrations],
        )
    changed = _workload_changes(current, want)
    forced = b.replace.get(pid)  # a changed secret, or `apply --replace`
    if not changed and not forced:
        b.in_sync(address, want)
        return None
    before = _workload_view(current)
    if forced or changed & _REPLACED_FOR:
        strategy = want["strategy"]
        causes = [*sorted(changed), *([forced.why] if forced else [])]
        reason = (
            f"update {current.version} → {want['version']}: {strategy} update"
            if current.version != want["version"]
            else f"reconfigure ({', '.join(causes)}): {strategy} restart"
        )
        if not forced and changed & _REPLACED_FOR == {"policy"}:
            # the pod template is the same: the objects around it change, no pod restarts
            reason = "reconfigure (autoscaling or egress): apply the changed objects"
        if "builds" in changed:  # a rollout cut short: whatever git says, it is drift
            cause, reason = (
                Cause.CRASH_REPAIR,
                f"drift: {_mixture(current)}: replace every replica not built from "
                f"{want['version']} as git says and retire the extras ({strategy} update)",
            )
        elif forced:
            cause = forced.cause
        else:
            cause, reason = b.why(
                address, want, reason, "drift: the workload was changed outside git"
            )
        deps = [*migrations]
        deps += [f"plugin.{d}.workload:replace" for d in desired.dependencies]
        if not want["running"]:  # stopped containers: stop routing to them first
            deps.append(f"plugin.{pid}.routes:delete")
        return b.add(
            Action(
                address,
                "replace",
                ActionKind.REPLACE,
                reason,
                before=before,
                after=shown,
                plugin=pid,
                fingerprint=fingerprint,
                cause=cause,
            ),
            after=deps,
        )
    step, deps, (cause, reason) = _workload_step(pid, current, want, changed, verbs)
    if step == "scale":
        cause, reason = b.why(
            address, want, reason, f"drift: {reason}, changed outside plexica-gitops"
        )
    return b.add(
        Action(
            address,
            step,
            ActionKind.UPDATE,
            reason,
            before=before,
            after=shown,
            plugin=pid,
            fingerprint=fingerprint,
            cause=cause,
        ),
        after=deps,
    )


def _workload_view(current: LiveWorkload) -> dict[str, Any]:
    view = {
        "image": current.image,
        "version": current.version,
        "replicas": current.replicas,
        "ready_replicas": current.ready_replicas,
        "cpu": current.resources.cpu,
        "memory": current.resources.memory,
        "running": current.running,
    }
    if len(current.builds()) > 1:
        view["versions"] = dict(sorted(_versions(current).items()))
    return view


def _versions(current: LiveWorkload) -> dict[str, int]:
    counts: dict[str, int] = {}
    for replica in current.instances:
        counts[replica.version] = counts.get(replica.version, 0) + 1
    return counts


def _mixture(current: LiveWorkload) -> str:
    """`replicas of 2 versions run (2 of 1.2.0 and 2 of 1.3.0)`, or, for one version built
    from several specs, `4 replicas of 1.3.0 built from 2 different specs run`."""
    versions = _versions(current)
    if len(versions) == 1:
        version, count = next(iter(versions.items()))
        return f"{count} replicas of {version} built from {len(current.builds())} specs run"
    listed = " and ".join(f"{n} of {v}" for v, n in sorted(versions.items()))
    return f"replicas of {len(versions)} versions run ({listed})"


# What a workload is replaced for (the rest is a scale, start or stop in place).
_REPLACED_FOR = frozenset({"image", "version", "cpu", "memory", "env", "builds", "policy"})


def _workload_changes(current: LiveWorkload, want: dict[str, Any]) -> set[str]:
    changed = set()
    if current.image != want["image"]:
        changed.add("image")
    if current.version != want["version"]:
        changed.add("version")
    if current.resources.cpu != want["cpu"]:
        changed.add("cpu")
    if current.resources.memory != want["memory"]:
        changed.add("memory")
    if current.env_hash != env_hash(want["env"]):
        changed.add("env")
    if current.policy_hash != policy_hash(want.get("policy")):
        changed.add("policy")  # autoscaling or egress
    if current.replicas != want["replicas"]:
        changed.add("replicas")
    if len(current.builds()) > 1:
        changed.add("builds")  # replicas of other versions or specs beside the newest
    if current.running != want["running"]:
        changed.add("running")
    elif want["running"] and (
        current.ready_replicas < current.replicas
        or current.stale_endpoints
        or current.unregistered_endpoints
    ):
        changed.add("health")
    return changed


def _workload_step(
    pid: str, current: LiveWorkload, want: dict[str, Any], changed: set[str], verbs: set[str]
) -> tuple[str, list[str], Why]:
    """The in-place workload step: scale, start or stop, and why (a scale's cause is the
    caller's to decide from last-applied)."""
    if "running" in changed and not want["running"]:
        why: Why = Cause.GIT_CHANGE, "disable: stop the containers, keep data"
        return "stop", [f"plugin.{pid}.routes:delete"], why
    if "running" in changed or "health" in changed:
        if "activate" in verbs or "start" in verbs:
            why = Cause.GIT_CHANGE, "start the stopped containers and wait until healthy"
        elif "running" in changed:
            why = Cause.DRIFT, "drift: containers were stopped outside plexica-gitops"
        elif current.ready_replicas >= current.replicas:
            # endpoints a cut-short rollout or a crash left behind
            why = Cause.CRASH_REPAIR, _registry_drift(current) + ": refresh the registry"
        else:
            why = (
                Cause.DRIFT,
                f"drift: {current.replicas - current.ready_replicas} of {current.replicas} "
                "replicas not ready: restart them",
            )
        return "start", [], why
    return (
        "scale",
        [],
        (Cause.GIT_CHANGE, f"replicas {current.replicas} → {want['replicas']}"),
    )


def _registry_drift(current: LiveWorkload) -> str:
    stale, missing = current.stale_endpoints, current.unregistered_endpoints
    parts = []
    if stale:
        parts.append(
            f"{stale} registered endpoints point at replicas that no longer run"
            if stale != 1
            else "1 registered endpoint points at a replica that no longer runs"
        )
    if missing:
        parts.append(
            f"{missing} ready replicas are missing from the service registry"
            if missing != 1
            else "1 ready replica is missing from the service registry"
        )
    return "drift: " + "; ".join(parts)
