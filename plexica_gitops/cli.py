"""The `plexica-gitops` command line."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from plexica_gitops import reconcile_defaults
from plexica_gitops.errors import PlexicaError, UsageError
from plexica_gitops.live.model import ObservedPart
from plexica_gitops.plan.drift import FailOn
from plexica_gitops.source.cache import ENV_CACHE_DIR, Cache, default_cache_dir
from plexica_gitops.source.select import choose_source

# What a command runs is imported by the command that runs it: the service (and through it
# validation, the planner, the providers), the renderers of the other commands, the plan
# file, the store, the apply engine and the reconcile loop. At module level, `--help` would
# pay for them all, and `validate` and `plan --live-state` for what they do not use, on
# every run (issue 15; tests/unit/test_cli_imports.py). Only what the commands' options
# name stays here: typer reads it to build every command.
if TYPE_CHECKING:
    from plexica_gitops import service
    from plexica_gitops.apply.engine import Reporter
    from plexica_gitops.plan.drift import DriftReport
    from plexica_gitops.plan.model import Plan
    from plexica_gitops.source.select import SourceChoice
    from plexica_gitops.store.lock import LeaseHolder

# How an option's value is named in --help, by typer's type label.
_VALUE_NAMES = {"str": "TEXT", "path": "PATH", "int": "INTEGER", "float": "FLOAT",
                "int range": "INTEGER", "float range": "FLOAT"}  # fmt: skip


def _name_values(command: Any, ctx: Any) -> None:
    """Typer 0.29 prints a type placeholder after every option, flags included (`--verbose
    <bool>`, `--target <list[str]>`): name what an option takes instead (TEXT, PATH,
    INTEGER, text|json), and nothing after a flag. Earlier typers print no placeholder and
    have no `display_type`: nothing to do there."""
    for param in command.get_params(ctx):
        display_type = getattr(param, "display_type", None)
        if display_type is None or getattr(param, "_plain_help", False):
            continue
        param._plain_help = True
        label = str(display_type(ctx)).removeprefix("<").removesuffix(">")
        if label.startswith("list[") and label.endswith("]"):  # a repeatable option
            label = label.removeprefix("list[").removesuffix("]")
        name = "" if getattr(param, "is_flag", False) else _VALUE_NAMES.get(label, label)
        if param.param_type_name == "option" and param.metavar is None:
            param.metavar = name
        elif param.param_type_name == "argument":  # its type column ignores the metavar
            param.display_type_rich = lambda ctx, name=name: name


class _Group(TyperGroup):
    """The app's command group: help texts name option values plainly (`_name_values`), and
    every command's PlexicaError (errors.py) is reported in one place (`_report`)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _name_values(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _name_values(self, ctx)
        super().format_help(ctx, formatter)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PlexicaError as error:
            raise _report(error) from None


app = typer.Typer(
    name="plexica-gitops",
    cls=_Group,
    help="Declarative GitOps for the Plexica plugin platform: validate, plan, apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DirArgument = Annotated[
    Path,
    typer.Argument(help="Desired-state directory.", show_default=True),
]


SourceDirArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Desired-state directory [default: desired-state]; not with --repo.",
        show_default=False,
    ),
]
RepoOption = Annotated[
    str | None,
    typer.Option(
        "--repo",
        metavar="PATH_OR_URL",
        help="Read the desired state from this git repository at --ref, without a checkout: "
        "a local path, file://, https:// or ssh URL (credentials from PLEXICA_GIT_* only).",
        show_default=False,
    ),
]
RefOption = Annotated[
    str | None,
    typer.Option(
        "--ref", metavar="REV", help="With --repo: a branch, tag or commit sha.", show_default=False
    ),
]
SubdirOption = Annotated[
    str | None,
    typer.Option(
        "--path",
        metavar="SUBDIR",
        help="With --repo: the desired-state directory inside the repository.",
        show_default=False,
    ),
]


CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        help="Reuse what earlier runs built of unchanged files from DIR (default: "
        f"${ENV_CACHE_DIR}, else $XDG_CACHE_HOME/plexica-gitops or ~/.cache/plexica-gitops).",
        show_default=False,
    ),
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Read and check every file anew; use no cache.")
]


