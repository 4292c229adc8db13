"""Unsubscribe links of customer e-mails: a token that only storepulse can make, per org and address.

The token is an HMAC of the organisation and the address keyed by the SHA-256 of the org's API token
(which every storepulse process holds and no recipient knows); rotating the token voids old links.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from notifier.outbox import normal_address


def token(org_key: bytes, org: str, address: str) -> str:
    return hmac.new(org_key, f"unsubscribe|{org}|{normal_address(address)}".encode(), hashlib.sha256).hexdigest()[:32]


def valid(org_key: bytes, org: str, address: str, given: str) -> bool:
    return hmac.compare_digest(token(org_key, org, address), given)


def link(public_url: str, org_key: bytes, org: str, address: str) -> str:
    """The one-click unsubscribe URL (RFC 8058: a POST to it unsubscribes; a GET shows a button)."""
    return f"{public_url}/unsubscribe/{org}?{urlencode({'a': normal_address(address), 't': token(org_key, org, address)})}"
