"""The apply engine's walk of a plan graph, with plain functions as steps: order, real
concurrency, failure isolation, retries and interruption."""

from __future__ import annotations

import io
import json
import re
import threading
import time

import psycopg
import pytest
from rich.console import Console

from plexica_gitops.apply.engine import (
    ApplyReport,
    SilentReporter,
    StepResult,
    StepStatus,
    execute,
)
from plexica_gitops.apply.progress import JsonReporter, LineReporter, LiveReporter
from plexica_gitops.apply.steps import StepFailed
from plexica_gitops.broker.kafka import BrokerUnreachable
from plexica_gitops.plan.model import Action, ActionKind
from plexica_gitops.runtime.provider import ProviderError


def _action(address: str, *depends_on: str) -> Action:
    return Action(address, "create", ActionKind.CREATE, "test", depends_on=tuple(depends_on))


class Recorder(SilentReporter):
    """Journal and reporter at once: remembers what happened, in order (as a reporter,
    only `interrupting`)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def started(self, action: Action) -> None:
        with self.lock:
            self.events.append(("started", action.id))

    def finished(self, result: StepResult) -> None:
        with self.lock:
            self.events.append((result.status.value, result.action.id))

    def interrupting(self, in_flight: int) -> None:
        with self.lock:
            self.events.append(("interrupting", str(in_flight)))


def _run(
    actions: list[Action], run, parallelism: int = 4, stop=None
) -> tuple[ApplyReport, Recorder]:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    report = execute(actions, run, recorder, recorder, parallelism=parallelism, stop=stop)
    return report, recorder


def test_each_step_starts_after_everything_it_depends_on_finished() -> None:
    actions = [
        _action("a"),
        _action("b", "a:create"),
        _action("c", "a:create"),
        _action("d", "b:create", "c:create"),
    ]
    finished_at: dict[str, float] = {}
    started_at: dict[str, float] = {}

    def run(action: Action) -> str:
        started_at[action.id] = time.monotonic()
        time.sleep(0.05)
        finished_at[action.id] = time.monotonic()
        return "ok"

    report, _ = _run(actions, run)
    assert report.ok and report.result == "succeeded"
    for action in actions:
        for dependency in action.depends_on:
            assert started_at[action.id] >= finished_at[dependency]


def test_independent_steps_really_run_at_the_same_time() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def run(action: Action) -> str:
        barrier.wait()  # breaks (and the step fails) unless all three are in flight at once
        return "ok"

    report, _ = _run([_action("a"), _action("b"), _action("c")], run, parallelism=3)
    assert report.ok


def test_parallelism_bounds_the_steps_in_flight() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def run(action: Action) -> str:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.03)
        with lock:
            in_flight -= 1
        return "ok"

    report, _ = _run([_action(f"s{i}") for i in range(10)], run, parallelism=2)
    assert report.ok and peak == 2


def test_a_failure_stops_its_dependents_only() -> None:
    actions = [
        _action("a"),
        _action("b", "a:create"),
        _action("c", "b:create"),
        _action("x"),
        _action("y", "x:create"),
    ]

    def run(action: Action) -> str:
        if action.address == "a":
            raise StepFailed("image cannot be pulled", "build it")
        return "ok"

    report, recorder = _run(actions, run)
    assert report.result == "failed" and not report.ok
    statuses = {sid: r.status for sid, r in report.results.items()}
    assert statuses == {
        "a:create": StepStatus.FAILED,
        "b:create": StepStatus.SKIPPED,
        "c:create": StepStatus.SKIPPED,
        "x:create": StepStatus.SUCCEEDED,
        "y:create": StepStatus.SUCCEEDED,
    }
    assert report.results["c:create"].blocked_by == "a:create"
    assert report.results["a:create"].hint == "build it"
    # skipped steps are journaled too, never started
    assert ("skipped", "c:create") in recorder.events
    assert ("started", "c:create") not in recorder.events


def test_a_rolled_back_step_is_reported_as_such_and_blocks_its_dependents() -> None:
    def run(action: Action) -> str:
        if action.address == "a":
            raise StepFailed("never ready", rolled_back=True)
        return "ok"

    report, _ = _run([_action("a"), _action("b", "a:create")], run)
    assert report.results["a:create"].status is StepStatus.ROLLED_BACK
    assert report.results["b:create"].status is StepStatus.SKIPPED
    assert report.counts() == {"succeeded": 0, "failed": 0, "rolled-back": 1, "skipped": 1}


def test_transient_errors_are_retried_and_others_are_not() -> None:
    calls: dict[str, int] = {"flaky": 0, "broken": 0}

    def run(action: Action) -> str:
        calls[action.address] += 1
        if action.address == "flaky" and calls["flaky"] == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        if action.address == "broken":
            raise ValueError("a bug")
        return "ok"

    report, _ = _run([_action("flaky"), _action("broken")], run)
    assert report.results["flaky:create"].status is StepStatus.SUCCEEDED
    assert report.results["flaky:create"].attempts == 2
    assert report.results["broken:create"].status is StepStatus.FAILED
    assert calls["broken"] == 1
    assert "a bug" in report.results["broken:create"].detail


def test_stopping_lets_steps_in_flight_finish_and_starts_no_new_ones() -> None:
    stop = threading.Event()

    def run(action: Action) -> str:
        if action.address == "slow":
            stop.set()  # Ctrl-C arrives while this step runs
            time.sleep(0.3)
        return "ok"

    actions = [_action("slow"), _action("next", "slow:create"), _action("later", "next:create")]
    report, recorder = _run(actions, run, parallelism=1, stop=stop)
    assert report.interrupted and report.result == "interrupted"
    assert report.results["slow:create"].status is StepStatus.SUCCEEDED
    assert report.results["next:create"].status is StepStatus.SKIPPED
    assert "interrupted" in report.results["later:create"].detail
    assert ("started", "next:create") not in recorder.events


def test_parallelism_must_be_positive() -> None:
    with pytest.raises(ValueError):
        execute([], lambda a: "ok", Recorder(), Recorder(), parallelism=0)


def _step(
    address: str, step: str, tenant: str | None, *depends_on: str, contained: bool = False
) -> Action:
    """`contained`: a step whose failure concerns its tenant alone, as the planner marks a
    tenant's creation and its migrations."""
    return Action(
        address,
        step,
        ActionKind.CREATE,
        "test",
        depends_on=tuple(depends_on),
        tenant=tenant,
        contains_failure_to=tenant if contained else None,
    )