def _desired_source(
    directory: Path | None,
    repo: str | None = None,
    ref: str | None = None,
    path: str | None = None,
    cache_dir: Path | None = None,
    no_cache: bool = True,
) -> SourceChoice:
    """The desired state a command reads: its directory argument, or a git revision
    (`--repo/--ref/--path`, source/select.py), and the cache it reuses (source/cache.py).
    The one place the options naming it end up; a bad combination is a UsageError (exit
    2), an unreadable source a SourceError."""
    cache = None if no_cache else Cache(cache_dir or default_cache_dir())
    return choose_source(directory, repo, ref, path, cache=cache)


class ValidateFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    GITHUB = "github"


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, hint: str) -> typer.Exit:
    console = _stderr()
    console.print(f"[bold red]error:[/bold red] {escape(message)}")
    console.print(f"[dim]hint:[/dim] {escape(hint)}")
    return typer.Exit(1)


def _usage(message: str, hint: str) -> typer.Exit:
    _fail(message, hint)
    return typer.Exit(2)


def _report(error: PlexicaError) -> typer.Exit:
    """The one error handler of every command: what went wrong and what to do, then exit 2
    for a usage error, 1 for the rest. An invalid desired state lists its findings first."""
    from plexica_gitops.render.findings import print_text
    from plexica_gitops.service import DesiredStateInvalid

    if isinstance(error, DesiredStateInvalid):
        print_text(error.result, _stderr(), error.label)
    if isinstance(error, UsageError):
        return _usage(error.message, error.hint)
    return _fail(error.message, error.hint)


def _warn(text: str) -> None:
    _stderr().print(f"[yellow]warning:[/yellow] {escape(text)}")


