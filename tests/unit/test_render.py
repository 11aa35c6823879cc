"""The three plan renderers: text (Terraform-style), JSON (machines, plan files) and
Markdown (pull-request comments). Assertions are on what a reviewer sees."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console

from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.findings import Location, error, warning
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.model import Action, ActionKind, Cause, Plan
from plexica_gitops.plan.planfile import UnjustifiedPlanError, check_justified
from plexica_gitops.plan.wire import plan_from_json, plan_to_json
from plexica_gitops.render.json import render_json
from plexica_gitops.render.markdown import md_code, md_escape, render_markdown
from plexica_gitops.render.text import print_plan

if TYPE_CHECKING:
    from conftest import DesiredStateCopy

EXAMPLE_DESIRED_STATE = Path(__file__).resolve().parents[2] / "desired-state"

C, U, R, D, T = (
    ActionKind.CREATE,
    ActionKind.UPDATE,
    ActionKind.REPLACE,
    ActionKind.DELETE,
    ActionKind.TRANSITION,
)
ANSI = "\x1b["


def text_of(plan: Plan, *, verbose: bool = False, terminal: bool = False) -> str:
    console = Console(file=io.StringIO(), force_terminal=terminal, width=120)
    print_plan(plan, console, verbose=verbose)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def make_plan(*actions: Action, **fields: Any) -> Plan:
    return Plan(
        desired_revision="sha256:" + "a" * 64,
        live_fingerprint="sha256:" + "b" * 64,
        actions=list(actions),
        **fields,
    )


def lifecycle(address: str, step: str, before: str | None, after: str, **kw: Any) -> Action:
    return Action(
        address,
        step,
        T,
        kw.pop("reason", f"{step} it"),
        before={"status": before} if before else None,
        after={"status": after},
        **kw,
    )


WORKLOAD_AFTER = {
    "image": "localhost/plexica/crm:1.2.0",
    "version": "1.2.0",
    "replicas": 2,
    "cpu": "250m",
    "memory": "256Mi",
    "env": ["DATABASE_URL", "LOG_LEVEL"],
    "strategy": "rolling",
    "running": True,
}


def crm_upgrade_plan() -> Plan:
    """One action of each kind, all for plugin crm, in a valid order."""
    return make_plan(
        Action(
            "plugin.crm.workload",
            "replace",
            R,
            "update 1.2.0 → 1.3.0: rolling update",
            before={
                "image": "localhost/plexica/crm:1.2.0",
                "version": "1.2.0",
                "replicas": 2,
                "ready_replicas": 2,
                "cpu": "250m",
                "memory": "256Mi",
                "running": True,
            },
            after={
                **WORKLOAD_AFTER,
                "image": "localhost/plexica/crm:1.3.0",
                "version": "1.3.0",
            },
            plugin="crm",
        ),
        Action(
            "plugin.crm",
            "update",
            U,
            "version 1.2.0 → 1.3.0",
            before={"version": "1.2.0", "manifest_hash": "0123456789abcdef"},
            after={"version": "1.3.0", "manifest_hash": "0123456789abcdef"},
            depends_on=("plugin.crm.workload:replace",),
            wave=1,
            plugin="crm",
        ),
        Action(
            "plugin.crm.routes",
            "delete",
            D,
            "stop routing traffic to the plugin (new requests get 404)",
            before={"base_path": "/api/plugins/crm", "frontend_prefix": "/crm"},
            depends_on=("plugin.crm:update",),
            wave=2,
            plugin="crm",
        ),
        lifecycle(
            "plugin.crm",
            "disable",
            "ACTIVE",
            "DISABLED",
            plugin="crm",
            wave=3,
            depends_on=("plugin.crm.routes:delete",),
        ),
        Action(
            "plugin.crm.permissions",
            "create",
            C,
            "register the plugin's permissions",
            after={"keys": ["crm:deals:read"]},
            depends_on=("plugin.crm:disable",),
            wave=4,
            plugin="crm",
        ),
    )


def tenants_plan(count: int) -> Plan:
    """`count` new tenants, each with crm migrations applied and crm enabled."""
    slugs = [f"t{i:04d}" for i in range(count)]
    actions = [
        Action(
            f"tenant.{s}", "create", C, "new tenant in git", after={"status": "active"}, tenant=s
        )
        for s in slugs
    ]
    actions += [
        Action(
            f"tenant.{s}.migrations.crm",
            "apply",
            C,
            "2 pending migrations",
            after={"apply": ["0001_create_deals", "0002_add_stages"]},
            depends_on=(f"tenant.{s}:create",),
            wave=1,
            plugin="crm",
            tenant=s,
        )
        for s in slugs
    ]
    actions += [
        Action(
            f"tenant.{s}.plugin.crm",
            "enable",
            C,
            "enabled for the tenant in git",
            after={"enabled": True, "configuration": {"currency": "USD", "stale": i % 7}},
            depends_on=(f"tenant.{s}.migrations.crm:apply",),
            wave=2,
            plugin="crm",
            tenant=s,
        )
        for i, s in enumerate(slugs)
    ]
    return make_plan(*actions)


@pytest.fixture(scope="module")
def fresh_plan() -> Plan:
    """The real plan of the example desired state against an empty platform."""
    report = validate_directory(EXAMPLE_DESIRED_STATE)
    assert report.valid
    return build_plan(report.desired, LiveState())


# --- text ----------------------------------------------------------------------------------


def test_each_kind_has_its_symbol_and_the_legend_lists_the_symbols_used() -> None:
    lines = lines_of(text_of(crm_upgrade_plan()))
    assert "-/+ plugin.crm.workload  (replace)" in lines
    assert "  ~ plugin.crm  (update)" in lines
    assert "  - plugin.crm.routes  (delete)" in lines
    assert "  + plugin.crm.permissions  (create)" in lines
    assert "  » plugin.crm  ACTIVE → DISABLED  # disable it" in lines
    legend = lines[lines.index("Actions are indicated with the following symbols:") + 1 :][:6]
    assert legend[:5] == [
        "  + create",
        "  ~ update in place",
        "-/+ replace",
        "  - destroy",
        "  » lifecycle transition",
    ]
    only_creates = lines_of(text_of(make_plan(crm_upgrade_plan().actions[-1])))
    legend = only_creates[only_creates.index("Actions are indicated with the following symbols:") :]
    assert legend[1:3] == ["  + create", ""]


def test_actions_carry_a_terraform_style_comment_above_them() -> None:
    lines = lines_of(text_of(crm_upgrade_plan()))
    header = lines.index("-/+ plugin.crm.workload  (replace)")
    assert lines[header - 1] == (
        "  # plugin.crm.workload must be replaced — update 1.2.0 → 1.3.0: rolling update"
    )
    assert "  # plugin.crm will be updated in place — version 1.2.0 → 1.3.0" in lines
    assert "  # plugin.crm.routes will be destroyed — stop routing traffic to the plugin " in (
        "\n".join(lines)
    )


def test_create_lists_every_attribute() -> None:
    action = Action(
        "plugin.crm.workload", "create", C, "install", after=WORKLOAD_AFTER, plugin="crm"
    )
    lines = lines_of(text_of(make_plan(action)))
    assert "  # plugin.crm.workload will be created — install" in lines
    assert "  + plugin.crm.workload  (create)" in lines
    assert '      + image = "localhost/plexica/crm:1.2.0"' in lines
    assert "      + replicas = 2" in lines
    assert "      + running = true" in lines
    assert '      + env = ["DATABASE_URL", "LOG_LEVEL"]' in lines


def test_update_shows_only_changed_attributes_and_counts_the_rest() -> None:
    text = text_of(crm_upgrade_plan())
    lines = lines_of(text)
    catalog = lines.index("  ~ plugin.crm  (update)")
    assert lines[catalog + 1 : catalog + 3] == [
        '      ~ version = "1.2.0" -> "1.3.0"',
        "        # (1 unchanged attribute hidden)",
    ]
    assert "manifest_hash" not in text
    workload = lines.index("-/+ plugin.crm.workload  (replace)")
    assert lines[workload + 1 : workload + 4] == [
        '      ~ image = "localhost/plexica/crm:1.2.0" -> "localhost/plexica/crm:1.3.0"',
        '      ~ version = "1.2.0" -> "1.3.0"',
        "        # (4 unchanged attributes hidden)",
    ]
    # observed-only (ready_replicas) and desired-only (env, strategy) keys are not compared
    assert "ready_replicas" not in text and "strategy" not in text


def test_nested_configuration_changes_are_shown_as_a_block() -> None:
    action = Action(
        "tenant.acme.plugin.crm",
        "configure",
        U,
        "configuration changed in git",
        before={
            "enabled": True,
            "configuration": {"currency": "USD", "staleDealDays": 21, "legacy": "x"},
        },
        after={
            "enabled": True,
            "configuration": {"currency": "EUR", "staleDealDays": 21, "requireLostReason": True},
        },
        plugin="crm",
        tenant="acme",
    )
    lines = lines_of(text_of(make_plan(action)))
    start = lines.index("  ~ tenant.acme.plugin.crm  (configure)")
    assert lines[start + 1 : start + 8] == [
        "      ~ configuration = {",
        '          ~ currency = "USD" -> "EUR"',
        "          + requireLostReason = true",
        '          - legacy = "x"',
        "            # (1 unchanged attribute hidden)",
        "        }",
        "        # (1 unchanged attribute hidden)",
    ]


def test_long_lists_diff_element_by_element() -> None:
    stages = [f"stage-number-{i}" for i in range(8)]
    action = Action(
        "tenant.acme.plugin.crm",
        "configure",
        U,
        "configuration changed in git",
        before={"configuration": {"dealStages": stages}},
        after={"configuration": {"dealStages": [*stages[:3], "won", *stages[4:]]}},
        tenant="acme",
    )
    text = text_of(make_plan(action))
    assert '              - "stage-number-3"' in text
    assert '              + "won"' in text
    assert "# (7 unchanged elements hidden)" in text


def test_delete_lists_what_goes_away() -> None:
    lines = lines_of(text_of(crm_upgrade_plan()))
    start = lines.index("  - plugin.crm.routes  (delete)")
    assert lines[start + 1 : start + 3] == [
        '      - base_path = "/api/plugins/crm"',
        '      - frontend_prefix = "/crm"',
    ]


def test_sensitive_values_are_shown_bare_and_secrets_never_appear() -> None:
    action = Action(
        "tenant.acme.plugin.notifications",
        "enable",
        C,
        "enabled for the tenant in git",
        after={
            "enabled": True,
            "configuration": {
                "smtp": {"host": "smtp.example.com", "password": "(sensitive)"},
                # a hand-made (or old) action that was never masked is masked on display
                "apiToken": "tok-LEAKED-0001",
                "slackBotToken": {"secretRef": {"name": "acme-slack", "key": "bot-token"}},
            },
        },
        plugin="notifications",
        tenant="acme",
    )
    text = text_of(make_plan(action))
    assert '+ smtp = { host = "smtp.example.com", password = (sensitive) }' in text
    assert "+ apiToken = (sensitive)" in text
    assert '"(sensitive)"' not in text
    assert 'slackBotToken = { secretRef = { name = "acme-slack", key = "bot-token" } }' in text
    markdown = render_markdown(make_plan(action))
    assert "tok-LEAKED-0001" not in text and "tok-LEAKED-0001" not in markdown
    assert "apiToken = (sensitive)" in markdown


def test_a_literal_secret_that_reaches_the_planner_is_never_rendered(
    desired_state_copy: DesiredStateCopy,
) -> None:
    secret = "hunter2-literal-pw"
    desired_state_copy.replace(
        "tenants/globex.yaml", "password: {fromEnv: GLOBEX_SMTP_PASSWORD}", f"password: {secret}"
    )
    report = desired_state_copy.validate()
    assert "PGV701" in {f.code for f in report.findings}  # validation refuses it anyway
    plan = build_plan(report.desired, LiveState())
    for verbose in (False, True):
        text = text_of(plan, verbose=verbose)
        assert secret not in text
        assert "password = (sensitive)" in text
    assert secret not in render_markdown(plan)
    assert secret not in render_json(plan)


def test_markup_in_plan_strings_is_printed_literally() -> None:
    action = Action(
        "plugin.crm.routes",
        "create",
        C,
        "because [bold]reasons[/bold] and :smile:",
        after={"base_path": "[red]/api[/red]"},
        plugin="crm",
    )
    text = text_of(make_plan(action), terminal=True)
    assert "[bold]reasons[/bold] and :smile:" in text
    assert '"[red]/api[/red]"' in text


def test_colour_codes_appear_only_on_a_terminal() -> None:
    plain = text_of(crm_upgrade_plan())
    coloured = text_of(crm_upgrade_plan(), terminal=True)
    assert ANSI not in plain
    assert ANSI in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_summary_line() -> None:
    lines = lines_of(text_of(crm_upgrade_plan()))
    assert lines[-1] == "Plan: 1 to add, 2 to change, 1 to destroy, 1 lifecycle transition."
    many = tenants_plan(1_200)
    assert lines_of(text_of(many))[-1] == (
        "Plan: 3,600 to add, 0 to change, 0 to destroy, 0 lifecycle transitions."
    )


def test_empty_plan_says_no_changes() -> None:
    text = text_of(make_plan())
    assert lines_of(text) == ["No changes. The platform matches the desired state."]
    assert "No changes. The platform matches the desired state." in render_markdown(make_plan())


def test_errors_replace_the_actions() -> None:
    plan = make_plan(
        *crm_upgrade_plan().actions,
        errors=[
            error(
                "PGP101",
                "migration plugins/crm/migrations/0001_init.sql was changed after it was applied",
                "Never edit an applied migration.",
                Location("plugins/crm/migrations/0001_init.sql"),
                ("acme", "crm"),
            ),
            error("PGP204", "topic 'crm.deal.won' has 6 partitions", "Raise it back to 6."),
        ],
        warnings=[warning("PGP201", "the event broker was not observed", "Set it.")],
    )
    text = text_of(plan)
    lines = lines_of(text)
    assert "Error: PGP101 at plugins/crm/migrations/0001_init.sql" in lines
    assert (
        "  migration plugins/crm/migrations/0001_init.sql was changed after it was applied" in lines
    )
    assert "  hint: Never edit an applied migration." in lines
    assert "Error: PGP204" in lines
    assert "Warning: PGP201" in lines
    assert lines[-1] == "Plan failed: 2 errors."
    assert "plugin.crm.workload" not in text and "Plan:" not in text
    markdown = render_markdown(plan)
    assert "**Plan failed: 2 errors.**" in markdown
    assert "- **PGP101** at `plugins/crm/migrations/0001_init.sql`: migration" in markdown
    assert "<details>" not in markdown


def test_many_tenants_collapse_to_one_line_per_step() -> None:
    plan = tenants_plan(3_000)
    text = text_of(plan)
    lines = lines_of(text)
    assert (
        "  + tenant.*.migrations.crm  apply in 3,000 tenants (t0000, t0001, t0002, … and "
        "2,997 more)" in lines
    )
    assert (
        "  + tenant.*.plugin.crm  enable in 3,000 tenants (t0000, t0001, t0002, … and 2,997 more)"
        in lines
    )
    assert "  + tenant.*  create in 3,000 tenants (t0000, t0001, t0002, … and 2,997 more)" in lines
    assert "t2999" not in text
    assert len(lines) < 60
    # identical changes are shown once; differing ones are pointed at --verbose
    migrations = lines.index(
        "  + tenant.*.migrations.crm  apply in 3,000 tenants (t0000, t0001, t0002, … and "
        "2,997 more)"
    )
    assert lines[migrations - 1] == (
        "  # tenant.*.migrations.crm will be created in 3,000 tenants — 2 pending migrations"
    )
    assert lines[migrations + 1] == '      + apply = ["0001_create_deals", "0002_add_stages"]'
    assert "        # (attributes differ per tenant: --verbose lists each)" in lines
    assert any(line.startswith("Tenants (9,000 actions in 3,000 tenants") for line in lines)


@pytest.mark.slow
def test_verbose_lists_every_tenant_action_under_its_tenant() -> None:
    plan = tenants_plan(3_000)
    text = text_of(plan, verbose=True)
    lines = lines_of(text)
    assert "tenant.*" not in text
    assert "  + tenant.t2999.migrations.crm  (apply)" in lines
    assert sum(line.startswith("tenant t") for line in lines) == 3_000
    section = lines.index("tenant t0001 (3 actions)")
    following = [line for line in lines[section + 1 :] if line.startswith("  + ")][:3]
    assert following == [
        "  + tenant.t0001  (create)",
        "  + tenant.t0001.migrations.crm  (apply)",
        "  + tenant.t0001.plugin.crm  (enable)",
    ]


def test_up_to_five_tenants_are_not_collapsed() -> None:
    text = text_of(tenants_plan(5))
    assert "tenant.*" not in text
    assert "  + tenant.t0004.migrations.crm  (apply)" in lines_of(text)
    assert "tenant.*" in text_of(tenants_plan(6))


def test_warnings_and_unmanaged_objects() -> None:
    unmanaged = ["plugin.legacy", *(f"tenant.old{i:04d}" for i in range(1_234)), "topic.x.y"]
    plan = make_plan(
        *crm_upgrade_plan().actions,
        warnings=[
            warning(
                "PGP203",
                "topic 'crm.deal.won' already exists and was not created by plexica-gitops",
                "It is used as it is.",
                subjects=("crm",),
            )
        ],
        unmanaged=unmanaged,
    )
    lines = lines_of(text_of(plan))
    assert "Warning: PGP203" in lines
    assert "  hint: It is used as it is." in lines
    assert "  plugin.legacy" in lines
    assert "  tenant.* (1,234 not in git)" in lines
    assert "  topic.x.y" in lines
    assert "  tenant.old0001" in lines_of(text_of(plan, verbose=True))
    assert lines.index("Warning: PGP203") < lines.index("  tenant.* (1,234 not in git)")
    assert lines[-1].startswith("Plan: ")
    nothing = make_plan(unmanaged=["plugin.legacy"])
    assert lines_of(text_of(nothing))[-1] == "No changes. The platform matches the desired state."
    assert "  plugin.legacy" in lines_of(text_of(nothing))


def test_fresh_install_plan_is_grouped_by_plugin_then_tenant(fresh_plan: Plan) -> None:
    text = text_of(fresh_plan)
    lines = lines_of(text)
    headings = [line for line in lines if re.match(r"^(plugin|tenant) \S+ \(\d+ actions?\)$", line)]
    names = [h.split(" ")[1] for h in headings]
    # plugins in dependency order: each after every plugin it depends on
    plugins = names[:6]
    assert plugins.index("contacts") < plugins.index("crm") < plugins.index("billing")
    assert plugins.index("contacts") < plugins.index("notifications")
    assert names[6:] == ["acme", "globex", "hooli", "initech", "umbrella"]
    summary = fresh_plan.summary
    assert lines[-1] == (
        f"Plan: {summary.add} to add, 0 to change, 0 to destroy, "
        f"{summary.transition} lifecycle transitions."
    )
    for action in fresh_plan.actions:
        assert action.address in text
    assert "  » plugin.crm  REGISTERED → INSTALLING  # desired active: install 1.2.0" in lines
    assert "  + plugin.crm.workload  (create)" in lines
    assert '      + image = "localhost/plexica/crm:1.2.0"' in lines
    assert 'password = { secretRef = { name = "acme-smtp", key = "password" } }' in text
    # with five tenants nothing collapses
    assert "tenant.*" not in text
    assert text_of(fresh_plan, verbose=True) == text


def test_text_is_deterministic(fresh_plan: Plan) -> None:
    assert text_of(fresh_plan) == text_of(fresh_plan)
    assert text_of(tenants_plan(50)) == text_of(tenants_plan(50))


# --- JSON ----------------------------------------------------------------------------------


def test_json_document_shape(fresh_plan: Plan) -> None:
    document = json.loads(render_json(fresh_plan))
    # desired_work_tree only when the example lies in a git work tree (a checkout of this
    # repository), right after desired_revision
    work_tree = ["desired_work_tree"] if fresh_plan.desired_dirty is not None else []
    assert list(document) == [
        "format_version",
        "desired_revision",
        *work_tree,
        "live_fingerprint",
        "summary",
        "actions",
        "warnings",
        "errors",
        "unmanaged",
        "targets",
        "unobserved",
    ]
    assert document["summary"] == {
        "add": fresh_plan.summary.add,
        "change": 0,
        "destroy": 0,
        "transition": fresh_plan.summary.transition,
    }
    assert [a["id"] for a in document["actions"]] == [a.id for a in fresh_plan.actions]
    assert document == plan_to_json(fresh_plan)


def test_json_actions_come_after_what_they_depend_on(fresh_plan: Plan) -> None:
    actions = json.loads(render_json(fresh_plan))["actions"]
    position = {a["id"]: i for i, a in enumerate(actions)}
    assert sum(len(a["depends_on"]) for a in actions) > 0
    for index, action in enumerate(actions):
        for dependency in action["depends_on"]:
            assert position[dependency] < index, (dependency, action["id"])


def test_json_round_trip(fresh_plan: Plan) -> None:
    assert plan_from_json(plan_to_json(fresh_plan)) == fresh_plan
    assert plan_from_json(json.loads(render_json(fresh_plan))) == fresh_plan
    rich_plan = make_plan(
        *crm_upgrade_plan().actions,
        warnings=[
            warning("PGP201", "broker not observed", "Set it."),
            warning("PGV301", "odd", "Fix it.", Location("tenants/acme.yaml", 4, 7), ("acme",)),
        ],
        errors=[error("PGP105", "id changed", "Restore it.", Location("tenants/acme.yaml", 3))],
        unmanaged=["plugin.legacy", "tenant.old"],
        targets=["plugin.crm"],
    )
    restored = plan_from_json(json.loads(render_json(rich_plan)))
    assert restored == rich_plan
    assert restored.warnings[1].location == Location("tenants/acme.yaml", 4, 7)
    assert restored.errors[0].location == Location("tenants/acme.yaml", 3, None)
    assert restored.warnings[0].location is None
    assert restored.actions[1].kind is ActionKind.UPDATE
    assert render_json(restored) == render_json(rich_plan)


def test_json_is_deterministic_and_ends_with_a_newline(fresh_plan: Plan) -> None:
    rendered = render_json(fresh_plan)
    assert rendered == render_json(fresh_plan)
    assert rendered.endswith("}\n") and not rendered.endswith("\n\n")
    assert rendered.startswith('{\n  "format_version": "1.1",\n')


def test_json_refuses_what_it_cannot_trust(fresh_plan: Plan) -> None:
    document = plan_to_json(fresh_plan)
    with pytest.raises(ValueError, match="summary"):
        plan_from_json({**document, "summary": {**document["summary"], "add": 0}})
    with pytest.raises(ValueError, match="not supported"):
        plan_from_json({**document, "format_version": "2.0"})
    with pytest.raises(KeyError):
        plan_from_json({k: v for k, v in document.items() if k != "actions"})
    with pytest.raises(TypeError):
        plan_from_json({**document, "unmanaged": "plugin.x"})


def test_json_carries_each_actions_cause(fresh_plan: Plan) -> None:
    document = json.loads(render_json(fresh_plan))
    assert {a["cause"] for a in document["actions"]} == {"git_change"}
    first = document["actions"][0]
    assert list(first)[:6] == ["id", "address", "action", "step", "reason", "cause"]
    with pytest.raises(ValueError, match="'why-not'"):
        plan_from_json({**document, "actions": [{**first, "cause": "why-not"}]})


def test_a_saved_plan_whose_cause_is_not_the_planners_is_unjustified(fresh_plan: Plan) -> None:
    altered = replace(fresh_plan, actions=list(fresh_plan.actions))
    altered.actions[0] = replace(altered.actions[0], cause=Cause.DRIFT)
    with pytest.raises(UnjustifiedPlanError, match="changed: "):
        check_justified(altered, fresh_plan)
    check_justified(fresh_plan, fresh_plan)


# --- Markdown ------------------------------------------------------------------------------


def assert_balanced(markdown: str) -> None:
    assert markdown.count("<details>") == markdown.count("</details>")
    assert markdown.count("<summary>") == markdown.count("</summary>")
    fences = [line for line in markdown.splitlines() if line.startswith("```")]
    assert len(fences) % 2 == 0
    assert all(f.startswith("```diff") for f in fences[0::2])
    assert all(f == "```" for f in fences[1::2])


def test_markdown_of_the_fresh_install_plan(fresh_plan: Plan) -> None:
    markdown = render_markdown(fresh_plan)
    lines = markdown.splitlines()
    assert lines[0] == "## plexica-gitops plan"
    summary = fresh_plan.summary
    assert "| add | change | destroy | transitions |" in lines
    assert f"| {summary.add} | 0 | 0 | {summary.transition} |" in lines
    assert "<details><summary>plugin crm — 11 actions</summary>" in lines
    assert "+ plugin.crm.workload  (create)" in lines
    assert '+     image = "localhost/plexica/crm:1.2.0"' in lines
    assert "» plugin.crm  REGISTERED → INSTALLING  # desired active: install 1.2.0" in lines
    assert any(line.startswith("<details><summary>tenants — ") for line in lines)
    assert "truncated" not in markdown
    assert_balanced(markdown)
    assert markdown == render_markdown(fresh_plan)
    assert markdown.endswith("</details>\n")


def test_markdown_diff_prefixes() -> None:
    markdown = render_markdown(crm_upgrade_plan())
    lines = markdown.splitlines()
    assert "! plugin.crm  (update)" in lines
    assert '!     version = "1.2.0" -> "1.3.0"' in lines
    assert "      # (1 unchanged attribute hidden)" in lines
    assert "! plugin.crm.workload  (replace)" in lines
    assert "- plugin.crm.routes  (delete)" in lines
    assert '-     base_path = "/api/plugins/crm"' in lines
    assert "» plugin.crm  ACTIVE → DISABLED  # disable it" in lines
    assert "+ plugin.crm.permissions  (create)" in lines
    assert "<details><summary>plugin crm — 5 actions</summary>" in lines
    assert "| 1 | 2 | 1 | 1 |" in lines


def test_markdown_collapses_tenants_like_the_text() -> None:
    markdown = render_markdown(tenants_plan(3_000))
    assert (
        "+ tenant.*.migrations.crm  apply in 3,000 tenants (t0000, t0001, t0002, … and 2,997 more)"
        in markdown.splitlines()
    )
    assert "<details><summary>tenants — 9,000 actions in 3,000 tenants</summary>" in markdown
    assert "truncated" not in markdown
    assert len(markdown) < 5_000
    assert_balanced(markdown)


def huge_plan(count: int) -> Plan:
    actions = [
        Action(
            f"plugin.p{i // 50:03d}.r{i % 50:02d}",
            "create",
            C,
            "new in git",
            after={"image": f"localhost/plexica/p{i // 50:03d}:1.0.{i % 50}", "replicas": 2},
            plugin=f"p{i // 50:03d}",
        )
        for i in range(count)
    ]
    return make_plan(*actions, unmanaged=["plugin.legacy"])


def test_markdown_is_capped_with_an_exact_count_of_what_was_left_out() -> None:
    plan = huge_plan(20_000)
    markdown = render_markdown(plan)
    assert len(markdown) <= 65_536
    shown = len(re.findall(r"^\+ plugin\.p\d{3}\.r\d{2}  \(create\)$", markdown, re.MULTILINE))
    assert 0 < shown < 20_000
    hidden = 20_000 - shown
    assert markdown.endswith(
        f"_… truncated — {hidden:,} more actions not shown; "
        "run plexica-gitops show PLANFILE for the full plan._\n"
    )
    assert_balanced(markdown)
    assert "| 20,000 | 0 | 0 | 0 |" in markdown
    assert markdown == render_markdown(plan)


@pytest.mark.parametrize("limit", [700, 1_000, 2_345, 4_096, 10_000, 30_000])
def test_markdown_never_exceeds_the_limit(limit: int) -> None:
    plan = huge_plan(600)
    markdown = render_markdown(plan, limit=limit)
    assert len(markdown) <= limit
    assert_balanced(markdown)
    shown = len(re.findall(r"^\+ plugin\.p\d{3}\.r\d{2}  \(create\)$", markdown, re.MULTILINE))
    assert f"_… truncated — {600 - shown:,} more actions not shown;" in markdown


def test_markdown_refuses_a_limit_too_small_for_the_notice() -> None:
    with pytest.raises(ValueError, match="too small"):
        render_markdown(huge_plan(10), limit=50)


def test_markdown_escapes_plan_strings() -> None:
    plan = make_plan(
        crm_upgrade_plan().actions[-1],
        warnings=[
            warning(
                "PGP203",
                "topic `a|b` <script> uses *stars* and [links](x)",
                "Use `x`.",
                Location("tenants/a`b.yaml", 2),
            )
        ],
    )
    markdown = render_markdown(plan, title="plan | for `main`")
    assert markdown.startswith("## plan \\| for \\`main\\`\n")
    assert "topic \\`a\\|b\\` &lt;script&gt; uses \\*stars\\* and \\[links\\](x)" in markdown
    assert "at `` tenants/a`b.yaml:2 ``" in markdown
    assert md_escape("a|b") == "a\\|b"
    assert md_code("a`b") == "`` a`b ``"
    backticks = make_plan(
        Action("plugin.x.routes", "create", C, "```", after={"base_path": "```"}, plugin="x")
    )
    assert_balanced(render_markdown(backticks).replace("````", "```"))


def test_markdown_lists_unmanaged_objects() -> None:
    plan = make_plan(
        *crm_upgrade_plan().actions,
        unmanaged=["plugin.legacy", *(f"tenant.old{i}" for i in range(40))],
    )
    markdown = render_markdown(plan)
    assert "- `plugin.legacy`" in markdown
    assert "- `tenant.*` (40 not in git)" in markdown


def test_repeated_warnings_are_capped_unless_verbose() -> None:
    warnings = [
        warning("PGP102", f"migration 0001_x of 'crm' is applied in tenant 't{i}'", "Restore it.")
        for i in range(8)
    ]
    plan = make_plan(*crm_upgrade_plan().actions, warnings=warnings)
    lines = lines_of(text_of(plan))
    assert lines.count("Warning: PGP102") == 5
    assert "  … and 3 more PGP102 warnings (--verbose shows all)" in lines
    assert lines_of(text_of(plan, verbose=True)).count("Warning: PGP102") == 8
