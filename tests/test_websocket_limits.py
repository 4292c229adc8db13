"""The WebSocket server against greedy and hostile clients, with real clients against a real
`storepulse up`: it reads what a client sends (so a close handshake gets through), answers a ping,
closes an oversized message with 1009 and a flood with 1008, caps connections per organisation and
in total with 1013, and gives back the memory of 100 flooding clients once they leave; meanwhile
another organisation's dashboard keeps getting its updates. The pure parts (ws_gateway/clients.py)
at the end."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.helpers import TOKENS, Storepulse, payment_intent_succeeded, recv_json, wait_for, wait_ws
from ws_gateway.clients import ConnectionCaps, Replies, answer, close_reason
from ws_gateway.limits import WsLimits
from ws_gateway.live import SWEEP_SECONDS

PING = orjson.dumps({"type": "ping"}).decode()
FLOODED = "more than 200 messages at once or 10 a second"


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-ws-limits")).start()  # the default limits
    yield server
    server.ensure_stopped()


def uid() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def live(sp: Storepulse, org: str) -> Iterator[ClientConnection]:
    """An authenticated client that has read its snapshot."""
    with connect(f"ws://127.0.0.1:{sp.ws_port}/v1/live", open_timeout=10) as conn:
        conn.send(orjson.dumps({"type": "auth", "token": TOKENS[org]}).decode())
        assert recv_json(conn)["type"] == "snapshot"
        yield conn


def closed_with(conn: ClientConnection, timeout: float = 10) -> tuple[int | None, str | None]:
    """Reads until the server closes; the code and reason of the close frame it sent."""
    with contextlib.suppress(ConnectionClosed):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn.recv(timeout=deadline - time.monotonic())
    rcvd = conn.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, None)


def test_a_client_that_sent_100_messages_closes_cleanly(sp: Storepulse) -> None:
    with live(sp, "acme") as conn:
        for i in range(100):  # what the server does not take; the client reads nothing
            conn.send(orjson.dumps({"type": "subscribe", "n": i}).decode() if i % 2 else f"not json {i}")
        conn.close()
        assert (conn.close_code, conn.protocol.close_rcvd.code) == (1000, 1000)  # not 1006


def test_a_ping_gets_a_pong_and_anything_else_an_error_that_does_not_close(sp: Storepulse) -> None:
    with live(sp, "acme") as conn:
        conn.send(orjson.dumps({"type": "ping", "id": 7}).decode())
        assert recv_json(conn) == {"type": "pong", "id": 7}
        conn.send(orjson.dumps({"type": "subscribe", "to": "everything"}).decode())
        assert recv_json(conn) == {"type": "error", "status": 400, "message": (
            "unknown message type 'subscribe': after auth the server takes {\"type\": \"ping\"} "
            "(said once; later such messages are ignored)")}
        conn.send(b"\x00\x01")  # ignored: said once already
        conn.send(PING)
        assert recv_json(conn) == {"type": "pong"}


def test_a_message_over_4_kib_closes_with_1009(sp: Storepulse) -> None:
    with live(sp, "acme") as conn:
        conn.send(orjson.dumps({"type": "ping", "pad": "x" * 4000}).decode())  # 4,027 bytes: taken
        assert recv_json(conn) == {"type": "pong"}
        conn.send(orjson.dumps({"type": "ping", "pad": "x" * 4100}).decode())
        assert closed_with(conn)[0] == 1009


def test_a_flooding_client_is_closed_with_1008_while_another_org_gets_its_updates(sp: Storepulse) -> None:
    """Clients of acme flood (reconnecting after each close) while a tokyo payment arrives: tokyo's
    dashboard gets it pushed, and every flooder was closed with 1008 or 1009."""
    codes: Counter[tuple[int | None, str | None]] = Counter()
    stop = threading.Event()

    def flood(big: bool) -> None:
        message = orjson.dumps({"type": "ping", "pad": "x" * (8000 if big else 100)}).decode()
        while not stop.is_set():
            with live(sp, "acme") as conn:
                with contextlib.suppress(ConnectionClosed):
                    for _ in range(5000):
                        conn.send(message)
                        with contextlib.suppress(TimeoutError):
                            while True:
                                conn.recv(timeout=0)
                code = closed_with(conn)
                if code[0] == 1009:
                    code = (1009, None)  # the reason is websockets' own wording
                codes[code] += 1

    with live(sp, "tokyo") as tokyo:
        threads = [threading.Thread(target=flood, args=(i == 0,)) for i in range(8)]
        for t in threads:
            t.start()
        try:
            wait_for_flood = time.monotonic() + 10
            while sum(codes.values()) < 8 and time.monotonic() < wait_for_flood:
                time.sleep(0.05)
            before = paid_orders_now(sp, "tokyo")
            r = sp.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1500, "jpy"))
            assert r.json()["status"] == "accepted", r.text
            pushed = wait_ws(tokyo, lambda m: m["type"] == "figures" and
                             m["figures"]["total"]["all"]["paid_orders"] == before + 1)
            assert pushed["figures"]["total"]["all"]["gross_revenue"]["currency"] == "JPY"
            flooded_meanwhile = sum(codes.values())
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert flooded_meanwhile >= 8
    assert set(codes) <= {(1008, FLOODED), (1009, None)} and codes[(1008, FLOODED)] > 0, codes


def paid_orders_now(sp: Storepulse, org: str) -> int:
    """The organisation's paid orders in the snapshot a new client gets."""
    with live_snapshot(sp, org) as snap:
        return snap["figures"]["total"]["all"]["paid_orders"]


