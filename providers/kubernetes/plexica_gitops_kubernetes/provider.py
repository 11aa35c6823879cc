"""Plugin workloads as Kubernetes objects (the `kubernetes` runtime provider).

What each plugin gets is in `objects` (Deployment, Service, NetworkPolicy, PDB, HPA, env
Secret) and `inventory` (the record of them). How it is applied:

- Server-side apply as field manager `plexica-gitops`, never forced blindly: an apply that
  meets a 409 is retried with force only when every conflicting field is ours to take (a
  manager named `plexica-gitops*`, one listed in `adoptManagers`, the HPA's hold on
  `spec.replicas` through the scale subresource, or, with `reclaimEdits` (the default), a
  field of ours that someone changed with an imperative update such as `kubectl scale` or
  `kubectl edit` — drift the plan showed). A field another *applier* owns is an error
  naming the field and the manager; nothing is taken.
- An object that exists without our labels is never applied to (nor deleted).
- Rollouts are the Deployment controller's: the provider applies the template and watches
  the Deployment until it is healthy by kubectl's rules or failed (ProgressDeadlineExceeded,
  whose deadline is the rollout timeout, or our own deadline a little later). A failed
  rolling update re-applies the previous template (from the inventory), waits until it is
  healthy again and raises RolloutFailed(rolled_back=True) with the pods' reasons. Blue-green
  brings up a second Deployment, switches the Service to it once all its pods are ready,
  then deletes the old one.
- The endpoint registered is the Service's cluster DNS name, after the rollout is healthy.
  Nothing here ever sends a request to a pod or a ClusterIP: readiness is what the
  kubelet reports in the pods' Ready condition.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, Configuration

from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.live.model import LiveResources, LiveWorkload
from plexica_gitops.runtime.provider import (
    MANAGED_BY,
    Endpoint,
    Provider,
    ProviderError,
    RolloutFailed,
    RouteRegistry,
    WorkloadSpec,
)
from plexica_gitops_kubernetes import ssa
from plexica_gitops_kubernetes.inventory import Entry, Inventory
from plexica_gitops_kubernetes.objects import (
    ANNOTATION_CPU,
    ANNOTATION_ENV_DIGEST,
    ANNOTATION_MEMORY,
    ANNOTATION_POLICY_HASH,
    ANNOTATION_REPLICAS,
    ANNOTATION_REVISION,
    ANNOTATION_VERSION,
    COLORS,
    CONTAINER,
    LABEL_DEPLOYMENT,
    LABEL_ENV_HASH,
    LABEL_MANAGED_BY,
    LABEL_MANIFEST_HASH,
    LABEL_PLUGIN,
    LABEL_SCOPE,
    LABEL_VERSION,
    PluginObjects,
    build_objects,
    check_plugin_id,
    deployment_name,
    env_secret_name,
    inventory_name,
    namespace_object,
    secret_data,
    selector,
    service_name,
    service_url,
)
from plexica_gitops_kubernetes.rollout import (
    Health,
    Progress,
    deployment_health,
    pod_reasons,
    replica_failure,
)
from plexica_gitops_kubernetes.settings import KubernetesSettings, parse_settings

log = logging.getLogger(__name__)

FIELD_MANAGER = MANAGED_BY
HANDOVER_MANAGER = f"{MANAGED_BY}-handover"  # hands spec.replicas over to an HPA
SCALE_MANAGER = f"{MANAGED_BY}-scale"  # stop's scale to zero (the scale subresource)
HPA_MANAGER = "kube-controller-manager"
# Kinds observe lists (one request each) and uninstall may delete.
OBSERVED = (
    ssa.DEPLOYMENT,
    ssa.SERVICE,
    ssa.NETWORK_POLICY,
    ssa.AUTOSCALER,
    ssa.DISRUPTION_BUDGET,
    ssa.SECRET,
    ssa.CONFIG_MAP,
)
_SYSTEM_OBJECTS = {"ConfigMap/kube-root-ca.crt"}  # made in every namespace by the cluster
CLUSTER_HINT = (
    "check that the cluster is reachable with spec.runtime.kubeconfig (or $KUBECONFIG, or "
    "the in-cluster service account) and spec.runtime.context in platform.yaml"
)


class DriftKind(StrEnum):
    MISSING = "missing"  # an object we applied is gone
    CHANGED = "changed"  # a field we set has another value now
    CONFLICT = "conflict"  # a field we set is owned by another applier: apply would refuse
    EXTRA = "extra"  # an object we created is no longer desired (apply deletes it)


@dataclass(frozen=True, slots=True)
class FieldDrift:
    """One difference between what the provider would apply and what is live."""

    object: str  # Kind/name
    path: str  # .spec.replicas; "." for the whole object
    kind: DriftKind
    desired: Any = None
    live: Any = None
    managers: tuple[str, ...] = ()  # who owns the live field (other than us)

    def describe(self) -> str:
        who = f" (by {', '.join(self.managers)})" if self.managers else ""
        if self.kind is DriftKind.MISSING:
            return f"{self.object} is missing"
        if self.kind is DriftKind.EXTRA:
            return f"{self.object} is no longer desired"
        if self.kind is DriftKind.CONFLICT:
            return f"{self.object} {self.path} is owned by another applier{who}"
        return f"{self.object} {self.path}: {self.desired!r} → {self.live!r}{who}"


@dataclass(slots=True)
class _Plugin:
    """One plugin's objects as listed (by ref) and its inventory."""

    plugin_id: str
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    inventory: Inventory | None = None

    def deployments(self) -> list[dict[str, Any]]:
        found = [o for r, o in self.objects.items() if r.startswith("Deployment/")]
        return sorted(found, key=lambda d: str(d["metadata"].get("creationTimestamp", "")))

    def active(self) -> dict[str, Any] | None:
        """The Deployment the Service selects; else the inventory's; else the newest."""
        deployments = {d["metadata"]["name"]: d for d in self.deployments()}
        service = self.objects.get(f"Service/{service_name(self.plugin_id)}")
        chosen = ((service or {}).get("spec") or {}).get("selector", {}).get(LABEL_DEPLOYMENT)
        if chosen in deployments:
            return deployments[chosen]
        if self.inventory and self.inventory.active in deployments:
            return deployments[self.inventory.active]
        return list(deployments.values())[-1] if deployments else None


