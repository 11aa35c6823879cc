"""A plugin's catalog row: git's version and manifest recorded after a change in git, or
restored when the row was edited outside plexica-gitops (drift)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plexica_gitops.desired.view import DesiredPlugin
from plexica_gitops.live.model import LivePlugin
from plexica_gitops.plan.model import Action, ActionKind, Cause

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder


def plan_catalog_update(
    b: PlanBuilder,
    pid: str,
    desired: DesiredPlugin,
    live: LivePlugin,
    updates: list[str],
    verbs: set[str],
) -> None:
    """Record git's version and manifest in the catalog row: after a change in git, or
    when the row was edited outside plexica-gitops (its version, name, manifest or
    manifest hash no longer what git says, with git unchanged)."""
    if "register" in verbs:
        return
    drifted = _catalog_drift(desired, live)
    if not drifted:
        return
    content_same = live.stored_manifest_hash == desired.stored_manifest_hash
    git_changed = live.manifest_hash != desired.manifest_hash and not content_same
    before = {"version": live.version, "manifest_hash": live.manifest_hash}
    after = {"version": desired.version, "manifest_hash": desired.manifest_hash}
    if "name" in drifted:
        before["name"], after["name"] = live.name or "", desired.name
    cause = Cause.GIT_CHANGE if git_changed else Cause.DRIFT
    if git_changed:
        reason = (
            f"version {live.version} → {desired.version}"
            if live.version != desired.version
            else "manifest changed in git"
        )
    else:
        reason = (
            f"drift: the catalog's {', '.join(drifted)} changed outside plexica-gitops: "
            "restore what git says"
        )
    b.add(
        Action(
            f"plugin.{pid}",
            "update",
            ActionKind.UPDATE,
            reason,
            before=before,
            after=after,
            plugin=pid,
            fingerprint=desired.manifest_hash,
            cause=cause,
        ),
        after=[*updates, *(f"plugin.{d}:update" for d in desired.dependencies)],
    )


def _catalog_drift(desired: DesiredPlugin, live: LivePlugin) -> list[str]:
    """The catalog columns apply writes that differ from git (a column not observed, as in
    an older snapshot, is not compared)."""
    drifted = []
    if live.version != desired.version:
        drifted.append("version")
    if live.name is not None and live.name != desired.name:
        drifted.append("name")
    stored = live.stored_manifest_hash
    if stored is not None and stored != desired.stored_manifest_hash:
        drifted.append("manifest")
    if live.manifest_hash != desired.manifest_hash:
        drifted.append("manifest_hash")
    return drifted
