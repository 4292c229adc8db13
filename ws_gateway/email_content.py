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
    """One row per campaign or automation engaged with or attributed in the period: `type`
    ("campaign"/"automation", None when only attributed orders name it), `last_engaged` (ISO, local),
    `opened`, `clicked` (sums of the days' distinct persons), `click_to_open_rate` (clicked / opened,
    6 decimals, None without an open), `orders` and `revenue` (`attributed`: the attribution summary's
    campaigns). Ranked by revenue, then opened, then name."""
    acc: dict[str, dict[str, Any]] = {}
    for r in days:
        v = r.value
        if store is not None and v.store != store:
            continue
        row = acc.setdefault(v.campaign, {"type": v.type, "opened": 0, "clicked": 0, "last": 0})
        row["opened"] += v.opened
        row["clicked"] += v.clicked
        row["last"] = max(row["last"], v.last)
    money = {c["campaign"]: c for c in attributed}
    rows = []
    for name in set(acc) | set(money):
        e = acc.get(name, {"type": None, "opened": 0, "clicked": 0, "last": 0})
        m = money.get(name)
        rows.append({
            "campaign": name, "type": e["type"],
            "last_engaged": utc_from_ms(e["last"]).astimezone(tz).isoformat(timespec="milliseconds") if e["last"] else None,
            "opened": e["opened"], "clicked": e["clicked"],
            "click_to_open_rate": round(e["clicked"] / e["opened"], 6) if e["opened"] else None,
            "orders": m["orders"] if m else 0, "revenue": m["revenue"] if m else Money(0, currency).to_json(),
        })
    return sorted(rows, key=lambda r: (-r["revenue"]["amount"], -r["opened"], r["campaign"]))
