"""The daily/weekly digest (core/digest.py) and its words in five languages (core/digest_text.py)."""

from __future__ import annotations

from datetime import date, timedelta

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.changes import Bucket, Record
from core.digest import Digest, InsightKind, Measure, Quota, SegmentMove, Span, compute_digest, spans
from core.digest_text import render_digest
from core.figures import compute_figures
from core.rates import MissingRate, parse_ecb_csv
from core.records import CartDay, Order, RecordKind

pytestmark = pytest.mark.unit

TUESDAY = date(2026, 12, 1)
RATES = parse_ecb_csv("Date,USD,JPY,\n2026-12-01,1.1000,160.00,\n")


def bucket(day: str, gross: int, paid: int, refunds: int = 0, currency: str = "EUR", store: str = "s1") -> Bucket:
    return Bucket("acme", 1, "day", day, store, currency, gross, refunds, paid, paid, paid)


def order(day: str, n: int, items: list[list[object]], currency: str = "EUR", cancelled: bool = False) -> Record[Order]:
    value = Order("s1", f"o{n}", "c1", "web", 0, 1, currency, 0, 0, cancelled, msgspec.Raw(orjson.dumps(items)))
    return Record("acme", 1, RecordKind.ORDER, value.order, day, value)


def cart_day(day: str, carts: int, abandoned: int) -> Record[CartDay]:
    value = CartDay("s1", "EUR", carts, 0, 0, 0, abandoned, 0, 0, 0, 0, 0)
    return Record("acme", 1, RecordKind.CART_DAY, f"s1|{day}|EUR", day, value)


def plain(text: str) -> str:
    """CLDR puts no-break spaces inside numbers and amounts ("1.010,00\u00a0€", French "1\u202f010"), so that a
    line never breaks inside an amount: the expectations below are written with plain spaces."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def tuesday_digest() -> Digest:
    days = {"2026-12-01": (100000, 10, 5000), "2026-11-24": (130000, 13, 0), "2026-11-17": (130000, 13, 0),
            "2026-11-10": (130000, 12, 0), "2026-11-03": (130000, 14, 0),
            "2026-11-30": (999999, 99, 0), "2026-10-27": (999999, 99, 0)}  # Monday, and a fifth Tuesday: not read
    buckets = [bucket(d, *v) for d, v in days.items()] + [bucket("2026-12-01", 1100, 1, currency="USD", store="s2")]
    orders = [order("2026-12-01", 1, [["sku-1", 2, 25000, "Blue mug"], ["sku-2", 1, 1000, ""]]),
              order("2026-12-01", 2, [["sku-1", 1, 25000, "Blue mug"], ["sku-3", 3, 500, "Tea"]]),
              order("2026-12-01", 3, [["sku-4", 1, 99900, "Cancelled"]], cancelled=True),
              order("2026-11-30", 4, [["sku-9", 9, 9999, "Monday's"]])]
    carts = [cart_day("2026-12-01", 40, 25), cart_day("2026-11-24", 40, 16), cart_day("2026-11-17", 40, 16)]
    return compute_digest("acme", Span.DAY, TUESDAY, currency="EUR", buckets=buckets, orders=orders, cart_days=carts,
                          rates=RATES, quota=Quota(860, 1000),
                          segments=[SegmentMove("vip", 3, 1), SegmentMove("quiet", 0, 0), SegmentMove("lapsed", 0, 7)])


def test_a_day_is_compared_with_the_same_weekday_of_the_four_weeks_before() -> None:
    d = tuesday_digest()
    assert spans(Span.DAY, TUESDAY) == [("2026-12-01", "2026-12-01"), ("2026-11-24", "2026-11-24"),
                                        ("2026-11-17", "2026-11-17"), ("2026-11-10", "2026-11-10"),
                                        ("2026-11-03", "2026-11-03")]
    # 1,000.00 EUR + 11.00 USD at 1.10 = 1,010.00 EUR; the baseline is the mean of four 1,300.00 Tuesdays
    assert d.revenue == Measure(101000, 130000, -22)  # -22.3 %
    assert d.net_revenue == Measure(96000, 130000, -26)  # minus the 50.00 refunded that day
    assert d.orders == Measure(11, 13, -15)
    assert d.aov == Measure(9182, 10030, -8)  # 1,010.00 / 11; mean of 100.00, 100.00, 108.33, 92.86
    # 25 of 40 carts abandoned (62.5 %) against 40.0 % (the two Tuesdays with carts: a rate needs carts)
    assert (d.carts, d.abandoned, d.abandonment) == (40, 25, Measure(625, 400, 56))
    assert [(p.product, p.name, p.units, p.revenue) for p in d.top_products] == [
        ("sku-1", "Blue mug", 3, 75000), ("sku-3", "Tea", 3, 1500), ("sku-2", "", 1, 1000)]
    assert [(s.segment, s.entered, s.exited) for s in d.segments] == [("lapsed", 0, 7), ("vip", 3, 1)]
    assert [(i.kind, i.percent) for i in d.insights] == [
        (InsightKind.REVENUE_DOWN, 22), (InsightKind.ORDERS_DOWN, 15), (InsightKind.ABANDONMENT_UP, 23),
        (InsightKind.TOP_PRODUCT, 74), (InsightKind.QUOTA, 86)]


def test_the_english_digest_reads_exactly() -> None:
    text = render_digest(tuesday_digest(), "en", "Acme")
    assert text.subject == "Acme: December 1, 2026 — €1,010.00 revenue, 11 orders"
    assert text.text == """\
