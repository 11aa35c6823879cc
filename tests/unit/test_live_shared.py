"""A snapshot read with the desired state (`plan --live-state FILE`): a live configuration
that is the same JSON value as its binding's desired one is that very object (a converged
million-binding platform then holds one copy of each, not two), and the state, its
fingerprint and the plan are exactly what they are without it."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_DESIRED_STATE

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.hashing import json_text
from plexica_gitops.interning import same_json
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.render.json import render_json

Change = Callable[[str, str, dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def desired() -> DesiredState:
    return validate_directory(EXAMPLE_DESIRED_STATE).desired


def _unchanged(slug: str, pid: str, configuration: dict[str, Any]) -> dict[str, Any]:
    return configuration


def _snapshot(desired: DesiredState, change: Change = _unchanged) -> str:
    """The platform converged to `desired`, each configuration as `change` writes it."""
    tenants = {}
    for slug, entry in desired.tenants.items():
        spec = entry.document.spec
        bindings = {
            pid: {"enabled": b.enabled, "configuration": change(slug, pid, b.configuration)}
            for pid, b in spec.plugins.items()
        }
        tenants[slug] = {
            "id": spec.id,
            "schema_name": spec.schema_name,
            "status": spec.status.value,
            "plugins": bindings,
        }
    return json.dumps({"tenants": tenants})


def _read(tmp_path: Path, text: str, desired: DesiredState) -> tuple[LiveState, LiveState]:
    """The snapshot read with the desired state, from a file and from its text, checked
    equal to it read without."""
    path = tmp_path / "live.json"
    path.write_text(text, encoding="utf-8")
    alone = LiveState.from_json(text)
    shared = LiveState.from_json_file(path, desired)
    assert LiveState.from_json(text, desired) == shared == alone
    assert shared.fingerprint() == alone.fingerprint()
    return shared, alone


def _desired_configuration(desired: DesiredState, slug: str, pid: str) -> dict[str, Any]:
    return desired.tenants[slug].document.spec.plugins[pid].configuration


def test_a_converged_platform_shares_every_configuration_with_git(
    tmp_path: Path, desired: DesiredState
) -> None:
    shared, alone = _read(tmp_path, _snapshot(desired), desired)
    pairs = [(slug, pid) for slug, t in shared.tenants.items() for pid in t.plugins]
    assert len(pairs) > 10
    for slug, pid in pairs:
        want = _desired_configuration(desired, slug, pid)
        assert shared.tenants[slug].plugins[pid].configuration is want
        assert alone.tenants[slug].plugins[pid].configuration is not want


NEAR = {  # (tenant, plugin) -> a configuration Python finds equal to git's, JSON does not
    ("umbrella", "billing"): lambda c: {**c, "taxRatePercent": float(c["taxRatePercent"])},
    ("globex", "crm"): lambda c: {**c, "requireLostReason": 0},  # False == 0
    ("acme", "crm"): lambda c: dict(reversed(c.items())),  # the keys in another order
    ("hooli", "analytics"): lambda c: {**c, "retentionDays": 90.0},
    ("initech", "crm"): lambda c: {**c, "dealStages": c["dealStages"][:-1]},  # not equal
}


def test_a_configuration_only_python_finds_equal_keeps_its_own_types_and_order(
    tmp_path: Path, desired: DesiredState
) -> None:
    """1 and 1.0, false and 0, and keys in another order are equal to Python but another
    JSON value: the live configuration stays what the platform holds (what a plan shows
    of it, and the fingerprint, depend on it)."""

    def near(slug: str, pid: str, configuration: dict[str, Any]) -> dict[str, Any]:
        rewrite = NEAR.get((slug, pid))
        return rewrite(configuration) if rewrite else configuration

    text = _snapshot(desired, near)
    shared, _ = _read(tmp_path, text, desired)
    written = json.loads(text)["tenants"]
    for slug, tenant in shared.tenants.items():
        for pid, binding in tenant.plugins.items():
            want = _desired_configuration(desired, slug, pid)
            assert (binding.configuration is want) is ((slug, pid) not in NEAR)
            assert json_text(binding.configuration) == json_text(
                written[slug]["plugins"][pid]["configuration"]
            )


def test_the_plan_is_the_same_with_shared_configurations(
    tmp_path: Path, desired: DesiredState
) -> None:
    """Drift in a few bindings (and sharing in the rest): the same plan, byte for byte."""

    def drifted(slug: str, pid: str, configuration: dict[str, Any]) -> dict[str, Any]:
        return {**configuration, "drift": slug} if pid == "contacts" else configuration

    shared, alone = _read(tmp_path, _snapshot(desired, drifted), desired)
    planned = render_json(build_plan(desired, shared))
    assert planned == render_json(build_plan(desired, alone))
    assert '"drift"' in planned


_TWICE = ["x", 1.5]  # one list in two places


class _Text(str):
    pass


@pytest.mark.parametrize(
    ("value", "other", "same"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": 1}, {"a": True}, False),
        ({"a": 0.0}, {"a": -0.0}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),
        ({"a": [1]}, {"a": (1,)}, False),  # no tuple in JSON
        ({"1": 1}, {1: 1}, False),  # nor a key that is not text
        ({"a": {"b": [1, {"c": None}]}}, {"a": {"b": [1, {"c": None}]}}, True),
        ({"a": object()}, {"a": object()}, False),
        ({"a": _TWICE, "b": _TWICE}, {"a": ["x", 1.5], "b": ["x", 1.5]}, True),  # no references
        ({"d": datetime.date(2024, 1, 1)}, {"d": datetime.date(2024, 1, 1)}, False),  # not JSON
        ({"s": _Text("x")}, {"s": "x"}, False),  # nor a subclass
    ],
)
def test_same_json(value: Any, other: Any, same: bool) -> None:
    assert same_json(value, other) is same
    assert same_json(other, value) is same
