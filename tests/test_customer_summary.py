"""The customers summary (ws_gateway/lists.customer_summary): a repeat customer has two or more paid
orders up to the period's end, counting the orders before it (docs/metrics.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.figures import OPEN_END
from ws_gateway.lists import PeriodCustomer, customer_summary

pytestmark = pytest.mark.unit
BERLIN = ZoneInfo("Europe/Berlin")


def ms(day: str, hour: int = 12) -> int:
    return int(datetime.fromisoformat(f"{day}T{hour:02d}:00").replace(tzinfo=UTC).timestamp() * 1000)


def test_a_day_counts_the_buyers_who_bought_before_it() -> None:
    today = "2026-03-04"
    figures = {
        "back": PeriodCustomer(orders=1, first=ms(today), last=ms(today)),        # first order a month ago
        "twice": PeriodCustomer(orders=2, first=ms(today, 9), last=ms(today)),    # new, two orders today
        "once": PeriodCustomer(orders=1, first=ms(today), last=ms(today)),        # new, one order
        "late": PeriodCustomer(orders=1, first=ms(today, 22), last=ms(today, 22)),  # 23:00 Berlin: still today
    }
    first_ever = {"back": ms("2026-02-01"), "twice": ms(today, 9), "once": ms(today), "late": ms(today, 22)}
    got = customer_summary(figures, first_ever, 3, today, today, BERLIN)
    assert got == {"customers": 4, "repeat_customers": 2, "repeat_purchase_rate": 0.5, "new_customers": 3,
                   "returning_customers": 1, "guest_orders": 3}


def test_all_time_is_two_orders_or_more() -> None:
    figures = {"a": PeriodCustomer(orders=3, first=ms("2025-01-01")), "b": PeriodCustomer(orders=1, first=ms("2025-02-01")),
               "c": PeriodCustomer(orders=1, first=ms("2025-03-01"))}
    first_ever = {k: c.first for k, c in figures.items() if c.first is not None}
    got = customer_summary(figures, first_ever, 0, "", OPEN_END, BERLIN)
    assert (got["repeat_customers"], got["repeat_purchase_rate"], got["new_customers"]) == (1, 0.333333, 3)
    assert customer_summary({}, {}, 0, "2026-03-04", "2026-03-04", BERLIN)["repeat_purchase_rate"] == 0.0
