"""The Docker runtime provider (any Docker-API engine: Docker, Podman)."""

from __future__ import annotations

from typing import Any

from plexica_gitops.runtime.provider import Provider
from plexica_gitops_docker.settings import check_settings

__all__ = ["check_settings", "create_provider"]


def create_provider(settings: dict[str, Any]) -> Provider:
    from plexica_gitops_docker.provider import DockerProvider

    return DockerProvider.from_settings(settings)
