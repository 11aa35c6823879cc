"""From a desired plugin to the `WorkloadSpec` a runtime provider runs, at apply time.

This is the one place where env references are resolved to values: `fromEnv` from the
environment of the apply process, `secretRef` from files in `$PLEXICA_SECRETS_DIR`
(`<dir>/<name>/<key>`, the layout of mounted Docker/Kubernetes secrets). The values go into
the spec handed to the provider and nowhere else; errors name the variable or file, never
a value.

A changed value behind a reference is seen by its keyed digest: HMAC-SHA256 of the resolved
values under the installation's key (`plexica_gitops.env_digest_key`, made by `init`,
readable only by the store's owner), labelled on the replicas. Without the key nobody can
test a guess against a label. `secret_rotations` compares, at plan time, the digest of what
the references resolve to now with the replicas' one, when it can (the planner stays pure:
it is handed the result)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plexica_gitops.desired.build import DesiredState, PluginEntry
from plexica_gitops.desired.model import EgressRule, RolloutStrategy
from plexica_gitops.desired.view import desired_plugin, env_hash, policy_hash
from plexica_gitops.errors import EnvResolutionError as EnvResolutionError
from plexica_gitops.findings import Finding, warning
from plexica_gitops.lifecycle import DEPLOYED, TARGET_STATUS
from plexica_gitops.live.model import LiveState
from plexica_gitops.runtime.provider import (
    Autoscaling,
    EgressPeer,
    EnvRef,
    FromEnvRef,
    RolloutSettings,
    SecretKeyRef,
    WorkloadSpec,
)

SECRET_VALUE_CHANGED = "secret value changed"
NOT_COMPARED = "PGP206"

SECRETS_DIR_ENV = "PLEXICA_SECRETS_DIR"


def rollout_settings(entry: PluginEntry, desired: DesiredState) -> RolloutSettings:
    """The platform's rollout defaults with the plugin's overrides applied."""
    base = desired.platform.document.spec.rollout.model_dump() if desired.platform else {}
    overrides = entry.document.spec.rollout.model_dump(exclude_none=True)
    merged = {**base, **overrides}
    merged.pop("strategy", None)
    return RolloutSettings(**merged)


def resolve_env(
    plugin_id: str, env: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """Literal values as they are; references resolved. Raises EnvResolutionError naming
    every reference that cannot be resolved (and no value)."""
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for name, value in sorted(env.items()):
        if isinstance(value, str):
            resolved[name] = value
        elif "fromEnv" in value:
            variable = value["fromEnv"]
            if variable not in environ:
                missing.append(f"{name} (from environment variable {variable})")
                continue
            resolved[name] = environ[variable]
        else:
            secret = value["secretRef"]
            path = Path(environ.get(SECRETS_DIR_ENV, "/run/secrets")) / secret["name"]
            try:
                resolved[name] = (path / secret["key"]).read_text(encoding="utf-8").rstrip("\n")
            except OSError:
                missing.append(f"{name} (from secret file {path / secret['key']})")
    if missing:
        raise EnvResolutionError(
            f"plugin {plugin_id!r}: cannot resolve env {', '.join(missing)}",
            "export the variables in the environment of `plexica-gitops apply` (or provide "
            f"the secret files under ${SECRETS_DIR_ENV}); values never go in YAML",
        )
    return resolved


def env_digest(key: bytes, values: Mapping[str, str]) -> str:
    """The keyed digest of resolved env values (never the values, never an unkeyed hash)."""
    body = json.dumps(dict(values), sort_keys=True, separators=(",", ":")).encode()
    return "hmac-sha256:" + hmac.new(key, body, hashlib.sha256).hexdigest()


def secret_rotations(
    desired: DesiredState,
    live: LiveState,
    key: bytes | None,
    environ: Mapping[str, str],
    *,
    no_key: str = "the digest key was not read",
) -> tuple[dict[str, str], list[Finding]]:
    """Which running workloads must be replaced because a value behind one of their env
    references changed (plugin id -> SECRET_VALUE_CHANGED), and a PGP206 warning for each
    workload whose values could not be compared: without `key` (why: `no_key`), with a
    reference that does not resolve here (a pull-request plan has no secrets), or with
    replicas that carry no digest."""
    changed: dict[str, str] = {}
    findings: list[Finding] = []
    for pid, entry in sorted(desired.plugins.items()):
        plugin = live.plugins.get(pid)
        workload = plugin.workload if plugin else None
        env = desired_plugin(entry, desired).workload["env"]
        if workload is None or TARGET_STATUS[entry.document.spec.state] not in DEPLOYED:
            continue  # created from the values of the day, or going away
        if all(isinstance(value, str) for value in env.values()):
            continue  # literals only: the env hash covers them
        why, digest = _digest_now(pid, env, key, environ, no_key)
        if not why and not workload.env_digest:
            why = "its replicas carry no digest of their env values (made before digests)"
        if why:
            findings.append(_not_compared(entry, why))
        elif workload.env_digest != digest:
            changed[pid] = SECRET_VALUE_CHANGED
    return changed, findings


def _digest_now(
    pid: str, env: Mapping[str, Any], key: bytes | None, environ: Mapping[str, str], no_key: str
) -> tuple[str, str]:
    """(why the values cannot be digested here, or "", the digest)."""
    if key is None:
        return no_key, ""
    try:
        return "", env_digest(key, resolve_env(pid, env, environ))
    except EnvResolutionError as error:
        return error.message.split(": ", 1)[-1], ""  # names the references, never a value


def _not_compared(entry: PluginEntry, why: str) -> Finding:
    return warning(
        NOT_COMPARED,
        f"plugin {entry.id!r}: the values behind its env references were not compared "
        f"({why}); a changed secret would not show in this plan",
        "plan where the references resolve (the environment of apply, $PLEXICA_SECRETS_DIR) "
        f"with the store reachable, or roll the values out: apply --replace "
        f"plugin.{entry.id}.workload",
        entry.location("spec", "env") if entry.document.spec.env else entry.location(),
        (entry.id,),
    )


def workload_spec(
    entry: PluginEntry,
    desired: DesiredState,
    *,
    running: bool,
    environ: Mapping[str, str] | None = None,
    digest_key: bytes | None = None,
    replace_id: str = "",
    resolve: bool = True,
) -> WorkloadSpec:
    """What the provider should run for this plugin, env resolved; with `digest_key`,
    labelled with the keyed digest of the values; with `replace_id`, a replacement. With
    `resolve=False`, every reference's value is "" (nothing read; literals are git's): for
    rendering manifests."""
    plugin = desired_plugin(entry, desired)
    want = plugin.workload
    api = entry.manifest.api
    values = (
        resolve_env(entry.id, want["env"], os.environ if environ is None else environ)
        if resolve
        else {name: value if isinstance(value, str) else "" for name, value in want["env"].items()}
    )
    return WorkloadSpec(
        plugin_id=entry.id,
        version=want["version"],
        image=want["image"],
        manifest_hash=plugin.manifest_hash,
        replicas=want["replicas"],
        cpu=want["cpu"],
        memory=want["memory"],
        port=api.port,
        readiness_path=api.readiness,
        liveness_path=api.liveness,
        env_hash=env_hash(want["env"]),
        env=values,
        strategy=RolloutStrategy(want["strategy"]),
        rollout=rollout_settings(entry, desired),
        running=running,
        env_digest=env_digest(digest_key, values) if digest_key else "",
        replace_id=replace_id,
        revision=desired.revision,
        env_refs=env_references(want["env"]),
        autoscaling=_autoscaling(entry),
        egress=tuple(_egress_peer(rule) for rule in entry.document.spec.network.egress),
        policy_hash=policy_hash(want.get("policy")),
    )


def env_references(env: Mapping[str, Any]) -> dict[str, EnvRef]:
    """The references among the env entries (as `desired_plugin` writes them), by name."""
    refs: dict[str, EnvRef] = {}
    for name, value in env.items():
        if isinstance(value, str):
            continue
        if "fromEnv" in value:
            refs[name] = FromEnvRef(value["fromEnv"])
        else:
            refs[name] = SecretKeyRef(value["secretRef"]["name"], value["secretRef"]["key"])
    return refs


def _autoscaling(entry: PluginEntry) -> Autoscaling | None:
    declared = entry.document.spec.autoscaling
    if declared is None:
        return None
    return Autoscaling(
        declared.min_replicas, declared.max_replicas, declared.target_cpu_utilization_percentage
    )


def _egress_peer(rule: EgressRule) -> EgressPeer:
    return EgressPeer(
        pod_labels=rule.pod_labels,
        namespace_labels=rule.namespace_labels,
        cidr=rule.cidr,
        ports=tuple(rule.ports),
        protocols=tuple(protocol.value for protocol in rule.protocols),
    )
