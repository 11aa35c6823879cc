"""Pytest fixtures for a real Docker-API engine (Podman's API service), loaded as a plugin
(`pytest_plugins = ["tests.docker_engine"]` in tests/conftest.py).

- `docker_host` (session): the DOCKER_HOST url of an engine. DOCKER_HOST is used when it
  answers; otherwise `devenv.podman.ensure_engine` installs and starts Podman's service
  under $TMPDIR/plexica-test-podman-<pid>, this session's own (a directory shared by two
  test sessions let the first to end stop the engine under the other), stopped and
  removed at its end. Containers and images live in Podman's storage, shared as before.
- `docker_client` (session): a `docker.DockerClient` on it.
- `docker_scope` (function): a scope label value of the test's own; every container with
  that scope is removed after the test, so tests (and the demo, scope "default") never
  touch one another's containers.
- `docker_provider` (function): a DockerProvider in that scope, on the test network, with a
  short drain.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.podman import engine_answers, ensure_engine, stop_engine
from plexica_gitops.runtime.provider import MANAGED_BY

TEST_NETWORK = "plexica-test"
STATE_DIR = Path(tempfile.gettempdir()) / f"plexica-test-podman-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A Docker-API engine for the session (see the module docstring)."""
    existing = os.environ.get("DOCKER_HOST")
    if existing and engine_answers(existing):
        yield existing
        return
    try:
        url = ensure_engine(STATE_DIR)
    except BaseException:
        _stop(STATE_DIR)  # what this session started, if anything
        raise
    try:
        yield url
    finally:
        _stop(STATE_DIR)


def _stop(state_dir: Path) -> None:
    stop_engine(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def docker_scope(docker_client: Any) -> Iterator[str]:
    """A scope of the test's own; its containers are removed afterwards."""
    scope = f"test-{uuid.uuid4().hex[:10]}"
    try:
        yield scope
    finally:
        remove_scope(docker_client, scope)


@pytest.fixture
def docker_provider(docker_host: str, docker_scope: str) -> Iterator[Any]:
    from plexica_gitops_docker.provider import DockerProvider, DockerSettings

    settings = DockerSettings(
        base_url=docker_host, network=TEST_NETWORK, scope=docker_scope, drain_seconds=0.2
    )
    provider = DockerProvider(settings)
    try:
        yield provider
    finally:
        provider.close()


def remove_scope(client: Any, scope: str) -> int:
    """Remove every container of ours labelled with `scope`; how many there were."""
    labels = [f"io.plexica.managed-by={MANAGED_BY}", f"io.plexica.scope={scope}"]
    containers = client.containers.list(all=True, filters={"label": labels})
    for container in containers:
        container.remove(force=True, v=True)
    return len(containers)
