"""The `plexica-gitops` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pydantic
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from plexica_gitops.addresses import Address, AddressError, ResourceKind
from plexica_gitops.apply.engine import Reporter
from plexica_gitops.apply.progress import JsonReporter, LineReporter, LiveReporter
from plexica_gitops.apply.session import run_apply
from plexica_gitops.broker.kafka import BrokerError, BrokerSettings, EventBroker
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.schemas import write_schemas
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.findings import Finding
from plexica_gitops.live.codec import LiveStateError
from plexica_gitops.live.model import LiveState, ObservedPart
from plexica_gitops.live.observe import observe_platform
from plexica_gitops.plan.builder import address_exists, build_plan
from plexica_gitops.plan.graph import PlanCycleError, order, select_targets
from plexica_gitops.plan.model import Cause, Plan, Replacement, secret_replacements
from plexica_gitops.plan.planfile import (
    PlanFileError,
    StalePlanError,
    check_current,
    check_justified,
    load_plan,
    save_plan,
)
from plexica_gitops.render import findings as report
from plexica_gitops.render.graph import to_dot, to_mermaid
from plexica_gitops.render.json import render_json
from plexica_gitops.render.markdown import render_markdown
from plexica_gitops.render.status import (
    SettingsSource,
    StatusView,
    render_status_json,
    render_status_text,
)
from plexica_gitops.render.text import NO_CHANGES, print_plan
from plexica_gitops.runtime.provider import Provider, ProviderError, load_provider
from plexica_gitops.runtime.spec import secret_rotations
from plexica_gitops.source.loader import ROOT_MISSING
from plexica_gitops.store import catalog
from plexica_gitops.store.connection import ENV_DATABASE_URL, StoreError, connect
from plexica_gitops.store.connection import database_url as store_database_url
from plexica_gitops.store.journal import history as apply_history
from plexica_gitops.store.journal import mark_interrupted
from plexica_gitops.store.lock import ApplyLock, LeaseHolder, apply_lock
from plexica_gitops.store.runtime import record_runtime, recorded_runtime
from plexica_gitops.store.schema import check_store, init_store, store_version

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
    """The app's command group: help texts name option values plainly (`_name_values`)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _name_values(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _name_values(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="plexica-gitops",
    cls=_Group,
    help="Declarative GitOps for the Plexica plugin platform: validate, plan, apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DESIRED_STATE = Path("desired-state")
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


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, hint: str) -> typer.Exit:
    console = _stderr()
    console.print(f"[bold red]error:[/bold red] {escape(message)}")
    console.print(f"[dim]hint:[/dim] {escape(hint)}")
    return typer.Exit(1)


def _provider(desired: DesiredState | None, *, required: bool = False) -> Provider | None:
    """The runtime provider platform.yaml names, built with its settings. None when there is
    no platform (an invalid desired state) — or, for `plan`, when it is not installed."""
    platform = desired.platform if desired else None
    if platform is None:
        return None
    runtime = platform.document.spec.runtime
    try:
        return load_provider(runtime.provider, runtime.model_extra or {})
    except ProviderError as exc:
        if required:
            raise _fail(exc.message, exc.hint) from None
        _stderr().print(f"[yellow]warning:[/yellow] {escape(exc.message)}")
        return None


def _broker() -> EventBroker | None:
    """The platform's broker from KAFKA_BOOTSTRAP_SERVERS (and the SASL/TLS settings beside
    it); None when it is not set (topics are then left out of plans, which say so)."""
    try:
        settings = BrokerSettings.from_env(os.environ)
    except BrokerError as exc:
        raise _fail(exc.message, exc.hint) from None
    return EventBroker(settings) if settings else None


@contextlib.contextmanager
def _platform_clients(
    desired: DesiredState | None, *, required: bool = False
) -> Iterator[tuple[Provider | None, EventBroker | None]]:
    provider = _provider(desired, required=required)
    broker = _broker()
    try:
        yield provider, broker
    finally:
        if provider is not None:
            provider.close()
        if broker is not None:
            broker.close()


