"""Smoke tests of the devenv Kubernetes control plane (devenv/kube.py), through the official
`kubernetes` client: the real kube-apiserver answers server-side apply (dry-run, conflicts)
and the real controllers, with kwok giving pods a life, roll Deployments out.

The binaries must be built first (`python3 -m devenv.kube build`, which `.ci/run` does);
the cluster itself starts in a few seconds, once per session."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kube_cluster import exists, wait_for
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from devenv import kube

pytestmark = [pytest.mark.integration, pytest.mark.kube]

MANAGER = "plexica-gitops"
APPLY = "application/apply-patch+yaml"


def deployment(
    name: str,
    image: str,
    *,
    replicas: int = 2,
    progress_deadline: int | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": {"app": name, **(labels or {})}},
            "spec": {
                "containers": [
                    {
                        "name": "plugin",
                        "image": image,
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "readinessProbe": {
                            "httpGet": {"path": "/health/ready", "port": "http"},
                            "periodSeconds": 2,
                        },
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"cpu": "250m", "memory": "128Mi"},
                        },
                    }
                ]
            },
        },
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGER}},
        "spec": spec,
    }


def apply(apps: Any, namespace: str, body: dict[str, Any], **options: Any) -> Any:
    """Server-side apply, as the provider will do it."""
    return apps.patch_namespaced_deployment(
        body["metadata"]["name"],
        namespace,
        body,
        field_manager=options.pop("field_manager", MANAGER),
        _content_type=APPLY,
        **options,
    )


def rollout_complete(apps: Any, namespace: str, name: str) -> Any:
    """kubectl rollout status's rule: the controller saw the latest generation and every
    replica is updated and available (and no old one is left)."""
    live = apps.read_namespaced_deployment(name, namespace)
    status, want = live.status, live.spec.replicas
    done = (
        (status.observed_generation or 0) >= live.metadata.generation
        and (status.updated_replicas or 0) == want
        and (status.replicas or 0) == want
        and (status.available_replicas or 0) == want
    )
    return live if done else None


def condition(live: Any, kind: str) -> Any:
    for each in live.status.conditions or []:
        if each.type == kind:
            return each
    return None


def replica_sets(apps: Any, namespace: str, name: str) -> list[Any]:
    found = apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
    return sorted(
        found, key=lambda rs: int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
    )


def test_apply_creates_a_deployment_that_becomes_available(
    kube_api: Any, kube_namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    applied = apply(apps, kube_namespace, deployment("web", "plexica/echo:1.0.0"))
    assert applied.metadata.generation == 1
    assert [m.manager for m in applied.metadata.managed_fields] == [MANAGER]
    assert applied.metadata.managed_fields[0].operation == "Apply"

    live = wait_for(lambda: rollout_complete(apps, kube_namespace, "web"))
    assert live.status.available_replicas == 2
    assert live.status.observed_generation >= live.metadata.generation
    available = condition(live, "Available")
    assert (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    progressing = condition(live, "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")

    pods = k8s.CoreV1Api(kube_api).list_namespaced_pod(kube_namespace, label_selector="app=web")
    assert len(pods.items) == 2
    for pod in pods.items:
        assert pod.spec.node_name == kube.NODE_NAME  # bound by the real scheduler
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip
        assert [s.ready for s in pod.status.container_statuses] == [True]


def test_rolling_update_is_driven_by_the_deployment_controller(
    kube_api: Any, kube_namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    apply(apps, kube_namespace, deployment("roll", "plexica/echo:1.0.0", replicas=3))
    wait_for(lambda: rollout_complete(apps, kube_namespace, "roll"))

    updated = apply(apps, kube_namespace, deployment("roll", "plexica/echo:1.1.0", replicas=3))
    assert updated.metadata.generation == 2
    live = wait_for(lambda: rollout_complete(apps, kube_namespace, "roll"))
    assert live.spec.template.spec.containers[0].image == "plexica/echo:1.1.0"

    old, new = replica_sets(apps, kube_namespace, "roll")
    assert old.spec.template.spec.containers[0].image == "plexica/echo:1.0.0"
    assert (old.spec.replicas, new.spec.replicas) == (0, 3)
    assert new.status.ready_replicas == 3
    assert old.metadata.owner_references[0].name == "roll"
    core = k8s.CoreV1Api(kube_api)

    def only_new_pods() -> bool:
        pods = core.list_namespaced_pod(kube_namespace, label_selector="app=roll").items
        images = [p.spec.containers[0].image for p in pods]
        return images == ["plexica/echo:1.1.0"] * 3

    wait_for(only_new_pods)  # the old ones were deleted (and kwok removed them)


def test_a_never_ready_version_exceeds_its_progress_deadline(
    kube_api: Any, kube_namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    apply(apps, kube_namespace, deployment("stuck", "plexica/echo:1.0.0", progress_deadline=5))
    wait_for(lambda: rollout_complete(apps, kube_namespace, "stuck"))

    apply(
        apps,
        kube_namespace,
        deployment("stuck", "plexica/echo:2.0.0-never-ready", progress_deadline=5),
    )

    def deadline_exceeded() -> Any:
        live = apps.read_namespaced_deployment("stuck", kube_namespace)
        progressing = condition(live, "Progressing")
        return live if progressing and progressing.reason == "ProgressDeadlineExceeded" else None

    live = wait_for(deadline_exceeded, timeout=30)
    progressing = condition(live, "Progressing")
    assert progressing.status == "False"
    assert "has timed out progressing" in progressing.message
    # maxUnavailable 0: the old pods still serve, one new pod is up but never Ready.
    assert live.status.available_replicas == 2
    assert live.status.updated_replicas == 1
    assert live.status.unavailable_replicas == 1
    core = k8s.CoreV1Api(kube_api)
    pods = core.list_namespaced_pod(kube_namespace, label_selector="app=stuck").items
    stuck = [p for p in pods if "never-ready" in p.spec.containers[0].image]
    assert len(stuck) == 1
    assert stuck[0].status.phase == "Running"
    assert [c.ready for c in stuck[0].status.container_statuses] == [False]
    ready = next(c for c in stuck[0].status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")
    events = core.list_namespaced_event(
        kube_namespace, field_selector=f"involvedObject.name={stuck[0].metadata.name}"
    ).items
    assert "Unhealthy" in {e.reason for e in events}

    # Rolling back = applying the previous template again: the controller scales the old
    # ReplicaSet's template back in and the Deployment is healthy again.
    apply(apps, kube_namespace, deployment("stuck", "plexica/echo:1.0.0", progress_deadline=5))
    live = wait_for(lambda: rollout_complete(apps, kube_namespace, "stuck"))
    progressing = condition(live, "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    assert live.metadata.generation == 3
    revisions = [
        rs.metadata.annotations["deployment.kubernetes.io/revision"]
        for rs in replica_sets(apps, kube_namespace, "stuck")
    ]
    assert revisions == ["2", "3"]  # the old ReplicaSet is reused, with a new revision
    wait_for(
        lambda: len(core.list_namespaced_pod(kube_namespace, label_selector="app=stuck").items) == 2
    )


def test_crashloop_and_pull_failures_show_in_container_states(
    kube_api: Any, kube_namespace: str
) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apply(apps, kube_namespace, deployment("crash", "plexica/echo:1.0.0-crashloop", replicas=1))
    apply(apps, kube_namespace, deployment("pull", "registry.invalid/pull-fail:1.0.0", replicas=1))
    annotated = deployment("annotated", "plexica/echo:1.0.0", replicas=1)
    annotated["spec"]["template"]["metadata"]["annotations"] = {
        kube.BEHAVIOUR_ANNOTATION: "crashloop"
    }
    apply(apps, kube_namespace, annotated)

    def waiting_reason(app: str) -> str | None:
        for pod in core.list_namespaced_pod(kube_namespace, label_selector=f"app={app}").items:
            for status in pod.status.container_statuses or []:
                if status.state.waiting is not None:
                    reason = status.state.waiting.reason
                    if reason not in (None, "ContainerCreating"):
                        return str(reason)
        return None

    assert wait_for(lambda: waiting_reason("crash")) == "CrashLoopBackOff"
    assert wait_for(lambda: waiting_reason("pull")) == "ImagePullBackOff"
    assert wait_for(lambda: waiting_reason("annotated")) == "CrashLoopBackOff"
    crash = core.list_namespaced_pod(kube_namespace, label_selector="app=crash").items[0]
    assert crash.status.phase == "Running"
    assert crash.status.container_statuses[0].last_state.terminated.exit_code == 1
    pull = core.list_namespaced_pod(kube_namespace, label_selector="app=pull").items[0]
    assert pull.status.phase == "Pending"


def test_a_pod_annotation_sets_its_own_ready_delay(kube_api: Any, kube_namespace: str) -> None:
    apps = k8s.AppsV1Api(kube_api)
    slow = deployment("slow", "plexica/echo:1.0.0", replicas=1)
    slow["spec"]["template"]["metadata"]["annotations"] = {kube.DELAY_ANNOTATION: "2s"}
    begun = time.monotonic()
    apply(apps, kube_namespace, slow)
    wait_for(lambda: rollout_complete(apps, kube_namespace, "slow"))
    assert time.monotonic() - begun >= 2.0


def test_dry_run_apply_changes_nothing(kube_api: Any, kube_namespace: str) -> None:
    apps = k8s.AppsV1Api(kube_api)
    preview = apply(apps, kube_namespace, deployment("dry", "plexica/echo:1.0.0"), dry_run="All")
    # The answer is the object as it would be stored: defaulted by the apiserver...
    assert preview.spec.revision_history_limit == 10
    assert preview.spec.progress_deadline_seconds == 600
    assert preview.spec.template.spec.containers[0].termination_message_path == (
        "/dev/termination-log"
    )
    assert preview.spec.template.spec.restart_policy == "Always"
    # ...but nothing was stored.
    assert not exists(lambda: apps.read_namespaced_deployment("dry", kube_namespace))

    apply(apps, kube_namespace, deployment("dry", "plexica/echo:1.0.0"))
    changed = apply(
        apps, kube_namespace, deployment("dry", "plexica/echo:9.9.9", replicas=5), dry_run="All"
    )
    assert changed.spec.template.spec.containers[0].image == "plexica/echo:9.9.9"
    assert changed.spec.replicas == 5
    live = apps.read_namespaced_deployment("dry", kube_namespace)
    assert live.spec.template.spec.containers[0].image == "plexica/echo:1.0.0"
    assert live.spec.replicas == 2
    assert live.metadata.generation == 1


def test_a_field_owned_by_another_manager_is_a_conflict(kube_api: Any, kube_namespace: str) -> None:
    apps = k8s.AppsV1Api(kube_api)
    apply(apps, kube_namespace, deployment("owned", "plexica/echo:1.0.0", replicas=1))
    # `kubectl scale` takes spec.replicas (an Update through the scale subresource).
    apps.patch_namespaced_deployment_scale(
        "owned", kube_namespace, {"spec": {"replicas": 3}}, field_manager="kubectl"
    )
    live = apps.read_namespaced_deployment("owned", kube_namespace)
    owners = {m.manager: m for m in live.metadata.managed_fields if m.subresource != "status"}
    assert "f:replicas" in owners["kubectl"].fields_v1["f:spec"]
    assert "f:replicas" not in owners[MANAGER].fields_v1["f:spec"]  # moved to kubectl
    assert owners["kubectl"].operation == "Update"

    with pytest.raises(ApiException) as refused:
        apply(apps, kube_namespace, deployment("owned", "plexica/echo:1.0.0", replicas=1))
    assert refused.value.status == 409  # the client raises ConflictException(ApiException)
    status = json.loads(refused.value.body)  # a metav1.Status naming each conflict
    assert status["reason"] == "Conflict"
    [cause] = status["details"]["causes"]
    assert cause["field"] == ".spec.replicas"
    assert cause["message"].startswith('conflict with "kubectl" with subresource "scale"')
    assert apps.read_namespaced_deployment("owned", kube_namespace).spec.replicas == 3

    # Applying the same value is no conflict; force takes the field back.
    apply(apps, kube_namespace, deployment("owned", "plexica/echo:1.0.0", replicas=3))
    forced = apply(
        apps, kube_namespace, deployment("owned", "plexica/echo:1.0.0", replicas=1), force=True
    )
    assert forced.spec.replicas == 1


def test_deleting_a_deployment_removes_its_pods(kube_api: Any, kube_namespace: str) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apply(apps, kube_namespace, deployment("gone", "plexica/echo:1.0.0"))
    wait_for(lambda: rollout_complete(apps, kube_namespace, "gone"))
    apps.delete_namespaced_deployment("gone", kube_namespace, propagation_policy="Foreground")
    wait_for(lambda: not exists(lambda: apps.read_namespaced_deployment("gone", kube_namespace)))
    wait_for(lambda: not core.list_namespaced_pod(kube_namespace, label_selector="app=gone").items)
