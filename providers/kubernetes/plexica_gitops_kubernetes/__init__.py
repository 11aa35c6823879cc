"""The Kubernetes runtime provider: plugin workloads as Deployments (and their Service,
NetworkPolicy, PodDisruptionBudget, HorizontalPodAutoscaler and env Secret), applied
server-side and rolled out by the cluster's own controllers."""

from __future__ import annotations

from typing import Any

from plexica_gitops.runtime.provider import Provider
from plexica_gitops_kubernetes.settings import check_settings

__all__ = ["check_settings", "create_provider"]


def create_provider(settings: dict[str, Any]) -> Provider:
    from plexica_gitops_kubernetes.provider import KubernetesProvider

    return KubernetesProvider.from_settings(settings)
