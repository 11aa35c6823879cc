"""What FakeProvider offers tests beyond the provider contract (which
tests/integration/test_provider_contract.py checks): injected failures, crashes, the call log."""

from __future__ import annotations

import pytest
from provider_contract import PLUGIN
from test_provider_contract import Routes

from plexica_gitops.runtime.fake import FakeProvider
from plexica_gitops.runtime.provider import ImagePullError, ProviderError, WorkloadSpec

SPEC = WorkloadSpec(
    plugin_id=PLUGIN,
    version="1.0.0",
    image="fake/echo:1.0.0",
    manifest_hash="m",
    replicas=2,
    cpu=None,
    memory=None,
    port=8080,
    readiness_path="/health/ready",
    liveness_path="/health/live",
    env_hash="e",
    env={},
)


def test_an_injected_failure_is_raised_once_and_changes_nothing() -> None:
    provider, routes = FakeProvider(), Routes()
    provider.fail_next("deploy", ProviderError("engine busy", "retried", transient=True))

    with pytest.raises(ProviderError) as failed:
        provider.deploy(SPEC, routes)

    assert failed.value.transient is True
    assert provider.observe() == {} and routes.registered == []
    provider.deploy(SPEC, routes)  # the retry succeeds
    assert provider.observe()[PLUGIN].ready_replicas == 2
    assert provider.calls == [
        ("deploy", PLUGIN),
        ("observe", ""),
        ("deploy", PLUGIN),
        ("observe", ""),
    ]


def test_a_crash_leaves_stale_endpoints_that_start_repairs() -> None:
    provider, routes = FakeProvider(), Routes()
    provider.deploy(SPEC, routes)

    provider.crash(PLUGIN)

    workload = provider.observe()[PLUGIN]
    assert (workload.running, workload.ready_replicas, workload.replicas) == (False, 0, 2)
    assert provider.endpoints(PLUGIN) == []
    assert len(routes.snapshot()) == 2  # the registry was not told
    assert {provider.answer(e.url) for e in routes.snapshot()} == {None}

    provider.start(SPEC, routes)
    assert {provider.answer(e.url) for e in routes.snapshot()} == {"1.0.0"}


def test_an_unpullable_image_is_an_image_pull_error() -> None:
    provider = FakeProvider(unpullable={"fake/missing:1"})
    provider.ensure_image(SPEC.image)
    with pytest.raises(ImagePullError):
        provider.ensure_image("fake/missing:1")
    assert provider.images == {SPEC.image}
