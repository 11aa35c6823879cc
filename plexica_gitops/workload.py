"""From a desired plugin to the `WorkloadSpec` a runtime provider runs, at apply time.

This is the one place where env references are resolved to values: `fromEnv` from the
environment of the apply process, `secretRef` from files in `$PLEXICA_SECRETS_DIR`
(`<dir>/<name>/<key>`, the layout of mounted Docker/Kubernetes secrets). The values go into
the spec handed to the provider and nowhere else; errors name the variable or file, never
a value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plexica_gitops.desired import DesiredState, PluginEntry
from plexica_gitops.model import RolloutStrategy
from plexica_gitops.planner import desired_plugin, env_hash
from plexica_gitops.provider import RolloutSettings, WorkloadSpec

SECRETS_DIR_ENV = "PLEXICA_SECRETS_DIR"


class EnvResolutionError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


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


def workload_spec(
    entry: PluginEntry,
    desired: DesiredState,
    *,
    running: bool,
    environ: Mapping[str, str] | None = None,
) -> WorkloadSpec:
    """What the provider should run for this plugin, env resolved."""
    plugin = desired_plugin(entry, desired)
    want = plugin.workload
    api = entry.manifest.api
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
        env=resolve_env(entry.id, want["env"], os.environ if environ is None else environ),
        strategy=RolloutStrategy(want["strategy"]),
        rollout=rollout_settings(entry, desired),
        running=running,
    )
