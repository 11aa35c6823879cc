"""`plexica-gitops apply` end to end on the Kubernetes provider: the store, the engine and
the provider together against the devenv control plane (real kube-apiserver and
kube-controller-manager; kwok gives the pods a life, `-never-ready` images never get ready).
The provider's own behaviour is in test_kube_provider.py; this proves what a user sees."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import psycopg
import pytest
from apply_support import run_cli, write_files
from kube_cluster import ExternalCluster, exists, kube_context

from devenv import kube
from plexica_gitops.store import catalog

pytestmark = [pytest.mark.integration, pytest.mark.kube]


@pytest.fixture
def kube_platform(
    tmp_path: Path,
    postgres_database: str,
    kube_cluster: kube.KubeCluster | ExternalCluster,
    kube_api: Any,
) -> Any:
    namespace = f"a-{uuid.uuid4().hex[:8]}"
    platform = KubePlatform(tmp_path / "state", namespace, kube_cluster)
    environment = {
        "PLEXICA_DATABASE_URL": postgres_database,
        "PLEXICA_PLUGIN_DATABASE_URL": "postgresql://plugin@db.internal/platform",
        "PLEXICA_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    }
    assert run_cli(environment, "init")[0] == 0
    yield platform, environment
    core = k8s.CoreV1Api(kube_api)
    if exists(lambda: core.read_namespace(namespace)):
        core.delete_namespace(namespace)


class KubePlatform:
    """A one-plugin desired state on the Kubernetes provider, rewritten per version."""

    def __init__(self, root: Path, namespace: str, cluster: Any) -> None:
        self.root, self.namespace, self.cluster = root, namespace, cluster

    def write(self, version: str, image: str | None = None) -> str:
        context = kube_context(self.cluster)
        files = {
            "platform.yaml": f"""
                apiVersion: plexica.io/v1alpha1
                kind: Platform
                metadata: {{name: test}}
                spec:
                  version: 2.4.0
                  runtime:
                    provider: kubernetes
                    kubeconfig: {self.cluster.kubeconfig}
                    {f"context: {context}" if context else ""}
                    namespace: {self.namespace}
                    drainSeconds: 0.1
                    progressSlackSeconds: 5
                  rollout: {{strategy: rolling, timeoutSeconds: 5, gracePeriodSeconds: 1}}
            """,
            "plugins/echo/plugin.yaml": f"""
                apiVersion: plexica.io/v1alpha1
                kind: Plugin
                metadata: {{name: echo}}
                spec:
                  state: active
                  replicas: 2
                  manifest:
                    id: echo
                    name: Echo
                    version: {version}
                    runtime:
                      type: typescript
                      image: {image or f"plexica/echo:{version}"}
                      resources: {{cpu: 250m, memory: 64Mi}}
                    compat: {{core: ^2.0.0}}
                    api: {{basePath: /api/plugins/echo, port: 8080}}
                    permissions:
                      - {{key: "echo:messages:read", name: Read messages}}
            """,
            "tenants/acme.yaml": f"""
                apiVersion: plexica.io/v1alpha1
                kind: Tenant
                metadata: {{name: acme}}
                spec:
                  id: {uuid.uuid5(uuid.NAMESPACE_DNS, "acme")}
                  schema: tenant_acme
                  plugins: {{echo: {{enabled: true}}}}
            """,
        }
        write_files(self.root, files)
        return str(self.root)


def _catalogued(dsn: str) -> tuple[str, str]:
    with psycopg.connect(dsn) as conn:
        query = "SELECT version, status FROM plexica.plugins WHERE id = 'echo'"
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0], row[1]


def _deployment_image(kube_api: Any, namespace: str) -> str:
    live = k8s.AppsV1Api(kube_api).read_namespaced_deployment("plexica-echo", namespace)
    image: str = live.spec.template.spec.containers[0].image
    return image


def test_install_update_and_a_rolled_back_update_through_apply(
    kube_platform: tuple[KubePlatform, dict[str, str]], kube_api: Any
) -> None:
    platform, env = kube_platform
    dsn = env["PLEXICA_DATABASE_URL"]

    code, output = run_cli(env, "apply", platform.write("1.0.0"), "--auto-approve")
    assert code == 0, output
    assert _catalogued(dsn) == ("1.0.0", "ACTIVE")
    assert _deployment_image(kube_api, platform.namespace) == "plexica/echo:1.0.0"

    code, output = run_cli(env, "apply", platform.write("1.1.0"), "--auto-approve")
    assert code == 0, output
    assert _catalogued(dsn) == ("1.1.0", "ACTIVE")
    with psycopg.connect(dsn) as conn:
        endpoints = catalog.endpoints(conn, "echo")
    url = f"http://plexica-echo.{platform.namespace}.svc.cluster.local:8080"
    assert {(e.endpoint, e.version) for e in endpoints} == {(url, "1.1.0")}
    code, output = run_cli(env, "plan", platform.write("1.1.0"), "--detailed-exitcode")
    assert code == 0, output  # converged: nothing to do

    never_ready = platform.write("1.2.0", image="plexica/echo-never-ready:1.2.0")
    code, output = run_cli(env, "apply", never_ready, "--auto-approve")
    assert code == 1, output
    assert "rolled back" in output and "ProgressDeadlineExceeded" in output, output
    # The plugin keeps its old version, in the store and on the cluster, still routed.
    assert _catalogued(dsn) == ("1.1.0", "ACTIVE")
    assert _deployment_image(kube_api, platform.namespace) == "plexica/echo:1.1.0"
    with psycopg.connect(dsn) as conn:
        assert {e.version for e in catalog.endpoints(conn, "echo")} == {"1.1.0"}
    # The next plan shows the update again; history records the rollback.
    code, output = run_cli(env, "plan", never_ready, "--format", "json")
    ids = [a["id"] for a in json.loads(output)["actions"]]
    assert "plugin.echo.workload:replace" in ids and "plugin.echo:update" in ids
    code, output = run_cli(env, "history")
    assert "failed" in output and "1 rolled-back" in output, output
