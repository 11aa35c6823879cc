"""The runtime provider interface: what the apply engine asks of whatever runs plugin
workloads (Docker, Kubernetes, a third party's runtime).

Providers are plugins: a package registers a factory under the entry-point group
`plexica_gitops.providers` (name = the `runtime.provider` of platform.yaml) and the core
finds it with `load_provider`. A factory takes the platform's runtime settings (everything
beside `provider`) and returns a `Provider`.

The contract, per method, is in the docstrings below. Two rules hold everywhere:
- a workload is found by labels (plugin id, version, manifest hash, env hash, env-values
  digest, managed-by), never by guessing names; what the provider did not create is never
  touched;
- resolved env values (`WorkloadSpec.env`) are handed to the runtime and nowhere else: not
  to logs, errors, labels or the plan.
"""

from __future__ import annotations

import abc
import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from plexica_gitops.desired.model import RolloutStrategy
from plexica_gitops.desired.validate import register_settings_check
from plexica_gitops.errors import ProviderError as ProviderError
from plexica_gitops.live.model import LiveWorkload

ENTRY_POINT_GROUP = "plexica_gitops.providers"
MANAGED_BY = "plexica-gitops"


class ImagePullError(ProviderError):
    """The image is neither present nor pullable (spec 004 edge case 1)."""


class Cancelled(ProviderError):
    """The provider's work was cancelled (`Provider.cancel`: the apply lost its lock). What
    had been done stays as it was, except replicas that were started and never served."""


class RolloutFailed(ProviderError):
    """New replicas never became ready. `rolled_back` says whether the old replicas are
    serving again (their endpoints registered); `last_probe` is the last answer seen."""

    def __init__(
        self, message: str, hint: str = "", *, rolled_back: bool, last_probe: str = ""
    ) -> None:
        super().__init__(message, hint)
        self.rolled_back = rolled_back
        self.last_probe = last_probe


@dataclass(frozen=True, slots=True)
class RolloutSettings:
    """How a replica is judged ready and how long the provider may wait (platform.yaml
    `rollout`, with the plugin's overrides applied)."""

    ready_probes: int = 3
    probe_interval_seconds: float = 1.0
    timeout_seconds: float = 120.0
    grace_period_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """An env value that is a `secretRef` of the desired state: key `key` of secret `name`
    in the runtime's secret store (a Kubernetes Secret in the plugins' namespace)."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class FromEnvRef:
    """An env value that is a `fromEnv` of the desired state: resolved by apply from its
    own environment (`variable`), so the provider must keep the value itself."""

    variable: str


EnvRef = SecretKeyRef | FromEnvRef


@dataclass(frozen=True, slots=True)
class Autoscaling:
    """The Plugin kind's `spec.autoscaling`: replicas between the bounds by CPU use. While
    set, the replica count is the autoscaler's; `WorkloadSpec.replicas` only seeds it."""

    min_replicas: int
    max_replicas: int
    target_cpu_percent: int = 80


