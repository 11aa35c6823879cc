"""The engine's walk of a plan (a heap of plan positions) starts steps in the order the
sorted ready list of earlier releases did, with the same results, on plan-shaped graphs
with failures: the lowest plan position among the ready steps first. And what each step
costs in display: the live display redraws a few times a second, the log a line a step."""

from __future__ import annotations

import io
import random
import re
import time
from collections import defaultdict

import pytest
from rich.console import Console
from test_apply_engine import Recorder, _step

from plexica_gitops.apply.engine import StepStatus, execute
from plexica_gitops.apply.progress import LineReporter, LiveReporter
from plexica_gitops.apply.steps import StepFailed
from plexica_gitops.plan.model import Action


def _start_order(recorder: Recorder) -> list[str]:
    return [step for event, step in recorder.events if event == "started"]


def _reference(actions: list[Action], fails: set[str]) -> tuple[list[str], dict[str, str]]:
    """The walk as it was (a ready list sorted by plan position after every step), one
    step at a time: the order steps start in, and each step's status (and blocker)."""
    ids = {a.id: a for a in actions}
    position = {a.id: i for i, a in enumerate(actions)}
    waiting = {a.id: {d for d in a.depends_on if d in ids} for a in actions}
    dependents: dict[str, list[str]] = defaultdict(list)
    for action in actions:
        for dependency in waiting[action.id]:
            dependents[dependency].append(action.id)
    ready = [a.id for a in actions if not waiting[a.id]]
    done: set[str] = set()
    order: list[str] = []
    outcome: dict[str, str] = {}
    while ready:
        current = ready.pop(0)
        order.append(current)
        if current not in fails:
            outcome[current] = "succeeded"
            done.add(current)
            for dependent in dependents[current]:
                waiting[dependent].discard(current)
                if not waiting[dependent] and dependent not in done:
                    ready.append(dependent)
            ready.sort(key=position.__getitem__)
            continue
        outcome[current] = "failed"
        done.add(current)
        tenant = ids[current].contains_failure_to
        stack = [current] if tenant else list(dependents[current])
        while stack:
            step = stack.pop()
            if tenant is None:
                if step in done:
                    continue
                done.add(step)
                outcome[step] = f"skipped by {current}"
                stack.extend(dependents[step])
                continue
            for dependent in dependents[step]:
                if dependent in done:
                    continue
                if ids[dependent].tenant == tenant:
                    done.add(dependent)
                    outcome[dependent] = f"skipped by {current}"
                    stack.append(dependent)
                    continue
                waiting[dependent].discard(step)
                if not waiting[dependent]:
                    ready.append(dependent)
        ready.sort(key=position.__getitem__)
    return order, outcome


def _plan_shaped(rng: random.Random, tenants: int, plugins: int) -> list[Action]:
    """Plugins registered and installed, tenants created, migrated and bound, in a plan
    order that is not the order steps become ready (tenants first, plugins last)."""
    actions: list[Action] = []
    for t in range(tenants):
        slug = f"t{t}"
        actions.append(_step(f"tenant.{slug}", "create", slug, contained=True))
        for p in range(plugins):
            actions.append(
                _step(
                    f"tenant.{slug}.migrations.p{p}",
                    "apply",
                    slug,
                    f"tenant.{slug}:create",
                    f"plugin.p{p}:register",
                    contained=True,
                )
            )
    for p in range(plugins):
        actions.append(_step(f"plugin.p{p}", "register", None))
        migrations = [f"tenant.t{t}.migrations.p{p}:apply" for t in range(tenants)]
        actions.append(_step(f"plugin.p{p}", "mark-installed", None, *migrations))
    for t in range(tenants):
        for p in range(plugins):
            actions.append(
                _step(
                    f"tenant.t{t}.plugin.p{p}",
                    "enable",
                    f"t{t}",
                    f"plugin.p{p}:mark-installed",
                    f"tenant.t{t}.migrations.p{p}:apply",
                )
            )
    rng.shuffle(actions)
    return _topological(actions)


def _topological(actions: list[Action]) -> list[Action]:
    """A plan order: dependencies first, otherwise as given."""
    placed: set[str] = set()
    ordered: list[Action] = []
    pending = list(actions)
    while pending:
        rest = []
        for action in pending:
            if all(d in placed for d in action.depends_on):
                ordered.append(action)
                placed.add(action.id)
            else:
                rest.append(action)
        pending = rest
    return ordered


@pytest.mark.parametrize("seed", range(12))
def test_steps_start_in_the_order_and_end_as_the_sorted_walk_did(seed: int) -> None:
    rng = random.Random(seed)
    actions = _plan_shaped(rng, tenants=rng.randint(1, 12), plugins=rng.randint(1, 4))
    fails = {a.id for a in actions if rng.random() < 0.08}

    def run(action: Action) -> str:
        if action.id in fails:
            raise StepFailed("no")
        return "ok"

    recorder = Recorder()
    report = execute(actions, run, recorder, recorder, parallelism=1)
    order, outcome = _reference(actions, fails)
    assert _start_order(recorder) == order
    seen = {
        sid: f"skipped by {r.blocked_by}" if r.status is StepStatus.SKIPPED else r.status.value
        for sid, r in report.results.items()
    }
    assert seen == outcome


def _many_quick_steps(count: int) -> list[Action]:
    return [_step(f"tenant.t{n}.plugin.crm", "enable", f"t{n}") for n in range(count)]


def test_the_live_display_is_redrawn_a_few_times_a_second_not_once_a_step() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system=None)
    started = time.monotonic()
    report = execute(_many_quick_steps(600), lambda a: "ok", Recorder(), LiveReporter(console))
    seconds = time.monotonic() - started
    text = buffer.getvalue()
    assert report.ok
    assert all(f"tenant.t{n}.plugin.crm:enable" in text for n in range(600))  # every line
    redraws = text.count("Applying")
    assert redraws <= seconds * LiveReporter.REFRESH_PER_SECOND + 5, (redraws, seconds)


def test_the_plain_log_has_a_line_for_each_step_as_it_starts_and_ends() -> None:
    buffer = io.StringIO()
    execute(
        _many_quick_steps(300),
        lambda a: "enabled",
        Recorder(),
        LineReporter(Console(file=buffer, soft_wrap=True, highlight=False)),
    )
    lines = buffer.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT[\d:.]+Z"
    for n in range(300):
        step = re.escape(f"tenant.t{n}.plugin.crm:enable")
        assert sum(bool(re.fullmatch(f"{stamp}   start  {step}", x)) for x in lines) == 1
        done = f"{stamp} ✓ succeeded   {step} \\(0\\.0 s\\): enabled"
        assert sum(bool(re.fullmatch(done, x)) for x in lines) == 1