@app.command()
def validate(
    directory: SourceDirArgument = None,
    output_format: Annotated[
        ValidateFormat, typer.Option("--format", help="text, json or github annotations.")
    ] = ValidateFormat.TEXT,
    repo: RepoOption = None,
    ref: RefOption = None,
    path: SubdirOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Check a desired-state directory (or a git revision): YAML, schemas and cross-file rules.

    Exit 0 when valid (warnings allowed), 1 on any error, 2 on usage errors.
    """
    from plexica_gitops import service
    from plexica_gitops.render import findings as report
    from plexica_gitops.source.loader import ROOT_MISSING

    chosen = _desired_source(directory, repo, ref, path, cache_dir, no_cache)
    result = service.validate(chosen.source, chosen.cache)
    if output_format is ValidateFormat.JSON:
        sys.stdout.write(report.render_json(result) + "\n")
    elif output_format is ValidateFormat.GITHUB:
        sys.stdout.write(report.render_github(result, chosen.prefix))
    else:
        report.print_text(result, _stdout(), chosen.label)
    if any(f.code == ROOT_MISSING for f in result.findings):
        raise typer.Exit(2)  # a usage error: the directory argument names no directory
    raise typer.Exit(0 if result.valid else 1)


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Directory to write the JSON Schemas to.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schema (draft 2020-12) of each kind, for editors and CI."""
    from plexica_gitops.desired.schemas import write_schemas

    for path in write_schemas(out):
        typer.echo(path.as_posix())


class PlanFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


class GraphFormat(StrEnum):
    DOT = "dot"
    MERMAID = "mermaid"


LiveStateOption = Annotated[
    str | None,
    typer.Option(
        "--live-state",
        help="Live state as JSON (`-` reads standard input; `{}` is an empty platform).",
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL of the platform (default: $PLEXICA_DATABASE_URL). Never put it in YAML.",
        show_default=False,
    ),
]
TargetOption = Annotated[
    list[str] | None,
    typer.Option("--target", help="Plan only this address (and what it depends on)."),
]
UnobservedOption = Annotated[
    list[str] | None,
    typer.Option(
        "--unobserved",
        metavar="PART",
        help="Plan without observing PART: runtime (workloads) or broker (topics); repeat "
        "it or separate with commas. Without it, a plan that cannot observe a part it needs "
        "fails. The plan names what it did not observe.",
        show_default=False,
    ),
]


def _unobserved_parts(values: list[str] | None) -> frozenset[ObservedPart]:
    parts: set[ObservedPart] = set()
    for value in values or []:
        for name in filter(None, (n.strip().lower() for n in value.split(","))):
            try:
                parts.add(ObservedPart(name))
            except ValueError:
                raise _usage(
                    f"--unobserved {name}: not a part of the platform",
                    "Use runtime, broker, or both (--unobserved runtime,broker).",
                ) from None
    return frozenset(parts)


def _make_plan(
    chosen: SourceChoice,
    live_state: str | None,
    target: list[str] | None,
    database_url: str | None,
    unobserved: list[str] | None,
) -> Plan:
    """`plan` and `graph`: their shared options, handed to the service."""
    from plexica_gitops import service

    return service.plan(
        chosen,
        service.LiveSource(live_state, database_url),
        service.PlanOptions(target or [], _unobserved_parts(unobserved)),
        warn=_warn,
    )


def _writable_plan_path(out: Path | None) -> None:
    """Refuse a bad --out before planning, not after the plan was printed."""
    if out is None:
        return
    if out.is_dir():
        raise _usage(f"--out {out} is a directory", "Give a file name, e.g. release.plan.")
    if not out.parent.is_dir():
        raise _usage(f"--out {out}: {out.parent} does not exist", "Create the directory first.")


def _render(plan: Plan, output_format: PlanFormat, verbose: bool) -> None:
    if output_format is PlanFormat.JSON:
        from plexica_gitops.render.json import render_json

        sys.stdout.write(render_json(plan))
    elif output_format is PlanFormat.MARKDOWN:
        from plexica_gitops.render.markdown import render_markdown

        sys.stdout.write(render_markdown(plan))
    else:
        from plexica_gitops.render.text import print_plan

        print_plan(plan, _stdout(), verbose=verbose)


@app.command()
def plan(
    directory: SourceDirArgument = None,
    live_state: LiveStateOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan for a later `apply`.")
    ] = None,
    output_format: Annotated[
        PlanFormat, typer.Option("--format", help="text, json or markdown (PR comment).")
    ] = PlanFormat.TEXT,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0: no changes, 1: error, 2: changes."),
    ] = False,
    target: TargetOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every tenant action.")
    ] = False,
    database_url: DatabaseUrlOption = None,
    unobserved: UnobservedOption = None,
    repo: RepoOption = None,
    ref: RefOption = None,
    path: SubdirOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Compute the ordered actions that converge the live platform to the desired state."""
    _writable_plan_path(out)
    chosen = _desired_source(directory, repo, ref, path, cache_dir, no_cache)
    result = _make_plan(chosen, live_state, target, database_url, unobserved)
    _render(result, output_format, verbose)
    if result.has_errors:
        raise typer.Exit(1)
    if out is not None:
        from plexica_gitops.plan.planfile import save_plan

        try:
            save_plan(result, out)
        except OSError as exc:
            raise _fail(f"cannot write {out}: {exc.strerror}", "Check the path.") from None
        _stderr().print(f"Saved the plan to {escape(out.as_posix())}.")
    raise typer.Exit(2 if detailed_exitcode and result.has_changes else 0)


@app.command()
def show(
    planfile: Annotated[Path, typer.Argument(help="A plan saved with `plan --out`.")],
    output_format: Annotated[
        PlanFormat, typer.Option("--format", help="text, json or markdown.")
    ] = PlanFormat.TEXT,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Render a saved plan (its checksum is verified first)."""
    from plexica_gitops import service

    _render(service.load_saved_plan(planfile), output_format, verbose)


@app.command()
def graph(
    directory: DirArgument = Path("desired-state"),
    live_state: LiveStateOption = None,
    output_format: Annotated[
        GraphFormat, typer.Option("--format", help="dot (Graphviz) or mermaid.")
    ] = GraphFormat.DOT,
    target: TargetOption = None,
    database_url: DatabaseUrlOption = None,
    unobserved: UnobservedOption = None,
) -> None:
    """Draw the plan's action graph: each arrow points from a step to one that waits for it."""
    from plexica_gitops.render.graph import to_dot, to_mermaid
    from plexica_gitops.render.text import print_plan

    result = _make_plan(_desired_source(directory), live_state, target, database_url, unobserved)
    if result.has_errors:
        print_plan(result, _stderr())
        raise typer.Exit(1)
    drawing = to_dot if output_format is GraphFormat.DOT else to_mermaid
    sys.stdout.write(drawing(result.actions))


class LogFormat(StrEnum):
    AUTO = "auto"
    TEXT = "text"
    JSON = "json"