@dataclass(frozen=True, slots=True)
class EgressPeer:
    """One of the Plugin kind's `spec.network.egress`: pods by labels (in namespaces by
    theirs), or a `cidr`; on `ports` (none: every port) over `protocols`."""

    pod_labels: Mapping[str, str] | None = None
    namespace_labels: Mapping[str, str] | None = None
    cidr: str | None = None
    ports: tuple[int, ...] = ()
    protocols: tuple[str, ...] = ("TCP",)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """Everything a provider needs to run one plugin's replicas."""

    plugin_id: str
    version: str
    image: str
    manifest_hash: str
    replicas: int
    cpu: str | None
    memory: str | None
    port: int
    readiness_path: str
    liveness_path: str
    env_hash: str  # hash of the env *specification*; labelled so drift is visible
    env: Mapping[str, str] = field(repr=False)  # resolved values: never log or label these
    strategy: RolloutStrategy = RolloutStrategy.ROLLING
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    running: bool = True
    # Keyed digest (HMAC-SHA256, the store's key) of the resolved env values: labelled, so a
    # changed secret is seen without the value or an unkeyed hash of it ever leaving.
    env_digest: str = ""
    # Set for a replacement (`apply --replace`, a changed secret): replicas not labelled
    # with it are replaced even when they match the spec otherwise.
    replace_id: str = ""
    # The desired revision of the apply that creates a replica ("<ref>@sha1:<hex>" or
    # "sha256:<hex>"), labelled on it for people; never compared, so a commit that changes
    # nothing about the workload replaces nothing.
    revision: str = ""
    # The references among the env entries, by env name (names only, never a value); None
    # when the caller cannot say, so a provider must treat every value of `env` as one to
    # keep secret. A `secretRef` may be read by the runtime itself (Kubernetes'
    # secretKeyRef) rather than from its resolved value in `env`.
    env_refs: Mapping[str, EnvRef] | None = None
    autoscaling: Autoscaling | None = None
    egress: tuple[EgressPeer, ...] = ()  # declared destinations beyond the platform's own
    # Hash of the autoscaling and egress the workload view holds ("" for none): recorded
    # by the provider and reported back as LiveWorkload.policy_hash.
    policy_hash: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A replica traffic can be sent to: `url` is what the gateway routes to."""

    instance: str  # the provider's name for the replica (container name, pod name)
    url: str
    version: str


class RouteRegistry(Protocol):
    """The service registry, as the provider sees it during a rollout: endpoints are
    registered once ready and deregistered before a replica stops. The apply engine hands
    one in; it writes nothing while the plugin has no routes (not ACTIVE)."""

    def register(self, endpoint: Endpoint) -> None: ...

    def deregister(self, endpoint: Endpoint) -> None: ...


class Provider(abc.ABC):
    """A runtime for plugin workloads. Every method is idempotent: apply may retry it."""

    name: str = ""

    @abc.abstractmethod
    def observe(self) -> dict[str, LiveWorkload]:
        """Every workload this provider manages, by plugin id, read back from the runtime
        (limits as the runtime enforces them, replicas that exist, how many answer their
        readiness probe, whether they run)."""

    @abc.abstractmethod
    def ensure_image(self, image: str) -> None:
        """Make the image available (present already, or pulled). Raises ImagePullError."""

    @abc.abstractmethod
    def deploy(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Create the plugin's replicas. When `spec.running`, wait until each is ready and
        register it; on failure remove what was created and raise RolloutFailed."""

    @abc.abstractmethod
    def start(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Bring the replicas back: start stopped ones, recreate missing or unready ones,
        wait until ready, register them."""

    @abc.abstractmethod
    def stop(self, plugin_id: str, routes: RouteRegistry, grace_period_seconds: float) -> None:
        """Deregister every replica, then stop it gracefully (SIGTERM, then the grace
        period). Containers and their data are kept."""

    @abc.abstractmethod
    def update(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Replace the replicas with ones built from `spec`, by `spec.strategy`, so that a
        ready endpoint stays registered throughout. New replicas that never become ready
        are removed, the old ones keep (or get back) their routes, and RolloutFailed is
        raised with `rolled_back=True`."""

    @abc.abstractmethod
    def scale(self, spec: WorkloadSpec, routes: RouteRegistry) -> None:
        """Add or retire replicas until there are `spec.replicas`."""

    @abc.abstractmethod
    def remove(self, plugin_id: str, routes: RouteRegistry) -> None:
        """Deregister and remove every replica of the plugin."""

    @abc.abstractmethod
    def endpoints(self, plugin_id: str, *, ready_only: bool = True) -> list[Endpoint]:
        """The plugin's running replicas that answer their readiness probe now; with
        `ready_only=False`, every running replica (no probe)."""

    def cancel_on(self, cancelled: threading.Event) -> None:  # noqa: B027 - optional hook
        """Stop the work in flight as soon as `cancelled` is set (the apply lost its lock):
        check it before every replica is created or started, wait on it rather than sleep,
        remove the replicas that were started and never served, and raise Cancelled from
        the methods running (and every later call). A provider without it is stopped by the
        apply's deadline instead (the process exits)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections to the runtime."""


class ProviderNotFound(ProviderError):
    pass


def available_providers() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """One unusable runtime setting: `key` is its key in platform.yaml `spec.runtime`."""

    key: str
    message: str
    hint: str


SettingsCheck = Callable[[Mapping[str, Any]], list[SettingProblem]]


def check_provider_settings(name: str, settings: Mapping[str, Any]) -> list[SettingProblem] | None:
    """The problems the provider `name` finds in its settings, or None when no provider of
    that name is installed. A provider package opts in with a module-level
    `check_settings` (a `SettingsCheck`) beside its factory, so `validate` reports bad
    settings at their line without building the provider or reaching its runtime."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name != name:
            continue
        try:
            check = getattr(importlib.import_module(entry_point.module), "check_settings", None)
        except Exception as error:  # a broken third-party package must not crash validate
            return [
                SettingProblem(
                    "provider",
                    f"provider {name!r} ({entry_point.value}) failed to load: "
                    f"{type(error).__name__}: {error}",
                    "reinstall the provider package",
                )
            ]
        return [] if check is None else list(check(settings))
    return None


# Validation (desired/, below the runtime) checks the settings with this unless told other.
register_settings_check(check_provider_settings)


def load_provider(name: str, settings: Mapping[str, Any]) -> Provider:
    """The provider registered under `name`, built with the platform's runtime settings."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name != name:
            continue
        try:
            provider = entry_point.load()(dict(settings))
        except ProviderError:
            raise
        except Exception as error:  # a broken third-party package must not crash plan
            raise ProviderNotFound(
                f"provider {name!r} ({entry_point.value}) failed to load: "
                f"{type(error).__name__}: {error}",
                "reinstall the provider package, or check its settings in platform.yaml",
            ) from error
        if not isinstance(provider, Provider):
            raise ProviderNotFound(
                f"entry point {entry_point.value!r} for provider {name!r} did not return a "
                "Provider",
                "fix the provider package",
            )
        return provider
    known = ", ".join(available_providers()) or "none"
    raise ProviderNotFound(
        f"no runtime provider named {name!r} is installed (installed: {known})",
        f"install the package that provides it, or set spec.runtime.provider in platform.yaml "
        f"to one of: {known}",
    )
