"""The per-plugin inventory: which objects the provider created, and what it last applied.

It is a ConfigMap `plexica-<id>-inventory` in the plugins' namespace (labelled as ours),
holding one JSON document (`inventory.json`):

    objects     [{kind, name, uid}]  every object created for the plugin (uid once known):
                uninstall deletes exactly these, and only while they still carry our labels
    applied     {"Kind/name": ...}   the API's answer to our last apply, reduced to the
                fields we set: observe compares live objects with it (drift), without
                needing the desired state
    deployment  the Deployment manifest last applied (the template a rollback re-applies)
    previous    the one applied before it
    active      the Deployment the Service sends traffic to (blue-green)

An object is recorded before it is created (uid empty), so a crash between the two leaves
nothing the next uninstall would miss. Env values are never in it: the Deployment refers
to Secrets by name, and Secret data is not projected. (The issue wants the inventory in the
store; this ConfigMap keeps it in the cluster until the core has an inventory table.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from plexica_gitops.runtime.provider import ProviderError
from plexica_gitops_kubernetes.objects import (
    LABEL_NAME,
    LABEL_ROLE,
    inventory_name,
    owner_labels,
)
from plexica_gitops_kubernetes.settings import KubernetesSettings

KEY = "inventory.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    name: str
    uid: str = ""

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(slots=True)
class Inventory:
    plugin_id: str
    objects: dict[str, Entry] = field(default_factory=dict)  # by ref
    applied: dict[str, Any] = field(default_factory=dict)  # ref -> projection
    deployment: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    active: str | None = None
    stored: bool = False  # read from the cluster (False: no ConfigMap yet)

    def record(self, kind: str, name: str, uid: str = "") -> bool:
        """Note an object; whether the inventory changed."""
        entry = Entry(kind, name, uid)
        old = self.objects.get(entry.ref)
        if old is not None and (old.uid == uid or not uid):
            return False
        self.objects[entry.ref] = entry
        return True

    def forget(self, ref: str) -> None:
        self.objects.pop(ref, None)
        self.applied.pop(ref, None)

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "objects": [
                {"kind": e.kind, "name": e.name, "uid": e.uid}
                for e in sorted(self.objects.values(), key=lambda e: e.ref)
            ],
            "applied": self.applied,
            "deployment": self.deployment,
            "previous": self.previous,
            "active": self.active,
        }

    def config_map(self, settings: KubernetesSettings) -> dict[str, Any]:
        labels = {**owner_labels(self.plugin_id, settings), LABEL_NAME: self.plugin_id}
        labels[LABEL_ROLE] = "inventory"
        text = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": inventory_name(self.plugin_id),
                "namespace": settings.namespace,
                "labels": labels,
            },
            "data": {KEY: text},
        }

    @classmethod
    def from_config_map(cls, plugin_id: str, config_map: dict[str, Any] | None) -> Inventory:
        if config_map is None:
            return cls(plugin_id)
        text = (config_map.get("data") or {}).get(KEY, "")
        try:
            document = json.loads(text) if text else {}
        except ValueError as error:
            raise ProviderError(
                f"the inventory of plugin {plugin_id!r} (ConfigMap "
                f"{inventory_name(plugin_id)}) is not JSON: {error}",
                "it was edited by hand: restore it, or delete it and the plugin's objects "
                "(plexica-gitops then installs the plugin again)",
            ) from None
        objects = {}
        for item in document.get("objects") or []:
            entry = Entry(str(item["kind"]), str(item["name"]), str(item.get("uid") or ""))
            objects[entry.ref] = entry
        return cls(
            plugin_id,
            objects=objects,
            applied=dict(document.get("applied") or {}),
            deployment=document.get("deployment"),
            previous=document.get("previous"),
            active=document.get("active"),
            stored=True,
        )
