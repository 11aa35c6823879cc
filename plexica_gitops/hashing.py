"""Canonical JSON text and the short stable hash of a value: what fingerprints, manifest
and env hashes are made of. The text is json.dumps(value, sort_keys=True,
separators=(",", ":")); a million of them are made per fingerprint, so the C encoder that
json.dumps ends up in is made once and called directly."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Key order differs between sources (jsonb sorts keys, a JSON file keeps them).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_canonical = (
    _c_make_encoder(
        None,  # markers: no circular-reference check (the values come from JSON)
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
    if _c_make_encoder is not None
    else None
)


def canonical_json(value: dict[str, Any]) -> str:
    if _encode_canonical is None:  # pragma: no cover - CPython without its _json module
        return _CANONICAL.encode(value)
    chunks = _encode_canonical(value, 0)
    # CPython's C encoder hands back the whole text as one chunk: no join to pay for.
    return chunks[0] if len(chunks) == 1 else "".join(chunks)


# The JSON text of a value, keys in their order (-0.0, 1.0, 1 and true all differ): what
# SharedValues tells nested values apart by.
_encode_plain = (
    _c_make_encoder(
        None,
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,  # sort_keys: the order is part of the value as read
        False,
        True,
    )
    if _c_make_encoder is not None
    else None
)
_PLAIN = json.JSONEncoder(separators=(",", ":"))


def json_text(value: Any) -> str:
    if _encode_plain is None:  # pragma: no cover - CPython without its _json module
        return _PLAIN.encode(value)
    return "".join(_encode_plain(value, 0))


def stable_hash(value: Any) -> str:
    """A short, deterministic hash of a JSON-compatible value (manifests, env specs)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
