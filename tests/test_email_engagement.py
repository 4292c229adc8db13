"""E-mail engagement per campaign and day (flows/email_engagement.py) and the marketing content table
built from it (ws_gateway/email_content.py). Pure: times are fixed instants."""

from __future__ import annotations

import pickle
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.changes import Record
from core.definitions import predefined_segments
from core.events import Event, Kind, Source
from core.records import EmailDay, RecordKind
from flows.book import Version
from flows.email_engagement import EmailEngagement
from flows.membership import Membership, segment_step
from flows.shoppers import Shoppers
from tests.helpers import event as ev
from tests.helpers import latest_values as latest
from ws_gateway.email_content import content_table

pytestmark = pytest.mark.unit
TZ = "Europe/Berlin"
H = 3_600_000
DAY = 24 * H
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)  # a Monday, 10:00 in Berlin


def sent(t: int, customer: str, campaign: str = "spring") -> Event:
    return ev(Kind.EMAIL_SENT, t, name="sent", campaign=campaign, store="mail", customer=customer, source=Source.EMAIL_CAMPAIGN)


def mail(t: int, name: str, campaign: str = "spring", automation: bool = False, **kw: Any) -> Event:
    kw.setdefault("customer", "c1")
    return ev(Kind.EMAIL_ENGAGED, t, name=name, campaign=campaign, store="mail",
              source=Source.AUTOMATION if automation else Source.EMAIL_CAMPAIGN, **kw)


def test_a_day_counts_distinct_openers_and_clickers() -> None:
    b = EmailEngagement("o", TZ)
    out = b.apply_all([mail(T0, "open"), mail(T0 + H, "open"),  # the same person twice: one opener
                       mail(T0 + 2 * H, "click", customer="c2"),  # a click alone: opened too
                       mail(T0 + 3 * H, "click"), mail(T0, "open", customer=None, visitor="v9"),
                       mail(T0 + DAY, "open"),  # the next day counts on its own
                       mail(T0, "click", campaign="welcome", automation=True)])
    assert latest(out) == {
        ("email_day", "mail|2026-03-02|spring"): EmailDay("mail", "spring", "campaign", opened=3, clicked=2, last=T0 + 3 * H),
        ("email_day", "mail|2026-03-03|spring"): EmailDay("mail", "spring", "campaign", opened=1, clicked=0, last=T0 + DAY),
        ("email_day", "mail|2026-03-02|welcome"): EmailDay("mail", "welcome", "automation", opened=1, clicked=1, last=T0),
    }
    same = mail(T0 + 3 * H, "click")
    assert b.apply(same) == [] and b.apply(same) == []  # nothing new: no record
    assert b.apply(mail(T0, "open", campaign=None)) == [] and b.apply(ev(Kind.PAGE_VIEWED, T0, customer="c1")) == []


def test_sends_count_distinct_recipients_on_their_own_day() -> None:
    b = EmailEngagement("o", TZ)
    out = b.apply_all([sent(T0 - DAY, "c1"), sent(T0 - DAY + H, "c2"), sent(T0 - DAY + H, "c2"), mail(T0, "open")])
    assert latest(out) == {
        ("email_day", "mail|2026-03-01|spring"): EmailDay("mail", "spring", "campaign", opened=0, clicked=0, last=0, sent=2,
                                                           last_sent=T0 - DAY + H),
        ("email_day", "mail|2026-03-02|spring"): EmailDay("mail", "spring", "campaign", opened=1, clicked=0, last=T0),
    }


def test_a_send_makes_no_profile_and_moves_no_segment() -> None:
    """An e-mail sent is the shop's doing: the customer is not "first seen" nor active by it."""
    version = Version()
    shoppers = Shoppers("o", TZ, version=version)
    segments = Membership("o", TZ, "EUR", predefined_segments(), version)
    out = segment_step(segments, shoppers, sent(T0, "c-new"))
    assert [r.kind for r in out] == [RecordKind.EMAIL_DAY]
    assert [r.kind for r in segment_step(segments, shoppers, ev(Kind.PAGE_VIEWED, T0, customer="c-new"))].count(
        RecordKind.CUSTOMER) == 1  # the control: an event of the customer's own makes the profile