def _observe(
    database_url: str | None,
    provider: Provider | None,
    broker: EventBroker | None,
    *,
    strict: bool = False,
    problems: dict[ObservedPart, str] | None = None,
) -> LiveState:
    """The live state from the platform's PostgreSQL, the runtime provider and the broker.
    An unreachable runtime or broker makes `plan` leave workloads or topics out (why goes
    to `problems`, or is printed as a warning without it); `apply` stops."""
    found: dict[ObservedPart, str] = {}
    try:
        live = observe_platform(
            store_database_url(database_url), provider, broker, strict=strict, problems=found
        )
    except StoreError as exc:
        raise _fail(exc.message, exc.hint) from None
    except ProviderError as exc:
        raise _fail(f"cannot observe the runtime: {exc.message}", exc.hint) from None
    except BrokerError as exc:
        raise _fail(f"cannot observe the event broker: {exc.message}", exc.hint) from None
    if problems is not None:
        problems.update(found)
        return live
    for part, problem in found.items():
        _warn_unobserved(part, problem)
    return live


def _warn_unobserved(part: ObservedPart, problem: str) -> None:
    _stderr().print(
        f"[yellow]warning:[/yellow] {escape(f'{part.label} was not observed: {problem}')}"
    )


def _read_live_state(
    source: str | None,
    database_url: str | None = None,
    desired: DesiredState | None = None,
    skip: frozenset[ObservedPart] = frozenset(),
    problems: dict[ObservedPart, str] | None = None,
) -> LiveState:
    """The platform observed (or the `--live-state` snapshot), without the parts in `skip`;
    why a part could not be observed goes to `problems`."""
    if source is None:
        if database_url or os.environ.get(ENV_DATABASE_URL):
            with _platform_clients(desired) as (provider, broker):
                return _observe(
                    database_url,
                    None if ObservedPart.RUNTIME in skip else provider,
                    None if ObservedPart.BROKER in skip else broker,
                    problems=problems,
                )
        raise _fail(
            "no live state to plan against",
            f"Set {ENV_DATABASE_URL} (or --database-url) to observe the platform, or pass "
            "--live-state FILE (a JSON snapshot; `echo '{}' | plexica-gitops plan "
            "--live-state -` plans against an empty platform).",
        )
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        live = LiveState.from_json(text)
    except OSError as exc:
        raise _fail(f"cannot read live state {source}: {exc.strerror}", "Check the path.") from None
    except UnicodeDecodeError:
        raise _fail(f"live state {source} is not UTF-8 JSON", "Write it as UTF-8.") from None
    except LiveStateError as exc:
        raise _fail(
            f"live state {source}: {exc.message}",
            "Values in a snapshot are bounded as in the store: use a file written by "
            "plexica-gitops, and fix or drop that value.",
        ) from None
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise _fail(
            f"live state {source} is malformed at {where}: {first['msg']}",
            "Use a file written by plexica-gitops, or `{}` for an empty platform.",
        ) from None
    for part, flag in (
        (ObservedPart.RUNTIME, live.workloads_observed),
        (ObservedPart.BROKER, live.topics_observed),
    ):
        if not flag and problems is not None:
            problems[part] = f"the live-state snapshot {source} has {part.holds}_observed: false"
    return live.without(skip)


