"""Pytest fixtures for the devenv Kubernetes control plane, loaded as a plugin
(`pytest_plugins = [..., "kube_cluster"]` in tests/conftest.py).

- `kube_cluster` (session): a throwaway `devenv.kube.KubeCluster` (etcd, kube-apiserver,
  controller-manager, scheduler, kwok), started once (a few seconds: the binaries must be
  built, `python3 -m devenv.kube build`, which `.ci/run` does) — or, when
  `PLEXICA_TEST_KUBECONFIG` names a kubeconfig (and `PLEXICA_TEST_KUBE_CONTEXT`, optionally,
  one of its contexts), that cluster instead (`ExternalCluster`: nothing is started or
  stopped; every test makes namespaces of its own there and deletes them). Not `KUBECONFIG`:
  a shell's everyday cluster is never tested against by accident.
- `kube_api` (session): a `kubernetes.client.ApiClient` on it.
- `kube_namespace` (function): a namespace of the test's own, deleted afterwards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from devenv import kube

T = TypeVar("T")


KUBECONFIG_ENV = "PLEXICA_TEST_KUBECONFIG"
CONTEXT_ENV = "PLEXICA_TEST_KUBE_CONTEXT"


@dataclass(frozen=True)
class ExternalCluster:
    """A cluster the tests are pointed at (`PLEXICA_TEST_KUBECONFIG`), used as it is."""

    kubeconfig: Path
    context: str | None = None

    def request(self, method: str, path: str) -> Any:
        """The API's JSON answer at `path` (what `KubeCluster.request` offers)."""
        api = kubernetes.config.new_client_from_config(
            config_file=str(self.kubeconfig), context=self.context
        )
        try:
            answer = api.call_api(
                path, method, auth_settings=["BearerToken"], _preload_content=False
            )
            return json.loads(answer[0].data)
        finally:
            api.close()


def chosen_cluster(environ: Mapping[str, str]) -> ExternalCluster | None:
    """The cluster `PLEXICA_TEST_KUBECONFIG` names, or None (the devenv control plane).
    A name that is no readable file fails the session rather than quietly testing the
    devenv cluster instead."""
    given = environ.get(KUBECONFIG_ENV, "")
    if not given:
        return None
    path = Path(given).expanduser()
    if not path.is_file():
        pytest.fail(f"{KUBECONFIG_ENV}={given}: no such kubeconfig file", pytrace=False)
    return ExternalCluster(path.resolve(), environ.get(CONTEXT_ENV) or None)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[kube.KubeCluster | ExternalCluster]:
    external = chosen_cluster(os.environ)
    if external is not None:
        yield external
        return
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


def kube_context(cluster: kube.KubeCluster | ExternalCluster) -> str | None:
    """The kubeconfig context to use (None: the file's current one)."""
    return cluster.context if isinstance(cluster, ExternalCluster) else None


@pytest.fixture(scope="session")
def kube_api(kube_cluster: kube.KubeCluster | ExternalCluster) -> Iterator[Any]:
    api = kubernetes.config.new_client_from_config(
        config_file=str(kube_cluster.kubeconfig), context=kube_context(kube_cluster)
    )
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
