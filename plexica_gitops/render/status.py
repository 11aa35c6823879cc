"""`plexica-gitops status`: the live platform as plain columns (text) or as JSON.

Text is plain columns padded to the widest cell, never folded to the terminal, so a pipe, a
CI log or `grep` gets whole lines whatever the width. What could not be observed says
"(not observed)" instead of a value.

The JSON document (`status --format json`, format_version "1.0"; keys in this order, two-space
indentation, ending with a newline). Every part that comes from a source other than the
store carries `observed`: when it is false, the values beside it are absent, never guessed.

==============================  ================  =============================================
key                             type              meaning
==============================  ================  =============================================
format_version                  string            version of this format; a reader accepts the
                                                  same major version ("1.x")
runtime                         object            where the workloads were read from:
runtime.provider                string | null     the runtime provider's name ("docker"); null
                                                  when none was known (no apply recorded one,
                                                  no valid DIR given)
runtime.settings_from           string | null     "store" (what the last apply recorded),
                                                  "desired-state" (DIR's platform.yaml) or null
runtime.observed                boolean           whether the workloads were read
warnings                        array of string   why something was not observed
plugins                         array of object   one per plugin in the catalog, by id:
plugins[].id                    string            plugin id
plugins[].status                string            lifecycle status, e.g. "ACTIVE"
plugins[].version               string            version in the catalog
plugins[].error                 string | null     last recorded failure (e.g. an image pull)
plugins[].workload              object            its containers as the runtime reports them:
plugins[].workload.observed     boolean           false: the runtime was not read (no other
                                                  workload key is present)
plugins[].workload.replicas     integer           replicas that exist, running or stopped
                                                  (0: none)
plugins[].workload.ready        integer           replicas answering their readiness probe
plugins[].workload.running      boolean           whether the replicas run (false when stopped
                                                  or none exist)
plugins[].workload.version      string | null     version the replicas run
plugins[].workload.image        string | null     image the replicas run
plugins[].workload.cpu          string | null     enforced CPU limit, e.g. "500m"
plugins[].workload.memory       string | null     enforced memory limit, e.g. "512Mi"
plugins[].workload.stale_endpoints  integer       registered endpoints no running replica
                                                  answers for
plugins[].endpoints             array of object   the service registry's endpoints (store):
plugins[].endpoints[].url       string            where the gateway sends traffic
plugins[].endpoints[].instance  string            the replica (container) behind it
plugins[].endpoints[].version   string            the version it serves
tenants                         array of object   one per tenant, by slug:
tenants[].slug                  string            tenant slug
tenants[].id                    string            tenant UUID
tenants[].status                string            "active", "suspended" or "deleted"
tenants[].schema                string            its PostgreSQL schema
tenants[].plugins               object            plugin id -> enabled (boolean)
tenants[].migrations            object            plugin id -> array of {version (integer),
                                                  name (string)} applied in its schema, ascending
topics                          object            the broker's topics:
topics.observed                 boolean           false: the broker was not read (no `items`)
topics.items                    array of object   by name: {name, owner (plugin id, or null when
                                                  plexica-gitops did not create it), partitions,
                                                  replication_factor, config (object)}
==============================  ================  =============================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from plexica_gitops.live.model import LivePlugin, LiveState, LiveWorkload
from plexica_gitops.observe import StatusView
from plexica_gitops.store.catalog import Endpoint

FORMAT_VERSION = "1.0"
NOT_OBSERVED = "(not observed)"


# --- JSON ---------------------------------------------------------------------------------


def status_to_json(view: StatusView) -> dict[str, Any]:
    live = view.live
    return {
        "format_version": FORMAT_VERSION,
        "runtime": {
            "provider": view.provider,
            "settings_from": view.settings_from.value if view.settings_from else None,
            "observed": live.workloads_observed,
        },
        "warnings": list(view.warnings),
        "plugins": [
            _plugin_json(pid, plugin, live.workloads_observed, view.endpoints.get(pid, ()))
            for pid, plugin in sorted(live.plugins.items())
        ],
        "tenants": [
            {
                "slug": slug,
                "id": tenant.id,
                "status": tenant.status.value,
                "schema": tenant.schema_name,
                "plugins": {pid: b.enabled for pid, b in sorted(tenant.plugins.items())},
                "migrations": {
                    pid: [{"version": m.version, "name": m.name} for m in records]
                    for pid, records in sorted(tenant.migrations.items())
                },
            }
            for slug, tenant in sorted(live.tenants.items())
        ],
        "topics": _topics_json(live),
    }


def render_status_json(view: StatusView) -> str:
    return json.dumps(status_to_json(view), indent=2, ensure_ascii=True) + "\n"


def _plugin_json(
    pid: str, plugin: LivePlugin, observed: bool, endpoints: Sequence[Endpoint]
) -> dict[str, Any]:
    return {
        "id": pid,
        "status": plugin.status.value,
        "version": plugin.version,
        "error": plugin.error,
        "workload": _workload_json(plugin.workload) if observed else {"observed": False},
        "endpoints": [
            {"url": e.endpoint, "instance": e.instance, "version": e.version} for e in endpoints
        ],
    }


def _workload_json(workload: LiveWorkload | None) -> dict[str, Any]:
    if workload is None:  # observed: the plugin has no replica at all
        return {"observed": True, "replicas": 0, "ready": 0, "running": False,
                "version": None, "image": None, "cpu": None, "memory": None,
                "stale_endpoints": 0}  # fmt: skip
    return {
        "observed": True,
        "replicas": workload.replicas,
        "ready": workload.ready_replicas,
        "running": workload.running and workload.replicas > 0,
        "version": workload.version,
        "image": workload.image,
        "cpu": workload.resources.cpu,
        "memory": workload.resources.memory,
        "stale_endpoints": workload.stale_endpoints,
    }


def _topics_json(live: LiveState) -> dict[str, Any]:
    if not live.topics_observed:
        return {"observed": False}
    return {
        "observed": True,
        "items": [
            {
                "name": name,
                "owner": topic.owner,
                "partitions": topic.partitions,
                "replication_factor": topic.replication_factor,
                "config": dict(sorted(topic.config.items())),
            }
            for name, topic in sorted(live.topics.items())
        ],
    }


# --- text ---------------------------------------------------------------------------------


def render_status_text(view: StatusView) -> str:
    live = view.live
    sections = [
        _table("Plugins", ("plugin", "status", "version", "ready", "cpu", "memory", "endpoints"),
               [_plugin_row(pid, p, view) for pid, p in sorted(live.plugins.items())]),
        _table("Tenants", ("tenant", "status", "schema", "migrations applied"),
               [_tenant_row(slug, live) for slug in sorted(live.tenants)]),
    ]  # fmt: skip
    if live.topics_observed:
        rows = [
            (name, t.owner or "(not ours)", str(t.partitions),
             ", ".join(f"{k}={v}" for k, v in sorted(t.config.items())) or "-")
            for name, t in sorted(live.topics.items())
        ]  # fmt: skip
        sections.append(_table("Topics", ("topic", "owner", "partitions", "config"), rows))
    else:
        sections.append("Topics: (not observed)\n")
    return "\n".join(sections)


def _plugin_row(pid: str, plugin: LivePlugin, view: StatusView) -> tuple[str, ...]:
    status = plugin.status.value + (f" ({plugin.error})" if plugin.error else "")
    routed = ", ".join(e.endpoint for e in view.endpoints.get(pid, ())) or "-"
    if not view.live.workloads_observed:
        return pid, status, plugin.version, NOT_OBSERVED, "", "", routed
    workload = plugin.workload
    if workload is None:
        return pid, status, plugin.version, "0/0", "-", "-", routed
    ready = f"{workload.ready_replicas}/{workload.replicas}"
    if not workload.running:
        ready += " (stopped)"
    resources = workload.resources
    return pid, status, plugin.version, ready, resources.cpu or "-", resources.memory or "-", routed


def _tenant_row(slug: str, live: LiveState) -> tuple[str, ...]:
    tenant = live.tenants[slug]
    applied = ", ".join(f"{pid} {len(r)}" for pid, r in sorted(tenant.migrations.items()))
    return slug, tenant.status.value, tenant.schema_name, applied or "-"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A titled table of plain columns: each padded to its widest cell, two spaces apart,
    no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [title]
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    if not rows:
        lines.append("(none)")
    return "\n".join(lines) + "\n"
