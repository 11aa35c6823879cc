"""The Kubernetes objects of a plugin, built from its WorkloadSpec and the settings: pure
functions, shared by apply (the provider), drift (dry-run apply) and `render_manifests`.

Per plugin, in the settings' namespace (names for people, labels for the reconciler):

    Deployment  plexica-<id> (rolling) or plexica-<id>-blue / -green (blue-green)
    Service     plexica-<id>           ClusterIP, port -> the container's `http` port
    NetworkPolicy plexica-<id>         default deny; gateway in; DNS, core, PostgreSQL, Kafka out
    HorizontalPodAutoscaler plexica-<id>  when the plugin declares autoscaling
    PodDisruptionBudget plexica-<id>   when more than one replica
    Secret      plexica-<id>-env-<suffix>  the env values the provider resolved (immutable;
                a new name when the values change, so the template changes and the pods
                roll, and a rolled-back template brings its own values back)
    ConfigMap   plexica-<id>-inventory  what the provider created and last applied

Every object carries `LABEL_MANAGED_BY`, `LABEL_NAME`, `LABEL_PLUGIN`, `LABEL_VERSION`,
`LABEL_SCOPE`, `LABEL_MANIFEST_HASH` and `LABEL_ENV_HASH` (the env Secret all but the last
three: it is shared by every template with the same values), and, but for that Secret,
`ANNOTATION_REVISION` when the spec carries the revision. Env values are never in a label,
an annotation or the Deployment: `secretRef` entries become `secretKeyRef`s to the named
Secret, values the provider resolved go into the provider's own Secret.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.runtime.provider import (
    MANAGED_BY,
    EgressPeer,
    FromEnvRef,
    ProviderError,
    SecretKeyRef,
    WorkloadSpec,
)
from plexica_gitops_kubernetes.settings import DNS_LABEL, KubernetesSettings, Peer

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_PLUGIN = "plexica.io/plugin"
LABEL_VERSION = "plexica.io/version"  # label-safe form; the exact version is an annotation
LABEL_SCOPE = "plexica.io/scope"
LABEL_MANIFEST_HASH = "plexica.io/manifest-hash"
LABEL_ENV_HASH = "plexica.io/env-hash"
LABEL_DEPLOYMENT = "plexica.io/deployment"  # on pods: which of the plugin's Deployments
LABEL_ROLE = "plexica.io/role"  # env / inventory: what a provider-owned Secret/ConfigMap is

ANNOTATION_VERSION = "plexica.io/version"
ANNOTATION_REPLICAS = "plexica.io/replicas"  # what git asked for (also while stopped)
ANNOTATION_CPU = "plexica.io/cpu"  # the manifest's notation, as written
ANNOTATION_MEMORY = "plexica.io/memory"
# keyed digest of the env values (WorkloadSpec.env_digest; never the values): an annotation,
# since "hmac-sha256:<64 hex>" is no valid label value
ANNOTATION_ENV_DIGEST = "plexica.io/env-digest"
# hash of the plugin's autoscaling and egress as applied (WorkloadSpec.policy_hash): the
# planner compares it with git's, so a change of only those is planned
ANNOTATION_POLICY_HASH = "plexica.io/policy-hash"
ANNOTATION_ENV_KEYS = "plexica.io/env-keys"  # on a rendered Secret: the keys to fill in
# The desired-state revision of the apply that last applied the object, for people (`kubectl
# describe`): never compared, so a commit that changes nothing about a plugin changes nothing.
ANNOTATION_REVISION = "plexica.io/revision"

CONTAINER = "plugin"
PORT_NAME = "http"
COLORS = ("blue", "green")
MAX_ID_LENGTH = 63 - len("plexica--green")  # every name stays a DNS label
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ENV_KEY = re.compile(r"[-._a-zA-Z0-9]+")


# --- names and labels ----------------------------------------------------------------------


def check_plugin_id(plugin_id: str) -> None:
    if len(plugin_id) > MAX_ID_LENGTH or not DNS_LABEL.fullmatch(plugin_id):
        raise ProviderError(
            f"plugin id {plugin_id!r} cannot name Kubernetes objects (a DNS label of at most "
            f"{MAX_ID_LENGTH} characters is needed)",
            "shorten the plugin id",
        )


def deployment_name(plugin_id: str, color: str | None = None) -> str:
    return f"plexica-{plugin_id}-{color}" if color else f"plexica-{plugin_id}"


def service_name(plugin_id: str) -> str:
    return f"plexica-{plugin_id}"


def inventory_name(plugin_id: str) -> str:
    return f"plexica-{plugin_id}-inventory"


def env_secret_name(plugin_id: str, suffix: str | None) -> str:
    return f"plexica-{plugin_id}-env-{suffix}" if suffix else f"plexica-{plugin_id}-env"


def service_url(plugin_id: str, port: int, settings: KubernetesSettings) -> str:
    host = f"{service_name(plugin_id)}.{settings.namespace}.svc.{settings.cluster_domain}"
    return f"http://{host}:{port}"


def label_value(text: str) -> str:
    """`text` as a label value: unsafe characters (`+` of semver build metadata) become
    `_`, at most 63, starting and ending alphanumeric."""
    value = _LABEL_UNSAFE.sub("_", text)[:63]
    return value.strip("_.-")


def owner_labels(plugin_id: str, settings: KubernetesSettings) -> dict[str, str]:
    """What finds an object as ours (with the plugin's id)."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SCOPE: settings.scope,
        LABEL_PLUGIN: plugin_id,
    }


