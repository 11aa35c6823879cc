"""The reconcile loop's metrics: scraped over real HTTP and parsed with prometheus_client's
own parser (what Prometheus reads), the health endpoints, node-exporter's textfile, and the
bound on label cardinality."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from plexica_gitops.gitops.metrics import (
    DriftSummary,
    Metrics,
    MetricsError,
    MetricsServer,
    ReconcileMetrics,
    ReconcileResult,
    ReconcileRun,
    Resource,
    SyncPhase,
    parse_address,
)

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"
RESOURCES = [
    Resource("plugin", "crm", ready=True, revision=REVISION),
    Resource("workload", "crm", ready=False, revision=REVISION),
    Resource("topic", "crm.deal.won", revision=REVISION),
    Resource("binding", "crm", tenant="acme", ready=True, revision=REVISION),
    Resource("binding", "crm", tenant="globex", ready=True, revision=REVISION),
    Resource("tenant", "acme", tenant="acme", ready=True, revision=REVISION),
]


def _summary(**overrides: object) -> DriftSummary:
    values: dict[str, object] = {
        "observed": {"runtime": True, "broker": False, "store": True},
        "drift": {"workload": 2},
        "pending": {"binding": 3},
        "resources": RESOURCES,
    }
    values.update(overrides)
    return DriftSummary(**values)  # type: ignore[arg-type]


def _update(metrics: ReconcileMetrics, check: DriftSummary | None, **overrides: object) -> None:
    """One reconcile whose drift check saw `check` (None: it made none)."""
    run: dict[str, object] = {
        "result": ReconcileResult.SUCCESS,
        "duration_seconds": 1.7,
        "sync": SyncPhase.SUCCEEDED,
        "finished_at": 1_800_000_000.0,
    }
    run.update(overrides)
    metrics.record_reconcile(ReconcileRun(drift=check, **run))  # type: ignore[arg-type]


def _samples(text: str) -> dict[str, list[Sample]]:
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    [match] = [
        s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return float(match)


def _get(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    for attempt in range(3):
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as answer:
            with answer:
                return answer.code, answer.headers["Content-Type"], answer.read().decode()
        except urllib.error.URLError as exc:
            # One CI run (1 in ~1,400 tests) saw a refused connect to the fixture's own
            # listener; a scrape that refuses for good still fails on the third try.
            if not isinstance(exc.reason, ConnectionRefusedError) or attempt == 2:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


@pytest.fixture
def served() -> Iterator[tuple[ReconcileMetrics, MetricsServer, str]]:
    metrics = ReconcileMetrics()
    with MetricsServer(metrics, host="127.0.0.1", port=0) as server:
        host, port = server.address
        yield metrics, server, f"http://{host}:{port}"


def test_metrics_scraped_over_http_carry_the_names_labels_and_values(
    served: tuple[ReconcileMetrics, MetricsServer, str],
) -> None:
    metrics, _, base = served
    _update(metrics, _summary())
    _update(
        metrics, None, result=ReconcileResult.FAILURE, duration_seconds=40.0, sync=SyncPhase.ERROR
    )

    status, content_type, text = _get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    got = _samples(text)

    assert _value(got, "plexica_reconcile_total", result="success") == 1
    assert _value(got, "plexica_reconcile_total", result="failure") == 1
    assert _value(got, "plexica_sync_total", phase="Succeeded") == 1
    assert _value(got, "plexica_sync_total", phase="Error") == 1
    assert _value(got, "plexica_sync_total", phase="Failed") == 0  # there from the start
    assert _value(got, "plexica_reconcile_duration_seconds_count") == 2
    assert _value(got, "plexica_reconcile_duration_seconds_sum") == pytest.approx(41.7)
    assert _value(got, "plexica_reconcile_duration_seconds_bucket", le="2.5") == 1
    assert _value(got, "plexica_last_reconcile_timestamp_seconds") == 1_800_000_000.0
    assert _value(got, "plexica_observed", part="runtime") == 1
    assert _value(got, "plexica_observed", part="broker") == 0
    assert _value(got, "plexica_drift_resources", kind="workload") == 2
    assert _value(got, "plexica_drift_resources", kind="plugin") == 0  # 0, not absent
    assert _value(got, "plexica_pending_resources", kind="binding") == 3
    info = {
        (s.labels["kind"], s.labels["name"], s.labels["tenant"], s.labels["ready"])
        for s in got["plexica_resource_info"]
    }
    # the platform's resources; the tenants' are counted below (no per-tenant opt-in)
    assert info == {
        ("plugin", "crm", "", "True"),
        ("workload", "crm", "", "False"),
        ("topic", "crm.deal.won", "", "Unknown"),
    }
    assert {s.labels["revision"] for s in got["plexica_resource_info"]} == {REVISION}
    assert all(s.value == 1 for s in got["plexica_resource_info"])
    assert _value(got, "plexica_tenant_resources", kind="binding", ready="True") == 2
    assert _value(got, "plexica_tenant_resources", kind="tenant", ready="True") == 1
    assert _value(got, "plexica_resource_info_dropped") == 0
    # the failed reconcile made no check: the first one's stands, with its time
    assert _value(got, "plexica_drift_check_timestamp_seconds") == 1_800_000_000.0


def test_what_was_not_observed_is_absent_not_zero(
    served: tuple[ReconcileMetrics, MetricsServer, str],
) -> None:
    metrics, _, base = served
    _update(metrics, _summary())
    got = _samples(_get(f"{base}/metrics")[2])
    # the broker was not observed: no topic count, not even 0; the runtime was
    assert not [s for s in got["plexica_drift_resources"] if s.labels["kind"] == "topic"]
    assert _value(got, "plexica_drift_resources", kind="workload") == 2
    assert _value(got, "plexica_pending_resources", kind="topic") == 0  # pending: the store's

    _update(
        metrics,
        DriftSummary(observed={"store": True}, drift=None, pending=None, resources=None),
        result=ReconcileResult.FAILURE,
        sync=None,
    )
    got = _samples(_get(f"{base}/metrics")[2])
    assert "plexica_drift_resources" not in got
    assert "plexica_pending_resources" not in got
    assert "plexica_resource_info" not in got  # the last run's resources are gone
    assert _value(got, "plexica_observed", part="runtime") == 0  # left out: not observed
    assert _value(got, "plexica_observed", part="broker") == 0
    assert _value(got, "plexica_observed", part="store") == 1

    _update(metrics, _summary(observed={}, drift={}, pending={}))
    got = _samples(_get(f"{base}/metrics")[2])
    assert "plexica_drift_resources" not in got  # nothing seen: no kind is known in sync
    assert "plexica_pending_resources" not in got


def test_openmetrics_is_served_when_asked_for(
    served: tuple[ReconcileMetrics, MetricsServer, str],
) -> None:
    metrics, _, base = served
    _update(metrics, _summary())
    status, content_type, text = _get(f"{base}/metrics", "application/openmetrics-text")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


def test_readyz_flips_once_the_first_reconcile_finished(
    served: tuple[ReconcileMetrics, MetricsServer, str],
) -> None:
    _, server, base = served
    assert _get(f"{base}/readyz")[0] == 503
    assert _get(f"{base}/healthz")[0] == 200
    server.mark_ready()
    assert _get(f"{base}/readyz")[0] == 200
    assert _get(f"{base}/nothing")[0] == 404


def test_healthz_follows_the_loop_thread() -> None:
    stop = threading.Event()
    loop = threading.Thread(target=stop.wait, daemon=True)
    loop.start()
    with MetricsServer(ReconcileMetrics(), port=0, alive=loop.is_alive) as server:
        base = "http://{}:{}".format(*server.address)
        assert _get(f"{base}/healthz")[0] == 200
        stop.set()
        loop.join()
        assert _get(f"{base}/healthz")[:1] == (503,)


def test_an_ipv6_address_is_served() -> None:
    with MetricsServer(ReconcileMetrics(), host="::1", port=0) as server:
        assert _get(f"http://[::1]:{server.address[1]}/healthz")[0] == 200


def test_the_server_stops_and_frees_its_port() -> None:
    server = MetricsServer(ReconcileMetrics(), port=0)
    server.start()
    host, port = server.address
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2)
    with MetricsServer(ReconcileMetrics(), port=port):  # the port can be taken again
        pass


def test_a_taken_port_is_a_clear_error() -> None:
    with MetricsServer(ReconcileMetrics(), port=0) as first:
        second = MetricsServer(ReconcileMetrics(), port=first.address[1])
        with pytest.raises(MetricsError, match="cannot serve metrics") as caught:
            second.start()
        assert "another port" in caught.value.hint


def test_resource_series_are_bounded_for_many_tenants() -> None:
    platform = [Resource("workload", f"p{i}", ready=True) for i in range(20)]
    tenants = [
        Resource("binding", f"p{i}", tenant=f"t{n:05d}", ready=n % 10 != 0)
        for n in range(10_000)
        for i in range(3)
    ]
    aggregated = ReconcileMetrics()
    _update(aggregated, _summary(resources=platform + tenants))
    got = _samples(aggregated.exposition()[0].decode())
    assert len(got["plexica_resource_info"]) == 20
    assert _value(got, "plexica_tenant_resources", kind="binding", ready="True") == 27_000
    assert _value(got, "plexica_tenant_resources", kind="binding", ready="False") == 3_000
    assert _value(got, "plexica_resource_info_dropped") == 0

    per_tenant = ReconcileMetrics(per_tenant=True, max_resource_series=1_000)
    _update(per_tenant, _summary(resources=platform + tenants))
    got = _samples(per_tenant.exposition()[0].decode())
    assert len(got["plexica_resource_info"]) == 1_000
    assert {s.labels["name"] for s in got["plexica_resource_info"][:20]} == {
        f"p{i}" for i in range(20)
    }  # the platform's own first
    assert all(s.labels["tenant"] == "" for s in got["plexica_resource_info"][:20])
    assert _value(got, "plexica_resource_info_dropped") == 30_020 - 1_000


def test_the_textfile_parses_and_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "plexica.prom"
    metrics = Metrics(per_tenant=True)  # what `drift --metrics-file` writes
    many = [Resource("binding", "crm", tenant=f"t{n}", ready=True) for n in range(1_000)]
    metrics.record_drift(_summary(resources=many, checked_at=1_800_000_000.0))
    metrics.write_textfile(path)
    got = _samples(path.read_text())
    assert len(got["plexica_resource_info"]) == 1_000
    assert _value(got, "plexica_drift_resources", kind="workload") == 2
    assert _value(got, "plexica_drift_check_timestamp_seconds") == 1_800_000_000.0
    # a one-shot check has no loop: no reconcile counters stuck at 0 in the collector
    assert not [name for name in got if "reconcile" in name or "sync" in name]

    # a reader (the collector) never sees half a file while it is rewritten
    done = threading.Event()
    torn: list[str] = []

    def read() -> None:
        while not done.is_set():
            families = {f.name for f in text_string_to_metric_families(path.read_text())}
            if "plexica_tenant_resources" not in families:
                torn.append("truncated")

    reader = threading.Thread(target=read)
    reader.start()
    for round_ in range(10):
        metrics.record_drift(_summary(resources=many[round_:]))
        metrics.write_textfile(path)
    done.set()
    reader.join()
    assert torn == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plexica.prom"]  # no temp file left


def test_a_bad_textfile_path_is_a_clear_error(tmp_path: Path) -> None:
    metrics = Metrics()
    with pytest.raises(MetricsError, match=r"does not end in \.prom"):
        metrics.write_textfile(tmp_path / "plexica.txt")
    with pytest.raises(MetricsError, match="cannot write the metrics file") as caught:
        metrics.write_textfile(tmp_path / "missing" / "plexica.prom")
    assert "writable directory" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("127.0.0.1", ("127.0.0.1", 8080)),
        ("[::]:9464", ("::", 9464)),
        ("[::1]", ("::1", 8080)),
    ],
)
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:port", "host:70000", "[::1]:x"])
def test_bad_metrics_addresses(text: str) -> None:
    with pytest.raises(MetricsError, match="no valid port"):
        parse_address(text)