def _make_plan(
    directory: Path,
    live_source: str | None,
    targets: list[str],
    database_url: str | None = None,
    unobserved: frozenset[ObservedPart] = frozenset(),
) -> Plan:
    """The plan, or a plan holding only errors when the desired state is invalid (so JSON
    and Markdown consumers in CI get a document either way). A part of the platform the
    plan needs but could not observe fails it, unless `unobserved` names that part."""
    if not directory.is_dir():
        raise _usage(f"{directory} is not a directory", "Name the desired-state directory.")
    result = validate_directory(directory)
    problems: dict[ObservedPart, str] = {}
    desired = result.desired if result.valid else None
    live = _read_live_state(live_source, database_url, desired, unobserved, problems)
    warnings = [f for f in result.findings if not f.is_error]
    if not result.valid:
        return Plan(
            desired_revision=result.desired.revision,
            live_fingerprint=live.fingerprint(),
            errors=result.errors,
            warnings=warnings,
            unobserved=sorted(unobserved),
        )
    unknown = [t for t in targets if not address_exists(t, result.desired, live)]
    if unknown:
        raise _usage(
            f"--target {unknown[0]} names nothing in git or on the platform",
            "Use an address such as plugin.crm, plugin.crm.workload, tenant.acme or "
            "tenant.acme.plugin.crm (see `plan --format json` for every address).",
        )
    rotations, unsure = _secret_rotations(result.desired, live, live_source, database_url)
    try:
        plan = build_plan(result.desired, live, secret_replacements(rotations))
    except PlanCycleError as exc:  # a planner bug, never a user mistake
        raise _fail(f"internal planner error: {exc}", "Please report it with the inputs.") from None
    needed = {ObservedPart(p) for p in plan.unobserved}
    for part, problem in problems.items():
        if part not in needed and not problem.startswith("the live-state snapshot"):
            _warn_unobserved(part, problem)  # not needed by this plan: a warning only
    missing = sorted(needed - unobserved)
    if missing:
        for part in missing:
            failure = _not_observed(part, problems.get(part))
        raise failure
    plan.unobserved = sorted(needed | unobserved)
    plan.warnings = [*warnings, *unsure, *plan.warnings]
    if targets:
        kept = select_targets(plan.actions, targets)
        plan.actions = order({a.id: (a, a.depends_on) for a in kept})
        plan.targets = list(targets)
    return plan


_NOT_CONFIGURED = {
    ObservedPart.RUNTIME: "no runtime provider could be loaded",
    ObservedPart.BROKER: "KAFKA_BOOTSTRAP_SERVERS is not set",
}
_NEEDED_FOR = {
    ObservedPart.RUNTIME: "plugins on the platform may run workloads",
    ObservedPart.BROKER: "plugins in git publish events",
}
_MAKE_OBSERVABLE = {
    ObservedPart.RUNTIME: "Make the container engine reachable (DOCKER_HOST, or "
    "spec.runtime in platform.yaml)",
    ObservedPart.BROKER: "Set KAFKA_BOOTSTRAP_SERVERS to the platform's broker, reachable "
    "from here,",
}


def _not_observed(part: ObservedPart, problem: str | None, verb: str = "plan") -> typer.Exit:
    """A plan never claims what it did not see: fail, saying how to see it or to plan
    (or apply) explicitly without it."""
    return _fail(
        f"cannot {verb}: {part.label} was not observed "
        f"({problem or _NOT_CONFIGURED[part]}), and {_NEEDED_FOR[part]}",
        f"{_MAKE_OBSERVABLE[part]} and {verb} again, or {verb} without it: --unobserved "
        f"{part.value} ({part.holds} are then not compared, and the plan says so).",
    )


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


def _secret_rotations(
    desired: DesiredState, live: LiveState, live_source: str | None, database_url: str | None
) -> tuple[dict[str, str], list[Finding]]:
    """The workloads to replace because a secret changed, and the warnings (PGP206) for the
    ones whose values could not be compared. The key is the store's: a plan of a
    --live-state snapshot has none."""
    if live_source is not None:
        key, why = None, "no store was read: the live state came from --live-state"
    else:
        key, why = _digest_key(store_database_url(database_url))
    return secret_rotations(desired, live, key, os.environ, no_key=why)


def _digest_key(url: str) -> tuple[bytes | None, str]:
    try:
        with connect(url) as conn:
            key = catalog.env_digest_key(conn)
    except (StoreError, psycopg.Error) as exc:
        return None, f"the store's digest key could not be read: {exc}".split("\n")[0]
    return key, "" if key else "this database role may not read the store's digest key"


