"""What the segment routes answer, computed from records: the segment list, the rule of a preview
(its members: ws_gateway/segment_preview.py), member rows and their CSV, the stored history. Pure: records and time in, data out.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from core.changes import Record
from core.clock import local_midnight, utc_from_ms
from core.definitions import SegmentDefinition
from core.figures import BadPeriod, closed_days
from core.rules import RuleError, parse_rule, parse_segments
from core.rules.keep import keep_for
from core.rules.tree import Rule
from core.segment_records import Segment, SegmentChange, SegmentMember
from ws_gateway.lists import Lifetime

SEGMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_CHARS = 128


class BadSegment(ValueError):
    """A request naming a segment wrongly: its message says what, for a 400."""


@dataclass(frozen=True, slots=True)
class Listed:
    id: str
    name: str
    predefined: bool
    rule: Any
    members: int
    subject: str = "customer"


def known_segments(defaults: Mapping[str, SegmentDefinition], records: Iterable[Record[Segment]],
                   products: Mapping[str, SegmentDefinition] | None = None) -> dict[str, Listed]:
    """Every segment now: the records the dataflow wrote over the definitions it starts from (the
    predefined and configured ones, shown with 0 members until the dataflow has written them)."""
    out = {d.id: Listed(d.id, d.name, d.predefined, d.rule, 0) for d in defaults.values()}
    out |= {d.id: Listed(d.id, d.name, d.predefined, d.rule, 0, "product") for d in (products or {}).values()}
    for r in records:
        v = r.value
        if v.deleted:
            out.pop(v.id, None)
        else:
            out[v.id] = Listed(v.id, v.name, v.predefined, orjson.loads(bytes(v.rule)), v.members, v.subject)
    return dict(sorted(out.items()))


def check_definition(segment: str, body: object, known: Mapping[str, Listed], currency: str,
                     timezone: str) -> tuple[dict[str, Any], dict[str, Rule]]:
    """The body of a PUT as {"name", "rule"}, checked: the rule parses (a RuleError's path starts at
    `$.rule`), and with every other segment it names no missing segment and makes no cycle. With it, every
    customer segment's rule parsed (what `not_kept` compares it with)."""
    if not SEGMENT_ID.match(segment):
        raise BadSegment(f"segment id {segment!r}: use 1 to 64 letters, digits, '-' and '_'")
    if not isinstance(body, dict):
        raise BadSegment('the body must be a JSON object {"name": "...", "rule": {...}}')
    unknown = sorted(set(body) - {"name", "rule"})
    if unknown:
        raise BadSegment(f"$.{unknown[0]}: unknown key; the keys are name and rule")
    name, rule = body.get("name", segment), body.get("rule")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_CHARS:
        raise BadSegment(f"$.name: must be a non-empty string of at most {NAME_CHARS} characters")
    if rule is None:
        raise BadSegment('$.rule: missing; e.g. {"orders": {"gte": 3}}')
    try:
        parse_rule(rule, currency=currency, timezone=timezone)
    except RuleError as exc:
        raise RuleError("$.rule" + exc.path[1:], exc.problem) from None
    if segment in known and known[segment].subject != "customer":
        raise BadSegment(f"segment {segment!r} is a product segment: they are predefined, choose another id")
    customers = {s.id: s.rule for s in known.values() if s.subject == "customer"}
    rules = parse_segments({**customers, segment: rule}, currency=currency, timezone=timezone)
    return {"name": name.strip(), "rule": rule}, rules


def check_delete(segment: str, known: Mapping[str, Listed], currency: str, timezone: str) -> None:
    """A segment that another one names through in_segment cannot be deleted first."""
    if known[segment].subject != "customer":
        raise BadSegment(f"segment {segment!r} is a predefined product segment: it cannot be deleted")
    rest = {s.id: s.rule for s in known.values() if s.id != segment and s.subject == "customer"}
    try:
        parse_segments(rest, currency=currency, timezone=timezone)
    except RuleError as exc:
        raise BadSegment(f"segment {segment!r} is named by another segment ({exc}); change or delete that one first") from None


_ITEM = {"products": "product", "categories": "category", "brands": "brand"}


def not_kept(rule: Rule, others: Iterable[Rule]) -> list[str]:
    """What a new rule reads of the past that the dataflow no longer holds, as sentences: the segments
    keep each customer's entries only as long as their longest window, and an order's products, categories
    and brands only where some segment names them (core/rules/keep.py). Such a rule, defined now, counts
    from the events after it (docs/segments.md, "A segment defined after the data"). Empty: it is exact."""
    keep, need = keep_for(others), keep_for([rule])
    out = [f"a window of {_days(ms)} over {stream} is longer than the {_days(keep.horizon(stream))} the segments keep"
           for stream, ms in need.horizons if keep.horizon(stream) < ms]
    out += [f"{_ITEM.get(i.field, i.field)} {i.name!r} is named by no other segment, so orders before now do not say it"
            for i in sorted(need.items - keep.items, key=lambda i: (i.field, i.name))]
    if set(need.cuts) - set(keep.cuts):
        out.append("a since or until date is named by no other segment, so older orders are totalled across it")
    return out


def _days(ms: int) -> str:
    return f"{ms // 86_400_000} days" if ms % 86_400_000 == 0 else f"{ms // 3_600_000} hours" if ms % 3_600_000 == 0 \
        else f"{ms // 60_000} minutes"


