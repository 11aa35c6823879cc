"""Issue 10, bullet 5: a changed value behind `fromEnv`/`secretRef` is seen and rolled out —
by a keyed digest of the resolved values labelled on the replicas, so the value itself is
never stored or shown — and `apply --replace ADDRESS` forces a health-gated replacement.
End to end: real PostgreSQL, real Podman."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import psycopg
from apply_support import EchoPlatform, TrafficLoop, containers_of, run_cli

from plexica_gitops.observe import observe_platform
from plexica_gitops.runtime.provider import load_provider

TOKEN = "ECHO_API_TOKEN"
ENV = {TOKEN: {"fromEnv": TOKEN}}


def _secret() -> str:
    return f"made-up-{uuid.uuid4().hex}"  # a throwaway value per test, never a real one


def _inside(container: Any, name: str) -> str:
    """The variable in the environment of the plugin's own process (httpd) in the replica."""
    script = (
        "b=/bin/busybox; for d in /proc/[0-9]*; do"
        " case \"$($b tr '\\000' ' ' < $d/cmdline 2>/dev/null)\" in"
        " '/bin/busybox httpd '*) $b tr '\\000' '\\n' < $d/environ"
        f" | $b grep '^{name}=' | $b cut -d= -f2-;; esac; done"
    )
    code, output = container.exec_run(["/bin/busybox", "sh", "-c", script])
    assert code == 0, output
    return str(output.decode().strip())


def _everything_recorded(dsn: str, client: docker.DockerClient, scope: str) -> str:
    """All the store holds about applies, and every label of every replica, as text."""
    with psycopg.connect(dsn) as conn:
        rows = [
            conn.execute(f"SELECT to_jsonb(t)::text FROM {table} t").fetchall()  # type: ignore[arg-type]
            for table in (
                "plexica_gitops.applies",
                "plexica_gitops.journal",
                "plexica_gitops.last_applied",
                "plexica.plugins",
                "plexica.route_endpoints",
            )
        ]
    labels = [c.labels for c in client.containers.list(all=True, filters={"label": scope})]
    return json.dumps([rows, labels])


