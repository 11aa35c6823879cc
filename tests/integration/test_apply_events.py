"""Event topics end to end: `plan`/`apply` against a real Tansu broker (Kafka protocol),
a real PostgreSQL and real containers. What is asserted is read back from the broker."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import psycopg
import pytest
from apply_support import EchoPlatform, plugin_statuses, run_cli
from confluent_kafka.admin import AdminClient, NewTopic

from plexica_gitops.broker.kafka import BrokerSettings, EventBroker

POSTED = "echo.message.posted"
READ = "echo.message.read"


@pytest.fixture
def events_environment(environment: dict[str, str], kafka_bootstrap: str) -> dict[str, str]:
    return {**environment, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}


@pytest.fixture
def broker(kafka_bootstrap: str) -> Iterator[EventBroker]:
    """The broker, with this test's topics deleted afterwards (the broker is shared)."""
    client = EventBroker(BrokerSettings(kafka_bootstrap))
    yield client
    for name in (POSTED, READ, "echo.by-hand"):
        client.delete_topic(name)
    client.close()


def _plan(env: dict[str, str], root: str) -> dict[str, object]:
    from typer.testing import CliRunner

    from plexica_gitops.cli import app

    result = CliRunner().invoke(app, ["plan", root, "--format", "json"], env=env)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_install_creates_exactly_the_declared_topics_and_config_changes_update_them(
    echo: EchoPlatform, events_environment: dict[str, str], broker: EventBroker
) -> None:
    env = events_environment
    run_cli(env, "init")
    topics = {POSTED: {"partitions": 2, "config": {"cleanup.policy": "compact"}}}
    root = echo.write("1.0.0", publishes=[POSTED, READ], topics=topics)
    code, output = run_cli(env, "apply", root, "--auto-approve")
    assert code == 0, output

    observed = broker.observe([POSTED, READ])
    assert set(observed) == {POSTED, READ}
    assert observed[POSTED].partitions == 2  # the per-event override
    assert observed[POSTED].config["cleanup.policy"] == "compact"
    assert observed[POSTED].config["retention.ms"] == "86400000"  # the platform default
    assert observed[READ].partitions == 1
    assert "cleanup.policy" not in observed[READ].config or (
        observed[READ].config["cleanup.policy"] != "compact"
    )
    assert _plan(env, root)["actions"] == []  # converged

    # a retention change in git is an in-place update, and apply carries it out
    topics[POSTED]["config"] = {"cleanup.policy": "compact", "retention.ms": "3600000"}
    root = echo.write("1.0.0", publishes=[POSTED, READ], topics=topics)
    plan = _plan(env, root)
    (update,) = plan["actions"]  # type: ignore[misc]
    assert update["id"] == f"topic.{POSTED}:update" and update["action"] == "update"
    assert update["after"]["config"] == {"retention.ms": "3600000"}
    code, output = run_cli(env, "apply", root, "--auto-approve")
    assert code == 0, output
    assert broker.observe([POSTED])[POSTED].config["retention.ms"] == "3600000"


def test_a_topic_created_by_hand_is_reported_unmanaged_and_left_alone(
    echo: EchoPlatform, events_environment: dict[str, str], broker: EventBroker
) -> None:
    env = events_environment
    run_cli(env, "init")
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    admin.create_topics([NewTopic("echo.by-hand", 4, 1)])["echo.by-hand"].result(10)
    root = echo.write("1.0.0", publishes=[POSTED])
    plan = _plan(env, root)
    assert "topic.echo.by-hand" in plan["unmanaged"]  # type: ignore[operator]
    assert not any("by-hand" in a["id"] for a in plan["actions"])  # type: ignore[union-attr]
    assert run_cli(env, "apply", root, "--auto-approve")[0] == 0
    assert broker.observe(["echo.by-hand"])["echo.by-hand"].partitions == 4


def test_uninstall_without_purge_keeps_the_topics(
    echo: EchoPlatform, events_environment: dict[str, str], broker: EventBroker
) -> None:
    env = events_environment
    run_cli(env, "init")
    assert run_cli(env, "apply", echo.write("1.0.0", publishes=[POSTED]), "--auto-approve")[0] == 0
    root = echo.write("1.0.0", publishes=[POSTED], state="absent")
    code, output = run_cli(env, "apply", root, "--auto-approve")
    assert code == 0, output
    assert plugin_statuses(env["PLEXICA_DATABASE_URL"])["echo"][0] == "UNINSTALLED"
    assert POSTED in broker.observe([POSTED])  # data outlives the plugin without purge
    assert _echo_tables(env["PLEXICA_DATABASE_URL"]) == ["echo_messages"]


def test_uninstall_with_purge_deletes_the_topics_it_created(
    echo: EchoPlatform, events_environment: dict[str, str], broker: EventBroker
) -> None:
    env = events_environment
    run_cli(env, "init")
    root = echo.write("1.0.0", publishes=[POSTED], purge=True)
    assert run_cli(env, "apply", root, "--auto-approve")[0] == 0
    root = echo.write("1.0.0", publishes=[POSTED], state="absent", purge=True)
    dsn = env["PLEXICA_DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True) as conn:  # another plugin's table, same prefix
        conn.execute("CREATE TABLE tenant_acme.echo_extra_notes (id int)")
        conn.execute(
            "INSERT INTO plexica.plugins (id, name, version, manifest, manifest_hash, status)"
            " VALUES ('echo-extra', 'Echo extra', '1.0.0', '{}', 'h', 'REGISTERED')"
        )
    code, output = run_cli(env, "apply", root, "--auto-approve")
    assert code == 0, output
    assert POSTED not in broker.observe([POSTED])
    # the plugin's tables and migration history are gone; echo-extra's table is not
    assert _echo_tables(dsn) == ["echo_extra_notes"]
    with psycopg.connect(dsn) as conn:
        history = conn.execute("SELECT count(*) FROM plexica.tenant_migrations").fetchone()
    assert history == (0,)


def _echo_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'tenant_acme' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_broker_is_a_clear_error_and_plans_no_topics(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    env = {**environment, "KAFKA_BOOTSTRAP_SERVERS": address, "KAFKA_TIMEOUT_SECONDS": "2"}
    run_cli(env, "init")
    root = echo.write("1.0.0", publishes=[POSTED])
    # plan fails, naming the broker, rather than claim anything about the topics ...
    code, output = run_cli(env, "plan", root)
    assert code == 1, output
    assert "event broker was not observed" in output and address in output
    assert "--unobserved broker" in output
    # ... unless asked to plan without it: then the topics are left out, and it says so
    code, output = run_cli(env, "plan", root, "--unobserved", "broker")
    assert code == 0, output
    assert "PGP201" in output and f"topic.{POSTED}" not in output
    # apply refuses at once, before changing anything
    started = time.monotonic()
    code, output = run_cli(env, "apply", root, "--auto-approve")
    assert code == 1
    assert "cannot observe the event broker" in output and address in output
    assert time.monotonic() - started < 15
    assert plugin_statuses(env["PLEXICA_DATABASE_URL"]) == {}
