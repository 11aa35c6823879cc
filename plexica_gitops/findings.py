"""Findings: what validation (and loading) reports, each pointing at a place in the sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A place in the desired-state sources; `file` is relative to the desired-state root."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Finding:
    """One problem. `code` is stable (documented in the README); `subjects` names every
    plugin or tenant the message involves, so a reviewer can filter by them."""

    code: str
    severity: Severity
    message: str
    hint: str
    location: Location | None = None
    subjects: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (
            loc.file if loc else "",
            (loc.line or 0) if loc else 0,
            (loc.column or 0) if loc else 0,
            self.code,
            self.message,
        )

    def to_json(self) -> dict[str, object]:
        loc = self.location
        return {
            "code": self.code,
            "severity": self.severity.value,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "message": self.message,
            "hint": self.hint,
            "subjects": list(self.subjects),
        }


def error(
    code: str,
    message: str,
    hint: str,
    location: Location | None = None,
    subjects: tuple[str, ...] = (),
) -> Finding:
    return Finding(code, Severity.ERROR, message, hint, location, subjects)


def warning(
    code: str,
    message: str,
    hint: str,
    location: Location | None = None,
    subjects: tuple[str, ...] = (),
) -> Finding:
    return Finding(code, Severity.WARNING, message, hint, location, subjects)
