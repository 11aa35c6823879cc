"""The operations — plan, apply, status, drift — as functions: observe → plan → check → run.

They return values and raise PlexicaError (errors.py) with what to do; they never print
and know nothing of typer. What a caller should hear on the way (a warning, a lock being
waited for, the plan to review, the question before applying) goes through the callbacks
it passes. The CLI (cli.py) parses arguments, renders and maps errors to exit codes; the
reconcile loop and `drift` call the same functions.

A desired state is named by its root directory (`root`); where the live state comes from,
by a `LiveSource`."""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import yaml

from plexica_gitops.addresses import ResourceKind, is_below, parsed_or_none
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import ValidationReport, validate_directory
from plexica_gitops.errors import (
    BrokerError,
    LiveStateError,
    NotObserved,
    PlanFileError,
    PlexicaError,
    ProviderError,
    StalePlanError,
    StoreError,
    UsageError,
)
from plexica_gitops.findings import Finding
from plexica_gitops.lifecycle import DEPLOYED, RUNNING, TARGET_STATUS
from plexica_gitops.live.model import LiveState, ObservedPart
from plexica_gitops.plan.builder import address_exists, build_plan
from plexica_gitops.plan.drift import DriftEntry, DriftReport, drift_report
from plexica_gitops.plan.graph import PlanCycleError, order, select_targets
from plexica_gitops.plan.model import (
    Cause,
    Plan,
    Replacement,
    secret_replacements,
)
from plexica_gitops.runtime.provider import (
    ENTRY_POINT_GROUP,
    Provider,
    available_providers,
    check_provider_settings,
    load_provider,
)
from plexica_gitops.source.cache import Cache
from plexica_gitops.source.select import SourceChoice, choose_source
from plexica_gitops.source.tree import SourceTree
from plexica_gitops.store.connection import ENV_DATABASE_URL, connect
from plexica_gitops.store.connection import database_url as store_database_url

# What only apply, observing the platform, status and drift's outputs use is imported where
# they use it: the store's driver, the broker's client, the apply engine and the metrics
# library cost a second on every `validate`, `plan --live-state` and `--help` (issue 15);
# so are the plan file (apply and show) and the workload specs (plan, apply, render), which
# `validate` never reads.
if TYPE_CHECKING:
    import psycopg

    from plexica_gitops.apply.engine import ApplyReport, Reporter
    from plexica_gitops.broker.kafka import EventBroker
    from plexica_gitops.gitops.metrics import DriftSummary
    from plexica_gitops.gitops.notify import Delivery
    from plexica_gitops.observe import SettingsSource, StatusView
    from plexica_gitops.store.lock import ApplyLock, LeaseHolder

DEFAULT_DESIRED_STATE = Path("desired-state")

Warn = Callable[[str], None]


def _ignore(*_: object) -> None:
    pass


# A desired state: a directory, or what `source.select.choose_source` chose (a directory or
# a git revision, with how to name it in messages).
Desired = Path | SourceChoice


def _chosen(root: Desired) -> SourceChoice:
    return root if isinstance(root, SourceChoice) else choose_source(root, None, None, None)


class DesiredStateInvalid(PlexicaError):
    """Validation found errors in the desired state (`result` holds the findings); nothing
    was applied."""

    def __init__(self, chosen: SourceChoice, result: ValidationReport) -> None:
        super().__init__(
            f"{chosen.label} is not valid: nothing was applied",
            f"Fix the errors above (`plexica-gitops validate {chosen.arguments}`).",
        )
        self.label = chosen.label
        self.result = result


def validate(source: Path | SourceTree, cache: Cache | None = None) -> ValidationReport:
    """`validate`: the desired state's findings, the installed providers checking their
    runtime settings; `cache`: what earlier runs built of unchanged files (source/cache.py)."""
    return validate_directory(source, check_provider_settings, cache)


def _validated(chosen: SourceChoice) -> ValidationReport:
    source = chosen.source
    if isinstance(source, Path) and not source.is_dir():
        raise UsageError(f"{source} is not a directory", "Name the desired-state directory.")
    return validate(source, chosen.cache)


@dataclass(frozen=True)
class LiveSource:
    """Where the live state comes from: a JSON `snapshot` (a path; `-` reads standard
    input), else the platform observed through `database_url` (default:
    $PLEXICA_DATABASE_URL)."""

    snapshot: str | None = None
    database_url: str | None = None


@dataclass(frozen=True)
class PlanOptions:
    """`targets`: plan only these addresses (and what they depend on). `unobserved`: parts
    of the platform planned without observing them (the plan says so)."""

    targets: Sequence[str] = ()
    unobserved: frozenset[ObservedPart] = frozenset()


# --------------------------------------------------------------------------- plan


