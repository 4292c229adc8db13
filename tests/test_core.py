"""The pure core: money, config, canonical events, figures over periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import Raw

from core.automation_records import AutomationDefinition
from core.changes import DAY, HOUR, Bucket, Change, Record, changes_from_json, record_from_json, value_from_json
from core.config import ConfigError, parse_config
from core.events import Event, Item, Kind, SchemaError, Source, event_from_json
from core.figures import (
    PERIODS,
    BadPeriod,
    Figures,
    MissingRate,
    compute_figures,
    dashboard_figures,
    parse_until,
    resolve_period,
    series,
)
from core.money import EXPONENTS, Money, divide_half_up, exponent, to_minor
from core.rates import RatesFileError, convert, parse_ecb_csv
from core.records import (
    AbandonedProduct,
    Attribution,
    Cart,
    CartDay,
    Customer,
    CustomerMoney,
    EmailDay,
    JourneyDay,
    Late,
    LateBook,
    OpenCarts,
    Order,
    OrderAttribution,
    Quarantined,
    QuotaAlert,
    RecordKind,
    Value,
    value_types,
)
from core.segment_records import Segment, SegmentChange, SegmentClock, SegmentMember

pytestmark = pytest.mark.unit  # pure domain tests, in-process: `pytest -m unit` runs them alone


def test_iso_exponents() -> None:
    assert (exponent("JPY"), exponent("EUR"), exponent("KWD"), exponent("CLF")) == (0, 2, 3, 4)
    assert len(EXPONENTS) > 150
    with pytest.raises(ValueError, match="unknown currency 'EURO'"):
        exponent("EURO")


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [("12.34", "EUR", 1234), ("0.01", "EUR", 1), ("007.50", "EUR", 750), ("1.234", "KWD", 1234), ("1980", "JPY", 1980),
     ("-5000.00", "EUR", -500000), (Decimal("0.1"), "USD", 10), (7, "GBP", 700), (-7, "GBP", -700)],
)
def test_to_minor_is_exact(value: object, currency: str, minor: int) -> None:
    assert to_minor(value, currency) == minor  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0.001", "0.005", "1_000", "\u0665", "1e2", " 1", "1 ", "+1", "NaN", "Infinity", "1.",
                                   ".5", "1,5", "0x10", "", "-", "1.2.3", "\uff11", "1\n"])
def test_to_minor_refuses_what_is_not_a_plain_amount_of_the_currency(value: str) -> None:
    with pytest.raises(ValueError, match="not a plain decimal amount|has more decimals than EUR has"):
        to_minor(value, "EUR")


@pytest.mark.parametrize(("value", "currency"), [("1.5", "JPY"), ("1.0", "JPY"), ("12.3456", "KWD"), (Decimal("0.005"), "EUR")])
def test_more_decimals_than_the_currency_has_are_refused_by_default(value: object, currency: str) -> None:
    with pytest.raises(ValueError, match=f"has more decimals than {currency} has"):
        to_minor(value, currency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "currency", "extra", "minor"),
    [("10.000", "EUR", "zeros", 1000), ("1980.00", "JPY", "zeros", 1980), ("0.005", "EUR", "round", 1),
     ("-0.005", "EUR", "round", -1), ("1.2345", "KWD", "round", 1235), ("19.5", "JPY", "round", 20),
     ("0.0049", "EUR", "round", 0), (Decimal("0.125"), "EUR", "round", 13), (Decimal("1E-40"), "EUR", "round", 0)],
)
def test_extra_decimals_where_an_adapter_asks(value: object, currency: str, extra: str, minor: int) -> None:
    assert to_minor(value, currency, extra) == minor  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has more decimals"):
        to_minor(value, currency)  # type: ignore[arg-type]


def test_extra_decimals_that_are_not_zeros_are_refused_under_zeros() -> None:
    with pytest.raises(ValueError, match="'10.001' has more decimals than EUR has"):
        to_minor("10.001", "EUR", "zeros")


def test_to_minor_refuses_floats() -> None:
    with pytest.raises(TypeError):
        to_minor(0.1, "EUR")  # type: ignore[arg-type]


@given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
def test_divide_half_up_matches_decimal(n: int, d: int) -> None:
    from decimal import ROUND_HALF_UP

    assert divide_half_up(n, d) == int((Decimal(n) / Decimal(d)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_money_str() -> None:
    assert str(Money(12345, "KWD")) == "12.345 KWD" and str(Money(5, "JPY")) == "5 JPY"


@given(st.integers(0, 2**62), st.text(min_size=1, max_size=20), st.lists(st.integers(1, 1000), max_size=3))
def test_event_json_round_trip(amount: int, customer: str, qtys: list[int]) -> None:
    e = Event(id="stripe:s:evt_1", kind=Kind.ORDER_PAID, org="o", store="s", time=1_700_000_000_123, amount=amount,
              currency="EUR", customer=customer, order="pi_1", items=tuple(Item(f"p{q}", q, q * 3) for q in qtys),
              source=Source.EMAIL_CAMPAIGN, raw_id="pi_1")
    assert event_from_json(e.to_json()) == e


def test_event_of_unknown_schema_version_is_refused() -> None:
    with pytest.raises(SchemaError, match="version 99"):
        event_from_json(b'{"v": 99}')


GOOD = """
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "0123456789abcdef"
[orgs.acme.stores.shop1]
provider = "stripe"
secret = "env:SHOP1"
"""


def test_config_parses_and_reads_secrets_from_env() -> None:
    config = parse_config(GOOD, {"SHOP1": "whsec_x"})
    store = config.store("shop1")
    assert store is not None and (store.org, store.provider, store.secret, store.currency) == ("acme", "stripe", "whsec_x", "EUR")
    assert config.org_for_token("0123456789abcdef").id == "acme"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (GOOD, {}, "orgs.acme.stores.shop1.secret: environment variable 'SHOP1' is not set"),
        (GOOD.replace("Europe/Berlin", "Europe/Berln"), {"SHOP1": "x"}, "orgs.acme.timezone: 'Europe/Berln' is not a known IANA time zone"),
        (GOOD.replace('"EUR"', '"EURO"'), {"SHOP1": "x"}, "orgs.acme.currency: 'EURO' is not an ISO 4217 currency code"),
        (GOOD.replace('"stripe"', '"paypal"'), {"SHOP1": "x"}, "orgs.acme.stores.shop1.provider: 'paypal' is not one of"),
        (GOOD.replace('token = "0123456789abcdef"', 'token = "short"'), {"SHOP1": "x"}, "orgs.acme.token: must be at least 16"),
        (GOOD.replace('currency = "EUR"\n', ""), {"SHOP1": "x"}, "orgs.acme.currency: missing"),
        (GOOD + '[orgs.beta]\ncurrency = "EUR"\ntoken = "fedcba9876543210"\n[orgs.beta.stores.shop1]\nprovider = "stripe"\nsecret = "s"\n',
         {"SHOP1": "x"}, "orgs.beta.stores.shop1: store id is also used by orgs.acme"),
        ("[orgs", {}, "not valid TOML"),
        ("", {}, "orgs: missing"),
        ("orgs = 1", {}, "orgs: must be a table of [orgs.NAME] tables"),
        (GOOD.replace('currency = "EUR"\n', 'currency = "EUR"\ncolour = "red"\n'), {"SHOP1": "x"},
         "orgs.acme: unknown key(s) ['colour']; the keys are timezone, currency, token, abandon_after, plan_limit, "
         "allowed_lateness, stores, segments, channels, locale, automations, product_segments"),
        (GOOD.replace('currency = "EUR"\n', 'currency = "EUR"\nabandon_after = 10\n'), {"SHOP1": "x"},
         "orgs.acme.abandon_after: minutes from 30 to 180, got 10"),
        (GOOD.replace('"Europe/Berlin"', "5"), {"SHOP1": "x"}, "orgs.acme.timezone: must be a non-empty string, got 5"),
        ("x = 1\n" + GOOD, {"SHOP1": "x"}, "top level: unknown key(s) ['x']; the keys are orgs, rates_file"),
    ],
)
def test_bad_config_names_the_key(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env)
    assert message in str(exc.value)


BERLIN = ZoneInfo("Europe/Berlin")


def day(d: str, gross: int, refunds: int = 0, orders: int = 0, store: str = "s", currency: str = "EUR", items: int = 0) -> Bucket:
    return Bucket("o", 1, DAY, d, store, currency, gross, refunds, orders, orders, items)


def figs(buckets: list[Bucket], period: str, today: date, store: str | None = None, **kw: object) -> Figures:
    first, last = resolve_period(period, None, None, today)
    return compute_figures(buckets, first=first, last=last, currency=kw.pop("currency", "EUR"), store=store, **kw)


def test_periods_end_today_inclusive() -> None:
    days = [day("2026-11-22", 1000, 100, 2, items=3), day("2026-11-21", 40, 0, 1), day("2026-11-16", 500, 0, 1),
            day("2026-11-15", 300, 0, 1), day("2026-10-24", 7, 0, 1), day("2026-10-23", 11, 0, 1),
            day("2026-08-25", 13, 0, 1), day("2026-08-24", 17, 0, 1), day("2026-11-22", 9, 0, 1, store="t")]
    today = date(2026, 11, 22)
    assert figs(days, "today", today, "s").gross_revenue == Money(1000, "EUR")
    assert figs(days, "today", today).paid_orders == 3
    assert figs(days, "yesterday", today).gross_revenue.amount == 40
    assert figs(days, "7d", today, "s").gross_revenue.amount == 1540
    assert figs(days, "30d", today, "s").gross_revenue.amount == 1847
    assert figs(days, "90d", today, "s").gross_revenue.amount == 1871  # from 08-25: + 11 + 13
    assert figs(days, "all", today).gross_revenue.amount == 1897
    t = figs(days, "today", today, "s")
    assert (t.refunds.amount, t.net_revenue.amount, t.aov.amount, t.items_sold) == (100, 900, 500, 3)
    assert resolve_period(None, "2026-11-15", "2026-11-16", today) == ("2026-11-15", "2026-11-16")
    with pytest.raises(BadPeriod, match="after"):
        resolve_period(None, "2026-11-17", "2026-11-16", today)
    with pytest.raises(BadPeriod, match="period must be one of"):
        resolve_period("week", None, None, today)


def test_aov_rounds_half_up_and_is_zero_without_orders() -> None:
    today = date(2026, 11, 22)
    assert figs([day("2026-11-22", 1001, 0, 2)], "today", today).aov.amount == 501
    assert figs([], "today", today).aov == Money(0, "EUR")


def test_other_currency_without_a_rate_is_left_out_and_named_on_the_figure() -> None:
    with pytest.raises(MissingRate, match="USD to EUR on 2026-11-22"):
        convert(None, 1, "USD", "EUR", "2026-11-22")
    f = figs([day("2026-11-22", 1, currency="USD", orders=1), day("2026-11-22", 5, orders=1)], "all", date(2026, 11, 22))
    assert f.gross_revenue.amount == 5 and f.paid_orders == 2  # the USD amount is left out, its order still counts
    assert f.to_json()["gross_revenue"]["missing_rates"] == [
        {"currency": "USD", "days": 1, "first": "2026-11-22", "last": "2026-11-22"}]


ECB = """Date,USD,JPY,GBP,KWD,
2026-11-20,1.0500,160.12,0.8700,N/A,
2026-11-19,1.0400,159.00,N/A,0.3201,
"""


def test_rates_convert_exactly_at_the_day_with_carry_forward() -> None:
    rates = parse_ecb_csv(ECB)
    assert rates.convert(10_000, "USD", "EUR", "2026-11-20") == 9524  # 100 / 1.05 = 95.238...
    assert rates.convert(10_000, "USD", "EUR", "2026-11-22") == 9524  # weekend: Friday's rate carries
    assert rates.convert(10_000, "USD", "EUR", "2026-11-19") == 9615
    assert rates.convert(1_000, "EUR", "JPY", "2026-11-20") == 1601  # 10 EUR = 1601.2 yen
    assert rates.convert(1_000, "GBP", "USD", "2026-11-20") == 1207  # 10 * 1.05 / 0.87 = 12.0689...
    assert rates.convert(1_000, "KWD", "EUR", "2026-11-20") == 312  # N/A on the 20th: the 19th's rate
    with pytest.raises(MissingRate, match="no exchange rate for GBP on or before 2026-11-19"):
        rates.convert(1, "GBP", "EUR", "2026-11-19")
    with pytest.raises(MissingRate, match="CHF"):
        rates.convert(1, "CHF", "EUR", "2026-11-20")


def test_figures_in_another_currency_convert_each_day_at_its_rate() -> None:
    rates = parse_ecb_csv(ECB)
    days = [day("2026-11-19", 10_400, currency="USD", orders=1), day("2026-11-20", 10_500, currency="USD", orders=1),
            day("2026-11-20", 500, orders=1)]
    f = figs(days, "all", date(2026, 11, 22), rates=rates)
    assert f.gross_revenue == Money(10_000 + 10_000 + 500, "EUR")
    f_usd = figs(days, "all", date(2026, 11, 22), rates=rates, currency="USD")
    assert f_usd.gross_revenue == Money(10_400 + 10_500 + 525, "USD")


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"), ("Day,USD\n", "first column"), ("Date,XYZ\n", "unknown currency column"),
    ("Date,USD\n2026-1-1,1\n", "not YYYY-MM-DD"), ("Date,USD\n2026-01-01,abc\n", "not a number"),
])
def test_bad_rates_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RatesFileError, match=message):
        parse_ecb_csv(text)


def test_hourly_series_is_labelled_in_local_time_across_dst() -> None:
    # 2026-03-29: Berlin springs forward at 01:00 UTC; the local day has 23 hours.
    hours = [Bucket("o", 1, HOUR, "2026-03-29T00", "s", "EUR", 100, 0, 1, 1, 1),
             Bucket("o", 1, HOUR, "2026-03-29T01", "s", "EUR", 250, 0, 1, 1, 2)]
    points = series(hours, metric="gross_revenue", grain=HOUR, first="2026-03-29", last="2026-03-29", tz=BERLIN, currency="EUR")
    assert len(points) == 23
    assert points[1] == ("2026-03-29T01:00:00+01:00", 100)
    assert points[2] == ("2026-03-29T03:00:00+02:00", 250)
    days = [day("2026-03-28", 5, orders=1), day("2026-03-30", 7, orders=1)]
    assert series(days, metric="paid_orders", grain=DAY, first="2026-03-28", last="2026-03-30", tz=BERLIN, currency="EUR") == [
        ("2026-03-28", 1), ("2026-03-29", 0), ("2026-03-30", 1)]


def test_a_series_has_no_value_for_what_has_not_begun() -> None:
    # 02:30 UTC = 04:30 CEST: the hour 04:00 has begun, 05:00 not; an order dated later still shows
    hours = [Bucket("o", 1, HOUR, "2026-03-29T01", "s", "EUR", 250, 0, 1, 1, 2),
             Bucket("o", 1, HOUR, "2026-03-29T05", "s", "EUR", 70, 0, 1, 1, 1)]
    now = datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    points = series(hours, metric="gross_revenue", grain=HOUR, first="2026-03-29", last="2026-03-29", tz=BERLIN,
                    currency="EUR", now=now)
    assert points[:5] == [("2026-03-29T00:00:00+01:00", 0), ("2026-03-29T01:00:00+01:00", 0),
                          ("2026-03-29T03:00:00+02:00", 250), ("2026-03-29T04:00:00+02:00", 0),
                          ("2026-03-29T05:00:00+02:00", None)]
    assert points[6] == ("2026-03-29T07:00:00+02:00", 70) and points[7:] == [(p, None) for p, _ in points[7:]]
    days = [day("2026-03-28", 5, orders=1)]
    assert series(days, metric="paid_orders", grain=DAY, first="2026-03-28", last="2026-03-30", tz=BERLIN, currency="EUR",
                  now=now) == [("2026-03-28", 1), ("2026-03-29", 0), ("2026-03-30", None)]


def test_a_day_so_far_sums_the_hours_of_its_local_days_before_until() -> None:
    # Berlin is UTC+1 in November: local 2026-11-21 is 2026-11-20T23 to 2026-11-21T22 UTC
    def hour(h: str, gross: int, currency: str = "EUR", store: str = "s") -> Bucket:
        return Bucket("o", 1, HOUR, h, store, currency, gross, 1, 1, 1, 2)
    hours = [hour("2026-11-20T22", 1), hour("2026-11-20T23", 10), hour("2026-11-21T12", 100),
             hour("2026-11-21T13", 1000, "USD"), hour("2026-11-21T13", 7, store="t"), hour("2026-11-21T14", 10_000),
             hour("2026-11-21T23", 100_000), day("2026-11-21", 555_555, orders=9)]
    rates = parse_ecb_csv("Date,USD,\n2026-11-20,2.0000,\n2026-11-21,4.0000,\n")  # 1 EUR = 4 USD on the 21st
    until = (parse_until("2026-11-21T14:00:00Z"), BERLIN)
    f = compute_figures(hours, first="2026-11-21", last="2026-11-21", currency="EUR", rates=rates, until=until)
    # 10 (its local day is the 21st) + 100 + 1000 USD / 4 + 7 of store t; not 14:00 nor the day bucket
    assert (f.gross_revenue.amount, f.refunds.amount, f.paid_orders, f.items_sold) == (10 + 100 + 250 + 7, 3, 4, 8)  # 1 USD refund: 0 EUR
    assert compute_figures(hours, first="2026-11-21", last="2026-11-21", currency="EUR", rates=rates, store="s",
                           until=until).gross_revenue.amount == 360
    # the same instant in another offset is the same cut; one hour later takes 14:00 in
    later = (parse_until("2026-11-21T16:00:00+01:00"), BERLIN)
    assert compute_figures(hours, first="2026-11-21", last="2026-11-21", currency="EUR", rates=rates,
                           until=later).gross_revenue.amount == 10_367
    assert compute_figures(hours, first="2026-11-21", last="2026-11-21", currency="EUR", rates=rates).gross_revenue.amount == 555_555


# the hour buckets are UTC hours: in Kolkata (+05:30) a cut falls on a local half hour
@pytest.mark.parametrize("raw", ["2026-11-21T14:30:00Z", "2026-11-21T14:00:00", "2026-11-21T14:00:00.5Z", "yesterday", "",
                                 "2026-11-21T15:00:00+05:30"])
def test_until_is_a_whole_hour_with_its_offset(raw: str) -> None:
    with pytest.raises(BadPeriod, match="until must be a whole hour with its offset"):
        parse_until(raw)
    assert parse_until("2026-11-21T15:30:00.000+05:30") == datetime(2026, 11, 21, 10, tzinfo=UTC)


def test_a_cancelled_append_does_not_stop_the_log_writer(tmp_path) -> None:
    import asyncio

    from state.sqlite_log import SqliteEventLog

    async def go() -> list[bool]:
        log = SqliteEventLog(tmp_path / "log.sqlite3")
        def e(i):
            return Event(id=f"e{i}", kind=Kind.PAGE_VIEWED, org="o", store="s", time=i)
        task = asyncio.ensure_future(log.append([e(1)]))
        await asyncio.sleep(0)
        task.cancel()  # the caller goes away (a webhook sender hung up)
        result = await asyncio.wait_for(log.append([e(2)]), 5)
        await log.close()
        return result

    assert asyncio.run(go()) == [True]


_DASH_RATES = parse_ecb_csv("Date,USD,JPY,\n2026-01-05,1.0500,160.00,\n2026-01-02,1.0400,159.00,\n")
_TODAY = date(2026, 11, 22)
dash_buckets = st.lists(st.builds(
    Bucket, org=st.just("o"), version=st.integers(1, 9), grain=st.sampled_from([DAY, DAY, DAY, HOUR]),
    start=st.integers(-3, 120).map(lambda d: (_TODAY - timedelta(days=d)).isoformat()),
    store=st.sampled_from(["a", "b", "gone"]), currency=st.sampled_from(["EUR", "USD", "JPY"]),
    gross=st.integers(0, 10**9), refunds=st.integers(0, 10**7), orders=st.integers(0, 50),
    paid_orders=st.integers(0, 50), items=st.integers(0, 500)), max_size=60)


@given(dash_buckets, st.sampled_from(["EUR", "USD", "JPY"]))
def test_the_dashboard_is_compute_figures_for_every_period_and_store(buckets: list[Bucket], currency: str) -> None:
    got = dashboard_figures(buckets, today=_TODAY, currency=currency, stores=["a", "b", "quiet"], rates=_DASH_RATES)

    def want(store: str | None) -> dict[str, object]:
        return {p: compute_figures(buckets, first=a, last=z, currency=currency, rates=_DASH_RATES, store=store).to_json()
                for p in PERIODS for a, z in [resolve_period(p, None, None, _TODAY)]}

    assert got == {"total": want(None), "stores": {s: want(s) for s in ["a", "b", "quiet"]}}


@pytest.mark.parametrize("value", ["99999999999999999999", "-99999999999999999999", Decimal("1e999999"), 2**63,
                                   "0" * 5000 + "1" * 20])
def test_an_amount_no_64_bit_integer_of_minor_units_holds_is_refused(value: str | int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        to_minor(value, "USD")
    assert to_minor("92233720368547758.07", "USD") == 2**63 - 1  # the largest that fits


# --- the change feed's records (core/records.py, core/changes.py) ---------------------------------

RECORD_SAMPLES: list[Value] = [
    Order("s", "o1", "c1", "web", 1, 2, "EUR", 2500, 100, False, Raw(b'[["p1",2,1250,"Mug"]]')),
    QuotaAlert(80, 4, 5, 1_000),
    Cart("s", "k1", None, "open", "EUR", 1000, [("p1", 1, 1000)], 1, 2, 3, None),
    CartDay("s", "EUR", 1, 1000, 1, 1000, 0, 0, 0, 0, 0, 0),
    OpenCarts("s", "EUR", 1, 1000),
    AbandonedProduct("s", "p1", 2),
    JourneyDay("s", 3, 2, 1, 0, False),
    Attribution("s", "spring", "EUR", 1, 2500),
    OrderAttribution("s", "o1", None, None, None),
    EmailDay("s", "spring", "campaign", 3, 1, 1_700_000_000_000),
    Customer("c1", "s", None, 1, 1, 5, "a@x.io", None, 1, 2, 2, 2,
             [CustomerMoney("s", "EUR", 1, 2, 2500, 100, 2, 2)]),
    Quarantined("e1", "s", None, None, Raw(b'"not an event"'), "unreadable", "SchemaError: ..."),
    Late("s", {"journey": LateBook(2, 1_000, "e9")}),
    Segment("vip", "VIP", False, Raw(b'{"orders":{"gte":3}}'), 2),
    SegmentClock(1_000),
    SegmentMember("vip", "c1", True, 1_000),
    SegmentChange("vip", "c1", "entered", 1_000, "e1"),
    AutomationDefinition("big-order", Raw(b'{"trigger":"order.paid","send":["ops"]}')),
]


def test_every_record_kind_has_a_class_and_a_sample_here() -> None:
    assert {type(v).KIND for v in RECORD_SAMPLES} == set(RecordKind) == set(value_types())


def test_a_change_feed_message_round_trips_every_kind_and_bucket() -> None:
    changes: list[Change] = [Bucket("o", 1, DAY, "2026-01-01", "s", "EUR", 2500, 0, 1, 1, 2)]
    changes += [Record("o", 2 + i, type(v).KIND, f"k{i}", "2026-01-01", v) for i, v in enumerate(RECORD_SAMPLES)]
    message = b"[" + b",".join(c.to_json() for c in changes) + b"]"
    assert changes_from_json(message) == changes
    for r in changes[1:]:
        assert isinstance(r, Record)
        assert record_from_json(type(r.value), r.to_json()) == r
        assert value_from_json(type(r.value), r.value_json()) == r.value
    assert RECORD_SAMPLES[0].lines() == [("p1", 2, 1250, "Mug")]  # type: ignore[attr-defined]


def test_a_record_kind_this_version_does_not_know_is_left_out_of_the_feed() -> None:
    """A newer dataflow may write a kind the gateway does not know yet: the feed goes on without it."""
    alert = Record("o", 3, RecordKind.QUOTA_ALERT, "80:1", "", QuotaAlert(80, 4, 5, 1))
    message = b'[{"org":"o","version":3,"kind":"a_future_kind","key":"s","day":"","value":{"n":1}},' + alert.to_json() + b"]"
    assert changes_from_json(message) == [alert]