def _reporter(log_format: LogFormat) -> Reporter:
    """A live display on a terminal; timestamped lines in CI; JSON lines on request."""
    from plexica_gitops.apply.progress import JsonReporter, LineReporter, LiveReporter

    if log_format is LogFormat.JSON:
        return JsonReporter(sys.stdout)
    console = _stdout()
    if log_format is LogFormat.AUTO and console.is_terminal:
        return LiveReporter(console)
    return LineReporter(console)


CANCELLED = "Apply cancelled, nothing changed."


def _confirm(auto_approve: bool) -> None:
    """Terraform's question; only `yes` applies. Ctrl-C or end of input at the prompt is an
    interruption (exit 130), any other answer a refusal (exit 1): nothing has changed yet
    either way."""
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise _fail(
            "refusing to apply without confirmation: standard input is not a terminal",
            "Review the plan above and pass --auto-approve (CI), or run in a terminal.",
        )
    typer.echo("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.")
    try:
        answer = _answer("\n  Enter a value: ")
    except (KeyboardInterrupt, EOFError):
        typer.echo(f"\n{CANCELLED}")
        raise typer.Exit(130) from None
    if answer.strip() != "yes":
        typer.echo(CANCELLED)
        raise typer.Exit(1)


def _answer(prompt: str) -> str:
    """A line typed at the terminal, as input() reads it, but woken by Ctrl-C whichever
    thread the kernel hands SIGINT to. The prompt is asked under the apply lock, whose
    lease thread (and the clients' threads) may receive it; input() would then go on
    waiting in read(), and the KeyboardInterrupt would come only after the next Enter.
    Python's handler writes to the wakeup fd from any thread, so waiting on it as well
    lets the main thread run the handler (KeyboardInterrupt) at once."""
    if threading.current_thread() is not threading.main_thread():
        return input(prompt)  # only the main thread may set the wakeup fd
    wake, woken = os.pipe()
    os.set_blocking(woken, False)
    previous = signal.set_wakeup_fd(woken)
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while sys.stdin not in select.select([sys.stdin, wake], [], [])[0]:
            os.read(wake, 64)  # a signal came: its handler runs before the next wait
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wake)
        os.close(woken)


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and SIGTERM let the steps in flight finish and start no new ones."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stop


def _say_no_changes(log_format: LogFormat, shown: bool) -> None:
    """Once: the plan shown above already said it."""
    if log_format is LogFormat.JSON:
        from plexica_gitops.apply.progress import JsonReporter

        JsonReporter(sys.stdout).no_changes()
    elif not shown:
        from plexica_gitops.render.text import NO_CHANGES

        typer.echo(NO_CHANGES)


def _say_waiting(holder: LeaseHolder) -> None:
    _stderr().print(f"[yellow]waiting:[/yellow] {escape(holder.describe())}")


def _exit_now() -> None:
    """The apply lock was lost and work still ran when its lease ended: the process ends at
    once, so that it cannot overlap the next apply."""
    _stderr().print(
        "[bold red]error:[/bold red] the apply lock was lost and work was still running "
        "when its lease ran out: exiting at once, so that it cannot overlap the next apply"
    )
    os._exit(1)


def _apply_hooks(auto_approve: bool, log_format: LogFormat) -> service.ApplyHooks:
    from plexica_gitops import service
    from plexica_gitops.render.text import print_plan

    def show_plan(fresh: Plan) -> None:
        if log_format is not LogFormat.JSON:
            print_plan(fresh, _stdout())

    return service.ApplyHooks(
        reporter=_reporter(log_format),
        stop=_stop_on_signals,
        show_plan=show_plan,
        confirm=lambda _: _confirm(auto_approve),
        waiting=_say_waiting,
        lease_expired=_exit_now,
        warn=_warn,
    )


