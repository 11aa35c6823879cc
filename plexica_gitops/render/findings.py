"""Render validation findings: text for people, JSON for machines, GitHub annotations for PRs."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import groupby

from rich.console import Console
from rich.markup import escape

from plexica_gitops.desired.validate import ValidationReport
from plexica_gitops.findings import Finding, Severity

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow"}


def render_json(report: ValidationReport) -> str:
    document = {
        "valid": report.valid,
        "revision": report.desired.revision,
        "findings": [f.to_json() for f in report.findings],
    }
    return json.dumps(document, indent=2)


def _github_escape(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(report: ValidationReport, path_prefix: str = "") -> str:
    """`::error file=…,line=…,col=…,title=CODE::message` lines, the workflow-command format
    GitHub Actions turns into pull-request annotations."""
    lines = []
    for finding in report.findings:
        properties = [f"title={_github_escape(finding.code, property_value=True)}"]
        loc = finding.location
        if loc is not None:
            properties.insert(
                0, f"file={_github_escape(path_prefix + loc.file, property_value=True)}"
            )
            if loc.line is not None:
                properties.insert(1, f"line={loc.line}")
                if loc.column is not None:
                    properties.insert(2, f"col={loc.column}")
        message = _github_escape(f"{finding.message}. {finding.hint}")
        lines.append(f"::{finding.severity.value} {','.join(properties)}::{message}")
    return "\n".join(lines) + ("\n" if lines else "")


def print_text(report: ValidationReport, console: Console, root_label: str) -> None:
    def file_of(finding: Finding) -> str:
        return finding.location.file if finding.location else "(repository)"

    for file, group in groupby(report.findings, key=file_of):
        console.print(f"[bold]{escape(root_label.rstrip('/') + '/' + file)}[/bold]")
        for finding in group:
            loc = finding.location
            where = f"{loc.line}:{loc.column or 1}" if loc and loc.line else "-"
            style = _STYLE[finding.severity]
            console.print(
                f"  {where:>7}  [{style}]{finding.severity.value:<7}[/{style}] "
                f"[dim]{finding.code}[/dim]  {escape(finding.message)}",
                soft_wrap=True,
            )
            console.print(f"{'':>11}[dim]hint:[/dim] {escape(finding.hint)}", soft_wrap=True)
    counts: dict[Severity, int] = defaultdict(int)
    for finding in report.findings:
        counts[finding.severity] += 1
    summary = (
        f"{len(report.desired.plugins)} plugins, {len(report.desired.tenants)} tenants "
        f"in {len(report.desired.files)} files"
    )
    errors, warnings = counts[Severity.ERROR], counts[Severity.WARNING]
    if report.valid:
        tail = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
        console.print(f"[green]✓ valid[/green]: {summary}{tail}")
    else:
        console.print(
            f"[bold red]✗ invalid[/bold red]: {errors} error{'s' * (errors != 1)}, "
            f"{warnings} warning{'s' * (warnings != 1)} ({summary})"
        )
