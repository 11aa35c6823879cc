"""The event broker: reading and changing the Kafka topics plugins publish to.

A thin, typed layer over confluent-kafka's AdminClient. Reaching the broker is bounded by
`BrokerSettings.connect_timeout_seconds` (3 s by default, so a plan names an unreachable
broker within seconds) and every call by `timeout_seconds` (librdkafka would otherwise
retry an unreachable broker forever); KAFKA_TIMEOUT_SECONDS sets both. Every change is
idempotent (apply may be re-run after a crash), and the SASL password never leaves
`BrokerSettings` except into the client configuration.

Verified against Tansu 0.6 (a Kafka-protocol broker, see ENVIRONMENT.md): it has no
CreatePartitions and no (legacy) AlterConfigs, so growing a topic's partitions fails there
with a `BrokerError` saying so, and configs are changed with IncrementalAlterConfigs only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from plexica_gitops.errors import ActionableError
from plexica_gitops.live.model import LiveTopic

_LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
# How long reaching the broker may take: the connection and the first metadata request of
# observe. A plan must not sit silently on an unreachable broker (librdkafka's own defaults
# add up to 10 s and more); KAFKA_TIMEOUT_SECONDS, when set, bounds this too.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.0
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")

# librdkafka codes meaning "no broker answered" rather than "the broker said no".
_UNREACHABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


class BrokerError(ActionableError):
    """A broker failure with what to do about it. `transient` errors (the broker down or
    slow) may be retried; the others (a refused change) fail the step."""


class BrokerUnreachable(BrokerError):
    """No broker answered within the timeout."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, transient=True)


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach the broker. The password is kept out of repr (and so out of str,
    errors and logs); only `client_config()` hands it to librdkafka."""

    bootstrap_servers: str
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BrokerSettings | None:
        """Settings from KAFKA_* variables; None when KAFKA_BOOTSTRAP_SERVERS is unset
        (topics are then not observed, the planner says so)."""
        bootstrap = environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            return None
        raw_timeout = environ.get("KAFKA_TIMEOUT_SECONDS")
        timeout = _timeout(raw_timeout)
        explicit = raw_timeout is not None and bool(raw_timeout.strip())
        settings = cls(
            bootstrap_servers=bootstrap,
            security_protocol=_optional(environ, "KAFKA_SECURITY_PROTOCOL", upper=True),
            sasl_mechanism=_optional(environ, "KAFKA_SASL_MECHANISM", upper=True),
            sasl_username=_optional(environ, "KAFKA_SASL_USERNAME"),
            sasl_password=environ.get("KAFKA_SASL_PASSWORD") or None,
            ssl_ca_location=_optional(environ, "KAFKA_SSL_CA_LOCATION"),
            timeout_seconds=timeout,
            connect_timeout_seconds=timeout if explicit else DEFAULT_CONNECT_TIMEOUT_SECONDS,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        protocol = self.security_protocol
        if protocol is not None and protocol not in SECURITY_PROTOCOLS:
            raise BrokerError(
                f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not a Kafka security protocol",
                f"Use one of {', '.join(SECURITY_PROTOCOLS)}.",
            )
        wants_sasl = self.sasl_username is not None or self.sasl_password is not None
        if wants_sasl and not (protocol or "").startswith("SASL_"):
            # librdkafka would silently connect without credentials: say it instead.
            raise BrokerError(
                "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but "
                f"KAFKA_SECURITY_PROTOCOL is {protocol or 'unset (PLAINTEXT)'}",
                "Set KAFKA_SECURITY_PROTOCOL to SASL_SSL (or SASL_PLAINTEXT).",
            )

    def client_config(self) -> dict[str, Any]:
        """The librdkafka configuration (contains the password: never log it)."""
        timeout_ms = int(self.timeout_seconds * 1000)
        connect_ms = int(min(self.connect_timeout_seconds, self.timeout_seconds) * 1000)
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "plexica-gitops",
            # Bounded: a refused connection retries within the timeout, not forever.
            "socket.connection.setup.timeout.ms": max(1000, connect_ms),
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "socket.timeout.ms": max(1000, timeout_ms),
            # librdkafka prints every failed connect to stderr; send it to our debug log.
            "logger": _LIBRDKAFKA_LOG,
        }
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        return config


def _optional(environ: Mapping[str, str], name: str, *, upper: bool = False) -> str | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    return value.upper() if upper else value


def _timeout(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise BrokerError(
            f"KAFKA_TIMEOUT_SECONDS={raw!r} is not a positive number of seconds",
            f"Unset it (default {DEFAULT_TIMEOUT_SECONDS:g}) or give e.g. 10.",
        )
    return value


class _DebugLog:
    """librdkafka's log sink: everything at DEBUG, since its connection errors are
    reported to the user as a BrokerUnreachable with a hint instead."""

    def log(self, level: int, msg: str, *args: object) -> None:
        _LOG.debug("librdkafka: " + msg, *args)


_LIBRDKAFKA_LOG = _DebugLog()


@dataclass(frozen=True)
class ObservedTopic:
    """A topic as the broker reports it. `config` holds every config the broker returns
    for it (Tansu: the ones set on the topic; Kafka: all, defaults included), which is
    what the planner needs: it compares the desired keys only."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]

    def live(self, owner: str | None) -> LiveTopic:
        return LiveTopic(
            owner=owner,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            config=dict(self.config),
        )


