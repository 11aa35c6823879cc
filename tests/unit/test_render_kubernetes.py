"""`plexica-gitops render --provider kubernetes`: the manifests apply would create, offline
(no cluster), checked against Kubernetes' own schemas (kubernetes-validate, strict)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import DesiredStateCopy
from typer.testing import CliRunner

from plexica_gitops.cli import app

KUBERNETES_VERSION = "1.37.0"  # the newest schema kubernetes-validate has (cluster: 1.37.2)
DEPLOYED = ("analytics", "billing", "contacts", "crm", "inventory", "notifications")
SECRET = f"sk_test_{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The values behind the example's references, set as apply would find them: render
    must not read (or write) any of them."""
    monkeypatch.setenv("BILLING_STRIPE_API_KEY", SECRET)
    monkeypatch.setenv("PLEXICA_PLUGIN_DATABASE_URL", f"postgresql://u:{SECRET}@db/x")
    monkeypatch.setenv("PLEXICA_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def _render(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["render", *args])
    return result.exit_code, result.stdout, result.stderr


def _objects(stream: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def test_every_rendered_object_validates_strictly_and_holds_no_secret(
    desired_state_copy: DesiredStateCopy,
) -> None:
    code, out, err = _render("--provider", "kubernetes", str(desired_state_copy.root))
    assert code == 0, err
    assert SECRET not in out + err
    objects = _objects(out)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises if invalid
    by_ref = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert objects[0]["kind"] == "Namespace"
    for pid in DEPLOYED:
        assert ("Service", f"plexica-{pid}") in by_ref
        assert ("NetworkPolicy", f"plexica-{pid}") in by_ref
    assert ("Deployment", "plexica-billing-blue") in by_ref  # blue-green renders its blue one
    assert ("PodDisruptionBudget", "plexica-crm") in by_ref  # two replicas
    assert ("PodDisruptionBudget", "plexica-analytics") not in by_ref  # one
    for obj in objects[1:]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "plexica-gitops"
        assert labels["plexica.io/plugin"] in DEPLOYED
    secret = by_ref[("Secret", "plexica-billing-env")]
    assert "data" not in secret and "stringData" not in secret
    keys = secret["metadata"]["annotations"]["plexica.io/env-keys"].split(",")
    assert "STRIPE_API_KEY" in keys and "DATABASE_URL" in keys
    deployment = by_ref[("Deployment", "plexica-billing-blue")]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    stripe = next(e for e in env if e["name"] == "STRIPE_API_KEY")
    assert stripe == {
        "name": "STRIPE_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "plexica-billing-env", "key": "STRIPE_API_KEY"}},
    }
    # the example's platform.yaml names docker: the kubernetes defaults, and it says so
    assert "rendering with the kubernetes provider's defaults" in err


def test_autoscaling_egress_and_secret_refs_of_the_plugin_kind_render_valid_objects(
    desired_state_copy: DesiredStateCopy,
) -> None:
    desired_state_copy.replace(
        "plugins/analytics/plugin.yaml",
        "  replicas: 1\n  env:\n",
        "  autoscaling: {minReplicas: 2, maxReplicas: 6, targetCPUUtilizationPercentage: 70}\n"
        "  network:\n    egress:\n      - {cidr: 192.0.2.0/24, ports: [443]}\n"
        "      - {podLabels: {app: redis}, ports: [6379], protocols: [TCP, UDP]}\n"
        "  env:\n    WAREHOUSE_TOKEN: {secretRef: {name: analytics-warehouse, key: token}}\n",
    )
    code, out, err = _render("--provider", "kubernetes", str(desired_state_copy.root))
    assert code == 0, err
    objects = _objects(out)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises if invalid
    by_ref = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    hpa = by_ref[("HorizontalPodAutoscaler", "plexica-analytics")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "plexica-analytics",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert ("HorizontalPodAutoscaler", "plexica-crm") not in by_ref  # not declared there
    assert ("PodDisruptionBudget", "plexica-analytics") in by_ref  # at least two replicas
    deployment = by_ref[("Deployment", "plexica-analytics")]
    assert "replicas" not in deployment["spec"]  # the HPA's
    egress = by_ref[("NetworkPolicy", "plexica-analytics")]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [
        {"protocol": "TCP", "port": 443}
    ]} in egress  # fmt: skip
    redis = next(
        r for r in egress if r["to"] == [{"podSelector": {"matchLabels": {"app": "redis"}}}]
    )
    assert redis["ports"] == [{"protocol": "TCP", "port": 6379}, {"protocol": "UDP", "port": 6379}]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WAREHOUSE_TOKEN"] == {
        "name": "WAREHOUSE_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "analytics-warehouse", "key": "token"}},
    }
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "warn"}  # a literal of git
    keys = by_ref[("Secret", "plexica-analytics-env")]["metadata"]["annotations"]
    assert "WAREHOUSE_TOKEN" not in keys["plexica.io/env-keys"].split(",")  # not copied
    # Rendered files change when the objects do, not with every commit.
    assert not [o for o in objects if "plexica.io/revision" in o["metadata"].get("annotations", {})]


