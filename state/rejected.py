"""Deliveries we refused, kept for inspection and redrive: raw body, headers (secrets redacted), reason.

Kept per store connection, newest first; at most KEEP_PER_STORE each (a flood of garbage must not
fill the disk), so the oldest are dropped past that.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol

KEEP_PER_STORE = 10_000


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

    def to_json(self, body_limit: int | None = None) -> dict[str, Any]:
        body = self.body if body_limit is None else self.body[:body_limit]
        try:
            text: dict[str, Any] = {"body": body.decode()}
        except UnicodeDecodeError:
            text = {"body_base64": base64.b64encode(body).decode()}
        return {
            "id": self.id, "received_at": self.received_at, "provider": self.provider, "store": self.store,
            "org": self.org, "status": self.status, "reason": self.reason, "headers": self.headers,
            "body_bytes": len(self.body), **text, "redriven_at": self.redriven_at, "redrive_result": self.redrive_result,
        }


@dataclass(frozen=True, slots=True)
class RejectedSummary:
    count: int
    last_reason: str | None
    last_at: float | None


class RejectedStore(Protocol):
    def add(self, r: RejectedDelivery) -> None: ...

    def list(self, *, org: str | None = None, store: str | None = None, limit: int = 100) -> list[RejectedDelivery]:
        """Newest first. org=None and store=None: everything (operator use only, never via the API)."""
        ...

    def get(self, rejected_id: str) -> RejectedDelivery | None: ...

    def mark_redriven(self, rejected_id: str, at: float, result: str) -> None: ...

    def summary(self, store: str) -> RejectedSummary: ...

    def close(self) -> None: ...
