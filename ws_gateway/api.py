"""HTTP read API and the dashboard page. Every /api route is scoped to the token's organisation.

Each route is a small function over the `ReadSide` the app holds (`app.state.read_side`); `org_route`
authorises it and charges the organisation's budget for it. A bad parameter raises HTTPException;
what the domain raises (AuthError, Throttled, BadPeriod, MissingRate) is answered by one handler
each, in `handlers`. Every error body is {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from core.changes import DAY, HOUR, Record
from core.clock import ms_of, utc_from_ms
from core.config import Config, Org
from core.figures import (
    OPEN_END,
    BadPeriod,
    Gap,
    MissingRate,
    compute_figures,
    gaps_json,
    parse_until,
    resolve_period,
    series,
)
from core.freshness import freshness
from core.money import EXPONENTS
from core.rates import Rates, RecordingRates
from core.records import (
    LATE_BOOKS,
    Attribution,
    Cart,
    Customer,
    EmailDay,
    JourneyDay,
    Late,
    LateBook,
    Order,
    Quarantined,
    QuotaAlert,
)
from state.connections import ConnectionStats
from state.day_stamps import DayVersioned
from state.readmodel import ReadModel
from state.rejected import RejectedStore
from state.shares import ShareStore
from web.responses import error_response, json_response
from web.security import page_policy, with_websocket
from ws_gateway import (
    automations,
    cached_lists,
    csv_export,
    currencies,
    deliveries,
    embed,
    lists,
    metrics,
    openapi,
    segment_figures,
    sharing,
    shoppers,
)
from ws_gateway.auth import AuthError
from ws_gateway.day_cache import DayCache
from ws_gateway.email_content import content_table
from ws_gateway.limits import ApiLimits
from ws_gateway.scoped import ScopedModel
from ws_gateway.segment_filter import segment_members
from ws_gateway.throttle import ApiThrottle, Throttled, records_cost, series_cost

BODY_PREVIEW_BYTES = 4096


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReadSide:
    """What the read API reads, and its clocks; held by the app as `app.state.read_side`."""

    config: Config
    model: ReadModel
    rejected: RejectedStore
    stats: ConnectionStats
    ws_port: int
    rates: Rates | None = None
    limits: ApiLimits = field(default_factory=ApiLimits)
    shares: ShareStore | None = None  # read-only share links (ws_gateway/sharing.py); None: none accepted
    now: Callable[[], datetime] = wall_clock  # "today" of a period, freshness, the quota's window
    monotonic: Callable[[], float] = time.monotonic  # the throttle's refill
    throttle: ApiThrottle = field(init=False)
    day_cache: DayCache = field(default_factory=DayCache)  # per-day parts of the lists (ws_gateway/day_cache.py)

    def __post_init__(self) -> None:
        self.throttle = ApiThrottle(self.limits)


OrgEndpoint = Callable[[Request, ReadSide, Org], Awaitable[Response]]
Cost = Callable[[Request, ReadSide, Org], int]  # a request's cost units, before it runs (ws_gateway/throttle.py)


def read_side(request: Request) -> ReadSide:
    side: ReadSide = request.app.state.read_side
    return side


def _quarantined(records: list[Record[Quarantined]]) -> list[Quarantined]:
    """Quarantined events, newest first (by event time; those without a usable time last)."""
    return sorted((r.value for r in records), key=lambda v: (v.time is not None, v.time or 0, v.id), reverse=True)


def _quarantined_json(v: Quarantined) -> dict[str, Any]:
    return {"id": v.id, "store": v.store, "kind": v.kind, "time": v.time, "event": orjson.Fragment(bytes(v.event)),
            "reason": v.reason, "error": v.error}


def _span(first: str, last: str) -> dict[str, str | None]:
    """A resolved period as JSON: open ends are null."""
    return {"from": first or None, "to": None if last == OPEN_END else last}


def _too_late(books: Mapping[str, LateBook]) -> dict[str, dict[str, object]]:
    """A store's events refused as too late, per book (a "late" record's books; none: zeros)."""
    out: dict[str, dict[str, object]] = {}
    for book in LATE_BOOKS:
        r = books.get(book)
        out[book] = {"count": 0, "last_event_time": None, "last_event_id": None} if r is None else {
            "count": r.count, "last_event_time": utc_from_ms(r.last_event_time).isoformat(), "last_event_id": r.last_event_id}
    return out


def _gaps(rates: RecordingRates, currency: str) -> dict[str, object]:
    """What a list's amounts leave out for want of a rate (core/figures.py gaps_json), when anything."""
    return gaps_json(rates.gaps, currency) if rates.gaps else {}