def test_out_writes_a_file_per_plugin_and_rerendering_is_byte_identical(
    desired_state_copy: DesiredStateCopy, tmp_path: Path
) -> None:
    out = tmp_path / "manifests"
    root = str(desired_state_copy.root)
    code, stdout, err = _render("--provider", "kubernetes", root, "--out", str(out))
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["namespace.yaml", *(f"plugin-{pid}.yaml" for pid in DEPLOYED)])
    assert f"wrote {(out / 'plugin-crm.yaml').as_posix()}" in stdout
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    crm = _objects(first["plugin-crm.yaml"].decode())
    assert {o["metadata"]["labels"]["plexica.io/plugin"] for o in crm} == {"crm"}
    assert SECRET.encode() not in b"".join(first.values())
    _, stream, _ = _render("--provider", "kubernetes", root)
    in_files = [o for name in sorted(first) for o in _objects(first[name].decode())]
    assert _objects(stream) == in_files  # the files hold the stream, in its order

    assert _render("--provider", "kubernetes", root, "--out", str(out))[0] == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_a_plugin_gone_from_git_loses_its_file_and_foreign_files_stay(
    desired_state_copy: DesiredStateCopy, tmp_path: Path
) -> None:
    out = tmp_path / "manifests"
    root = str(desired_state_copy.root)
    assert _render("--provider", "kubernetes", root, "--out", str(out))[0] == 0
    (out / "kustomization.yaml").write_text("resources: []\n", encoding="utf-8")
    desired_state_copy.replace("plugins/inventory/plugin.yaml", "state: installed", "state: absent")

    code, stdout, err = _render("--provider", "kubernetes", root, "--out", str(out))
    assert code == 0, err
    assert not (out / "plugin-inventory.yaml").exists()
    assert "removed" in stdout and "plugin-inventory.yaml" in stdout
    assert (out / "kustomization.yaml").read_text(encoding="utf-8") == "resources: []\n"


def test_disabled_plugins_render_with_no_replicas(desired_state_copy: DesiredStateCopy) -> None:
    desired_state_copy.replace(
        "plugins/inventory/plugin.yaml", "state: installed", "state: disabled"
    )
    code, out, err = _render("--provider", "kubernetes", str(desired_state_copy.root))
    assert code == 0, err
    deployment = next(
        o
        for o in _objects(out)
        if o["kind"] == "Deployment" and "inventory" in o["metadata"]["name"]
    )
    assert deployment["spec"]["replicas"] == 0


def test_the_settings_come_from_platform_yaml_and_namespace_overrides_them(
    desired_state_copy: DesiredStateCopy,
) -> None:
    desired_state_copy.replace(
        "platform.yaml",
        "provider: docker\n    network: plexica\n    endpointMode: loopback",
        "provider: kubernetes\n    namespace: team-a\n    scope: blue",
    )
    root = str(desired_state_copy.root)
    code, out, err = _render("--provider", "kubernetes", root)
    assert code == 0, err
    assert "defaults" not in err
    objects = _objects(out)
    assert objects[0]["metadata"]["name"] == "team-a"
    assert {o["metadata"].get("namespace") for o in objects[1:]} == {"team-a"}
    assert {o["metadata"]["labels"]["plexica.io/scope"] for o in objects[1:]} == {"blue"}

    code, out, _ = _render("--provider", "kubernetes", root, "--namespace", "team-b")
    assert code == 0
    assert {o["metadata"].get("namespace") for o in _objects(out)[1:]} == {"team-b"}

    code, _, err = _render("--provider", "kubernetes", root, "--namespace", "Team_B")
    assert code == 2
    assert "--namespace Team_B" in err and "Traceback" not in err


def test_an_invalid_desired_state_renders_nothing(
    desired_state_copy: DesiredStateCopy, tmp_path: Path
) -> None:
    desired_state_copy.replace("plugins/crm/plugin.yaml", "replicas: 2", "replicas: many")
    out = tmp_path / "manifests"
    code, stdout, err = _render(
        "--provider", "kubernetes", str(desired_state_copy.root), "--out", str(out)
    )
    assert code == 1
    assert "plugins/crm/plugin.yaml" in err  # the finding, at its file
    assert "nothing was rendered" in err
    assert stdout == ""
    assert not out.exists()


def test_docker_has_no_manifests(desired_state_copy: DesiredStateCopy) -> None:
    code, out, err = _render("--provider", "docker", str(desired_state_copy.root))
    assert code == 2
    assert "docker provider has no manifests to render" in err
    assert "--provider kubernetes" in err
    assert out == ""
    code, _, err = _render("--provider", "nomad", str(desired_state_copy.root))
    assert code == 2 and "no runtime provider of that name" in err
