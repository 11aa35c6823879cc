"""The plan's action graph drawn for people: Graphviz dot and Mermaid (`plexica-gitops
graph`). Each arrow points from a step to one that waits for it."""

from __future__ import annotations

from collections.abc import Sequence

from plexica_gitops.plan.model import SYMBOLS, Action


def to_dot(actions: Sequence[Action]) -> str:
    lines = [
        "digraph plan {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="monospace"];',
    ]
    for action in actions:
        label = f"{SYMBOLS[action.kind]} {action.id}\\nwave {action.wave}"
        lines.append(f'  "{action.id}" [label="{label}"];')
    for action in actions:
        lines.extend(f'  "{dep}" -> "{action.id}";' for dep in action.depends_on)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(actions: Sequence[Action]) -> str:
    ids = {action.id: f"n{index}" for index, action in enumerate(actions)}
    lines = ["flowchart LR"]
    for action in actions:
        label = f"{SYMBOLS[action.kind]} {action.id}".replace('"', "'")
        lines.append(f'  {ids[action.id]}["{label}"]')
    for action in actions:
        lines.extend(f"  {ids[dep]} --> {ids[action.id]}" for dep in action.depends_on)
    return "\n".join(lines) + "\n"