def plan(
    root: Desired,
    live_source: LiveSource,
    options: PlanOptions = PlanOptions(),
    warn: Warn = _ignore,
) -> Plan:
    """The plan, or a plan holding only errors when the desired state is invalid (so JSON
    and Markdown consumers in CI get a document either way). A part of the platform the
    plan needs but could not observe fails it, unless `options.unobserved` names that part."""
    result = _validated(_chosen(root))
    problems: dict[ObservedPart, str] = {}
    desired = result.desired if result.valid else None
    unobserved = options.unobserved
    live = read_live_state(live_source, desired, unobserved, problems, warn)
    warnings = [f for f in result.findings if not f.is_error]
    if not result.valid:
        return Plan(
            desired_revision=result.desired.revision,
            live_fingerprint=live.fingerprint(),
            errors=result.errors,
            warnings=warnings,
            unobserved=sorted(unobserved),
            desired_dirty=result.desired.work_tree_dirty,
            desired_head=result.desired.work_tree_head,
        )
    unknown = [t for t in options.targets if not address_exists(t, result.desired, live)]
    if unknown:
        raise UsageError(
            f"--target {unknown[0]} names nothing in git or on the platform",
            "Use an address such as plugin.crm, plugin.crm.workload, tenant.acme or "
            "tenant.acme.plugin.crm (see `plan --format json` for every address).",
        )
    rotations, unsure = _secret_rotations(result.desired, live, live_source)
    made = _build(result.desired, live, secret_replacements(rotations))
    _check_observed(made, problems, unobserved, warn)
    made.warnings = [*warnings, *unsure, *made.warnings]
    return _targeted(made, options.targets)


def _check_observed(
    made: Plan, problems: dict[ObservedPart, str], unobserved: frozenset[ObservedPart], warn: Warn
) -> None:
    """A part the plan needs but that was not observed fails it, unless `unobserved` names
    it (the plan then says so); one the plan does not need is a warning only."""
    needed = {ObservedPart(p) for p in made.unobserved}
    for part, problem in problems.items():
        if part not in needed and not problem.startswith("the live-state snapshot"):
            warn(_unobserved_warning(part, problem))
    missing = sorted(needed - unobserved)
    if missing:
        for part in missing:
            failure = _not_observed(part, problems.get(part))
        raise failure
    made.unobserved = sorted(needed | unobserved)


def read_live_state(
    source: LiveSource,
    desired: DesiredState | None = None,
    skip: frozenset[ObservedPart] = frozenset(),
    problems: dict[ObservedPart, str] | None = None,
    warn: Warn = _ignore,
) -> LiveState:
    """The platform observed (or the snapshot), without the parts in `skip`; why a part
    could not be observed goes to `problems`."""
    if source.snapshot is None:
        if source.database_url or os.environ.get(ENV_DATABASE_URL):
            with _platform_clients(desired, warn=warn) as (provider, broker):
                return _observe(
                    source.database_url,
                    None if ObservedPart.RUNTIME in skip else provider,
                    None if ObservedPart.BROKER in skip else broker,
                    problems=problems,
                    warn=warn,
                )
        raise LiveStateError(
            "no live state to plan against",
            f"Set {ENV_DATABASE_URL} (or --database-url) to observe the platform, or pass "
            "--live-state FILE (a JSON snapshot; `echo '{}' | plexica-gitops plan "
            "--live-state -` plans against an empty platform).",
        )
    live = _read_snapshot(source.snapshot, desired)
    for part, flag in (
        (ObservedPart.RUNTIME, live.workloads_observed),
        (ObservedPart.BROKER, live.topics_observed),
    ):
        if not flag and problems is not None:
            problems[part] = (
                f"the live-state snapshot {source.snapshot} has {part.holds}_observed: false"
            )
    return live.without(skip)


def _read_snapshot(name: str, desired: DesiredState | None) -> LiveState:
    """The snapshot, a file read a piece at a time (never its whole text next to the
    state); its configurations equal to `desired`'s are those objects (live/codec.py)."""
    try:
        if name == "-":
            return LiveState.from_json(sys.stdin.read(), desired)
        return LiveState.from_json_file(Path(name), desired)
    except OSError as exc:
        raise LiveStateError(
            f"cannot read live state {name}: {exc.strerror}", "Check the path."
        ) from None
    except UnicodeDecodeError:
        raise LiveStateError(f"live state {name} is not UTF-8 JSON", "Write it as UTF-8.") from None
    except LiveStateError as exc:
        raise LiveStateError(
            f"live state {name}: {exc.message}",
            "Values in a snapshot are bounded as in the store: use a file written by "
            "plexica-gitops, and fix or drop that value.",
        ) from None
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise LiveStateError(
            f"live state {name} is malformed at {where}: {first['msg']}",
            "Use a file written by plexica-gitops, or `{}` for an empty platform.",
        ) from None


def load_saved_plan(path: Path) -> Plan:
    """A plan saved with `plan --out`, its checksum verified."""
    from plexica_gitops.plan.planfile import load_plan

    try:
        return load_plan(path)
    except PlanFileError as exc:
        raise PlanFileError(
            exc.message, "Plan files are written by `plexica-gitops plan --out`."
        ) from None


def _build(desired: DesiredState, live: LiveState, replace: Mapping[str, Replacement]) -> Plan:
    try:
        return build_plan(desired, live, replace)
    except PlanCycleError as exc:  # a planner bug, never a user mistake
        raise PlexicaError(
            f"internal planner error: {exc}", "Please report it with the inputs."
        ) from None