def _limit(request: Request, default: int = 100, most: int = 1000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 0 < int(raw) <= most:
        raise HTTPException(400, f"limit must be a whole number from 1 to {most}, got {raw!r}")
    return int(raw)


def _store(request: Request, org: Org) -> str | None:
    """?store=, one of the organisation's stores (a share link's: its own), or None for all of them."""
    store = request.query_params.get("store")
    if store is not None and store not in org.stores:
        raise HTTPException(404, f"organisation {org.id!r} has no store {store!r}")
    return store


def query(request: Request, side: ReadSide, org: Org) -> tuple[str | None, str, str, str]:
    """(store, first day, last day, currency) from ?store=&period= or &from=&to=, &currency=."""
    q = request.query_params
    store = _store(request, org)
    currency = q.get("currency", org.currency).upper()
    if currency not in EXPONENTS:
        raise HTTPException(400, f"currency {currency!r} is not an ISO 4217 code")
    period = q.get("period")
    if period is None and q.get("from") is None and q.get("to") is None:
        period = "today"
    today = side.now().astimezone(org.tz).date()
    first, last = resolve_period(period, q.get("from"), q.get("to"), today)
    return store, first, last, currency


# --- what a request costs (ws_gateway/throttle.py) ----------------------------------------------

def by_request(request: Request, side: ReadSide, org: Org) -> int:
    return 1


def by_records(request: Request, side: ReadSide, org: Org) -> int:
    _, first, last, _ = query(request, side, org)
    return records_cost(first, last)


def by_points(request: Request, side: ReadSide, org: Org) -> int:
    _, first, last, _ = query(request, side, org)
    return series_cost(request.query_params.get("granularity", "day"), first, last)


def all_records(request: Request, side: ReadSide, org: Org) -> int:
    return records_cost("", OPEN_END)  # the quota reads every order record


def org_route(cost: Cost = by_request) -> Callable[[OrgEndpoint], Callable[[Request], Awaitable[Response]]]:
    """An endpoint over one organisation's data: the bearer token must be that organisation's (the
    path's {org}), and the request is charged `cost` units of its budget while `endpoint` runs."""

    def wrap(endpoint: OrgEndpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def route(request: Request) -> Response:
            side = read_side(request)
            org, share = await sharing.authorise(side, request, request.path_params["org"])
            request.state.share = share
            with side.throttle.admit(org.id, cost(request, side, org), side.monotonic()):
                seen = side if share is None or not share.stores else dataclasses.replace(
                    side, model=ScopedModel(side.model, frozenset(org.stores)))  # a link of some stores sees them alone
                return csv_export.negotiate(request, await endpoint(request, seen, org))

        return route

    return wrap


# --- the routes ------------------------------------------------------------------------------------

@org_route()
async def figures(request: Request, side: ReadSide, org: Org) -> Response:
    store, first, last, currency = query(request, side, org)
    q = request.query_params
    # ?until=: only the hours before it, from the hour buckets (a period so far: the dashboard compares today
    # with yesterday to this hour)
    until = parse_until(q["until"]) if "until" in q else None
    members = await segment_members(request, side.model, org)  # ?segment=: its members' orders only
    version, buckets = await asyncio.to_thread(side.model.snapshot, org.id, DAY if until is None else HOUR)
    fresh = freshness(await asyncio.to_thread(side.model.caught_up_at, org.id), ms_of(side.now())).to_json()
    named = q.get("period") or (None if "from" in q or "to" in q else "today")
    span = {"period": named, **_span(first, last), **({"until": until.astimezone(UTC).isoformat()} if until else {})}
    if members is not None:  # from the order records: the buckets are per store and day, not per customer
        orders = await asyncio.to_thread(side.model.records, org.id, Order, first, OPEN_END)  # placed <= paid day
        body = segment_figures.figures_json(orders, members, first=first, last=last, tz=org.tz, currency=currency,
                                            rates=side.rates, store=store, until_ms=None if until is None else ms_of(until))
        return json_response({"org": org.id, "store": store, **span, "version": version, "freshness": fresh,
                              "segment": q["segment"], "members": len(members), **body})
    result = compute_figures(buckets, first=first, last=last, currency=currency, rates=side.rates, store=store,
                             until=None if until is None else (until, org.tz))
    return json_response({"org": org.id, "store": store, **span, "version": version, "freshness": fresh,
                          **result.to_json()})


@org_route()
async def automations_listing(request: Request, side: ReadSide, org: Org) -> Response:
    """The automations, and what each came to over the period (ws_gateway/automations.py)."""
    _, first, last, currency = query(request, side, org)
    return await automations.listing(request, side, org, first=first, last=last, currency=currency)


@org_route()
async def health(request: Request, side: ReadSide, org: Org) -> Response:
    """Whether the organisation's figures are current, and how many events were quarantined."""
    at = await asyncio.to_thread(side.model.caught_up_at, org.id)
    poison = await asyncio.to_thread(side.model.records, org.id, Quarantined)
    return json_response({"org": org.id, "figures": freshness(at, ms_of(side.now())).to_json(), "quarantined": len(poison)})


@org_route()
async def quarantined(request: Request, side: ReadSide, org: Org) -> Response:
    store = _store(request, org)
    found = _quarantined(await asyncio.to_thread(side.model.records, org.id, Quarantined))
    if store is not None:
        found = [v for v in found if v.store == store]
    return json_response({"org": org.id, "total": len(found),
                          "quarantined": [_quarantined_json(v) for v in found[:_limit(request)]]})


@org_route(by_points)
async def series_route(request: Request, side: ReadSide, org: Org) -> Response:
    store, first, last, currency = query(request, side, org)
    metric = request.query_params.get("metric", "gross_revenue")
    grain = request.query_params.get("granularity", "day")

    gaps: dict[str, frozenset[Gap]] = {}

    def compute() -> tuple[int, list[tuple[str, int | None]]]:
        # off the event loop: a year of hours is ~9,000 points, and other requests go on meanwhile
        version, buckets = side.model.snapshot(org.id, grain)
        return version, series(buckets, metric=metric, grain=grain, first=first, last=last, tz=org.tz,
                               currency=currency, rates=side.rates, store=store, gaps=gaps, now=side.now())

    version, points = await asyncio.to_thread(compute)
    money = metric in ("gross_revenue", "refunds", "net_revenue", "aov")
    return json_response({
        "org": org.id, "store": store, "metric": metric, "granularity": grain, "from": first, "to": last,
        "currency": currency if money else None, "exponent": EXPONENTS[currency] if money else None, "version": version,
        # a money point that lacked a rate says which (counts never lack one)
        "points": [{"t": t, "value": v, **(gaps_json(gaps[t], currency) if money and t in gaps else {})} for t, v in points],
    })


@org_route()
async def rejected_list(request: Request, side: ReadSide, org: Org) -> Response:
    store = _store(request, org)
    found = await asyncio.to_thread(side.rejected.list, org=org.id, store=store, limit=_limit(request))
    if request.state.share is not None:
        found = [r for r in found if r.store in org.stores]  # a share link's stores
    usage = await asyncio.to_thread(side.rejected.usage)
    mine = [u for s, u in usage.items() if s in org.stores and store in (None, s)]
    # What the byte bounds dropped (oldest first) from what this list would show.
    dropped = {"count": sum(u.dropped for u in mine), "bytes": sum(u.dropped_bytes for u in mine)}
    return json_response({"rejected": [r.to_json(body_limit=BODY_PREVIEW_BYTES) for r in found], "dropped": dropped})


@org_route()
async def rejected_one(request: Request, side: ReadSide, org: Org) -> Response:
    r = await asyncio.to_thread(side.rejected.get, request.path_params["id"])
    if r is None or r.org != org.id or r.store not in org.stores:
        raise HTTPException(404, "no such rejected delivery in this organisation")
    return json_response(r.to_json())


@org_route()
async def connections(request: Request, side: ReadSide, org: Org) -> Response:
    since = ms_of(side.now()) // 60_000 - 60  # in minutes since the epoch: the last hour

    def gather() -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        poison = _quarantined(side.model.records(org.id, Quarantined))
        late = {r.key: r.value.books for r in side.model.records(org.id, Late)}
        for s in org.stores.values():
            mine = [v for v in poison if v.store == s.id]
            n, last_event, last_received = side.stats.activity(s.id, since)
            rej = side.rejected.summary(s.id)
            out.append({
                "store": s.id, "provider": s.provider, "currency": s.currency,
                "last_event_time": utc_from_ms(last_event).isoformat() if last_event is not None else None,
                "last_received_at": datetime.fromtimestamp(last_received, UTC).isoformat() if last_received else None,
                "events_last_hour": n,
                "rejected": {"count": rej.count, "last_reason": rej.last_reason,
                             "last_at": datetime.fromtimestamp(rej.last_at, UTC).isoformat() if rej.last_at else None},
                "too_late": _too_late(late.get(s.id, {})),
                "quarantined": {"count": len(mine), "last_reason": mine[0].reason if mine else None,
                                "last_error": mine[0].error if mine else None,
                                "last_event_id": mine[0].id if mine else None},
                "sync": side.stats.load_sync(s.id),
            })
        return out

    return json_response({"org": org.id, "connections": await asyncio.to_thread(gather)})


@org_route(by_records)
async def listing(request: Request, side: ReadSide, org: Org) -> Response:
    what = request.path_params["what"]
    if what not in lists.SORTS:
        raise HTTPException(404, f"no list {what!r}: use one of {', '.join(lists.SORTS)}")
    store, first, last, currency = query(request, side, org)
    sort = request.query_params.get("sort", lists.SORTS[what][0])
    if sort not in lists.SORTS[what]:
        raise HTTPException(400, f"sort for {what} must be one of {', '.join(lists.SORTS[what])}, got {sort!r}")
    limit = _limit(request, default=20)
    members = await segment_members(request, side.model, org)
    rows, gaps = await asyncio.to_thread(cached_lists.order_list, side.day_cache, side.model, org.id, first, last, what,
                                         currency=currency, rates=side.rates, store=store, members=members, sort=sort,
                                         limit=limit, tz=org.tz)
    rates = RecordingRates(side.rates)
    rates.gaps |= gaps
    return json_response({"org": org.id, "store": store, **_span(first, last), "currency": currency, "sort": sort,
                          **_gaps(rates, currency), **rows})


@org_route(by_records)
async def customers(request: Request, side: ReadSide, org: Org) -> Response:
    """Best customers (the period's paid orders; all time straight from the profiles), or with
    filter=never_bought the customers registered in the period who never paid an order."""
    store, first, last, currency = query(request, side, org)
    q = request.query_params
    wanted = q.get("filter")
    if wanted not in (None, "never_bought"):
        raise HTTPException(400, f"filter must be never_bought (or absent), got {wanted!r}")
    sort = q.get("sort", "registered" if wanted else "revenue")
    if sort not in lists.SORTS["customers"]:
        raise HTTPException(400, f"sort for customers must be one of {', '.join(lists.SORTS['customers'])}, got {sort!r}")
    limit = _limit(request, default=20)
    members = await segment_members(request, side.model, org)  # ?segment=: its members only
    rates = RecordingRates(side.rates)
    span: dict[str, object] = {"org": org.id, "store": store, **_span(first, last), "currency": currency,
                               "sort": sort, "filter": wanted}
    if wanted == "never_bought":  # a profile's day is the day it registered
        total, rows, gaps = await asyncio.to_thread(
            cached_lists.never_bought, side.day_cache, side.model, org.id, first, last, currency=currency,
            rates=side.rates, tz=org.tz, store=store, members=members, sort=sort, limit=limit)
        rates.gaps |= gaps
        return json_response({**span, **_gaps(rates, currency), "total": total, "customers": rows})
    best = await asyncio.to_thread(cached_lists.best_customers, side.day_cache, side.model, org.id, first, last,
                                   currency=currency, rates=side.rates, tz=org.tz, store=store, members=members,
                                   sort=sort, limit=limit)
    rates.gaps |= best.gaps
    summary = best.summary
    if first == "" and last == OPEN_END:
        # guests have no profile: the figures' paid orders minus the profiles'. Read after the
        # profiles, an order written in between shows as a guest until the next read.
        _, buckets = await asyncio.to_thread(side.model.snapshot, org.id, DAY)
        paid_orders = sum(b.paid_orders for b in buckets if store is None or b.store == store)
        summary = {**summary, "guest_orders": 0 if members is not None else max(0, paid_orders - best.customer_orders)}
    return json_response({**span, **_gaps(rates, currency), "total": best.total, "customers": best.rows, "summary": summary})


@org_route(by_records)
async def carts(request: Request, side: ReadSide, org: Org) -> Response:
    store, first, last, currency = query(request, side, org)
    limit = _limit(request, default=20)
    members = await segment_members(request, side.model, org)  # ?segment=: its members' carts only
    rates = RecordingRates(side.rates)
    if members is not None:  # from the cart records: the days and open carts are not kept per person
        fetch = side.model.records
        mine = segment_figures.member_carts(await asyncio.to_thread(fetch, org.id, Cart), members, first, last, store)
        body = shoppers.carts_summary(mine.days, mine.open_now, mine.products, mine.listed, currency=currency,
                                      rates=rates, limit=limit, store=store)
    else:
        body, gaps = await asyncio.to_thread(cached_lists.carts, side.day_cache, side.model, org.id, first, last,
                                             currency=currency, rates=side.rates, store=store, limit=limit)
        rates.gaps |= gaps
    await asyncio.to_thread(_name_people, side.model, org.id, [*body["latest_carts"], *body["best_carts"]])
    segment = {} if members is None else {"segment": request.query_params["segment"], "members": len(members)}
    return json_response({"org": org.id, "store": store, **_span(first, last), "currency": currency, **segment,
                          "abandon_after_minutes": org.abandon_after_minutes, **_gaps(rates, currency), **body})


def _name_people(model: ReadModel, org: str, carts: list[dict[str, Any]]) -> None:
    """A listed cart whose activity typed no buyer gets its person's profile name, else e-mail, as `name`
    (a signed-in shopper's cart on the site names no one): a few keys read, where the model reads by key."""
    nameless = [c for c in carts if not c["buyer"] and c["person"]]
    if not nameless or not isinstance(model, DayVersioned):
        return
    found = {r.key: r.value for r in model.records_by_key(org, Customer, sorted({c["person"] for c in nameless}))}
    for c in nameless:
        p = found.get(c["person"])
        if p is not None:
            c["name"] = p.name or p.email or ""


@org_route(by_records)
async def journey(request: Request, side: ReadSide, org: Org) -> Response:
    store, first, last, _ = query(request, side, org)
    days = await asyncio.to_thread(side.model.records, org.id, JourneyDay, first, last)
    return json_response({"org": org.id, "store": store, **_span(first, last),
                          **shoppers.journey_summary(days, store)})


@org_route(by_records)
async def attribution(request: Request, side: ReadSide, org: Org) -> Response:
    store, first, last, currency = query(request, side, org)
    days = await asyncio.to_thread(side.model.records, org.id, Attribution, first, last)
    engaged = await asyncio.to_thread(side.model.records, org.id, EmailDay, first, last)
    rates = RecordingRates(side.rates)
    body = shoppers.attribution_summary(days, currency=currency, rates=rates, store=store)
    content = content_table(engaged, body["campaigns"], store=store, currency=currency, tz=org.tz)
    return json_response({"org": org.id, "store": store, **_span(first, last),
                          "currency": currency, "window_days": 7, **_gaps(rates, currency), **body, "content": content})


@org_route(all_records)
async def quota(request: Request, side: ReadSide, org: Org) -> Response:
    share = request.state.share
    if share is not None and share.stores:
        raise HTTPException(403, "the quota counts the whole organisation's orders: a share link of some stores cannot read it")
    try:
        at = lists.parse_at(request.query_params.get("at"), ms_of(side.now()))
    except lists.ListError as exc:
        raise HTTPException(400, str(exc)) from None
    count = await asyncio.to_thread(cached_lists.quota_count, side.day_cache, side.model, org.id, at, org.tz)
    alerts = await asyncio.to_thread(side.model.records, org.id, QuotaAlert)
    raised = sorted((a.value for a in alerts), key=lambda v: (v.at, v.percent))
    return json_response({"org": org.id, **lists.quota_json(count, at, org.plan_limit),
                          "alerts": [lists.alert_json(a) for a in raised]})


async def healthz(request: Request) -> Response:
    """For a load balancer or an uptime check, without a token: 200 while every organisation's
    figures are live, 503 while any is stale. Names no organisation."""
    side = read_side(request)
    now = ms_of(side.now())
    ats = await asyncio.to_thread(lambda: [side.model.caught_up_at(o) for o in side.config.orgs])
    stale = sum(freshness(at, now).stale for at in ats)
    return json_response({"status": "stale" if stale else "ok", "organisations": len(ats), "stale": stale},
                         status=503 if stale else 200)


@functools.cache
def _dashboard(ws_port: int) -> tuple[str, str]:
    """The dashboard page, connecting to `ws_port`, and its policy (its inline script and style, by hash)."""
    page = files("ws_gateway").joinpath("static/dashboard.html").read_text().replace("__WS_PORT__", str(ws_port))
    return page, page_policy(page)


async def dashboard(request: Request) -> Response:
    side = read_side(request)
    page, policy = _dashboard(side.ws_port)
    csp = with_websocket(policy, request.url.hostname, side.ws_port)  # the page connects to ws://its host:ws_port
    return HTMLResponse(page, headers={"Content-Security-Policy": csp})


routes: list[BaseRoute] = [
    *sharing.routes,
    *embed.routes,
    *openapi.routes,
    *currencies.routes,
    Route("/api/v1/orgs/{org}/figures", figures, methods=["GET"]),
    Route("/api/v1/orgs/{org}/series", series_route, methods=["GET"]),
    Route("/api/v1/orgs/{org}/quota", quota, methods=["GET"]),
    Route("/api/v1/orgs/{org}/customers", customers, methods=["GET"]),
    Route("/api/v1/orgs/{org}/carts", carts, methods=["GET"]),
    Route("/api/v1/orgs/{org}/journey", journey, methods=["GET"]),
    Route("/api/v1/orgs/{org}/attribution", attribution, methods=["GET"]),
    Route("/api/v1/orgs/{org}/rejected", rejected_list, methods=["GET"]),
    Route("/api/v1/orgs/{org}/rejected/{id}", rejected_one, methods=["GET"]),
    Route("/api/v1/orgs/{org}/connections", connections, methods=["GET"]),
    Route("/api/v1/orgs/{org}/health", health, methods=["GET"]),
    Route("/api/v1/orgs/{org}/quarantine", quarantined, methods=["GET"]),
    Route("/api/v1/orgs/{org}/automations", automations_listing, methods=["GET"]),
    Route("/api/v1/orgs/{org}/automations/preview", org_route()(automations.preview), methods=["POST"]),
    Route("/api/v1/orgs/{org}/automations/{id}", org_route()(automations.one), methods=["GET"]),
    Route("/api/v1/orgs/{org}/automations/{id}", org_route()(automations.put), methods=["PUT"]),
    Route("/api/v1/orgs/{org}/automations/{id}", org_route()(automations.delete), methods=["DELETE"]),
    Route("/healthz", healthz, methods=["GET"]),
    # the notifier's delivery log and channels (ws_gateway/deliveries.py), before the catch-all {what}
    Route("/api/v1/orgs/{org}/deliveries", org_route()(deliveries.list_deliveries), methods=["GET"]),
    Route("/api/v1/orgs/{org}/deliveries/{id}", org_route()(deliveries.one_delivery), methods=["GET"]),
    Route("/api/v1/orgs/{org}/deliveries/{id}/replay", org_route()(deliveries.replay), methods=["POST"]),
    Route("/api/v1/orgs/{org}/channels", org_route()(deliveries.channels), methods=["GET"]),
    Route("/api/v1/orgs/{org}/channels/{id}", org_route()(deliveries.one_channel), methods=["GET"]),
    Route("/api/v1/orgs/{org}/channels/{id}/test", org_route()(deliveries.test_channel), methods=["POST"]),
    Route("/unsubscribe/{org}", deliveries.unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{org}", deliveries.unsubscribe_post, methods=["POST"]),
    Route("/api/v1/orgs/{org}/{what}", listing, methods=["GET"]),
    Route("/", dashboard, methods=["GET"]),
    # The dashboard's modules, styles and vendored chart library (ws_gateway/static; docs/dashboard.md)
    Mount("/static", StaticFiles(packages=[("ws_gateway", "static")]), name="static"),
]


# --- errors: one handler per exception the domain raises ----------------------------------------

async def _auth_error(request: Request, exc: AuthError) -> Response:
    return error_response(exc.status, exc.message)


async def _throttled(request: Request, exc: Throttled) -> Response:
    metrics.THROTTLED.labels(exc.limit).inc()
    return error_response(429, exc.message, {"Retry-After": str(exc.retry_after)})


async def _bad_period(request: Request, exc: BadPeriod) -> Response:
    return error_response(400, str(exc))


async def _missing_rate(request: Request, exc: MissingRate) -> Response:
    return error_response(422, str(exc))  # the figures exist; converting them needs a rate the rates file lacks


handlers: Mapping[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
    AuthError: _auth_error, Throttled: _throttled, BadPeriod: _bad_period, MissingRate: _missing_rate,
}
