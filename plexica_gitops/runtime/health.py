"""HTTP probes of plugin replicas, run by the reconciler itself.

Spec 004 judges a replica by its readiness and liveness endpoints, and the container
engine's own HEALTHCHECK is not something to rely on (it needs systemd timers under
Podman, and Kubernetes has its own), so providers probe with these functions.

A probe is one GET: any 2xx or 3xx answer is OK (as a Kubernetes httpGet probe judges it);
redirects are not followed, and no proxy is used, whatever the environment says: probes go
straight to the replica.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from plexica_gitops.runtime.provider import RolloutSettings

BODY_EXCERPT = 200  # characters of an error answer kept in the detail


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str  # "HTTP 200", "HTTP 503: <body excerpt>", "connection refused", ...

    def __str__(self) -> str:
        return self.detail


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is the answer: it is reported, not followed


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def probe(url: str, timeout: float = 2.0) -> ProbeResult:
    """One GET of `url`; never raises for network or HTTP failures."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return ProbeResult(True, f"HTTP {response.status}")
    except urllib.error.HTTPError as error:
        status = error.code
        if 300 <= status < 400:
            return ProbeResult(True, f"HTTP {status}")
        return ProbeResult(False, _http_detail(status, error))
    except urllib.error.URLError as error:
        return ProbeResult(False, _network_detail(error.reason, timeout))
    except (OSError, http.client.HTTPException) as error:
        return ProbeResult(False, _network_detail(error, timeout))


def wait_ready(
    url: str,
    settings: RolloutSettings,
    *,
    timeout: float | None = None,
    cancelled: threading.Event | None = None,
) -> ProbeResult:
    """Probe `url` every `probe_interval_seconds` until `ready_probes` consecutive OK
    answers (returns the last one), or until `timeout` (default: the settings'
    `timeout_seconds`) has passed (returns the last answer, not OK), or until `cancelled`
    is set (returns a not-OK "cancelled")."""
    budget = settings.timeout_seconds if timeout is None else timeout
    deadline = time.monotonic() + budget
    interval = settings.probe_interval_seconds
    consecutive = 0
    stop = cancelled or threading.Event()
    while True:
        if stop.is_set():
            return ProbeResult(False, "cancelled")
        remaining = deadline - time.monotonic()
        result = probe(url, timeout=max(0.1, min(2.0, remaining)))
        consecutive = consecutive + 1 if result.ok else 0
        if consecutive >= settings.ready_probes:
            return result
        if time.monotonic() + interval > deadline:
            if result.ok:  # ready so far, but not for long enough within the budget
                return ProbeResult(False, f"{result.detail} (only {consecutive} in a row)")
            return result
        stop.wait(interval)


def _http_detail(status: int, error: urllib.error.HTTPError) -> str:
    try:
        body = error.read(BODY_EXCERPT * 4).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        body = ""
    finally:
        error.close()
    excerpt = " ".join(body.split())[:BODY_EXCERPT]
    return f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"


def _network_detail(reason: object, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host: {reason.strerror}"
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
