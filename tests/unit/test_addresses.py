"""Addresses and action ids: every wire form the planner writes reads back to a typed
address and writes out as the same string (plans, journals and --target keep today's
strings), and text that is no address is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plexica_gitops.addresses import (
    ActionId,
    Address,
    AddressError,
    ResourceKind,
    is_below,
    parse_target,
)
from plexica_gitops.plan.planfile import load_plan

FIXTURES = Path(__file__).parents[1] / "fixtures"
K = ResourceKind

WIRE = [
    ("plugin.crm", Address(K.PLUGIN, plugin="crm")),
    ("plugin.crm.workload", Address(K.WORKLOAD, plugin="crm")),
    ("plugin.crm.permissions", Address(K.PERMISSIONS, plugin="crm")),
    ("plugin.crm.routes", Address(K.ROUTES, plugin="crm")),
    ("plugin.crm.subscriptions", Address(K.SUBSCRIPTIONS, plugin="crm")),
    ("plugin.crm.data", Address(K.DATA, plugin="crm")),
    ("topic.crm.deal.won", Address(K.TOPIC, topic="crm.deal.won")),
    ("tenant.acme", Address(K.TENANT, tenant="acme")),
    ("tenant.acme.plugin.crm", Address(K.BINDING, plugin="crm", tenant="acme")),
    ("tenant.acme.migrations.crm", Address(K.MIGRATIONS, plugin="crm", tenant="acme")),
]


@pytest.mark.parametrize(("text", "address"), WIRE)
def test_each_wire_form_reads_as_its_kind_and_writes_back_the_same(
    text: str, address: Address
) -> None:
    assert Address.parse(text) == address
    assert str(address) == text


def test_every_address_and_dependency_of_saved_plans_round_trips() -> None:
    """The plans release 1.0 wrote: what the planner makes, every kind of resource."""
    kinds = set()
    for path in (FIXTURES / "plan-1.0.plan", FIXTURES / "plan-1.0-changes" / "plan-1.0.plan"):
        for action in load_plan(path).actions:
            kinds.add(action.resource.kind)
            assert str(action.resource) == action.address
            assert str(ActionId.parse(action.id)) == action.id
            for dependency in action.depends_on:
                assert str(ActionId.parse(dependency)) == dependency
    assert kinds >= set(ResourceKind) - {K.DATA}


def test_the_journal_and_the_plan_file_keep_the_strings() -> None:
    saved = json.loads((FIXTURES / "plan-1.0.plan").read_text(encoding="utf-8"))["plan"]
    shown = {a.id for a in load_plan(FIXTURES / "plan-1.0.plan").actions}
    assert shown == {a["id"] for a in saved["actions"]}


def test_an_action_id_is_its_address_and_step() -> None:
    parsed = ActionId.parse("tenant.acme.migrations.crm:apply")
    assert parsed == ActionId(Address(K.MIGRATIONS, plugin="crm", tenant="acme"), "apply")
    assert str(ActionId(Address(K.TOPIC, topic="crm.deal.won"), "create")) == (
        "topic.crm.deal.won:create"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plugin",
        "plugin.",
        "plugin.crm.workloads",
        "plugin.crm.workload.x",
        "tenant.acme.plugin",
        "tenant.acme.plugins.crm",
        "tenant..plugin.crm",
        "topic.",
        "crm.workload",
        "plugin.crm:install",
    ],
)
def test_text_that_is_no_address_is_refused(text: str) -> None:
    with pytest.raises(AddressError, match="not a resource address"):
        Address.parse(text)


@pytest.mark.parametrize("text", ["plugin.crm", "plugin.crm:", "no-step:", ":install"])
def test_an_action_id_needs_an_address_and_a_step(text: str) -> None:
    with pytest.raises(AddressError):
        ActionId.parse(text)


def test_a_target_selects_its_address_and_what_is_below_it() -> None:
    assert is_below("plugin.crm.workload", "plugin.crm")
    assert is_below("plugin.crm", "plugin.crm")
    assert not is_below("plugin.crmx", "plugin.crm")
    assert Address.parse("tenant.acme.plugin.crm").is_below("tenant.acme")
    assert not Address.parse("tenant.acme2").is_below("tenant.acme")
    assert parse_target("plugin.crm.workload:replace") == Address(K.WORKLOAD, plugin="crm")


def test_owner_and_tenant_of_an_address() -> None:
    binding = Address.parse("tenant.acme.plugin.crm")
    assert (binding.owner_plugin, binding.tenant, binding.tenant_scoped) == ("crm", "acme", True)
    topic = Address.parse("topic.crm.deal.won")
    assert (topic.owner_plugin, topic.tenant_scoped) == (None, False)
