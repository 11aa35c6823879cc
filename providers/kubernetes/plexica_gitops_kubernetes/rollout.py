"""A Deployment's rollout judged as `kubectl rollout status` judges it, and why its pods are
not ready (for the RolloutFailed message). Pure functions of API objects (dicts).

Readiness is the pods' Ready condition as the kubelet (here: kwok) reports it, summed up by
the Deployment controller in `availableReplicas`: the reconciler never sends a request to a
pod or a ClusterIP (nothing routes there from outside the cluster).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_REASONS = 5  # pods described in a failure; the rest are counted


class Progress(StrEnum):
    HEALTHY = "healthy"
    PROGRESSING = "progressing"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Health:
    progress: Progress
    detail: str

    @property
    def healthy(self) -> bool:
        return self.progress is Progress.HEALTHY


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for each in (obj.get("status") or {}).get("conditions") or []:
        if each.get("type") == kind:
            return dict(each)
    return None


def deployment_health(deployment: Mapping[str, Any]) -> Health:
    """kubectl's rule: the controller has seen the latest generation, every replica is
    updated, no old one is left, every updated one is available; failed when the
    controller reports ProgressDeadlineExceeded."""
    metadata, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = int(metadata.get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return Health(
            Progress.PROGRESSING, f"waiting for the controller to see generation {generation}"
        )
    progressing = condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(
            Progress.FAILED, f"ProgressDeadlineExceeded: {progressing.get('message', '')}"
        )
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < want:
        return Health(Progress.PROGRESSING, f"{updated} of {want} replicas updated")
    if replicas > updated:
        return Health(Progress.PROGRESSING, f"{replicas - updated} old replicas still running")
    if available < updated:
        return Health(Progress.PROGRESSING, f"{available} of {updated} updated replicas available")
    return Health(Progress.HEALTHY, f"{available} of {want} replicas available")


def replica_failure(deployment: Mapping[str, Any]) -> str | None:
    """Why the controller cannot create pods (PodSecurity admission, quota), if it says."""
    failure = condition(deployment, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        return f"{failure.get('reason', 'ReplicaFailure')}: {failure.get('message', '')}"
    return None


def _ready(pod: Mapping[str, Any]) -> bool:
    ready = condition(pod, "Ready")
    return bool(ready and ready.get("status") == "True")


def pod_reasons(
    pods: Sequence[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> list[str]:
    """One line per pod that is not ready: its containers' waiting reasons
    (CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError…), last exit code,
    the Ready condition's reason, and its Warning events."""
    warnings: dict[str, list[str]] = {}
    for event in events:
        if event.get("type") != "Warning":
            continue
        name = str((event.get("involvedObject") or {}).get("name", ""))
        text = f"{event.get('reason', '')}: {event.get('message', '')}".strip(": ")
        if text not in warnings.setdefault(name, []):
            warnings[name].append(text)
    unready = [pod for pod in pods if not _ready(pod)]
    lines = [_describe(pod, warnings.get(pod["metadata"]["name"], [])) for pod in unready]
    if len(lines) > MAX_REASONS:
        lines = [*lines[:MAX_REASONS], f"and {len(lines) - MAX_REASONS} more pods"]
    return lines


def _describe(pod: Mapping[str, Any], warnings: list[str]) -> str:
    status = pod.get("status") or {}
    parts = [f"phase {status.get('phase', 'Unknown')}"]
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
            message = waiting.get("message")
            parts.append(f"{waiting['reason']}" + (f" ({message})" if message else ""))
        terminated = (container.get("lastState") or {}).get("terminated")
        if terminated:
            parts.append(f"last exit code {terminated.get('exitCode')}")
    for kind in ("PodScheduled", "Ready"):
        found = condition(pod, kind)
        if found and found.get("status") != "True":
            reason = found.get("reason") or "False"
            message = found.get("message")
            parts.append(f"{kind} {reason}" + (f" ({message})" if message else ""))
    parts += warnings[-3:]
    return f"pod {pod['metadata']['name']}: " + "; ".join(parts)
