"""The Kubernetes provider against the real control plane of devenv/kube.py: kube-apiserver
(server-side apply, dry-run, field managers, PodSecurity admission), the Deployment and
ReplicaSet controllers (rollouts, ProgressDeadlineExceeded), the HPA controller, with kwok
giving pods a life (image markers `never-ready`, `pull-fail`).

Each test gets a namespace of its own, which the provider creates (pod-security enforce
`restricted`: every pod the provider makes must pass it). The pure parts (settings,
rendering with offline validation) need no cluster."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
from kube_cluster import ExternalCluster, exists, kube_context, wait_for
from kubernetes import client as k8s

from devenv import kube
from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.runtime.provider import (
    Autoscaling,
    EgressPeer,
    Endpoint,
    FromEnvRef,
    ProviderError,
    RolloutFailed,
    RolloutSettings,
    SecretKeyRef,
    WorkloadSpec,
    load_provider,
)
from plexica_gitops.runtime.spec import workload_spec
from plexica_gitops_kubernetes import check_settings
from plexica_gitops_kubernetes.objects import render_manifests
from plexica_gitops_kubernetes.provider import DriftKind, KubernetesProvider
from plexica_gitops_kubernetes.settings import KubernetesSettings, Peer, parse_settings

integration = pytest.mark.integration
kube_only = pytest.mark.kube

SECRET_VALUE = "postgres://plugin:Sup3r-s3cret@db/plexica"
REF_VALUE = "ref-" + uuid.uuid4().hex  # behind a secretRef: the cluster reads it, never us
OURS = "app.kubernetes.io/managed-by=plexica-gitops"
KUBERNETES_VERSION = "1.37.0"  # the newest schema kubernetes-validate has (cluster: 1.37.2)


def plugin_spec(**changes: Any) -> WorkloadSpec:
    base = WorkloadSpec(
        plugin_id="crm",
        version="1.0.0",
        image="plexica/echo:1.0.0",
        manifest_hash="m100",
        replicas=2,
        cpu="250m",
        memory="128Mi",
        port=8080,
        readiness_path="/health/ready",
        liveness_path="/health/live",
        env_hash="e100",
        env={"LOG_LEVEL": "info", "DATABASE_URL": SECRET_VALUE},
        env_refs={
            "DATABASE_URL": FromEnvRef("PLEXICA_PLUGIN_DATABASE_URL"),
            "API_TOKEN": SecretKeyRef("crm-api", "token"),
        },
        rollout=RolloutSettings(ready_probes=1, timeout_seconds=3, grace_period_seconds=1),
    )
    return dataclasses.replace(base, **changes)


def version(spec: WorkloadSpec, number: str, image: str | None = None) -> WorkloadSpec:
    return dataclasses.replace(
        spec, version=number, image=image or f"plexica/echo:{number}", manifest_hash=f"m{number}"
    )


class RecordingRoutes:
    """A RouteRegistry that records each call with a snapshot taken at that moment."""

    def __init__(self, snapshot: Callable[[Endpoint], Any] | None = None) -> None:
        self.calls: list[tuple[str, Endpoint, Any]] = []
        self.snapshot = snapshot

    def register(self, endpoint: Endpoint) -> None:
        seen = self.snapshot(endpoint) if self.snapshot else None
        self.calls.append(("register", endpoint, seen))

    def deregister(self, endpoint: Endpoint) -> None:
        self.calls.append(("deregister", endpoint, None))

    def registered(self) -> list[Endpoint]:
        return [e for verb, e, _ in self.calls if verb == "register"]


@pytest.fixture
def make_provider(kube_cluster: kube.KubeCluster | ExternalCluster, kube_api: Any) -> Iterator[Any]:
    """KubernetesProvider(s) on the devenv cluster, each in a namespace of its own (or the
    one given), with short waits; the namespaces are deleted afterwards."""
    made: list[KubernetesProvider] = []

    def make(namespace: str | None = None, **settings: Any) -> KubernetesProvider:
        values = {
            "kubeconfig": str(kube_cluster.kubeconfig),
            "context": kube_context(kube_cluster),
            "namespace": namespace or f"p-{uuid.uuid4().hex[:8]}",
            "drainSeconds": 0.1,
            "progressSlackSeconds": 5,
            **settings,
        }
        provider = KubernetesProvider(parse_settings(values))
        made.append(provider)
        return provider

    yield make
    core = k8s.CoreV1Api(kube_api)
    for provider in made:
        provider.close()
        if exists(lambda p=provider: core.read_namespace(p.settings.namespace)):
            core.delete_namespace(provider.settings.namespace)


@pytest.fixture
def provider(make_provider: Any) -> KubernetesProvider:
    made: KubernetesProvider = make_provider()
    return made


def read(kube_api: Any, provider: KubernetesProvider) -> dict[str, Any]:
    """Our objects in the provider's namespace as plain JSON, by Kind/name."""
    namespace = provider.settings.namespace
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    listings = {
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
        "Secret": core.list_namespaced_secret,
        "ConfigMap": core.list_namespaced_config_map,
        "NetworkPolicy": k8s.NetworkingV1Api(kube_api).list_namespaced_network_policy,
        "HorizontalPodAutoscaler": (
            k8s.AutoscalingV2Api(kube_api).list_namespaced_horizontal_pod_autoscaler
        ),
        "PodDisruptionBudget": k8s.PolicyV1Api(kube_api).list_namespaced_pod_disruption_budget,
    }
    found = {}
    for kind, listing in listings.items():
        for item in listing(namespace, label_selector=OURS).items:
            found[f"{kind}/{item.metadata.name}"] = kube_api.sanitize_for_serialization(item)
    return found


