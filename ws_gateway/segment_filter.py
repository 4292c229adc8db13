"""`segment=ID` on the lists: the segment's members now, to keep the rows of (docs/segments.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request

from core.config import Org
from core.definitions import SegmentDefinition, predefined_product_segments, predefined_segments
from core.segment_records import Segment, SegmentMember
from state.readmodel import ReadModel
from ws_gateway.segment_views import known_segments

T = TypeVar("T")


def defaults(org: Org) -> dict[str, SegmentDefinition]:
    """The segments an organisation starts with: the predefined ones, then its configured ones."""
    return {**predefined_segments(), **org.segments}


async def segment_members(request: Request, model: ReadModel, org: Org) -> frozenset[str] | None:
    """The members of ?segment= (None when the request names none); 404 for a segment the organisation
    does not have."""
    segment = request.query_params.get("segment")
    if segment is None:
        return None
    records = await asyncio.to_thread(model.records, org.id, Segment)
    known = known_segments(defaults(org), records, predefined_product_segments() if org.product_segments else {})
    if segment not in known:
        raise HTTPException(404, f"organisation {org.id!r} has no segment {segment!r}")
    if known[segment].subject != "customer":
        raise HTTPException(400, f"segment {segment!r} is a product segment: its members are products, not customers")
    found = await asyncio.to_thread(model.records, org.id, SegmentMember, segment, segment)
    return frozenset(r.value.customer for r in found if r.value.member)


def only(rows: Mapping[str, T], members: frozenset[str] | None) -> dict[str, T]:
    """The rows of the members (all of them when no segment is asked for)."""
    return dict(rows) if members is None else {k: v for k, v in rows.items() if k in members}
