"""CPU and memory quantities as the manifest writes them (Kubernetes notation), parsed once
for everyone: validation (PGV503/PGV504) and the runtime providers use these functions, so
a quantity that validates is exactly one a provider can apply.

CPU: millicores (`500m`), whole or fractional cores (`2`, `1.5`); memory: a number of
bytes with an optional binary (`Ki` … `Ei`) or decimal (`k`/`K` … `E`) unit. ASCII digits
only, the whole text (no surrounding space, no trailing newline), positive, and at most
`MAX_CPU_CORES` cores / `MAX_MEMORY_BYTES` bytes: a limit beyond any machine is a typo.
Decimal arithmetic keeps `0.1` exact.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

NANO_PER_CORE = 1_000_000_000
MAX_CPU_CORES = 1024
MAX_MEMORY_BYTES = 2**40  # 1 TiB
MAX_QUANTITY_LENGTH = 32  # longer text is never a quantity (and never goes to Decimal)

_CPU = re.compile(r"(?P<milli>[1-9][0-9]*)m|(?P<cores>[0-9]+(?:\.[0-9]+)?)")  # no 1.5m
_MEMORY = re.compile(r"(?P<number>[1-9][0-9]*|[0-9]+\.[0-9]+)(?P<unit>[KMGTPE]i|[kKMGTPE])?")
MEMORY_UNITS: dict[str | None, int] = {
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


class QuantityError(ValueError):
    """Not a usable CPU or memory quantity; the message says why and shows the form."""


def parse_cpu(value: str) -> int:
    """`500m` -> 500_000_000, `1` -> 1_000_000_000, `1.5` -> 1_500_000_000 (nanocores)."""
    match = _CPU.fullmatch(value) if len(value) <= MAX_QUANTITY_LENGTH else None
    if match is None:
        raise QuantityError(
            f"{_shown(value)} is not a CPU quantity: use millicores (`500m`), whole cores "
            "(`2`) or fractional cores (`1.5`), ASCII digits only"
        )
    if match["milli"] is not None:
        nano = Decimal(match["milli"]) * 1_000_000
    else:
        nano = Decimal(match["cores"]) * NANO_PER_CORE
    if nano != nano.to_integral_value() or nano <= 0:
        raise QuantityError(f"CPU quantity {value!r} must be a positive multiple of a nanocore")
    if nano > MAX_CPU_CORES * NANO_PER_CORE:
        raise QuantityError(f"CPU quantity {value!r} is over {MAX_CPU_CORES} cores")
    return int(nano)


def parse_memory(value: str) -> int:
    """`512Mi`, `1Gi`, `500M`, `1G`, `1048576` -> bytes (fractions of a byte round up)."""
    match = _MEMORY.fullmatch(value) if len(value) <= MAX_QUANTITY_LENGTH else None
    if match is None:
        raise QuantityError(
            f"{_shown(value)} is not a memory quantity: use `512Mi`, `1Gi` (binary) or "
            "`500M`, `2G` (decimal), ASCII digits only"
        )
    size = Decimal(match["number"]) * MEMORY_UNITS[match["unit"]]
    if size <= 0:
        raise QuantityError(f"memory quantity {value!r} must be positive")
    if size > MAX_MEMORY_BYTES:
        raise QuantityError(f"memory quantity {value!r} is over 1Ti")
    return math.ceil(size)


def _shown(value: str) -> str:
    return repr(value if len(value) <= MAX_QUANTITY_LENGTH else value[:MAX_QUANTITY_LENGTH] + "…")