@app.command()
def apply(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="A plan saved with `plan --out`, or a desired-state directory "
            "[default: desired-state, or --repo].",
            show_default=False,
        ),
    ] = None,
    desired_state: Annotated[
        Path | None,
        typer.Option(
            "--desired-state",
            help="With a plan file: the desired-state directory [default: desired-state, or "
            "--repo].",
            show_default=False,
        ),
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Apply without asking (CI pipelines).")
    ] = False,
    require_saved_plan: Annotated[
        bool,
        typer.Option(
            "--require-saved-plan",
            help="Apply only a plan file saved with `plan --out` (reviewed): refuse a "
            "directory or --repo, as platform.yaml's spec.policy.requireSavedPlan and "
            "PLEXICA_REQUIRE_SAVED_PLAN=1 do.",
        ),
    ] = False,
    parallelism: Annotated[
        int, typer.Option("--parallelism", min=1, max=64, help="Steps run at once.")
    ] = 4,
    lock_timeout: Annotated[
        float,
        typer.Option("--lock-timeout", min=0, help="Seconds to wait for another apply's lock."),
    ] = 0,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="auto (live on a terminal), text or json.")
    ] = LogFormat.AUTO,
    database_url: DatabaseUrlOption = None,
    replace: Annotated[
        list[str] | None,
        typer.Option(
            "--replace",
            "-replace",
            help="Replace this workload (e.g. plugin.crm.workload), health-gated, even if "
            "unchanged. Repeatable.",
        ),
    ] = None,
    unobserved: Annotated[
        list[str] | None,
        typer.Option(
            "--unobserved",
            metavar="PART",
            help="Apply without the event broker (`--unobserved broker`): topics are then "
            "neither compared nor changed, and the plan says so. Without it, an apply whose "
            "plan needs the broker refuses to start when it is not observed.",
            show_default=False,
        ),
    ] = None,
    repo: RepoOption = None,
    ref: RefOption = None,
    path: SubdirOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Carry out a plan: walk its graph, journal each step, roll back failed updates.

    Exit 0 when every step succeeded; 1 when any failed (rolled back or not) or nothing
    could be applied; 130 when interrupted (the steps in flight finished first).
    """
    from plexica_gitops import service

    if source is None and repo is None:
        source = service.DEFAULT_DESIRED_STATE
    if source is not None and not source.exists():
        # Never fall back to a fresh plan when the reviewed plan file is mistyped.
        raise _usage(
            f"{source} does not exist",
            "Name a plan file written by `plan --out`, or a desired-state directory.",
        )
    saved_plan = source if source is not None and source.is_file() else None
    options = service.ApplyOptions(
        database_url=database_url,
        parallelism=parallelism,
        lock_timeout=lock_timeout,
        replace=replace or [],
        unobserved=_unobserved_parts(unobserved),
        require_saved_plan=require_saved_plan,
    )
    result = service.apply(
        _desired_source(
            desired_state if saved_plan else source, repo, ref, path, cache_dir, no_cache
        ),
        options,
        _apply_hooks(auto_approve, log_format),
        saved_plan=saved_plan,
    )
    if result.recorded and log_format is not LogFormat.JSON:
        resources = f"{result.recorded:,} in-sync resource{'s' * (result.recorded != 1)}"
        typer.echo(f"Recorded what was last applied at {resources}.")
    if result.report is None:
        _say_no_changes(log_format, shown=result.fresh)
        raise typer.Exit(0)
    if log_format is not LogFormat.JSON:
        typer.echo(
            f"Recorded as apply {result.apply_id} (`plexica-gitops history --apply "
            f"{result.apply_id}`)."
        )
    if result.report.lock_lost:
        raise _fail(
            f"the apply lock was lost ({result.report.lock_lost}): this apply stopped",
            "No step started after that and the steps in flight were cancelled; another "
            "apply may run now. Run plan once it is done: it shows what is left.",
        )
    outcome = result.report
    raise typer.Exit(0 if outcome.ok else 130 if outcome.interrupted else 1)


class StatusFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def status(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Desired-state directory whose platform.yaml names the runtime provider "
            "(default: the provider and settings the last apply recorded in the store).",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        StatusFormat, typer.Option("--format", help="text (plain columns) or json.")
    ] = StatusFormat.TEXT,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Show the live platform: plugins with their workloads and endpoints, tenants with the
    migrations applied in their schemas, and the topics. Works from any directory: the
    store says which runtime the last apply used."""
    from plexica_gitops import service
    from plexica_gitops.render.status import render_status_json, render_status_text

    view = service.status(directory, database_url)
    for warning in view.warnings:
        _warn(warning)
    render = render_status_json if output_format is StatusFormat.JSON else render_status_text
    sys.stdout.write(render(view))


