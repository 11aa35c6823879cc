"""`apply` end to end: the real CLI against a real PostgreSQL and real containers (Podman
serving the Docker API), with plugin images built in the test run."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import docker
import psycopg
import pytest
from apply_support import (
    EchoPlatform,
    TrafficLoop,
    containers_of,
    install_example,
    plugin_statuses,
    run_cli,
    scoped_platform,
)
from conftest import EXAMPLE_DESIRED_STATE, DesiredStateCopy

from devenv.images import build_desired_state_images
from plexica_gitops.store import catalog
from plexica_gitops.store.lock import apply_lock

# --- the example platform ----------------------------------------------------------------


@pytest.fixture(scope="session")
def example_images(docker_client: docker.DockerClient) -> list[str]:
    return build_desired_state_images(docker_client, EXAMPLE_DESIRED_STATE)


def test_fresh_install_of_the_example_platform(
    desired_state_copy: DesiredStateCopy,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
    example_images: list[str],
    docker_scope: str,
) -> None:
    root, apply_output = install_example(desired_state_copy.root, docker_scope, environment)
    dsn = environment["PLEXICA_DATABASE_URL"]

    statuses = plugin_statuses(dsn)
    assert statuses == {
        "analytics": ("ACTIVE", None),
        "billing": ("ACTIVE", None),
        "contacts": ("ACTIVE", None),
        "crm": ("ACTIVE", None),
        "inventory": ("INSTALLED", None),
        "notifications": ("ACTIVE", None),
    }
    # containers run with the declared limits, read back from the engine
    crm = containers_of(docker_client, docker_scope, "crm")
    assert len(crm) == 2
    for container in crm:
        host_config = container.attrs["HostConfig"]
        assert container.status == "running"
        assert host_config["NanoCpus"] == 500_000_000  # cpu: 500m
        assert host_config["Memory"] == 512 * 1024 * 1024  # memory: 512Mi
        assert container.labels["io.plexica.version"] == "1.2.0"
    with psycopg.connect(dsn) as conn:
        # routes and ready endpoints of every active plugin; none for the installed one
        for pid in ("analytics", "billing", "contacts", "crm", "notifications"):
            registered = catalog.endpoints(conn, pid)
            assert registered, pid
            for endpoint in registered:
                with urllib.request.urlopen(endpoint.endpoint + "/health/ready", timeout=5) as r:
                    assert r.status == 200
        assert catalog.endpoints(conn, "inventory") == []
        # migrations in every active tenant schema, none in the suspended one
        tables = {
            (schema, table)
            for schema, table in conn.execute(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname LIKE 'tenant_%'"
            ).fetchall()
        }
    assert ("tenant_acme", "crm_deals") in tables
    assert ("tenant_globex", "contacts_contacts") in tables
    assert not any(schema == "tenant_initech" for schema, _ in tables)

    # converged: nothing left to do, in what was observed (no broker here: its topics are
    # not, and plan says so rather than "the platform matches")
    code, output = run_cli(environment, "plan", root, "--detailed-exitcode")
    assert code == 1 and "--unobserved broker" in output, output
    code, output = run_cli(
        environment, "plan", root, "--detailed-exitcode", "--unobserved", "broker"
    )
    assert code == 0 and "No changes in what was observed" in output, output
    code, output = run_cli(environment, "history")
    assert code == 0 and "succeeded" in output
    wide = {**environment, "COLUMNS": "200"}
    code, output = run_cli(wide, "status", root)
    assert code == 0, output
    assert re.search(r"crm +ACTIVE +1\.2\.0 +2/2 +500m +512Mi +http://127\.0\.0\.1:\d+", output)
    assert re.search(r"inventory +INSTALLED +0\.9\.0 +1/1 .* -\s*$", output, re.M)
    assert re.search(r"initech +suspended +tenant_initech +-", output)
    # with a broken checkout, status still shows the platform: the runtime the last apply
    # recorded in the store is observed instead
    desired_state_copy.write("platform.yaml", "spec: [unclosed\n")
    code, output = run_cli(wide, "status", root)
    assert code == 0 and "is not valid" in output
    assert re.search(r"crm +ACTIVE +1\.2\.0 +2/2", output)

    # the env reference was resolved into the container, and nowhere else
    secret = environment["BILLING_STRIPE_API_KEY"]
    billing = containers_of(docker_client, docker_scope, "billing")[0]
    assert f"STRIPE_API_KEY={secret}" in billing.attrs["Config"]["Env"]
    assert secret not in json.dumps(billing.labels)
    assert secret not in apply_output
    with psycopg.connect(dsn) as conn:
        dump = conn.execute(
            "SELECT string_agg(t::text, '') FROM (SELECT * FROM plexica_gitops.journal) t"
        ).fetchone()
        manifests = conn.execute("SELECT string_agg(manifest::text, '') FROM plexica.plugins")
        assert secret not in str(dump) and secret not in str(manifests.fetchone())


# --- one plugin, updated -----------------------------------------------------------------


def test_rolling_update_serves_every_request(
    echo: EchoPlatform, environment: dict[str, str], docker_client: docker.DockerClient
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    code, output = run_cli(environment, "apply", echo.write("1.0.0"), "--auto-approve")
    assert code == 0, output

    traffic = TrafficLoop(dsn)
    traffic.start()
    time.sleep(0.3)
    code, output = run_cli(environment, "apply", echo.write("1.1.0"), "--auto-approve")
    time.sleep(0.3)
    traffic.stop.set()
    traffic.join()
    assert code == 0, output
    print(f"rolling update: {traffic.requests} requests, {len(traffic.failures)} failed")
    assert traffic.requests > 20
    assert traffic.failures == []
    assert traffic.versions == {"1.0.0", "1.1.0"}
    containers = containers_of(docker_client, echo.scope, "echo")
    assert sorted(c.labels["io.plexica.version"] for c in containers) == ["1.1.0", "1.1.0"]
    assert plugin_statuses(dsn)["echo"] == ("ACTIVE", None)


def test_update_that_never_becomes_ready_rolls_back(
    echo: EchoPlatform, environment: dict[str, str], docker_client: docker.DockerClient
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    assert run_cli(environment, "apply", echo.write("1.1.0"), "--auto-approve")[0] == 0

    never_ready = echo.write("1.2.0", timeout_seconds=5)  # waited out: keep it short
    code, output = run_cli(environment, "apply", never_ready, "--auto-approve")
    assert code == 1, output
    assert "rolled back" in output and "plugin.echo.workload:replace" in output
    assert "404" in output  # the readiness probe's last answer is in the error

    # the old version is still serving through the registry
    with psycopg.connect(dsn) as conn:
        registered = catalog.endpoints(conn, "echo")
        assert {e.version for e in registered} == {"1.1.0"} and len(registered) == 2
        for endpoint in registered:
            with urllib.request.urlopen(endpoint.endpoint + "/index.html", timeout=5) as r:
                assert json.loads(r.read())["version"] == "1.1.0"
        catalogued = conn.execute(
            "SELECT version FROM plexica.plugins WHERE id = 'echo'"
        ).fetchone()
    assert catalogued == ("1.1.0",)
    assert sorted(
        c.labels["io.plexica.version"] for c in containers_of(docker_client, echo.scope, "echo")
    ) == ["1.1.0", "1.1.0"]
    # the next plan shows the update still pending; history shows the rollback
    code, output = run_cli(environment, "plan", str(echo.root), "--format", "json")
    ids = [a["id"] for a in json.loads(output)["actions"]]
    assert "plugin.echo.workload:replace" in ids and "plugin.echo:update" in ids
    code, output = run_cli(environment, "history")
    assert "failed" in output and "1 rolled-back" in output


def test_image_pull_failure_leaves_the_plugin_registered_with_the_error(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    root = echo.write("1.0.0", image="registry.invalid/plexica/echo:1.0.0")
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 1, output
    status, error = plugin_statuses(dsn)["echo"]
    assert status == "REGISTERED"
    assert error and "registry.invalid/plexica/echo:1.0.0" in error
    # the tenant itself was created: only what needs the plugin was skipped
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT slug FROM plexica.tenants").fetchall() == [("acme",)]
    assert "plugin.echo:install" in output and "Not started:" in output
    # fixing the image makes the next apply install it
    code, output = run_cli(environment, "apply", echo.write("1.0.0"), "--auto-approve")
    assert code == 0, output
    assert plugin_statuses(dsn)["echo"] == ("ACTIVE", None)


def test_a_migration_failing_in_one_tenant_leaves_the_others_unaffected(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    """Spec 004 edge case 2, end to end."""
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    with psycopg.connect(dsn, autocommit=True) as conn:  # a table in the way, in one schema
        conn.execute("CREATE SCHEMA tenant_broken")
        conn.execute("CREATE TABLE tenant_broken.echo_messages (legacy int)")
    root = echo.write("1.0.0", tenants=("acme", "broken", "globex"))
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 1, output
    assert "tenant.broken.migrations.echo:apply failed" in output
    assert "0001_create_echo_messages.sql" in output and "already exists" in output
    assert plugin_statuses(dsn)["echo"] == ("ACTIVE", None)
    with psycopg.connect(dsn) as conn:
        enabled = conn.execute(
            "SELECT t.slug FROM plexica.tenant_plugins b JOIN plexica.tenants t ON t.id ="
            " b.tenant_id WHERE b.enabled ORDER BY 1"
        ).fetchall()
        legacy = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'tenant_broken' AND table_name = 'echo_messages'"
        ).fetchall()
    assert enabled == [("acme",), ("globex",)]
    assert legacy == [("legacy",)]  # rolled back: untouched
    # once the schema is fixed, the next apply finishes that tenant
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE tenant_broken.echo_messages")
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    assert run_cli(environment, "plan", root, "--detailed-exitcode")[0] == 0


def test_a_container_stopped_by_hand_is_planned_and_healed(
    echo: EchoPlatform, environment: dict[str, str], docker_client: docker.DockerClient
) -> None:
    run_cli(environment, "init")
    root = echo.write("1.0.0")
    assert run_cli(environment, "apply", root, "--auto-approve")[0] == 0
    victim = containers_of(docker_client, echo.scope, "echo")[0]
    victim.stop(timeout=1)

    code, output = run_cli(environment, "plan", root, "--format", "json", "--detailed-exitcode")
    assert code == 2, output
    actions = {a["id"]: a for a in json.loads(output)["actions"]}
    assert "plugin.echo.workload:start" in actions
    assert "not ready" in actions["plugin.echo.workload:start"]["reason"]

    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    assert all(c.status == "running" for c in containers_of(docker_client, echo.scope, "echo"))
    assert run_cli(environment, "plan", root, "--detailed-exitcode")[0] == 0


def test_a_container_removed_by_hand_is_replaced_and_leaves_the_registry(
    echo: EchoPlatform, environment: dict[str, str], docker_client: docker.DockerClient
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    root = echo.write("1.0.0")
    assert run_cli(environment, "apply", root, "--auto-approve")[0] == 0
    victim = containers_of(docker_client, echo.scope, "echo")[0]
    victim.remove(force=True)

    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    assert "plugin.echo.workload" in output
    running = containers_of(docker_client, echo.scope, "echo")
    assert len(running) == 2
    with psycopg.connect(dsn) as conn:
        registered = catalog.endpoints(conn, "echo")
    assert len(registered) == 2  # the removed replica's endpoint is gone, the new one is in
    for endpoint in registered:
        with urllib.request.urlopen(endpoint.endpoint + "/health/ready", timeout=5) as answer:
            assert answer.status == 200


def test_a_saved_plan_applies_only_unaltered_and_while_current(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    root = echo.write("1.0.0")
    saved = tmp_path / "release.plan"
    code, output = run_cli(environment, "plan", root, "--out", str(saved))
    assert code == 0, output

    altered = tmp_path / "altered.plan"
    altered.write_text(saved.read_text().replace("new in git", "new in git!"))
    code, output = run_cli(
        environment, "apply", str(altered), "--desired-state", root, "--auto-approve"
    )
    assert code == 1 and "checksum" in output

    with psycopg.connect(dsn, autocommit=True) as conn:  # someone changes the platform
        conn.execute(
            "INSERT INTO plexica.tenants (id, slug, schema_name, status)"
            " VALUES ('5b1e0c7a-8a4e-4f7a-9d7e-2f1a3b4c5d6e', 'walk-in', 'tenant_walk_in',"
            " 'active')"
        )
    code, output = run_cli(
        environment, "apply", str(saved), "--desired-state", root, "--auto-approve"
    )
    assert code == 1
    assert "stale plan" in output and "live platform changed" in output
    assert plugin_statuses(dsn) == {}  # nothing applied

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM plexica.tenants WHERE slug = 'walk-in'")
    code, output = run_cli(
        environment, "apply", str(saved), "--desired-state", root, "--auto-approve"
    )
    assert code == 0, output
    assert plugin_statuses(dsn)["echo"] == ("ACTIVE", None)


def test_apply_without_a_terminal_asks_for_auto_approve_and_changes_nothing(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    run_cli(environment, "init")
    code, output = run_cli(environment, "apply", echo.write("1.0.0"))
    assert code == 1
    assert "refusing to apply without confirmation" in output and "--auto-approve" in output
    assert plugin_statuses(environment["PLEXICA_DATABASE_URL"]) == {}
    code, output = run_cli(environment, "apply", str(echo.root / "release.plan"))
    assert code == 2 and "does not exist" in output  # a mistyped plan file is not a plan


def test_a_second_apply_is_refused_while_one_holds_the_lock(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    run_cli(environment, "init")
    with apply_lock(dsn, host="pipeline-7", pid=4242):
        code, output = run_cli(environment, "apply", echo.write("1.0.0"), "--auto-approve")
    assert code == 1
    assert "pipeline-7" in output and "4242" in output
    assert plugin_statuses(dsn) == {}  # nothing was applied


def test_apply_without_the_broker_it_needs_refuses_unless_asked(
    desired_state_copy: DesiredStateCopy,
    environment: dict[str, str],
    example_images: list[str],
    docker_scope: str,
) -> None:
    """The example's plugins publish events: with no broker configured, apply never acts
    on topics it did not see; `--unobserved broker` applies the rest, and says so."""
    assert "KAFKA_BOOTSTRAP_SERVERS" not in environment
    root = desired_state_copy.root
    platform = root / "platform.yaml"
    platform.write_text(scoped_platform(platform.read_text(encoding="utf-8"), docker_scope))
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(environment, "apply", str(root), "--auto-approve")
    assert code == 1, output
    assert "cannot apply: the event broker was not observed" in output
    assert "--unobserved broker" in output
    assert plugin_statuses(environment["PLEXICA_DATABASE_URL"]) == {}  # nothing applied

    code, output = run_cli(environment, "apply", str(root), "--unobserved", "runtime")
    assert code == 2 and "cannot run without the runtime provider" in output

    code, output = run_cli(
        environment, "apply", str(root), "--auto-approve", "--unobserved", "broker"
    )
    assert code == 0, output
    assert "Not observed: broker" in output
    assert plugin_statuses(environment["PLEXICA_DATABASE_URL"])["crm"] == ("ACTIVE", None)
