"""What counts as a secret, and how it is kept out of plans and logs (spec 004 NFR-006)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

SENSITIVE = "(sensitive)"
SECRET_KEY = re.compile(
    r"(password|passwd|passphrase|secret|token|apikey|privatekey|credential|accesskey"
    r"|signingkey|encryptionkey|hmackey|connectionstring|authorization|bearer|cookie)"
)


SHORT_SECRET_KEY = re.compile(r"(^|[_.-])(pass|pwd)\Z")  # DB_PASS, smtp.pwd; not "bypass"


# Keys repeat across a million bindings (the same few dozen configuration keys): each is
# matched once. A key is a str, so the answer depends on nothing else.
@lru_cache(maxsize=65536)
def looks_secret(key: str) -> bool:
    """Keys like `password`, `CRM_API_TOKEN`, `apiKey`, `client-secret`, `DB_PASS`."""
    lowered = key.lower()
    return bool(
        SECRET_KEY.search(lowered.replace("_", "").replace("-", ""))
        or SHORT_SECRET_KEY.search(lowered)
    )


@lru_cache(maxsize=65536)
def names_secret(key: str) -> bool:
    """Stricter than `looks_secret`: the key *ends* with the secret word (`apiToken`,
    `smtpPassword`), so `tokenTtlSeconds` holding a number is not taken for a secret."""
    lowered = key.lower().replace("_", "").replace("-", "")
    return any(lowered.endswith(m) for m in SECRET_KEY.findall(lowered)) or bool(
        SHORT_SECRET_KEY.search(key.lower())
    )


def is_reference(value: Any) -> bool:
    """`{fromEnv: NAME}` or `{secretRef: {name, key}}`: a value named, never written."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    if isinstance(value.get("fromEnv"), str):
        return True
    ref = value.get("secretRef")
    return (
        isinstance(ref, dict)
        and set(ref) == {"name", "key"}
        and all(isinstance(v, str) for v in ref.values())
    )


def has_credentials(text: str) -> bool:
    """A URL with a password in it (`postgres://user:pw@host/db`)."""
    if "@" not in text or ":" not in text:
        return False
    try:
        parts = urlsplit(text)
    except ValueError:  # "http://[x": not a URL one can read, so no password to find
        return False
    return bool(parts.scheme and parts.password)


def mask(value: Any, *, credentials: bool = False) -> Any:
    """A copy for display: values under secret-looking keys become "(sensitive)"; with
    `credentials`, so do URLs with a password. References stay (they name, never hold, a
    value). Iterative, so a value nested thousands of levels deep cannot exhaust the
    stack."""
    if is_reference(value) or not isinstance(value, dict | list):
        return (
            SENSITIVE
            if credentials and isinstance(value, str) and has_credentials(value)
            else value
        )
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        in_mapping = isinstance(source, dict)
        for key, item in source.items() if in_mapping else enumerate(source):
            shown: Any = item
            if _hidden(key if in_mapping else None, item, credentials):
                shown = SENSITIVE
            elif isinstance(item, dict | list) and not is_reference(item):
                shown = {} if isinstance(item, dict) else []
                stack.append((item, shown))
            if in_mapping:
                target[key] = shown
            else:
                target.append(shown)
    return root


def _hidden(key: Any, item: Any, credentials: bool) -> bool:
    if isinstance(key, str) and looks_secret(key) and not is_reference(item):
        return True
    return credentials and isinstance(item, str) and has_credentials(item)