def preview_rule(body: object, currency: str, timezone: str) -> Rule:
    """The rule of a preview request {"rule": ...} (what the records can answer: ws_gateway/segment_preview.py)."""
    if not isinstance(body, dict) or "rule" not in body:
        raise BadSegment('the body must be a JSON object {"rule": {...}}')
    try:
        return parse_rule(body["rule"], currency=currency, timezone=timezone)
    except RuleError as exc:
        raise RuleError("$.rule" + exc.path[1:], exc.problem) from None


def iso(ms: int | None) -> str | None:
    return None if ms is None else utc_from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def member_rows(members: Iterable[Record[SegmentMember]], lives: Mapping[str, Lifetime], currency: str,
                after: str, limit: int | None) -> list[dict[str, Any]]:
    """Members sorted by customer, those after the cursor `after`, at most `limit` (None: all)."""
    rows: list[dict[str, Any]] = []
    for r in sorted((r for r in members if r.value.member and r.value.customer > after), key=lambda r: r.value.customer):
        if limit is not None and len(rows) == limit:
            break
        life = lives.get(r.value.customer)
        rows.append({"customer": r.value.customer, "email": life.email if life else None,
                     "name": life.name if life else None, "orders": life.orders if life else 0,
                     "spent": {"amount": life.revenue if life else 0, "currency": currency},
                     "last_order": iso(life.last_paid) if life else None, "entered_at": iso(r.value.entered)})
    return rows


CSV_COLUMNS = ("customer", "email", "name", "orders", "spent", "currency", "last_order", "entered_at")


def members_csv(rows: Iterable[Mapping[str, Any]], exponent: int) -> str:
    """The member rows as CSV (the "ENGAGE" export): money as a decimal in major units."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for row in rows:
        amount = row["spent"]["amount"]
        spent = str(amount)
        if exponent:  # exact, not through a float
            sign, whole = ("-" if amount < 0 else ""), abs(amount)
            spent = f"{sign}{whole // 10**exponent}.{whole % 10**exponent:0{exponent}d}"
        w.writerow([_cell(row["customer"]), _cell(row["email"] or ""), _cell(row["name"] or ""), row["orders"], spent,
                    row["spent"]["currency"], row["last_order"] or "", row["entered_at"] or ""])
    return out.getvalue()


def _cell(text: str) -> str:
    """A text cell that a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def change_rows(changes: Iterable[Record[SegmentChange]], customer: str | None, limit: int,
                newest: bool = False) -> list[dict[str, Any]]:
    """The stored entries and exits in time order (then customer), at most `limit`; `newest`: the
    latest `limit` of them, newest first."""
    found = (r.value for r in changes if not r.value.superseded and customer in (None, r.value.customer))
    order = _change_order
    kept = heapq.nlargest(limit, found, key=order) if newest else heapq.nsmallest(limit, found, key=order)
    return [{"customer": v.customer, "change": v.change, "at": iso(v.at), "cause": v.cause} for v in kept]


def _change_order(v: SegmentChange) -> tuple[int, str, bool]:
    return v.at, v.customer, v.change != "exited"


GROWTH_DAYS = 3660  # ten years of days, as a series


def growth_days(first: str, last: str, tz: ZoneInfo) -> tuple[int, int]:
    """The instants [start, end) (ms) of the local days [first, last]: a growth needs both dates."""
    lo, hi = closed_days(first, last, "a segment's growth")
    if (hi - lo).days >= GROWTH_DAYS:
        raise BadPeriod("that range has too many days: at most ten years")
    return local_midnight(lo, tz), local_midnight(hi + timedelta(days=1), tz)


def change_day(segment: str, at: int) -> str:
    """The day a change is stored under (core/segment_records.py): the segment and its instant, ISO 8601 UTC, ms."""
    return f"{segment}|{utc_from_ms(at).isoformat(timespec='milliseconds')}"


def growth(changes: Iterable[Record[SegmentChange]], first: str, last: str, tz: ZoneInfo, latest: int) -> dict[str, Any]:
    """Entries and exits of a segment per local day of [first, last] (every day, empty ones as 0; a
    superseded change left out), their totals, and the newest `latest` of them, newest first."""
    start, end = growth_days(first, last, tz)
    lo = date.fromisoformat(first)
    days = [(lo + timedelta(days=i)) for i in range((date.fromisoformat(last) - lo).days + 1)]
    # each day's first instant, found by bisection: a zone conversion per change costs as much as reading it
    starts = [local_midnight(d, tz) for d in days]
    counts = [[0, 0] for _ in days]
    kept: list[Record[SegmentChange]] = []
    for r in changes:
        v = r.value
        if v.superseded or not start <= v.at < end:
            continue
        counts[bisect.bisect_right(starts, v.at) - 1][v.change == "exited"] += 1
        kept.append(r)
    entered, exited = sum(n[0] for n in counts), sum(n[1] for n in counts)
    return {"days": [{"day": d.isoformat(), "entered": n[0], "exited": n[1]} for d, n in zip(days, counts, strict=True)],
            "entered": entered, "exited": exited, "net": entered - exited,
            "latest": change_rows(kept, None, latest, newest=True)}


def segment_message(v: SegmentChange, version: int, withdrawn: bool = False) -> dict[str, object]:
    """The WebSocket message of one entry or exit; `withdrawn`: its retraction, `"change": "withdrawn"`
    and `"withdraws"` the change it undoes (the same segment, customer, at and cause identify it)."""
    change = {"change": "withdrawn", "withdraws": v.change} if withdrawn else {"change": v.change}
    return {"type": "segment", "segment": v.segment, "customer": v.customer, **change, "at": iso(v.at),
            "cause": v.cause, "version": version}
