"""The `plexica-gitops` command line."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from plexica_gitops import report
from plexica_gitops.schema import write_schemas
from plexica_gitops.validate import validate_directory

app = typer.Typer(
    name="plexica-gitops",
    help="Declarative GitOps for the Plexica plugin platform: validate, plan, apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DirArgument = Annotated[
    Path,
    typer.Argument(help="Desired-state directory.", show_default=True),
]


class ValidateFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    GITHUB = "github"


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


@app.command()
def validate(
    directory: DirArgument = Path("desired-state"),
    output_format: Annotated[
        ValidateFormat, typer.Option("--format", help="text, json or github annotations.")
    ] = ValidateFormat.TEXT,
) -> None:
    """Check a desired-state directory: YAML, schemas and cross-file rules.

    Exit 0 when valid (warnings allowed), 1 on any error, 2 on usage errors.
    """
    result = validate_directory(directory)
    if output_format is ValidateFormat.JSON:
        sys.stdout.write(report.render_json(result) + "\n")
    elif output_format is ValidateFormat.GITHUB:
        prefix = "" if directory == Path(".") else directory.as_posix().rstrip("/") + "/"
        sys.stdout.write(report.render_github(result, prefix))
    else:
        report.print_text(result, _stdout(), directory.as_posix())
    raise typer.Exit(0 if result.valid else 1)


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Directory to write the JSON Schemas to.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schema (draft 2020-12) of each kind, for editors and CI."""
    for path in write_schemas(out):
        typer.echo(path.as_posix())


def main() -> None:
    app()