def test_a_changed_secret_is_planned_rolled_out_and_never_shown(
    echo: EchoPlatform,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    old, new = _secret(), _secret()
    env = {**environment, TOKEN: old}
    root = echo.install(env, "1.0.0", env=ENV)
    before = containers_of(docker_client, echo.scope, "echo")
    assert [_inside(c, TOKEN) for c in before] == [old, old]
    code, output = run_cli(env, "plan", root, "--detailed-exitcode")
    assert code == 0, output  # same value: nothing to do, nothing left uncompared
    assert "PGP206" not in output

    # the value behind the reference changes: the plan sees it, without showing it
    env[TOKEN] = new
    code, text = run_cli(env, "plan", root, "--detailed-exitcode")
    assert code == 2, text
    assert "plugin.echo.workload" in text and "secret value changed" in text
    code, output = run_cli(env, "plan", root, "--format", "json")
    (replace,) = [a for a in json.loads(output)["actions"] if a["step"] == "replace"]
    assert replace["id"] == "plugin.echo.workload:replace"
    assert replace["reason"] == "reconfigure (secret value changed): rolling restart"

    code, applied = run_cli(env, "apply", root, "--auto-approve")
    assert code == 0, applied
    after = containers_of(docker_client, echo.scope, "echo")
    assert len(after) == 2 and not {c.id for c in before} & {c.id for c in after}
    assert [_inside(c, TOKEN) for c in after] == [new, new]  # every replica, the new value
    assert run_cli(env, "plan", root, "--detailed-exitcode")[0] == 0

    recorded = _everything_recorded(dsn, docker_client, echo.scope)
    unkeyed = [hashlib.sha256(v.encode()).hexdigest() for v in (old, new)]
    for value in (old, new, *unkeyed):
        for where in (text, output, applied, recorded):
            assert value not in where
    digests = {c.labels["io.plexica.env-digest"] for c in after}
    assert len(digests) == 1 and digests.pop().startswith("hmac-sha256:")


def test_values_that_cannot_be_compared_are_said_not_compared(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    env = {**environment, TOKEN: _secret()}
    root = echo.install(env, "1.0.0", env=ENV)

    # a pull-request plan: the secret is not in its environment
    without = {k: v for k, v in env.items() if k != TOKEN}
    code, output = run_cli(without, "plan", root, "--format", "json")
    assert code == 0, output
    (finding,) = [w for w in json.loads(output)["warnings"] if w["code"] == "PGP206"]
    assert finding["subjects"] == ["echo"] and finding["file"] == "plugins/echo/plugin.yaml"
    assert TOKEN in finding["message"] and "not compared" in finding["message"]
    assert "--replace plugin.echo.workload" in finding["hint"]

    # a snapshot has no key to digest with, whatever the environment holds
    settings = {"endpointMode": "loopback", "scope": echo.scope, "baseUrl": env["DOCKER_HOST"]}
    provider = load_provider("docker", settings)
    try:
        live = observe_platform(env["PLEXICA_DATABASE_URL"], provider)
    finally:
        provider.close()
    assert live.plugins["echo"].workload is not None
    snapshot = tmp_path / "live.json"
    snapshot.write_text(live.model_dump_json(), encoding="utf-8")
    code, output = run_cli(env, "plan", root, "--live-state", str(snapshot), "--format", "json")
    assert code == 0, output
    (finding,) = [w for w in json.loads(output)["warnings"] if w["code"] == "PGP206"]
    assert "--live-state" in finding["message"]


def test_apply_replace_replaces_every_replica_serving_throughout(
    echo: EchoPlatform,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    root = echo.install(environment, "1.0.0")
    before = {c.id for c in containers_of(docker_client, echo.scope, "echo")}

    traffic = TrafficLoop(dsn)
    traffic.start()
    time.sleep(0.3)
    code, output = run_cli(
        environment, "apply", root, "--replace", "plugin.echo.workload", "--auto-approve"
    )
    time.sleep(0.3)
    traffic.stop.set()
    traffic.join()
    assert code == 0, output
    assert "plugin.echo.workload" in output and "replacement requested with --replace" in output
    after = containers_of(docker_client, echo.scope, "echo")
    assert len(after) == 2 and not before & {c.id for c in after}  # both replicas new
    assert all(c.status == "running" for c in after)
    assert traffic.requests > 20 and traffic.failures == []  # a ready endpoint throughout
    with psycopg.connect(dsn) as conn:
        registered = {r[0] for r in conn.execute("SELECT instance FROM plexica.route_endpoints")}
    assert registered == {c.name for c in after}
    assert run_cli(environment, "plan", root, "--detailed-exitcode")[0] == 0  # and no drift

    # Terraform's spelling works too; addresses that are not workloads are usage errors
    code, output = run_cli(
        environment, "apply", root, "-replace", "plugin.echo.workload", "--auto-approve"
    )
    assert code == 0, output
    for wrong in ("plugin.echo", "tenant.acme", "plugin.nope.workload", "plugin.echo.routes"):
        code, output = run_cli(environment, "apply", root, "--replace", wrong, "--auto-approve")
        assert code == 2 and wrong in output, (wrong, output)
    saved = tmp_path / "release.plan"
    assert run_cli(environment, "plan", root, "--out", str(saved))[0] == 0
    code, output = run_cli(
        environment, "apply", str(saved), "--desired-state", root, "--replace",
        "plugin.echo.workload", "--auto-approve",
    )  # fmt: skip
    assert code == 2 and "saved plan" in output


def test_apply_with_nothing_to_do_says_so_once(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    root = echo.install(environment, "1.0.0")
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0 and output.count("No changes") == 1, output
    code, output = run_cli(environment, "apply", root, "--auto-approve", "--log-format", "json")
    assert code == 0
    events = [json.loads(line) for line in output.splitlines()]  # JSON lines only
    assert [e["result"] for e in events if e["event"] == "apply.finished"] == ["no-changes"]