def _targeted(made: Plan, targets: Sequence[str]) -> Plan:
    if targets:
        kept = select_targets(made.actions, list(targets))
        made.actions = order({a.id: (a, a.depends_on) for a in kept})
        made.targets = list(targets)
        made.unrecorded = {
            address: fingerprint
            for address, fingerprint in made.unrecorded.items()
            if any(is_below(address, target) for target in targets)
        }
    return made


# --------------------------------------------------------------------------- observe


def _provider(
    desired: DesiredState | None, *, required: bool = False, warn: Warn = _ignore
) -> Provider | None:
    """The runtime provider platform.yaml names, built with its settings. None when there is
    no platform (an invalid desired state) — or, unless `required`, when it is not
    installed."""
    platform = desired.platform if desired else None
    if platform is None:
        return None
    runtime = platform.document.spec.runtime
    try:
        return load_provider(runtime.provider, runtime.model_extra or {})
    except ProviderError as exc:
        if required:
            raise
        warn(exc.message)
        return None


def _broker() -> EventBroker | None:
    """The platform's broker from KAFKA_BOOTSTRAP_SERVERS (and the SASL/TLS settings beside
    it); None when it is not set (topics are then left out of plans, which say so)."""
    from plexica_gitops.broker.kafka import BrokerSettings, EventBroker

    settings = BrokerSettings.from_env(os.environ)
    return EventBroker(settings) if settings else None


@contextmanager
def _platform_clients(
    desired: DesiredState | None, *, required: bool = False, warn: Warn = _ignore
) -> Iterator[tuple[Provider | None, EventBroker | None]]:
    provider = _provider(desired, required=required, warn=warn)
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
    warn: Warn = _ignore,
) -> LiveState:
    """The live state from the platform's PostgreSQL, the runtime provider and the broker.
    An unreachable runtime or broker makes `plan` leave workloads or topics out (why goes
    to `problems`, or to `warn` without it); `apply` stops."""
    from plexica_gitops.observe import observe_platform

    found: dict[ObservedPart, str] = {}
    try:
        live = observe_platform(
            store_database_url(database_url), provider, broker, strict=strict, problems=found
        )
    except ProviderError as exc:
        raise ProviderError(f"cannot observe the runtime: {exc.message}", exc.hint) from None
    except BrokerError as exc:
        raise BrokerError(f"cannot observe the event broker: {exc.message}", exc.hint) from None
    if problems is not None:
        problems.update(found)
        return live
    for part, problem in found.items():
        warn(_unobserved_warning(part, problem))
    return live


def _unobserved_warning(part: ObservedPart, problem: str) -> str:
    return f"{part.label} was not observed: {problem}"


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


def _not_observed(part: ObservedPart, problem: str | None, verb: str = "plan") -> NotObserved:
    """A plan never claims what it did not see: fail, saying how to see it or to plan
    (or apply) explicitly without it."""
    return NotObserved(
        f"cannot {verb}: {part.label} was not observed "
        f"({problem or _NOT_CONFIGURED[part]}), and {_NEEDED_FOR[part]}",
        f"{_MAKE_OBSERVABLE[part]} and {verb} again, or {verb} without it: --unobserved "
        f"{part.value} ({part.holds} are then not compared, and the plan says so).",
    )


def _secret_rotations(
    desired: DesiredState, live: LiveState, live_source: LiveSource
) -> tuple[dict[str, str], list[Finding]]:
    """The workloads to replace because a secret changed, and the warnings (PGP206) for the
    ones whose values could not be compared. The key is the store's: a plan of a
    snapshot has none."""
    from plexica_gitops.runtime.spec import secret_rotations

    if live_source.snapshot is not None:
        key, why = None, "no store was read: the live state came from --live-state"
    else:
        key, why = _digest_key(store_database_url(live_source.database_url))
    return secret_rotations(desired, live, key, os.environ, no_key=why)


def _digest_key(url: str) -> tuple[bytes | None, str]:
    import psycopg

    from plexica_gitops.store import catalog

    try:
        with connect(url) as conn:
            key = catalog.env_digest_key(conn)
    except (StoreError, psycopg.Error) as exc:
        return None, f"the store's digest key could not be read: {exc}".split("\n")[0]
    return key, "" if key else "this database role may not read the store's digest key"


# --------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class ApplyOptions:
    """`replace`: workload addresses to replace even if unchanged. `unobserved`: only the
    broker may be left out of an apply. `lock_timeout`: seconds to wait for another apply's
    lock. `require_saved_plan`: refuse a fresh plan (as platform.yaml's
    spec.policy.requireSavedPlan and $PLEXICA_REQUIRE_SAVED_PLAN do)."""

    database_url: str | None = None
    parallelism: int = 4
    lock_timeout: float = 0
    replace: Sequence[str] = ()
    unobserved: frozenset[ObservedPart] = frozenset()
    require_saved_plan: bool = False
    # Write only the last-applied rows of what the plan finds in sync without one
    # (Plan.unrecorded), never a step: reconcile's in-sync cycles.
    record_only: bool = False


