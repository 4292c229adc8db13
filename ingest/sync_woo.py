"""WooCommerce backfill: page through REST v3 orders and customers, normalised exactly like webhooks.

    GET {api_url}/wp-json/wc/v3/orders?per_page=100&page=N&orderby=id&order=asc[&after=ISO&dates_are_gmt=true]
    GET {api_url}/wp-json/wc/v3/customers?per_page=100&page=N&orderby=id&order=asc

Orders go through `ingest.woocommerce.order_events`, the function the order webhooks use, so an order
already received by webhook adds nothing. Pages are ordered by id, ascending: ids only grow, so new
orders land on later pages and a page already synced stays the same (ordering by date would let
orders with the same timestamp swap across a page boundary). Pagination follows `X-WP-TotalPages`
(or, when a proxy strips it, goes on while pages are full). The cursor is the next page number.

Authentication is WooCommerce's contract (WC_REST_Authentication): over https, HTTP Basic with the
consumer key and secret; over plain http WooCommerce accepts only OAuth 1.0a "one-legged"
signatures (HMAC-SHA256 over the method, URL and every query parameter, key = secret + "&"), sent
as query parameters, so the secret itself never crosses the wire.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from core.clock import ms_from_iso, ms_of
from core.config import Store
from core.events import Event
from ingest import woocommerce
from ingest.errors import BadPayload
from ingest.sync import Cursor, FetchFailed, Page, Resource, retry_after_seconds

PROVIDER = "woocommerce"
PAGE_SIZE = 100  # WooCommerce's largest per_page
API_PATH = "/wp-json/wc/v3/"
TIMEOUT_SECONDS = 60.0
Obj = Mapping[str, Any]


def customer_events(customer: Obj, store: Store) -> list[Event]:
    return woocommerce.customer_events(customer, store)


def _created_ms(obj: Obj) -> int | None:
    value = obj.get("date_created_gmt")
    if not isinstance(value, str) or not value:
        return None
    try:
        return ms_from_iso(value, naive=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class WooList:
    name: str
    path: str  # under /wp-json/wc/v3/
    to_events: Callable[[Obj, Store], list[Event]]
    filters_by_date: bool  # the endpoint takes `after`; otherwise --since is applied to date_created_gmt here


LISTS: tuple[WooList, ...] = (
    WooList("customers", "customers", customer_events, filters_by_date=False),
    WooList("orders", "orders", woocommerce.order_events, filters_by_date=True),
)


# --- pure: request, signature, page -> events, response -> retry decision ------------------------

def list_params(spec: WooList, page: int, since: datetime | None, per_page: int = PAGE_SIZE) -> dict[str, str]:
    params = {"per_page": str(per_page), "page": str(page), "orderby": "id", "order": "asc"}
    if since is not None and spec.filters_by_date:
        # `after` is exclusive; dates_are_gmt makes it compare date_created_gmt (WooCommerce 5.x+).
        params["after"] = (since - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        params["dates_are_gmt"] = "true"
    return params


def _enc(text: str) -> str:
    return quote(text, safe="")  # RFC 3986: only unreserved characters stay as they are


def oauth_signature(method: str, url: str, params: Mapping[str, str], secret: str) -> str:
    """OAuth 1.0a signature (RFC 5849 3.4) as WooCommerce checks it: HMAC-SHA256, key = secret + '&'."""
    pairs = sorted((_enc(k), _enc(v)) for k, v in params.items() if k != "oauth_signature")
    base = "&".join((method.upper(), _enc(url), _enc("&".join(f"{k}={v}" for k, v in pairs))))
    digest = hmac.new(f"{secret}&".encode(), base.encode(), sha256).digest()
    return base64.b64encode(digest).decode()


def authenticate(url: str, params: Mapping[str, str], key: str, secret: str, now: float,
                 nonce: str) -> tuple[dict[str, str], dict[str, str]]:
    """(query parameters, headers) of an authenticated GET: Basic over https, OAuth 1.0a over http."""
    if url.startswith("https://"):
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        return dict(params), {"Authorization": f"Basic {token}"}
    signed = {**params, "oauth_consumer_key": key, "oauth_nonce": nonce, "oauth_signature_method": "HMAC-SHA256",
              "oauth_timestamp": str(int(now))}
    signed["oauth_signature"] = oauth_signature("GET", url, signed, secret)
    return signed, {}


def _error_detail(body: bytes) -> str:
    """WordPress REST errors are {"code": ..., "message": ...}; anything else is shown shortened."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return f"{doc['message']} ({doc.get('code', 'no code')})"
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "empty body"