def selector(settings: KubernetesSettings, plugin_id: str | None = None) -> str:
    """The label selector of our objects (of one plugin's)."""
    parts = [f"{LABEL_MANAGED_BY}={MANAGED_BY}", f"{LABEL_SCOPE}={settings.scope}"]
    if plugin_id is not None:
        parts.append(f"{LABEL_PLUGIN}={plugin_id}")
    return ",".join(parts)


def spec_labels(spec: WorkloadSpec, settings: KubernetesSettings) -> dict[str, str]:
    return {
        **owner_labels(spec.plugin_id, settings),
        LABEL_NAME: spec.plugin_id,
        LABEL_VERSION: label_value(spec.version),
        LABEL_MANIFEST_HASH: label_value(spec.manifest_hash),
        LABEL_ENV_HASH: label_value(spec.env_hash),
    }


def _metadata(
    name: str,
    spec: WorkloadSpec,
    settings: KubernetesSettings,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": settings.namespace,
        "labels": spec_labels(spec, settings),
    }
    chosen = dict(annotations or {})
    if spec.revision:
        chosen[ANNOTATION_REVISION] = spec.revision
    if chosen:
        metadata["annotations"] = chosen
    return metadata


def _pod_selector(plugin_id: str, settings: KubernetesSettings) -> dict[str, str]:
    return {LABEL_PLUGIN: plugin_id, LABEL_SCOPE: settings.scope}


def _deployment_selector(plugin_id: str, name: str, settings: KubernetesSettings) -> dict[str, str]:
    return {**_pod_selector(plugin_id, settings), LABEL_DEPLOYMENT: name}


# --- the objects ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PluginObjects:
    """One plugin's desired objects, in the order they are applied (the Secret before the
    Deployment whose pods read it; the Deployment last)."""

    secret: dict[str, Any] | None
    service: dict[str, Any]
    network_policy: dict[str, Any]
    disruption_budget: dict[str, Any] | None
    autoscaler: dict[str, Any] | None
    deployment: dict[str, Any]

    def companions(self) -> list[dict[str, Any]]:
        """Everything but the Deployment, in apply order."""
        found = [self.secret, self.service, self.network_policy]
        found += [self.disruption_budget, self.autoscaler]
        return [each for each in found if each is not None]

    def all(self) -> list[dict[str, Any]]:
        return [*self.companions(), self.deployment]