def healthy_by_kubectl(deployment: Any) -> bool:
    status, want = deployment.status, deployment.spec.replicas
    return bool(
        (status.observed_generation or 0) >= deployment.metadata.generation
        and (status.updated_replicas or 0) == want
        and (status.replicas or 0) == want
        and (status.available_replicas or 0) == want
    )


def pods(kube_api: Any, provider: KubernetesProvider, plugin: str = "crm") -> list[Any]:
    return list(
        k8s.CoreV1Api(kube_api)
        .list_namespaced_pod(
            provider.settings.namespace, label_selector=f"plexica.io/plugin={plugin}"
        )
        .items
    )


# --- the pure parts ---------------------------------------------------------------------


def test_settings_are_checked_with_the_key_and_a_hint() -> None:
    assert check_settings({"provider": "kubernetes"}) == []
    problems = check_settings(
        {
            "namepsace": "x",
            "namespace": "Plugins_NS",
            "maxSurge": 0,
            "egress": {"redis": {"cidr": "10.0.0.300/8", "ports": [6379]}},
            "gateway": {"podLabels": {"bad key!": "x"}},
        }
    )
    by_key = {p.key: p for p in problems}
    assert by_key["namepsace"].hint == "Did you mean `namespace`?"
    assert "DNS label" in by_key["namespace"].message
    assert by_key["maxSurge"].message.startswith("spec.runtime.maxSurge")
    assert "not a network" in by_key["egress"].message
    assert "label key" in by_key["gateway"].message
    with pytest.raises(ProviderError) as refused:
        parse_settings({"namespace": "Plugins_NS"})
    assert "DNS label" in refused.value.message


def test_the_entry_point_builds_the_provider_without_a_cluster() -> None:
    provider = load_provider("kubernetes", {"namespace": "team-a", "scope": "blue"})
    assert isinstance(provider, KubernetesProvider)
    assert (provider.settings.namespace, provider.settings.scope) == ("team-a", "blue")


def test_rendered_manifests_validate_offline_and_hold_no_secret() -> None:
    settings = KubernetesSettings(
        egress={"core": Peer(cidr="10.20.0.0/16", ports=(443,))}, image_pull_secrets=("regcred",)
    )
    specs = [
        plugin_spec(),
        plugin_spec(plugin_id="billing", strategy=RolloutStrategy.BLUE_GREEN, replicas=1),
        plugin_spec(
            plugin_id="analytics",
            autoscaling=Autoscaling(min_replicas=2, max_replicas=6, target_cpu_percent=70),
            egress=(EgressPeer(cidr="192.0.2.0/24", ports=(443,)),),
        ),
        plugin_spec(plugin_id="plain", env={"ONLY": "value"}, env_refs={}, cpu=None, memory="1K"),
    ]
    rendered = render_manifests(specs, settings)
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises if invalid
    kinds = [(o["kind"], o["metadata"]["name"]) for o in rendered]
    assert kinds[0] == ("Namespace", "plexica-plugins")
    assert ("Deployment", "plexica-billing-blue") in kinds
    assert ("HorizontalPodAutoscaler", "plexica-analytics") in kinds
    assert ("PodDisruptionBudget", "plexica-crm") in kinds
    assert ("PodDisruptionBudget", "plexica-billing") not in kinds  # one replica
    assert SECRET_VALUE not in json.dumps(rendered)
    secret = next(o for o in rendered if o["kind"] == "Secret" and "crm" in o["metadata"]["name"])
    assert "data" not in secret
    assert secret["metadata"]["annotations"]["plexica.io/env-keys"] == "DATABASE_URL"
    deployments = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Deployment"}
    analytics = deployments["plexica-analytics"]
    assert "replicas" not in analytics["spec"]  # the HPA's
    plain = deployments["plexica-plain"]
    assert plain["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "1k"
    }


