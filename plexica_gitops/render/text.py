"""Plans as text for people, in Terraform's conventions.

`print_plan` writes a legend of the symbols used, then one section per plugin (in the order
plugins first appear in the plan, each with its actions in plan order), then the tenants,
then warnings, unmanaged objects and the summary line. Every action gets a `# … will be
created — reason` comment and its attribute lines (`+ image = "…"`, `~ version = "1.2.0" ->
"1.3.0"`, `- base_path = "…"`); a lifecycle transition is one line (`» plugin.crm
REGISTERED → INSTALLING`).

Large plans stay readable: tenant-scoped actions with the same step on the same kind of
address (`tenant.*.migrations.crm:apply`) collapse into one line in a "Tenants" section when
they involve more than `collapse_over` tenants; `verbose=True` lists every one under its
tenant instead. Unchanged attributes of an update are counted, not shown. At the top level
of an update, attributes present on one side only (observed-only ones such as
`ready_replicas`, desired-only ones such as env names) are not compared.

The grouping and attribute-line helpers here are shared with `render_markdown`. Colour is
rich markup only (rich drops it on consoles that are not terminals) and every string that
comes from the plan is escaped.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import RE_TAGS, escape

from plexica_gitops.addresses import parsed_or_none, with_any_tenant
from plexica_gitops.findings import Finding
from plexica_gitops.live.model import ObservedPart
from plexica_gitops.plan.model import SYMBOLS, Action, ActionKind, Plan, Summary
from plexica_gitops.sensitive import SENSITIVE, mask

COLLAPSE_OVER = 5  # tenant actions of one step collapse when more tenants than this
NAMES_SHOWN = 3  # tenant names listed on a collapsed line
INLINE_WIDTH = 72  # lists and dicts longer than this (inline) are shown as blocks

KIND_ORDER = (
    ActionKind.CREATE,
    ActionKind.UPDATE,
    ActionKind.REPLACE,
    ActionKind.DELETE,
    ActionKind.TRANSITION,
)
LEGEND = {
    ActionKind.CREATE: "create",
    ActionKind.UPDATE: "update in place",
    ActionKind.REPLACE: "replace",
    ActionKind.DELETE: "destroy",
    ActionKind.TRANSITION: "lifecycle transition",
}
KIND_STYLE = {
    ActionKind.CREATE: "green",
    ActionKind.UPDATE: "yellow",
    ActionKind.REPLACE: "magenta",
    ActionKind.DELETE: "red",
    ActionKind.TRANSITION: "cyan",
}
SIGN_STYLE = {"+": "green", "-": "red", "~": "yellow"}
VERB = {
    ActionKind.CREATE: "will be created",
    ActionKind.UPDATE: "will be updated in place",
    ActionKind.REPLACE: "must be replaced",
    ActionKind.DELETE: "will be destroyed",
    ActionKind.TRANSITION: "will change lifecycle status",
}

# --- values and attribute lines ------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/@-]*$")


def format_key(key: object) -> str:
    """An attribute name as shown: bare when simple, JSON-quoted otherwise."""
    text = str(key)
    return text if _BARE_KEY.match(text) else json.dumps(text, ensure_ascii=False)


def format_scalar(value: Any) -> str:
    if isinstance(value, str):
        return SENSITIVE if value == SENSITIVE else json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def format_inline(value: Any) -> str:
    """One-line form: strings quoted, `(sensitive)` bare, `[a, b]`, `{ k = v }`."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = ", ".join(f"{format_key(k)} = {format_inline(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_inline(v) for v in value) + "]"
    return format_scalar(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (so `1` and `true` differ, and key order does not matter)."""
    return a is b or _canonical(a) == _canonical(b)


@dataclass(frozen=True, slots=True)
class AttributeLine:
    """One attribute line under an action.

    `sign` is what the line shows ("+", "-", "~", or "" for closing brackets and notes);
    `tone` is the change the line belongs to ("" for notes such as hidden-attribute counts);
    `depth` is the nesting level inside the action."""

    sign: str
    tone: str
    depth: int
    text: str


def value_lines(sign: str, label: str, value: Any, depth: int) -> list[AttributeLine]:
    """`label` followed by `value`, inline when short, else as a nested block."""
    inline = format_inline(value)
    if not isinstance(value, dict | list | tuple) or len(inline) <= INLINE_WIDTH:
        return [AttributeLine(sign, sign, depth, label + inline)]
    lines: list[AttributeLine]
    if isinstance(value, dict):
        lines = [AttributeLine(sign, sign, depth, label + "{")]
        for key, item in value.items():
            lines += value_lines(sign, f"{format_key(key)} = ", item, depth + 1)
        lines.append(AttributeLine("", sign, depth, "}"))
        return lines
    lines = [AttributeLine(sign, sign, depth, label + "[")]
    for item in value:
        lines += value_lines(sign, "", item, depth + 1)
    lines.append(AttributeLine("", sign, depth, "]"))
    return lines


def _hidden(count: int, noun: str, depth: int) -> AttributeLine:
    return AttributeLine(
        "", "", depth, f"# ({count:,} unchanged {noun}{'s' * (count != 1)} hidden)"
    )


def _list_diff(
    label: str, old: Sequence[Any], new: Sequence[Any], depth: int
) -> list[AttributeLine]:
    lines = [AttributeLine("~", "~", depth, label + "[")]
    matcher = difflib.SequenceMatcher(
        a=[_canonical(x) for x in old], b=[_canonical(x) for x in new], autojunk=False
    )
    unchanged = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            unchanged += i2 - i1
            continue
        for item in old[i1:i2]:
            lines += value_lines("-", "", item, depth + 1)
        for item in new[j1:j2]:
            lines += value_lines("+", "", item, depth + 1)
    if unchanged:
        lines.append(_hidden(unchanged, "element", depth + 1))
    lines.append(AttributeLine("", "~", depth, "]"))
    return lines


def _changed_lines(label: str, old: Any, new: Any, depth: int) -> list[AttributeLine]:
    if isinstance(old, dict) and isinstance(new, dict):
        inner = diff_lines(old, new, depth + 1)
        return [
            AttributeLine("~", "~", depth, label + "{"),
            *inner,
            AttributeLine("", "~", depth, "}"),
        ]
    if (
        isinstance(old, list | tuple)
        and isinstance(new, list | tuple)
        and max(len(format_inline(old)), len(format_inline(new))) > INLINE_WIDTH
    ):
        return _list_diff(label, old, new, depth)
    return [AttributeLine("~", "~", depth, f"{label}{format_inline(old)} -> {format_inline(new)}")]


def diff_lines(
    before: dict[str, Any],
    after: dict[str, Any],
    depth: int = 0,
    *,
    compare_only_shared: bool = False,
) -> list[AttributeLine]:
    """Changed attributes only (`~ k = old -> new`, `+ k = new`, `- k = old`), then a count
    of the unchanged ones. With `compare_only_shared`, keys on one side only are skipped."""
    lines: list[AttributeLine] = []
    unchanged = 0
    keys = [*after, *(k for k in before if k not in after)]
    for key in keys:
        label = f"{format_key(key)} = "
        if key in before and key in after:
            if _same(before[key], after[key]):
                unchanged += 1
            else:
                lines += _changed_lines(label, before[key], after[key], depth)
        elif compare_only_shared:
            continue
        elif key in after:
            lines += value_lines("+", label, after[key], depth)
        else:
            lines += value_lines("-", label, before[key], depth)
    if unchanged:
        lines.append(_hidden(unchanged, "attribute", depth))
    return lines


def _all_lines(sign: str, values: dict[str, Any]) -> list[AttributeLine]:
    lines: list[AttributeLine] = []
    for key, value in values.items():
        lines += value_lines(sign, f"{format_key(key)} = ", value, 0)
    return lines


def _masked(values: dict[str, Any] | None) -> dict[str, Any] | None:
    # The planner masks already; masking again here keeps a hand-made or old plan honest.
    if values is None:
        return None
    masked = mask(values)
    return masked if isinstance(masked, dict) else {"value": masked}


def attribute_lines(action: Action) -> list[AttributeLine]:
    """What changes, attribute by attribute (nothing for a lifecycle transition)."""
    if action.kind is ActionKind.TRANSITION:
        return []
    before, after = _masked(action.before), _masked(action.after)
    if action.kind is ActionKind.CREATE or before is None:
        return _all_lines("+", after or {})
    if action.kind is ActionKind.DELETE or after is None:
        return _all_lines("-", before)
    return diff_lines(before, after, compare_only_shared=True)


def _status(values: dict[str, Any] | None) -> str:
    if not values:
        return "(none)"
    status = values.get("status")
    return str(status) if status is not None else format_inline(mask(values))


def transition_text(action: Action) -> str:
    """`plugin.crm  REGISTERED → INSTALLING` (no symbol)."""
    return f"{action.address}  {_status(action.before)} → {_status(action.after)}"


def comment_text(action: Action) -> str:
    """`# plugin.crm.workload will be created — reason`."""
    tail = f" — {action.reason}" if action.reason else ""
    return f"# {action.address} {VERB[action.kind]}{tail}"


# --- grouping --------------------------------------------------------------------------


def tenant_of(action: Action) -> str | None:
    if action.tenant is not None:
        return action.tenant
    address = parsed_or_none(action.address)
    return address.tenant if address else None


def generic_address(action: Action) -> str:
    """`tenant.acme.migrations.crm` -> `tenant.*.migrations.crm`."""
    tenant = tenant_of(action)
    if tenant is None:
        return action.address
    return with_any_tenant(action.address, tenant)


@dataclass(frozen=True, slots=True)
class Collapsed:
    """The same step on the same kind of address in many tenants, shown as one line."""

    address: str  # with the tenant as `*`
    step: str
    kind: ActionKind
    actions: tuple[Action, ...]

    @property
    def tenants(self) -> list[str]:
        return [tenant_of(a) or "?" for a in self.actions]

    def line_text(self) -> str:
        """`tenant.*.migrations.crm  apply in 3,000 tenants (acme, globex, hooli, … and
        2,997 more)` (no symbol)."""
        names = self.tenants
        shown = ", ".join(names[:NAMES_SHOWN])
        more = len(names) - NAMES_SHOWN
        listed = f"{shown}, … and {more:,} more" if more > 0 else shown
        return f"{self.address}  {self.step} in {len(names):,} tenants ({listed})"

    def comment_text(self) -> str:
        reasons = {a.reason for a in self.actions}
        tail = (
            f" — {next(iter(reasons))}"
            if len(reasons) == 1
            else f" — {len(reasons):,} different reasons"
        )
        return f"# {self.address} {VERB[self.kind]} in {len(self.actions):,} tenants{tail}"

    def attribute_lines(self) -> list[AttributeLine] | None:
        """The shared attribute lines when every tenant's change is identical, else None."""
        first = self.actions[0]
        for other in self.actions[1:]:
            if not (_same(other.before, first.before) and _same(other.after, first.after)):
                return None
        return attribute_lines(first)


Item = Action | Collapsed


@dataclass(slots=True)
class Section:
    """`scope` is "plugin" (name: plugin id), "tenants" (the collapsed lines), "tenant"
    (name: tenant slug) or "other" (actions of neither)."""

    scope: str
    name: str
    items: list[Item] = field(default_factory=list)

    @property
    def action_count(self) -> int:
        return sum(len(i.actions) if isinstance(i, Collapsed) else 1 for i in self.items)

    @property
    def title(self) -> str:
        if self.scope in ("plugin", "tenant"):
            return f"{self.scope} {self.name}"
        return {"tenants": "Tenants", "other": "Other"}[self.scope]


def plan_sections(
    actions: Sequence[Action], *, verbose: bool = False, collapse_over: int = COLLAPSE_OVER
) -> list[Section]:
    """Plugins (in the order the plan reaches them), other, the collapsed tenant lines, then
    each tenant (first-appearance order); items in plan order within each section."""
    plugins: dict[str, Section] = {}
    other = Section("other", "")
    tenant_actions: list[Action] = []
    for action in actions:
        if tenant_of(action) is not None:
            tenant_actions.append(action)
        elif action.plugin is not None:
            plugins.setdefault(action.plugin, Section("plugin", action.plugin)).items.append(action)
        else:
            other.items.append(action)
    groups: dict[tuple[str, str, ActionKind], list[Action]] = {}
    if not verbose:
        for action in tenant_actions:
            key = (generic_address(action), action.step, action.kind)
            groups.setdefault(key, []).append(action)
    collapsed = {key for key, group in groups.items() if len(group) > collapse_over}
    tenants_section = Section(
        "tenants",
        "",
        [Collapsed(k[0], k[1], k[2], tuple(g)) for k, g in groups.items() if k in collapsed],
    )
    per_tenant: dict[str, Section] = {}
    for action in tenant_actions:
        if (generic_address(action), action.step, action.kind) in collapsed:
            continue
        slug = tenant_of(action) or "?"
        per_tenant.setdefault(slug, Section("tenant", slug)).items.append(action)

    # Plugins in the order the plan reaches them, so a fresh install reads in dependency
    # order: registration (wave 0 for every plugin) does not count.
    def reached(section: Section) -> tuple[int, int]:
        waves = [a.wave for a in section.items if isinstance(a, Action) and a.step != "register"]
        return (min(waves, default=0), list(plugins).index(section.name))

    ordered = sorted(plugins.values(), key=reached)
    sections = [*ordered, other, tenants_section, *per_tenant.values()]
    return [s for s in sections if s.items]


# --- shared text ---------------------------------------------------------------------------


def summary_line(summary: Summary) -> str:
    """`Plan: 12 to add, 3 to change, 1 to destroy, 5 lifecycle transitions.`"""
    transitions = "transition" if summary.transition == 1 else "transitions"
    return (
        f"Plan: {summary.add:,} to add, {summary.change:,} to change, "
        f"{summary.destroy:,} to destroy, {summary.transition:,} lifecycle {transitions}."
    )


NO_CHANGES = "No changes. The platform matches the desired state."


def unobserved_line(parts: Sequence[str]) -> str:
    """`Not observed: broker (topics not compared); planned with --unobserved broker.`"""
    named = ", ".join(f"{p} ({ObservedPart(p).holds} not compared)" for p in parts)
    flags = " ".join(f"--unobserved {p}" for p in parts)
    return f"Not observed: {named}; planned with {flags}."


def no_changes_line(plan: Plan) -> str:
    """NO_CHANGES, unless part of the platform was not observed: then only what was."""
    if not plan.unobserved:
        return NO_CHANGES
    holds = " and ".join(ObservedPart(p).holds for p in plan.unobserved)
    return (
        f"No changes in what was observed. {holds.capitalize()} were not observed: this plan "
        "cannot say they match the desired state."
    )


def unrecorded_line(count: int) -> str:
    """Said when apply writes last-applied rows for what was in sync (`Plan.unrecorded`)."""
    resources = f"{count:,} resource{'s' * (count != 1)}"
    return (
        f"Apply also records what was last applied at {resources} in sync with git that "
        "have no record of it, so that a later change there out of band is told as drift."
    )


def failed_line(errors: int) -> str:
    return f"Plan failed: {errors:,} error{'s' * (errors != 1)}."


@dataclass(frozen=True, slots=True)
class UnmanagedLine:
    """One address, or (`count` set) a kind collapsed to `tenant.*`."""

    address: str
    count: int | None = None

    @property
    def objects(self) -> int:
        return 1 if self.count is None else self.count

    def text(self) -> str:
        return self.address if self.count is None else f"{self.address} ({self.count:,} not in git)"


def unmanaged_lines(
    unmanaged: Sequence[str], *, verbose: bool = False, collapse_over: int = COLLAPSE_OVER
) -> list[UnmanagedLine]:
    """Addresses on the platform that git does not manage; each kind (`tenant`, `plugin`,
    `topic`) collapses to `tenant.* (1,234 not in git)` when it has more than
    `collapse_over`."""
    by_kind: dict[str, list[str]] = {}
    for address in unmanaged:
        parsed = parsed_or_none(address)
        by_kind.setdefault(parsed.kind.value if parsed else address, []).append(address)
    lines: list[UnmanagedLine] = []
    for kind, addresses in by_kind.items():
        if len(addresses) > collapse_over and not verbose:
            lines.append(UnmanagedLine(f"{kind}.*", len(addresses)))
        else:
            lines += [UnmanagedLine(a) for a in addresses]
    return lines


# --- printing ------------------------------------------------------------------------------


class _Out:
    """Collects markup lines; `flush` prints them in one call (one call per line is slow
    for plans of thousands of actions). Where no style can show (a file, a pipe: what CI
    posts), the lines are written as rich would write them, without its markup parser,
    which costs 50 µs a line (20 s for a --verbose plan of 40,000 actions)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[str] = []
        self.plain = console.color_system is None and not console.is_terminal and not console.record

    def __call__(self, markup: str = "") -> None:
        self.lines.append(markup)
        if len(self.lines) >= 256:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        text = "\n".join(self.lines)
        self.lines = []
        if not self.plain:
            self.console.print(text, highlight=False, emoji=False, soft_wrap=True)
            return
        plain = unmarked(text)
        if _RICH_CHANGES.search(plain):
            self.console.out(plain, highlight=False)  # tabs expanded, control codes dropped
            return
        self.console.file.write(plain + "\n")
        self.console.file.flush()


# What rich's Text changes in plain text: tabs (expanded) and the control codes it strips.
_RICH_CHANGES = re.compile(r"[\t\x07\x08\x0b\x0c\x0d]")


def unmarked(markup: str) -> str:
    """The text of `markup` without its tags, as rich's markup parser reads it
    (``rich.markup.render``): a tag is dropped, an escaped one (odd backslashes) kept as
    text, an even run of backslashes before a tag halved, and in the text between tags
    ``\\[`` is ``[``."""
    if "[" not in markup:
        return markup
    parts: list[str] = []
    position = 0
    for match in RE_TAGS.finditer(markup):
        full_text, escapes, _ = match.groups()
        start, end = match.span()
        if start > position:
            parts.append(markup[position:start].replace("\\[", "["))
        position = end
        if escapes:
            backslashes, escaped = divmod(len(escapes), 2)
            parts.append("\\" * backslashes)
            if escaped:
                parts.append(full_text[len(escapes) :])
    parts.append(markup[position:].replace("\\[", "["))
    return "".join(parts)


def _styled(style: str, text: str) -> str:
    return f"[{style}]{escape(text)}[/{style}]"


def _symbol(kind: ActionKind) -> str:
    return _styled(KIND_STYLE[kind], SYMBOLS[kind].rjust(3))


def _print_attribute_lines(out: _Out, lines: Sequence[AttributeLine]) -> None:
    for line in lines:
        indent = " " * (6 + 4 * line.depth)
        if line.sign:
            out(f"{indent}{_styled(SIGN_STYLE[line.sign], line.sign)} {escape(line.text)}")
        elif line.tone:
            out(f"{indent}  {escape(line.text)}")
        else:
            out(f"{indent}  {_styled('dim', line.text)}")


def _print_action(out: _Out, action: Action) -> None:
    if action.kind is ActionKind.TRANSITION:
        reason = f"  {_styled('dim', '# ' + action.reason)}" if action.reason else ""
        out(f"{_symbol(action.kind)} {escape(transition_text(action))}{reason}")
        return
    out(f"  {_styled('dim', comment_text(action))}")
    out(f"{_symbol(action.kind)} {_styled('bold', action.address)}  ({escape(action.step)})")
    _print_attribute_lines(out, attribute_lines(action))


def _print_collapsed(out: _Out, item: Collapsed) -> None:
    out(f"  {_styled('dim', item.comment_text())}")
    out(f"{_symbol(item.kind)} {escape(item.line_text())}")
    lines = item.attribute_lines()
    if lines is None:
        out(f"        {_styled('dim', '# (attributes differ per tenant: --verbose lists each)')}")
    else:
        _print_attribute_lines(out, lines)


def _section_heading(section: Section) -> str:
    count = section.action_count
    noun = f"{count:,} action{'s' * (count != 1)}"
    if section.scope == "tenants":
        tenants = {t for i in section.items if isinstance(i, Collapsed) for t in i.tenants}
        detail = f"{noun} in {len(tenants):,} tenants, collapsed; --verbose lists each"
    else:
        detail = noun
    return (
        f"[bold underline]{escape(section.title)}[/bold underline] {_styled('dim', f'({detail})')}"
    )


def _print_findings(
    out: _Out,
    label: str,
    style: str,
    findings: Sequence[Finding],
    *,
    cap: int | None = None,
) -> None:
    shown: dict[str, int] = {}
    for finding in findings:
        shown[finding.code] = shown.get(finding.code, 0) + 1
        if cap is not None and shown[finding.code] > cap:
            continue
        where = f" at {finding.location}" if finding.location else ""
        out(f"[{style}]{label}:[/{style}] [bold]{escape(finding.code)}[/bold]{escape(where)}")
        out(f"  {escape(finding.message)}")
        if finding.hint:
            out(f"  [dim]hint:[/dim] {escape(finding.hint)}")
    if cap is not None:
        for code, count in shown.items():
            if count > cap:
                more = count - cap
                out(
                    f"  [dim]… and {more:,} more {escape(code)} "
                    f"{label.lower()}{'s' * (more != 1)} (--verbose shows all)[/dim]"
                )
    out()


def _print_unmanaged(out: _Out, plan: Plan, verbose: bool, collapse_over: int) -> None:
    if not plan.unmanaged:
        return
    out("[bold]Unmanaged[/bold] [dim](on the platform, not in git; left alone):[/dim]")
    for line in unmanaged_lines(plan.unmanaged, verbose=verbose, collapse_over=collapse_over):
        out(f"  {escape(line.text())}")
    out()


def print_plan(
    plan: Plan,
    console: Console,
    *,
    verbose: bool = False,
    collapse_over: int = COLLAPSE_OVER,
) -> None:
    """Write `plan` for people to `console`. `verbose` lists every tenant action instead of
    collapsing those repeated in more than `collapse_over` tenants."""
    out = _Out(console)
    try:
        _write_plan(out, plan, verbose, collapse_over)
    finally:
        out.flush()


def _write_plan(out: _Out, plan: Plan, verbose: bool, collapse_over: int) -> None:
    warning_cap = None if verbose else collapse_over
    if plan.errors:
        _print_findings(out, "Error", "bold red", plan.errors)
        if plan.warnings:
            _print_findings(out, "Warning", "yellow", plan.warnings, cap=warning_cap)
        out(_styled("bold red", failed_line(len(plan.errors))))
        return
    if not plan.actions:
        if plan.warnings:
            _print_findings(out, "Warning", "yellow", plan.warnings, cap=warning_cap)
        _print_unmanaged(out, plan, verbose, collapse_over)
        if plan.unobserved:
            out(_styled("yellow", unobserved_line(plan.unobserved)))
            out(_styled("bold yellow", no_changes_line(plan)))
        else:
            out(f"[bold green]No changes.[/bold green] {escape(NO_CHANGES.split('. ', 1)[1])}")
        _print_unrecorded(out, plan)
        return
    out(f"Desired revision: {escape(plan.desired_revision)}")
    out(f"Live state:       {escape(plan.live_fingerprint)}")
    if plan.unobserved:
        out(_styled("yellow", unobserved_line(plan.unobserved)))
    out()
    out("Actions are indicated with the following symbols:")
    used = {a.kind for a in plan.actions}
    for kind in KIND_ORDER:
        if kind in used:
            out(f"{_symbol(kind)} {LEGEND[kind]}")
    out()
    if plan.targets:
        out(
            "[yellow]Note:[/yellow] this plan is limited to "
            f"{escape(', '.join(plan.targets))} and what they depend on."
        )
        out()
    for section in plan_sections(plan.actions, verbose=verbose, collapse_over=collapse_over):
        out(_section_heading(section))
        out()
        for item in section.items:
            if isinstance(item, Collapsed):
                _print_collapsed(out, item)
            else:
                _print_action(out, item)
            out()
    if plan.warnings:
        _print_findings(out, "Warning", "yellow", plan.warnings, cap=warning_cap)
    _print_unmanaged(out, plan, verbose, collapse_over)
    out(f"[bold]{escape(summary_line(plan.summary))}[/bold]")
    _print_unrecorded(out, plan)


def _print_unrecorded(out: _Out, plan: Plan) -> None:
    if plan.unrecorded:
        out(escape(unrecorded_line(len(plan.unrecorded))))
