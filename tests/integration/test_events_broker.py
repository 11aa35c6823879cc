"""The event-broker client against a real Kafka-protocol broker (Tansu 0.6, no mocks).

Topic names are unique per test, so the tests share one session broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from devenv.tansu import free_port
from plexica_gitops.broker.kafka import (
    BrokerError,
    BrokerSettings,
    BrokerUnreachable,
    EventBroker,
)

RETAIN_DAY = {"retention.ms": "86400000", "cleanup.policy": "delete"}


@pytest.fixture
def broker(kafka_bootstrap: str) -> Iterator[EventBroker]:
    with EventBroker(BrokerSettings(kafka_bootstrap, timeout_seconds=5)) as client:
        yield client


@pytest.fixture
def topic() -> str:
    return f"plexica.test.{uuid.uuid4().hex[:8]}"


def test_created_topic_is_observed_with_partitions_and_config(
    broker: EventBroker, topic: str
) -> None:
    broker.create_topic(topic, partitions=3, replication_factor=1, config=RETAIN_DAY)

    observed = broker.observe()[topic]

    assert (observed.partitions, observed.replication_factor) == (3, 1)
    assert {k: observed.config.get(k) for k in RETAIN_DAY} == RETAIN_DAY
    live = observed.live(owner="crm")
    assert (live.owner, live.partitions, live.config["retention.ms"]) == ("crm", 3, "86400000")


def test_creating_again_with_the_same_settings_is_a_no_op(broker: EventBroker, topic: str) -> None:
    broker.create_topic(topic, 2, 1, {"retention.ms": "1000"})
    broker.create_topic(topic, 2, 1, {"retention.ms": "1000"})

    assert broker.observe([topic])[topic].partitions == 2


def test_creating_again_with_other_settings_is_refused(broker: EventBroker, topic: str) -> None:
    broker.create_topic(topic, 2, 1, {"retention.ms": "1000"})

    with pytest.raises(BrokerError, match="already exists with other settings") as caught:
        broker.create_topic(topic, 2, 1, {"retention.ms": "2000"})
    assert "plan again" in caught.value.hint


def test_update_sets_configs_and_reports_that_tansu_cannot_add_partitions(
    broker: EventBroker, topic: str
) -> None:
    broker.create_topic(topic, 3, 1, RETAIN_DAY)

    # Tansu 0.6 does not implement CreatePartitions: the config change is still applied
    # and the error says what is left. (On Kafka the topic would have 5 partitions.)
    with pytest.raises(BrokerError, match="CreatePartitions") as caught:
        broker.update_topic(topic, partitions=5, config={"retention.ms": "3600000"})
    assert "config changes were applied" in caught.value.message

    observed = broker.observe([topic])[topic]
    assert observed.config["retention.ms"] == "3600000"
    assert observed.config["cleanup.policy"] == "delete"  # untouched by the incremental set
    assert observed.partitions == 3


def test_update_of_configs_alone_is_observed(broker: EventBroker, topic: str) -> None:
    broker.create_topic(topic, 1, 1, {"retention.ms": "1000"})

    broker.update_topic(
        topic, partitions=1, config={"retention.ms": "5000", "cleanup.policy": "compact"}
    )
    broker.update_topic(topic, config={"retention.ms": "5000"})  # already so: nothing to do

    config = broker.observe([topic])[topic].config
    assert (config["retention.ms"], config["cleanup.policy"]) == ("5000", "compact")


def test_partition_decrease_is_refused_clearly(broker: EventBroker, topic: str) -> None:
    broker.create_topic(topic, 3, 1, {"retention.ms": "1000"})

    with pytest.raises(BrokerError, match="3 partitions; it cannot be shrunk to 2") as caught:
        broker.update_topic(topic, partitions=2, config={"retention.ms": "9"})
    assert "only grow" in caught.value.hint
    assert broker.observe([topic])[topic].config["retention.ms"] == "1000"  # nothing changed


def test_updating_a_missing_topic_says_so(broker: EventBroker, topic: str) -> None:
    with pytest.raises(BrokerError, match="does not exist"):
        broker.update_topic(topic, partitions=1)


def test_a_topic_created_by_hand_is_observed(
    broker: EventBroker, kafka_bootstrap: str, topic: str
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    done = admin.create_topics([NewTopic(topic, 4, 1, config={"retention.ms": "777"})])
    done[topic].result(timeout=10)

    observed = broker.observe()
    assert observed[topic].partitions == 4
    assert observed[topic].config["retention.ms"] == "777"
    assert not [name for name in observed if name.startswith("__")]


def test_observe_limited_to_names(broker: EventBroker, topic: str) -> None:
    broker.create_topic(topic, 1)

    assert list(broker.observe([topic, topic + ".missing"])) == [topic]


def test_delete_and_delete_again(broker: EventBroker, topic: str) -> None:
    broker.create_topic(topic, 1)

    broker.delete_topic(topic)
    broker.delete_topic(topic)

    assert topic not in broker.observe()


def test_unreachable_broker_fails_fast_and_names_the_address() -> None:
    closed = f"127.0.0.1:{free_port()}"
    settings = BrokerSettings(closed, timeout_seconds=2)

    started = time.monotonic()
    with EventBroker(settings) as broker, pytest.raises(BrokerUnreachable) as caught:
        broker.observe()
    elapsed = time.monotonic() - started

    assert elapsed < settings.timeout_seconds + 3
    assert closed in caught.value.message
    assert "KAFKA_BOOTSTRAP_SERVERS" in caught.value.hint
    assert caught.value.transient


def test_unreachable_broker_from_the_environment_fails_within_seconds() -> None:
    """Plain KAFKA_BOOTSTRAP_SERVERS, no timeout set: a plan's broker check answers in
    seconds (it used to sit silently for 10 s and more)."""
    closed = f"127.0.0.1:{free_port()}"
    settings = BrokerSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": closed})
    assert settings is not None

    started = time.monotonic()
    with EventBroker(settings) as broker, pytest.raises(BrokerUnreachable) as caught:
        broker.observe()
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert closed in caught.value.message and "within 3s" in caught.value.message


def test_settings_from_env() -> None:
    assert BrokerSettings.from_env({}) is None
    settings = BrokerSettings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093",
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "plexica",
            "KAFKA_SASL_PASSWORD": "s3cr3t-pw",
            "KAFKA_SSL_CA_LOCATION": "/etc/ssl/ca.pem",
            "KAFKA_TIMEOUT_SECONDS": "4.5",
        }
    )
    assert settings is not None
    assert settings.security_protocol == "SASL_SSL"
    assert settings.timeout_seconds == settings.connect_timeout_seconds == 4.5
    assert "s3cr3t-pw" not in repr(settings)
    assert "s3cr3t-pw" not in str(settings)
    config = settings.client_config()
    assert (config["sasl.password"], config["ssl.ca.location"]) == ("s3cr3t-pw", "/etc/ssl/ca.pem")


def test_settings_from_env_defaults_and_mistakes() -> None:
    settings = BrokerSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "localhost:9092"})
    assert settings is not None and settings.timeout_seconds == 10
    assert settings.connect_timeout_seconds == 3
    assert "security.protocol" not in settings.client_config()

    with pytest.raises(BrokerError, match="KAFKA_TIMEOUT_SECONDS"):
        BrokerSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TIMEOUT_SECONDS": "x"})
    with pytest.raises(BrokerError, match="SASL") as caught:
        BrokerSettings.from_env(
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SASL_PASSWORD": "hunter2"}
        )
    assert "hunter2" not in str(caught.value)
