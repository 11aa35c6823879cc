"""What counts as a secret, and how it is kept out of plans and logs (spec 004 NFR-006)."""

from __future__ import annotations

import re
from typing import Any

SENSITIVE = "(sensitive)"
SECRET_KEY = re.compile(
    r"(password|passwd|passphrase|secret|token|apikey|privatekey|credential|accesskey"
    r"|signingkey|encryptionkey|hmackey|connectionstring|authorization|bearer|cookie)"
)


SHORT_SECRET_KEY = re.compile(r"(^|[_.-])(pass|pwd)\Z")  # DB_PASS, smtp.pwd; not "bypass"


def looks_secret(key: str) -> bool:
    """Keys like `password`, `CRM_API_TOKEN`, `apiKey`, `client-secret`, `DB_PASS`."""
    lowered = key.lower()
    return bool(
        SECRET_KEY.search(lowered.replace("_", "").replace("-", ""))
        or SHORT_SECRET_KEY.search(lowered)
    )


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


def mask(value: Any) -> Any:
    """A copy for display: values under secret-looking keys become "(sensitive)"."""
    if isinstance(value, dict):
        if is_reference(value):
            return value
        return {
            key: SENSITIVE if looks_secret(key) and not is_reference(item) else mask(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask(item) for item in value]
    return value