def _usage(message: str, hint: str) -> typer.Exit:
    _fail(message, hint)
    return typer.Exit(2)


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
        sys.stdout.write(render_json(plan))
    elif output_format is PlanFormat.MARKDOWN:
        sys.stdout.write(render_markdown(plan))
    else:
        print_plan(plan, _stdout(), verbose=verbose)


@app.command()
def plan(
    directory: DirArgument = Path("desired-state"),
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
) -> None:
    """Compute the ordered actions that converge the live platform to the desired state."""
    _writable_plan_path(out)
    skip = _unobserved_parts(unobserved)
    result = _make_plan(directory, live_state, target or [], database_url, skip)
    _render(result, output_format, verbose)
    if result.has_errors:
        raise typer.Exit(1)
    if out is not None:
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
    try:
        saved = load_plan(planfile)
    except PlanFileError as exc:
        raise _fail(str(exc), "Plan files are written by `plexica-gitops plan --out`.") from None
    _render(saved, output_format, verbose)


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
    skip = _unobserved_parts(unobserved)
    result = _make_plan(directory, live_state, target or [], database_url, skip)
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
    if log_format is LogFormat.JSON:
        return JsonReporter(sys.stdout)
    console = _stdout()
    if log_format is LogFormat.AUTO and console.is_terminal:
        return LiveReporter(console)
    return LineReporter(console)


def _load_desired(directory: Path) -> DesiredState:
    if not directory.is_dir():
        raise _usage(f"{directory} is not a directory", "Name the desired-state directory.")
    result = validate_directory(directory)
    if not result.valid:
        report.print_text(result, _stderr(), directory.as_posix())
        raise _fail(
            f"{directory} is not valid: nothing was applied",
            f"Fix the errors above (`plexica-gitops validate {directory.as_posix()}`).",
        )
    return result.desired


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
        answer = input("\n  Enter a value: ")
    except (KeyboardInterrupt, EOFError):
        typer.echo(f"\n{CANCELLED}")
        raise typer.Exit(130) from None
    if answer.strip() != "yes":
        typer.echo(CANCELLED)
        raise typer.Exit(1)


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and SIGTERM let the steps in flight finish and start no new ones."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stop


def _plan_for_apply(
    source: Path,
    desired: DesiredState,
    live: LiveState,
    output_format: LogFormat,
    key: bytes | None,
    forced: dict[str, Replacement],
    skip: frozenset[ObservedPart],
) -> Plan:
    """The saved plan when `source` is a plan file — refused when altered, stale, or not
    exactly what planning its desired revision against the live platform gives — else a
    fresh plan of the desired state (shown, unless the log is JSON). Both replace the
    workloads whose secrets changed since their replicas started, and the `forced` ones."""
    rotations, unsure = secret_rotations(
        desired, live, key, os.environ, no_key="this database role may not read the digest key"
    )
    replace = {**secret_replacements(rotations), **forced}
    if source.is_file():
        try:
            saved = load_plan(source)
            check_current(saved, desired.revision, live.fingerprint())
            replanned = _fresh_plan(desired, live, saved.targets, replace)
            _refuse_unobserved(replanned, skip)
            check_justified(saved, replanned)
        except PlanFileError as exc:
            raise _fail(str(exc), "Make a new plan with `plexica-gitops plan --out`.") from None
        except StalePlanError as exc:
            raise _fail(str(exc), "Nothing was applied.") from None
        return saved
    fresh = _fresh_plan(desired, live, [], replace)
    _refuse_unobserved(fresh, skip)
    fresh.warnings = [*unsure, *fresh.warnings]
    for pid in sorted(forced):
        if not any(a.address == f"plugin.{pid}.workload" for a in fresh.actions):
            raise _usage(
                f"--replace plugin.{pid}.workload: there is no workload to replace (git wants "
                f"plugin {pid!r} {desired.plugins[pid].document.spec.state.value})",
                "Name the workload of a plugin that git wants installed, active or disabled.",
            )
    if output_format is not LogFormat.JSON:
        print_plan(fresh, _stdout())
    return fresh


