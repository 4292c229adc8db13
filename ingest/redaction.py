"""Which headers of a refused delivery are kept as sent: an allowlist; every other value is "[redacted]".

A list of secret header names is never complete (`X-Auth-Token`, `X-Shopify-Access-Token`, a
proxy's own credentials...), so the kept ones are named instead: what a redrive needs (the vendor's
signature, topic and delivery metadata) and what says what a sender is (content type, user agent).
Vendor signatures are kept: they are MACs over the body, not secrets, and a redrive after a secret
rotation needs them.
"""

from __future__ import annotations

from collections.abc import Mapping

REDACTED = "[redacted]"

_KEPT = frozenset({
    "accept", "accept-encoding", "connection", "content-encoding", "content-length", "content-type", "date",
    "expect", "host", "transfer-encoding", "user-agent",
    "stripe-signature",
})
# The vendors' webhook metadata (X-WC-Webhook-Topic, X-Shopify-Hmac-Sha256, ...), unless the name
# says it carries a credential (X-Shopify-Access-Token).
_VENDOR_PREFIXES = ("x-wc-webhook-", "x-shopify-")
_CREDENTIAL_WORDS = ("token", "secret", "key", "auth", "password", "session", "cookie")


def kept(name: str) -> bool:
    """Whether a header's value is kept as sent (`name` in lower case)."""
    if name in _KEPT:
        return True
    return name.startswith(_VENDOR_PREFIXES) and not any(word in name for word in _CREDENTIAL_WORDS)


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers (lower-case names) with every value not on the allowlist replaced by "[redacted]"."""
    return {k: (v if kept(k) else REDACTED) for k, v in headers.items()}
