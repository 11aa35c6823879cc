"""Delivers a JSON report to a webhook (`drift --notify URL`).

One POST of the exact JSON body, `Content-Type: application/json`, with GitHub's webhook
headers renamed so a receiver can reuse a GitHub verifier:

- `X-Plexica-Event`: what the report is (`drift`, `reconcile`, ...);
- `X-Plexica-Delivery`: a UUID, the same on every retry of one delivery (receivers dedupe);
- `X-Plexica-Signature-256: sha256=<hex HMAC-SHA256 of the body>` when a secret is given
  (`PLEXICA_WEBHOOK_SECRET`).

Each attempt is bounded by the policy's timeout. Connection errors, timeouts, 408, 429 and
5xx are retried with exponential backoff; a `Retry-After` the server sends is waited for
instead, unless it asks for longer than the policy's cap (then the delivery fails at once:
retrying earlier than asked is refused anyway). Any other answer that is not 2xx fails at
once, a redirect too (urllib would turn the POST into a GET and drop the report). The
secret, the URL's user info (sent as basic auth), its path and its query (Slack-style URLs
carry their token there) appear in no error and no log line: those name scheme, host and
port only.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from plexica_gitops.errors import PlexicaError

SECRET_ENV = "PLEXICA_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Plexica-Signature-256"
DELIVERY_HEADER = "X-Plexica-Delivery"
EVENT_HEADER = "X-Plexica-Event"

_LOG = logging.getLogger(__name__)
_EVENT = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_RETRIED_STATUSES = frozenset({408, 429})
_ERROR_BODY_BYTES = 300  # enough for a receiver's one-line reason


class WebhookError(PlexicaError):
    """The report was not delivered. `status` is the last HTTP status (None when no answer
    came), `attempts` how many requests were sent."""

    def __init__(
        self, message: str, hint: str, *, status: int | None = None, attempts: int = 0
    ) -> None:
        retried = status is None or status in _RETRIED_STATUSES or status >= 500
        super().__init__(message, hint, transient=retried)
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` requests at most, each bounded by `timeout_seconds`; the n-th retry waits
    `first_delay_seconds * 2**(n-1)`, at most `max_delay_seconds` (the cap on Retry-After)."""

    attempts: int = 4
    timeout_seconds: float = 10.0
    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.timeout_seconds <= 0 or self.first_delay_seconds < 0:
            raise ValueError(f"invalid retry policy {self}")

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (1 is the first retry)."""
        return float(min(self.max_delay_seconds, self.first_delay_seconds * 2 ** (retry - 1)))

    def worst_case_seconds(self) -> float:
        """How long a delivery takes at most against a receiver that accepts connections
        but never answers (the timeout bounds each socket operation)."""
        waits = sum(self.backoff(n) for n in range(1, self.attempts))
        return self.attempts * self.timeout_seconds + waits


@dataclass(frozen=True)
class Delivery:
    """A delivered report: the receiver's 2xx status after `attempts` requests."""

    delivery_id: str
    status: int
    attempts: int


@dataclass(frozen=True)
class _Target:
    """A webhook URL split into what is sent and what may be shown."""

    url: str  # without user info
    shown: str  # scheme://host[:port]
    authorization: str | None


