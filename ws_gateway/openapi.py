"""`GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every HTTP endpoint, generated from the
declarative table `ENDPOINTS` below (one row per method and path). tests/test_openapi.py validates
it with openapi-spec-validator and checks that every registered route is in the table: a new route
is a new row."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from web.responses import json_response

# --- parameters, by name ------------------------------------------------------------------------

def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or {"type": "string"}}


PARAMS: dict[str, dict[str, Any]] = {
    "org": {"name": "org", "in": "path", "required": True, "description": "the organisation's id", "schema": {"type": "string"}},
    "id": {"name": "id", "in": "path", "required": True, "description": "the item's id", "schema": {"type": "string"}},
    "provider": {"name": "provider", "in": "path", "required": True, "description": "the store's vendor",
                 "schema": {"type": "string", "enum": ["stripe", "woocommerce", "shopify"]}},
    "store_id": {"name": "store_id", "in": "path", "required": True, "description": "the store's id in the config",
                 "schema": {"type": "string"}},
    "view": {"name": "view", "in": "path", "required": True, "description": "the dashboard view",
             "schema": {"type": "string", "enum": ["overview", "orders", "carts", "products", "customers", "marketing",
                                                   "segments", "automations", "connections"]}},
    "period": _q("period", "named period ending today in the organisation's time zone (default today); or from/to",
                 {"type": "string", "enum": ["today", "yesterday", "7d", "30d", "90d", "all"]}),
    "from": _q("from", "first local day, YYYY-MM-DD", {"type": "string", "format": "date"}),
    "to": _q("to", "last local day, YYYY-MM-DD (inclusive)", {"type": "string", "format": "date"}),
    "store": _q("store", "one store of the organisation (default: all of them; a share link's: its own)"),
    "currency": _q("currency", "ISO 4217 presentation currency (default the organisation's)"),
    "limit": _q("limit", "rows, 1 to 1000", {"type": "integer", "minimum": 1, "maximum": 1000}),
    "sort": _q("sort", "orders: latest|best; products: revenue|units|orders; customers: revenue|orders|items|registered; "
                       "pairs: orders|lift"),
    "filter": _q("filter", "never_bought: customers registered in the period who never paid", {"type": "string", "enum": ["never_bought"]}),
    "metric": _q("metric", "the series' metric", {"type": "string", "enum": ["gross_revenue", "refunds", "net_revenue", "orders",
                                                                             "paid_orders", "aov", "items_sold"]}),
    "granularity": _q("granularity", "points per local day or UTC hour", {"type": "string", "enum": ["day", "hour"]}),
    "until": _q("until", "only the hours before this instant, a whole hour with its offset: a day so far "
                         "(today against yesterday to the same hour)", {"type": "string", "format": "date-time"}),
    "at": _q("at", "the instant the rolling 30 days end (ISO 8601; default now)", {"type": "string", "format": "date-time"}),
    "format": _q("format", "csv: the answer's table as CSV (docs/sharing.md)", {"type": "string", "enum": ["json", "csv"]}),
    "table": _q("table", "with format=csv: which list of the answer to write"),
    "cursor": _q("cursor", "where the previous page ended (its next_cursor)"),
    "segment": _q("segment", "only the orders, carts and customers of this segment's members now (docs/segments.md); "
                             "404 for a segment the organisation does not have"),
    "from_time": _q("from", "changes at or after this instant (ISO 8601)", {"type": "string", "format": "date-time"}),
    "to_time": _q("to", "changes at or before this instant (ISO 8601)", {"type": "string", "format": "date-time"}),
    "customer": _q("customer", "one customer's changes"),
    "status": _q("status", "deliveries in this state", {"type": "string", "enum": ["pending", "delivered", "dead", "cancelled"]}),
    "automation": _q("automation", "deliveries of this automation"),
    "channel": _q("channel", "deliveries to this channel of the organisation"),
    "test_to": _q("to", "an e-mail channel with to = \"customer\": where the test message goes"),
    "preview_id": _q("id", "the automation's id as its templates read it ({{ automation }}; default: preview)"),
    "a": _q("a", "the e-mail address (from the unsubscribe link)"),
    "t": _q("t", "the link's token (HMAC of organisation and address)"),
}
PERIOD = ["period", "from", "to", "store", "currency"]
CSV = ["format", "table"]

# --- schemas ----------------------------------------------------------------------------------------

_MONEY = {"type": "object", "required": ["amount", "currency", "exponent"], "properties": {
    "amount": {"type": "integer", "description": "minor units of the currency"},
    "currency": {"type": "string", "description": "ISO 4217 code"},
    "exponent": {"type": "integer", "description": "ISO 4217 minor-unit digits the server uses: amount / 10**exponent major units"},
    "missing_rates": {"type": "array", "description": "amounts left out for want of an exchange rate",
                      "items": {"type": "object", "properties": {"currency": {"type": "string"}, "days": {"type": "integer"},
                                                                 "first": {"type": "string"}, "last": {"type": "string"}}}},
    "message": {"type": "string", "description": "what the amount leaves out, when missing_rates is there"}}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "description": "what was wrong"}}},
    "Money": _MONEY,
    "Figures": {"type": "object", "properties": {
        **{k: {"$ref": "#/components/schemas/Money"} for k in ("gross_revenue", "aov", "paid_orders_refunded")},
        # null with segment=: not kept per customer (the reason in not_restricted)
        **{k: {"oneOf": [{"$ref": "#/components/schemas/Money"}, {"type": "null"}]} for k in ("refunds", "net_revenue")},
        "segment": {"type": "string"}, "members": {"type": "integer"},
        "not_restricted": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "with segment=: each figure that cannot be restricted to it, and why"},
        **{k: {"type": "integer"} for k in ("orders", "paid_orders", "items_sold", "version")},
        "org": {"type": "string"}, "store": {"type": ["string", "null"]}, "period": {"type": ["string", "null"]},
        "from": {"type": ["string", "null"]}, "to": {"type": ["string", "null"]}, "freshness": {"type": "object"},
        "until": {"type": "string", "format": "date-time", "description": "with until=: the hours before it only"}}},
    "Share": {"type": "object", "properties": {
        "id": {"type": "string"}, "org": {"type": "string"}, "stores": {"type": ["array", "null"], "items": {"type": "string"}},
        "label": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"}, "revoked_at": {"type": ["string", "null"], "format": "date-time"},
        "status": {"type": "string", "enum": ["active", "expired", "revoked"]}}},
    "ShareRequest": {"type": "object", "properties": {
        "expires": {"type": "string", "description": "\"30d\", \"12h\" or an ISO 8601 instant (default 30d, at most 366 days)"},
        "stores": {"type": "array", "items": {"type": "string"}, "description": "absent or empty: every store"},
        "label": {"type": "string", "maxLength": 200}}},
    "Accepted": {"type": "object", "properties": {"status": {"type": "string", "enum": ["accepted", "duplicate", "ignored"]}}},
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    params: list[str] = field(default_factory=list)
    schema: str | None = None  # the 200 body's schema in SCHEMAS; None: an object described by `summary`
    errors: tuple[int, ...] = (400, 401, 403, 404, 429)
    csv: bool = False  # also answers text/csv (format=csv)
    auth: bool = True  # needs a bearer token (the org's or a share link's)
    media: str = "application/json"
    ok: int = 200
    body: str | None = None  # the request body's schema


_ORG = "/api/v1/orgs/{org}"
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", f"{_ORG}/figures", "revenue, refunds, orders, AOV, items of a period (docs/metrics.md)",
             ["org", *PERIOD, "until", "segment", *CSV], "Figures", (400, 401, 403, 404, 429), csv=True),
    Endpoint("GET", f"{_ORG}/series", "one metric per day or hour of a range", ["org", *PERIOD, "metric", "granularity", *CSV],
             csv=True),
    Endpoint("GET", f"{_ORG}/orders", "latest or best paid orders of a period, and orders by source",
             ["org", *PERIOD, "sort", "limit", "segment", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/products", "top products by revenue, units or orders",
             ["org", *PERIOD, "sort", "limit", "segment", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/pairs", "products bought together", ["org", *PERIOD, "sort", "limit", "segment", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/customers", "best customers, or those registered who never bought",
             ["org", *PERIOD, "sort", "limit", "filter", "segment", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/carts", "open, abandoned, recovered and purchased carts; most abandoned products",
             ["org", *PERIOD, "limit", "segment", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/journey", "visitors, added to cart, purchased, purchased again", ["org", *PERIOD, *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/attribution", "revenue attributed to e-mail campaigns and automations (7 days), and each one's opens and clicks (content)",
             ["org", *PERIOD, *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/quota", "paid orders in the rolling 30 days against the plan", ["org", "at", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/connections", "per store: last event, events in the last hour, rejected, too late, sync",
             ["org", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/rejected", "refused webhook deliveries, newest first", ["org", "store", "limit", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/rejected/{{id}}", "one refused delivery with its body and headers", ["org", "id", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/health", "whether the figures are live or stale since when", ["org", *CSV], csv=True),
    Endpoint("GET", f"{_ORG}/quarantine", "events the dataflow could not fold, with the reason", ["org", "store", "limit", *CSV],
             csv=True),
    Endpoint("POST", f"{_ORG}/shares", "create a read-only share link (the organisation's own token); the token is shown once",
             ["org"], ok=201, body="ShareRequest"),
    Endpoint("GET", f"{_ORG}/shares", "the organisation's share links (never their tokens)", ["org"]),
    Endpoint("DELETE", f"{_ORG}/shares/{{id}}", "revoke a share link", ["org", "id"]),
    # segments (ws_gateway/segments.py, docs/segments.md): definitions travel through the log
    Endpoint("GET", f"{_ORG}/segments", "every segment: id, name, predefined, subject, rule, members, as_of", ["org"]),
    Endpoint("POST", f"{_ORG}/segments/preview", "a rule's member count and first 20 members at the segment clock's as_of, windows "
             "included, without saving it, and not_kept (what it reads of the past that no segment kept: saved, it counts from then "
             "on); 400 names the JSON path of what is wrong, or what the records do not keep", ["org"]),
    Endpoint("PUT", f"{_ORG}/segments/{{id}}", "create or replace a customer segment {name, rule} (a control event in the "
             "log); 400 names the JSON path of what is wrong", ["org", "id"], errors=(400, 401, 403, 429), ok=202),
    Endpoint("DELETE", f"{_ORG}/segments/{{id}}", "delete a segment", ["org", "id"], errors=(400, 401, 403, 404, 429), ok=202),
    Endpoint("GET", f"{_ORG}/segments/{{id}}/members", "the segment's members (customer, e-mail, name, orders, spent, last "
             "order, entered at), with a cursor; format=csv exports them", ["org", "id", "limit", "cursor", "format"], csv=True),
    Endpoint("GET", f"{_ORG}/segments/{{id}}/changes", "the history of entries and exits {customer, change, at, cause}",
             ["org", "id", "from_time", "to_time", "customer", "limit"]),
    Endpoint("GET", f"{_ORG}/segments/{{id}}/growth", "entries and exits per local day of the period {days: [{day, entered, "
             "exited}], entered, exited, net} and the newest `limit` of them (latest), newest first; 400 without both dates",
             ["org", "id", "period", "from", "to", "limit"]),
    # automations (ws_gateway/automations.py, docs/automations.md): definitions travel through the log
    Endpoint("GET", f"{_ORG}/automations", "the organisation's automations: the config's, and those defined through the API; "
             "with the delivery log open, `results`: what each came to over the period (deliveries by status, carts "
             "recovered after a reminder and their value; docs/notifier.md)", ["org", "period", "from", "to", "currency"]),
    Endpoint("POST", f"{_ORG}/automations/preview", "the message a definition (a PUT's body; send may be left out) would send "
             "for a sample firing of its trigger now {id, trigger, locale, digest, sample, message: {subject, text, html, "
             "slack_text, json}}; nothing is saved or sent; 400 as PUT", ["org", "preview_id"], errors=(400, 401, 403, 429)),
    Endpoint("GET", f"{_ORG}/automations/{{id}}", "one automation's definition", ["org", "id"]),
    Endpoint("PUT", f"{_ORG}/automations/{{id}}", "create or replace an automation (a control event in the log); 400 names the "
             "JSON path of what is wrong", ["org", "id"], errors=(400, 401, 403, 429), ok=202),
    Endpoint("DELETE", f"{_ORG}/automations/{{id}}", "delete an automation defined through the API", ["org", "id"],
             errors=(400, 401, 403, 404, 429), ok=202),
    # the notifier (ws_gateway/deliveries.py, docs/notifier.md); share links get 403 on these
    Endpoint("GET", f"{_ORG}/deliveries", "automation deliveries, newest first, each with every attempt",
             ["org", "status", "automation", "channel", "limit"]),
    Endpoint("GET", f"{_ORG}/deliveries/{{id}}", "one delivery with every attempt", ["org", "id"]),
    Endpoint("POST", f"{_ORG}/deliveries/{{id}}/replay", "deliver again, with the same delivery id (webhook-id, Message-ID)",
             ["org", "id"], errors=(401, 403, 404, 409, 429), ok=202),
    Endpoint("GET", f"{_ORG}/channels", "the organisation's delivery channels (never their secrets), enabled or why not, dead count",
             ["org"]),
    Endpoint("GET", f"{_ORG}/channels/{{id}}", "one delivery channel (never its secret)", ["org", "id"]),
    Endpoint("POST", f"{_ORG}/channels/{{id}}/test", "send a test message now: 200 delivered, 502 not (with why)",
             ["org", "id", "test_to"], errors=(401, 403, 404, 429, 502)),
    Endpoint("GET", "/unsubscribe/{org}", "an unsubscribe link's page (a button that POSTs)", ["org", "a", "t"], auth=False,
             errors=(400,), media="text/html"),
    Endpoint("POST", "/unsubscribe/{org}", "unsubscribe: the address joins the organisation's suppression list (RFC 8058 one-click)",
             ["org", "a", "t"], auth=False, errors=(400,), media="text/html"),
    Endpoint("GET", "/api/v1/openapi.json", "this document", auth=False, errors=()),
    Endpoint("GET", "/api/v1/me", "who the token is: organisation, stores, read-only or not, expiry",
             [], errors=(401,)),
    Endpoint("GET", "/api/v1/currencies", "presentation currencies (EUR and every ECB one) with their ISO 4217 exponent",
             auth=False, errors=()),
    Endpoint("POST", "/webhooks/{provider}/{store_id}", "a vendor's signed webhook (Stripe-Signature, X-WC-Webhook-Signature, "
             "X-Shopify-Hmac-Sha256); 200 once durably in the log", ["provider", "store_id"], "Accepted",
             (400, 404, 408, 413, 415, 503), auth=False),
    Endpoint("POST", "/v1/events", "site events, one or a batch of up to 1,000, with the events store's API key as bearer",
             [], "Accepted", (400, 401, 408, 413, 415, 503), auth=False),
    Endpoint("GET", "/healthz", "200 while every organisation's figures are live, 503 while any is stale", auth=False, errors=(503,)),
    Endpoint("GET", "/metrics", "Prometheus metrics", auth=False, errors=(), media="text/plain"),
    Endpoint("GET", "/", "the live dashboard page (token in the URL fragment #token=)", auth=False, errors=(), media="text/html"),
    Endpoint("GET", "/embed/{view}", "one view of the dashboard, for an iframe (the only framable page)", ["view"],
             auth=False, errors=(404,), media="text/html"),
]

_REASONS = {400: "bad request: the error says which parameter", 401: "no valid token", 403: "another organisation's data, "
            "or a share link where it may not", 404: "no such store, item or path", 408: "the body did not arrive in time",
            413: "body too large", 415: "not JSON", 422: "a conversion needs a rate the rates lack", 429: "over the read API "
            "limits: retry after Retry-After", 503: "unavailable: retry", 409: "the delivery is pending already",
            502: "the channel's receiver did not accept the test message"}


def _operation(e: Endpoint) -> dict[str, Any]:
    content: dict[str, Any] = {e.media: {"schema": {"$ref": f"#/components/schemas/{e.schema}"} if e.schema else {"type": "object"}}
                               if e.media == "application/json" else {"schema": {"type": "string"}}}
    if e.csv:
        content["text/csv"] = {"schema": {"type": "string", "description": "with format=csv: the answer's table"}}
    op: dict[str, Any] = {
        "summary": e.summary,
        "operationId": f"{e.method.lower()}_{e.path.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('.', '_')}"
                       or "get_root",
        "parameters": [PARAMS[p] for p in e.params],
        "responses": {str(e.ok): {"description": "OK" if e.ok == 200 else "created", "content": content},
                      **{str(s): {"description": _REASONS[s], "content": {"application/json": {
                          "schema": {"$ref": "#/components/schemas/Error"}}}} for s in e.errors}},
    }
    if e.body:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{e.body}"}}}}
    if e.auth:
        op["security"] = [{"bearer": []}, {"shareToken": []}]
    else:
        op["security"] = []
    return op


@functools.cache
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    return {
        "openapi": "3.1.0",
        "info": {"title": "storepulse", "version": "1", "description": "Real-time e-commerce analytics: ingest, read API, "
                 "share links. Money is {amount (minor units), currency, exponent}; every error is {\"error\": \"...\"}."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the organisation's token, or a share link's sps_ token"},
            "shareToken": {"type": "apiKey", "in": "query", "name": "token", "description": "a share link's sps_ token, on GET"}}},
    }


async def openapi(request: Request) -> Response:
    return json_response(document())


routes: list[BaseRoute] = [Route("/api/v1/openapi.json", openapi, methods=["GET"])]
