"""HTTP read API and the dashboard page. Every /api route is scoped to the token's organisation."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from core.clock import utc_from_ms
from core.config import Config, Org
from core.figures import DAY, LATE_BOOKS, OPEN_END, BadPeriod, MissingRate, compute_figures, resolve_period, series
from core.money import EXPONENTS
from core.rates import Rates
from state.connections import ConnectionStats
from state.readmodel import ReadModel
from state.rejected import RejectedStore
from storepulse.responses import error_response, json_response
from ws_gateway import lists, shoppers
from ws_gateway.auth import AuthError, org_for

BODY_PREVIEW_BYTES = 4096


@dataclass
class ReadSide:
    config: Config
    model: ReadModel
    rejected: RejectedStore
    stats: ConnectionStats
    ws_port: int
    rates: Rates | None = None


def _span(first: str, last: str) -> dict[str, str | None]:
    """A resolved period as JSON: open ends are null."""
    return {"from": first or None, "to": None if last == OPEN_END else last}


def _too_late(books: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """A store's events refused as too late, per book (a "late" record's books; none: zeros)."""
    out: dict[str, dict[str, object]] = {}
    for book in LATE_BOOKS:
        r = books.get(book)
        out[book] = {"count": 0, "last_event_time": None, "last_event_id": None} if r is None else {
            "count": r["count"], "last_event_time": utc_from_ms(r["last_event_time"]).isoformat(),  # type: ignore[arg-type]
            "last_event_id": r["last_event_id"]}
    return out


def _limit(request: Request, default: int = 100, most: int = 1000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 0 < int(raw) <= most:
        raise AuthError(400, f"limit must be a whole number from 1 to {most}, got {raw!r}")
    return int(raw)


def gateway_routes(side: ReadSide) -> list[Route]:
    def authorised(request: Request) -> Org:
        return org_for(side.config, request.headers.get("authorization"), request.path_params["org"])

    def query(request: Request, org: Org) -> tuple[str | None, str, str, str]:
        """(store, first day, last day, currency) from ?store=&period= or &from=&to=, &currency=."""
        q = request.query_params
        store = q.get("store")
        if store is not None and store not in org.stores:
            raise AuthError(404, f"organisation {org.id!r} has no store {store!r}")
        currency = q.get("currency", org.currency).upper()
        if currency not in EXPONENTS:
            raise AuthError(400, f"currency {currency!r} is not an ISO 4217 code")
        period = q.get("period")
        if period is None and q.get("from") is None and q.get("to") is None:
            period = "today"
        today = datetime.now(timezone.utc).astimezone(org.tz).date()
        try:
            first, last = resolve_period(period, q.get("from"), q.get("to"), today)
        except BadPeriod as exc:
            raise AuthError(400, str(exc)) from None
        return store, first, last, currency

    async def figures(request: Request) -> Response:
        org = authorised(request)
        store, first, last, currency = query(request, org)
        version, buckets = await asyncio.to_thread(side.model.snapshot, org.id, DAY)
        try:
            result = compute_figures(buckets, first=first, last=last, currency=currency, rates=side.rates, store=store)
        except MissingRate as exc:
            return error_response(422, str(exc))
        q = request.query_params
        named = q.get("period") or (None if "from" in q or "to" in q else "today")
        span = {"period": named, **_span(first, last)}
        return json_response({"org": org.id, "store": store, **span, "version": version, **result.to_json()})

    async def series_route(request: Request) -> Response:
        org = authorised(request)
        store, first, last, currency = query(request, org)
        metric = request.query_params.get("metric", "gross_revenue")
        grain = request.query_params.get("granularity", "day")
        version, buckets = await asyncio.to_thread(side.model.snapshot, org.id, grain)
        try:
            points = series(buckets, metric=metric, grain=grain, first=first, last=last, tz=org.tz, currency=currency,
                            rates=side.rates, store=store)
        except BadPeriod as exc:
            return error_response(400, str(exc))
        except MissingRate as exc:
            return error_response(422, str(exc))
        money = metric in ("gross_revenue", "refunds", "net_revenue", "aov")
        return json_response({
            "org": org.id, "store": store, "metric": metric, "granularity": grain, "from": first, "to": last,
            "currency": currency if money else None, "version": version,
            "points": [{"t": t, "value": v} for t, v in points],
        })

    async def rejected_list(request: Request) -> Response:
        org = authorised(request)
        store = request.query_params.get("store")
        if store is not None and store not in org.stores:
            return error_response(404, f"organisation {org.id!r} has no store {store!r}")
        found = await asyncio.to_thread(side.rejected.list, org=org.id, store=store, limit=_limit(request))
        return json_response({"rejected": [r.to_json(body_limit=BODY_PREVIEW_BYTES) for r in found]})

    async def rejected_one(request: Request) -> Response:
        org = authorised(request)
        r = await asyncio.to_thread(side.rejected.get, request.path_params["id"])
        if r is None or r.org != org.id:
            return error_response(404, "no such rejected delivery in this organisation")
        return json_response(r.to_json())

    async def connections(request: Request) -> Response:
        org = authorised(request)
        since = int(time.time() // 60) - 60

        def gather() -> list[dict[str, object]]:
            late = {r.key: r.value["books"] for r in side.model.records(org.id, "late")}
            out = []
            for s in org.stores.values():
                n, last_event, last_received = side.stats.activity(s.id, since)
                rej = side.rejected.summary(s.id)
                out.append({
                    "store": s.id, "provider": s.provider, "currency": s.currency,
                    "last_event_time": utc_from_ms(last_event).isoformat() if last_event is not None else None,
                    "last_received_at": datetime.fromtimestamp(last_received, timezone.utc).isoformat() if last_received else None,
                    "events_last_hour": n,
                    "rejected": {"count": rej.count, "last_reason": rej.last_reason,
                                 "last_at": datetime.fromtimestamp(rej.last_at, timezone.utc).isoformat() if rej.last_at else None},
                    "too_late": _too_late(late.get(s.id, {})),
                    "sync": side.stats.load_sync(s.id),
                })
            return out

        return json_response({"org": org.id, "connections": await asyncio.to_thread(gather)})

    async def listing(request: Request) -> Response:
        org = authorised(request)
        what = request.path_params["what"]
        if what not in lists.SORTS:
            return error_response(404, f"no list {what!r}: use one of {', '.join(lists.SORTS)}")
        store, first, last, currency = query(request, org)
        sort = request.query_params.get("sort", lists.SORTS[what][0])
        if sort not in lists.SORTS[what]:
            return error_response(400, f"sort for {what} must be one of {', '.join(lists.SORTS[what])}, got {sort!r}")
        limit = _limit(request, default=20)
        records = await asyncio.to_thread(side.model.records, org.id, "order", first, last)
        if store is not None:
            records = [r for r in records if r.value["store"] == store]
        try:  # records(first, last) already holds only the period's days
            paid = lists.paid_orders(records, currency, side.rates)
        except MissingRate as exc:
            return error_response(422, str(exc))
        body: dict[str, object] = {"org": org.id, "store": store, **_span(first, last), "currency": currency, "sort": sort}
        if what == "orders":
            body["orders"] = lists.orders_list(paid, sort=sort, limit=limit, currency=currency, tz=org.tz)
            body["by_source"] = lists.orders_by_source(paid, currency)
        elif what == "products":
            body["products"] = lists.products_list(paid, sort=sort, limit=limit, currency=currency)
        else:
            body["pairs"] = lists.pairs_list(paid, sort=sort, limit=limit)
            body["orders_considered"] = len(paid)
        return json_response(body)

    async def customers(request: Request) -> Response:
        """Best customers (the period's paid orders; all time straight from the profiles), or with
        filter=never_bought the customers registered in the period who never paid an order."""
        org = authorised(request)
        store, first, last, currency = query(request, org)
        q = request.query_params
        wanted = q.get("filter")
        if wanted not in (None, "never_bought"):
            return error_response(400, f"filter must be never_bought (or absent), got {wanted!r}")
        sort = q.get("sort", "registered" if wanted else "revenue")
        if sort not in lists.SORTS["customers"]:
            return error_response(400, f"sort for customers must be one of {', '.join(lists.SORTS['customers'])}, got {sort!r}")
        limit = _limit(request, default=20)
        fetch = side.model.records
        span: dict[str, object] = {"org": org.id, "store": store, **_span(first, last), "currency": currency,
                                   "sort": sort, "filter": wanted}
        try:
            if wanted == "never_bought":  # a profile's day is the day it registered
                lives = lists.lifetimes(await asyncio.to_thread(fetch, org.id, "customer", first, last),
                                        currency=currency, rates=side.rates, tz=org.tz, store=None)
                figures = lists.never_bought(lives, store)
                rows = lists.customers_list(figures, lives, sort=sort, limit=limit, currency=currency, tz=org.tz)
                return json_response({**span, "total": len(figures), "customers": rows})
            profiles = await asyncio.to_thread(fetch, org.id, "customer")
            lives = lists.lifetimes(profiles, currency=currency, rates=side.rates, tz=org.tz, store=store)
            if first == "" and last == OPEN_END:  # all time: the profiles alone, no order is read
                figures = lists.lifetime_customers(lives)
                # guests have no profile: the figures' paid orders minus the profiles'. Read after the
                # profiles, an order written in between shows as a guest until the next read.
                _, buckets = await asyncio.to_thread(side.model.snapshot, org.id, DAY)
                paid_orders = sum(b.paid_orders for b in buckets if store is None or b.store == store)
                guests = max(0, paid_orders - sum(c.orders for c in figures.values()))
            else:  # a bounded period sums its own paid orders, selected by day
                orders = await asyncio.to_thread(fetch, org.id, "order", first, last)
                paid = [o for o in lists.paid_orders(orders, currency, side.rates)
                        if store is None or o.value["store"] == store]
                figures = lists.period_customers(paid)
                guests = sum(1 for o in paid if o.value["customer"] is None)
        except MissingRate as exc:
            return error_response(422, str(exc))
        first_ever = {k: c.first_paid for k, c in lives.items() if c.first_paid is not None}
        return json_response({
            **span, "total": len(figures),
            "customers": lists.customers_list(figures, lives, sort=sort, limit=limit, currency=currency, tz=org.tz),
            "summary": lists.customer_summary(figures, first_ever, guests, first, last, org.tz),
        })

    async def carts(request: Request) -> Response:
        org = authorised(request)
        store, first, last, currency = query(request, org)
        fetch = side.model.records
        days, live, products, listed = await asyncio.gather(
            asyncio.to_thread(fetch, org.id, "cart_day", first, last), asyncio.to_thread(fetch, org.id, "open_carts"),
            asyncio.to_thread(fetch, org.id, "abandoned_product", first, last), asyncio.to_thread(fetch, org.id, "cart", first, last))
        try:
            body = shoppers.carts_summary(days, live, products, listed, currency=currency, rates=side.rates,
                                          limit=_limit(request, default=20), store=store)
        except MissingRate as exc:
            return error_response(422, str(exc))
        return json_response({"org": org.id, "store": store, **_span(first, last),
                             "currency": currency, "abandon_after_minutes": org.abandon_after_minutes, **body})

    async def journey(request: Request) -> Response:
        org = authorised(request)
        store, first, last, _ = query(request, org)
        days = await asyncio.to_thread(side.model.records, org.id, "journey_day", first, last)
        return json_response({"org": org.id, "store": store, **_span(first, last),
                             **shoppers.journey_summary(days, store)})

    async def attribution(request: Request) -> Response:
        org = authorised(request)
        store, first, last, currency = query(request, org)
        days = await asyncio.to_thread(side.model.records, org.id, "attribution", first, last)
        try:
            body = shoppers.attribution_summary(days, currency=currency, rates=side.rates, store=store)
        except MissingRate as exc:
            return error_response(422, str(exc))
        return json_response({"org": org.id, "store": store, **_span(first, last),
                             "currency": currency, "window_days": 7, **body})

    async def quota(request: Request) -> Response:
        org = authorised(request)
        try:
            at = lists.parse_at(request.query_params.get("at"), datetime.now(timezone.utc))
        except lists.ListError as exc:
            return error_response(400, str(exc))
        records = await asyncio.to_thread(side.model.records, org.id, "order")
        times = [r.value["paid"] for r in records if r.value.get("paid") is not None]
        alerts = await asyncio.to_thread(side.model.records, org.id, "quota_alert")
        raised = sorted((a.value for a in alerts), key=lambda v: (v["at"], v["percent"]))
        return json_response({"org": org.id, **lists.quota(times, at, org.plan_limit), "alerts": raised})

    page = files("ws_gateway").joinpath("static/dashboard.html").read_text().replace("__WS_PORT__", str(side.ws_port))

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(page)

    def guarded(fn):  # noqa: ANN001, ANN202 - turns AuthError into its HTTP answer
        async def route(request: Request) -> Response:
            try:
                return await fn(request)
            except AuthError as exc:
                return error_response(exc.status, exc.message)

        return route

    return [
        Route("/api/v1/orgs/{org}/figures", guarded(figures), methods=["GET"]),
        Route("/api/v1/orgs/{org}/series", guarded(series_route), methods=["GET"]),
        Route("/api/v1/orgs/{org}/quota", guarded(quota), methods=["GET"]),
        Route("/api/v1/orgs/{org}/customers", guarded(customers), methods=["GET"]),
        Route("/api/v1/orgs/{org}/carts", guarded(carts), methods=["GET"]),
        Route("/api/v1/orgs/{org}/journey", guarded(journey), methods=["GET"]),
        Route("/api/v1/orgs/{org}/attribution", guarded(attribution), methods=["GET"]),
        Route("/api/v1/orgs/{org}/rejected", guarded(rejected_list), methods=["GET"]),
        Route("/api/v1/orgs/{org}/rejected/{id}", guarded(rejected_one), methods=["GET"]),
        Route("/api/v1/orgs/{org}/connections", guarded(connections), methods=["GET"]),
        Route("/api/v1/orgs/{org}/{what}", guarded(listing), methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
    ]