@app.command()
def drift(
    directory: SourceDirArgument = None,
    output_format: Annotated[
        PlanFormat, typer.Option("--format", help="text, json or markdown (an issue body).")
    ] = PlanFormat.TEXT,
    fail_on: Annotated[
        FailOn,
        typer.Option("--fail-on", help="Exit 2 on drift (default), pending changes, or any."),
    ] = FailOn.DRIFT,
    database_url: DatabaseUrlOption = None,
    unobserved: UnobservedOption = None,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            metavar="URL",
            help="POST the JSON report to this webhook (signed with $PLEXICA_WEBHOOK_SECRET "
            "when set).",
            show_default=False,
        ),
    ] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            help="Write Prometheus text here (*.prom, for node-exporter's textfile collector).",
            show_default=False,
        ),
    ] = None,
    repo: RepoOption = None,
    ref: RefOption = None,
    path: SubdirOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Compare the live platform with what was last applied (drift) and with git (pending).

    Exit 0 in sync, 2 on what --fail-on names, 1 when a part of the platform could not be
    observed (never "in sync" for what was not seen) or on errors. A webhook or metrics
    file that fails is reported on stderr and makes the exit at least 1.
    """
    from plexica_gitops import service
    from plexica_gitops.render.drift import (
        render_drift_json,
        render_drift_markdown,
        render_drift_text,
    )

    renderers = {
        PlanFormat.TEXT: render_drift_text,
        PlanFormat.JSON: render_drift_json,
        PlanFormat.MARKDOWN: render_drift_markdown,
    }
    chosen = _desired_source(directory, repo, ref, path, cache_dir, no_cache)
    options = service.DriftOptions(_unobserved_parts(unobserved))
    result = service.drift(chosen, database_url, options, warn=_warn)
    sys.stdout.write(renderers[output_format](result))
    code = result.exit_code(fail_on)
    outputs_ok = _drift_outputs(result, notify, metrics_file)
    raise typer.Exit(code if outputs_ok else max(code, 1))


def _drift_outputs(result: DriftReport, notify: str | None, metrics: Path | None) -> bool:
    """Writes the metrics file and notifies the webhook; False when either failed (said on
    stderr: the report above stands)."""
    from plexica_gitops import service
    from plexica_gitops.render.drift import render_drift_json

    ok = True
    try:
        if metrics is not None:
            service.write_drift_metrics(result, metrics)
    except PlexicaError as error:
        _fail(error.message, error.hint)
        ok = False
    try:
        if notify is not None:
            service.notify_drift(render_drift_json(result).encode(), notify)
    except PlexicaError as error:
        _fail(error.message, error.hint)
        ok = False
    return ok


@app.command()
def reconcile(
    directory: SourceDirArgument = None,
    repo: RepoOption = None,
    ref: RefOption = None,
    path: SubdirOption = None,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.1, help="Seconds between reconciles."),
    ] = reconcile_defaults.DEFAULT_INTERVAL,
    auto_apply: Annotated[
        bool,
        typer.Option("--auto-apply", help="Apply a new revision (a new commit) when it has work."),
    ] = False,
    self_heal: Annotated[
        bool,
        typer.Option(
            "--self-heal",
            help="Apply drift back to the last applied revision (planned from git at its sha).",
        ),
    ] = False,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="One reconcile, then exit: 0 in sync or applied, 2 drift, 1 failed."
        ),
    ] = False,
    metrics_address: Annotated[
        str,
        typer.Option(
            "--metrics-address",
            metavar="HOST:PORT",
            help="Serve /metrics, /healthz and /readyz here (port 0: any free port).",
        ),
    ] = reconcile_defaults.DEFAULT_METRICS_ADDRESS,
    max_backoff: Annotated[
        float,
        typer.Option(
            "--max-backoff", min=0, help="Longest wait after failures (the interval doubles)."
        ),
    ] = reconcile_defaults.DEFAULT_MAX_BACKOFF,
    parallelism: Annotated[
        int, typer.Option("--parallelism", min=1, max=64, help="Steps an apply runs at once.")
    ] = 4,
    log_format: Annotated[
        reconcile_defaults.LogFormat,
        typer.Option("--log-format", help="text (key=value) or json, one line per reconcile."),
    ] = reconcile_defaults.LogFormat.TEXT,
    database_url: DatabaseUrlOption = None,
    unobserved: UnobservedOption = None,
) -> None:
    """Reconcile every --interval: fetch, plan, and report (default), apply new commits
    (--auto-apply) and/or heal drift (--self-heal).

    Runs until SIGTERM or Ctrl-C (the step in flight finishes; exit 0; a second signal
    exits at once). Several replicas are safe: one applies at a time, the others skip.
    """
    from plexica_gitops import reconcile as reconcile_loop

    options = reconcile_loop.ReconcileOptions(
        directory=directory,
        repo=repo,
        ref=ref,
        path=path,
        database_url=database_url,
        interval=interval,
        max_backoff=max_backoff,
        auto_apply=auto_apply,
        self_heal=self_heal,
        parallelism=parallelism,
        unobserved=_unobserved_parts(unobserved),
    )
    code = reconcile_loop.run(
        options, once=once, metrics_address=metrics_address, log_format=log_format
    )
    raise typer.Exit(code)


@app.command()
def init(database_url: DatabaseUrlOption = None) -> None:
    """Create or upgrade the store's tables in the platform's PostgreSQL (idempotent)."""
    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.connection import database_url as store_database_url
    from plexica_gitops.store.schema import init_store, store_version

    with connect(store_database_url(database_url)) as conn:
        applied = init_store(conn)
        version = store_version(conn)
    if applied:
        typer.echo(f"Store initialised: applied version(s) {', '.join(map(str, applied))}.")
    else:
        typer.echo(f"Store is up to date (version {version}).")


class HistoryFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def history(
    database_url: DatabaseUrlOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many applies.")] = 20,
    apply_id: Annotated[
        int | None,
        typer.Option(
            "--apply",
            metavar="ID",
            min=1,
            help="Show this apply's journal: each step with its status, duration and error.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        HistoryFormat, typer.Option("--format", help="text, or json (with --apply).")
    ] = HistoryFormat.TEXT,
) -> None:
    """List the latest applies: revision, plan hash, start, end, result and step counts;
    or, with --apply ID, one apply in full."""
    from plexica_gitops.render.history import (
        ApplyJournal,
        render_apply_json,
        render_apply_text,
        render_history_text,
    )
    from plexica_gitops.store.connection import connect
    from plexica_gitops.store.connection import database_url as store_database_url
    from plexica_gitops.store.journal import apply_record, journal_steps
    from plexica_gitops.store.journal import history as apply_history
    from plexica_gitops.store.schema import check_store

    if apply_id is None and output_format is HistoryFormat.JSON:
        raise _usage("--format json needs --apply ID", "Name the apply: history --apply ID.")
    with connect(store_database_url(database_url)) as conn:
        check_store(conn)
        if apply_id is None:
            sys.stdout.write(render_history_text(apply_history(conn, limit)))
            return
        record = apply_record(conn, apply_id)
        if record is None:
            raise _fail(
                f"no apply {apply_id} is recorded in this store",
                "`plexica-gitops history` lists the applies; their ids are in its first "
                "column (and `apply` prints `Recorded as apply N`).",
            )
        journal = ApplyJournal(record, journal_steps(conn, apply_id))
    render = render_apply_json if output_format is HistoryFormat.JSON else render_apply_text
    sys.stdout.write(render(journal))


@app.command()
def render(
    provider: Annotated[
        str,
        typer.Option(
            "--provider",
            metavar="NAME",
            help="The runtime to render for: kubernetes (docker has no manifests).",
        ),
    ],
    directory: SourceDirArgument = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write one YAML file per plugin (and namespace.yaml) into this directory; "
            "without it, one YAML stream on standard output.",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            help="The plugins' namespace (default: platform.yaml's runtime settings).",
            show_default=False,
        ),
    ] = None,
    repo: RepoOption = None,
    ref: RefOption = None,
    path: SubdirOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Write the manifests apply would create (for Argo CD or Helm): every object per
    plugin, labelled as the provider labels them; env Secrets as stubs naming their keys,
    never a value. Needs no cluster. Exit 1 when the desired state is invalid (nothing
    written)."""
    from plexica_gitops import service

    chosen = _desired_source(directory, repo, ref, path, cache_dir, no_cache)
    rendered = service.render_manifests(chosen, provider, namespace=namespace, warn=_warn)
    if out is None:
        sys.stdout.write(rendered.stream)
        return
    result = service.write_manifests(rendered, out)
    for written in result.written:
        typer.echo(f"wrote {written.as_posix()}")
    for removed in result.removed:
        typer.echo(f"removed {removed.as_posix()} (its plugin is no longer rendered)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
