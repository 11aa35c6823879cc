"""CPU and memory quantities: the manifest's strings to the engine's integers and back.

The manifest uses Kubernetes notation (`500m`, `1.5`; `512Mi`, `1Gi`, `500M`, plain bytes);
the Docker API wants NanoCpus and bytes. Decimal arithmetic keeps `0.1` exact.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

NANO_PER_CORE = 1_000_000_000
_CPU = re.compile(r"^(?:(?P<milli>\d+)m|(?P<cores>\d+(?:\.\d+)?))$")  # as validate.py: no 1.5m
_MEMORY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>[KMGTPE]i|[kKMGTPE])?$")
_MEMORY_UNITS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
# Largest first, binary before decimal: what `format_memory` tries when writing a number.
_FORMAT_UNITS = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki", "E", "P", "T", "G", "M", "k")


def parse_cpu(value: str) -> int:
    """`500m` -> 500_000_000, `1` -> 1_000_000_000, `1.5` -> 1_500_000_000 (NanoCpus)."""
    match = _CPU.match(value.strip())
    if match is None:
        raise ValueError(f"not a CPU quantity: {value!r} (use e.g. 500m, 1, 1.5)")
    if match["milli"] is not None:
        nano = Decimal(match["milli"]) * 1_000_000
    else:
        nano = Decimal(match["cores"]) * NANO_PER_CORE
    if nano != nano.to_integral_value() or nano <= 0:
        raise ValueError(f"CPU quantity {value!r} must be a positive multiple of a nanocore")
    return int(nano)


def parse_memory(value: str) -> int:
    """`512Mi`, `1Gi`, `500M`, `1G`, `1048576` -> bytes (fractions of a byte round up)."""
    match = _MEMORY.match(value.strip())
    if match is None:
        raise ValueError(f"not a memory quantity: {value!r} (use e.g. 512Mi, 1Gi, 500M)")
    try:
        size = Decimal(match["number"]) * _MEMORY_UNITS[match["unit"]]
    except InvalidOperation as error:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"not a memory quantity: {value!r}") from error
    if size <= 0:
        raise ValueError(f"memory quantity {value!r} must be positive")
    return math.ceil(size)


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
        factor = _MEMORY_UNITS[unit]
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
