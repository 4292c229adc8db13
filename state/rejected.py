"""Deliveries we refused, kept for inspection and redrive: body, headers (redacted), reason.

Refusals come from anyone who can reach the port, signed or not, so what is kept is bounded in
bytes, not in rows:

- a body and a header set are each kept up to `keep_bytes` (64 KiB); the rest is cut, and the
  record says how much was cut (a cut body cannot be redriven, and says so);
- each store connection keeps at most `store_bytes` (8 MiB); deliveries naming a store that is not
  configured (any store id a sender makes up) share one bucket, UNKNOWN, with the same bound;
- all of them together keep at most `total_bytes` (64 MiB).

Past a bound the oldest deliveries (of the bucket, then of all) are dropped, and the drops are
counted per bucket, so `storepulse rejected list` and the read API can say what is missing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

KEEP_BYTES = 64 * 1024
STORE_BYTES = 8 * 1024 * 1024
TOTAL_BYTES = 64 * 1024 * 1024
UNKNOWN = ""  # the bucket of every delivery whose store is not configured
# Counted for each kept delivery besides its body, headers and texts (row, keys and indexes).
RECORD_OVERHEAD = 256
# Texts a sender can lengthen (the store id in the URL, a reason that quotes it) are cut too.
_TEXT_CHARS = {"store": 256, "provider": 64, "reason": 1024}


@dataclass(frozen=True, slots=True)
class RejectedDelivery:
    id: str
    received_at: float  # Unix seconds
    provider: str
    store: str
    org: str | None  # None when the store is not configured
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    redriven_at: float | None = None
    redrive_result: str | None = None
    body_cut: int = 0  # bytes of the body that were not kept
    headers_cut: int = 0  # bytes of header names and values that were not kept

    @property
    def bucket(self) -> str:
        """What the per-store bound applies to: the store, or UNKNOWN for every unconfigured one."""
        return UNKNOWN if self.org is None else self.store

    def to_json(self, body_limit: int | None = None) -> dict[str, Any]:
        body = self.body if body_limit is None else self.body[:body_limit]
        try:
            text: dict[str, Any] = {"body": body.decode()}
        except UnicodeDecodeError:
            text = {"body_base64": base64.b64encode(body).decode()}
        return {
            "id": self.id, "received_at": self.received_at, "provider": self.provider, "store": self.store,
            "org": self.org, "status": self.status, "reason": self.reason, "headers": self.headers,
            "headers_truncated": self.headers_cut > 0, "body_bytes": len(self.body) + self.body_cut,
            "body_kept_bytes": len(self.body), "body_truncated": self.body_cut > 0, **text,
            "redriven_at": self.redriven_at, "redrive_result": self.redrive_result,
        }


def stored_bytes(r: RejectedDelivery) -> int:
    """What a kept delivery counts against the bounds."""
    return (len(r.body) + len(orjson.dumps(r.headers)) + len(r.reason.encode()) + len(r.store.encode())
            + len(r.provider.encode()) + RECORD_OVERHEAD)


@dataclass(frozen=True, slots=True)
class RejectedLimits:
    total_bytes: int = TOTAL_BYTES
    store_bytes: int = STORE_BYTES
    keep_bytes: int = KEEP_BYTES

    def __post_init__(self) -> None:
        largest = 2 * self.keep_bytes + sum(_TEXT_CHARS.values()) * 4 + RECORD_OVERHEAD
        if self.keep_bytes < 1024:
            raise ValueError(f"the kept prefix of a body or header set must be at least 1024 bytes, got {self.keep_bytes}")
        if self.store_bytes < largest:
            raise ValueError(f"the per-store bound ({self.store_bytes} bytes) must hold one delivery cut to "
                             f"{self.keep_bytes} bytes of body and of headers: at least {largest} bytes")
        if self.total_bytes < self.store_bytes:
            raise ValueError(f"the total bound ({self.total_bytes} bytes) must be at least the per-store bound "
                             f"({self.store_bytes} bytes)")

    def clip(self, r: RejectedDelivery) -> RejectedDelivery:
        """The delivery as it is kept: body and headers cut to `keep_bytes` each, long texts cut."""
        headers, headers_cut = _clip_headers(r.headers, self.keep_bytes)
        texts = {k: getattr(r, k)[:n] for k, n in _TEXT_CHARS.items()}
        body = r.body[:self.keep_bytes]
        return replace(r, body=body, body_cut=r.body_cut + len(r.body) - len(body), headers=headers,
                       headers_cut=r.headers_cut + headers_cut, **texts)


def _clip_headers(headers: dict[str, str], keep: int) -> tuple[dict[str, str], int]:
    """The headers in order while they fit in `keep` bytes as stored (JSON); the one that crosses the
    limit keeps the start of its value. Also returns the bytes left out."""
    out: dict[str, str] = {}
    room, cut = keep - 2, 0  # {}
    for name, value in headers.items():
        n, v = len(orjson.dumps(name)) + 2, len(orjson.dumps(value))  # "name": "value",
        if n + v <= room:
            out[name] = value
            room -= n + v
            continue
        if n + 2 < room and not cut:
            part = value[: room - n - 2]
            while len(orjson.dumps(part)) > room - n:  # escapes and UTF-8 take more than a byte a character
                part = part[: len(part) * 3 // 4]
            out[name] = part
            room = 0
        cut += n + v - (len(orjson.dumps(out[name])) + n if name in out else 0)
    return out, cut


@dataclass(frozen=True, slots=True)
class Evicted:
    """What one add dropped to stay within the bounds."""

    count: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class BucketUsage:
    kept: int
    kept_bytes: int
    dropped: int  # deliveries dropped to stay within the bounds, since the store was created
    dropped_bytes: int


@dataclass(frozen=True, slots=True)
class RejectedSummary:
    count: int
    last_reason: str | None
    last_at: float | None


class RejectedStore(Protocol):
    def add(self, r: RejectedDelivery) -> Evicted:
        """Keeps `r` clipped to the limits; drops the oldest past a bound and says what it dropped."""
        ...

    def list(self, *, org: str | None = None, store: str | None = None, limit: int = 100) -> list[RejectedDelivery]:
        """Newest first. org=None and store=None: everything (operator use only, never via the API)."""
        ...

    def get(self, rejected_id: str) -> RejectedDelivery | None: ...

    def mark_redriven(self, rejected_id: str, at: float, result: str) -> None: ...

    def summary(self, store: str) -> RejectedSummary: ...

    def usage(self) -> dict[str, BucketUsage]:
        """What is kept and was dropped, by bucket (a store id, or UNKNOWN)."""
        ...

    def close(self) -> None: ...