def build_objects(
    spec: WorkloadSpec,
    settings: KubernetesSettings,
    *,
    deployment: str | None = None,
    secret_suffix: str | None = None,
    replicas: int | None = None,
) -> PluginObjects:
    """The plugin's objects. `deployment`: the Deployment's name (default: the rolling
    one), which the Service also selects; `secret_suffix`: the env Secret's name suffix
    (None: the rendered, unsuffixed name, with no data); `replicas`: what the Deployment
    says (default: `spec.replicas`, 0 when not running; left out when an HPA owns it,
    unless given)."""
    check_plugin_id(spec.plugin_id)
    name = deployment or deployment_name(spec.plugin_id)
    secret = env_secret(spec, settings, secret_suffix)
    if replicas is None and spec.autoscaling is None:
        replicas = spec.replicas if spec.running else 0
    return PluginObjects(
        secret=secret,
        service=service(spec, settings, name),
        network_policy=network_policy(spec, settings),
        disruption_budget=disruption_budget(spec, settings),
        autoscaler=autoscaler(spec, settings, name),
        deployment=deployment_object(
            spec, settings, name, secret["metadata"]["name"] if secret else None, replicas
        ),
    )


def env_secret(
    spec: WorkloadSpec, settings: KubernetesSettings, suffix: str | None
) -> dict[str, Any] | None:
    """The provider's Secret holding the values it resolved (`fromEnv`; every value when
    the spec cannot say which are references), or None when there are none. Rendered
    (`suffix` None): no data, the keys to fill in listed in an annotation."""
    keys = _secret_keys(spec)
    if not keys:
        return None
    # Shared by every template whose values are the same (it is named by them), so it
    # carries no version or hashes: those would be false for some of its users.
    labels = {**owner_labels(spec.plugin_id, settings), LABEL_NAME: spec.plugin_id}
    labels[LABEL_ROLE] = "env"
    metadata = {
        "name": env_secret_name(spec.plugin_id, suffix),
        "namespace": settings.namespace,
        "labels": labels,
    }
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata}
    body["type"] = "Opaque"
    if suffix is None:
        metadata["annotations"] = {ANNOTATION_ENV_KEYS: ",".join(keys)}
        return body
    body["immutable"] = True
    body["data"] = {key: _b64(spec.env[key]) for key in keys}
    return body


def secret_data(spec: WorkloadSpec) -> dict[str, str]:
    """The env Secret's data as the API returns it (base64), to compare with a live one."""
    return {key: _b64(spec.env[key]) for key in _secret_keys(spec)}


def _secret_keys(spec: WorkloadSpec) -> list[str]:
    refs = spec.env_refs
    if refs is None:
        keys = sorted(spec.env)
    else:
        keys = sorted(n for n, r in refs.items() if isinstance(r, FromEnvRef))
    bad = [key for key in keys if not _ENV_KEY.fullmatch(key)]
    if bad:
        raise ProviderError(
            f"plugin {spec.plugin_id!r}: env name(s) {', '.join(bad)} cannot be Secret keys",
            "env names may hold letters, digits, `-`, `_` and `.`",
        )
    return keys


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


def _env(spec: WorkloadSpec, secret: str | None) -> list[dict[str, Any]]:
    refs = spec.env_refs
    in_secret = set(_secret_keys(spec))
    names = sorted(set(spec.env) | set(refs or {}))
    entries: list[dict[str, Any]] = []
    for name in names:
        ref = (refs or {}).get(name)
        if isinstance(ref, SecretKeyRef):
            entries.append(_from_secret(name, ref.name, ref.key))
        elif name in in_secret and secret is not None:
            entries.append(_from_secret(name, secret, name))
        elif name in in_secret:
            raise AssertionError("env values without the provider's Secret")  # pragma: no cover
        else:  # a literal of the desired state: in git already, so not a secret
            entries.append({"name": name, "value": spec.env[name]})
    return entries


