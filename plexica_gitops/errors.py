"""The error shape shared by the parts that talk to the world (runtime providers, the event
broker): what went wrong, what to do about it, and whether trying again may help."""

from __future__ import annotations


class ActionableError(Exception):
    """`message` says what went wrong, `hint` what to do. `transient` errors (a server
    briefly away or busy) are retried by apply with backoff; the others fail the step."""

    def __init__(self, message: str, hint: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.transient = transient

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
