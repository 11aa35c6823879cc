"""`plexica-gitops drift` end to end on real PostgreSQL and Podman: what changed out of band
(live vs last applied) is drift, kept apart from what git changed and was not applied yet
(pending); a part not observed is never "in sync"; the JSON report, the Prometheus text file
and the signed webhook delivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli
from git_repos import commit_all, init
from prometheus_client.parser import text_string_to_metric_families
from test_notify import Answer, Receiver
from typer.testing import CliRunner

from devenv.servers import free_port
from plexica_gitops.broker.kafka import BrokerSettings, EventBroker
from plexica_gitops.cli import app
from plexica_gitops.gitops.notify import SECRET_ENV

SECRET = "drift-webhook-test-secret"
CHECKED = "echo.drift.checked"  # a topic of this module's own on the shared broker


def _drift(environment: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`drift` in this process: (exit, stdout, stderr)."""
    result = CliRunner().invoke(app, ["drift", *args], env=environment)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _report(environment: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = _drift(environment, *args, "--format", "json")
    assert out.startswith("{"), err
    return code, json.loads(out)


def _addresses(entries: list[dict[str, Any]]) -> set[str]:
    return {e["address"] for e in entries}


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A webhook receiver that answers 204 to a request whose signature verifies."""
    server = Receiver([Answer(204)], secret=SECRET)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def installed(echo: EchoPlatform, environment: dict[str, str]) -> str:
    return echo.install(environment, "1.0.0")


def _edit_binding(environment: dict[str, str]) -> None:
    with psycopg.connect(environment["PLEXICA_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("""UPDATE plexica.tenant_plugins SET configuration = '{"edited": true}'""")


def test_in_sync_after_an_install(installed: str, environment: dict[str, str]) -> None:
    code, out, _ = _drift(environment, installed)
    assert code == 0, out
    assert "In sync" in out
    code, report = _report(environment, installed, "--fail-on", "any")
    assert code == 0
    assert report["format_version"] == "1.0"
    assert report["status"] == "in_sync"
    assert report["drift"] == [] and report["pending"] == [] and report["not_observed"] == []
    assert report["desired_revision"].startswith("sha256:")


def test_a_git_revision_is_checked_at_its_ref(
    echo: EchoPlatform, installed: str, environment: dict[str, str]
) -> None:
    repo = str(init(echo.root))
    applied = commit_all(echo.root, "the applied state")
    echo.write("1.0.0", replicas=3)
    ahead = commit_all(echo.root, "three replicas")

    code, report = _report(environment, "--repo", repo, "--ref", "main")
    assert code == 0, report
    assert report["desired_revision"] == f"main@sha1:{ahead}"
    assert _addresses(report["pending"]) == {"plugin.echo.workload"}
    code, report = _report(environment, "--repo", repo, "--ref", applied)
    assert code == 0 and report["status"] == "in_sync", report
    assert _drift(environment, "--repo", repo, "--ref", "main", "--fail-on", "pending")[0] == 2


def test_a_container_stopped_by_hand_is_drift(
    echo: EchoPlatform,
    installed: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    containers_of(docker_client, echo.scope, "echo")[0].stop(timeout=1)

    code, out, _ = _drift(environment, installed)
    assert code == 2, out
    assert "Drift" in out and "In sync" not in out
    assert "plugin.echo.workload (workload)" in out
    code, report = _report(environment, installed)
    assert code == 2 and report["status"] == "drift"
    (entry,) = [e for e in report["drift"] if e["address"] == "plugin.echo.workload"]
    assert entry["kind"] == "workload" and entry["cause"] in {"drift", "crash_repair"}
    assert "not ready" in entry["change"] or "stopped" in entry["change"]
    assert report["pending"] == []
    assert report["summary"] == {"drift": 1, "pending": 0}
    # drift only is no failure when the job asks to fail on pending changes only
    assert _drift(environment, installed, "--fail-on", "pending")[0] == 0

    code, markdown, _ = _drift(environment, installed, "--format", "markdown")
    assert code == 2
    assert markdown.startswith("## plexica-gitops drift\n")
    assert "### Drift" in markdown and "| `plugin.echo.workload` | workload |" in markdown


def test_a_container_removed_by_hand_is_drift_with_replicas_before_and_after(
    echo: EchoPlatform,
    installed: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    containers_of(docker_client, echo.scope, "echo")[0].remove(force=True)

    code, report = _report(environment, installed)
    assert code == 2, report
    (entry,) = report["drift"]
    assert entry["address"] == "plugin.echo.workload", entry
    assert entry["cause"] in {"drift", "crash_repair"}  # its endpoint was left behind too
    assert entry["changed"] == ["replicas 1 → 2"]
    assert report["pending"] == []
    code, out, _ = _drift(environment, installed)
    assert code == 2 and "replicas 1 → 2" in out, out


@pytest.fixture
def broker(kafka_bootstrap: str) -> Iterator[EventBroker]:
    client = EventBroker(BrokerSettings(kafka_bootstrap))
    yield client
    client.delete_topic(CHECKED)
    client.close()


def test_a_topic_config_changed_on_the_broker_is_drift(
    echo: EchoPlatform, environment: dict[str, str], broker: EventBroker, kafka_bootstrap: str
) -> None:
    env = {**environment, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    root = echo.install(env, "1.0.0", publishes=[CHECKED])
    assert _drift(env, root)[0] == 0
    broker.update_topic(CHECKED, config={"retention.ms": "3600000"})

    code, report = _report(env, root)
    assert code == 2, report
    (entry,) = report["drift"]
    assert entry["address"] == f"topic.{CHECKED}" and entry["kind"] == "topic"
    assert entry["cause"] == "drift"
    assert report["observed"] == {"broker": True, "runtime": True}
    # without the broker the topic is not compared, and the report says so
    code, out, _ = _drift(environment, root)
    assert code == 1 and "Not observed: the event broker" in out, out
    code, out, _ = _drift(environment, root, "--unobserved", "broker")
    assert code == 0 and "Left out on request (--unobserved broker)" in out, out


IGNORE_REPLICAS = """\
  drift:
    ignore:
      - {address: "plugin.*.workload", fields: [replicas]}
"""


def test_drift_in_what_other_systems_own_is_ignored_as_platform_yaml_says(
    echo: EchoPlatform,
    installed: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    platform = echo.root / "platform.yaml"
    platform.write_text(platform.read_text() + IGNORE_REPLICAS)
    containers_of(docker_client, echo.scope, "echo")[0].remove(force=True)

    code, report = _report(environment, installed)
    assert code == 0, report  # an autoscaler owns the replicas
    assert report["drift"] == [] and report["pending"] == []
    assert _addresses(report["ignored"]) == {"plugin.echo.workload"}
    code, out, _ = _drift(environment, installed)
    assert "Ignored (spec.drift.ignore): 1 resource(s)" in out and "plugin.echo.workload" in out
    # a rule covers only the fields it names: the binding's configuration is still drift
    _edit_binding(environment)
    code, report = _report(environment, installed)
    assert code == 2 and _addresses(report["drift"]) == {"tenant.acme.plugin.echo"}

    # a rule that is not one is an error in platform.yaml, at its line
    platform.write_text(platform.read_text().replace('"plugin.*.workload"', '"Plugin/echo"'))
    code, out, err = _drift(environment, installed)
    assert code == 1 and "Traceback" not in out + err
    assert "platform.yaml\n    17:" in err and "PGS113" in err


def test_a_binding_configuration_edited_with_sql_is_drift(
    installed: str, environment: dict[str, str], tmp_path: Path
) -> None:
    _edit_binding(environment)
    metrics = tmp_path / "plexica.prom"
    code, report = _report(environment, installed, "--metrics-file", str(metrics))
    assert code == 2, report
    (entry,) = report["drift"]
    assert entry["address"] == "tenant.acme.plugin.echo"
    assert entry["kind"] == "binding" and entry["cause"] == "drift"
    assert entry["change"].startswith("drift:")
    assert report["pending"] == []

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples[("plexica_drift_resources", (("kind", "binding"),))] == 1
    assert samples[("plexica_drift_resources", (("kind", "workload"),))] == 0
    assert samples[("plexica_pending_resources", (("kind", "binding"),))] == 0
    assert samples[("plexica_observed", (("part", "runtime"),))] == 1
    assert samples[("plexica_observed", (("part", "store"),))] == 1
    assert ("plexica_drift_check_timestamp_seconds", ()) in samples


def test_a_last_applied_row_lost_in_a_crash_is_written_again_so_drift_stays_drift(
    installed: str, environment: dict[str, str], tmp_path: Path
) -> None:
    """A kill between a step's effect and the journal batch with its end leaves the binding
    as git says and no last-applied row there (apply/session.py). Nothing is left to do,
    so before this fix no apply wrote the row again, and an edit by hand was then reported
    as a pending change in git, not as drift."""
    address = "tenant.acme.plugin.echo"
    dsn = environment["PLEXICA_DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        (fingerprint,) = conn.execute(
            "DELETE FROM plexica_gitops.last_applied WHERE address = %s RETURNING fingerprint",
            (address,),
        ).fetchone() or (None,)
    assert fingerprint is not None

    saved = tmp_path / "reviewed.plan"
    code, out = run_cli(environment, "plan", installed, "--out", str(saved))
    assert code == 0 and "No changes." in out, out
    assert "records what was last applied at 1 resource in sync" in out
    assert address not in saved.read_text()  # bookkeeping: made again by the apply
    code, out = run_cli(
        environment, "apply", str(saved), "--desired-state", installed, "--auto-approve"
    )
    assert code == 0 and "Recorded what was last applied at 1 in-sync resource." in out, out
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT fingerprint, apply_id, revision FROM plexica_gitops.last_applied"
            " WHERE address = %s",
            (address,),
        ).fetchone()
        applies = conn.execute("SELECT count(*) FROM plexica_gitops.applies").fetchone()
    _, report = _report(environment, installed)
    assert row == (fingerprint, None, report["desired_revision"])
    assert applies == (1,)  # bookkeeping, not an apply of its own
    code, out = run_cli(environment, "plan", installed)
    assert "records what was last applied" not in out

    _edit_binding(environment)
    code, report = _report(environment, installed)
    assert code == 2, report
    assert _addresses(report["drift"]) == {address} and report["pending"] == []


def test_a_git_change_not_applied_is_pending_only(
    echo: EchoPlatform, installed: str, environment: dict[str, str]
) -> None:
    echo.write("1.0.0", replicas=3)

    code, report = _report(environment, installed)
    assert code == 0, report  # --fail-on drift (the default): git ahead is no drift
    assert report["status"] == "pending"
    assert report["drift"] == []
    (entry,) = report["pending"]
    assert entry["address"] == "plugin.echo.workload" and entry["cause"] == "git_change"
    assert "replicas 2 → 3" in entry["change"]
    assert _drift(environment, installed, "--fail-on", "drift")[0] == 0
    assert _drift(environment, installed, "--fail-on", "pending")[0] == 2
    assert _drift(environment, installed, "--fail-on", "any")[0] == 2
    code, out, _ = _drift(environment, installed)
    assert "No drift" in out and "Pending" in out


def test_drift_and_pending_at_once_are_kept_apart(
    echo: EchoPlatform, installed: str, environment: dict[str, str]
) -> None:
    echo.write("1.0.0", replicas=3)
    _edit_binding(environment)

    code, report = _report(environment, installed)
    assert code == 2 and report["status"] == "drift"
    assert _addresses(report["drift"]) == {"tenant.acme.plugin.echo"}
    assert _addresses(report["pending"]) == {"plugin.echo.workload"}
    assert report["summary"] == {"drift": 1, "pending": 1}
    assert _drift(environment, installed, "--fail-on", "pending")[0] == 2


def test_an_unreachable_runtime_is_never_in_sync(
    installed: str, environment: dict[str, str], tmp_path: Path
) -> None:
    dead = {**environment, "DOCKER_HOST": f"unix://{tmp_path}/nothing-listens-here.sock"}
    code, out, err = _drift(dead, installed)
    assert code == 1, out + err
    assert "In sync" not in out
    assert "Not observed: the runtime provider" in out and "workloads were not compared" in out
    code, report = _report(dead, installed)
    assert code == 1 and report["status"] == "not_observed"
    assert [p["part"] for p in report["not_observed"]] == ["runtime"]

    # checked without the runtime on purpose: the report says so, and exits on what it saw
    code, out, _ = _drift(dead, installed, "--unobserved", "runtime")
    assert code == 0, out
    assert "Left out on request (--unobserved runtime): workloads were not compared" in out
    _edit_binding(environment)
    assert _drift(dead, installed, "--unobserved", "runtime")[0] == 2


def test_plan_errors_are_never_in_sync(
    echo: EchoPlatform, installed: str, environment: dict[str, str]
) -> None:
    migration = echo.root / "plugins/echo/migrations/0001_create_echo_messages.sql"
    migration.write_text("CREATE TABLE echo_messages (id bigserial PRIMARY KEY);\n")

    code, report = _report(environment, installed)
    assert code == 1, report
    assert report["status"] == "plan_errors"
    assert "PGP101" in {f["code"] for f in report["findings"]}
    code, out, _ = _drift(environment, installed)
    assert code == 1 and "In sync" not in out and "error PGP101" in out, out


def test_the_report_is_posted_to_the_webhook_signed(
    installed: str, environment: dict[str, str], webhook: Receiver
) -> None:
    _edit_binding(environment)
    hook = webhook
    signed = {**environment, SECRET_ENV: SECRET}
    code, out, err = _drift(signed, installed, "--format", "json", "--notify", hook.url)
    assert code == 2, err
    (received,) = hook.received
    assert received.signature_ok is True
    assert received.headers["X-Plexica-Event"] == "drift"
    assert json.loads(received.body) == json.loads(out)
    assert SECRET not in out + err


def test_a_failed_delivery_is_reported_and_fails_the_check(
    installed: str, environment: dict[str, str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    code, out, err = _drift(environment, installed, "--notify", closed)
    assert code == 1  # in sync, but the report did not reach the webhook
    assert "In sync" in out
    assert "webhook http://127.0.0.1" in err and "not delivered" in err
