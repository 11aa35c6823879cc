"""The Kubernetes runtime provider: plugin workloads as Deployments (and their Service,
NetworkPolicy, PodDisruptionBudget, HorizontalPodAutoscaler and env Secret), applied
server-side and rolled out by the cluster's own controllers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from plexica_gitops.runtime.provider import Provider, WorkloadSpec
from plexica_gitops_kubernetes.settings import check_settings

__all__ = ["check_settings", "create_provider", "render_manifests"]


def create_provider(settings: dict[str, Any]) -> Provider:
    from plexica_gitops_kubernetes.provider import KubernetesProvider

    return KubernetesProvider.from_settings(settings)


def render_manifests(
    specs: Sequence[WorkloadSpec], settings: Mapping[str, Any]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The provider's manifest hook (`plexica-gitops render`): the objects apply would
    create, in named groups (one file each), with no env value in them. ProviderError
    when the settings are unusable. Needs no cluster."""
    from plexica_gitops_kubernetes.objects import render_groups
    from plexica_gitops_kubernetes.settings import parse_settings

    return render_groups(specs, parse_settings(settings))