Revenue: €1,010.00 (−22% against the average of the last four Tuesdays: €1,300.00)
Net revenue: €960.00 (−26% against the average of the last four Tuesdays: €1,300.00)
Orders: 11 (−15% against the average of the last four Tuesdays: 13)
Average order value: €91.82 (−8% against the average of the last four Tuesdays: €100.30)
Carts: 40, abandoned: 25 (62.5%)
Top products:
  1. Blue mug: 3 units, €750.00
  2. Tea: 3 units, €15.00
  3. sku-2: 1 unit, €10.00
Segments: lapsed +0 −7, vip +3 −1
Paid orders in the last 30 days: 860 of 1,000

What stands out:
- Revenue was 22% below the average of the last four Tuesdays.
- 15% fewer orders than the average of the last four Tuesdays.
- Cart abandonment rose by 23 points against the average of the last four Tuesdays.
- Blue mug made 74% of the revenue.
- 86% of the plan's 1,000 paid orders in 30 days are used.
"""


def test_the_german_digest_reads_exactly() -> None:
    text = render_digest(tuesday_digest(), "de_DE", "Acme")
    assert "1.010,00\u00a0€" in text.subject
    assert plain(text.subject) == "Acme: 1. Dezember 2026 — 1.010,00 € Umsatz, 11 Bestellungen"
    assert plain(text.text).splitlines()[:5] == [
        "Umsatz: 1.010,00 € (−22 % gegenüber dem Durchschnitt der letzten vier Dienstage: 1.300,00 €)",
        "Nettoumsatz: 960,00 € (−26 % gegenüber dem Durchschnitt der letzten vier Dienstage: 1.300,00 €)",
        "Bestellungen: 11 (−15 % gegenüber dem Durchschnitt der letzten vier Dienstage: 13)",
        "Durchschnittlicher Bestellwert: 91,82 € (−8 % gegenüber dem Durchschnitt der letzten vier Dienstage: 100,30 €)",
        "Warenkörbe: 40, abgebrochen: 25 (62,5 %)",
    ]
    assert tuple(map(plain, text.insights)) == (
        "Der Umsatz lag 22 % unter dem Durchschnitt der letzten vier Dienstage.",
        "Die Zahl der Bestellungen lag 15 % unter dem Durchschnitt der letzten vier Dienstage.",
        "Die Abbruchrate der Warenkörbe stieg um 23 Punkte gegenüber dem Durchschnitt der letzten vier Dienstage.",
        "Blue mug brachte 74 % des Umsatzes.",
        "86 % der 1.000 bezahlten Bestellungen in 30 Tagen Ihres Tarifs sind verbraucht.",
    )


@pytest.mark.parametrize(("locale", "subject", "first_insight"), [
    ("es", "Acme: 1 de diciembre de 2026 — 1.010,00 € de ingresos, 11 pedidos",
     "Los ingresos fueron un 22 % inferiores a la media de los últimos cuatro martes."),
    ("fr-FR", "Acme : 1 décembre 2026 — 1 010,00 € de chiffre d’affaires, 11 commandes",
     "Le chiffre d’affaires était inférieur de 22 % à la moyenne des quatre derniers mardis."),
    ("it_IT", "Acme: 1 dicembre 2026 — 1.010,00 € di fatturato, 11 ordini",
     "Il fatturato è stato del 22% inferiore alla media degli ultimi quattro martedì."),
    ("pt_BR", "Acme: December 1, 2026 — €1,010.00 revenue, 11 orders",  # no Portuguese catalogue: English
     "Revenue was 22% below the average of the last four Tuesdays."),
])
def test_each_language_has_its_own_words_and_number_formats(locale: str, subject: str, first_insight: str) -> None:
    text = render_digest(tuesday_digest(), locale, "Acme")
    assert (plain(text.subject), plain(text.insights[0])) == (subject, first_insight)


def test_weekday_plurals_agree_in_every_language() -> None:
    sunday = date(2026, 11, 29)  # 20.00 against one Sunday of 10.00 and three empty ones: a baseline of 2.50
    d = compute_digest("acme", Span.DAY, sunday, currency="EUR",
                       buckets=[bucket("2026-11-22", 1000, 1), bucket("2026-11-29", 2000, 2)])
    assert plain(render_digest(d, "it").insights[0]) == "Il fatturato è stato del 700% superiore alla media delle ultime " \
                                                 "quattro domeniche."
    assert plain(render_digest(d, "es").insights[0]) == "Los ingresos fueron un 700 % superiores a la media de los últimos " \
                                                 "cuatro domingos."
    assert plain(render_digest(d, "de").insights[0]) == "Der Umsatz lag 700 % über dem Durchschnitt der letzten vier Sonntage."


def test_a_week_is_compared_with_the_four_weeks_before() -> None:
    buckets = [bucket((TUESDAY - timedelta(days=n)).isoformat(), 1000, 1) for n in range(35)]
    d = compute_digest("acme", Span.WEEK, TUESDAY, currency="EUR", buckets=buckets)
    assert (d.first, d.last) == ("2026-11-25", "2026-12-01")
    assert spans(Span.WEEK, TUESDAY)[-1] == ("2026-10-28", "2026-11-03")
    assert d.revenue == Measure(7000, 7000, 0) and d.orders == Measure(7, 7, 0) and d.insights == ()
    text = render_digest(d, "en")
    assert text.subject == "acme: week to December 1, 2026 — €70.00 revenue, 7 orders"
    assert text.text.splitlines()[0] == "Revenue: €70.00 (the same as the average of the previous four weeks)"


def test_a_silent_day_says_to_check_the_shop_and_a_new_shop_has_nothing_to_compare() -> None:
    silent = compute_digest("acme", Span.DAY, TUESDAY, currency="EUR", buckets=[bucket("2026-11-24", 4800, 4)])
    assert silent.orders == Measure(0, 1, -100)
    assert [(i.kind, i.baseline) for i in silent.insights] == [(InsightKind.NO_ORDERS, 1)]
    assert tuple(map(plain, render_digest(silent, "fr").insights)) == (
        "Aucune commande payée, contre 1 en moyenne : vérifiez la boutique et ses webhooks.",)
    new = compute_digest("acme", Span.DAY, TUESDAY, currency="EUR", buckets=[bucket("2026-12-01", 4800, 4)])
    assert new.revenue == Measure(4800, 0, None) and new.insights == ()
    assert render_digest(new, "en").text.splitlines()[0] == "Revenue: €48.00 (nothing to compare with yet)"


def test_money_keeps_each_currency_s_exponent() -> None:
    yen = compute_digest("acme", Span.DAY, TUESDAY, currency="JPY", buckets=[bucket("2026-12-01", 1234567, 3, currency="JPY")])
    assert plain(render_digest(yen, "de").text).splitlines()[0] == "Umsatz: 1.234.567 ¥ (noch kein Vergleich möglich)"
    dinar = compute_digest("acme", Span.DAY, TUESDAY, currency="KWD", buckets=[bucket("2026-12-01", 1234567, 3, currency="KWD")])
    assert plain(render_digest(dinar, "en").text).splitlines()[0] == "Revenue: KWD 1,234.567 (nothing to compare with yet)"
    # a USD order in a JPY digest converts at the day's rate (1 EUR = 1.10 USD = 160 JPY): 11.00 USD = 1,600 JPY
    mixed = compute_digest("acme", Span.DAY, TUESDAY, currency="JPY", rates=RATES,
                           buckets=[bucket("2026-12-01", 1100, 1, currency="USD")])
    assert mixed.revenue.value == 1600


def test_a_missing_rate_is_an_error_naming_it() -> None:
    with pytest.raises(MissingRate, match="no exchange rate for USD to EUR on 2026-12-01"):
        compute_digest("acme", Span.DAY, TUESDAY, currency="EUR", buckets=[bucket("2026-12-01", 1100, 1, currency="USD")])


def test_the_payload_is_plain_json() -> None:
    payload = tuesday_digest().to_json()
    assert orjson.loads(orjson.dumps(payload)) == payload
    assert payload["revenue"] == {"value": 101000, "baseline": 130000, "change": -22}
    assert (payload["currency"], payload["exponent"]) == ("EUR", 2)
    assert payload["insights"][3] == {"kind": "top_product", "percent": 74, "subject": "Blue mug", "baseline": 0}


day_buckets = st.lists(st.tuples(st.integers(0, 34), st.sampled_from(["s1", "s2"]), st.integers(0, 10**9),
                                 st.integers(0, 10**6), st.integers(0, 50)), max_size=40)


@given(day_buckets)
def test_each_span_sums_what_the_figures_api_sums(rows: list[tuple[int, str, int, int, int]]) -> None:
    """An independent check: every figure of the digest is compute_figures over the same days."""
    merged: dict[tuple[str, str], tuple[int, int, int]] = {}
    for offset, store, gross, refunds, paid in rows:  # one bucket per (day, store), as the read model holds them
        merged[((TUESDAY - timedelta(days=offset)).isoformat(), store)] = (gross, refunds, paid)
    buckets = [bucket(day, g, p, r, store=s) for (day, s), (g, r, p) in merged.items()]
    d = compute_digest("acme", Span.WEEK, TUESDAY, currency="EUR", buckets=buckets)
    figures = [compute_figures(buckets, first=a, last=b, currency="EUR") for a, b in spans(Span.WEEK, TUESDAY)]
    assert d.revenue.value == figures[0].gross_revenue.amount
    assert d.net_revenue.value == figures[0].net_revenue.amount
    assert d.orders.value == figures[0].paid_orders
    assert sum(f.gross_revenue.amount for f in figures[1:]) - 4 * d.revenue.baseline in range(-2, 3)


def test_a_digest_is_a_schedule_s_option_and_names_its_day() -> None:
    from core.automations.definition import DefinitionError, parse_automation
    from core.digest import digest_payload

    a = parse_automation("morning", {"trigger": "schedule", "schedule": {"at": "07:30"}, "digest": "week", "send": ["ops"]},
                         "orgs.acme.automations.morning", currency="EUR", timezone="Europe/Berlin")
    assert a.digest == "week" and a.to_json()["digest"] == "week"
    for table, problem in (({"trigger": "order.paid", "digest": "day", "send": ["ops"]}, "with trigger"),
                           ({"trigger": "schedule", "schedule": {"at": "07:30"}, "digest": "month", "send": ["ops"]}, "'month'")):
        with pytest.raises(DefinitionError) as e:
            parse_automation("x", table, "orgs.acme.automations.x", currency="EUR", timezone="Europe/Berlin")
        assert e.value.path == "orgs.acme.automations.x.digest" and problem in e.value.problem
    # fired at 00:00 Berlin on Tuesday 1 December (23:00 UTC on the 30th): the day before is Monday 30 November
    assert digest_payload("day", 1_796_079_600_000, "Europe/Berlin") == {"digest": "day", "last": "2026-11-30"}
    assert digest_payload(None, 1_796_079_600_000, "Europe/Berlin") == {}