def check_response(status: int, headers: Mapping[str, str], body: bytes, url: str, now: float) -> None:
    """Raises FetchFailed unless the answer is a 200 we can read."""
    if status == 200:
        return
    detail = _error_detail(body)
    if status == 429:
        raise FetchFailed(f"WooCommerce rate limit (429): {detail}", retryable=True, status=429,
                          retry_after=retry_after_seconds(headers.get("retry-after"), now))
    if status >= 500 or status == 408:
        raise FetchFailed(f"{url} answered {status}: {detail}", retryable=True, status=status,
                          retry_after=retry_after_seconds(headers.get("retry-after"), now) if status == 503 else None)
    if status in (401, 403):
        raise FetchFailed(f"WooCommerce refused the API key ({status}): {detail}. Check api_key (ck_...) and "
                          "api_secret (cs_...): a key with Read access, of a user who may manage the shop",
                          retryable=False, status=status)
    if status in (301, 302, 303, 307, 308):
        raise FetchFailed(f"{url} redirects to {headers.get('location')!r}: set api_url to the shop's address "
                          "as it is served (https, www or not)", retryable=False, status=status)
    if status == 404:
        raise FetchFailed(f"no WooCommerce REST API at {url} (404: {detail}). Is api_url the site's root, "
                          "WooCommerce active, and are permalinks set to anything but Plain?", retryable=False, status=404)
    raise FetchFailed(f"{url} answered {status}: {detail}", retryable=False, status=status)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def page_from_response(spec: WooList, page: int, headers: Mapping[str, str], body: bytes, store: Store,
                       since: datetime | None = None, per_page: int = PAGE_SIZE) -> Page:
    """Events of one page of a 200 answer; the cursor is the next page, None after the last."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FetchFailed(f"{spec.name} page {page} is not JSON (a caching or security plugin answering?): "
                          f"{body[:120]!r}", retryable=False) from None
    if not isinstance(data, list):
        raise FetchFailed(f"{spec.name} page {page} is not a JSON list: {str(data)[:120]}", retryable=False)
    since_ms = ms_of(since) if since is not None and not spec.filters_by_date else None
    events: list[Event] = []
    skipped: list[str] = []
    for obj in data:
        if not isinstance(obj, dict):
            skipped.append(f"an element of {spec.name} page {page} is not an object: {str(obj)[:80]}")
            continue
        if since_ms is not None and (_created_ms(obj) or 0) < since_ms:
            continue
        try:
            events.extend(spec.to_events(obj, store))
        except BadPayload as exc:
            skipped.append(f"{spec.name[:-1]} {obj.get('id')!r}: {exc.message}")
    total_pages = _int_header(headers, "x-wp-totalpages")
    more = page < total_pages if total_pages is not None else len(data) >= per_page
    return Page(len(data), events, page + 1 if data and more else None, _int_header(headers, "x-wp-total"),
                tuple(skipped))


# --- I/O ------------------------------------------------------------------------------------------

def client() -> httpx.Client:
    # No redirects: an OAuth signature names the URL, and a silent hop to another host is a config error.
    return httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False,
                        headers={"User-Agent": "storepulse-sync", "Accept": "application/json"})


@dataclass
class WooResource:
    spec: WooList
    store: Store
    http: httpx.Client
    since: datetime | None = None
    per_page: int = PAGE_SIZE
    clock: Callable[[], float] = time.time
    nonce: Callable[[], str] = field(default=lambda: secrets.token_hex(16))

    @property
    def name(self) -> str:
        return self.spec.name

    def fetch(self, cursor: Cursor) -> Page:
        page = int(cursor) if cursor is not None else 1
        url = f"{(self.store.api_url or '').rstrip('/')}{API_PATH}{self.spec.path}"
        params, headers = authenticate(url, list_params(self.spec, page, self.since, self.per_page),
                                       self.store.api_key or "", self.store.api_secret or "", self.clock(), self.nonce())
        try:
            r = self.http.get(url, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise FetchFailed(f"cannot reach {url}: {exc!r}", retryable=True) from None
        check_response(r.status_code, r.headers, r.content, url, self.clock())
        return page_from_response(self.spec, page, r.headers, r.content, self.store, self.since, self.per_page)


def resources(store: Store, http: httpx.Client, since: datetime | None = None, per_page: int = PAGE_SIZE) -> list[Resource]:
    missing = [k for k in ("api_url", "api_key", "api_secret") if not getattr(store, k)]
    if missing:
        raise ValueError(f"store {store.id} needs {', '.join(missing)} for a WooCommerce sync: api_url is the shop's "
                         "address, api_key/api_secret a REST API key (WooCommerce > Settings > Advanced > REST API)")
    return [WooResource(spec, store, http, since, per_page) for spec in LISTS]