def _refuse_unobserved(plan: Plan, skip: frozenset[ObservedPart]) -> None:
    """Apply never acts on what it did not see: a part the plan needs that was not
    observed stops it, unless the user asked to apply without it (said in the plan)."""
    needed = {ObservedPart(p) for p in plan.unobserved}
    for part in sorted(needed - skip):
        raise _not_observed(part, None, verb="apply")
    plan.unobserved = sorted(needed | skip)


def _forced_replacements(addresses: list[str], desired: DesiredState) -> dict[str, Replacement]:
    """`--replace` addresses as planner input (plugin id -> why); a usage error for any
    address that is not the workload of a plugin in git."""
    forced: dict[str, Replacement] = {}
    for address in addresses:
        try:
            parsed = Address.parse(address)
        except AddressError:
            parsed = None
        if parsed is None or parsed.kind is not ResourceKind.WORKLOAD or not parsed.plugin:
            raise _usage(
                f"--replace {address}: not a workload address",
                "Name a plugin's workload, e.g. --replace plugin.crm.workload.",
            )
        if parsed.plugin not in desired.plugins:
            raise _usage(
                f"--replace {address}: git has no plugin {parsed.plugin!r}",
                "Name the workload of a plugin in the desired state.",
            )
        forced[parsed.plugin] = Replacement(
            "replacement requested with --replace", Cause.REPLACE_REQUESTED
        )
    return forced


def _fresh_plan(
    desired: DesiredState, live: LiveState, targets: list[str], replace: dict[str, Replacement]
) -> Plan:
    """What `plan` gives for this desired state, live state, targets and replacements."""
    try:
        plan = build_plan(desired, live, replace)
    except PlanCycleError as exc:  # a planner bug, never a user mistake
        raise _fail(f"internal planner error: {exc}", "Please report it with the inputs.") from None
    if targets:
        kept = select_targets(plan.actions, targets)
        plan.actions = order({a.id: (a, a.depends_on) for a in kept})
        plan.targets = list(targets)
    return plan


def _say_no_changes(log_format: LogFormat, shown: bool) -> None:
    """Once: the plan shown above already said it."""
    if log_format is LogFormat.JSON:
        JsonReporter(sys.stdout).no_changes()
    elif not shown:
        typer.echo(NO_CHANGES)


@app.command()
def apply(
    source: Annotated[
        Path,
        typer.Argument(help="A plan saved with `plan --out`, or a desired-state directory."),
    ] = Path("desired-state"),
    desired_state: Annotated[
        Path,
        typer.Option("--desired-state", help="With a plan file: the desired-state directory."),
    ] = Path("desired-state"),
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Apply without asking (CI pipelines).")
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
) -> None:
    """Carry out a plan: walk its graph, journal each step, roll back failed updates.

    Exit 0 when every step succeeded; 1 when any failed (rolled back or not) or nothing
    could be applied; 130 when interrupted (the steps in flight finished first).
    """
    if not source.exists():
        # Never fall back to a fresh plan when the reviewed plan file is mistyped.
        raise _usage(
            f"{source} does not exist",
            "Name a plan file written by `plan --out`, or a desired-state directory.",
        )
    if replace and source.is_file():
        raise _usage(
            "--replace changes what is planned: it cannot be added to a saved plan",
            "Apply the desired-state directory with --replace, and review the plan it shows.",
        )
    skip = _unobserved_parts(unobserved)
    if ObservedPart.RUNTIME in skip:
        raise _usage(
            "--unobserved runtime: apply cannot run without the runtime provider",
            "Only the broker can be left out of an apply (--unobserved broker).",
        )
    directory = source if source.is_dir() else desired_state
    desired = _load_desired(directory)
    forced = _forced_replacements(replace or [], desired)
    url = _database_url(database_url)
    host, pid = socket.gethostname(), os.getpid()
    try:
        with connect(url) as conn:
            check_store(conn)
            key = catalog.env_digest_key(conn)
        with (
            _platform_clients(desired, required=True) as (provider, broker),
            apply_lock(
                url, wait_seconds=lock_timeout, host=host, pid=pid, on_wait=_say_waiting
            ) as lock,
        ):
            _fence(lock, provider)
            with connect(url, epoch=lock.epoch) as conn:
                mark_interrupted(conn)
                _record_runtime(conn, desired)
            if ObservedPart.BROKER in skip:
                broker = None
            live = _observe(url, provider, broker, strict=True)
            plan = _plan_for_apply(source, desired, live, log_format, key, forced, skip)
            if plan.has_errors:
                raise _fail("the plan has errors: nothing was applied", "Fix them in git.")
            if not plan.has_changes:
                _say_no_changes(log_format, shown=not source.is_file())
                raise typer.Exit(0)
            _confirm(auto_approve)
            lock.verify()  # the prompt may have taken long: is the lock still ours?
            apply_id, outcome = run_apply(
                plan,
                desired,
                url,
                provider,
                _reporter(log_format),
                parallelism=parallelism,
                stop=_stop_on_signals(),
                broker=broker,
                lease=lock,
                digest_key=key,
            )
    except StoreError as exc:
        raise _fail(exc.message, exc.hint) from None
    if log_format is not LogFormat.JSON:
        typer.echo(f"Recorded as apply {apply_id} (`plexica-gitops history`).")
    if outcome.lock_lost:
        raise _fail(
            f"the apply lock was lost ({outcome.lock_lost}): this apply stopped",
            "No step started after that and the steps in flight were cancelled; another "
            "apply may run now. Run plan once it is done: it shows what is left.",
        )
    raise typer.Exit(0 if outcome.ok else 130 if outcome.interrupted else 1)


