"""Delivery channels ([orgs.X.channels.ID]) and the SMTP relay ([smtp]): their config model.

Pure: values in, frozen dataclasses out; a bad value raises ChannelConfigError naming the key
(core/config.py turns it into a ConfigError). Secrets (a Slack URL holds one, a webhook's `whsec_`
secret, the SMTP password) are kept for sending and never shown: `public()` is what the API, the
CLI and logs may print.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

KINDS = ("slack", "email", "webhook")
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_RETRIES = 20
PUBLIC_URL = "http://127.0.0.1:8080"  # storepulse's default HTTP address
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


class ChannelConfigError(ValueError):
    pass


def duration_ms(value: Any, at: str) -> int:
    """'1s', '5m', '2h', '1d', '500ms' in milliseconds."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ChannelConfigError(f"{at}: {value!r} is not a duration: write a whole number and ms, s, m, h or d (\"30s\")")
    return int(m[1]) * _UNIT_MS[m[2]]


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    org: str
    kind: str  # slack | email | webhook
    # repr=False: a channel may be logged; a Slack URL's path and a webhook secret are credentials
    url: str | None = field(default=None, repr=False)  # slack, webhook (http or https)
    secret: str | None = field(default=None, repr=False)  # webhook: the Standard Webhooks secret, "whsec_" + base64
    to: tuple[str, ...] = ()  # email: the addresses; empty with to_customer
    to_customer: bool = False  # email: to = "customer", the address in the action's payload ("email")
    retry: tuple[int, ...] | None = None  # ms to wait after each failed attempt; None: the standard schedule
    allow_private: bool = False  # may the URL resolve to a private or loopback address

    def public(self, disabled: str | None = None) -> dict[str, object]:
        """The channel as the API and CLI show it: no secret, and of a URL only its scheme and host
        (a Slack webhook URL's path is its credential)."""
        out: dict[str, object] = {"id": self.id, "kind": self.kind, "allow_private": self.allow_private,
                                  "retry": None if self.retry is None else [f"{ms}ms" for ms in self.retry],
                                  "enabled": disabled is None, "disabled_reason": disabled}
        if self.url is not None:
            out["url"] = redact_url(self.url)
        if self.kind == "webhook":
            out["secret"] = "(set)" if self.secret else None
        if self.kind == "email":
            out["to"] = "customer" if self.to_customer else list(self.to)
        return out


def scrub(text: str, channel: Channel) -> str:
    """`text` (an error from a client library, kept and shown) without the channel's URL or secret."""
    for secret, shown in ((channel.url, redact_url(channel.url or "")), (channel.secret, "whsec_…")):
        if secret:
            text = text.replace(secret, shown)
    return text


def redact_url(url: str) -> str:
    """scheme://host[:port]/… : what may be shown of an outbound URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def _whsec(value: str, at: str) -> str:
    body = value.removeprefix("whsec_")
    try:
        raw = base64.b64decode(body + "==", validate=False)
    except (binascii.Error, ValueError):
        raw = b""
    if not value.startswith("whsec_") or len(raw) < 16:
        raise ChannelConfigError(f"{at}: must be a Standard Webhooks secret: \"whsec_\" and the base64 of at least 16 "
                                 "random bytes (e.g. whsec_$(head -c 24 /dev/urandom | base64))")
    return value


def _to(value: Any, at: str) -> tuple[tuple[str, ...], bool]:
    if value == "customer":
        return (), True
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and _ADDRESS.match(a) for a in value):
        raise ChannelConfigError(f"{at}: must be \"customer\" or a list of e-mail addresses, got {value!r}")
    return tuple(value), False


def make_channel(org: str, channel_id: str, values: Mapping[str, Any], at: str) -> Channel:
    """The channel of one [orgs.ORG.channels.ID] table, whose keys core/config.py has checked one by one."""
    kind = values["kind"]
    if kind not in KINDS:
        raise ChannelConfigError(f"{at}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    url, secret, to = values.get("url"), values.get("secret"), values.get("to")
    needs = {"slack": ("url",), "webhook": ("url", "secret"), "email": ("to",)}[kind]
    for key in needs:
        if values.get(key) is None:
            raise ChannelConfigError(f"{at}.{key}: missing (a {kind} channel needs {' and '.join(needs)})")
    for key in ("url", "secret", "to"):
        if key not in needs and values.get(key) is not None:
            raise ChannelConfigError(f"{at}.{key}: a {kind} channel has no {key} (it takes {', '.join(needs)})")
    if url is not None and (not url.startswith(("http://", "https://")) or not urlsplit(url).hostname):
        raise ChannelConfigError(f"{at}.url: must be an http:// or https:// URL with a host")
    addresses, to_customer = _to(to, f"{at}.to") if to is not None else ((), False)
    retry = values.get("retry")
    if retry is not None and (not isinstance(retry, list) or len(retry) > MAX_RETRIES):
        raise ChannelConfigError(f"{at}.retry: must be a list of at most {MAX_RETRIES} durations, e.g. [\"1s\", \"5m\"]")
    allow_private = values.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise ChannelConfigError(f"{at}.allow_private: must be true or false")
    return Channel(channel_id, org, kind, url, _whsec(secret, f"{at}.secret") if secret is not None else None,
                   addresses, to_customer,
                   None if retry is None else tuple(duration_ms(r, f"{at}.retry[{i}]") for i, r in enumerate(retry)),
                   allow_private)


@dataclass(frozen=True, slots=True)
class Smtp:
    """How e-mail leaves: an SMTP relay. starttls None: STARTTLS when the server offers it."""

    host: str
    port: int = 587
    sender: str = ""  # the From header ("Acme alerts <alerts@acme.example>")
    starttls: bool | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # The storepulse HTTP address that recipients can reach: the unsubscribe links point there.
    public_url: str = "http://127.0.0.1:8080"  # PUBLIC_URL


def make_smtp(values: Mapping[str, Any], at: str) -> Smtp:
    host, port, sender = values.get("host"), values.get("port", 587), values.get("from")
    if not isinstance(host, str) or not host:
        raise ChannelConfigError(f"{at}.host: missing (the SMTP relay's host name)")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ChannelConfigError(f"{at}.port: must be a port number, got {port!r}")
    if not isinstance(sender, str) or "@" not in sender:
        raise ChannelConfigError(f"{at}.from: missing: the sender, e.g. \"Acme alerts <alerts@acme.example>\"")
    starttls = values.get("starttls")
    if starttls is not None and not isinstance(starttls, bool):
        raise ChannelConfigError(f"{at}.starttls: must be true or false")
    public_url = values.get("public_url", PUBLIC_URL)
    if not isinstance(public_url, str) or not public_url.startswith(("http://", "https://")):
        raise ChannelConfigError(f"{at}.public_url: must be the http(s) address of storepulse that recipients reach")
    return Smtp(host, port, sender, starttls, values.get("username"), values.get("password"), public_url.rstrip("/"))
