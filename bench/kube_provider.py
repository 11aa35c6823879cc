"""The Kubernetes provider on the devenv control plane (devenv/kube.py: kube-apiserver,
controller-manager, scheduler, kwok): how long installing plugins takes, and what a rolling
update costs on top of the Deployment controller's own rollout.

    python bench/kube_provider.py                    # 20 plugins x 2 replicas, 5 updates
    python bench/kube_provider.py --plugins 50 --parallelism 8
    python bench/kube_provider.py --json             # one JSON object on stdout

Measured, on a throwaway cluster started by the script (pods Ready `--ready-delay` s after
they are bound, as kwok plays the kubelet):

- install: `deploy` of N plugins (every object, wait until healthy, route registered), one
  after another and then N more with `--parallelism` threads (as apply runs steps);
- observe: one `observe()` of the 2N plugins (one list per kind);
- rolling update overhead: per update 1.0.0 -> 1.1.0, the provider's time (from calling
  `update` to its return: healthy, route registered, garbage collected) minus the
  controller's own rollout time, as an independent watch sees it: from the new ReplicaSet's
  ADDED event to the first Deployment event where kubectl's rule holds on the new template.
  The overhead is split into before (reads, inventory, applies, until the controller made
  the new ReplicaSet) and after (until the provider returned).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
from kubernetes import client as k8s
from kubernetes import watch

from devenv import kube
from plexica_gitops.runtime.provider import Endpoint, RolloutSettings, WorkloadSpec
from plexica_gitops_kubernetes.provider import KubernetesProvider
from plexica_gitops_kubernetes.settings import parse_settings


class Routes:
    def register(self, endpoint: Endpoint) -> None:
        pass

    def deregister(self, endpoint: Endpoint) -> None:
        pass


def spec(plugin_id: str, replicas: int, version: str = "1.0.0") -> WorkloadSpec:
    return WorkloadSpec(
        plugin_id=plugin_id,
        version=version,
        image=f"plexica/echo:{version}",
        manifest_hash=f"m{version}",
        replicas=replicas,
        cpu="100m",
        memory="64Mi",
        port=8080,
        readiness_path="/health/ready",
        liveness_path="/health/live",
        env_hash="e1",
        env={"DATABASE_URL": "postgres://bench@db/plexica"},
        env_refs={},
        rollout=RolloutSettings(ready_probes=1, timeout_seconds=60),
    )


def timed(function: Any, *args: Any) -> float:
    begun = time.monotonic()
    function(*args)
    return time.monotonic() - begun


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
        "min_s": round(min(samples), 3),
    }


def healthy(deployment: Any, image: str) -> bool:
    status, want = deployment.status, deployment.spec.replicas
    return bool(
        deployment.spec.template.spec.containers[0].image == image
        and (status.observed_generation or 0) >= deployment.metadata.generation
        and (status.updated_replicas or 0) == want
        and (status.replicas or 0) == want
        and (status.available_replicas or 0) == want
    )


def watch_rollout(api: Any, namespace: str, plugin_id: str, image: str) -> dict[str, float]:
    """Start watching the plugin's ReplicaSets and Deployment; the returned dict gets
    `replica_set` (monotonic time of the new ReplicaSet's ADDED event) and `complete`."""
    apps = k8s.AppsV1Api(api)
    seen: dict[str, float] = {}
    selector = f"plexica.io/plugin={plugin_id}"
    name = f"plexica-{plugin_id}"
    started = threading.Barrier(3)

    def replica_sets() -> None:
        version = apps.list_namespaced_replica_set(namespace, label_selector=selector)
        rv = version.metadata.resource_version
        started.wait()
        for event in watch.Watch().stream(
            apps.list_namespaced_replica_set,
            namespace,
            label_selector=selector,
            resource_version=rv,
            timeout_seconds=120,
        ):
            rs = event["object"]
            if event["type"] == "ADDED" and rs.spec.template.spec.containers[0].image == image:
                seen.setdefault("replica_set", time.monotonic())
                return

    def deployment() -> None:
        listed = apps.list_namespaced_deployment(namespace, field_selector=f"metadata.name={name}")
        rv = listed.metadata.resource_version
        started.wait()
        for event in watch.Watch().stream(
            apps.list_namespaced_deployment,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=rv,
            timeout_seconds=120,
        ):
            if healthy(event["object"], image):
                seen.setdefault("complete", time.monotonic())
                return

    for target in (replica_sets, deployment):
        threading.Thread(target=target, daemon=True).start()
    started.wait()
    return seen


def run(options: argparse.Namespace) -> dict[str, Any]:
    cluster = kube.KubeCluster(ready_delay=options.ready_delay)
    cluster.start()
    try:
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        settings = parse_settings(
            {"kubeconfig": str(cluster.kubeconfig), "namespace": "bench", "drainSeconds": 0}
        )
        provider = KubernetesProvider(settings)
        routes = Routes()
        count, replicas = options.plugins, options.replicas
        provider.deploy(spec("warmup", 1), routes)  # the namespace, the connection pool
        provider.remove("warmup", routes)

        begun = time.monotonic()
        sequential = [
            timed(provider.deploy, spec(f"s{i:02d}", replicas), routes) for i in range(count)
        ]
        sequential_wall = time.monotonic() - begun

        begun = time.monotonic()
        with ThreadPoolExecutor(max_workers=options.parallelism) as pool:
            parallel = list(
                pool.map(
                    lambda i: timed(provider.deploy, spec(f"p{i:02d}", replicas), routes),
                    range(count),
                )
            )
        parallel_wall = time.monotonic() - begun

        observe_s = timed(provider.observe)
        assert len(provider.observe()) == 2 * count

        updates = []
        for i in range(min(options.updates, count)):
            plugin_id = f"s{i:02d}"
            new = dataclasses.replace(
                spec(plugin_id, replicas), version="1.1.0", image="plexica/echo:1.1.0"
            )
            seen = watch_rollout(api, "bench", plugin_id, new.image)
            begun = time.monotonic()
            provider.update(new, routes)
            ended = time.monotonic()
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            controller = seen["complete"] - seen["replica_set"]
            updates.append(
                {
                    "provider_s": ended - begun,
                    "controller_s": controller,
                    "overhead_s": (ended - begun) - controller,
                    "before_s": seen["replica_set"] - begun,
                    "after_s": ended - seen["complete"],
                }
            )
        api.close()
        provider.close()
    finally:
        cluster.stop()
    return {
        "cluster": f"kube-apiserver {kube.KUBERNETES_VERSION}, kwok {kube.KWOK_VERSION}",
        "plugins": count,
        "replicas": replicas,
        "ready_delay_s": options.ready_delay,
        "install_sequential": {"wall_s": round(sequential_wall, 3), **summary(sequential)},
        "install_parallel": {
            "parallelism": options.parallelism,
            "wall_s": round(parallel_wall, 3),
            **summary(parallel),
        },
        "observe_s": round(observe_s, 3),
        "rolling_update": {
            key: summary([u[key] for u in updates])
            for key in ("provider_s", "controller_s", "overhead_s", "before_s", "after_s")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--ready-delay", type=float, default=0.5)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    result = run(options)
    if options.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['cluster']}; {result['plugins']} plugins x {result['replicas']} replicas")
    print(f"pods ready {result['ready_delay_s']} s after binding")
    for key in ("install_sequential", "install_parallel"):
        row = result[key]
        print(
            f"{key:20} wall {row['wall_s']:7.2f} s   per plugin median {row['median_s']:.2f} s"
            f" max {row['max_s']:.2f} s"
        )
    print(f"{'observe':20} {result['observe_s']:.3f} s ({2 * result['plugins']} plugins)")
    for key, row in result["rolling_update"].items():
        print(
            f"update {key:13} median {row['median_s']:.3f} s  min {row['min_s']:.3f}"
            f"  max {row['max_s']:.3f}"
        )


if __name__ == "__main__":
    main()
