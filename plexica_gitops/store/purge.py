"""purgeDataOnUninstall in the store: a plugin's tables and migration history, dropped in
every tenant schema. Tables are found by the `<plugin>_` prefix that plugin migrations
follow (README §The store); identifiers are composed with `psycopg.sql.Identifier`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Purged:
    tables: int  # dropped, over all tenant schemas
    tenants: int  # schemas looked into


def purge_plugin_data(conn: Connection, plugin_id: str) -> Purged:
    """Drop the plugin's tables and its migration history, one tenant per transaction (a
    crash leaves whole tenants purged, and the next purge finishes the rest). A table
    under a longer prefix that is another plugin's (`crm_extra_*` of plugin `crm-extra`)
    is left alone."""
    prefix = table_prefix(plugin_id)
    others = [
        table_prefix(row[0])
        for row in conn.execute("SELECT id FROM plexica.plugins WHERE id <> %s", (plugin_id,))
    ]
    foreign = [p for p in others if p.startswith(prefix) and len(p) > len(prefix)]
    tenants = conn.execute("SELECT id, schema_name FROM plexica.tenants").fetchall()
    dropped = 0
    for tenant_id, schema in tenants:
        with conn.transaction():
            tables = [
                table
                for (table,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s"
                    " AND starts_with(tablename, %s)",
                    (schema, prefix),
                ).fetchall()
                if not any(table.startswith(p) for p in foreign)
            ]
            for table in tables:
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                )
            dropped += len(tables)
            conn.execute(
                "DELETE FROM plexica.tenant_migrations WHERE tenant_id = %s AND plugin_id = %s",
                (tenant_id, plugin_id),
            )
    return Purged(dropped, len(tenants))


def table_prefix(plugin_id: str) -> str:
    """The prefix of a plugin's tables in a tenant schema: `crm-extra` → `crm_extra_`."""
    return plugin_id.replace("-", "_") + "_"
