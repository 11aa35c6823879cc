"""Plans as GitHub-flavoured Markdown, for a pull-request comment.

A heading, a summary table, errors and warnings as lists, then one collapsible `<details>`
per plugin with its actions as a ```diff block (`+` create, `-` destroy, `!` update or
replace, `»` lifecycle transition; attribute lines carry the sign of their change, so GitHub
colours additions and removals), one `<details>` for all tenants (actions repeated in more
than five tenants collapsed to one line, as in the text renderer), and unmanaged objects.

The result never exceeds `limit` characters (GitHub refuses comments over 65,536): when the
next section would not fit, as many of its actions as fit are shown, every open block is
closed, and an explicit line says how many actions were left out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from plexica_gitops.findings import Finding
from plexica_gitops.plan.model import Action, ActionKind, Plan
from plexica_gitops.render.text import (
    AttributeLine,
    Collapsed,
    Section,
    attribute_lines,
    comment_text,
    failed_line,
    no_changes_line,
    plan_sections,
    summary_line,
    tenant_of,
    transition_text,
    unmanaged_lines,
    unobserved_line,
    unrecorded_line,
)

DEFAULT_LIMIT = 65_536
MARKER = {
    ActionKind.CREATE: "+",
    ActionKind.UPDATE: "!",
    ActionKind.REPLACE: "!",
    ActionKind.DELETE: "-",
    ActionKind.TRANSITION: "»",
}
TONE_MARKER = {"+": "+", "-": "-", "~": "!", "": " "}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_BACKTICKS = re.compile(r"`+")


def md_escape(text: str) -> str:
    """Text that Markdown shows as written: HTML and emphasis characters neutralised,
    pipes escaped (so it is safe in a table cell), one line."""
    text = " ".join(text.splitlines())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def md_code(text: str) -> str:
    """Inline code that holds any text, backticks included."""
    text = " ".join(text.splitlines())
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fence(lines: Sequence[str]) -> str:
    longest = max((len(m) for line in lines for m in _BACKTICKS.findall(line)), default=0)
    return "`" * max(3, longest + 1)


def _attribute_diff(lines: Sequence[AttributeLine]) -> list[str]:
    return [f"{TONE_MARKER[line.tone]} {'    ' * (line.depth + 1)}{line.text}" for line in lines]


def action_diff(action: Action) -> list[str]:
    """The diff-block lines of one action."""
    if action.kind is ActionKind.TRANSITION:
        reason = f"  # {action.reason}" if action.reason else ""
        return [f"» {transition_text(action)}{reason}"]
    return [
        comment_text(action),
        f"{MARKER[action.kind]} {action.address}  ({action.step})",
        *_attribute_diff(attribute_lines(action)),
    ]


def collapsed_diff(item: Collapsed) -> list[str]:
    lines = [item.comment_text(), f"{MARKER[item.kind]} {item.line_text()}"]
    shared = item.attribute_lines()
    if shared is None:
        lines.append("      # (attributes differ per tenant: `show --verbose` lists each)")
    else:
        lines += _attribute_diff(shared)
    return lines


@dataclass
class _Unit:
    """Lines that are shown whole or not at all, and what they account for."""

    lines: list[str]
    category: str = ""  # "actions", "errors", "warnings", "unmanaged objects" or ""
    count: int = 0


@dataclass
class _Writer:
    budget: int
    lines: list[str] = field(default_factory=list)
    size: int = 0
    truncated: bool = False
    hidden: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def cost(lines: Sequence[str]) -> int:
        return sum(len(line) + 1 for line in lines)

    def hide(self, units: Sequence[_Unit]) -> None:
        for unit in units:
            if unit.category:
                self.hidden[unit.category] = self.hidden.get(unit.category, 0) + unit.count

    def block(self, opener: list[str], units: Sequence[_Unit], closer: list[str]) -> None:
        """Write `opener`, as many whole units as fit, and `closer`; or nothing when not
        even the first unit fits. Anything left out truncates the rest of the document."""
        if self.truncated:
            self.hide(units)
            return
        used = self.size + self.cost(opener) + self.cost(closer)
        fitting = 0
        for unit in units:
            cost = self.cost(unit.lines)
            if used + cost > self.budget:
                break
            used += cost
            fitting += 1
        if used > self.budget or (units and fitting == 0):
            self.truncated = True
            self.hide(units)
            return
        self.lines += opener
        for unit in units[:fitting]:
            self.lines += unit.lines
        self.lines += closer
        self.size = used
        if fitting < len(units):
            self.truncated = True
            self.hide(units[fitting:])


def _footer(category: str, count: int) -> str:
    return (
        f"_… truncated — {count:,} more {category} not shown; "
        "run plexica-gitops show PLANFILE for the full plan._"
    )


def _finding_units(findings: Sequence[Finding], category: str) -> list[_Unit]:
    units = []
    for finding in findings:
        where = f" at {md_code(str(finding.location))}" if finding.location else ""
        lines = [f"- **{md_escape(finding.code)}**{where}: {md_escape(finding.message)}"]
        if finding.hint:
            lines.append(f"  _Hint:_ {md_escape(finding.hint)}")
        units.append(_Unit(lines, category, 1))
    return units


def _details(writer: _Writer, summary: str, units: list[_Unit]) -> None:
    fence = _fence([line for unit in units for line in unit.lines])
    writer.block(
        [f"<details><summary>{html.escape(summary)}</summary>", "", fence + "diff"],
        units,
        [fence, "", "</details>", ""],
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _section_units(section: Section, *, tenant_comments: bool = False) -> list[_Unit]:
    units = []
    current: str | None = None
    for item in section.items:
        if isinstance(item, Collapsed):
            units.append(_Unit(collapsed_diff(item), "actions", len(item.actions)))
            continue
        lines = action_diff(item)
        tenant = tenant_of(item)
        if tenant_comments and tenant != current:
            lines = [f"# ── tenant {tenant} ──", *lines]
            current = tenant
        units.append(_Unit(lines, "actions", 1))
    return units


def _write_actions(writer: _Writer, plan: Plan) -> None:
    sections = plan_sections(plan.actions)
    tenant_sections = [s for s in sections if s.scope in ("tenants", "tenant")]
    for section in sections:
        if section.scope in ("plugin", "other"):
            summary = f"{section.title} — {_count(section.action_count, 'action')}"
            _details(writer, summary, _section_units(section))
    if tenant_sections:
        merged = Section("tenants", "", [i for s in tenant_sections for i in s.items])
        tenants = {
            t
            for item in merged.items
            for t in (item.tenants if isinstance(item, Collapsed) else [tenant_of(item)])
        }
        summary = (
            f"tenants — {_count(merged.action_count, 'action')} in {_count(len(tenants), 'tenant')}"
        )
        _details(writer, summary, _section_units(merged, tenant_comments=True))


def render_markdown(
    plan: Plan, *, limit: int = DEFAULT_LIMIT, title: str = "plexica-gitops plan"
) -> str:
    """The plan as a pull-request comment of at most `limit` characters."""
    totals = {
        "actions": len(plan.actions),
        "errors": len(plan.errors),
        "warnings": len(plan.warnings),
        "unmanaged objects": len(plan.unmanaged),
    }
    reserve = max(len(_footer(c, n)) for c, n in totals.items()) + 2
    if limit < reserve:
        raise ValueError(f"limit {limit:,} is too small for a plan comment (at least {reserve:,})")
    writer = _Writer(limit - reserve)
    writer.block([f"## {md_escape(title)}", ""], [], [])
    if plan.errors:
        writer.block([f"**{failed_line(len(plan.errors))}**", ""], [], [])
        writer.block(["**Errors**", ""], _finding_units(plan.errors, "errors"), [""])
    else:
        summary = plan.summary
        writer.block(
            [
                "| add | change | destroy | transitions |",
                "|----:|-------:|--------:|------------:|",
                f"| {summary.add:,} | {summary.change:,} | {summary.destroy:,} "
                f"| {summary.transition:,} |",
                "",
                f"**{summary_line(summary) if plan.actions else no_changes_line(plan)}**",
                "",
                f"Desired revision {md_code(plan.desired_revision)}, "
                f"live state {md_code(plan.live_fingerprint)}.",
                "",
                *(
                    [f"> **{md_escape(unobserved_line(plan.unobserved))}**", ""]
                    if plan.unobserved
                    else []
                ),
                *(
                    [md_escape(unrecorded_line(len(plan.unrecorded))), ""]
                    if plan.unrecorded
                    else []
                ),
            ],
            [],
            [],
        )
        if plan.targets:
            targets = ", ".join(md_code(t) for t in plan.targets)
            writer.block([f"> Limited to {targets} and what they depend on.", ""], [], [])
    if plan.warnings:
        writer.block(["**Warnings**", ""], _finding_units(plan.warnings, "warnings"), [""])
    if not plan.errors:
        _write_actions(writer, plan)
    if plan.unmanaged:
        units = [
            _Unit(
                [f"- {md_code(line.address)}"]
                if line.count is None
                else [f"- {md_code(line.address)} ({line.count:,} not in git)"],
                "unmanaged objects",
                line.objects,
            )
            for line in unmanaged_lines(plan.unmanaged)
        ]
        writer.block(["**Unmanaged** (on the platform, not in git; left alone)", ""], units, [""])
    lines = writer.lines
    if writer.truncated:
        hidden = {c: n for c, n in writer.hidden.items() if n}
        category = next((c for c in totals if c in hidden), "actions")
        gap = [""] if lines and lines[-1] else []
        lines = [*lines, *gap, _footer(category, hidden.get(category, 0))]
    return "\n".join(lines).rstrip("\n") + "\n"