# Set in a pipeline's environment (where the repository cannot turn it off), it has the
# effect of --require-saved-plan on every apply the pipeline runs.
ENV_REQUIRE_SAVED_PLAN = "PLEXICA_REQUIRE_SAVED_PLAN"
_ENV_ON = frozenset({"1", "true", "yes", "on"})
_ENV_OFF = frozenset({"", "0", "false", "no", "off"})


class SavedPlanRequired(PlexicaError):
    """An apply that would plan afresh, refused: only a reviewed, saved plan may apply."""


def _env_requires_saved_plan() -> bool:
    value = os.environ.get(ENV_REQUIRE_SAVED_PLAN, "").strip().lower()
    if value in _ENV_ON or value in _ENV_OFF:
        return value in _ENV_ON
    raise UsageError(
        f"{ENV_REQUIRE_SAVED_PLAN}={value!r} is neither on nor off",
        f"Set {ENV_REQUIRE_SAVED_PLAN}=1 to apply only saved plans, or unset it.",
    )


def saved_plan_required_by(chosen: SourceChoice, desired: DesiredState, flag: bool) -> str | None:
    """What demands that only a saved plan be applied — the platform.yaml policy of the
    desired state being applied, --require-saved-plan or $PLEXICA_REQUIRE_SAVED_PLAN —
    named for the message; None when nothing does."""
    from_env = _env_requires_saved_plan()  # a bad value is an error, whatever else says
    platform = desired.platform
    if platform is not None and platform.document.spec.policy.require_saved_plan:
        where = platform.location("spec", "policy", "requireSavedPlan")
        return f"{chosen.prefix}{where} sets spec.policy.requireSavedPlan"
    if flag:
        return "--require-saved-plan was given"
    if from_env:
        return f"{ENV_REQUIRE_SAVED_PLAN} is set"
    return None


def _refuse_fresh_plan(root: Desired, desired: DesiredState, flag: bool) -> None:
    """Under the approval policy an apply carries out only a plan that was reviewed: one
    saved with `plan --out`. Refused before anything is observed or locked."""
    chosen = _chosen(root)
    why = saved_plan_required_by(chosen, desired, flag)
    if why is None:
        return
    raise SavedPlanRequired(
        f"refusing to apply {chosen.label} without a saved plan: {why}; nothing was applied",
        f"Run `plexica-gitops plan {chosen.arguments} --out FILE`, review it, then "
        f"`plexica-gitops apply FILE{_saved_plan_arguments(chosen)}`.",
    )


def _saved_plan_arguments(chosen: SourceChoice) -> str:
    """How `apply FILE` names the desired state the plan is checked against."""
    if not isinstance(chosen.source, Path):
        return f" {chosen.arguments}"
    return "" if chosen.source == DEFAULT_DESIRED_STATE else f" --desired-state {chosen.arguments}"


def _go_ahead(plan: Plan) -> None:
    pass


def _exit_at_once() -> None:
    os._exit(1)


def _no_stop() -> threading.Event | None:
    return None


@dataclass(frozen=True)
class ApplyHooks:
    """How an apply talks to whoever runs it. `show_plan` gets a fresh plan once it is made
    (a saved plan was reviewed when it was made); `confirm` returns to go ahead and raises
    to stop (nothing has changed yet); `waiting` hears who holds the lock being waited for;
    `lease_expired` runs when the lock was lost and work still ran as its lease ended: it
    must end the process (the default does), so that it cannot overlap the next apply.
    `stop` is called once the apply is confirmed, as its steps start: it gives the event
    that, once set, lets the steps in flight finish and starts no new one (install signal
    handlers there, so that Ctrl-C at the question still interrupts the question)."""

    reporter: Reporter
    stop: Callable[[], threading.Event | None] = _no_stop
    show_plan: Callable[[Plan], None] = _ignore
    confirm: Callable[[Plan], None] = _go_ahead
    waiting: Callable[[LeaseHolder], None] = _ignore
    lease_expired: Callable[[], None] = _exit_at_once
    warn: Warn = _ignore


@dataclass(frozen=True)
class ApplyResult:
    """`report` is None when there was nothing to do (then nothing was journaled)."""

    plan: Plan
    apply_id: int | None = None
    report: ApplyReport | None = None
    fresh: bool = True  # planned now, not a saved plan
    recorded: int = 0  # last-applied rows written for what was in sync (Plan.unrecorded)

    @property
    def no_changes(self) -> bool:
        return self.report is None