def _from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _quantity(value: str) -> str:
    # The manifest allows `K` for 10^3 (as validate does); Kubernetes writes it `k`.
    return value[:-1] + "k" if value.endswith("K") else value


def _resources(spec: WorkloadSpec) -> dict[str, Any]:
    """Requests = limits (Guaranteed QoS): the manifest declares one number per resource,
    and Docker enforces it as the limit; the scheduler reserves what the plugin may use."""
    amounts = {}
    if spec.cpu is not None:
        amounts["cpu"] = _quantity(spec.cpu)
    if spec.memory is not None:
        amounts["memory"] = _quantity(spec.memory)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _probe(path: str, period: int, timeout: int, **extra: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": 3,
        **extra,
    }


def _security(settings: KubernetesSettings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment_object(
    spec: WorkloadSpec,
    settings: KubernetesSettings,
    name: str,
    secret: str | None,
    replicas: int | None,
) -> dict[str, Any]:
    """The Deployment. `progressDeadlineSeconds` is the rollout timeout, so the controller
    itself says ProgressDeadlineExceeded; `maxUnavailable: 0` keeps every ready replica
    serving until its replacement is ready. The readiness probe asks `readyProbes` answers
    in a row, every `probeIntervalSeconds` (whole seconds, at least 1)."""
    rollout = spec.rollout
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "env": _env(spec, secret),
        "resources": _resources(spec),
        "readinessProbe": _probe(
            spec.readiness_path,
            max(1, round(rollout.probe_interval_seconds)),
            settings.probe_timeout_seconds,
            successThreshold=rollout.ready_probes,
        ),
        "livenessProbe": _probe(
            spec.liveness_path, settings.liveness_period_seconds, settings.probe_timeout_seconds
        ),
        "securityContext": _security(settings),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_labels = {
        **owner_labels(spec.plugin_id, settings),
        LABEL_NAME: spec.plugin_id,
        LABEL_VERSION: label_value(spec.version),
        LABEL_DEPLOYMENT: name,
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": math.ceil(rollout.grace_period_seconds),
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": settings.tmp_size}}
        ],
    }
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": each} for each in settings.image_pull_secrets]
    annotations = {ANNOTATION_VERSION: spec.version, ANNOTATION_REPLICAS: str(spec.replicas)}
    if spec.cpu is not None:
        annotations[ANNOTATION_CPU] = spec.cpu
    if spec.memory is not None:
        annotations[ANNOTATION_MEMORY] = spec.memory
    if spec.env_digest:
        annotations[ANNOTATION_ENV_DIGEST] = spec.env_digest
    if spec.policy_hash:
        annotations[ANNOTATION_POLICY_HASH] = spec.policy_hash
    body: dict[str, Any] = {
        "selector": {"matchLabels": _deployment_selector(spec.plugin_id, name, settings)},
        "progressDeadlineSeconds": max(1, math.ceil(rollout.timeout_seconds)),
        "revisionHistoryLimit": settings.revision_history_limit,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": settings.max_surge, "maxUnavailable": 0},
        },
        "template": {"metadata": {"labels": pod_labels}, "spec": pod},
    }
    if replicas is not None:
        body = {"replicas": replicas, **body}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, spec, settings, annotations=annotations),
        "spec": body,
    }


