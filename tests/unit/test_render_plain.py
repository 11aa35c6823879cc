"""A plan written where no style can show (a file, a pipe: what CI posts) skips rich's markup
parser: its text must be exactly what rich writes, for any text the plan may carry."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.markup import escape

from plexica_gitops.render.text import _Out, unmarked


def _file_console(*, record: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=80, highlight=False, soft_wrap=True, record=record), buffer


def _by_rich(lines: list[str]) -> str:
    console, buffer = _file_console()
    console.print("\n".join(lines), highlight=False, emoji=False, soft_wrap=True)
    return buffer.getvalue()


def _by_out(lines: list[str]) -> tuple[str, bool]:
    console, buffer = _file_console()
    out = _Out(console)
    for line in lines:
        out(line)
    out.flush()
    return buffer.getvalue(), out.plain


TEXT = st.lists(
    st.sampled_from([*"ab [/]\\=#@:é世\t\x07\x0d\x1b\x7f", "[bold]", "\\[", "[/]"]),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_escaped_text_in_our_markup_is_written_as_rich_writes_it(texts: list[str]) -> None:
    lines = [f"[bold]{escape(t)}[/bold]  ([dim]{escape(t)}[/dim]) {escape(t)}" for t in texts]
    written, plain = _by_out(lines)
    assert plain
    assert written == _by_rich(lines)


def test_long_lines_wide_characters_and_backslashes_before_tags() -> None:
    lines = [
        "x" * 300,
        "世界" * 70,
        "\\\\[bold]two backslashes, a tag[/bold]",
        "\\[not a tag] \\\\\\[escaped after one] [red]-[/red] a\\b",
        "[bold underline]Heading[/bold underline] [dim](3 actions)[/dim]",
        "",
        "tab\there and a bell\x07 and CR\r end",
    ]
    assert unmarked(lines[3]) == "[not a tag] \\[escaped after one] - a\\b"
    written, plain = _by_out(lines)
    assert plain
    assert written == _by_rich(lines)


def test_a_terminal_still_gets_styles() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=80)
    out = _Out(console)
    out("[bold red]Error:[/bold red] PGV001")
    out.flush()
    assert not out.plain
    assert "\x1b[" in buffer.getvalue()
    assert "[bold red]" not in buffer.getvalue()


def test_a_recording_console_is_written_through_rich() -> None:
    console, buffer = _file_console(record=True)
    out = _Out(console)
    out("[bold]x[/bold]")
    out.flush()
    assert not out.plain
    assert console.export_text() == "x\n" == buffer.getvalue()