def apply(
    root: Desired, options: ApplyOptions, hooks: ApplyHooks, *, saved_plan: Path | None = None
) -> ApplyResult:
    """Carry out `saved_plan` — refused when altered, stale, or not exactly what planning
    `root` against the live platform gives — or a fresh plan of `root` (refused when the
    approval policy requires a saved plan): under the apply lock, observe, plan, check,
    confirm, run."""
    from plexica_gitops.apply.session import run_apply
    from plexica_gitops.store import catalog
    from plexica_gitops.store.journal import mark_interrupted
    from plexica_gitops.store.lock import apply_lock
    from plexica_gitops.store.schema import check_store

    if options.replace and saved_plan is not None:
        raise UsageError(
            "--replace changes what is planned: it cannot be added to a saved plan",
            "Apply the desired-state directory with --replace, and review the plan it shows.",
        )
    skip = options.unobserved
    if ObservedPart.RUNTIME in skip:
        raise UsageError(
            "--unobserved runtime: apply cannot run without the runtime provider",
            "Only the broker can be left out of an apply (--unobserved broker).",
        )
    desired = load_desired(root)
    if saved_plan is None and not options.record_only:  # no step runs without review
        _refuse_fresh_plan(root, desired, options.require_saved_plan)
    forced = _forced_replacements(options.replace, desired)
    url = store_database_url(options.database_url)
    host, pid = socket.gethostname(), os.getpid()
    with connect(url) as conn:
        check_store(conn)
        key = catalog.env_digest_key(conn)
    with (
        _platform_clients(desired, required=True) as (provider, broker),
        apply_lock(
            url, wait_seconds=options.lock_timeout, host=host, pid=pid, on_wait=hooks.waiting
        ) as lock,
    ):
        _fence(lock, provider, hooks.lease_expired)
        with connect(url, epoch=lock.epoch) as conn:
            mark_interrupted(conn)
            _record_runtime(conn, desired)
        if ObservedPart.BROKER in skip:
            broker = None
        live = _observe(url, provider, broker, strict=True, warn=hooks.warn)
        if saved_plan is not None:
            chosen = _checked_saved_plan(saved_plan, desired, live, key, skip)
        else:
            chosen = _plan_for_apply(desired, live, key, forced, skip)
            hooks.show_plan(chosen)
        if chosen.has_errors:
            raise PlexicaError("the plan has errors: nothing was applied", "Fix them in git.")
        if options.record_only or not chosen.has_changes:
            recorded = _record_in_sync(url, lock, chosen)
            return ApplyResult(chosen, fresh=saved_plan is None, recorded=recorded)
        hooks.confirm(chosen)
        lock.verify()  # the question may have taken long: is the lock still ours?
        recorded = _record_in_sync(url, lock, chosen)
        apply_id, report = run_apply(
            chosen,
            desired,
            url,
            provider,
            hooks.reporter,
            parallelism=options.parallelism,
            stop=hooks.stop(),
            broker=broker,
            lease=lock,
            digest_key=key,
        )
    return ApplyResult(chosen, apply_id, report, fresh=saved_plan is None, recorded=recorded)


def _record_in_sync(url: str, lock: ApplyLock, plan: Plan) -> int:
    """The last-applied rows of what the plan found in sync without one (a crash lost
    them, or the value was there before us): written before any step, under the lock."""
    from plexica_gitops.store.journal import record_in_sync

    if not plan.unrecorded:
        return 0
    with connect(url, epoch=lock.epoch) as conn:
        return record_in_sync(conn, plan.unrecorded, plan.desired_revision)


def load_desired(root: Desired) -> DesiredState:
    """The desired state at `root`; DesiredStateInvalid (with the findings) when it is not
    valid."""
    chosen = _chosen(root)
    result = _validated(chosen)
    if not result.valid:
        raise DesiredStateInvalid(chosen, result)
    return result.desired


def _fence(lock: ApplyLock, provider: Provider | None, lease_expired: Callable[[], None]) -> None:
    """Once the lock is lost, the runtime work in flight is cancelled; should anything still
    run when the lease ends, `lease_expired` ends the process, so that it cannot overlap
    the next apply."""
    if provider is not None:
        provider.cancel_on(lock.lost)
    lock.on_deadline(lease_expired)


def _record_runtime(conn: psycopg.Connection[Any], desired: DesiredState) -> None:
    """Record the runtime provider and settings an apply uses, for `status` (call it once
    the apply holds the lock, before its first step)."""
    from plexica_gitops.store.runtime import record_runtime

    if desired.platform is None:
        return
    runtime = desired.platform.document.spec.runtime
    record_runtime(conn, runtime.provider, runtime.model_extra or {})


def _forced_replacements(addresses: Sequence[str], desired: DesiredState) -> dict[str, Replacement]:
    """`--replace` addresses as planner input (plugin id -> why); a usage error for any
    address that is not the workload of a plugin in git."""
    forced: dict[str, Replacement] = {}
    for address in addresses:
        parsed = parsed_or_none(address)
        if parsed is None or parsed.kind is not ResourceKind.WORKLOAD or not parsed.plugin:
            raise UsageError(
                f"--replace {address}: not a workload address",
                "Name a plugin's workload, e.g. --replace plugin.crm.workload.",
            )
        if parsed.plugin not in desired.plugins:
            raise UsageError(
                f"--replace {address}: git has no plugin {parsed.plugin!r}",
                "Name the workload of a plugin in the desired state.",
            )
        forced[parsed.plugin] = Replacement(
            "replacement requested with --replace", Cause.REPLACE_REQUESTED
        )
    return forced


