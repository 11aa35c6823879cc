"""The Docker provider's settings (platform.yaml `spec.runtime`, beside `provider`), checked.

`check_settings` is the provider's settings hook (`plexica_gitops.runtime.provider.SettingsCheck`):
`validate` calls it, so a bad setting is a finding at its line in platform.yaml (PGV514),
and the provider calls it again when it is built, so nothing unchecked reaches the engine.
It imports nothing of the docker SDK: validating stays fast.

Every value the engine receives is bounded: the pids limit is at least 1 (`-1` would lift
it), the /tmp tmpfs size is a size and nothing else (the mount options are ours:
`size=<size>,mode=1777`, so `64m,exec,suid` must be impossible), waits are finite.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from plexica_gitops.runtime.provider import SettingProblem

ENDPOINT_MODES = ("loopback", "network")
RESTART_POLICIES = ("unless-stopped", "on-failure")
MAX_PIDS_LIMIT = 4_194_304  # the kernel's largest pid_max
MAX_TMPFS_BYTES = 2**40  # 1 TiB, as for memory limits

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", re.ASCII)
_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
_BASE_URL = re.compile(r"[!-~]{1,2048}", re.ASCII)  # printable ASCII, no space
_SIZE = re.compile(r"(?P<number>[1-9][0-9]{0,12})(?P<unit>[kmg]?)", re.ASCII)
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}

_Check = Callable[[Any], str | None]  # the problem with a value, or None


def _text(pattern: re.Pattern[str], form: str) -> _Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and pattern.fullmatch(value):
            return None
        return f"must be {form}"

    return check


def _optional(check: _Check) -> _Check:
    return lambda value: None if value is None else check(value)


def _one_of(choices: tuple[str, ...]) -> _Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of: {', '.join(choices)}"

    return check


def _seconds(low: float, high: float) -> _Check:
    def check(value: Any) -> str | None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(value) and low <= value <= high:
            return None
        return f"must be a number of seconds from {low:g} to {high:g}"

    return check


def _pids_limit(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_PIDS_LIMIT:
        return None
    return f"must be a whole number from 1 to {MAX_PIDS_LIMIT:,} (the container's process limit)"


def _tmpfs_size(value: Any) -> str | None:
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is not None and int(match["number"]) * _SIZE_UNITS[match["unit"]] <= MAX_TMPFS_BYTES:
        return None
    return "must be a size: a number with an optional unit k, m or g (e.g. `64m`), at most 1 TiB"


_CHECKS: dict[str, _Check] = {
    "baseUrl": _optional(_text(_BASE_URL, "an engine address such as unix:///run/docker.sock")),
    "network": _optional(_text(_NAME, "a network name (letters, digits, `_`, `.`, `-`)")),
    "endpointMode": _one_of(ENDPOINT_MODES),
    "scope": _text(_SCOPE, "a scope name (letters, digits, `_`, `.`, `-`; up to 63)"),
    "restartPolicy": _one_of(RESTART_POLICIES),
    "drainSeconds": _seconds(0, 3600),
    "probeTimeoutSeconds": _seconds(0.05, 300),
    "stopTimeoutSeconds": _seconds(0, 3600),
    "pidsLimit": _pids_limit,
    "tmpfsSize": _tmpfs_size,
}
SETTING_NAMES = tuple(_CHECKS)


def check_settings(settings: Mapping[str, Any]) -> list[SettingProblem]:
    """Every problem with `settings` (platform.yaml `spec.runtime` without `provider`),
    in the order written."""
    problems = []
    for key, value in settings.items():
        if key == "provider":
            continue
        check = _CHECKS.get(key)
        if check is None:
            close = difflib.get_close_matches(key, SETTING_NAMES, n=1)
            problems.append(
                SettingProblem(
                    key,
                    f"unknown docker runtime setting `{key[:80]}`",
                    f"Did you mean `{close[0]}`?"
                    if close
                    else "The docker provider accepts: " + ", ".join(SETTING_NAMES) + ".",
                )
            )
            continue
        problem = check(value)
        if problem is not None:
            problems.append(
                SettingProblem(
                    key,
                    f"spec.runtime.{key} {problem}",
                    "Fix the setting in platform.yaml (see the Docker provider settings in "
                    "the README).",
                )
            )
    return problems
