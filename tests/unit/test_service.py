"""The service layer as the reconcile loop and `drift` will call it: values back, errors
from the one tree (errors.py), nothing printed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import EXAMPLE_DESIRED_STATE

from plexica_gitops import service
from plexica_gitops.apply.engine import is_transient
from plexica_gitops.apply.progress import JsonReporter
from plexica_gitops.broker.kafka import BrokerUnreachable
from plexica_gitops.errors import (
    LiveStateError,
    PlanFileError,
    PlexicaError,
    StalePlanError,
    StepFailed,
    UsageError,
)
from plexica_gitops.plan.planfile import UnjustifiedPlanError
from plexica_gitops.runtime.provider import RolloutFailed
from plexica_gitops.runtime.spec import EnvResolutionError
from plexica_gitops.source.git import RefNotFound, RemoteUnreachable
from plexica_gitops.store.catalog import ConflictError
from plexica_gitops.store.lock import LockLostError


@pytest.fixture
def empty(tmp_path: Path) -> service.LiveSource:
    snapshot = tmp_path / "empty.json"
    snapshot.write_text("{}", encoding="utf-8")
    return service.LiveSource(snapshot=str(snapshot))


def test_plan_returns_the_plan_and_prints_nothing(
    empty: service.LiveSource, capfd: pytest.CaptureFixture[str]
) -> None:
    made = service.plan(EXAMPLE_DESIRED_STATE, empty, warn=pytest.fail)
    assert not made.has_errors
    assert "plugin.crm" in {a.address for a in made.actions}
    assert capfd.readouterr() == ("", "")


def test_plan_of_targets_keeps_only_them_and_what_they_need(empty: service.LiveSource) -> None:
    full = {a.id for a in service.plan(EXAMPLE_DESIRED_STATE, empty).actions}
    made = service.plan(EXAMPLE_DESIRED_STATE, empty, service.PlanOptions(["plugin.crm"]))
    assert made.targets == ["plugin.crm"]
    assert "plugin.crm" in {a.address for a in made.actions}
    assert {a.id for a in made.actions} < full


def test_a_target_naming_nothing_is_a_usage_error(empty: service.LiveSource) -> None:
    with pytest.raises(UsageError, match=r"--target plugin\.nope names nothing"):
        service.plan(EXAMPLE_DESIRED_STATE, empty, service.PlanOptions(["plugin.nope"]))


def test_an_unreadable_snapshot_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(LiveStateError) as caught:
        service.plan(EXAMPLE_DESIRED_STATE, service.LiveSource(snapshot=str(tmp_path / "no")))
    assert caught.value.message.startswith("cannot read live state")
    assert caught.value.hint == "Check the path."
    assert not isinstance(caught.value, UsageError)  # exit 1, as before


def test_apply_refuses_replace_with_a_saved_plan_before_reaching_the_store(
    tmp_path: Path,
) -> None:
    options = service.ApplyOptions(database_url="postgresql://nowhere.invalid/x", replace=["p"])
    hooks = service.ApplyHooks(reporter=JsonReporter(io.StringIO()))
    with pytest.raises(UsageError, match="cannot be added to a saved plan"):
        service.apply(EXAMPLE_DESIRED_STATE, options, hooks, saved_plan=tmp_path / "x.plan")


def test_an_unreadable_saved_plan_says_where_plans_come_from(tmp_path: Path) -> None:
    garbage = tmp_path / "x.plan"
    garbage.write_text("not a plan", encoding="utf-8")
    with pytest.raises(PlanFileError) as caught:
        service.load_saved_plan(garbage)
    assert caught.value.hint == "Plan files are written by `plexica-gitops plan --out`."


@pytest.mark.parametrize(
    "error",
    [
        ConflictError("plugin.crm", "a", "b"),
        LockLostError("gone"),
        RolloutFailed("never ready", rolled_back=True),
        BrokerUnreachable("down"),
        RefNotFound("main", "repo", []),
        UnjustifiedPlanError("differs"),
        EnvResolutionError("no SECRET", "set it"),
        StepFailed("failed"),
    ],
    ids=type,
)
def test_every_error_is_one_tree(error: PlexicaError) -> None:
    assert isinstance(error, PlexicaError)
    assert error.message


def test_a_stale_plan_is_a_plan_file_error() -> None:
    assert issubclass(StalePlanError, PlanFileError)


def test_apply_retries_any_transient_error_of_the_tree() -> None:
    assert is_transient(RemoteUnreachable("git://h/r", "h", None, "timed out"))
    assert is_transient(BrokerUnreachable("down"))
    assert not is_transient(StepFailed("failed"))