# --- against the cluster ------------------------------------------------------------------


@integration
@kube_only
def test_fresh_deploy_creates_every_object_as_declared(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    routes = RecordingRoutes()
    spec = plugin_spec()
    provider.deploy(spec, routes)

    found = read(kube_api, provider)
    secret_name = next(r for r in found if r.startswith("Secret/")).split("/", 1)[1]
    assert sorted(found) == [
        "ConfigMap/plexica-crm-inventory",
        "Deployment/plexica-crm",
        "NetworkPolicy/plexica-crm",
        "PodDisruptionBudget/plexica-crm",
        f"Secret/{secret_name}",
        "Service/plexica-crm",
    ]
    for ref, obj in found.items():
        labels = obj["metadata"]["labels"]
        assert labels["plexica.io/plugin"] == "crm", ref
        assert labels["plexica.io/scope"] == "default", ref
        assert labels["app.kubernetes.io/name"] == "crm", ref
        if not ref.startswith(("ConfigMap/", "Secret/")):
            assert labels["plexica.io/version"] == "1.0.0", ref
            assert labels["plexica.io/manifest-hash"] == "m100", ref
            assert labels["plexica.io/env-hash"] == "e100", ref

    deployment = found["Deployment/plexica-crm"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["progressDeadlineSeconds"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "250m", "memory": "128Mi"},
    }
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/health/ready",
        "port": "http",
        "scheme": "HTTP",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsGroup": 65534,
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "info"}
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "crm-api", "key": "token"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": secret_name,
        "key": "DATABASE_URL",
    }
    secret = found[f"Secret/{secret_name}"]
    assert secret["immutable"] is True
    assert list(secret["data"]) == ["DATABASE_URL"]
    for ref, obj in found.items():  # the value is in the Secret's data and nowhere else
        if not ref.startswith("Secret/"):
            assert "Sup3r-s3cret" not in json.dumps(obj), ref

    service = found["Service/plexica-crm"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"][0]["port"] == 8080
    assert service["ports"][0]["targetPort"] == "http"
    policy = found["NetworkPolicy/plexica-crm"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"]["plexica.io/plugin"] == "crm"
    assert policy["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "plexica-gateway"
    }
    ports = [p for rule in policy["egress"] for p in rule["ports"]]
    assert {"port": 53, "protocol": "UDP"} in ports and {"port": 53, "protocol": "TCP"} in ports
    assert {p["port"] for p in ports} == {53, 3000, 5432, 29092}
    assert found["PodDisruptionBudget/plexica-crm"]["spec"]["maxUnavailable"] == 1

    namespace = k8s.CoreV1Api(kube_api).read_namespace(provider.settings.namespace)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    running = pods(kube_api, provider)
    assert len(running) == 2 and all(p.status.phase == "Running" for p in running)

    url = f"http://plexica-crm.{provider.settings.namespace}.svc.cluster.local:8080"
    assert routes.registered() == [Endpoint("plexica-crm", url, "1.0.0")]
    assert provider.endpoints("crm") == [Endpoint("plexica-crm", url, "1.0.0")]
    workload = provider.observe()["crm"]
    assert (workload.image, workload.version, workload.replicas) == (
        "plexica/echo:1.0.0",
        "1.0.0",
        2,
    )
    assert (workload.ready_replicas, workload.running) == (2, True)
    assert (workload.resources.cpu, workload.resources.memory) == ("250m", "128Mi")
    assert (workload.env_hash, workload.manifest_hash, workload.stale_endpoints) == (
        "e100",
        "m100",
        0,
    )
    assert provider.drift(spec) == []
    assert provider.unmanaged() == []

    provider.deploy(spec, routes)  # a retry changes nothing
    assert (
        read(kube_api, provider)[f"Secret/{secret_name}"]["metadata"]["uid"]
        == (secret["metadata"]["uid"])
    )


@integration
@kube_only
def test_rolling_update_is_the_controllers_and_the_route_follows_health(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec(replicas=3)
    provider.deploy(spec, RecordingRoutes())

    def at_registration(endpoint: Endpoint) -> Any:
        live = apps.read_namespaced_deployment("plexica-crm", namespace)
        sets = apps.list_namespaced_replica_set(namespace, label_selector="plexica.io/plugin=crm")
        return live, sets.items

    routes = RecordingRoutes(at_registration)
    begun = time.monotonic()
    provider.update(version(spec, "1.1.0"), routes)
    took = time.monotonic() - begun

    [(verb, endpoint, (live, sets))] = routes.calls
    assert (verb, endpoint.version) == ("register", "1.1.0")
    # Registered only once the Deployment was healthy by kubectl's rules, on the new image.
    assert healthy_by_kubectl(live)
    assert live.spec.template.spec.containers[0].image == "plexica/echo:1.1.0"
    by_revision = sorted(
        sets, key=lambda rs: int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
    )
    old, new = by_revision
    assert old.spec.template.spec.containers[0].image == "plexica/echo:1.0.0"
    assert (old.spec.replicas, new.spec.replicas, new.status.available_replicas) == (0, 3, 3)
    assert took < 30
    workload = provider.observe()["crm"]
    assert (workload.version, workload.ready_replicas) == ("1.1.0", 3)

    # A changed env value: a new immutable Secret, so the template changes and the pods
    # roll; the previous template's Secret is kept (a rollback would need it).
    before = {r for r in read(kube_api, provider) if r.startswith("Secret/")}
    rotated = dataclasses.replace(
        version(spec, "1.1.0"), env={"LOG_LEVEL": "info", "DATABASE_URL": SECRET_VALUE + "2"}
    )
    provider.update(rotated, RecordingRoutes())
    after = {r for r in read(kube_api, provider) if r.startswith("Secret/")}
    assert before < after and len(after) == 2
    assert (
        len(
            apps.list_namespaced_replica_set(
                namespace, label_selector="plexica.io/plugin=crm"
            ).items
        )
        == 3
    )
    assert provider.drift(rotated) == []


@integration
@kube_only
@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("plexica/echo:1.1.0-never-ready", "ContainersNotReady"),
        ("registry.invalid/pull-fail:1.1.0", "ImagePullBackOff"),
    ],
)
def test_a_version_that_never_gets_ready_is_rolled_back(
    provider: KubernetesProvider, kube_api: Any, image: str, reason: str
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec()
    provider.deploy(spec, RecordingRoutes())
    routes = RecordingRoutes()

    with pytest.raises(RolloutFailed) as failed:
        provider.update(version(spec, "1.1.0", image), routes)

    assert failed.value.rolled_back is True
    assert "ProgressDeadlineExceeded" in failed.value.message
    assert reason in failed.value.message
    assert "the previous template is serving again" in failed.value.message
    assert "Sup3r-s3cret" not in str(failed.value)
    assert routes.registered() == []  # the failed version never got the route
    live = apps.read_namespaced_deployment("plexica-crm", namespace)
    assert live.spec.template.spec.containers[0].image == "plexica/echo:1.0.0"
    assert healthy_by_kubectl(live)
    progressing = next(c for c in live.status.conditions if c.type == "Progressing")
    assert progressing.reason == "NewReplicaSetAvailable"
    workload = provider.observe()["crm"]
    assert (workload.version, workload.image, workload.ready_replicas) == (
        "1.0.0",
        "plexica/echo:1.0.0",
        2,
    )
    wait_for(
        lambda: all(
            p.spec.containers[0].image == "plexica/echo:1.0.0" for p in pods(kube_api, provider)
        )
    )
    assert provider.drift(spec) == []


@integration
@kube_only
def test_kubectl_scale_an_edited_image_and_a_deleted_service_are_drift_and_healed(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec()
    provider.deploy(spec, RecordingRoutes())

    apps.patch_namespaced_deployment_scale(
        "plexica-crm", namespace, {"spec": {"replicas": 4}}, field_manager="kubectl"
    )
    assert provider.observe()["crm"].replicas == 4  # the planner plans a scale back to 2
    [drift] = provider.drift(spec)
    assert (drift.object, drift.path, drift.kind) == (
        "Deployment/plexica-crm",
        ".spec.replicas",
        DriftKind.CHANGED,
    )
    assert (drift.desired, drift.live, drift.managers) == (2, 4, ("kubectl",))

    core.delete_namespaced_service("plexica-crm", namespace)
    networking = k8s.NetworkingV1Api(kube_api)
    networking.delete_namespaced_network_policy("plexica-crm", namespace)
    workload = provider.observe()["crm"]
    assert workload.stale_endpoints == 2  # the planner plans `start`, which re-applies
    assert provider.endpoints("crm", ready_only=False) == []
    assert ("Service/plexica-crm", DriftKind.MISSING) in [
        (d.object, d.kind) for d in provider.drift(spec)
    ]

    provider.start(spec, RecordingRoutes())
    live = apps.read_namespaced_deployment("plexica-crm", namespace)
    assert live.spec.replicas == 2
    owners = [
        m.manager
        for m in live.metadata.managed_fields
        if "f:replicas" in (m.fields_v1 or {}).get("f:spec", {})
    ]
    assert owners == ["plexica-gitops"]  # taken back from kubectl
    assert exists(lambda: core.read_namespaced_service("plexica-crm", namespace))
    assert exists(lambda: networking.read_namespaced_network_policy("plexica-crm", namespace))
    assert provider.drift(spec) == []
    assert provider.observe()["crm"].stale_endpoints == 0

    # `kubectl edit` of the image (an update by another manager): observe shows the image,
    # the planner replaces the workload, and update takes the field back.
    apps.patch_namespaced_deployment(
        "plexica-crm",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "plugin", "image": "hacked:1"}]}}}},
        field_manager="kubectl-edit",
    )
    assert provider.observe()["crm"].image == "hacked:1"
    provider.update(spec, RecordingRoutes())
    assert provider.observe()["crm"].image == "plexica/echo:1.0.0"

    # Another field of the template edited by hand: the pod template drifted.
    apps.patch_namespaced_deployment(
        "plexica-crm",
        namespace,
        {"spec": {"template": {"spec": {"automountServiceAccountToken": True}}}},
        field_manager="kubectl-edit",
    )
    assert provider.observe()["crm"].env_hash == "drift"  # the planner replaces it
    provider.update(spec, RecordingRoutes())
    assert provider.observe()["crm"].env_hash == "e100"


