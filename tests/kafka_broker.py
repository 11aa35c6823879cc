"""Pytest plugin: one real Tansu broker (a Kafka-protocol broker) for the test session.

Registered in conftest.py with `pytest_plugins = ["kafka_broker"]`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devenv.tansu import TansuBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    broker = TansuBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: TansuBroker) -> str:
    return kafka_broker.bootstrap