@contextlib.contextmanager
def live_snapshot(sp: Storepulse, org: str) -> Iterator[dict]:
    with connect(f"ws://127.0.0.1:{sp.ws_port}/v1/live", open_timeout=10) as conn:
        conn.send(orjson.dumps({"type": "auth", "token": TOKENS[org]}).decode())
        yield recv_json(conn)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def _flooder(port: int, size: int, ready: asyncio.Semaphore, go: asyncio.Event) -> int | None:
    """Once authenticated (and all the others too), sends `size`-byte pings as fast as the server takes
    them, reading what it sends, until it is closed; the code of the close frame it got."""
    async with aconnect(f"ws://127.0.0.1:{port}/v1/live", max_size=None, open_timeout=30, close_timeout=10) as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": TOKENS["acme"]}).decode())
        assert orjson.loads(await ws.recv())["type"] == "snapshot"
        ready.release()
        await go.wait()

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        reading = asyncio.create_task(drain())
        payload = orjson.dumps({"type": "ping", "pad": "x" * size}).decode()
        with contextlib.suppress(ConnectionClosed):
            for _ in range(5000):
                await ws.send(payload)
                await asyncio.sleep(0)  # a send over a network waits; here, let the close frame be read
        await reading
        return ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None


async def flood_wave(port: int, size: int, clients: int) -> Counter[int | None]:
    ready, go = asyncio.Semaphore(0), asyncio.Event()
    floods = [asyncio.create_task(_flooder(port, size, ready, go)) for _ in range(clients)]
    for _ in range(clients):
        await ready.acquire()
    go.set()
    return Counter(await asyncio.gather(*floods))


def test_memory_comes_back_after_100_flooding_clients_leave(sp: Storepulse) -> None:
    """Three rounds of 100 flooding clients: the first may grow the heap to what 100 connections
    take at once (and Python keeps it, for the next ones); the next two must not grow it further. How
    many of a round's connections overlap depends on the load of the box: a round under load once took
    12 MiB more than the one before (CI, both cores busy), so the bound is on two rounds together, far
    below what a leak of a round's buffers adds (+94 MiB a round before these limits)."""
    pid = sp.proc.pid  # `storepulse up` serves the WebSocket in its own process
    rss = [rss_mib(pid)]
    with live(sp, "tokyo"):
        for _ in range(3):
            big = asyncio.run(flood_wave(sp.ws_port, 60_000, 100))  # messages over the limit
            small = asyncio.run(flood_wave(sp.ws_port, 1_000, 100))  # then a flood of small ones
            assert (big, small) == (Counter({1009: 100}), Counter({1008: 100}))
            time.sleep(SWEEP_SECONDS + 1)  # the sweep after the last close has run
            rss.append(rss_mib(pid))
    print(f"\nRSS of storepulse up: {rss[0]:.1f} MiB before, {rss[1]:.1f} MiB after 100 flooding clients left, "
          f"{rss[2]:.1f} and {rss[3]:.1f} MiB after 100 more twice")
    assert rss[1] - rss[0] < 40, rss  # before these limits: +94 MiB after one round, and it stayed
    assert rss[3] - rss[1] < 16, rss


