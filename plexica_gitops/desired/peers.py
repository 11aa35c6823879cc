"""Network peers as Kubernetes spells them (label selectors, CIDRs): the syntax shared by the
Plugin kind's `spec.network.egress` (checked by `validate`) and the Kubernetes provider's
own settings (gateway, dns, egress), so both refuse the same values with the same words."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]", re.ASCII)
LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", re.ASCII)


def label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and not LABEL_PREFIX.fullmatch(prefix):
        return f"label key {key[:80]!r}: the prefix must be a DNS subdomain"
    if not LABEL_NAME.fullmatch(name):
        return f"label key {key[:80]!r} is not a label name (letters, digits, `-_.`; up to 63)"
    return None


def labels_problem(labels: Mapping[str, str] | None) -> str | None:
    """What makes `labels` no label selector (`matchLabels`), or None."""
    for key, value in (labels or {}).items():
        problem = label_key_problem(key)
        if problem:
            return problem
        if value and not LABEL_NAME.fullmatch(value):
            return f"label value {value[:80]!r} of {key!r} is not a label value"
    return None


def cidr_problem(cidr: str) -> str | None:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return f"{cidr[:80]!r} is not a network (e.g. 10.0.0.0/8)"
    return None


def kind_problem(selects: bool, cidr: str | None) -> str | None:
    """A peer is either pods (`selects`: pod or namespace labels) or a network, not both."""
    if selects == (cidr is not None):
        return "give either podLabels/namespaceLabels or a cidr"
    return None
