"""The Kubernetes provider's settings (platform.yaml `spec.runtime`, beside `provider`).

`check_settings` is the provider's settings hook, of the shape the Docker provider's has
(a list of `SettingProblem(key, message, hint)`, `key` a key of `spec.runtime`): `validate`
can report a bad setting at its line without building the provider or reaching a cluster,
and `parse_settings` refuses the same problems when the provider is built. It imports
nothing of the kubernetes client: validating stays fast.

Every value that reaches the cluster is bounded: names are DNS labels, label selectors are
label syntax, CIDRs are networks, ports are ports, waits are finite.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from plexica_gitops.desired.peers import (
    LABEL_NAME,
    LABEL_PREFIX,
    cidr_problem,
    kind_problem,
    labels_problem,
)
from plexica_gitops.runtime.provider import ProviderError

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_QUANTITY = re.compile(r"[1-9][0-9]{0,9}(Ki|Mi|Gi|k|M|G)?", re.ASCII)
_MANAGER = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.:]{0,127}", re.ASCII)
Protocol = Literal["TCP", "UDP", "SCTP"]


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """One unusable runtime setting: `key` is its key in platform.yaml `spec.runtime`.
    (The same shape as the core's `plexica_gitops.runtime.provider.SettingProblem` on the validate
    branch; this one goes once that is merged.)"""

    key: str
    message: str
    hint: str


def _check_labels(value: dict[str, str] | None) -> dict[str, str] | None:
    problem = labels_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class Peer(_Model):
    """Who a NetworkPolicy rule lets in or out: pods (by their labels, in namespaces by
    theirs; no `namespaceLabels` = the plugins' own namespace), or a `cidr`; on `ports`."""

    pod_labels: dict[str, str] | None = None
    namespace_labels: dict[str, str] | None = None
    cidr: str | None = None
    ports: tuple[int, ...] = Field(default=(), max_length=32)
    protocols: tuple[Protocol, ...] = Field(default=("TCP",), min_length=1, max_length=3)

    _labels = field_validator("pod_labels", "namespace_labels")(_check_labels)

    @field_validator("cidr")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        problem = None if value is None else cidr_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("ports")
    @classmethod
    def _port_numbers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= port <= 65535 for port in value):
            raise ValueError("ports are numbers from 1 to 65535")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Peer:
        selects = self.pod_labels is not None or self.namespace_labels is not None
        problem = kind_problem(selects, self.cidr)
        if problem:
            raise ValueError(problem)
        return self


def _in_namespace(namespace: str, pods: dict[str, str], *ports: int) -> Peer:
    return Peer(
        namespace_labels={"kubernetes.io/metadata.name": namespace}, pod_labels=pods, ports=ports
    )


DEFAULT_GATEWAY = _in_namespace("plexica", {"app.kubernetes.io/name": "plexica-gateway"})
DEFAULT_DNS = Peer(
    namespace_labels={"kubernetes.io/metadata.name": "kube-system"},
    pod_labels={"k8s-app": "kube-dns"},
    ports=(53,),
    protocols=("UDP", "TCP"),
)
# The platform's services as the deployment guide names them (core API :3000, PostgreSQL
# :5432, the Kafka-protocol broker :29092), in the platform's namespace `plexica`.
DEFAULT_EGRESS = {
    "core": _in_namespace("plexica", {"app.kubernetes.io/name": "plexica-core"}, 3000),
    "postgresql": _in_namespace("plexica", {"app.kubernetes.io/name": "postgresql"}, 5432),
    "kafka": _in_namespace("plexica", {"app.kubernetes.io/name": "kafka"}, 29092),
}


