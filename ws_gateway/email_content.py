"""The marketing content table: per campaign or automation, its e-mail engagement over a period
(flows/email_engagement.py's "email_day" records) beside the orders and revenue attributed to it
("attribution" records, ws_gateway/shoppers.attribution_summary). Pure. Definitions: docs/metrics.md."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from core.changes import Record
from core.clock import utc_from_ms
from core.money import Money
from core.records import EmailDay


def content_table(days: Iterable[Record[EmailDay]], attributed: list[dict[str, Any]], *, store: str | None,
                  currency: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    """One row per campaign or automation sent, engaged with or attributed in the period: `type`
    ("campaign"/"automation", None when only attributed orders name it), `last_sent`, `last_engaged`
    (ISO, local, None for none), `sent`, `opened`, `clicked` (sums of the days' distinct persons),
    `open_rate` and `click_rate` (opened / sent and clicked / sent, None without a send),
    `click_to_open_rate` (clicked / opened, None without an open): 6 decimals; `orders` and `revenue`
    (`attributed`: the attribution summary's campaigns). Ranked by revenue, then opened, then name."""
    acc: dict[str, dict[str, Any]] = {}
    for r in days:
        v = r.value
        if store is not None and v.store != store:
            continue
        row = acc.setdefault(v.campaign, {"type": v.type, "opened": 0, "clicked": 0, "last": 0, "sent": 0, "last_sent": 0})
        row["opened"] += v.opened
        row["clicked"] += v.clicked
        row["last"] = max(row["last"], v.last)
        row["sent"] += v.sent
        row["last_sent"] = max(row["last_sent"], v.last_sent)
    money = {c["campaign"]: c for c in attributed}
    rows = []
    for name in set(acc) | set(money):
        e = acc.get(name, {"type": None, "opened": 0, "clicked": 0, "last": 0, "sent": 0, "last_sent": 0})
        m = money.get(name)
        rows.append({
            "campaign": name, "type": e["type"],
            "last_sent": _iso(e["last_sent"], tz), "last_engaged": _iso(e["last"], tz),
            "sent": e["sent"], "opened": e["opened"], "clicked": e["clicked"],
            "open_rate": round(e["opened"] / e["sent"], 6) if e["sent"] else None,
            "click_rate": round(e["clicked"] / e["sent"], 6) if e["sent"] else None,
            "click_to_open_rate": round(e["clicked"] / e["opened"], 6) if e["opened"] else None,
            "orders": m["orders"] if m else 0, "revenue": m["revenue"] if m else Money(0, currency).to_json(),
        })
    return sorted(rows, key=lambda r: (-r["revenue"]["amount"], -r["opened"], r["campaign"]))


def _iso(ms: int, tz: ZoneInfo) -> str | None:
    return utc_from_ms(ms).astimezone(tz).isoformat(timespec="milliseconds") if ms else None