def service(spec: WorkloadSpec, settings: KubernetesSettings, deployment: str) -> dict[str, Any]:
    """ClusterIP; selects the pods of `deployment` (the switch of a blue-green update)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service_name(spec.plugin_id), spec, settings),
        "spec": {
            "type": "ClusterIP",
            "selector": _deployment_selector(spec.plugin_id, deployment, settings),
            "ports": [
                {"name": PORT_NAME, "port": spec.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def _peer(peer: Peer | EgressPeer) -> dict[str, Any]:
    if peer.cidr is not None:
        return {"ipBlock": {"cidr": peer.cidr}}
    found: dict[str, Any] = {}
    if peer.namespace_labels is not None:
        found["namespaceSelector"] = {"matchLabels": dict(peer.namespace_labels)}
    if peer.pod_labels is not None:
        found["podSelector"] = {"matchLabels": dict(peer.pod_labels)}
    return found


def _ports(ports: Sequence[int], protocols: Sequence[str]) -> list[dict[str, Any]]:
    return [{"protocol": proto, "port": port} for port in ports for proto in protocols]


def _rule(
    direction: str, peer: Peer | EgressPeer, ports: Sequence[int] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {direction: [_peer(peer)]}
    chosen = peer.ports if ports is None else ports
    if chosen:
        rule["ports"] = _ports(chosen, peer.protocols)
    return rule


def network_policy(spec: WorkloadSpec, settings: KubernetesSettings) -> dict[str, Any]:
    """Default deny both ways for the plugin's pods; in: the gateway, on the plugin's port
    (the gateway peer's own `ports` are not used); out: DNS, the platform's services of
    `egress` and what the plugin declares."""
    egress: list[Peer | EgressPeer] = [settings.dns, *settings.egress.values(), *spec.egress]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(service_name(spec.plugin_id), spec, settings),
        "spec": {
            "podSelector": {"matchLabels": _pod_selector(spec.plugin_id, settings)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [_rule("from", settings.gateway, [spec.port])],
            "egress": [_rule("to", peer) for peer in egress],
        },
    }


def autoscaler(
    spec: WorkloadSpec, settings: KubernetesSettings, deployment: str
) -> dict[str, Any] | None:
    scaling = spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(service_name(spec.plugin_id), spec, settings),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def disruption_budget(spec: WorkloadSpec, settings: KubernetesSettings) -> dict[str, Any] | None:
    """Voluntary evictions (node drains) take one replica at a time: present when the
    plugin has more than one replica (or may have, autoscaled)."""
    scaling = spec.autoscaling
    least = scaling.min_replicas if scaling else spec.replicas
    if least <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(service_name(spec.plugin_id), spec, settings),
        "spec": {
            "selector": {"matchLabels": _pod_selector(spec.plugin_id, settings)},
            settings.disruption_budget: 1,
        },
    }


def namespace_object(settings: KubernetesSettings) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: MANAGED_BY}
    if settings.pod_security is not None:
        labels["pod-security.kubernetes.io/enforce"] = settings.pod_security
        labels["pod-security.kubernetes.io/enforce-version"] = "latest"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": labels},
    }


def render_manifests(
    specs: Sequence[WorkloadSpec], settings: KubernetesSettings
) -> list[dict[str, Any]]:
    """The manifests apply would create, for teams that hand them to Argo CD or Helm: the
    namespace (when the provider would create it), then each plugin's objects. The env
    Secret is rendered without data (its keys listed in `plexica.io/env-keys`): values
    are never written out; the Deployment refers to it as it does when applied. A
    blue-green plugin renders its blue Deployment."""
    return [obj for _, objects in render_groups(specs, settings) for obj in objects]


def render_groups(
    specs: Sequence[WorkloadSpec], settings: KubernetesSettings
) -> list[tuple[str, list[dict[str, Any]]]]:
    """`render_manifests` in named groups, one file each: `namespace` (when the provider
    would create it), then `plugin-<id>` per plugin by id (the names cannot collide: a
    plugin id is a DNS label)."""
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    if settings.create_namespace:
        groups.append(("namespace", [namespace_object(settings)]))
    for spec in sorted(specs, key=lambda s: s.plugin_id):
        color = COLORS[0] if spec.strategy is RolloutStrategy.BLUE_GREEN else None
        name = deployment_name(spec.plugin_id, color)
        # No revision: rendered files change only when the objects do (Argo CD and Helm
        # keep their own revision of what they applied).
        unrevised = dataclasses.replace(spec, revision="")
        built = build_objects(unrevised, settings, deployment=name)  # replicas as apply sets
        groups.append((f"plugin-{spec.plugin_id}", built.all()))
    return groups