def test_a_failure_in_one_tenant_holds_back_that_tenant_only() -> None:
    """Spec 004 edge case 2: a tenant (or its migrations) failing must not keep the plugin
    from activating for the others."""
    actions = [
        _step("tenant.bad", "create", "bad", contained=True),
        _step("tenant.bad.migrations.crm", "apply", "bad", "tenant.bad:create", contained=True),
        _step("tenant.ok.migrations.crm", "apply", "ok", contained=True),
        _step(
            "plugin.crm",
            "mark-installed",
            None,
            "tenant.bad.migrations.crm:apply",
            "tenant.ok.migrations.crm:apply",
        ),
        _step("tenant.ok.plugin.crm", "enable", "ok", "plugin.crm:mark-installed"),
        _step(
            "tenant.bad.plugin.crm",
            "enable",
            "bad",
            "plugin.crm:mark-installed",
            "tenant.bad.migrations.crm:apply",
        ),
    ]

    def run(action: Action) -> str:
        if action.id == "tenant.bad:create":
            raise StepFailed("schema exists")
        return "ok"

    report, _ = _run(actions, run)
    statuses = {sid: r.status for sid, r in report.results.items()}
    assert statuses == {
        "tenant.bad:create": StepStatus.FAILED,
        "tenant.bad.migrations.crm:apply": StepStatus.SKIPPED,
        "tenant.ok.migrations.crm:apply": StepStatus.SUCCEEDED,
        "plugin.crm:mark-installed": StepStatus.SUCCEEDED,
        "tenant.ok.plugin.crm:enable": StepStatus.SUCCEEDED,
        "tenant.bad.plugin.crm:enable": StepStatus.SKIPPED,
    }
    assert report.result == "failed"


def test_a_binding_that_fails_to_disable_keeps_its_plugin_from_being_torn_down() -> None:
    actions = [
        _step("tenant.acme.plugin.crm", "disable", "acme"),
        _step("plugin.crm.routes", "delete", None, "tenant.acme.plugin.crm:disable"),
        _step("plugin.crm", "disable", None, "plugin.crm.routes:delete"),
    ]

    def run(action: Action) -> str:
        if action.tenant:
            raise StepFailed("connection refused")
        return "ok"

    report, _ = _run(actions, run)
    assert report.results["plugin.crm.routes:delete"].status is StepStatus.SKIPPED
    assert report.results["plugin.crm:disable"].status is StepStatus.SKIPPED


