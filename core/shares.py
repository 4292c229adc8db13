"""Read-only share links: a token scoped to one organisation (optionally some of its stores), with an
expiry, revocable. Pure: tokens are made by the caller (secrets), time comes in as an argument.

Only the token's SHA-256 is ever stored or compared; the token itself is shown once, at creation.
Share tokens start with `sps_` so that a write endpoint can refuse one before reading anything.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from core.config import Org

TOKEN_PREFIX = "sps_"
MAX_DAYS = 366  # the longest a link may live: a link meant to last longer is made again
_DURATION = re.compile(r"([1-9][0-9]{0,5})([hd])")


class ShareError(ValueError):
    pass


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode(errors="surrogatepass")).hexdigest()


def is_share_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


@dataclass(frozen=True, slots=True)
class Share:
    id: str  # public: names the link in lists and in revoke
    org: str
    stores: tuple[str, ...]  # empty: every store of the organisation
    label: str
    created_at: int  # ms
    expires_at: int  # ms
    token_sha256: str  # hex
    revoked_at: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.revoked_at is None and now_ms < self.expires_at

    def status(self, now_ms: int) -> str:
        return "revoked" if self.revoked_at is not None else ("active" if now_ms < self.expires_at else "expired")

    def scoped(self, org: Org) -> Org:
        """The organisation as this link sees it: only its stores (that still exist)."""
        if not self.stores:
            return org
        return replace(org, stores={s: org.stores[s] for s in self.stores if s in org.stores})

    def to_json(self, now_ms: int) -> dict[str, object]:
        """Everything about the link but its token (which is not kept) and its hash (which is not shown)."""
        return {"id": self.id, "org": self.org, "stores": list(self.stores) or None, "label": self.label,
                "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
                "revoked_at": _iso(self.revoked_at) if self.revoked_at is not None else None,
                "status": self.status(now_ms)}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def expiry(text: str, now_ms: int) -> int:
    """When a link made now expires: "30d", "12h", or an ISO 8601 instant with its offset; at most
    MAX_DAYS ahead, and in the future."""
    m = _DURATION.fullmatch(text.strip())
    if m:
        at = now_ms + int(m.group(1)) * (86_400_000 if m.group(2) == "d" else 3_600_000)
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ShareError(f"expires must be a duration such as \"30d\" or \"12h\", or an ISO 8601 instant, got {text!r}") from None
        if when.tzinfo is None:
            raise ShareError(f"expires {text!r} has no UTC offset: write e.g. 2030-01-31T00:00:00+00:00")
        at = int(when.timestamp() * 1000)
    if at <= now_ms:
        raise ShareError(f"expires {text!r} is not in the future")
    if at > now_ms + MAX_DAYS * 86_400_000:
        raise ShareError(f"expires {text!r} is more than {MAX_DAYS} days ahead: make a new link when this one ends")
    return at


def new_share(org: Org, stores: list[str], label: str, expires_at: int, now_ms: int, share_id: str, token: str) -> Share:
    """A share of `org` for `stores` (empty: all), checked; `share_id` and `token` are the caller's
    random strings (the token must start with TOKEN_PREFIX)."""
    if not is_share_token(token):
        raise ShareError(f"a share token starts with {TOKEN_PREFIX}")
    unknown = [s for s in stores if s not in org.stores]
    if unknown:
        raise ShareError(f"organisation {org.id!r} has no store {unknown[0]!r} (its stores: {', '.join(org.stores)})")
    if len(label) > 200:
        raise ShareError("label must be at most 200 characters")
    return Share(share_id, org.id, tuple(dict.fromkeys(stores)), label, now_ms, expires_at, token_sha256(token))