class EventBroker:
    """Topics on one broker. Use as a context manager, or call `close()`."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.timeout = settings.timeout_seconds
        self.connect_timeout = min(settings.connect_timeout_seconds, settings.timeout_seconds)
        self._admin: AdminClient | None = AdminClient(settings.client_config())

    def __enter__(self) -> EventBroker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        # AdminClient has no close(); dropping it lets librdkafka tear its threads down.
        self._admin = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            raise BrokerError("the event broker client is closed")
        return self._admin

    # --- reading -------------------------------------------------------------------------

    def observe(self, names: Iterable[str] | None = None) -> dict[str, ObservedTopic]:
        """Every topic (or those of `names` that exist), internal `__*` topics left out."""
        metadata = self._metadata()
        wanted = None if names is None else set(names)
        topics = {
            name: topic
            for name, topic in metadata.topics.items()
            if not name.startswith("__")
            and topic.error is None
            and (wanted is None or name in wanted)
        }
        configs = self._configs(sorted(topics))
        observed: dict[str, ObservedTopic] = {}
        for name, topic in sorted(topics.items()):
            first = topic.partitions.get(0)
            observed[name] = ObservedTopic(
                name=name,
                partitions=len(topic.partitions),
                replication_factor=max(1, len(first.replicas)) if first else 1,
                config=configs.get(name, {}),
            )
        return observed

    def _metadata(self) -> ClusterMetadata:
        """The first request of every read and change: an unreachable broker fails here,
        within the connect timeout."""
        try:
            return self.admin.list_topics(timeout=self.connect_timeout)
        except KafkaException as exc:
            raise self._error(exc, "could not list the topics", self.connect_timeout) from None

    def _configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        if not names:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        futures = self.admin.describe_configs(resources, request_timeout=self.timeout)
        configs: dict[str, dict[str, str]] = {}
        for resource, future in futures.items():
            try:
                entries = future.result(timeout=self._wait())
            except KafkaException as exc:
                if _code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue  # deleted since it was listed
                raise self._error(exc, f"could not read the configs of {resource.name!r}") from None
            # Values only: sensitive entries come back as None and are not ours to compare.
            configs[resource.name] = {
                key: entry.value for key, entry in entries.items() if entry.value is not None
            }
        return configs

    # --- changing ------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """Create the topic; done already (same partitions and config) is fine."""
        wanted = dict(config or {})
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=wanted,
        )
        futures = self.admin.create_topics(
            [topic], operation_timeout=self.timeout, request_timeout=self.timeout
        )
        try:
            futures[name].result(timeout=self._wait())
        except KafkaException as exc:
            if _code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
                raise self._error(exc, f"could not create topic {name!r}") from None
            self._check_existing(name, partitions, wanted)
            return
        self._wait_for(lambda: name in self._metadata().topics, f"topic {name!r} to appear")

    def _check_existing(self, name: str, partitions: int, config: dict[str, str]) -> None:
        """An existing topic counts as created only if it is the one asked for."""
        current = self.observe([name]).get(name)
        if current is None:
            return  # being deleted; the next plan sees what is left
        differs = {k: v for k, v in config.items() if current.config.get(k) != v}
        if current.partitions != partitions or differs:
            raise BrokerError(
                f"topic {name!r} already exists with other settings "
                f"({current.partitions} partitions, config {current.config})",
                "It was changed or created outside this apply: run plan again.",
            )

    def update_topic(
        self, name: str, partitions: int | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        """Set `config` keys and grow to `partitions`; asking for fewer is refused.

        Configs go first, so a broker that cannot add partitions (Tansu 0.6) still gets
        them; the error then says the partitions are what is left."""
        current = self._describe(name)
        if partitions is not None and partitions < current.partitions:
            raise BrokerError(
                f"topic {name!r} has {current.partitions} partitions; "
                f"it cannot be shrunk to {partitions}",
                f"Kafka partitions can only grow: ask for at least {current.partitions}.",
            )
        changed = {k: v for k, v in (config or {}).items() if current.config.get(k) != v}
        if changed:
            self._set_configs(name, changed)
        if partitions is not None and partitions > current.partitions:
            self._grow(name, partitions, configs_applied=bool(changed))

    def _describe(self, name: str) -> ObservedTopic:
        current = self.observe([name]).get(name)
        if current is None:
            raise BrokerError(
                f"topic {name!r} does not exist on {self.settings.bootstrap_servers}",
                "It was deleted outside plexica-gitops: run plan again to recreate it.",
            )
        return current

    def _set_configs(self, name: str, config: Mapping[str, str]) -> None:
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in sorted(config.items())
        ]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        futures = self.admin.incremental_alter_configs([resource], request_timeout=self.timeout)
        for future in futures.values():
            try:
                future.result(timeout=self._wait())
            except KafkaException as exc:
                raise self._error(
                    exc, f"could not set configs {sorted(config)} on {name!r}"
                ) from None

    def _grow(self, name: str, partitions: int, *, configs_applied: bool) -> None:
        futures = self.admin.create_partitions(
            [NewPartitions(name, partitions)],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        try:
            futures[name].result(timeout=self._wait())
        except KafkaException as exc:
            if _code(exc) == KafkaError._UNSUPPORTED_FEATURE:
                done = " (its config changes were applied)" if configs_applied else ""
                raise BrokerError(
                    f"could not grow topic {name!r} to {partitions} partitions{done}: "
                    "the broker does not support adding partitions (CreatePartitions)",
                    "Use a broker that supports it (Apache Kafka, Redpanda), or keep the "
                    "partition count as it is.",
                ) from None
            raise self._error(exc, f"could not grow topic {name!r}") from None

    def delete_topic(self, name: str) -> None:
        """Delete the topic; already gone is fine."""
        futures = self.admin.delete_topics(
            [name], operation_timeout=self.timeout, request_timeout=self.timeout
        )
        try:
            futures[name].result(timeout=self._wait())
        except KafkaException as exc:
            if _code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise self._error(exc, f"could not delete topic {name!r}") from None
            return
        self._wait_for(lambda: name not in self._metadata().topics, f"topic {name!r} to disappear")

    # --- helpers -------------------------------------------------------------------------

    def _wait(self) -> float:
        # A backstop over librdkafka's own request timeout, which normally fires first.
        return self.timeout + 5

    def _wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Kafka applies topic changes asynchronously: wait until metadata shows them, so
        an observe right after apply sees the change."""
        deadline = time.monotonic() + self.timeout
        while not condition():
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"timed out after {self.timeout:g}s waiting for {what}",
                    "The broker accepted the change but has not applied it yet: "
                    "run plan again in a moment.",
                    transient=True,
                )
            time.sleep(0.1)

    def _error(self, exc: KafkaException, doing: str, waited: float | None = None) -> BrokerError:
        self.admin.poll(0)  # hands librdkafka's queued log lines to the debug log
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        where = self.settings.bootstrap_servers
        reason = error.str() if error is not None else str(exc)
        if error is not None and error.code() in _UNREACHABLE_CODES:
            return BrokerUnreachable(
                f"{doing}: the event broker at {where} did not answer within "
                f"{self.timeout if waited is None else waited:g}s ({reason})",
                "Start the broker, or check KAFKA_BOOTSTRAP_SERVERS (and "
                "KAFKA_SECURITY_PROTOCOL for a TLS listener).",
            )
        if error is not None and error.code() in _AUTH_CODES:
            return BrokerError(
                f"{doing}: the event broker at {where} refused the credentials ({reason})",
                "Check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD.",
            )
        return BrokerError(f"{doing} on {where}: {reason}")


_AUTH_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None