class KubernetesSettings(_Model):
    """platform.yaml `spec.runtime` for `provider: kubernetes` (camelCase keys there)."""

    kubeconfig: str | None = Field(default=None, max_length=4096)  # None: $KUBECONFIG/in-cluster
    context: str | None = Field(default=None, max_length=253)
    namespace: str = "plexica-plugins"
    create_namespace: bool = True
    pod_security: Literal["restricted", "baseline", "privileged"] | None = "restricted"
    scope: str = "default"  # label value separating independent reconcilers on one cluster
    cluster_domain: str = Field(default="cluster.local", max_length=253)
    # Field managers whose fields plexica-gitops takes over on apply (earlier tools that
    # managed the same objects); names starting with `plexica-gitops` are always ours.
    adopt_managers: tuple[str, ...] = Field(default=(), max_length=32)
    # A field of ours changed by an imperative update (kubectl scale/edit/patch) is drift
    # the plan showed: apply takes it back. Off: it is reported as a conflict instead.
    reclaim_edits: bool = True
    max_surge: int = Field(default=1, ge=1, le=100)
    disruption_budget: Literal["maxUnavailable", "minAvailable"] = "maxUnavailable"
    run_as_user: int = Field(default=65534, ge=1, le=2_147_483_647)
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = Field(default=(), max_length=16)
    tmp_size: str = "16Mi"  # the in-memory /tmp of each pod (the root filesystem is read-only)
    probe_timeout_seconds: int = Field(default=2, ge=1, le=60)
    liveness_period_seconds: int = Field(default=10, ge=1, le=300)
    drain_seconds: float = Field(default=1.0, ge=0, le=3600)  # deregistered -> scaled down
    # Our own deadline: the rollout timeout (= the Deployment's progressDeadlineSeconds)
    # plus this, for the controller to report ProgressDeadlineExceeded first.
    progress_slack_seconds: float = Field(default=15.0, ge=0, le=600)
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    revision_history_limit: int = Field(default=3, ge=1, le=100)
    gateway: Peer = DEFAULT_GATEWAY
    dns: Peer = DEFAULT_DNS
    egress: dict[str, Peer] = Field(default_factory=lambda: dict(DEFAULT_EGRESS), max_length=64)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not DNS_LABEL.fullmatch(value):
            raise ValueError("must be a namespace name (a DNS label: a-z, 0-9, `-`; up to 63)")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not LABEL_NAME.fullmatch(value):
            raise ValueError("must be a label value (letters, digits, `-_.`; up to 63)")
        return value

    @field_validator("cluster_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not all(DNS_LABEL.fullmatch(part) for part in value.split(".")):
            raise ValueError("must be a DNS domain such as cluster.local")
        return value

    @field_validator("image_pull_secrets")
    @classmethod
    def _secret_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(LABEL_PREFIX.fullmatch(name) for name in value):
            raise ValueError("must be Secret names (DNS subdomains)")
        return value

    @field_validator("adopt_managers")
    @classmethod
    def _managers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(_MANAGER.fullmatch(name) for name in value):
            raise ValueError("must be field manager names")
        return value

    @field_validator("tmp_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _QUANTITY.fullmatch(value):
            raise ValueError("must be a size such as 16Mi (units Ki, Mi, Gi, k, M, G)")
        return value

    @field_validator("egress")
    @classmethod
    def _egress_names(cls, value: dict[str, Peer]) -> dict[str, Peer]:
        if not all(DNS_LABEL.fullmatch(name) for name in value):
            raise ValueError("egress rules are named by DNS labels (e.g. core, postgresql)")
        return value


SETTING_NAMES = tuple(
    sorted(f.alias or name for name, f in KubernetesSettings.model_fields.items())
)


def check_settings(settings: Mapping[str, Any]) -> list[SettingProblem]:
    """Every problem with `settings` (platform.yaml `spec.runtime`, `provider` ignored)."""
    values = {k: v for k, v in settings.items() if k != "provider"}
    try:
        KubernetesSettings.model_validate(values)
    except ValidationError as error:
        return [_problem(each) for each in error.errors(include_url=False)]
    return []


def parse_settings(settings: Mapping[str, Any]) -> KubernetesSettings:
    """KubernetesSettings from platform.yaml's runtime settings; ProviderError naming every
    problem when they are unusable."""
    problems = check_settings(settings)
    if problems:
        raise ProviderError(
            "; ".join(p.message for p in problems),
            " ".join(dict.fromkeys(p.hint for p in problems)),
        )
    values = {k: v for k, v in settings.items() if k != "provider"}
    return KubernetesSettings.model_validate(values)


def _problem(error: Any) -> SettingProblem:
    location = [str(part) for part in error["loc"]]
    key = location[0] if location else ""
    if error["type"] == "extra_forbidden" and len(location) == 1:
        close = difflib.get_close_matches(key, SETTING_NAMES, n=1)
        return SettingProblem(
            key,
            f"unknown kubernetes runtime setting `{key[:80]}`",
            f"Did you mean `{close[0]}`?"
            if close
            else "The kubernetes provider accepts: " + ", ".join(SETTING_NAMES) + ".",
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return SettingProblem(
        key,
        f"spec.runtime.{'.'.join(location)}: {message}",
        "Fix the setting in platform.yaml (see the Kubernetes provider settings in the README).",
    )
