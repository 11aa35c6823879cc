"""Prometheus metrics of `reconcile` (served on /metrics by `MetricsServer`) and of
`drift --metrics-file` (a file for node-exporter's textfile collector). Names and labels
follow Flux and Argo CD.

The interface the commands call, with plain values defined here (no plan internals):

- `drift`: `m = Metrics(); m.record_drift(DriftSummary(...)); m.write_textfile(path)`.
- `reconcile`: `m = ReconcileMetrics()`, served by `MetricsServer(m, ...)`; after each
  reconcile `m.record_reconcile(ReconcileRun(...))`, then `server.mark_ready()` once.

What the last drift check saw (both):

- `plexica_observed{part}`: 1 or 0 for runtime, broker, store
- `plexica_drift_resources{kind}`: resources changed out of band (live vs last applied)
- `plexica_pending_resources{kind}`: changed in git, not applied yet
- `plexica_resource_info{kind,name,tenant,ready,revision}`: 1 per resource, `ready` True,
  False or Unknown (Flux's `gotk_resource_info`)
- `plexica_tenant_resources{kind,ready}`, `plexica_resource_info_dropped` (see below)
- `plexica_drift_check_timestamp_seconds`: when that check was made

The loop adds (`ReconcileMetrics`):

- `plexica_reconcile_duration_seconds` (histogram)
- `plexica_reconcile_total{result}`: success, failure, skipped (another replica held the
  apply lock: this one applied nothing)
- `plexica_sync_total{phase}`: Succeeded, Failed, Error, Terminated (Argo CD's
  `argocd_app_sync_total`)
- `plexica_last_reconcile_timestamp_seconds`

A sync is one apply: Succeeded (every step), Failed (a step failed or rolled back), Error
(it could not start: store, lock, stale plan), Terminated (stopped by SIGTERM once the steps
in flight finished).

Never "in sync" for what was not seen: a kind's drift count is 0 only when the part that
holds it was observed (workloads: runtime, topics: broker, the rest: store; pending needs
the store only, where last-applied lives), otherwise the series is absent; the whole family
is absent when the check could not tell at all (None).

Cardinality is bounded. Resources of the platform (plugins, their workloads, permissions,
routes, topics: `tenant=""`) get one `plexica_resource_info` series each. Resources of a
tenant (its record, bindings, migrations) are only counted, per kind and readiness, in
`plexica_tenant_resources` — 10,000 tenants with 100 bindings each would otherwise be a
million series — unless `per_tenant=True` asks for their series too. Either way at most
`max_resource_series` (10,000) `plexica_resource_info` series are exposed, platform ones
first, then by kind, tenant and name; `plexica_resource_info_dropped` counts the rest.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plexica_gitops.errors import PlexicaError

PARTS = ("runtime", "broker", "store")
# The kinds of the plan's addresses (plugin.crm.workload is a workload), and the part of
# the platform observe reads each from.
KIND_PART = {
    "plugin": "store", "workload": "runtime", "permissions": "store", "routes": "store",
    "data": "store", "topic": "broker", "tenant": "store", "binding": "store",
    "migrations": "store",
}  # fmt: skip
RESOURCE_KINDS = tuple(KIND_PART)
DEFAULT_MAX_RESOURCE_SERIES = 10_000
DEFAULT_PORT = 8080
# From a no-op reconcile (tenths of a second) to a long rollout (half an hour).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class MetricsError(PlexicaError):
    """The metrics could not be served or written."""


class ReconcileResult(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"


class SyncPhase(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"
    TERMINATED = "Terminated"


@dataclass(frozen=True)
class Resource:
    """One resource as the check saw it; `ready` None is Unknown, `tenant` empty for the
    platform's own resources, `revision` the one it was last applied from
    (`main@sha1:<40 hex>`)."""

    kind: str
    name: str
    tenant: str = ""
    ready: bool | None = None
    revision: str = ""

    @property
    def ready_label(self) -> str:
        return "Unknown" if self.ready is None else str(self.ready)


@dataclass(frozen=True)
class DriftSummary:
    """What one drift check saw. `observed` maps each part (runtime, broker, store) to
    whether it was seen (a part left out was not); `drift` and `pending` count resources per
    kind (a kind left out is 0 when its part was observed), None when the check could not
    tell; `resources` None when they were not observed; `checked_at` Unix time, None for
    now."""

    observed: Mapping[str, bool]
    drift: Mapping[str, int] | None = None
    pending: Mapping[str, int] | None = None
    resources: Iterable[Resource] | None = None
    checked_at: float | None = None


@dataclass(frozen=True)
class ReconcileRun:
    """One finished reconcile: its result, how long it took, the apply it ran (`sync`, None
    when it applied nothing) and its drift check (`drift` None when it failed before one:
    the last check's series stay, with their timestamp)."""

    result: ReconcileResult
    duration_seconds: float
    drift: DriftSummary | None = None
    sync: SyncPhase | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class _Snapshot:
    """What the last check said, swapped in whole so a scrape never sees half of it."""

    observed: Mapping[str, bool] = field(default_factory=dict)
    drift: Mapping[str, int] | None = None
    pending: Mapping[str, int] | None = None
    resources: tuple[Resource, ...] = ()
    tenant_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    dropped: int = 0
    checked_at: float | None = None


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = _Snapshot()

    def collect(self) -> Iterator[Metric]:
        state = self.snapshot
        seen = {part for part, yes in state.observed.items() if yes}
        observed = GaugeMetricFamily(
            "plexica_observed",
            "1 when the last drift check observed this part of the platform, else 0.",
            labels=["part"],
        )
        for part in sorted({*PARTS, *state.observed}):
            observed.add_metric([part], 1.0 if part in seen else 0.0)
        yield observed
        drift_known = {k for k, part in KIND_PART.items() if part in seen}
        pending_known = set(KIND_PART) if "store" in seen else set()
        yield _per_kind(
            "plexica_drift_resources", "Resources changed out of band.", state.drift, drift_known
        )
        yield _per_kind(
            "plexica_pending_resources",
            "Resources changed in git, not applied yet.",
            state.pending,
            pending_known,
        )
        yield _resource_info(state.resources)
        tenants = GaugeMetricFamily(
            "plexica_tenant_resources",
            "Resources of tenants (records, bindings, migrations) by kind and readiness.",
            labels=["kind", "ready"],
        )
        for (kind, ready), count in sorted(state.tenant_counts.items()):
            tenants.add_metric([kind, ready], float(count))
        yield tenants
        yield GaugeMetricFamily(
            "plexica_resource_info_dropped",
            "Resources left out of plexica_resource_info by its series bound.",
            value=float(state.dropped),
        )
        if state.checked_at is not None:
            yield GaugeMetricFamily(
                "plexica_drift_check_timestamp_seconds",
                "When the last drift check was made (Unix time).",
                value=state.checked_at,
            )


def _per_kind(
    name: str, documentation: str, counts: Mapping[str, int] | None, known: set[str]
) -> Metric:
    """One series per kind counted or known to be 0; none when nothing could be told."""
    family = GaugeMetricFamily(name, documentation, labels=["kind"])
    if counts is None:
        return family
    for kind in sorted({*known, *counts}):
        family.add_metric([kind], float(counts.get(kind, 0)))
    return family


def _resource_info(resources: Iterable[Resource]) -> Metric:
    family = GaugeMetricFamily(
        "plexica_resource_info",
        "1 for each resource the last drift check saw, with its readiness and revision.",
        labels=["kind", "name", "tenant", "ready", "revision"],
    )
    for r in resources:
        family.add_metric([r.kind, r.name, r.tenant, r.ready_label, r.revision], 1.0)
    return family


class Metrics:
    """`drift`'s metrics (what the last check saw) over a private registry: nothing global,
    so two instances never clash."""

    def __init__(
        self, *, per_tenant: bool = False, max_resource_series: int = DEFAULT_MAX_RESOURCE_SERIES
    ) -> None:
        self.per_tenant = per_tenant
        self.max_resource_series = max_resource_series
        self.registry = CollectorRegistry()
        self._state = _StateCollector()
        self.registry.register(self._state)

    def record_drift(self, summary: DriftSummary) -> None:
        """Replaces what the last check saw by `summary`."""
        shown, counts, dropped = self._bounded(summary.resources or ())
        self._state.snapshot = _Snapshot(
            observed=dict(summary.observed),
            drift=_copy(summary.drift),
            pending=_copy(summary.pending),
            resources=shown,
            tenant_counts=counts,
            dropped=dropped,
            checked_at=time.time() if summary.checked_at is None else summary.checked_at,
        )

    def _bounded(
        self, resources: Iterable[Resource]
    ) -> tuple[tuple[Resource, ...], dict[tuple[str, str], int], int]:
        """The resource_info series within the bound, the tenants' counts, how many were
        left out."""
        counts: Tally[tuple[str, str]] = Tally()
        series: list[Resource] = []
        for resource in resources:
            if resource.tenant:
                counts[(resource.kind, resource.ready_label)] += 1
                if not self.per_tenant:
                    continue
            series.append(resource)
        series.sort(key=lambda r: (r.tenant != "", r.kind, r.tenant, r.name))
        kept = series[: self.max_resource_series]
        return tuple(kept), dict(counts), len(series) - len(kept)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and content type for a scrape that sent this Accept header."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def write_textfile(self, path: Path) -> None:
        """Writes the text format for node-exporter's textfile collector, atomically: a
        temporary file in the same directory renamed over `path`, so the collector never
        reads half a file."""
        if path.suffix != ".prom":
            raise MetricsError(
                f"the metrics file {path} does not end in .prom",
                "node-exporter's textfile collector reads only *.prom files: name it e.g. "
                "plexica.prom.",
            )
        try:
            write_to_textfile(str(path), self.registry)
        except OSError as exc:
            raise MetricsError(
                f"cannot write the metrics file {path}: {exc.strerror}",
                "Point --metrics-file into an existing, writable directory (the "
                "collector's --collector.textfile.directory).",
            ) from None


class ReconcileMetrics(Metrics):
    """The loop's metrics: the last drift check's, and its reconciles and syncs."""

    def __init__(
        self, *, per_tenant: bool = False, max_resource_series: int = DEFAULT_MAX_RESOURCE_SERIES
    ) -> None:
        super().__init__(per_tenant=per_tenant, max_resource_series=max_resource_series)
        self._duration = Histogram(
            "plexica_reconcile_duration_seconds",
            "How long a reconcile (fetch, observe, plan, and apply if any) took.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._reconciles = Counter(
            "plexica_reconcile_total", "Reconciles by result.", ["result"], registry=self.registry
        )
        self._syncs = Counter(
            "plexica_sync_total", "Applies by phase.", ["phase"], registry=self.registry
        )
        self._last = Gauge(
            "plexica_last_reconcile_timestamp_seconds",
            "When the last reconcile finished (Unix time), whatever its result.",
            registry=self.registry,
        )
        for result in ReconcileResult:  # 0 from the start, so rate() sees the first one
            self._reconciles.labels(result.value)
        for phase in SyncPhase:
            self._syncs.labels(phase.value)

    def record_reconcile(self, run: ReconcileRun) -> None:
        """Records one finished reconcile (and its drift check, when it made one)."""
        finished_at = time.time() if run.finished_at is None else run.finished_at
        if run.drift is not None:
            checked_at = run.drift.checked_at
            at = finished_at if checked_at is None else checked_at
            self.record_drift(replace(run.drift, checked_at=at))
        self._duration.observe(run.duration_seconds)
        self._reconciles.labels(run.result.value).inc()
        if run.sync is not None:
            self._syncs.labels(run.sync.value).inc()
        self._last.set(finished_at)


def _copy(counts: Mapping[str, int] | None) -> dict[str, int] | None:
    return None if counts is None else dict(counts)


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT`, `HOST` or `[IPv6]:PORT` as (host, port); an empty host is
    0.0.0.0 (every interface, what a container needs)."""
    host, port_text = text, str(default_port)
    if text.startswith("["):  # [IPv6] or [IPv6]:PORT
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else port_text
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    host = host or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MetricsError(
            f"the metrics address {text!r} has no valid port", "Give HOST:PORT, e.g. 0.0.0.0:8080."
        )
    return host, int(port_text)


class MetricsServer:
    """/metrics, /healthz (200 while `alive()`: the loop thread runs) and /readyz (200 once
    `mark_ready()` was called: the first reconcile finished; 503 before) on host:port, each
    request in its own thread. Port 0 picks a free port (see `address`)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.metrics = metrics
        self.alive = alive
        self._ready = threading.Event()
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            return self._host, self._port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def mark_ready(self) -> None:
        self._ready.set()

    def start(self) -> None:
        try:
            server = _server_class(self._host)((self._host, self._port), _handler(self))
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            raise MetricsError(
                f"cannot serve metrics on {self._host}:{self._port}: {exc.strerror}",
                "Another process listens there: pick another port."
                if busy
                else "Give an address of this host (0.0.0.0 for every interface).",
            ) from None
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="plexica-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return ThreadingHTTPServer

    class IPv6Server(ThreadingHTTPServer):  # the stdlib server binds IPv4 only
        address_family = socket.AF_INET6

    return IPv6Server


def _handler(owner: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = owner.metrics.exposition(self.headers.get("Accept", ""))
                self._send(200, body, content_type)
            elif path == "/healthz":
                alive = owner.alive()
                self._send(200 if alive else 503, b"ok\n" if alive else b"loop stopped\n")
            elif path == "/readyz":
                ready = owner.ready
                self._send(
                    200 if ready else 503,
                    b"ready\n" if ready else b"not ready: the first reconcile has not finished\n",
                )
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # a scrape every few seconds is not worth a log line

    return Handler
