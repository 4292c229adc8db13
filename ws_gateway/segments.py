"""The segment routes (docs/segments.md, "API"): list, define, delete, preview, members, history.

A definition is not stored here: PUT and DELETE append a control event to the organisation's event
log (core/definitions.py), so the dataflow, every worker, a replay and a recovery see it at the same
point of the stream; the answer is 202 and the segment's records follow on the change feed.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.clock import ms_from_iso, ms_of
from core.config import Org
from core.definitions import SEGMENT, delete_event, predefined_product_segments, put_event
from core.figures import OPEN_END
from core.money import EXPONENTS
from core.records import Customer
from core.rules import Context, RuleError, inputs, parse_segments
from core.rules.graph import references as references_of
from core.segment_records import Segment, SegmentChange, SegmentClock, SegmentMember
from state.log import EventLog, LogUnavailable
from web.responses import json_response
from ws_gateway import lists, metrics
from ws_gateway.api import ReadSide, _limit, by_records, org_route, query
from ws_gateway.preview_eval import Unsupported
from ws_gateway.preview_index import PreviewIndex
from ws_gateway.segment_filter import defaults
from ws_gateway.segment_preview import PreviewError, buyers_only, preview_records, previewable
from ws_gateway.segment_views import (
    BadSegment,
    Listed,
    change_day,
    change_rows,
    check_definition,
    check_delete,
    growth,
    growth_days,
    iso,
    known_segments,
    member_rows,
    members_csv,
    not_kept,
    preview_rule,
)


def _log(request: Request) -> EventLog:
    log: EventLog | None = getattr(request.app.state, "event_log", None)
    if log is None:
        raise HTTPException(503, "this gateway has no event log to append definitions to: run it with --redis")
    return log


async def _known(side: ReadSide, org: Org) -> tuple[dict[str, Listed], int | None]:
    records, clock = await asyncio.gather(asyncio.to_thread(side.model.records, org.id, Segment),
                                          asyncio.to_thread(side.model.records, org.id, SegmentClock))
    products = predefined_product_segments() if org.product_segments else {}
    return known_segments(defaults(org), records, products), max((r.value.as_of for r in clock if r.value.as_of),
                                                                   default=None)


async def _segment(request: Request, side: ReadSide, org: Org) -> Listed:
    known, _ = await _known(side, org)
    found = known.get(request.path_params["id"])
    if found is None:
        raise HTTPException(404, f"organisation {org.id!r} has no segment {request.path_params['id']!r}")
    return found


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None


async def _append(request: Request, event: Any) -> None:
    try:
        await _log(request).append([event])
    except LogUnavailable as exc:
        raise HTTPException(503, f"the event log cannot take the definition now, retry: {exc}") from None


@org_route()
async def list_segments(request: Request, side: ReadSide, org: Org) -> Response:
    known, as_of = await _known(side, org)
    return json_response({"org": org.id, "as_of": iso(as_of), "segments": [
        {"id": s.id, "name": s.name, "subject": s.subject, "predefined": s.predefined, "rule": s.rule,
         "members": s.members, "as_of": iso(as_of)}
        for s in known.values()]})


@org_route()
async def put_segment(request: Request, side: ReadSide, org: Org) -> Response:
    segment = request.path_params["id"]
    body = await _body(request)
    known, _ = await _known(side, org)
    try:
        definition, rules = check_definition(segment, body, known, org.currency, org.timezone)
    except (BadSegment, RuleError) as exc:
        raise HTTPException(400, str(exc)) from None
    missing = not_kept(rules[segment], [r for k, r in rules.items() if k != segment])
    event = put_event(org.id, SEGMENT, segment, definition, ms_of(side.now()), uuid.uuid4().hex)
    await _append(request, event)
    # what it reads of the past that no segment kept: it counts from now on (docs/segments.md)
    return json_response({"id": segment, "status": "accepted", "event": event.id, **definition, "not_kept": missing}, 202)


@org_route()
async def delete_segment(request: Request, side: ReadSide, org: Org) -> Response:
    segment = (await _segment(request, side, org)).id
    known, _ = await _known(side, org)
    try:
        check_delete(segment, known, org.currency, org.timezone)
    except BadSegment as exc:
        raise HTTPException(400, str(exc)) from None
    event = delete_event(org.id, SEGMENT, segment, ms_of(side.now()), uuid.uuid4().hex)
    await _append(request, event)
    return json_response({"id": segment, "status": "accepted", "event": event.id}, 202)


@org_route()
async def preview_segment(request: Request, side: ReadSide, org: Org) -> Response:
    """The rule's members at the segment clock's as_of, from the stored records (ws_gateway/segment_preview.py)."""
    body = await _body(request)
    known, as_of = await _known(side, org)
    try:
        rule = preview_rule(body, org.currency, org.timezone)
        segments = parse_segments({s.id: s.rule for s in known.values() if s.subject == "customer"},
                                  currency=org.currency, timezone=org.timezone)
        missing = sorted(references_of(rule) - set(segments))
        if missing:
            raise BadSegment(f"$.rule: in_segment names {missing[0]!r}, which is not a segment of organisation {org.id!r}")
        previewable(rule, segments)
    except (BadSegment, RuleError, PreviewError) as exc:
        raise HTTPException(400, str(exc)) from None
    # the instant the dataflow's membership is exact for; before it wrote any, its watermark while live
    now = as_of if as_of is not None else ms_of(side.now()) - org.allowed_lateness_ms
    # as the dataflow evaluates: its exchange rates (the same files, core/rates.py), the organisation's segments
    ctx = Context(org.timezone, org.currency, side.rates, segments)
    index: PreviewIndex | None = getattr(request.app.state, "preview_index", None)
    held = index.held(org.id) if index is not None else None

    def compute() -> tuple[int, list[str]]:
        if held is not None:  # the columns kept from the change feed (ws_gateway/preview_index.py)
            try:
                answer = held.preview(rule, now, ctx, buyers_only(rule, inputs(rule, segments), now, ctx))
                metrics.PREVIEWS.labels(path="columns").inc()
                return answer
            except Unsupported:
                pass
        metrics.PREVIEWS.labels(path="records").inc()
        return preview_records(rule, lambda kind: side.model.records(org.id, kind), now, ctx)

    count, first = await asyncio.to_thread(compute)
    # exact now, from the records; saved, a rule reading what no segment kept would count from then on
    return json_response({"org": org.id, "as_of": iso(now), "members": count, "first": first,
                          "not_kept": not_kept(rule, segments.values())})


@org_route()
async def members(request: Request, side: ReadSide, org: Org) -> Response:
    segment = (await _segment(request, side, org)).id
    q = request.query_params
    csv = q.get("format") == "csv"
    if q.get("format") not in (None, "csv", "json"):
        raise HTTPException(400, f"format must be json or csv, got {q.get('format')!r}")
    limit = None if csv and "limit" not in q else _limit(request, default=100, most=10_000)
    cursor = q.get("cursor", "")

    def compute() -> list[dict[str, Any]]:
        found = side.model.records(org.id, SegmentMember, segment, segment)
        lives = lists.lifetimes(side.model.records(org.id, Customer), currency=org.currency, rates=side.rates,
                                tz=org.tz, store=None)
        return member_rows(found, lives, org.currency, cursor, limit)

    rows = await asyncio.to_thread(compute)
    if csv:
        return Response(members_csv(rows, EXPONENTS[org.currency]), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{org.id}-{segment}.csv"'})
    more = limit is not None and len(rows) == limit
    return json_response({"org": org.id, "segment": segment, "members": rows,
                          "next_cursor": rows[-1]["customer"] if more and rows else None})


def _instant(request: Request, name: str) -> str | None:
    """?from= / ?to= as the ISO instant a change's day holds (ms, UTC), or None when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        ms = ms_from_iso(raw)
    except ValueError as exc:
        raise HTTPException(400, f"{name}: {exc}") from None
    return iso(ms)


