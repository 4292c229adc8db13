"""What the read side allows one organisation and one client: each limit, its default and its flag
(`storepulse up|gateway`). docs/operations.md, "Read API and WebSocket limits", says why each is set
as it is and what a client sees when it hits one."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ApiLimits:
    """The HTTP read API, per organisation (its token)."""

    rate: float = 20.0  # cost units refilled a second; a figures request costs 1 (ws_gateway/throttle.py)
    burst: float = 200.0  # cost units held at most: what a quiet organisation may spend at once
    concurrency: int = 4  # requests running at once


@dataclass(frozen=True)
class WsLimits:
    """The WebSocket server."""

    per_org: int = 200  # connections of one organisation
    total: int = 5000  # connections, authenticated or not
    max_message: int = 4096  # bytes of one client message; a larger one closes the connection with 1009
    client_rate: float = 10.0  # client messages a second, sustained ...
    client_burst: float = 200.0  # ... after this many at once; beyond, the connection is closed with 1008
    send_timeout: float = 10.0  # seconds one push may wait for a client that does not read; then it is closed


_FLAGS: list[tuple[str, type, str, str]] = [
    # (flag, limits class, field, help)
    ("--api-rate", ApiLimits, "rate", "read API cost units per second per organisation (a figures request costs 1)"),
    ("--api-burst", ApiLimits, "burst", "read API cost units an organisation may spend at once"),
    ("--api-concurrency", ApiLimits, "concurrency", "read API requests of one organisation running at once"),
    ("--ws-max-per-org", WsLimits, "per_org", "WebSocket connections of one organisation"),
    ("--ws-max-connections", WsLimits, "total", "WebSocket connections in total"),
    ("--ws-max-message", WsLimits, "max_message", "largest WebSocket message a client may send, in bytes"),
    ("--ws-client-rate", WsLimits, "client_rate", "WebSocket messages a client may send per second"),
    ("--ws-client-burst", WsLimits, "client_burst", "WebSocket messages a client may send at once"),
    ("--ws-send-timeout", WsLimits, "send_timeout", "seconds a push may wait for a client that does not read"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("read API and WebSocket limits (docs/operations.md)")
    for flag, cls, name, text in _FLAGS:
        default = next(f.default for f in fields(cls) if f.name == name)
        group.add_argument(flag, dest=flag[2:].replace("-", "_"), type=type(default), default=default,
                           metavar="N", help=f"{text} (default {default})")


def from_args(args: argparse.Namespace) -> tuple[ApiLimits, WsLimits]:
    """The limits given on the command line; a limit below 1 stops start-up with the flag's name."""
    values: dict[type, dict[str, float]] = {ApiLimits: {}, WsLimits: {}}
    for flag, cls, name, _ in _FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < 1:
            raise SystemExit(f"{flag} must be at least 1, got {value}")
        values[cls][name] = value
    return ApiLimits(**values[ApiLimits]), WsLimits(**values[WsLimits])  # type: ignore[arg-type]  # each class's own fields, by name (_FLAGS)
