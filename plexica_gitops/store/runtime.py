"""The runtime provider an apply used (platform.yaml's `spec.runtime`: its name and settings,
which live in git and hold no secret), so that `status` can observe the workloads from
anywhere, without the desired-state checkout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class RecordedRuntime:
    provider: str
    settings: dict[str, Any]
    recorded_at: datetime


def record_runtime(
    conn: psycopg.Connection[Any], provider: str, settings: Mapping[str, Any]
) -> None:
    """Remember the provider and settings an apply is about to use (replacing the last)."""
    conn.execute(
        """
        INSERT INTO plexica_gitops.runtime (provider, settings) VALUES (%s, %s)
        ON CONFLICT (singleton) DO UPDATE
        SET provider = EXCLUDED.provider, settings = EXCLUDED.settings, recorded_at = now()
        """,
        (provider, Jsonb(dict(settings))),
    )


def recorded_runtime(conn: psycopg.Connection[Any]) -> RecordedRuntime | None:
    """What the last apply recorded; None before the first apply (or in a store older than
    version 3, which has no such record)."""
    row = conn.execute("SELECT to_regclass('plexica_gitops.runtime') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute(
        "SELECT provider, settings, recorded_at FROM plexica_gitops.runtime"
    ).fetchone()
    if found is None:
        return None
    provider, settings, recorded_at = found
    return RecordedRuntime(str(provider), dict(settings), recorded_at)
