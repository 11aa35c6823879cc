"""Pytest fixtures: the runtime providers the contract suite
(tests/integration/test_provider_contract.py) runs against, loaded as a plugin
(`pytest_plugins` in tests/conftest.py).

`contract` (function, parametrised by provider) is a `Contract`: the provider, the images
it runs (two healthy versions and one that never gets ready) and, when the tests can reach
its endpoints, how to ask one which version it serves. Adding a provider = one
`<name>_contract` fixture here + its name in `PROVIDERS` (with the marks of the servers it
needs)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from plexica_gitops.runtime.fake import FakeProvider
from plexica_gitops.runtime.provider import Endpoint, Provider

PLUGIN = "echo"  # the test images answer as this plugin (devenv.images)


@dataclass(frozen=True)
class Contract:
    provider: Provider
    images: dict[str, str]  # "1.0.0", "1.1.0": healthy; "never-ready": never answers ready
    # The version an endpoint answers with, for providers whose endpoints the tests can
    # reach (None: e.g. a ClusterIP Service URL, reachable only inside the cluster).
    reach: Callable[[Endpoint], str] | None = None


PROVIDERS = [
    pytest.param("fake"),
    pytest.param("docker", marks=pytest.mark.integration),
    pytest.param("kubernetes", marks=[pytest.mark.integration, pytest.mark.kube]),
]


@pytest.fixture(params=PROVIDERS)
def contract(request: pytest.FixtureRequest) -> Contract:
    made: Contract = request.getfixturevalue(f"{request.param}_contract")
    return made


@pytest.fixture
def fake_contract() -> Contract:
    images = {"1.0.0": "fake/echo:1.0.0", "1.1.0": "fake/echo:1.1.0"}
    images["never-ready"] = "fake/echo:1.2.0"
    provider = FakeProvider(never_ready={images["never-ready"]})
    return Contract(provider, images, reach=lambda e: _fake_answer(provider, e))


def _fake_answer(provider: FakeProvider, endpoint: Endpoint) -> str:
    version = provider.answer(endpoint.url)
    if version is None:
        raise ConnectionRefusedError(f"{endpoint.url}: nothing serves there")
    return version


@pytest.fixture
def docker_contract(docker_provider: Any, echo_images: dict[str, str]) -> Contract:
    images = {"1.0.0": echo_images["1.0.0"], "1.1.0": echo_images["1.1.0"]}
    images["never-ready"] = echo_images["1.2.0"]
    return Contract(docker_provider, images, reach=_http_answer)


def _http_answer(endpoint: Endpoint) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"{endpoint.url}/api/plugins/{PLUGIN}/index.html"
    with opener.open(url, timeout=3) as response:
        return str(json.loads(response.read())["version"])


@pytest.fixture
def kubernetes_contract(kube_cluster: Any, kube_api: Any) -> Iterator[Contract]:
    from kube_cluster import exists, kube_context
    from kubernetes import client as k8s

    from plexica_gitops_kubernetes.provider import KubernetesProvider
    from plexica_gitops_kubernetes.settings import parse_settings

    namespace = f"c-{uuid.uuid4().hex[:8]}"
    settings = {
        "kubeconfig": str(kube_cluster.kubeconfig),
        "context": kube_context(kube_cluster),
        "namespace": namespace,
        "drainSeconds": 0.1,
        "progressSlackSeconds": 5,
    }
    provider = KubernetesProvider(parse_settings(settings))
    images = {"1.0.0": "plexica/echo:1.0.0", "1.1.0": "plexica/echo:1.1.0"}
    images["never-ready"] = "plexica/echo:1.2.0-never-ready"  # kwok's marker (devenv.kube)
    try:
        yield Contract(provider, images)
    finally:
        provider.close()
        core = k8s.CoreV1Api(kube_api)
        if exists(lambda: core.read_namespace(namespace)):
            core.delete_namespace(namespace)