@dataclass(slots=True)
class _Rollout:
    """What one operation on a plugin works with."""

    spec: WorkloadSpec
    inventory: Inventory
    live: _Plugin
    active: dict[str, Any] | None  # the live active Deployment
    secret_values: list[str] = field(default_factory=list)


class KubernetesProvider(Provider):
    """The `kubernetes` runtime provider. Every method is idempotent and may be retried."""

    name = "kubernetes"

    def __init__(
        self, settings: KubernetesSettings | None = None, *, api: ApiClient | None = None
    ) -> None:
        """`api`: an ApiClient to use instead of one made from the settings' kubeconfig."""
        self.settings = settings or KubernetesSettings()
        self._connection = (
            ssa.Connection(api, self.settings.request_timeout_seconds) if api else None
        )
        self._connect_lock = threading.Lock()
        self._namespace_lock = threading.Lock()
        self._namespace_ready = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> KubernetesProvider:
        """Build from platform.yaml's `spec.runtime` (without `provider`). Does not connect."""
        return cls(parse_settings(settings))

    # --- the Provider interface ----------------------------------------------------------

    def observe(self) -> dict[str, LiveWorkload]:
        """Workloads by plugin id, from one list per kind of our objects in the namespace.
        Each plugin's active Deployment gives image, version, replicas (what it says; what
        git asked for while stopped or autoscaled), ready replicas (available ones of the
        current template), resources and hashes. Drift against the inventory shows as:
        a changed image / resources / replica count as such; any other change of the pod
        template as `env_hash` "drift" (the planner replaces the workload); a missing or
        changed Service, NetworkPolicy, PDB, HPA or env Secret as `stale_endpoints` (one
        per object: the planner runs `start`, which re-applies them)."""
        plugins = self._snapshot()
        found = {}
        for plugin_id, plugin in sorted(plugins.items()):
            workload = self._workload(plugin)
            if workload is not None:
                found[plugin_id] = workload
        return found

    def ensure_image(self, image: str) -> None:
        """Nothing to do here: the cluster's nodes pull images. A pull that fails shows as
        ImagePullBackOff in the rollout, which fails with that reason."""

    def deploy(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Create the plugin's objects; when running, wait until the Deployment is healthy
        and register the Service's URL. On failure delete what was created (nothing served
        yet) and raise RolloutFailed(rolled_back=True). A plugin that has a Deployment
        already (a retry) is brought to the spec by `update`."""
        work = self._begin(spec)
        if work.active is not None:
            self._update(work, routes)
            return
        name = deployment_name(spec.plugin_id, self._first_color(spec))
        objects = self._desired(work, name)
        try:
            _, answer = self._apply_all(work, objects)
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete_recorded(work.inventory)
            raise
        if not spec.running:
            return
        health = self._wait(name, answer, spec)
        if not health.healthy:
            reasons = self._reasons(name, health, work)
            self._delete_recorded(work.inventory)
            raise self._failed(spec, name, health, reasons, "nothing was serving yet", True)
        self._register(routes, spec, name)

    def start(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Apply every object of the spec (which also heals drift: a deleted Service, a
        `kubectl scale`, an edited field), wait until healthy, register. RolloutFailed
        (rolled_back=False) with the pods' reasons when it does not get healthy."""
        work = self._begin(spec)
        if work.active is None:
            self.deploy(spec, routes)
            return
        self._converge(work, routes, rolled_back_on_failure=False)

    def stop(self, plugin_id: str, routes: RouteRegistry, grace_period_seconds: float) -> None:
        """Deregister, let the gateway drain (`drainSeconds`), then scale every Deployment
        of the plugin to 0 (the objects stay, and what git asked for stays in the
        `plexica.io/replicas` annotation) and wait until its pods are gone."""
        check_plugin_id(plugin_id)
        plugin = self._snapshot(plugin_id).get(plugin_id) or _Plugin(plugin_id)
        deployments = plugin.deployments()
        self._deregister(routes, plugin)
        running = [d for d in deployments if int(d["spec"].get("replicas", 1)) > 0]
        if running:
            time.sleep(self.settings.drain_seconds)
        for deployment in running:
            self._scale_to_zero(deployment, grace_period_seconds)

    def update(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Bring the plugin to `spec`. Rolling: apply the new template to the Deployment
        and let the controller replace the pods (maxUnavailable 0: the ready ones serve
        until their replacements are ready); when it fails, re-apply the previous
        template, wait until healthy again, and raise RolloutFailed(rolled_back=True).
        Blue-green (or a change of strategy): a second Deployment, the Service switched to
        it once every pod is ready, then the old one deleted; when it fails, the new one
        is deleted and the old one never stopped serving. Not running: the objects are
        updated with 0 replicas."""
        work = self._begin(spec)
        if work.active is None:
            self.deploy(spec, routes)
            return
        self._update(work, routes)

    def scale(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Apply the spec's replica count (with everything else of the spec: an apply
        leaves the other fields as they are when they match) and wait until healthy."""
        self.start(spec, routes)

    def remove(self, plugin_id: str, routes: RouteRegistry) -> None:
        """Deregister, then delete exactly the objects the inventory lists that still carry
        our labels (Deployments first, their pods with them), then the inventory. Objects
        with our labels that the inventory does not list are left alone (and reported by
        `unmanaged`)."""
        check_plugin_id(plugin_id)
        plugin = self._snapshot(plugin_id).get(plugin_id) or _Plugin(plugin_id)
        self._deregister(routes, plugin)
        inventory = plugin.inventory or Inventory(plugin_id)
        strays = sorted(set(plugin.objects) - set(inventory.objects) - {_inventory_ref(plugin_id)})
        if strays:
            log.warning(
                "plugin %s: left alone, labelled as ours but not in the inventory: %s",
                plugin_id,
                ", ".join(strays),
            )
        self._delete_recorded(inventory)

    def endpoints(self, plugin_id: str, *, ready_only: bool = True) -> list[Endpoint]:
        """The Service's URL, when the Service is ours and the active Deployment has an
        available replica (`ready_only`) or any replica asked for (otherwise)."""
        check_plugin_id(plugin_id)
        conn = self._conn()
        namespace = self.settings.namespace
        found = ssa.get(conn, ssa.SERVICE, namespace, service_name(plugin_id))
        if found is None or not self._ours(found, plugin_id):
            return []
        chosen = (found.get("spec") or {}).get("selector", {}).get(LABEL_DEPLOYMENT, "")
        deployment = ssa.get(conn, ssa.DEPLOYMENT, namespace, chosen) if chosen else None
        if deployment is None or not self._ours(deployment, plugin_id):
            return []
        status, spec = deployment.get("status") or {}, deployment.get("spec") or {}
        count = status.get("availableReplicas") if ready_only else spec.get("replicas", 1)
        if not count:
            return []
        port = int(found["spec"]["ports"][0]["port"])
        version = _version(deployment)
        return [Endpoint(chosen, service_url(plugin_id, port, self.settings), version)]

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.api.close()  # type: ignore[no-untyped-call]
            self._connection = None

    # --- beyond the interface --------------------------------------------------------------

    def drift(self, spec: WorkloadSpec) -> list[FieldDrift]:
        """What applying `spec` would change, by a dry-run apply of each object compared
        with the live one (only the fields we set; replicas left out while an HPA owns
        them): missing objects, changed fields (with who changed them), fields another
        applier owns (apply would refuse them), objects no longer desired. Secret values
        are never shown."""
        work = self._begin(spec, create_namespace=False)
        name = work.active["metadata"]["name"] if work.active else self._target_name(work)
        objects = self._desired(work, name)
        drifts: list[FieldDrift] = []
        for obj in objects.all():
            drifts += self._object_drift(obj, work.live.objects.get(ssa.ref(obj)))
        desired = {ssa.ref(o) for o in objects.all()}
        for ref in sorted(set(work.inventory.objects) - desired):
            if ref in work.live.objects and not ref.startswith("Secret/"):
                drifts.append(FieldDrift(ref, ".", DriftKind.EXTRA))
        return drifts

    def unmanaged(self) -> list[str]:
        """Objects in the namespace, of the kinds this provider manages, that it did not
        make: without our labels (or labelled as ours but not in any plugin's inventory).
        They are never changed or deleted."""
        conn = self._conn()
        namespace = self.settings.namespace
        listed = self._parallel(
            lambda kind: ssa.list_objects(conn, kind, namespace, metadata_only=True), OBSERVED
        )
        ours = self._snapshot()
        recorded = set()
        for plugin in ours.values():
            recorded.add(_inventory_ref(plugin.plugin_id))
            if plugin.inventory is not None:
                recorded |= set(plugin.inventory.objects)
        found = []
        for kind, items in zip(OBSERVED, listed, strict=True):
            for item in items:
                ref = f"{kind.kind}/{item['metadata']['name']}"
                labels = item["metadata"].get("labels") or {}
                if ref in _SYSTEM_OBJECTS:
                    continue
                if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
                    found.append(ref)
                elif labels.get(LABEL_SCOPE) == self.settings.scope and ref not in recorded:
                    found.append(f"{ref} (labelled as plexica-gitops's, not in an inventory)")
        return sorted(found)

    # --- operations ------------------------------------------------------------------------

    def _begin(self, spec: WorkloadSpec, *, create_namespace: bool = True) -> _Rollout:
        check_plugin_id(spec.plugin_id)
        if create_namespace:
            self._ensure_namespace()
        plugin = self._snapshot(spec.plugin_id).get(spec.plugin_id) or _Plugin(spec.plugin_id)
        inventory = plugin.inventory or Inventory(spec.plugin_id)
        # What an API message must never show: the values, and their base64 (Secret data).
        values = [v for v in spec.env.values() if len(v) >= 3]
        values += [base64.b64encode(v.encode()).decode() for v in values]
        return _Rollout(spec, inventory, plugin, plugin.active(), values)

    def _first_color(self, spec: WorkloadSpec) -> str | None:
        return COLORS[0] if spec.strategy is RolloutStrategy.BLUE_GREEN else None

    def _target_name(self, work: _Rollout) -> str:
        """The Deployment the spec goes to: the active one when it fits the strategy (a
        rolling update in place), else a new one (blue-green: the other color)."""
        plugin_id = work.spec.plugin_id
        active = work.active["metadata"]["name"] if work.active else None
        if work.spec.strategy is RolloutStrategy.ROLLING:
            return deployment_name(plugin_id)
        if active is None:
            return deployment_name(plugin_id, COLORS[0])
        other = COLORS[1] if active == deployment_name(plugin_id, COLORS[0]) else COLORS[0]
        return deployment_name(plugin_id, other)

    def _update(self, work: _Rollout, routes: RouteRegistry) -> None:
        spec = work.spec
        active = work.active["metadata"]["name"] if work.active else None
        target = self._target_name(work)
        if not spec.running:
            target = active or target  # no pods: nothing to cut over
        if target == active:
            self._converge(work, routes, rolled_back_on_failure=True)
        else:
            self._cut_over(work, routes, target)

    def _converge(
        self, work: _Rollout, routes: RouteRegistry, *, rolled_back_on_failure: bool
    ) -> None:
        """Apply the spec to the active Deployment (in place) and wait; on failure, with
        `rolled_back_on_failure`, re-apply the template that served before and wait."""
        spec = work.spec
        assert work.active is not None
        name = work.active["metadata"]["name"]
        inventory = work.inventory
        before = inventory.deployment if _named(inventory.deployment, name) else None
        applied_before = dict(inventory.applied)
        objects = self._desired(work, name)
        _, answer = self._apply_all(work, objects)
        if not spec.running:
            self._collect_garbage(work, objects)
            return
        health = self._wait(name, answer, spec)
        if health.healthy:
            self._register(routes, spec, name)
            self._collect_garbage(work, objects)
            return
        reasons = self._reasons(name, health, work)
        changed = before is not None and not _same_template(before, inventory.deployment)
        if not rolled_back_on_failure or before is None or not changed:
            raise self._failed(
                spec, name, health, reasons, "the plugin is not fully serving", False
            )
        restored = self._roll_back(work, name, before, applied_before, objects)
        outcome = (
            "the previous template is serving again"
            if restored
            else "the previous template was re-applied but is not healthy either"
        )
        raise self._failed(spec, name, health, reasons, outcome, restored)

    def _roll_back(
        self,
        work: _Rollout,
        name: str,
        before: dict[str, Any],
        applied_before: Mapping[str, Any],
        objects: PluginObjects,
    ) -> bool:
        """Re-apply what served before (kept in the inventory: not `rollout undo`): the
        companions, then the previous template; wait until it is healthy; whether it is."""
        inventory = work.inventory
        self._restore_companions(work, applied_before, objects)
        answer = self._apply_recorded(before, work)
        inventory.deployment, inventory.previous = before, None
        self._write_inventory(inventory, work)
        # The failed rollout's ProgressDeadlineExceeded stays on the Deployment until the
        # controller sees progress; with one replica the re-applied template (its old
        # ReplicaSet still available) shows none before the failed pod is gone, so that
        # condition says nothing about the previous template: wait for kubectl's counts.
        return self._wait(name, answer, work.spec, judge=_past_the_deadline).healthy

    def _restore_companions(
        self, work: _Rollout, applied_before: Mapping[str, Any], objects: PluginObjects
    ) -> None:
        """The Service, NetworkPolicy, PDB and HPA as they were last applied before a
        failed update (what the inventory kept of them is a manifest of exactly our
        fields); the ones the update added are deleted. Env Secrets stay: they are
        immutable and named by their values, so the previous template's is still there."""
        added = []
        for companion in objects.companions():
            ref = ssa.ref(companion)
            if companion["kind"] == "Secret":
                continue
            if ref in applied_before:
                self._apply_recorded(applied_before[ref], work)
            else:
                added.append(ref)
        self._delete_refs(work, added)

    def _cut_over(self, work: _Rollout, routes: RouteRegistry, target: str) -> None:
        """Blue-green: the new Deployment first (the Service and HPA still on the old one),
        switched to once it is healthy, then the old Deployment(s) deleted; if it never
        gets healthy, it is deleted and the old one never stopped serving."""
        spec = work.spec
        applied_before = dict(work.inventory.applied)
        objects = self._desired(work, target)
        new = [ssa.ref(objects.deployment)]
        try:
            manifest, answer = self._apply_all(work, objects, promote=False)
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete_refs(work, new)
            raise
        health = self._wait(target, answer, spec)
        if not health.healthy:
            reasons = self._reasons(target, health, work)
            self._delete_refs(work, new)
            self._restore_companions(work, applied_before, objects)
            raise self._failed(
                spec, target, health, reasons, "the old Deployment kept serving", True
            )
        for companion in (objects.service, objects.autoscaler):
            if companion is not None:
                self._apply_recorded(companion, work)
        self._promote(work.inventory, manifest)
        self._write_inventory(work.inventory, work)
        self._register(routes, spec, target)
        old = [ssa.ref(d) for d in work.live.deployments() if d["metadata"]["name"] != target]
        if old:
            time.sleep(self.settings.drain_seconds)  # the gateway's connections drain
        self._delete_refs(work, old)
        self._collect_garbage(work, objects)

    # --- applying ----------------------------------------------------------------------------

    def _desired(self, work: _Rollout, name: str) -> PluginObjects:
        """The spec's objects for Deployment `name`: the env Secret keeps its name while its
        values are the same; the replica count is left to the HPA while it owns it (given
        only to create the Deployment, start it again, or stop it)."""
        spec = work.spec
        live = work.live.objects.get(f"Deployment/{name}")
        suffix = self._secret_suffix(work, live)
        replicas: int | None = None
        scaling = spec.autoscaling
        if scaling is not None and not spec.running:
            replicas = 0
        elif scaling is not None and (live is None or int(live["spec"].get("replicas", 1)) == 0):
            replicas = scaling.min_replicas
        return build_objects(
            spec, self.settings, deployment=name, secret_suffix=suffix, replicas=replicas
        )

    def _secret_suffix(self, work: _Rollout, live: dict[str, Any] | None) -> str | None:
        """The suffix of the env Secret holding exactly the spec's values (reused), else a
        new one."""
        want = secret_data(work.spec)
        if not want:
            return None
        prefix = env_secret_name(work.spec.plugin_id, None) + "-"
        for deployment in (live, work.active):
            for name in _secret_names(deployment):
                if not name.startswith(prefix):
                    continue
                found = ssa.get(self._conn(), ssa.SECRET, self.settings.namespace, name)
                ours = found is not None and self._ours(found, work.spec.plugin_id)
                if ours and found is not None and (found.get("data") or {}) == want:
                    return name[len(prefix) :]
        return secrets.token_hex(4)

    def _apply_all(
        self, work: _Rollout, objects: PluginObjects, *, promote: bool = True
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Record the new objects in the inventory, apply the companions, then the
        Deployment (handing its replica count to the HPA when there is one); the
        Deployment's manifest as applied last and its answer. `promote`: it becomes the
        serving one in the inventory."""
        inventory = work.inventory
        new = [o for o in objects.all() if ssa.ref(o) not in inventory.objects]
        for obj in new:
            inventory.record(obj["kind"], obj["metadata"]["name"])
        if new or not inventory.stored:
            self._write_inventory(inventory, work)
        # A Deployment not serving yet (blue-green) leaves the Service and the HPA as they are.
        switched = (objects.service, objects.autoscaler)
        for companion in objects.companions():
            if promote or all(companion is not s for s in switched):
                self._apply_recorded(companion, work)
        manifest = objects.deployment
        answer = self._apply_recorded(manifest, work)
        if "replicas" in manifest["spec"] and work.spec.autoscaling and work.spec.running:
            manifest, answer = self._hand_over(manifest, answer, work)
        if promote:
            self._promote(inventory, manifest)
        self._write_inventory(inventory, work)
        return manifest, answer

    @staticmethod
    def _promote(inventory: Inventory, manifest: dict[str, Any]) -> None:
        """`manifest` is what serves now; what served before becomes `previous` (kept while
        only the replica count changes)."""
        name = manifest["metadata"]["name"]
        current = inventory.deployment
        if not _named(current, name) or not _same_template(current, manifest):
            inventory.previous = current
        inventory.deployment = manifest
        inventory.active = name

    def _hand_over(
        self, manifest: dict[str, Any], answer: dict[str, Any], work: _Rollout
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Let the HPA own spec.replicas without a fight, the server-side apply way: a
        second manager of ours applies the same count, then ours applies without it (so
        the count is not removed, and the HPA's updates take it from that manager)."""
        metadata = manifest["metadata"]
        hand = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
            "spec": {"replicas": answer["spec"].get("replicas", 1)},
        }
        ssa.apply(self._conn(), hand, HANDOVER_MANAGER, force=True)
        body = {k: v for k, v in manifest["spec"].items() if k != "replicas"}
        without = {**manifest, "spec": body}
        return without, self._apply_recorded(without, work)

    def _apply_recorded(self, obj: dict[str, Any], work: _Rollout) -> dict[str, Any]:
        answer = self._apply(obj, work)
        inventory = work.inventory
        inventory.record(obj["kind"], obj["metadata"]["name"], answer["metadata"].get("uid", ""))
        inventory.applied[ssa.ref(obj)] = _projection(answer, obj)
        live = work.live.objects
        live[ssa.ref(obj)] = answer
        return answer

    def _apply(
        self, obj: dict[str, Any], work: _Rollout | None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply without force; a conflict is retried with force only when every
        conflicting field is ours to take (see the module docstring). Refuses an object
        that exists without our labels."""
        conn = self._conn()
        plugin_id = obj["metadata"]["labels"][LABEL_PLUGIN]
        ref = ssa.ref(obj)
        known = work.live.objects.get(ref) if work else None
        if known is None:
            known = ssa.get(
                conn, ssa.kind_of(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"]
            )
        if known is not None and not self._ours(known, plugin_id):
            raise ProviderError(
                f"{ref} in namespace {self.settings.namespace} was not made by plexica-gitops "
                f"for plugin {plugin_id!r} (it lacks the labels "
                f"{selector(self.settings, plugin_id)})",
                "plexica-gitops never changes an object it did not create: rename or delete "
                "that object, or run the plugin in another namespace (spec.runtime.namespace)",
            )
        secret_values = work.secret_values if work else []
        with self._scrubbed(secret_values):
            try:
                return ssa.apply(conn, obj, FIELD_MANAGER, dry_run=dry_run)
            except ssa.ApplyConflict as conflict:
                live = ssa.get(
                    conn,
                    ssa.kind_of(obj),
                    obj["metadata"].get("namespace"),
                    obj["metadata"]["name"],
                )
                detailed = [_with_operation(c, live or {}) for c in conflict.conflicts]
                refused = [c for c in detailed if not self._takeable(c)]
                if refused:
                    raise self._conflict_error(ref, refused) from None
                if not dry_run:
                    for each in detailed:
                        log.warning(
                            "%s: taking %s back (changed outside plexica-gitops)",
                            ref,
                            each.describe(),
                        )
                return ssa.apply(conn, obj, FIELD_MANAGER, force=True, dry_run=dry_run)

    def _takeable(self, conflict: ssa.Conflict) -> bool:
        manager = conflict.manager
        if manager.startswith(MANAGED_BY) or manager in self.settings.adopt_managers:
            return True
        if manager == HPA_MANAGER and conflict.subresource == "scale":
            return True  # an HPA's hold on the replica count: ours, or one being removed
        return conflict.operation == "Update" and self.settings.reclaim_edits

    def _conflict_error(self, ref: str, refused: Sequence[ssa.Conflict]) -> ProviderError:
        edits = [c for c in refused if c.operation == "Update"]
        hint = (
            "another tool applies these fields: remove them from its configuration, or let "
            "plexica-gitops take them over by adding the manager to spec.runtime.adoptManagers"
        )
        if edits and len(edits) == len(refused):
            hint = (
                "they were changed by hand (reclaimEdits is off): undo the change, or set "
                "spec.runtime.reclaimEdits: true to let apply take them back"
            )
        return ProviderError(
            f"conflict: {ref}: "
            + "; ".join(c.describe() for c in refused)
            + "; plexica-gitops does not take a field another manager owns",
            hint,
        )

    def _write_inventory(self, inventory: Inventory, work: _Rollout | None) -> None:
        config_map = inventory.config_map(self.settings)
        answer = self._apply(config_map, work)
        inventory.stored = True
        if work is not None:
            work.live.objects[ssa.ref(config_map)] = answer

    def _ensure_namespace(self) -> None:
        """The namespace, created (labelled, with the pod-security level of the settings)
        when it is missing and `createNamespace`; once per provider."""
        with self._namespace_lock:
            if self._namespace_ready:
                return
            conn = self._conn()
            namespace = self.settings.namespace
            if ssa.get(conn, ssa.NAMESPACE, None, namespace) is None:
                if not self.settings.create_namespace:
                    raise ProviderError(
                        f"namespace {namespace} does not exist",
                        "create it, or set spec.runtime.createNamespace: true",
                    )
                ssa.apply(conn, namespace_object(self.settings), FIELD_MANAGER)
            # Pods are refused until the controller manager made the `default` account.
            self._poll(
                lambda: ssa.get(conn, ssa.SERVICE_ACCOUNT, namespace, "default") is not None,
                30.0,
                f"the namespace {namespace} has no default service account",
            )
            self._namespace_ready = True

    # --- waiting ---------------------------------------------------------------------------

    def _wait(
        self,
        name: str,
        answer: dict[str, Any],
        spec: WorkloadSpec,
        judge: Callable[[dict[str, Any]], Health] = deployment_health,
    ) -> Health:
        """Watch the Deployment until it is healthy or failed; at most the rollout timeout
        plus `progressSlackSeconds`."""
        budget = spec.rollout.timeout_seconds + self.settings.progress_slack_seconds
        health = self._watch(name, answer, budget, judge)
        if health.progress is Progress.PROGRESSING:
            return Health(Progress.FAILED, f"not healthy within {budget:g} s ({health.detail})")
        return health

    def _watch(
        self,
        name: str,
        current: dict[str, Any],
        budget: float,
        judge: Callable[[dict[str, Any]], Health],
    ) -> Health:
        """Judge the Deployment as it changes (a watch, re-opened when the API closes it)
        until `judge` says healthy or failed, or `budget` seconds pass."""
        conn = self._conn()
        namespace = self.settings.namespace
        deadline = time.monotonic() + budget
        health = judge(current)
        version = str(current["metadata"].get("resourceVersion", ""))
        while health.progress is Progress.PROGRESSING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return health
            try:
                for event in ssa.watch(
                    conn, ssa.DEPLOYMENT, namespace, name, version, min(remaining, 60)
                ):
                    obj = event.get("object") or {}
                    if event.get("type") == "DELETED":
                        return Health(Progress.FAILED, f"Deployment {name} was deleted")
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    health = judge(obj)
                    if health.progress is not Progress.PROGRESSING:
                        return health
                    if time.monotonic() >= deadline:
                        return health
            except ssa.WatchExpired:
                pass
            fresh = ssa.get(conn, ssa.DEPLOYMENT, namespace, name)
            if fresh is None:
                return Health(Progress.FAILED, f"Deployment {name} was deleted")
            version = str(fresh["metadata"].get("resourceVersion", ""))
            health = judge(fresh)
        return health

    def _poll(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ProviderError(f"{what} after {timeout:g} s", CLUSTER_HINT, transient=True)
            time.sleep(0.1)

    def _scale_to_zero(self, deployment: dict[str, Any], grace: float) -> None:
        """Through the scale subresource (an update, so it wins over an HPA's hold; the
        next apply of ours takes the count back from `plexica-gitops-scale`), then wait
        until the pods are gone."""
        conn = self._conn()
        name = deployment["metadata"]["name"]
        namespace = self.settings.namespace
        if not ssa.scale(conn, ssa.DEPLOYMENT, namespace, name, 0, SCALE_MANAGER):
            return
        current = ssa.get(conn, ssa.DEPLOYMENT, namespace, name)
        if current is None:
            return
        budget = grace + self.settings.progress_slack_seconds
        health = self._watch(name, current, budget, _scaled_down)
        if not health.healthy:
            log.warning(
                "Deployment %s: pods still there after %g s (%s)", name, budget, health.detail
            )

    # --- failure ----------------------------------------------------------------------------

    def _reasons(self, name: str, health: Health, work: _Rollout) -> list[str]:
        """Why the newest ReplicaSet's pods are not ready (its pods' states and Warning
        events), and why the controller could not create pods, if it says."""
        conn = self._conn()
        namespace = self.settings.namespace
        reasons = []
        deployment = ssa.get(conn, ssa.DEPLOYMENT, namespace, name)
        if deployment is not None:
            failure = replica_failure(deployment)
            if failure:
                reasons.append(failure)
        wanted = f"{selector(self.settings, work.spec.plugin_id)},{LABEL_DEPLOYMENT}={name}"
        sets = ssa.list_objects(conn, ssa.REPLICA_SET, namespace, wanted)
        if sets:
            newest = max(sets, key=_revision)
            template_hash = newest["metadata"].get("labels", {}).get("pod-template-hash", "")
            wanted += f",pod-template-hash={template_hash}"
        pods = ssa.list_objects(conn, ssa.POD, namespace, wanted)
        events = ssa.list_objects(conn, ssa.EVENT, namespace, field_selector="type=Warning")
        reasons += pod_reasons(pods, events)
        return [_scrub(r, work.secret_values) for r in reasons] or [health.detail]

    def _failed(
        self,
        spec: WorkloadSpec,
        name: str,
        health: Health,
        reasons: list[str],
        outcome: str,
        rolled_back: bool,
    ) -> RolloutFailed:
        why = "; ".join(reasons)
        return RolloutFailed(
            f"{spec.plugin_id} {spec.version}: Deployment {name} in {self.settings.namespace} "
            f"did not become healthy ({health.detail}); {why}; {outcome}",
            f"check that image {spec.image} starts and answers {spec.readiness_path} on port "
            f"{spec.port} (`kubectl -n {self.settings.namespace} describe pods -l "
            f"{LABEL_PLUGIN}={spec.plugin_id}`), or raise rollout.timeoutSeconds",
            rolled_back=rolled_back,
            last_probe=why,
        )

    # --- deleting ------------------------------------------------------------------------

    def _delete_recorded(self, inventory: Inventory) -> None:
        """Delete what the inventory lists (while it carries our labels and is the object
        recorded), Deployments first and waited for, then the inventory itself."""
        entries = sorted(inventory.objects.values(), key=lambda e: (e.kind != "Deployment", e.ref))
        for entry in entries:
            self._delete_entry(inventory.plugin_id, entry)
        conn = self._conn()
        name = inventory_name(inventory.plugin_id)
        live = ssa.get(conn, ssa.CONFIG_MAP, self.settings.namespace, name)
        if live is not None and self._ours(live, inventory.plugin_id):
            ssa.delete(conn, ssa.CONFIG_MAP, self.settings.namespace, name, live["metadata"]["uid"])

    def _delete_entry(self, plugin_id: str, entry: Entry) -> None:
        conn = self._conn()
        namespace = self.settings.namespace
        kind = ssa.KINDS[entry.kind]
        live = ssa.get(conn, kind, namespace, entry.name)
        if live is None:
            return
        uid = live["metadata"].get("uid", "")
        if not self._ours(live, plugin_id) or (entry.uid and entry.uid != uid):
            log.warning("%s is not the object plexica-gitops made: left alone", entry.ref)
            return
        ssa.delete(conn, kind, namespace, entry.name, uid, foreground=kind is ssa.DEPLOYMENT)
        if kind is ssa.DEPLOYMENT:  # foreground: gone once its pods are
            self._poll(
                lambda: ssa.get(conn, kind, namespace, entry.name) is None,
                self.settings.progress_slack_seconds + 30,
                f"Deployment {entry.name} is still being deleted",
            )

    def _delete_refs(self, work: _Rollout, refs: Sequence[str]) -> None:
        """Delete these objects of the plugin's (and forget them in the inventory)."""
        if not refs:
            return
        for ref in sorted(refs):
            kind, name = ref.split("/", 1)
            self._delete_entry(
                work.spec.plugin_id, work.inventory.objects.get(ref) or Entry(kind, name)
            )
            work.inventory.forget(ref)
            work.live.objects.pop(ref, None)
        self._write_inventory(work.inventory, work)

    def _collect_garbage(self, work: _Rollout, objects: PluginObjects) -> None:
        """After a healthy rollout: delete the plugin's objects the spec no longer wants (an
        HPA or PDB dropped, a Deployment other than the serving one, env Secrets neither
        the current nor the previous template uses)."""
        inventory = work.inventory
        wanted = {ssa.ref(o) for o in objects.all()}
        used = {f"Secret/{n}" for n in _secret_names(inventory.previous)}
        stale = sorted(set(inventory.objects) - wanted - used)
        if stale:
            log.info(
                "plugin %s: deleting what is no longer wanted: %s",
                work.spec.plugin_id,
                ", ".join(stale),
            )
            self._delete_refs(work, stale)

    # --- reading -----------------------------------------------------------------------------

    def _snapshot(self, plugin_id: str | None = None) -> dict[str, _Plugin]:
        """Our objects (of one plugin) by plugin, one list per kind, and the inventories."""
        conn = self._conn()
        wanted = selector(self.settings, plugin_id)
        namespace = self.settings.namespace

        def listing(kind: ssa.Kind) -> list[dict[str, Any]]:
            with self._cluster_errors(f"listing {kind.plural}"):
                return ssa.list_objects(
                    conn, kind, namespace, wanted, metadata_only=kind is ssa.SECRET
                )

        plugins: dict[str, _Plugin] = {}
        for items in self._parallel(listing, OBSERVED):
            for item in items:
                labels = item["metadata"].get("labels") or {}
                owner = labels.get(LABEL_PLUGIN, "")
                if not owner or labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
                    continue
                plugin = plugins.setdefault(owner, _Plugin(owner))
                ref = f"{item['kind']}/{item['metadata']['name']}"
                if ref == _inventory_ref(owner):
                    plugin.inventory = Inventory.from_config_map(owner, item)
                plugin.objects[ref] = item
        return plugins

    def _workload(self, plugin: _Plugin) -> LiveWorkload | None:
        deployment = plugin.active()
        if deployment is None:
            return None
        metadata, spec = deployment["metadata"], deployment.get("spec") or {}
        status = deployment.get("status") or {}
        labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
        container = _container(deployment)
        asked = int(spec.get("replicas", 1))
        running = asked > 0
        autoscaled = f"HorizontalPodAutoscaler/{service_name(plugin.plugin_id)}" in plugin.objects
        recorded = _int(annotations.get(ANNOTATION_REPLICAS), asked)
        replicas = recorded if autoscaled or not running else asked
        available = min(
            int(status.get("availableReplicas") or 0), int(status.get("updatedReplicas") or 0)
        )
        if autoscaled and running and available >= asked:
            available = replicas  # every replica the HPA asks for serves: not short of git's
        applied = (plugin.inventory.applied if plugin.inventory else {}).get(_ref(deployment), {})
        template_drift, companions = self._drifted(plugin, deployment)
        env_hash = "drift" if template_drift else labels.get(LABEL_ENV_HASH, "")
        return LiveWorkload(
            image=str(container.get("image", "")),
            version=_version(deployment),
            manifest_hash=labels.get(LABEL_MANIFEST_HASH, ""),
            replicas=replicas,
            ready_replicas=min(available, replicas) if running else 0,
            running=running,
            resources=LiveResources(
                cpu=_resource(container, applied, "cpu", annotations.get(ANNOTATION_CPU)),
                memory=_resource(container, applied, "memory", annotations.get(ANNOTATION_MEMORY)),
            ),
            env_hash=env_hash,
            env_digest=annotations.get(ANNOTATION_ENV_DIGEST, ""),
            policy_hash=annotations.get(ANNOTATION_POLICY_HASH, ""),
            stale_endpoints=companions,
        )

    def _drifted(self, plugin: _Plugin, deployment: dict[str, Any]) -> tuple[bool, int]:
        """(the pod template differs from what was applied, beyond image and resources;
        how many companion objects are missing or differ)."""
        inventory = plugin.inventory
        if inventory is None:
            return False, 0
        template = False
        companions = 0
        active = _ref(deployment)
        for ref, projection in sorted(inventory.applied.items()):
            kind = ref.split("/", 1)[0]
            if kind == "ConfigMap" or (kind == "Deployment" and ref != active):
                continue
            live = plugin.objects.get(ref)
            if kind == "Secret":
                companions += live is None and ref.split("/", 1)[1] in _secret_names(deployment)
                continue
            if live is None:
                companions += 1
                continue
            found = [
                (path, wanted, have)
                for path, wanted, have in ssa.differences(projection, live)
                if not _reported(path) and not _revision_only(path, wanted)
            ]
            if kind != "Deployment":
                companions += bool(found)
            elif any(path[:2] == ("spec", "template") for path, _, _ in found):
                template = True
            elif found:
                companions += 1  # the Deployment's own metadata or strategy
        return template, companions

    def _object_drift(self, obj: dict[str, Any], live: dict[str, Any] | None) -> list[FieldDrift]:
        ref = ssa.ref(obj)
        conn = self._conn()
        if live is not None and obj["kind"] == "Secret":  # listed as metadata only
            live = ssa.get(conn, ssa.SECRET, self.settings.namespace, obj["metadata"]["name"])
        if live is None:
            return [FieldDrift(ref, ".", DriftKind.MISSING)]
        drifts = []
        try:
            answer = ssa.apply(conn, obj, FIELD_MANAGER, dry_run=True)
        except ssa.ApplyConflict as conflict:
            full = ssa.get(
                conn, ssa.kind_of(obj), obj["metadata"]["namespace"], obj["metadata"]["name"]
            )
            for each in (_with_operation(c, full or {}) for c in conflict.conflicts):
                if not self._takeable(each):
                    drifts.append(
                        FieldDrift(ref, each.field, DriftKind.CONFLICT, managers=(each.manager,))
                    )
            answer = ssa.apply(conn, obj, FIELD_MANAGER, dry_run=True, force=True)
        # Secret data is not projected: an env Secret is immutable, named by its values.
        for path, wanted, found in ssa.differences(_projection(answer, obj), live):
            if _revision_only(path, wanted):
                continue  # which commit applied it last, not what it is
            owners = tuple(m for m in ssa.owners(live, path) if m != FIELD_MANAGER)
            drifts.append(
                FieldDrift(ref, ssa.format_path(path), DriftKind.CHANGED, wanted, found, owners)
            )
        return drifts

    def _ours(self, obj: Mapping[str, Any], plugin_id: str) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return (
            labels.get(LABEL_MANAGED_BY) == MANAGED_BY
            and labels.get(LABEL_SCOPE) == self.settings.scope
            and labels.get(LABEL_PLUGIN) == plugin_id
        )

    # --- routes -----------------------------------------------------------------------------

    def _register(self, routes: RouteRegistry, spec: WorkloadSpec, name: str) -> None:
        routes.register(
            Endpoint(name, service_url(spec.plugin_id, spec.port, self.settings), spec.version)
        )

    def _deregister(self, routes: RouteRegistry, plugin: _Plugin) -> None:
        service = plugin.objects.get(f"Service/{service_name(plugin.plugin_id)}")
        active = plugin.active()
        if service is None or active is None:
            return
        port = int(service["spec"]["ports"][0]["port"])
        url = service_url(plugin.plugin_id, port, self.settings)
        routes.deregister(Endpoint(active["metadata"]["name"], url, _version(active)))

    # --- the cluster -------------------------------------------------------------------------

    def _conn(self) -> ssa.Connection:
        if self._connection is None:
            with self._connect_lock:
                if self._connection is None:
                    self._connection = self._connect()
        return self._connection

    def _connect(self) -> ssa.Connection:
        configuration = Configuration()
        kubeconfig = self.settings.kubeconfig or os.environ.get("KUBECONFIG")
        try:
            if kubeconfig or Path("~/.kube/config").expanduser().exists():
                kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig,
                    context=self.settings.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            else:
                kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
        except (kubernetes.config.ConfigException, OSError, ValueError) as error:
            raise ProviderError(
                f"cannot load the Kubernetes configuration: {error}", CLUSTER_HINT
            ) from error
        configuration.connection_pool_maxsize = 16  # apply runs several plugins at once
        api = ApiClient(configuration)
        return ssa.Connection(api, self.settings.request_timeout_seconds, str(configuration.host))

    @contextlib.contextmanager
    def _cluster_errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ProviderError as error:
            if error.hint:
                raise
            raise ProviderError(
                f"{doing}: {error.message}", CLUSTER_HINT, transient=error.transient
            ) from error

    @contextlib.contextmanager
    def _scrubbed(self, values: Sequence[str]) -> Iterator[None]:
        """API messages (a refused Secret, say) are scrubbed of env values."""
        try:
            yield
        except ProviderError as error:
            message = _scrub(error.message, values)
            if message == error.message:
                raise
            raise ProviderError(message, error.hint, transient=error.transient) from None

    def _parallel(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
            return list(pool.map(function, items))


# --- helpers -------------------------------------------------------------------------------


def _inventory_ref(plugin_id: str) -> str:
    return f"ConfigMap/{inventory_name(plugin_id)}"


def _ref(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind', 'Deployment')}/{obj['metadata']['name']}"


def _named(manifest: Mapping[str, Any] | None, name: str) -> bool:
    return manifest is not None and manifest["metadata"]["name"] == name


def _same_template(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if a is None or b is None:
        return False
    return bool(a["spec"]["template"] == b["spec"]["template"])


def _projection(answer: dict[str, Any], obj: Mapping[str, Any]) -> Any:
    """What the inventory keeps of an answer: the fields we set (Secret data left out)."""
    shape = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
    return ssa.project(answer, shape)


def _reported(path: ssa.Path) -> bool:
    """Fields observe reports as themselves (not as drift): replicas (scale / stop / HPA),
    the image, resources, and the annotations that hold git's values."""
    if path[:2] == ("spec", "replicas"):
        return True
    if len(path) >= 6 and path[:4] == ("spec", "template", "spec", "containers"):
        return path[5] in ("image", "resources")
    return False


def _revision_only(path: ssa.Path, wanted: Any) -> bool:
    """The difference is the revision annotation alone (the object's, or all of its
    annotations when the live object has none and we want only that one)."""
    if path == ("metadata", "annotations", ANNOTATION_REVISION):
        return True
    return path == ("metadata", "annotations") and set(wanted or {}) == {ANNOTATION_REVISION}


def _with_operation(conflict: ssa.Conflict, live: Mapping[str, Any]) -> ssa.Conflict:
    for entry in ssa.managers_of(live, conflict.manager):
        if (entry.get("subresource") or "") == conflict.subresource:
            return replace(conflict, operation=str(entry.get("operation", "")))
    return conflict


def _container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"].get("containers") or [{}]
    return next((c for c in containers if c.get("name") == CONTAINER), containers[0])


def _secret_names(deployment: Mapping[str, Any] | None) -> list[str]:
    if deployment is None:
        return []
    names = []
    for entry in _container(deployment).get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
        if ref.get("name") and ref["name"] not in names:
            names.append(str(ref["name"]))
    return names


def _version(deployment: Mapping[str, Any]) -> str:
    metadata = deployment["metadata"]
    annotations, labels = metadata.get("annotations") or {}, metadata.get("labels") or {}
    return str(annotations.get(ANNOTATION_VERSION) or labels.get(LABEL_VERSION, ""))


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _resource(
    container: Mapping[str, Any], applied: Any, name: str, written: str | None
) -> str | None:
    """The live limit, in the manifest's notation while it is what we applied."""
    live = ((container.get("resources") or {}).get("limits") or {}).get(name)
    if live is None:
        return None
    try:
        ours = _container(applied)["resources"]["limits"][name]
    except (KeyError, TypeError, IndexError):
        ours = written
    return written if written is not None and str(live) == str(ours) else str(live)


def _revision(replica_set: Mapping[str, Any]) -> int:
    annotations = replica_set["metadata"].get("annotations") or {}
    return _int(annotations.get("deployment.kubernetes.io/revision"), 0)


def _past_the_deadline(deployment: dict[str, Any]) -> Health:
    """`deployment_health`, with a ProgressDeadlineExceeded condition taken as progressing
    (a rollback: the condition is the failed rollout's; the budget still bounds the wait)."""
    health = deployment_health(deployment)
    if health.progress is Progress.FAILED and health.detail.startswith("ProgressDeadline"):
        return Health(Progress.PROGRESSING, health.detail)
    return health


def _scaled_down(deployment: dict[str, Any]) -> Health:
    count = int((deployment.get("status") or {}).get("replicas") or 0)
    if count == 0:
        return Health(Progress.HEALTHY, "no pods left")
    return Health(Progress.PROGRESSING, f"{count} pods left")


def _scrub(message: str, values: Sequence[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        message = message.replace(value, "***")
    return message
