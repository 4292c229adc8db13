"""Connections that cost us without sending a request are closed, with raw sockets against a real
`storepulse up` whose limits are set short: an idle connection, headers that trickle in, a body
that stalls or trickles, headers that never end, and more connections than allowed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Storepulse, stripe_signature

LIMIT = 1.0  # seconds: keep-alive, header and body timeouts of the server under test
SLACK = 1.0  # what a busy test machine may add before the close is seen


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-timeouts"))
    server.extra_args = ["--keep-alive-timeout", str(LIMIT), "--header-timeout", str(LIMIT), "--body-timeout", str(LIMIT),
                         "--max-header-bytes", "8KiB"]
    server.start()
    yield server
    server.ensure_stopped()


def connect(sp: Storepulse) -> socket.socket:
    return socket.create_connection(("127.0.0.1", sp.http_port), timeout=10)


def read_until_closed(sock: socket.socket, started: float, trickle: bytes = b"", every: float = 0.2,
                      limit: float = 30) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (seconds after `started`).
    Meanwhile sends `trickle` one byte every `every` seconds, as a slow client would."""
    got = b""
    sock.settimeout(every)
    while time.monotonic() - started < limit:
        if trickle:
            try:
                sock.sendall(trickle[:1])
            except OSError:  # closed by the server while we were still sending
                trickle = b""
            trickle = trickle[1:]
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got, time.monotonic() - started
        if not data:
            return got, time.monotonic() - started
        got += data
    raise AssertionError(f"still open after {limit} s; received {got!r}")


def test_an_idle_connection_is_closed(sp: Storepulse) -> None:
    with connect(sp) as sock:
        started = time.monotonic()
        got, closed_after = read_until_closed(sock, started)
    assert got == b""
    assert LIMIT - 0.05 <= closed_after <= LIMIT + SLACK


def test_a_connection_idle_after_a_response_is_closed(sp: Storepulse) -> None:
    with connect(sp) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        rest, closed_after = read_until_closed(sock, started)
    assert b"HTTP/1.1" not in rest
    assert closed_after <= LIMIT + SLACK


def test_headers_that_trickle_in_get_408_and_the_connection_is_closed(sp: Storepulse) -> None:
    head = b"POST /webhooks/stripe/acme-stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + b"X-Slow: " + b"a" * 200
    with connect(sp) as sock:
        started = time.monotonic()
        got, closed_after = read_until_closed(sock, started, trickle=head)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), got
    assert got.endswith(b"\r\n\r\nheaders not complete within 1 s")
    assert LIMIT - 0.05 <= closed_after <= LIMIT + SLACK


@pytest.mark.parametrize("trickle", [False, True], ids=["stalls", "trickles"])
def test_a_body_that_stalls_or_trickles_gets_408_and_the_connection_is_closed(sp: Storepulse, trickle: bool) -> None:
    body = b'{"id": "evt_slow", "type": "payment_intent.succeeded"}' + b" " * 200
    head = (b"POST /webhooks/stripe/acme-stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Stripe-Signature: " + stripe_signature(body, "whsec_acme_secret").encode() + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    with connect(sp) as sock:
        sock.sendall(head + body[:10])
        started = time.monotonic()
        got, closed_after = read_until_closed(sock, started, trickle=body[10:] if trickle else b"")
    status, _, rest = got.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", got
    assert b"connection: close" in rest.lower()
    assert rest.endswith(b'\r\n\r\n{"error":"the body did not arrive within 1 s"}')
    assert LIMIT - 0.05 <= closed_after <= LIMIT + SLACK


def test_headers_over_the_limit_get_431(sp: Storepulse) -> None:
    with connect(sp) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(100)))
        got, _ = read_until_closed(sock, time.monotonic())
    assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), got
    assert got.endswith(b"request line and headers are over the limit of 8192 bytes")
    # Control: headers within the limit are answered.
    assert httpx.get(f"{sp.base}/metrics", headers={f"X-H{i}": "v" * 100 for i in range(60)}).status_code == 200


def test_a_request_beyond_the_connection_cap_gets_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = Storepulse(tmp_path_factory.mktemp("sp-cap"))
    server.extra_args = ["--max-connections", "3"]
    server.start()
    try:
        idle = [connect(server) for _ in range(3)]
        time.sleep(0.2)  # accepted by the server
        assert httpx.get(f"{server.base}/metrics").status_code == 503
        idle.pop().close()
        time.sleep(0.2)
        assert httpx.get(f"{server.base}/metrics").status_code == 200
        for s in idle:
            s.close()
    finally:
        server.ensure_stopped()
