"""Every error plexica-gitops raises on purpose, in one tree.

Each carries `message` (what went wrong, never a secret), `hint` (what to do about it) and
`transient` (a server briefly away or busy: apply retries the step with backoff). The CLI
has one handler for the whole tree: it prints message and hint and exits 1 (2 for a
UsageError). Anything else that escapes is a bug.

    PlexicaError
    ├── UsageError               the command line names something that is not there (exit 2)
    ├── SourceError              reading a desired-state source (source/tree.py, source/git.py)
    │   ├── SourceUsageError     no source named, or two (also a UsageError: exit 2)
    │   ├── RootNotFound, PathNotFound, NotARegularFile, FileTooLarge, UnreadablePath
    │   └── RepositoryNotFound, RefNotFound, AmbiguousRef, PathNotInTree,
    │       RemoteUnreachable (transient), AuthenticationFailed, CredentialsInUrl
    ├── DesiredStateInvalid      validation found errors; carries the findings (service.py)
    ├── LiveStateError           a --live-state snapshot that cannot be read safely
    ├── NotObserved              a part of the platform the plan needs was not observed
    ├── StoreError               the platform's PostgreSQL (store/connection.py)
    │   ├── LockHeldError, LockLostError                       (store/lock.py)
    │   └── TransitionError, ConflictError, PermissionConflict (store/catalog.py)
    ├── ProviderError            the runtime provider (runtime/provider.py)
    │   ├── ImagePullError, Cancelled, RolloutFailed, ProviderNotFound
    │   └── ApplyConflict        (the Kubernetes provider)
    ├── BrokerError              the event broker (broker/kafka.py)
    │   └── BrokerUnreachable (transient)
    ├── EnvResolutionError       a workload's env references that cannot be resolved
    ├── PlanFileError            a saved plan that cannot be read or trusted
    │   └── StalePlanError       the world moved since the plan was made
    │       └── UnjustifiedPlanError  not what planning its inputs again gives
    ├── StepFailed               an apply step did not happen (apply/steps.py raises it,
    │                            apply/engine.py records it)
    ├── MetricsError             metrics that cannot be served or written (gitops/metrics.py)
    └── WebhookError             a report the webhook did not accept (gitops/notify.py)

The families' roots are defined here; their leaves live beside the code that raises them
(importing this module only: nothing here imports a stage). Deliberately outside the tree:
PlanCycleError (plan/graph.py), a planner bug and never the user's to fix (the service
reports it as an internal error); the parse errors that validation turns into findings
(QuantityError, VersionSyntaxError, RangeSyntaxError: ValueErrors); and the private
control-flow exceptions of the loader, the codec and the providers."""

from __future__ import annotations


class PlexicaError(Exception):
    """`message` says what went wrong, `hint` what to do. `transient` errors (a server
    briefly away or busy) are retried by apply with backoff; the others fail the step."""

    def __init__(self, message: str, hint: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.transient = transient

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(PlexicaError):
    """The command line (or the caller) names something that is not there: exit 2."""


class SourceError(PlexicaError):
    """Base of every error reading a desired-state source (directory or git)."""


class LiveStateError(PlexicaError):
    """A snapshot that cannot be read safely: `message` names where, never the value."""


class NotObserved(PlexicaError):
    """A part of the platform (the runtime, the broker) that the plan needs was not observed:
    a plan never claims what it did not see."""


class StoreError(PlexicaError):
    """A store problem the operator can act on. Neither message nor hint ever contains a
    password."""


class ProviderError(PlexicaError):
    """A runtime failure with what to do about it. `transient` errors (engine busy, a
    connection reset) are retried by apply with backoff; the others fail the step."""


class BrokerError(PlexicaError):
    """A broker failure with what to do about it. `transient` errors (the broker down or
    slow) may be retried; the others (a refused change) fail the step."""


class EnvResolutionError(PlexicaError):
    """Env references of a workload that cannot be resolved: the message names them, never
    a value."""


class PlanFileError(PlexicaError):
    """The plan file cannot be trusted or read; the message says why and what to do."""


class StalePlanError(PlanFileError):
    """The world moved since the plan was made; the message says what changed."""


class UnjustifiedPlanError(StalePlanError):
    """The saved plan is not what its desired state and the live platform give; the message
    names the first actions that differ."""


class StepFailed(PlexicaError):
    """The step did not do what it should. `rolled_back`: what it started was undone and the
    previous state is serving again (a failed rolling update)."""

    def __init__(self, message: str, hint: str = "", *, rolled_back: bool = False) -> None:
        super().__init__(message, hint)
        self.rolled_back = rolled_back

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message