class _Retry(Exception):
    def __init__(self, reason: str, *, status: int | None = None, after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.after = after


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of `body`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_secret(environ: Mapping[str, str] = os.environ) -> str | None:
    """The signing secret from `PLEXICA_WEBHOOK_SECRET`; unset or empty means unsigned."""
    return environ.get(SECRET_ENV) or None


def deliver(
    url: str,
    report: bytes | Mapping[str, object],
    *,
    event: str = "drift",
    secret: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POSTs `report` (JSON bytes, sent as they are, or a mapping, serialised) to `url`.
    Raises WebhookError when it could not be delivered within `policy`."""
    target = _target(url)
    if not _EVENT.fullmatch(event):
        raise ValueError(f"event {event!r} is not a lowercase token")
    body = _body(report)
    delivery_id = str(uuid.uuid4())
    headers = _headers(body, event, delivery_id, secret, target.authorization)
    last: _Retry | None = None
    for attempt in range(1, policy.attempts + 1):
        if last is not None:
            sleep(_wait(last, attempt - 1, policy, target))
        try:
            status = _post(target, body, headers, policy.timeout_seconds, attempt)
        except _Retry as retry:
            last = retry
            _LOG.warning(
                "webhook %s: attempt %d/%d failed (%s)",
                target.shown, attempt, policy.attempts, retry.reason,
            )  # fmt: skip
            continue
        return Delivery(delivery_id, status, attempt)
    assert last is not None
    raise WebhookError(
        f"webhook {target.shown}: not delivered after {policy.attempts} attempts ({last.reason})",
        "Check that the receiver is up and reachable from here; the report is still "
        "printed, and the next run sends a new one.",
        status=last.status,
        attempts=policy.attempts,
    )


def _target(url: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # a non-numeric port raises here, not mid-request
    except ValueError:
        raise WebhookError(
            "the webhook URL is not a valid URL", "Give an http:// or https:// URL."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        scheme = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise WebhookError(
            f"the webhook URL has {scheme}", "Give an http:// or https:// URL with a host."
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    sent = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return _Target(sent, f"{parts.scheme}://{netloc}", authorization)


def _body(report: bytes | Mapping[str, object]) -> bytes:
    if isinstance(report, bytes):
        json.loads(report)  # the receiver is told it is JSON: it must be
        return report
    return json.dumps(report, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _headers(
    body: bytes, event: str, delivery_id: str, secret: str | None, authorization: str | None
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"plexica-gitops/{_version()}",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    if authorization:
        headers["Authorization"] = authorization
    return headers


def _version() -> str:
    try:
        return version("plexica-gitops")
    except PackageNotFoundError:
        return "dev"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx reaches the caller as an HTTPError: urllib would re-send the POST as a GET."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _post(
    target: _Target, body: bytes, headers: dict[str, str], timeout: float, attempt: int
) -> int:
    """One attempt: the 2xx status, or _Retry for what may pass, WebhookError for the rest."""
    request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as answer:
        with answer:
            _refuse_or_retry(target, answer, attempt)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise WebhookError(
                f"webhook {target.shown}: its TLS certificate is not trusted "
                f"({exc.reason.verify_message})",
                "Give the receiver a certificate from a trusted CA, or point SSL_CERT_FILE "
                "at the CA bundle that signed it.",
                attempts=attempt,
            ) from None
        raise _Retry(_reason(exc.reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Retry(_reason(exc)) from None
    raise AssertionError("unreachable")


def _refuse_or_retry(target: _Target, answer: urllib.error.HTTPError, attempt: int) -> None:
    status = answer.code
    if status in _RETRIED_STATUSES or status >= 500:
        raise _Retry(f"HTTP {status}", status=status, after=_retry_after(answer))
    what = "a redirect" if 300 <= status < 400 else f"HTTP {status}"
    said = _said(answer)
    raise WebhookError(
        f"webhook {target.shown} answered {what}{said}: the report was not delivered",
        "A redirect is not followed: give the final URL."
        if 300 <= status < 400
        else "Check the URL, the receiver's credentials and PLEXICA_WEBHOOK_SECRET "
        "(the receiver must verify X-Plexica-Signature-256 with the same secret).",
        status=status,
        attempts=attempt,
    )


def _said(answer: urllib.error.HTTPError) -> str:
    """The start of the receiver's reason, printable characters only."""
    try:
        text = answer.read1(_ERROR_BODY_BYTES).decode("utf-8", "replace")
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return f" ({text})" if text else ""


def _retry_after(answer: urllib.error.HTTPError) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or bad."""
    value = (answer.headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _wait(last: _Retry, retry: int, policy: RetryPolicy, target: _Target) -> float:
    """The pause before retry number `retry`, when `retry` requests were sent."""
    if last.after is None:
        return policy.backoff(retry)
    if last.after > policy.max_delay_seconds:
        raise WebhookError(
            f"webhook {target.shown} answered {last.reason} and asked to retry after "
            f"{last.after:.0f} s, more than the {policy.max_delay_seconds:.0f} s allowed",
            "The receiver is overloaded or in maintenance; the next run sends a new report.",
            status=last.status,
            attempts=retry,
        )
    return last.after


def _reason(cause: object) -> str:
    """Why a connection failed, without the URL (urllib's messages can contain it)."""
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(cause).__name__