@integration
@kube_only
def test_a_field_another_applier_owns_is_a_reported_conflict(
    make_provider: Any, kube_api: Any
) -> None:
    provider = make_provider()
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec()
    provider.deploy(spec, RecordingRoutes())
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "plexica-crm"},
        "spec": {"template": {"spec": {"containers": [{"name": "plugin", "image": "theirs:2"}]}}},
    }
    apps.patch_namespaced_deployment(
        "plexica-crm",
        namespace,
        theirs,
        field_manager="argocd-controller",
        force=True,
        _content_type="application/apply-patch+yaml",
    )

    conflicts = [d for d in provider.drift(spec) if d.kind is DriftKind.CONFLICT]
    assert [(d.path, d.managers) for d in conflicts] == [
        ('.spec.template.spec.containers[name="plugin"].image', ("argocd-controller",))
    ]
    with pytest.raises(ProviderError) as refused:
        provider.update(spec, RecordingRoutes())
    assert "conflict: Deployment/plexica-crm" in refused.value.message
    assert "image" in refused.value.message and "'argocd-controller'" in refused.value.message
    assert "adoptManagers" in refused.value.hint
    live = apps.read_namespaced_deployment("plexica-crm", namespace)
    assert live.spec.template.spec.containers[0].image == "theirs:2"  # not taken

    adopting = make_provider(namespace, adoptManagers=["argocd-controller"])
    adopting.update(spec, RecordingRoutes())
    live = apps.read_namespaced_deployment("plexica-crm", namespace)
    assert live.spec.template.spec.containers[0].image == "plexica/echo:1.0.0"

    # With reclaimEdits off, even a `kubectl scale` is reported rather than taken back.
    strict = make_provider(namespace, reclaimEdits=False)
    apps.patch_namespaced_deployment_scale(
        "plexica-crm", namespace, {"spec": {"replicas": 3}}, field_manager="kubectl"
    )
    with pytest.raises(ProviderError) as scaled:
        strict.scale(spec, RecordingRoutes())
    assert ".spec.replicas is owned by field manager 'kubectl'" in scaled.value.message
    assert "reclaimEdits" in scaled.value.hint