def _say_waiting(holder: LeaseHolder) -> None:
    _stderr().print(f"[yellow]waiting:[/yellow] {escape(holder.describe())}")


def _fence(lock: ApplyLock, provider: Provider | None) -> None:
    """Once the lock is lost, the runtime work in flight is cancelled; should anything still
    run when the lease ends, the process exits, so that it cannot overlap the next apply."""
    if provider is not None:
        provider.cancel_on(lock.lost)

    def exit_now() -> None:
        _stderr().print(
            "[bold red]error:[/bold red] the apply lock was lost and work was still running "
            "when its lease ran out: exiting at once, so that it cannot overlap the next apply"
        )
        os._exit(1)

    lock.on_deadline(exit_now)


def _database_url(explicit: str | None) -> str:
    try:
        return store_database_url(explicit)
    except StoreError as exc:
        raise _fail(exc.message, exc.hint) from None


class StatusFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclasses.dataclass(frozen=True)
class _Runtime:
    """The runtime provider `status` observes the workloads through, and where its settings
    came from."""

    provider: str
    settings: dict[str, Any]
    source: SettingsSource


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
    url = _database_url(database_url)
    warnings: list[str] = []
    try:
        with connect(url) as conn:
            runtime = _status_runtime(directory, conn, warnings)
            live = _observe_for_status(url, runtime, warnings)
            routed = {pid: catalog.endpoints(conn, pid) for pid in live.plugins}
    except StoreError as exc:
        raise _fail(exc.message, exc.hint) from None
    for warning in warnings:
        _stderr().print(f"[yellow]warning:[/yellow] {escape(warning)}")
    view = StatusView(
        live,
        routed,
        provider=runtime.provider if runtime else None,
        settings_from=runtime.source if runtime else None,
        warnings=warnings,
    )
    render = render_status_json if output_format is StatusFormat.JSON else render_status_text
    sys.stdout.write(render(view))