def _rotations(
    desired: DesiredState, live: LiveState, key: bytes | None
) -> tuple[dict[str, str], list[Finding]]:
    from plexica_gitops.runtime.spec import secret_rotations

    return secret_rotations(
        desired, live, key, os.environ, no_key="this database role may not read the digest key"
    )


def _checked_saved_plan(
    path: Path,
    desired: DesiredState,
    live: LiveState,
    key: bytes | None,
    skip: frozenset[ObservedPart],
) -> Plan:
    """The saved plan, refused when altered, stale, or not exactly what planning its
    desired revision against the live platform gives (secret rotations included)."""
    from plexica_gitops.plan.planfile import check_current, check_justified, load_plan

    replace, _ = _rotations(desired, live, key)
    try:
        saved = load_plan(path)
        check_current(saved, desired.revision, live.fingerprint())
        replanned = _targeted(_build(desired, live, secret_replacements(replace)), saved.targets)
        _refuse_unobserved(replanned, skip)
        check_justified(saved, replanned)
        saved.unrecorded = replanned.unrecorded  # bookkeeping: never read from the file
    except StalePlanError as exc:
        raise StalePlanError(exc.message, "Nothing was applied.") from None
    except PlanFileError as exc:
        raise PlanFileError(
            exc.message, "Make a new plan with `plexica-gitops plan --out`."
        ) from None
    return saved


def _plan_for_apply(
    desired: DesiredState,
    live: LiveState,
    key: bytes | None,
    forced: dict[str, Replacement],
    skip: frozenset[ObservedPart],
) -> Plan:
    """A fresh plan of the desired state, replacing the workloads whose secrets changed
    since their replicas started, and the `forced` ones."""
    rotations, unsure = _rotations(desired, live, key)
    fresh = _build(desired, live, {**secret_replacements(rotations), **forced})
    _refuse_unobserved(fresh, skip)
    fresh.warnings = [*unsure, *fresh.warnings]
    for pid in sorted(forced):
        if not any(a.address == f"plugin.{pid}.workload" for a in fresh.actions):
            raise UsageError(
                f"--replace plugin.{pid}.workload: there is no workload to replace (git wants "
                f"plugin {pid!r} {desired.plugins[pid].document.spec.state.value})",
                "Name the workload of a plugin that git wants installed, active or disabled.",
            )
    return fresh


def _refuse_unobserved(made: Plan, skip: frozenset[ObservedPart]) -> None:
    """Apply never acts on what it did not see: a part the plan needs that was not
    observed stops it, unless the user asked to apply without it (said in the plan)."""
    needed = {ObservedPart(p) for p in made.unobserved}
    for part in sorted(needed - skip):
        raise _not_observed(part, None, verb="apply")
    made.unobserved = sorted(needed | skip)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class _Runtime:
    """The runtime provider `status` observes the workloads through, and where its settings
    came from."""

    provider: str
    settings: dict[str, Any]
    source: SettingsSource


def status(root: Path | None, database_url: str | None = None) -> StatusView:
    """The live platform as it is, for `status`. `root`'s platform.yaml names the runtime
    provider when given and valid; else what the last apply recorded; else
    ./desired-state. An unreachable runtime or broker is a warning in the view, not an
    error: an incident is no time to be unable to look at the platform."""
    from plexica_gitops.observe import StatusView
    from plexica_gitops.store import catalog

    url = store_database_url(database_url)
    warnings: list[str] = []
    with connect(url) as conn:
        runtime = _status_runtime(root, conn, warnings)
        live = _observe_for_status(url, runtime, warnings)
        routed = {pid: catalog.endpoints(conn, pid) for pid in live.plugins}
    return StatusView(
        live,
        routed,
        provider=runtime.provider if runtime else None,
        settings_from=runtime.source if runtime else None,
        warnings=warnings,
    )


def _status_runtime(
    root: Path | None, conn: psycopg.Connection[Any], warnings: list[str]
) -> _Runtime | None:
    """ROOT's platform.yaml when ROOT is given and valid; else what the last apply recorded;
    else ./desired-state when there is one. None (workloads not observed) otherwise."""
    from plexica_gitops.observe import SettingsSource
    from plexica_gitops.store.runtime import recorded_runtime

    if root is not None:
        if not root.is_dir():
            raise UsageError(f"{root} is not a directory", "Name the desired-state directory.")
        from_directory = _runtime_of(root)
        if from_directory is not None:
            return from_directory
        # an incident is no time to be unable to look at the platform
        warnings.append(
            f"{root.as_posix()} is not valid, so the runtime settings in its "
            "platform.yaml are not used"
        )
    recorded = recorded_runtime(conn)
    if recorded is not None:
        return _Runtime(recorded.provider, recorded.settings, SettingsSource.STORE)
    if root is None and DEFAULT_DESIRED_STATE.is_dir():
        from_directory = _runtime_of(DEFAULT_DESIRED_STATE)
        if from_directory is not None:
            return from_directory
    warnings.append(
        "workloads are not observed: no apply has recorded its runtime provider in this "
        "store yet; name the desired-state directory (`plexica-gitops status DIR`)"
    )
    return None