@integration
@kube_only
def test_stop_scales_to_zero_keeping_the_objects_and_start_brings_it_back(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    spec = plugin_spec()
    provider.deploy(spec, RecordingRoutes())
    kept = sorted(read(kube_api, provider))
    routes = RecordingRoutes()

    provider.stop("crm", routes, grace_period_seconds=1)

    assert [verb for verb, _, _ in routes.calls] == ["deregister"]
    live = k8s.AppsV1Api(kube_api).read_namespaced_deployment(
        "plexica-crm", provider.settings.namespace
    )
    assert live.spec.replicas == 0
    assert pods(kube_api, provider) == []
    assert sorted(read(kube_api, provider)) == kept
    workload = provider.observe()["crm"]
    assert (workload.running, workload.replicas, workload.ready_replicas) == (False, 2, 0)
    assert provider.endpoints("crm", ready_only=False) == []

    # An update while disabled changes the template, and still runs nothing.
    provider.update(dataclasses.replace(version(spec, "1.1.0"), running=False), routes)
    workload = provider.observe()["crm"]
    assert (workload.version, workload.running, workload.replicas) == ("1.1.0", False, 2)
    assert pods(kube_api, provider) == []

    provider.start(version(spec, "1.1.0"), routes)
    assert [verb for verb, _, _ in routes.calls] == ["deregister", "register"]
    workload = provider.observe()["crm"]
    assert (workload.running, workload.replicas, workload.ready_replicas) == (True, 2, 2)
    assert provider.drift(version(spec, "1.1.0")) == []


@integration
@kube_only
def test_remove_deletes_only_our_objects_and_hand_made_ones_are_unmanaged(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    provider.deploy(plugin_spec(), RecordingRoutes())

    def hand_made(name: str, labels: dict[str, str]) -> None:
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name, **labels}},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "app",
                                "image": "team/app:1",
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        }
        apps.create_namespaced_deployment(namespace, body)

    hand_made("plexica-crm-handmade", {"plexica.io/plugin": "crm"})
    labelled = {OURS.split("=")[0]: "plexica-gitops", "plexica.io/scope": "default"}
    hand_made("stray", {**labelled, "plexica.io/plugin": "crm"})

    assert provider.unmanaged() == [
        "Deployment/plexica-crm-handmade",
        "Deployment/stray (labelled as plexica-gitops's, not in an inventory)",
    ]
    assert provider.observe()["crm"].image == "plexica/echo:1.0.0"

    routes = RecordingRoutes()
    provider.remove("crm", routes)

    assert [verb for verb, _, _ in routes.calls] == ["deregister"]
    left = read(kube_api, provider)
    assert sorted(left) == ["Deployment/stray"]
    assert exists(lambda: apps.read_namespaced_deployment("plexica-crm-handmade", namespace))
    wait_for(
        lambda: (
            {p.metadata.labels.get("app") for p in pods(kube_api, provider)}
            == {"plexica-crm-handmade", "stray"}
        )
    )

    # A plugin whose objects' names are taken by a hand-made object: refused, untouched.
    hand_made("plexica-billing", {})
    with pytest.raises(ProviderError) as refused:
        provider.deploy(plugin_spec(plugin_id="billing"), RecordingRoutes())
    assert "Deployment/plexica-billing in namespace" in refused.value.message
    assert "was not made by plexica-gitops" in refused.value.message
    untouched = apps.read_namespaced_deployment("plexica-billing", namespace)
    assert untouched.metadata.labels is None
    assert untouched.spec.template.spec.containers[0].image == "team/app:1"
    assert not [r for r in read(kube_api, provider) if "billing" in r]  # cleaned up


