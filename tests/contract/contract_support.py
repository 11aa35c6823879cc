"""What the contract tests get from a provider fixture (tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plexica_gitops.runtime.provider import Endpoint, Provider

PLUGIN = "echo"  # the test images answer as this plugin (devenv.images)


@dataclass(frozen=True)
class Contract:
    provider: Provider
    images: dict[str, str]  # "1.0.0", "1.1.0": healthy; "never-ready": never answers ready
    # The version an endpoint answers with, for providers whose endpoints the tests can
    # reach (None: e.g. a ClusterIP Service URL, reachable only inside the cluster).
    reach: Callable[[Endpoint], str] | None = None
