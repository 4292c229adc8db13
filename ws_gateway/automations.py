"""The automation routes: GET /api/v1/orgs/{org}/automations[/{id}], PUT and DELETE /automations/{id}.

A definition made through the API is not stored here: PUT and DELETE append a control event to the
organisation's event log (core/definitions.py, as segments do), so the dataflow, a replay and a
recovery see it at the same point of the stream; the answer is 202, and the dataflow's `automation`
record (core/automation_records.py) follows on the read model. The list is the config's automations
with those records over them. Each is {"id", "trigger", "send", ...} in the shape `[orgs.X.automations.ID]`
takes. The endpoints are registered in ws_gateway/api.py behind `org_route` (that organisation's token).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.automation_records import AutomationDefinition
from core.automations.definition import DEFINITION_TYPE, DefinitionError, parse_automation
from core.automations.messages import render
from core.automations.samples import sample
from core.changes import Record
from core.clock import ms_of
from core.config import Org
from core.definitions import delete_event, put_event
from core.digest import digest_payload
from core.figures import OPEN_END, gaps_json
from core.rates import RecordingRates
from core.records import Cart
from notifier.outbox import Outbox
from state.day_stamps import DayVersioned
from state.log import EventLog, LogUnavailable
from web.responses import json_response
from ws_gateway import automation_results
from ws_gateway.deliveries import readable_outbox

if TYPE_CHECKING:
    from ws_gateway.api import ReadSide


async def known(side: ReadSide, org: Org) -> dict[str, dict[str, Any]]:
    """The organisation's automations in force: the config's, with the API's over them (none deleted)."""
    out: dict[str, dict[str, Any]] = {a.id: {"id": a.id, **a.to_json(), "source": "config"}
                                      for a in org.automations.values()}
    for r in await asyncio.to_thread(side.model.records, org.id, AutomationDefinition):
        if r.value.deleted:
            out.pop(r.value.id, None)
        else:
            out[r.value.id] = {"id": r.value.id, **orjson.loads(bytes(r.value.definition)), "source": "api"}
    return dict(sorted(out.items()))


async def listing(request: Request, side: ReadSide, org: Org, *, first: str, last: str, currency: str) -> Response:
    """The automations in force; asked with a period, the delivery log open in this process and not for a
    share link, what each came to over the period's days [first, last] (ws_gateway/automation_results.py)."""
    body: dict[str, Any] = {"org": org.id, "locale": org.locale, "automations": list((await known(side, org)).values())}
    outbox = readable_outbox(request)
    if outbox is not None and any(p in request.query_params for p in ("period", "from", "to")):
        ids = [a["id"] for a in body["automations"]]
        body |= await asyncio.to_thread(_results, outbox, side, org, first, last, currency, ids)
    return json_response(body)


RESULTS_MOST = 20_000  # deliveries read for the results, newest first: beyond, they say they are incomplete


def _results(outbox: Outbox, side: ReadSide, org: Org, first: str, last: str, currency: str,
             automations: list[str]) -> dict[str, Any]:
    deliveries = outbox.list(org.id, limit=RESULTS_MOST)
    tallies = automation_results.tally(deliveries, first=first, last=last, tz=org.tz)
    keys = automation_results.cart_keys(tallies)
    if not keys:
        carts: list[Record[Cart]] = []
    elif isinstance(side.model, DayVersioned):
        carts = side.model.records_by_key(org.id, Cart, keys)
    else:
        wanted = set(keys)
        carts = [r for r in side.model.records(org.id, Cart) if r.key in wanted]
    rates = RecordingRates(side.rates)
    out = automation_results.results(tallies, {r.key: r for r in carts}, tz=org.tz, currency=currency, rates=rates,
                                     automations=automations)
    return {"from": first or None, "to": None if last == OPEN_END else last, "currency": currency,
            "results": out, "results_complete": len(deliveries) < RESULTS_MOST,
            **({"missing_rates": gaps_json(rates.gaps, currency)} if rates.gaps else {})}


async def one(request: Request, side: ReadSide, org: Org) -> Response:
    found = (await known(side, org)).get(request.path_params["id"])
    if found is None:
        raise HTTPException(404, f"no automation {request.path_params['id']!r} in organisation {org.id!r}")
    return json_response(found)


async def preview(request: Request, side: ReadSide, org: Org) -> Response:
    """The message a definition (a PUT's body; `send` may be left out) would send for a sample firing of
    its trigger now (core/automations/samples.py): its locale, the organisation's time zone, its templates,
    rendered as the dataflow renders it. Nothing is saved or sent. ?id= names it for {{ automation }}."""
    name = request.query_params.get("id", "preview")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    if isinstance(body, dict) and not body.get("send"):
        body = {**body, "send": ["preview"]}  # where it goes does not change what it says
    try:
        a = parse_automation(name, body, "$", currency=org.currency, timezone=org.timezone)
    except DefinitionError as exc:
        raise HTTPException(400, str(exc)) from None
    at = ms_of(side.now())
    digest = digest_payload(a.digest, at, org.timezone) if a.digest else None
    subject, cause, payload = sample(a.trigger, store=next(iter(org.stores), ""), currency=org.currency, at=at,
                                     segment=a.segment, digest=digest)
    locale = a.locale or org.locale
    m = render(name, a.trigger, subject, cause, at, at + a.wait_ms, payload, locale=locale, timezone=org.timezone,
               templates=a.templates)
    return json_response({"id": name, "trigger": a.trigger, "locale": locale,
                          "sample": {"subject": subject, "cause": cause, "at": at, "payload": payload},
                          # a digest's figures are filled in by the notifier when it is put (notifier/digests.py)
                          "digest": a.digest,
                          "message": {"subject": m.subject, "text": m.text, "html": m.html, "slack_text": m.slack_text,
                                      "json": m.json}})


async def put(request: Request, side: ReadSide, org: Org) -> Response:
    """400 naming the JSON path of what is wrong ($.if.all[0].order_value.gte, $.send); else 202."""
    automation = request.path_params["id"]
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    try:
        a = parse_automation(automation, body, "$", currency=org.currency, timezone=org.timezone)
    except DefinitionError as exc:
        raise HTTPException(400, str(exc)) from None
    missing = [c for c in a.send if c not in org.channels]
    if missing:
        raise HTTPException(400, f"$.send: no channel {missing[0]!r} in organisation {org.id!r} (define it in the config)")
    event = put_event(org.id, DEFINITION_TYPE, automation, body, ms_of(side.now()), uuid.uuid4().hex)
    await _append(request, event)
    return json_response({"id": automation, "status": "accepted", "event": event.id, **a.to_json()}, 202)


async def delete(request: Request, side: ReadSide, org: Org) -> Response:
    automation = request.path_params["id"]
    if automation not in await known(side, org):
        raise HTTPException(404, f"no automation {automation!r} in organisation {org.id!r}")
    event = delete_event(org.id, DEFINITION_TYPE, automation, ms_of(side.now()), uuid.uuid4().hex)
    await _append(request, event)
    return json_response({"id": automation, "status": "accepted", "event": event.id}, 202)


async def _append(request: Request, event: Any) -> None:
    log: EventLog | None = getattr(request.app.state, "event_log", None)
    if log is None:
        raise HTTPException(503, "this gateway has no event log to append definitions to: run it with --redis")
    try:
        await log.append([event])
    except LogUnavailable as exc:
        raise HTTPException(503, f"the event log cannot take the definition now, retry: {exc}") from None
