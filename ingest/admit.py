"""The one check every path's canonical events pass before the log: core.limits' ranges, and attrs
nested at most core.limits.MAX_DEPTH deep.

Webhooks, the events API and redrive (ingest/app.py) refuse the whole delivery with a 400 naming
the event and its field; sync and replay (ingest/sync.py, ingest/replay.py) skip the event, count it
and go on. Adapters may refuse earlier, in their vendor's words; this is what none can forget.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from core.events import Event
from core.limits import depth_problem, problem
from ingest.errors import BadPayload
from state.log import EventLog


def refusal(e: Event) -> str | None:
    """Why ingest refuses this event, naming the field, or None."""
    return problem(e) or depth_problem(e.attrs)


def admit(events: Sequence[Event]) -> None:
    """BadPayload for the first event ingest refuses, naming it and its field."""
    for e in events:
        why = refusal(e)
        if why is not None:
            raise BadPayload(f"event {e.id} ({e.kind}): {why}")


def admitted(events: Sequence[Event]) -> tuple[list[Event], list[str]]:
    """The events ingest takes, and why each of the others is refused ("<id>: <why>")."""
    kept, refused = [], []
    for e in events:
        why = refusal(e)
        if why is None:
            kept.append(e)
        else:
            refused.append(f"{e.id}: {why}")
    return kept, refused


async def append_admitted(log: EventLog, events: Sequence[Event]) -> list[bool]:
    """log.append(events) once `admit` has passed them. An event that cannot be serialised anyway is
    the delivery's BadPayload, never a 500: the log serialises each caller's events on its own."""
    admit(events)
    try:
        return await log.append(events)
    except orjson.JSONEncodeError as exc:
        raise BadPayload(f"an event of this delivery cannot be stored: {exc}") from None