def _status_runtime(
    directory: Path | None, conn: psycopg.Connection[Any], warnings: list[str]
) -> _Runtime | None:
    """DIR's platform.yaml when DIR is given and valid; else what the last apply recorded;
    else ./desired-state when there is one. None (workloads not observed) otherwise."""
    if directory is not None:
        if not directory.is_dir():
            raise _usage(f"{directory} is not a directory", "Name the desired-state directory.")
        from_directory = _runtime_of(directory)
        if from_directory is not None:
            return from_directory
        # an incident is no time to be unable to look at the platform
        warnings.append(
            f"{directory.as_posix()} is not valid, so the runtime settings in its "
            "platform.yaml are not used"
        )
    recorded = recorded_runtime(conn)
    if recorded is not None:
        return _Runtime(recorded.provider, recorded.settings, SettingsSource.STORE)
    if directory is None and DEFAULT_DESIRED_STATE.is_dir():
        from_directory = _runtime_of(DEFAULT_DESIRED_STATE)
        if from_directory is not None:
            return from_directory
    warnings.append(
        "workloads are not observed: no apply has recorded its runtime provider in this "
        "store yet; name the desired-state directory (`plexica-gitops status DIR`)"
    )
    return None


def _runtime_of(directory: Path) -> _Runtime | None:
    result = validate_directory(directory)
    platform = result.desired.platform if result.valid else None
    if platform is None:
        return None
    runtime = platform.document.spec.runtime
    return _Runtime(runtime.provider, dict(runtime.model_extra or {}), SettingsSource.DESIRED_STATE)


def _observe_for_status(url: str, runtime: _Runtime | None, warnings: list[str]) -> LiveState:
    """Whatever can be seen: an unreachable runtime or broker is a warning, not an error."""
    provider: Provider | None = None
    if runtime is not None:
        try:
            provider = load_provider(runtime.provider, runtime.settings)
        except ProviderError as exc:
            warnings.append(f"the runtime provider was not observed: {exc.message}")
    broker = _broker()
    problems: dict[ObservedPart, str] = {}
    try:
        live = observe_platform(url, provider, broker, problems=problems)
        warnings.extend(f"{part.label} was not observed: {text}" for part, text in problems.items())
        return live
    finally:
        if provider is not None:
            provider.close()
        if broker is not None:
            broker.close()


def _record_runtime(conn: psycopg.Connection[Any], desired: DesiredState) -> None:
    """Record the runtime provider and settings an apply uses, for `status` (call it once
    the apply holds the lock, before its first step)."""
    if desired.platform is None:
        return
    runtime = desired.platform.document.spec.runtime
    record_runtime(conn, runtime.provider, runtime.model_extra or {})


@app.command()
def init(database_url: DatabaseUrlOption = None) -> None:
    """Create or upgrade the store's tables in the platform's PostgreSQL (idempotent)."""
    try:
        with connect(store_database_url(database_url)) as conn:
            applied = init_store(conn)
            version = store_version(conn)
    except StoreError as exc:
        raise _fail(exc.message, exc.hint) from None
    if applied:
        typer.echo(f"Store initialised: applied version(s) {', '.join(map(str, applied))}.")
    else:
        typer.echo(f"Store is up to date (version {version}).")


@app.command()
def history(
    database_url: DatabaseUrlOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many applies.")] = 20,
) -> None:
    """List the latest applies: revision, plan hash, start, end, result and step counts."""
    try:
        with connect(store_database_url(database_url)) as conn:
            check_store(conn)
            records = apply_history(conn, limit)
    except StoreError as exc:
        raise _fail(exc.message, exc.hint) from None
    if not records:
        typer.echo("No applies recorded yet.")
        return
    # Plain columns, not a table that folds to the terminal: CI logs are greppable.
    typer.echo(
        f"{'apply':>6}  {'revision':<12}  {'plan':<12}  {'started':<19}  {'finished':<19}  "
        f"{'result':<11}  steps"
    )
    for record in records:
        steps = ", ".join(f"{count} {status}" for status, count in sorted(record.steps.items()))
        finished = f"{record.finished_at:%Y-%m-%d %H:%M:%S}" if record.finished_at else "-"
        typer.echo(
            f"{record.id:>6}  {record.desired_revision.removeprefix('sha256:')[:12]:<12}  "
            f"{record.plan_hash.removeprefix('sha256:')[:12]:<12}  "
            f"{record.started_at:%Y-%m-%d %H:%M:%S}  {finished:<19}  {record.result:<11}  "
            f"{steps or '-'}"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