def test_days_are_dropped_behind_the_watermark_and_late_engagement_is_not_counted() -> None:
    b = EmailEngagement("o", TZ, keep_ms=DAY)
    b.apply(mail(T0, "open"))
    assert b.held() == {"days": 1, "persons": 1}
    b.advance(T0 + 3 * DAY)
    assert b.held() == {"days": 0, "persons": 0}
    assert b.apply(mail(T0, "click")) == []  # its day is gone: counting it would restart the day at 1
    assert b.apply(mail(T0 + 2 * DAY, "click")) != []


def test_the_shoppers_fold_engagement_and_an_older_snapshot_gets_the_book() -> None:
    s = Shoppers("o", TZ, version=Version(10))
    out = s.apply(mail(T0, "open"))
    assert [r.kind for r in out] == [RecordKind.EMAIL_DAY, RecordKind.CUSTOMER] and out[0].version == 11
    old = pickle.loads(pickle.dumps(s))
    del old.__dict__["email"]  # as pickled before the book existed: the class default None
    assert old.email is None
    assert [r.value for r in old.apply(mail(T0 + H, "click", customer="c3")) if r.kind == RecordKind.EMAIL_DAY] == [
        EmailDay("mail", "spring", "campaign", opened=1, clicked=1, last=T0 + H)]


def test_the_content_table_sums_days_and_joins_attributed_money() -> None:
    def rec(day: str, campaign: str, type_: str, opened: int, clicked: int, last: int, store: str = "mail",
            sent: int = 0, last_sent: int = 0) -> Record[EmailDay]:
        return Record("o", 1, RecordKind.EMAIL_DAY, f"{store}|{day}|{campaign}", day,
                      EmailDay(store, campaign, type_, opened=opened, clicked=clicked, last=last, sent=sent, last_sent=last_sent))
    days = [rec("2026-03-01", "spring", "campaign", 0, 0, 0, sent=60, last_sent=T0 - DAY),
            rec("2026-03-02", "spring", "campaign", 10, 3, T0), rec("2026-03-03", "spring", "campaign", 5, 1, T0 + DAY),
            rec("2026-03-02", "welcome", "automation", 4, 4, T0 + H), rec("2026-03-02", "other", "campaign", 9, 9, T0, store="x")]
    money = [{"campaign": "welcome", "orders": 2, "revenue": {"amount": 5000, "currency": "EUR", "exponent": 2}},
             {"campaign": "gone", "orders": 1, "revenue": {"amount": 100, "currency": "EUR", "exponent": 2}}]
    got = content_table(days, money, store="mail", currency="EUR", tz=ZoneInfo(TZ))
    zero = {"amount": 0, "currency": "EUR", "exponent": 2}
    assert got == [
        {"campaign": "welcome", "type": "automation", "last_sent": None, "last_engaged": "2026-03-02T11:00:00.000+01:00",
         "sent": 0, "opened": 4, "clicked": 4, "open_rate": None, "click_rate": None, "click_to_open_rate": 1.0, "orders": 2,
         "revenue": money[0]["revenue"]},
        {"campaign": "gone", "type": None, "last_sent": None, "last_engaged": None, "sent": 0, "opened": 0, "clicked": 0,
         "open_rate": None, "click_rate": None, "click_to_open_rate": None, "orders": 1, "revenue": money[1]["revenue"]},
        {"campaign": "spring", "type": "campaign", "last_sent": "2026-03-01T10:00:00.000+01:00",
         "last_engaged": "2026-03-03T10:00:00.000+01:00", "sent": 60, "opened": 15, "clicked": 4, "open_rate": 0.25,
         "click_rate": 0.066667, "click_to_open_rate": 0.266667, "orders": 0, "revenue": zero},
    ]
