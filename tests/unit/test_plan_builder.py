"""The planner's core (plan/builder.py): edges declared where a step is made, and per-tenant
failure containment as a property of the action that a saved plan keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import PlanBuilder, build_plan
from plexica_gitops.plan.model import Action, ActionKind, Cause
from plexica_gitops.plan.planfile import load_plan
from plexica_gitops.plan.wire import plan_from_json, plan_to_json

EXAMPLE = Path(__file__).parents[2] / "desired-state"
PLAN_1_0 = Path(__file__).parents[1] / "fixtures" / "plan-1.0.plan"


@pytest.fixture(scope="module")
def example() -> DesiredState:
    report = validate_directory(EXAMPLE)
    assert report.valid
    return report.desired


def _nothing_in_git() -> DesiredState:
    return DesiredState(EXAMPLE, None, {}, {}, "sha256:0", [])


def _create(address: str) -> Action:
    return Action(address, "create", ActionKind.CREATE, "test", cause=Cause.GIT_CHANGE)


def test_before_makes_a_step_wait_whether_it_was_made_earlier_or_later() -> None:
    builder = PlanBuilder(_nothing_in_git(), LiveState())
    builder.add(_create("topic.a"))
    builder.before("topic.a:create", "topic.b:create")  # made later
    builder.add(_create("topic.b"))
    builder.add(_create("topic.c"), after=["topic.b:create"])
    builder.before("topic.c:create", "topic.a:create")  # made earlier
    builder.before("topic.never:create", "topic.a:create")  # never planned: nothing
    plan = builder.plan()
    waits = {a.id: a.depends_on for a in plan.actions}
    assert waits == {
        "topic.b:create": (),
        "topic.a:create": ("topic.b:create",),
        "topic.c:create": ("topic.a:create", "topic.b:create"),
    }


def test_only_a_tenants_creation_and_migrations_contain_a_failure_to_that_tenant(
    example: DesiredState,
) -> None:
    plan = build_plan(example, LiveState())
    contained = {a.id: a.contains_failure_to for a in plan.actions if a.contains_failure_to}
    expected = {
        a.id: a.tenant
        for a in plan.actions
        if a.id == f"tenant.{a.tenant}:create" or a.step == "apply"
    }
    assert contained == expected
    assert any(".migrations." in sid for sid in contained)
    assert all(a.contains_failure_to is None for a in plan.actions if a.step == "enable")


def test_a_saved_plan_reads_back_with_the_containment_the_planner_set(
    example: DesiredState,
) -> None:
    plan = build_plan(example, LiveState())
    again = plan_from_json(plan_to_json(plan))
    assert [a.contains_failure_to for a in again.actions] == [
        a.contains_failure_to for a in plan.actions
    ]
    assert again.actions == plan.actions


def test_a_plan_saved_in_format_1_0_contains_tenant_failures_as_the_planner_does(
    example: DesiredState,
) -> None:
    """The fixture is the example's install plan, written before the field existed."""
    saved = {a.id: a.contains_failure_to for a in load_plan(PLAN_1_0).actions}
    planned = {a.id: a.contains_failure_to for a in build_plan(example, LiveState()).actions}
    assert saved == planned
    assert saved["tenant.acme:create"] == "acme"
    assert saved["tenant.acme.migrations.crm:apply"] == "acme"