def test_connections_are_capped_per_organisation_and_in_total(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path)
    sp.extra_args = ["--ws-max-per-org", "3", "--ws-max-connections", "5"]
    sp.start()
    try:
        with contextlib.ExitStack() as held:
            acme = [held.enter_context(live(sp, "acme")) for _ in range(3)]
            fourth = held.enter_context(connect(f"ws://127.0.0.1:{sp.ws_port}/v1/live", open_timeout=10))
            fourth.send(orjson.dumps({"type": "auth", "token": TOKENS["acme"]}).decode())
            assert closed_with(fourth) == (1013, ("3 connections of this organisation are open, the most allowed: "
                                                  "close one or retry later"))
            tokyo = [held.enter_context(live(sp, "tokyo")) for _ in range(2)]  # another organisation still gets in
            sixth = held.enter_context(connect(f"ws://127.0.0.1:{sp.ws_port}/v1/live", open_timeout=10))
            assert closed_with(sixth) == (1013, "the server holds 5 WebSocket connections, its most: retry later")
            acme[0].close()
            time.sleep(0.2)  # the server's handler ends after the close handshake
            with live(sp, "acme") as again:  # a place came free
                again.send(PING)
                assert recv_json(again) == {"type": "pong"}
            assert len(tokyo) == 2
    finally:
        sp.ensure_stopped()


def metric(sp: Storepulse, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", httpx.get(f"{sp.base}/metrics", timeout=10).text, re.M)
    return float(found[1]) if found else 0.0


def test_a_client_that_does_not_read_is_closed_and_never_buffered_for(tmp_path: Path) -> None:
    """A raw TCP client (a 4 KiB receive buffer) opens the WebSocket and never reads again while its
    organisation's figures change: the server holds at most its buffers for it, closes it once a push
    has waited --ws-send-timeout, and the organisation's other dashboard gets every change."""
    sp = Storepulse(tmp_path)
    sp.extra_args = ["--ws-send-timeout", "1"]
    sp.start()
    slow_closed = 'storepulse_ws_closed_by_limit_total{limit="slow_reader"}'
    try:
        with socket.socket() as slow, live(sp, "acme") as good:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", sp.ws_port))
            slow.sendall((f"GET /v1/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                          f"Authorization: Bearer {TOKENS['acme']}\r\n\r\n").encode())
            assert slow.recv(12) == b"HTTP/1.1 101"
            wait_for(lambda: metric(sp, "storepulse_ws_clients") == 2, 10, "both clients subscribed")
            posted = 0
            while metric(sp, slow_closed) == 0 and posted < 200:  # each payment, a push of ~2.5 KiB
                r = sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 100))
                assert r.json()["status"] == "accepted"
                posted += 1
            assert metric(sp, slow_closed) == 1, posted
            wait_ws(good, lambda m: m["type"] == "figures" and m["figures"]["total"]["all"]["paid_orders"] == posted)
            wait_for(lambda: metric(sp, "storepulse_ws_clients") == 1, 15, "the slow client dropped")
            slow.settimeout(10)
            held = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := slow.recv(65536):
                    held += len(chunk)
        print(f"\nthe client that did not read was closed after {posted} payments; {held:,} bytes were on their way to it")
        assert held < 512 * 1024
    finally:
        sp.ensure_stopped()


# --- the pure parts ----------------------------------------------------------------------------------

def test_caps_count_connections_and_say_why_they_refuse() -> None:
    caps = ConnectionCaps(WsLimits(per_org=2, total=3))
    assert [caps.open() for _ in range(3)] == [None, None, None]
    assert caps.open() == "the server holds 3 WebSocket connections, its most: retry later"
    assert [caps.join("a"), caps.join("a"), caps.join("b")] == [None, None, None]
    assert caps.join("a") == "2 connections of this organisation are open, the most allowed: close one or retry later"
    caps.leave("a")
    caps.close()
    assert (caps.join("a"), caps.open()) == (None, None)
    caps.leave("b")
    assert dict(caps.by_org) == {"a": 2}


def test_answers_and_reasons() -> None:
    assert answer('{"type": "ping", "id": "abc"}') == {"type": "pong", "id": "abc"}
    assert answer('{"type": "ping", "id": true}') == {"type": "pong"}
    assert answer('{"type": "ping", "id": "' + "x" * 65 + '"}') == {"type": "pong"}
    assert answer('{"type": "auth", "token": "t"}') == {"type": "error", "status": 400, "message": (
        "already authenticated: one auth message per connection (said once; later such messages are ignored)")}
    replies = Replies()
    assert [replies.to(raw) for raw in ("[1]", "nope", '{"type": "ping"}')] == [
        {"type": "error", "status": 400, "message": (
            'messages are JSON objects; after auth the server takes {"type": "ping"} (said once; later such messages are ignored)')},
        None, {"type": "pong"}]
    assert close_reason("é" * 100) == "é" * 61  # 123 bytes at most, never half a character
