"""The reconcile loop's defaults and log formats, apart from the loop (reconcile.py): the
CLI shows them in every `--help` and needs them to declare its `reconcile` command, and
importing the loop costs the store's driver and the metrics library on every run."""

from __future__ import annotations

from enum import StrEnum

DEFAULT_INTERVAL = 60.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_METRICS_ADDRESS = "0.0.0.0:8080"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