def test_a_plugin_failure_holds_back_every_tenant_that_needs_it() -> None:
    actions = [
        _step("plugin.crm", "install", None),
        _step("tenant.a.migrations.crm", "apply", "a", "plugin.crm:install", contained=True),
        _step("tenant.b.migrations.crm", "apply", "b", "plugin.crm:install", contained=True),
    ]

    def run(action: Action) -> str:
        if action.tenant is None:
            raise StepFailed("image cannot be pulled")
        return "ok"

    report, _ = _run(actions, run)
    assert [r.status for r in report.results.values()].count(StepStatus.SKIPPED) == 2


def _report_with_every_outcome(reporter: object) -> ApplyReport:
    actions = [
        Action("plugin.crm.workload", "replace", ActionKind.REPLACE, "t", plugin="crm"),
        Action(
            "plugin.crm", "update", ActionKind.UPDATE, "t", plugin="crm",
            depends_on=("plugin.crm.workload:replace",),
        ),
        Action("tenant.acme.plugin.crm", "enable", ActionKind.CREATE, "t", plugin="crm",
               tenant="acme"),
    ]  # fmt: skip

    def run(action: Action) -> str:
        if action.step == "replace":
            raise StepFailed("new replicas never ready: HTTP 404", "check /health/ready",
                             rolled_back=True)  # fmt: skip
        return "done"

    return execute(actions, run, Recorder(), reporter, parallelism=2)  # type: ignore[arg-type]


def test_json_log_lines_carry_step_plugin_tenant_and_trace_ids() -> None:
    stream = io.StringIO()
    report = _report_with_every_outcome(JsonReporter(stream, trace_id="trace-1"))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {r["trace_id"] for r in records} == {"trace-1"}
    assert records[0]["event"] == "apply.started" and records[-1]["event"] == "apply.finished"
    assert records[-1]["result"] == "failed" and records[-1]["counts"] == report.counts()
    finished = {r["step"]: r for r in records if r["event"] == "step.finished"}
    rolled = finished["plugin.crm.workload:replace"]
    assert rolled["status"] == "rolled-back" and rolled["level"] == "error"
    assert rolled["plugin"] == "crm" and rolled["hint"] == "check /health/ready"
    assert finished["plugin.crm:update"]["blocked_by"] == "plugin.crm.workload:replace"
    assert finished["tenant.acme.plugin.crm:enable"]["tenant"] == "acme"
    started = {r["step"]: r["span_id"] for r in records if r["event"] == "step.started"}
    assert (
        started["tenant.acme.plugin.crm:enable"]
        == (finished["tenant.acme.plugin.crm:enable"]["span_id"])
    )


def test_the_summary_says_what_failed_why_and_what_did_not_start() -> None:
    buffer = io.StringIO()
    _report_with_every_outcome(LineReporter(Console(file=buffer, width=200)))
    text = buffer.getvalue()
    assert "Apply failed. 1 succeeded, 0 failed, 1 rolled back, 1 skipped" in text
    assert "plugin.crm.workload:replace rolled back: new replicas never ready: HTTP 404" in text
    assert "hint: check /health/ready" in text
    assert "plugin.crm:update (waits for plugin.crm.workload:replace)" in text
    # one timestamped line per step for CI logs
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z .*succeeded +tenant\.acme", text, re.M)


def test_the_live_display_on_a_terminal_ends_with_the_summary() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system=None)
    _report_with_every_outcome(LiveReporter(console))
    text = buffer.getvalue()
    assert "tenant.acme.plugin.crm:enable" in text
    assert "Apply failed. 1 succeeded, 0 failed, 1 rolled back, 1 skipped" in text


@pytest.mark.parametrize(
    "error",
    [
        BrokerUnreachable("no broker answered at 127.0.0.1:9092"),
        ProviderError("engine answered 503", transient=True),
    ],
)
def test_transient_broker_and_runtime_errors_are_retried(error: Exception) -> None:
    calls = 0

    def run(action: Action) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        return "ok"

    report, _ = _run([_action("topic.crm.deal.won")], run)
    assert report.ok and report.results["topic.crm.deal.won:create"].attempts == 2
