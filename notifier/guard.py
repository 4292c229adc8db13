"""Outbound URLs: http(s) only, and never to a private, loopback or link-local address unless the
channel says allow_private = true (a channel URL must not become a way to reach the internal network).

The name is resolved before the request; every address it resolves to must be public. (A name that
resolves differently a moment later is not caught: the guard is against misconfiguration and
casual SSRF, not a hostile DNS server.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class Refused(Exception):
    """The URL may not be called; the message says why."""


def refused_address(address: str) -> str | None:
    """Why an IP address may not be called (None: it may)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, flag in (("loopback", ip.is_loopback), ("private", ip.is_private), ("link-local", ip.is_link_local),
                       ("multicast", ip.is_multicast), ("reserved", ip.is_reserved), ("unspecified", ip.is_unspecified)):
        if flag:
            return f"{address} is a {what} address (set allow_private = true on the channel to allow it)"
    return None


async def check_url(url: str, allow_private: bool) -> None:
    """Raises Refused unless `url` is http(s) and (unless allow_private) resolves to public addresses only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"only http:// and https:// URLs with a host are called, not {parts.scheme or 'no scheme'}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        why = refused_address(str(info[4][0]))
        if why is not None:
            raise Refused(f"{parts.hostname}: {why}")
