"""Shared pytest fixtures. Keep each fixture clearly named after what it provides."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from apply_support import ECHO_IMAGE, EchoPlatform

from devenv.images import build_plugin_image
from devenv.postgres import PostgresServer
from plexica_gitops.desired.validate import ValidationReport, validate_directory
from plexica_gitops.findings import Location

pytest_plugins = ["docker_engine", "kafka_broker", "kube_cluster", "provider_contract"]

# The fixtures that start (or reach) a real server: the shared ones, and those of test
# modules that start servers of their own (test_demo, test_apply_lock_loss). A test using
# one, directly or through another fixture, is marked `integration` (and `kube` for the
# Kubernetes control plane), so `python -m pytest -m "not integration"` runs the pure
# tests alone. Modules with such tests live in tests/integration/, the others in
# tests/unit/; the marks, not the folders, decide what `-m` selects.
INTEGRATION_FIXTURES = frozenset(
    {"postgres_server", "docker_host", "kafka_broker", "kube_cluster"}
    | {"demo_dir", "foreign_postgres", "restartable_postgres"}
)
KUBE_FIXTURES = frozenset({"kube_cluster"})


_CACHE_DIR = "PLEXICA_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Every CLI a test runs (in process or as a subprocess) caches parsed files in a
    directory of this test process, never in the user's cache (~/.cache/plexica-gitops):
    a test must not read what an earlier run or another checkout wrote there."""
    if _CACHE_DIR not in os.environ:
        os.environ[_CACHE_DIR] = tempfile.mkdtemp(prefix="plexica-test-cache-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(_CACHE_DIR), ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if used & KUBE_FIXTURES:
            item.add_marker(pytest.mark.kube)


EXAMPLE_DESIRED_STATE = Path(__file__).resolve().parent.parent / "desired-state"


class DesiredStateCopy:
    """A writable copy of the example desired state, edited as TEXT.

    Every edit names the exact text it touches, so a test can compute the line and column
    a finding must point at from the edited file itself (`locate`) instead of hard-coding
    line numbers that drift when the example changes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def text(self, rel: str) -> str:
        return self.path(rel).read_text(encoding="utf-8")

    def write(self, rel: str, text: str) -> Path:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def locate(self, rel: str, needle: str, *, offset: int = 0) -> Location:
        """1-based line and column of `needle` (which must occur exactly once) plus
        `offset` characters."""
        text = self.text(rel)
        count = text.count(needle)
        assert count == 1, f"{needle!r} occurs {count} times in {rel}"
        index = text.index(needle) + offset
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        return Location(rel, line, column)

    def replace(self, rel: str, old: str, new: str) -> Location:
        """Replace the one occurrence of `old`; return where the new text starts."""
        text = self.text(rel)
        count = text.count(old)
        assert count == 1, f"{old!r} occurs {count} times in {rel}"
        index = text.index(old)
        self.write(rel, text[:index] + new + text[index + len(old) :])
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        return Location(rel, line, column)

    def append_document(self, rel: str, document: str) -> int:
        """Append `document` as a new YAML document (after `---`); return the 1-based line
        of its first line."""
        text = self.text(rel) if self.path(rel).exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        prefix = text + "---\n" if text else ""
        self.write(rel, prefix + document)
        return prefix.count("\n") + 1

    def validate(self) -> ValidationReport:
        return validate_directory(self.root)


@pytest.fixture
def desired_state_copy(tmp_path: Path) -> DesiredStateCopy:
    """A fresh copy of `desired-state/` (which validates clean) under tmp_path."""
    root = tmp_path / "desired-state"
    shutil.copytree(EXAMPLE_DESIRED_STATE, root, symlinks=True)
    return DesiredStateCopy(root)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole test session (tests/postgres_server.py)."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server; yields its DSN."""
    import psycopg
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- apply: real containers ---------------------------------------------------------


@pytest.fixture
def environment(postgres_database: str, docker_host: str) -> dict[str, str]:
    return {
        "PLEXICA_DATABASE_URL": postgres_database,
        "DOCKER_HOST": docker_host,
        "PLEXICA_PLUGIN_DATABASE_URL": "postgresql://plugin@db.internal/platform",
        "PLEXICA_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        # billing's STRIPE_API_KEY reference: a throwaway value made up per test, so a test
        # can check that it never shows up in output, plans or the store
        "BILLING_STRIPE_API_KEY": f"sk_test_{uuid.uuid4().hex}",
    }


@pytest.fixture(scope="session")
def echo_images(docker_client: docker.DockerClient) -> dict[str, str]:
    return {
        "1.0.0": build_plugin_image(docker_client, f"{ECHO_IMAGE}:1.0.0", "echo", "1.0.0"),
        "1.1.0": build_plugin_image(docker_client, f"{ECHO_IMAGE}:1.1.0", "echo", "1.1.0"),
        "1.2.0": build_plugin_image(
            docker_client, f"{ECHO_IMAGE}:1.2.0", "echo", "1.2.0", behaviour="never-ready"
        ),
    }


@pytest.fixture
def echo(tmp_path: Path, docker_scope: str, echo_images: dict[str, str]) -> EchoPlatform:
    return EchoPlatform(tmp_path / "echo-state", docker_scope)