@org_route()
async def changes(request: Request, side: ReadSide, org: Org) -> Response:
    segment = (await _segment(request, side, org)).id
    first, last = _instant(request, "from"), _instant(request, "to")
    customer = request.query_params.get("customer")
    limit = _limit(request, default=100, most=10_000)
    # a change's day is "<segment>|<at as ISO, ms, +00:00>": the range selects the period
    lo = f"{segment}|{first.replace('Z', '+00:00')}" if first else f"{segment}|"
    hi = f"{segment}|{last.replace('Z', '+00:00')}" if last else f"{segment}|{OPEN_END}"
    found = await asyncio.to_thread(side.model.records, org.id, SegmentChange, lo, hi)
    return json_response({"org": org.id, "segment": segment, "from": first, "to": last, "customer": customer,
                          "changes": change_rows(found, customer, limit)})


@org_route(by_records)
async def growth_route(request: Request, side: ReadSide, org: Org) -> Response:
    """The segment's entries and exits per local day of the period (?period= or from/to dates), with its
    newest `limit` changes: what the dashboard's segment card draws."""
    segment = (await _segment(request, side, org)).id
    _, first, last, _ = query(request, side, org)
    latest = _limit(request, default=50, most=1000)
    start, end = growth_days(first, last, org.tz)
    found = await asyncio.to_thread(side.model.records, org.id, SegmentChange, change_day(segment, start),
                                    change_day(segment, end - 1))
    return json_response({"org": org.id, "segment": segment, "from": first, "to": last, "timezone": org.timezone,
                          **growth(found, first, last, org.tz, latest)})


routes: list[BaseRoute] = [
    Route("/api/v1/orgs/{org}/segments", list_segments, methods=["GET"]),
    Route("/api/v1/orgs/{org}/segments/preview", preview_segment, methods=["POST"]),
    Route("/api/v1/orgs/{org}/segments/{id}", put_segment, methods=["PUT"]),
    Route("/api/v1/orgs/{org}/segments/{id}", delete_segment, methods=["DELETE"]),
    Route("/api/v1/orgs/{org}/segments/{id}/members", members, methods=["GET"]),
    Route("/api/v1/orgs/{org}/segments/{id}/changes", changes, methods=["GET"]),
    Route("/api/v1/orgs/{org}/segments/{id}/growth", growth_route, methods=["GET"]),
]
