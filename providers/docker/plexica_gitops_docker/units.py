"""CPU and memory quantities: the manifest's strings to the engine's integers and back.

The manifest uses Kubernetes notation (`500m`, `1.5`; `512Mi`, `1Gi`, `500M`, plain bytes);
the Docker API wants NanoCpus and bytes. Parsing is `plexica_gitops.quantities`, the same
functions validation uses (PGV503/PGV504), so what validates is what the engine gets.
"""

from __future__ import annotations

from decimal import Decimal

from plexica_gitops.quantities import MEMORY_UNITS, NANO_PER_CORE, parse_cpu, parse_memory

__all__ = ["format_cpu", "format_memory", "parse_cpu", "parse_memory", "same_cpu", "same_memory"]

# Largest first, binary before decimal: what `format_memory` tries when writing a number.
_FORMAT_UNITS = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki", "E", "P", "T", "G", "M", "k")


def format_cpu(nano: int) -> str:
    """NanoCpus in canonical form: whole cores as `2`, else millicores `750m`, else cores."""
    if nano % NANO_PER_CORE == 0:
        return str(nano // NANO_PER_CORE)
    if nano % 1_000_000 == 0:
        return f"{nano // 1_000_000}m"
    return format(Decimal(nano) / NANO_PER_CORE, "f")


def format_memory(size: int) -> str:
    """Bytes in canonical form: the largest unit dividing it exactly (`256Mi`, `1G`)."""
    for unit in _FORMAT_UNITS:
        factor = MEMORY_UNITS[unit]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def same_cpu(desired: str | None, nano: int) -> bool:
    """Whether the engine's NanoCpus are what `desired` asks for (0 = no limit)."""
    if desired is None:
        return nano == 0
    try:
        return parse_cpu(desired) == nano
    except ValueError:
        return False


def same_memory(desired: str | None, size: int) -> bool:
    """Whether the engine's memory limit in bytes is what `desired` asks for (0 = none)."""
    if desired is None:
        return size == 0
    try:
        return parse_memory(desired) == size
    except ValueError:
        return False