def _runtime_of(root: Path) -> _Runtime | None:
    from plexica_gitops.observe import SettingsSource

    result = validate(root)
    platform = result.desired.platform if result.valid else None
    if platform is None:
        return None
    runtime = platform.document.spec.runtime
    return _Runtime(runtime.provider, dict(runtime.model_extra or {}), SettingsSource.DESIRED_STATE)


def _observe_for_status(url: str, runtime: _Runtime | None, warnings: list[str]) -> LiveState:
    """Whatever can be seen: an unreachable runtime or broker is a warning, not an error."""
    from plexica_gitops.observe import observe_platform

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


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class DriftOptions:
    """`unobserved`: parts checked without observing them (the report says so)."""

    unobserved: frozenset[ObservedPart] = frozenset()


def drift(
    root: Desired,
    database_url: str | None = None,
    options: DriftOptions = DriftOptions(),
    warn: Warn = _ignore,
) -> DriftReport:
    """Observe the platform, plan `root` against it, and split the actions by cause: drift
    (the platform moved away from what was last applied) and pending (git changed, not
    applied yet). A part the plan needs that could not be observed is reported, not
    raised: what was observed is still compared."""
    return drift_check(root, database_url, options, warn).report


@dataclass(frozen=True)
class DriftCheck:
    """A drift report with the live state it was made from (the reconcile loop's metrics
    describe each resource seen)."""

    report: DriftReport
    live: LiveState


def drift_check(
    root: Desired,
    database_url: str | None = None,
    options: DriftOptions = DriftOptions(),
    warn: Warn = _ignore,
) -> DriftCheck:
    """`drift`, keeping the live state it observed."""
    chosen = _chosen(root)
    result = _validated(chosen)
    if not result.valid:
        raise DesiredStateInvalid(chosen, result)
    desired = result.desired
    source = LiveSource(database_url=store_database_url(database_url))
    problems: dict[ObservedPart, str] = {}
    live = read_live_state(source, desired, options.unobserved, problems, warn)
    rotations, unsure = _secret_rotations(desired, live, source)
    made = _build(desired, live, secret_replacements(rotations))
    needed = {ObservedPart(p) for p in made.unobserved}
    missing = {
        part: problems.get(part) or _NOT_CONFIGURED[part]
        for part in sorted(needed - options.unobserved)
    }
    rules = desired.platform.document.spec.drift.ignore if desired.platform else []
    report = drift_report(
        made,
        live,
        rules,
        not_observed=missing,
        unobserved=options.unobserved,
        unsure=unsure,
        checked_at=datetime.now(UTC),
    )
    return DriftCheck(report, live)


def drift_summary(report: DriftReport) -> DriftSummary:
    """The report as metrics (gitops/metrics.py): resources per kind, and which parts were
    seen (the store always was, or there would be no report)."""
    from plexica_gitops.gitops.metrics import DriftSummary

    observed = {part.value: seen for part, seen in (report.observed or {}).items()}
    for part in report.not_observed or {}:
        observed[part.value] = False
    return DriftSummary(
        observed={**observed, "store": True},
        drift=_resources_per_kind(report.drift),
        pending=_resources_per_kind(report.pending),
        checked_at=report.checked_at.timestamp(),
    )


def _resources_per_kind(entries: Sequence[DriftEntry]) -> dict[str, int]:
    """Resources, not actions: a workload replaced in two steps counts once."""
    return dict(Tally(kind for _, kind in {(e.address, e.kind) for e in entries}))


def write_drift_metrics(report: DriftReport, path: Path) -> None:
    """Prometheus text for node-exporter's textfile collector (MetricsError when it cannot
    be written)."""
    from plexica_gitops.gitops.metrics import Metrics

    metrics = Metrics()
    metrics.record_drift(drift_summary(report))
    metrics.write_textfile(path)


def notify_drift(body: bytes, url: str) -> Delivery:
    """POSTs the JSON report to a webhook, signed with PLEXICA_WEBHOOK_SECRET when it is set
    (WebhookError when it was not delivered)."""
    from plexica_gitops.gitops.notify import deliver, webhook_secret

    return deliver(url, body, event="drift", secret=webhook_secret())


# --------------------------------------------------------------------------- render

# The first line of every file `render` writes: how a later render knows a file as its own
# (and removes it when its plugin is gone), and how a reader knows not to edit it.
RENDERED_HEADER = "# Rendered by `plexica-gitops render`: edit the desired state, not this file.\n"

# A provider's manifest hook (a module-level `render_manifests` beside its factory, as
# `check_settings` is): specs and runtime settings -> named groups of objects, one file each.
ManifestHook = Callable[
    [Sequence[Any], Mapping[str, Any]], Sequence[tuple[str, Sequence[Mapping[str, Any]]]]
]


