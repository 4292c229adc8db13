"""Read-only share links over HTTP (docs/sharing.md): who a request is, and the links' own API.

A request carries either its organisation's full token or a share token (`sps_...`), in
`Authorization: Bearer`, or, for a GET only, in `?token=` (what a spreadsheet's or Looker Studio's
URL import can send; no access log is written, so it is not logged). A share token reads its
organisation's data, limited to its stores, and writes nothing: `ShareGuard` answers 403 to any
other method under /api/ carrying one, whichever component registered the route.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from core.clock import ms_of
from core.config import Org
from core.shares import TOKEN_PREFIX, Share, ShareError, expiry, is_share_token, new_share, token_sha256
from state.shares import ShareStore
from web.responses import error_response, json_response
from web.security import SecurityHeaders
from ws_gateway.auth import AuthError, org_for

if TYPE_CHECKING:
    from ws_gateway.api import ReadSide

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_token(request: Request) -> tuple[str | None, str | None]:
    """(the Authorization header, a share token from ?token= on a GET)."""
    header = request.headers.get("authorization")
    query = request.query_params.get("token") if request.method in READ_METHODS else None
    return header, query if query and is_share_token(query) else None


def share_for(shares: ShareStore | None, token: str, org_id: str | None, now_ms: int) -> Share:
    """The active share link of `token`: 401 when there is none (or it expired, or was revoked), 403
    for another organisation's data."""
    share = shares.by_hash(token_sha256(token)) if shares is not None else None
    if share is None:
        raise AuthError(401, "the share token is not valid")
    if not share.active(now_ms):
        raise AuthError(401, f"this share link is {share.status(now_ms)}: ask for a new one")
    if org_id is not None and share.org != org_id:
        raise AuthError(403, f"this share link does not give access to organisation {org_id!r}")
    return share


async def authorise(side: ReadSide, request: Request, org_id: str) -> tuple[Org, Share | None]:
    """The organisation a read request may see (limited to a share link's stores), and its link."""
    header, query = presented_token(request)
    bearer = header[7:].strip() if header and header.startswith("Bearer ") else None
    token = bearer if bearer and is_share_token(bearer) else (query if bearer is None else None)
    if token is None:
        return org_for(side.config, header, org_id), None
    share = await asyncio.to_thread(share_for, side.shares, token, org_id, ms_of(side.now()))
    if request.method not in READ_METHODS:
        raise AuthError(403, "a share link is read-only")
    org = side.config.orgs.get(share.org)
    if org is None:
        raise AuthError(401, "the share token's organisation no longer exists")
    return share.scoped(org), share


class ShareGuard:
    """ASGI middleware: a write (any method but GET, HEAD, OPTIONS) under /api/ with a share token is
    403 before any route reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in READ_METHODS and scope["path"].startswith("/api/"):
            request = Request(scope)
            header = request.headers.get("authorization") or ""
            if header.startswith(f"Bearer {TOKEN_PREFIX}") or is_share_token(request.query_params.get("token") or ""):
                await SecurityHeaders(error_response(403, "a share link is read-only"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- the links' own API: the organisation's full token only -----------------------------------

def _side(request: Request) -> ReadSide:
    side: ReadSide = request.app.state.read_side
    if side.shares is None:
        raise HTTPException(404, "share links are not enabled on this server")
    return side


def _owner(side: ReadSide, request: Request) -> Org:
    header = request.headers.get("authorization") or ""
    if header.startswith(f"Bearer {TOKEN_PREFIX}"):
        raise AuthError(403, "share links are managed with the organisation's own token, not a share token")
    return org_for(side.config, header, request.path_params["org"])


def make_token() -> tuple[str, str]:
    """(a new link's id, its token): 256 random bits, shown once."""
    return f"shr_{secrets.token_hex(8)}", f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}"


async def create(request: Request) -> Response:
    side = _side(request)
    org = _owner(side, request)
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise HTTPException(400, "the body must be JSON: {\"expires\": \"30d\", \"stores\": [...], \"label\": \"...\"}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    stores, label, expires = body.get("stores") or [], body.get("label") or "", body.get("expires", "30d")
    if not isinstance(stores, list) or not all(isinstance(s, str) for s in stores):
        raise HTTPException(400, "stores must be a list of store ids (absent or empty: every store)")
    if not isinstance(label, str) or not isinstance(expires, str):
        raise HTTPException(400, "label and expires must be strings (expires: \"30d\", \"12h\" or an ISO 8601 instant)")
    now = ms_of(side.now())
    share_id, token = make_token()
    try:
        share = new_share(org, stores, label, expiry(expires, now), now, share_id, token)
    except ShareError as exc:
        raise HTTPException(400, str(exc)) from None
    shares = side.shares
    assert shares is not None  # _side checked
    await asyncio.to_thread(shares.add, share)
    return json_response({"share": share.to_json(now), "token": token, "portal_url": f"{request.base_url}#token={token}",
                          "note": "the token is shown only now: storepulse keeps its SHA-256 alone"}, status=201)


async def list_shares(request: Request) -> Response:
    side = _side(request)
    org = _owner(side, request)
    assert side.shares is not None
    now = ms_of(side.now())
    return json_response({"org": org.id, "shares": [s.to_json(now) for s in await asyncio.to_thread(side.shares.list, org.id)]})


async def revoke(request: Request) -> Response:
    side = _side(request)
    org = _owner(side, request)
    assert side.shares is not None
    now = ms_of(side.now())
    share = await asyncio.to_thread(side.shares.revoke, org.id, request.path_params["id"], now)
    if share is None:
        raise HTTPException(404, f"organisation {org.id!r} has no share link {request.path_params['id']!r}")
    return json_response({"share": share.to_json(now)})


async def me(request: Request) -> Response:
    """Who a token is: the page opened with `#token=` learns its organisation, stores and whether it
    may write (a share link never may) before it asks for anything else."""
    side: ReadSide = request.app.state.read_side
    header, query = presented_token(request)
    bearer = header[7:].strip() if header and header.startswith("Bearer ") else query
    now = ms_of(side.now())
    if bearer and is_share_token(bearer):
        share = await asyncio.to_thread(share_for, side.shares, bearer, None, now)
        org = side.config.orgs.get(share.org)
        if org is None:
            raise AuthError(401, "the share token's organisation no longer exists")
        scoped = share.scoped(org)
        return json_response({"org": org.id, "kind": "share", "share": share.id, "read_only": True,
                              "stores": list(scoped.stores), "currency": org.currency, "timezone": org.timezone,
                              "expires_at": share.to_json(now)["expires_at"]})
    org = org_for(side.config, header)
    return json_response({"org": org.id, "kind": "organisation", "read_only": False, "stores": list(org.stores),
                          "currency": org.currency, "timezone": org.timezone, "expires_at": None})


routes: list[BaseRoute] = [
    Route("/api/v1/me", me, methods=["GET"]),
    Route("/api/v1/orgs/{org}/shares", create, methods=["POST"]),
    Route("/api/v1/orgs/{org}/shares", list_shares, methods=["GET"]),
    Route("/api/v1/orgs/{org}/shares/{id}", revoke, methods=["DELETE"]),
]
