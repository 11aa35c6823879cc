"""Pytest fixtures for the devenv Kubernetes control plane, loaded as a plugin
(`pytest_plugins = [..., "kube_cluster"]` in tests/conftest.py).

- `kube_cluster` (session): a throwaway `devenv.kube.KubeCluster` (etcd, kube-apiserver,
  controller-manager, scheduler, kwok), started once (a few seconds: the binaries must be
  built, `python3 -m devenv.kube build`, which `.ci/run` does).
- `kube_api` (session): a `kubernetes.client.ApiClient` on it.
- `kube_namespace` (function): a namespace of the test's own, deleted afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from devenv import kube

T = TypeVar("T")


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[kube.KubeCluster]:
    if not kube.built():
        pytest.fail(
            f"the Kubernetes binaries are not built in {kube.bin_dir()}: run "
            "`python3 -m devenv.kube build` first (about 25 minutes on 2 cores, once)"
        )
    cluster = kube.KubeCluster(ready_delay=0.3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube_api(kube_cluster: kube.KubeCluster) -> Iterator[Any]:
    api = kubernetes.config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube_namespace(kube_api: Any) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    # The ServiceAccount admission plugin refuses pods until the controller manager has
    # made the namespace's `default` service account: wait for it, as a deploy tool must.
    wait_for(lambda: exists(lambda: core.read_namespaced_service_account("default", name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:g} s: {check}")
        time.sleep(interval)


def exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