class RenderInvalid(DesiredStateInvalid):
    """Validation found errors in the desired state: nothing was rendered or written."""

    def __init__(self, chosen: SourceChoice, result: ValidationReport) -> None:
        super().__init__(chosen, result)
        self.message = f"{chosen.label} is not valid: nothing was rendered"
        self.args = (self.message,)


@dataclass(frozen=True)
class RenderedManifests:
    """What `render` made: `files` maps a file name to its YAML text, in order (the
    platform's objects first, then one file per plugin by id). `stream` is all of them as
    one YAML stream."""

    provider: str
    files: Mapping[str, str]
    stream: str


@dataclass(frozen=True)
class WrittenManifests:
    written: tuple[Path, ...]
    removed: tuple[Path, ...]  # files an earlier render wrote for plugins now gone


def render_manifests(
    root: Desired,
    provider: str,
    *,
    namespace: str | None = None,
    warn: Warn = _ignore,
) -> RenderedManifests:
    """The manifests `provider` would apply for the desired state, for teams that hand them
    to Argo CD or Helm: validated first (RenderInvalid), no env value read or written (the
    env Secret is a stub naming its keys). The settings are platform.yaml's runtime
    settings when it names this provider, its defaults otherwise (said through `warn`);
    `namespace` overrides theirs. A provider without a manifest hook (docker) is a
    UsageError."""
    from plexica_gitops.runtime.spec import workload_spec

    hook = _manifest_hook(provider)
    chosen = _chosen(root)
    result = _validated(chosen)
    if not result.valid:
        raise RenderInvalid(chosen, result)
    desired = result.desired
    settings = _render_settings(desired, provider, namespace, warn)
    specs = [
        workload_spec(entry, desired, running=TARGET_STATUS[entry.document.spec.state] in RUNNING,
                      resolve=False)
        for _, entry in sorted(desired.plugins.items())
        if TARGET_STATUS[entry.document.spec.state] in DEPLOYED
    ]  # fmt: skip
    try:
        groups = hook(specs, settings)
    except ProviderError as exc:
        raise ProviderError(f"cannot render for {provider}: {exc.message}", exc.hint) from None
    files = {f"{name}.yaml": RENDERED_HEADER + _yaml_stream(objects) for name, objects in groups}
    every = [obj for _, objects in groups for obj in objects]
    return RenderedManifests(provider, files, RENDERED_HEADER + _yaml_stream(every))


def write_manifests(rendered: RenderedManifests, out: Path) -> WrittenManifests:
    """Writes each file into `out` (made when missing) and removes the files an earlier
    render wrote there that this one did not (a plugin gone from git must not stay
    deployed by whoever syncs the directory). Files it did not write are left alone."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a directory", "Name a directory for the files.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in rendered.files.items():
            path = out / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
        stale = [p for p in sorted(out.glob("*.yaml")) if p.name not in rendered.files]
        removed = [p for p in stale if _rendered_by_us(p)]
        for path in removed:
            path.unlink()
    except OSError as exc:
        raise PlexicaError(
            f"cannot write the manifests to {out}: {exc.strerror}", "Check the directory."
        ) from None
    return WrittenManifests(tuple(written), tuple(removed))


def _manifest_hook(provider: str) -> ManifestHook:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name != provider:
            continue
        module = importlib.import_module(entry_point.module)
        hook: ManifestHook | None = getattr(module, "render_manifests", None)
        if hook is None:
            raise UsageError(
                f"the {provider} provider has no manifests to render: it runs workloads "
                "itself, with nothing a deployment tool could apply",
                "Render for Kubernetes: `plexica-gitops render --provider kubernetes`.",
            )
        return hook
    known = ", ".join(available_providers()) or "none"
    raise UsageError(
        f"--provider {provider}: no runtime provider of that name is installed (installed: "
        f"{known})",
        "Render for Kubernetes: `plexica-gitops render --provider kubernetes`.",
    )


def _render_settings(
    desired: DesiredState, provider: str, namespace: str | None, warn: Warn
) -> dict[str, Any]:
    runtime = desired.platform.document.spec.runtime if desired.platform else None
    settings: dict[str, Any] = {}
    if runtime is not None and runtime.provider == provider:
        settings = dict(runtime.model_extra or {})
    else:
        named = runtime.provider if runtime else "no"
        warn(
            f"platform.yaml names the {named} provider, so none of its runtime settings "
            f"apply: rendering with the {provider} provider's defaults"
        )
    if namespace is None:
        return settings
    problems = check_provider_settings(provider, {"namespace": namespace}) or []
    if problems:
        raise UsageError(f"--namespace {namespace}: {problems[0].message}", problems[0].hint)
    return {**settings, "namespace": namespace}


def _yaml_stream(objects: Sequence[Mapping[str, Any]]) -> str:
    """YAML documents in the order given, keys in the order the provider built them (so
    the same desired state always renders the same bytes)."""
    return yaml.safe_dump_all(
        [dict(obj) for obj in objects], explicit_start=True, sort_keys=False, width=100
    )


def _rendered_by_us(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(RENDERED_HEADER.encode())) == RENDERED_HEADER.encode()
