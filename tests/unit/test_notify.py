"""Webhook delivery (`drift --notify URL`) against a real HTTP server on 127.0.0.1: the
receiver verifies the signature as a GitHub webhook receiver would, and answers what each
test scripts (errors, Retry-After, slowness)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from plexica_gitops.errors import PlexicaError
from plexica_gitops.gitops.notify import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    RetryPolicy,
    WebhookError,
    deliver,
    sign,
    webhook_secret,
)

SECRET = "s3cr3t-webhook-key"
REPORT = {"status": "drift", "drifted": [{"address": "plugin.crm.workload", "kind": "workload"}]}
FAST = RetryPolicy(attempts=4, timeout_seconds=2.0, first_delay_seconds=0.05)


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None


class Receiver:
    """Answers with the scripted answers in turn (the last one repeats); with a secret, a
    request whose signature does not verify gets 401 whatever the script says."""

    def __init__(self, answers: list[Answer], secret: str | None = None) -> None:
        self.answers = answers
        self.secret = secret
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/plexica"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = receiver._record(self.path, dict(self.headers.items()), body)
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        verified = None
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            verified = hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, ""))
        with self.lock:
            index = min(len(self.received), len(self.answers) - 1)
            self.received.append(Received(time.monotonic(), path, headers, body, verified))
        return Answer(401, body=b"bad signature") if verified is False else self.answers[index]


Start = Callable[..., Receiver]


@pytest.fixture
def receiver() -> Iterator[Start]:
    made: list[Receiver] = []

    def start(answers: list[Answer], secret: str | None = None) -> Receiver:
        server = Receiver(answers, secret)
        server.thread.start()
        made.append(server)
        return server

    yield start
    for server in made:
        server.server.shutdown()
        server.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_receiver_verifies_the_signature_of_the_exact_body(receiver: Start) -> None:
    server = receiver([Answer(204)], secret=SECRET)
    body = json.dumps(REPORT, indent=2).encode()  # sent as given, not re-serialised

    delivery = deliver(server.url, body, event="drift", secret=SECRET, policy=FAST)

    assert (delivery.status, delivery.attempts) == (204, 1)
    [got] = server.received
    assert got.signature_ok is True
    assert got.body == body
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers[EVENT_HEADER] == "drift"
    assert got.headers[DELIVERY_HEADER] == delivery.delivery_id
    assert uuid.UUID(delivery.delivery_id).version == 4
    assert got.headers[SIGNATURE_HEADER] == sign(body, SECRET)


def test_a_mapping_is_sent_as_json_and_unsigned_without_a_secret(receiver: Start) -> None:
    server = receiver([Answer(200)])
    deliver(server.url, REPORT, policy=FAST)
    [got] = server.received
    assert json.loads(got.body) == REPORT
    assert SIGNATURE_HEADER not in got.headers


def test_a_wrong_secret_is_refused_by_the_receiver_and_not_retried(receiver: Start) -> None:
    server = receiver([Answer(204)], secret=SECRET)
    with pytest.raises(WebhookError) as caught:
        deliver(server.url, REPORT, secret="another-secret", policy=FAST)
    assert caught.value.status == 401
    assert len(server.received) == 1
    assert "bad signature" in caught.value.message
    assert "another-secret" not in str(caught.value)
    assert isinstance(caught.value, PlexicaError) and caught.value.hint


def test_503_is_retried_with_backoff_then_delivered_under_the_same_delivery_id(
    receiver: Start,
) -> None:
    server = receiver([Answer(503), Answer(503), Answer(200)], secret=SECRET)
    waits: list[float] = []

    delivery = deliver(server.url, REPORT, secret=SECRET, policy=FAST, sleep=waits.append)

    assert (delivery.status, delivery.attempts) == (200, 3)
    assert waits == [0.05, 0.1]  # exponential
    assert {r.headers[DELIVERY_HEADER] for r in server.received} == {delivery.delivery_id}
    assert all(r.signature_ok for r in server.received)


def test_retry_after_is_waited_for(receiver: Start) -> None:
    server = receiver([Answer(429, {"Retry-After": "1"}), Answer(200)])
    delivery = deliver(server.url, REPORT, policy=FAST)  # backoff alone would wait 0.05 s
    first, second = server.received
    assert delivery.attempts == 2
    assert second.at - first.at >= 1.0


def test_retry_after_beyond_the_cap_fails_at_once(receiver: Start) -> None:
    server = receiver([Answer(503, {"Retry-After": "3600"}), Answer(200)])
    started = time.monotonic()
    with pytest.raises(WebhookError, match="retry after 3600 s"):
        deliver(server.url, REPORT, policy=FAST)
    assert time.monotonic() - started < 2
    assert len(server.received) == 1


def test_400_is_not_retried(receiver: Start) -> None:
    server = receiver([Answer(400, body=b"missing field\x00 'status'"), Answer(200)])
    with pytest.raises(WebhookError) as caught:
        deliver(server.url, REPORT, policy=FAST)
    assert caught.value.status == 400 and caught.value.attempts == 1
    assert not caught.value.transient
    assert "missing field 'status'" in caught.value.message  # the receiver's reason, printable
    assert len(server.received) == 1


def test_a_redirect_is_not_followed(receiver: Start) -> None:
    target = receiver([Answer(200)])
    server = receiver([Answer(302, {"Location": target.url})])
    with pytest.raises(WebhookError, match="a redirect"):
        deliver(server.url, REPORT, policy=FAST)
    assert target.received == []


def test_a_receiver_that_does_not_answer_times_out_within_the_bound(receiver: Start) -> None:
    server = receiver([Answer(200, delay=3.0)])
    policy = RetryPolicy(attempts=2, timeout_seconds=0.3, first_delay_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(WebhookError, match="timed out") as caught:
        deliver(server.url, REPORT, policy=policy)
    elapsed = time.monotonic() - started
    assert elapsed < policy.worst_case_seconds() + 0.5
    assert caught.value.status is None and caught.value.transient
    assert len(server.received) == 2


def test_an_unreachable_port_fails_with_a_typed_error_within_the_bound() -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook"
    policy = RetryPolicy(attempts=3, timeout_seconds=1.0, first_delay_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(WebhookError, match="connection refused") as caught:
        deliver(url, REPORT, policy=policy)
    assert time.monotonic() - started < policy.worst_case_seconds()
    assert caught.value.attempts == 3
    assert "not delivered after 3 attempts" in caught.value.message


def test_user_info_path_and_query_never_reach_errors_or_logs(
    receiver: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = receiver([Answer(503), Answer(403)])
    port = server.server.server_address[1]
    url = f"http://hook-user:hook-pass@127.0.0.1:{port}/services/T0/B0/PATHTOKEN?key=QUERYKEY"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(WebhookError) as caught:
        deliver(url, REPORT, secret=SECRET, policy=FAST, sleep=lambda _: None)
    shown = str(caught.value) + caplog.text
    assert f"http://127.0.0.1:{port}" in shown
    for secret in ("hook-user", "hook-pass", "PATHTOKEN", "QUERYKEY", SECRET):
        assert secret not in shown
    # the user info is sent as basic auth, the path and query as given
    assert server.received[0].headers["Authorization"] == "Basic aG9vay11c2VyOmhvb2stcGFzcw=="
    assert server.received[0].path == "/services/T0/B0/PATHTOKEN?key=QUERYKEY"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.invalid/x", "127.0.0.1:8080/hook", "http://h:x/"]
)
def test_a_url_that_is_not_http_is_refused_before_sending(url: str) -> None:
    with pytest.raises(WebhookError, match="URL"):
        deliver(url, REPORT, policy=FAST)


def test_the_secret_comes_from_the_environment_and_empty_means_unsigned() -> None:
    assert webhook_secret({"PLEXICA_WEBHOOK_SECRET": SECRET}) == SECRET
    assert webhook_secret({"PLEXICA_WEBHOOK_SECRET": ""}) is None
    assert webhook_secret({}) is None


def test_the_signature_is_githubs_scheme() -> None:
    # the example of GitHub's "Validating webhook deliveries"
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