@integration
@kube_only
def test_an_autoscaled_plugin_leaves_the_replica_count_to_its_hpa(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec(replicas=2, autoscaling=Autoscaling(min_replicas=2, max_replicas=5))
    provider.deploy(spec, RecordingRoutes())

    hpa = read(kube_api, provider)["HorizontalPodAutoscaler/plexica-crm"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "plexica-crm"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    live = apps.read_namespaced_deployment("plexica-crm", namespace)
    assert live.spec.replicas == 2
    ours = [m for m in live.metadata.managed_fields if m.manager == "plexica-gitops"]
    assert all("f:replicas" not in (m.fields_v1 or {}).get("f:spec", {}) for m in ours)

    # The HPA (or anyone) scales: not drift, not fought over by an update.
    apps.patch_namespaced_deployment_scale(
        "plexica-crm", namespace, {"spec": {"replicas": 4}}, field_manager="kube-controller-manager"
    )
    assert provider.drift(spec) == []
    assert provider.observe()["crm"].replicas == 2  # what git asked for: the planner is content
    provider.update(version(spec, "1.1.0"), RecordingRoutes())
    live = apps.read_namespaced_deployment("plexica-crm", namespace)
    assert live.spec.replicas == 4
    assert live.spec.template.spec.containers[0].image == "plexica/echo:1.1.0"

    provider.stop("crm", RecordingRoutes(), grace_period_seconds=1)
    assert apps.read_namespaced_deployment("plexica-crm", namespace).spec.replicas == 0
    provider.start(version(spec, "1.1.0"), RecordingRoutes())
    assert apps.read_namespaced_deployment("plexica-crm", namespace).spec.replicas == 2


@integration
@kube_only
def test_the_plugin_kinds_autoscaling_egress_and_secret_refs_reach_the_cluster(
    provider: KubernetesProvider, kube_api: Any, desired_state_copy: Any, tmp_path: Any
) -> None:
    """Through the core's WorkloadSpec (desired state -> workload_spec), not a hand-made
    one: the HPA, the declared egress, and a secretRef read by the cluster itself."""
    repo = desired_state_copy
    repo.replace(
        "plugins/crm/plugin.yaml",
        "  replicas: 2\n  env:\n",
        "  replicas: 2\n"
        "  autoscaling: {minReplicas: 1, maxReplicas: 5, targetCPUUtilizationPercentage: 60}\n"
        "  network: {egress: [{cidr: 192.0.2.0/24, ports: [443]}]}\n"
        "  env:\n    CRM_API_TOKEN: {secretRef: {name: crm-api, key: token}}\n",
    )
    report = repo.validate()
    assert [f.code for f in report.findings] == ["PGV518"] * 2  # the example names docker
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "crm-api").mkdir(parents=True)
    (secrets_dir / "crm-api" / "token").write_text(REF_VALUE, encoding="utf-8")
    environ = {
        "PLEXICA_SECRETS_DIR": str(secrets_dir),
        "PLEXICA_PLUGIN_DATABASE_URL": SECRET_VALUE,
        "PLEXICA_KAFKA_BOOTSTRAP_SERVERS": "kafka:29092",
    }
    entry = report.desired.plugins["crm"]
    spec = workload_spec(entry, report.desired, running=True, environ=environ, digest_key=b"k")
    spec = dataclasses.replace(spec, rollout=RolloutSettings(ready_probes=1, timeout_seconds=5))
    provider.deploy(spec, RecordingRoutes())

    found = read(kube_api, provider)
    hpa = found["HorizontalPodAutoscaler/plexica-crm"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    egress = found["NetworkPolicy/plexica-crm"]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [
        {"port": 443, "protocol": "TCP"}
    ]} in egress  # fmt: skip
    deployment = found["Deployment/plexica-crm"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CRM_API_TOKEN"] == {
        "name": "CRM_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "crm-api", "key": "token"}},
    }
    assert "value" in env["LOG_LEVEL"]  # a literal of git stays one
    [owned] = [r for r in found if r.startswith("Secret/")]
    data = {k: base64.b64decode(v).decode() for k, v in found[owned]["data"].items()}
    assert data["DATABASE_URL"] == SECRET_VALUE  # fromEnv: resolved into our Secret
    assert "CRM_API_TOKEN" not in data and "LOG_LEVEL" not in data
    for ref, obj in found.items():  # neither value in any object, label or annotation
        text = json.dumps(obj)
        assert REF_VALUE not in text, ref
        if not ref.startswith("Secret/"):
            assert SECRET_VALUE not in text and "Sup3r-s3cret" not in text, ref
    assert REF_VALUE not in data.values()

    # The HPA scales below git's `replicas` (it owns the count): neither drift nor unready.
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    apps.patch_namespaced_deployment_scale(
        "plexica-crm", namespace, {"spec": {"replicas": 1}}, field_manager="kube-controller-manager"
    )
    wait_for(lambda: apps.read_namespaced_deployment_status("plexica-crm", namespace).status
             .replicas == 1)  # fmt: skip
    assert provider.drift(spec) == []
    workload = provider.observe()["crm"]
    assert (workload.replicas, workload.ready_replicas) == (2, 2)


@integration
@kube_only
def test_each_applied_object_carries_the_revision_and_a_new_revision_alone_is_no_drift(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    first, second = "main@sha1:" + "a" * 40, "main@sha1:" + "b" * 40
    spec = plugin_spec(revision=first, autoscaling=Autoscaling(min_replicas=2, max_replicas=3))
    provider.deploy(spec, RecordingRoutes())
    found = read(kube_api, provider)
    revisions = {
        ref: (obj["metadata"].get("annotations") or {}).get("plexica.io/revision")
        for ref, obj in found.items()
    }
    kinds = ("Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget")
    for ref in [f"{kind}/plexica-crm" for kind in (*kinds, "HorizontalPodAutoscaler")]:
        assert revisions.pop(ref) == first, ref
    # The env Secret is shared by every template with its values, the inventory is ours.
    assert set(revisions.values()) == {None}

    assert provider.drift(dataclasses.replace(spec, revision=second)) == []
    provider.update(version(dataclasses.replace(spec, revision=second), "1.1.0"), RecordingRoutes())
    deployment = read(kube_api, provider)["Deployment/plexica-crm"]
    assert deployment["metadata"]["annotations"]["plexica.io/revision"] == second
    assert provider.observe()["crm"].env_hash == "e100"  # not taken for template drift


@integration
@kube_only
def test_blue_green_switches_the_service_once_the_new_deployment_is_ready(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec(strategy=RolloutStrategy.BLUE_GREEN)
    provider.deploy(spec, RecordingRoutes())
    selected = core.read_namespaced_service("plexica-crm", namespace).spec.selector
    assert selected["plexica.io/deployment"] == "plexica-crm-blue"

    def at_registration(endpoint: Endpoint) -> Any:
        service = core.read_namespaced_service("plexica-crm", namespace)
        green = apps.read_namespaced_deployment("plexica-crm-green", namespace)
        blue_there = exists(lambda: apps.read_namespaced_deployment("plexica-crm-blue", namespace))
        return service.spec.selector["plexica.io/deployment"], green, blue_there

    routes = RecordingRoutes(at_registration)
    provider.update(version(spec, "1.1.0"), routes)

    [(_, endpoint, (selected_then, green, blue_then))] = routes.calls
    assert endpoint.version == "1.1.0" and endpoint.instance == "plexica-crm-green"
    assert selected_then == "plexica-crm-green" and healthy_by_kubectl(green)
    assert blue_then  # the old one went only after the switch
    assert not exists(lambda: apps.read_namespaced_deployment("plexica-crm-blue", namespace))
    workload = provider.observe()["crm"]
    assert (workload.version, workload.ready_replicas) == ("1.1.0", 2)

    with pytest.raises(RolloutFailed) as failed:
        provider.update(version(spec, "1.2.0", "plexica/echo:1.2.0-never-ready"), RecordingRoutes())
    assert failed.value.rolled_back is True
    assert "the old Deployment kept serving" in failed.value.message
    selected = core.read_namespaced_service("plexica-crm", namespace).spec.selector
    assert selected["plexica.io/deployment"] == "plexica-crm-green"
    assert not exists(lambda: apps.read_namespaced_deployment("plexica-crm-blue", namespace))
    assert provider.observe()["crm"].version == "1.1.0"
    assert provider.drift(version(spec, "1.1.0")) == []  # the companions are 1.1.0's again


@integration
@kube_only
def test_a_fresh_install_that_never_gets_ready_leaves_nothing(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    routes = RecordingRoutes()
    with pytest.raises(RolloutFailed) as failed:
        provider.deploy(plugin_spec(image="plexica/echo:1.0.0-crashloop"), routes)
    assert failed.value.rolled_back is True
    assert "CrashLoopBackOff" in failed.value.message
    assert "nothing was serving yet" in failed.value.message
    assert routes.calls == []
    assert read(kube_api, provider) == {}
    assert provider.observe() == {}


@integration
@kube_only
def test_a_changed_autoscaling_alone_is_applied_without_restarting_pods(
    provider: KubernetesProvider, kube_api: Any
) -> None:
    """The planner replaces the workload when only the policy hash differs (git changed
    autoscaling or egress): the provider then updates the HPA, records the new hash for the
    next plan, and leaves the pod template (so the pods) alone."""
    apps = k8s.AppsV1Api(kube_api)
    namespace = provider.settings.namespace
    spec = plugin_spec(
        replicas=2, autoscaling=Autoscaling(min_replicas=2, max_replicas=3), policy_hash="p-one"
    )
    provider.deploy(spec, RecordingRoutes())
    assert provider.observe()["crm"].policy_hash == "p-one"
    revision = "deployment.kubernetes.io/revision"  # the controller's: one per pod template
    first = apps.read_namespaced_deployment("plexica-crm", namespace).metadata.annotations

    wider = dataclasses.replace(
        spec, autoscaling=Autoscaling(min_replicas=2, max_replicas=6), policy_hash="p-two"
    )
    provider.update(wider, RecordingRoutes())
    hpa = read(kube_api, provider)["HorizontalPodAutoscaler/plexica-crm"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert provider.observe()["crm"].policy_hash == "p-two"
    after = apps.read_namespaced_deployment("plexica-crm", namespace).metadata.annotations
    assert after[revision] == first[revision]  # the same ReplicaSet: no pod was replaced
    assert provider.drift(wider) == []
