"""Fuzzing `plan --live-state`: a realistic snapshot, mutated (a value replaced by any JSON,
deep nesting included, a key dropped or added, the text cut or corrupted), goes through
`LiveState.from_json`, the planner and every renderer. The only acceptable failures are the
two the CLI reports as a clean error (LiveStateError, pydantic's ValidationError): anything
else is a traceback a user would see. Bounded in time (deadline per example, a fixed number
of examples)."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rich.console import Console
from simulator import simulate

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.codec import LiveStateError
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.wire import plan_from_json, plan_to_json
from plexica_gitops.render.json import render_json
from plexica_gitops.render.markdown import render_markdown
from plexica_gitops.render.text import print_plan

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "desired-state"
CLEAN_ERRORS = (LiveStateError, pydantic.ValidationError)


@cache
def _desired() -> DesiredState:
    return validate_directory(EXAMPLE).desired


@cache
def _converged() -> dict[str, Any]:
    """The example platform after a perfect apply, with every kind of live field set."""
    desired = _desired()
    live = simulate(build_plan(desired, LiveState()), desired, LiveState())
    document: dict[str, Any] = live.model_dump(mode="json")
    crm = document["plugins"]["crm"]
    crm["name"], crm["stored_manifest_hash"] = "CRM", "0" * 16
    crm["workload"]["instances"] = [
        {"name": f"crm-{n}", "version": v, "running": True, "ready": n == 0, "url": None}
        for n, v in enumerate(["1.2.0", "1.1.0"])
    ]
    document["unreadable"] = {"tenant.acme.plugin.crm": "configuration nested too deep"}
    return document


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["ACTIVE", "DISABLED", "INSTALLING", "active", "suspended", "", "crm"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    value: Any = draw(SCALARS)
    for level in range(draw(st.integers(1, 300))):
        value = [value] if level % 2 else {"k": value}
    return value


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    document = json.loads(json.dumps(_converged()))  # a fresh copy
    for _ in range(draw(st.integers(1, 4))):
        _mutate(draw, document)
    text = json.dumps(document)
    cut = draw(st.sampled_from(["none", "none", "none", "truncate", "corrupt"]))
    if cut == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif cut == "corrupt":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at] + draw(st.sampled_from(["}", "]", '"', ",", "\\ud800", "\x00"])) + text[at:]
        )
    return text


def _mutate(draw: st.DrawFn, node: Any) -> None:
    """Walk down a random path; at its end replace, drop or add a value."""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(
            st.sampled_from(["alike"] * 6 + ["replace", "replace", "deep", "drop", "add"])
        )
        if action == "alike":  # a value of the same type: most of them still validate
            node[key] = draw(_alike(child))
        elif action == "replace":
            node[key] = draw(VALUES)
        elif action == "deep":
            node[key] = draw(deep_values())
        elif action == "drop" and isinstance(node, dict):
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=10))] = draw(VALUES)
        return


NAMES = st.sampled_from(["crm", "contacts", "billing", "ghost", "acme", "1.0.0", "9.9.9", ""])


def _alike(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-3, 10**6)
    if isinstance(value, str):
        return st.one_of(NAMES, st.sampled_from(["ACTIVE", "DISABLED", "INSTALLING",
                                                  "UNINSTALLING", "REGISTERED", "suspended",
                                                  "deleted"]), st.text(max_size=6))  # fmt: skip
    if isinstance(value, list):
        return st.lists(st.sampled_from(value), max_size=len(value) + 1) if value else st.just([])
    if isinstance(value, dict):
        keys = list(value)
        return st.lists(st.sampled_from(keys), unique=True).map(
            lambda kept: {k: value[k] for k in kept}
        ) if keys else st.just({})  # fmt: skip
    return st.just(value)


@settings(
    max_examples=150,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_documents())
def test_a_mutated_live_state_never_crashes_the_plan(text: str) -> None:
    try:
        live = LiveState.from_json(text)
    except CLEAN_ERRORS as error:
        event(f"refused: {type(error).__name__}")
        return
    event("planned")
    plan = build_plan(_desired(), live)
    document = plan_to_json(plan)
    assert plan_from_json(json.loads(render_json(plan))) == plan_from_json(document)
    render_markdown(plan)
    print_plan(plan, Console(file=io.StringIO(), width=100), verbose=True)
    live.fingerprint()
