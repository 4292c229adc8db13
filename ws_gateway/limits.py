"""What the read side allows one organisation: each limit, its default and its flag
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


_FLAGS: list[tuple[str, type, str, str]] = [
    # (flag, limits class, field, help)
    ("--api-rate", ApiLimits, "rate", "read API cost units per second per organisation (a figures request costs 1)"),
    ("--api-burst", ApiLimits, "burst", "read API cost units an organisation may spend at once"),
    ("--api-concurrency", ApiLimits, "concurrency", "read API requests of one organisation running at once"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("read API limits (docs/operations.md)")
    for flag, cls, name, text in _FLAGS:
        default = next(f.default for f in fields(cls) if f.name == name)
        group.add_argument(flag, dest=flag[2:].replace("-", "_"), type=type(default), default=default,
                           metavar="N", help=f"{text} (default {default})")


def from_args(args: argparse.Namespace) -> ApiLimits:
    """The limits given on the command line; a limit below 1 stops start-up with the flag's name."""
    values: dict[type, dict[str, float]] = {ApiLimits: {}}
    for flag, cls, name, _ in _FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < 1:
            raise SystemExit(f"{flag} must be at least 1, got {value}")
        values[cls][name] = value
    return ApiLimits(**values[ApiLimits])  # type: ignore[arg-type]
