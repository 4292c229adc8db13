"""The pure core: money, config, canonical events, figures over periods."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import ConfigError, parse_config
from core.events import Event, Item, Kind, SchemaError, Source, event_from_json
from core.figures import DayTotals, MissingRate, compute_figures
from core.money import EXPONENTS, Money, divide_half_up, exponent, to_minor


def test_iso_exponents() -> None:
    assert (exponent("JPY"), exponent("EUR"), exponent("KWD"), exponent("CLF")) == (0, 2, 3, 4)
    assert len(EXPONENTS) > 150
    with pytest.raises(ValueError, match="unknown currency 'EURO'"):
        exponent("EURO")


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [("12.34", "EUR", 1234), ("0.005", "EUR", 1), ("-0.005", "EUR", -1), ("1.2345", "KWD", 1235),
     ("1980", "JPY", 1980), ("19.5", "JPY", 20), (Decimal("0.1"), "USD", 10), (7, "GBP", 700)],
)
def test_to_minor_is_exact_half_up(value: object, currency: str, minor: int) -> None:
    assert to_minor(value, currency) == minor


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
    ],
)
def test_bad_config_names_the_key(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env)
    assert message in str(exc.value)


BERLIN = ZoneInfo("Europe/Berlin")


def day(d: str, gross: int, refunds: int = 0, orders: int = 0, store: str = "s", currency: str = "EUR") -> DayTotals:
    return DayTotals("o", 1, store, d, currency, gross, refunds, orders)


def test_periods_cut_in_the_org_timezone() -> None:
    days = [day("2026-11-22", 1000, 100, 2), day("2026-11-16", 500, 0, 1), day("2026-11-15", 300, 0, 1),
            day("2026-10-24", 7, 0, 1), day("2026-10-23", 11, 0, 1), day("2026-11-22", 9, 0, 1, store="t")]
    # 23:30 UTC on the 21st is already the 22nd in Berlin.
    now = datetime(2026, 11, 21, 23, 30, tzinfo=timezone.utc)
    f = lambda p, s=None: compute_figures(days, period=p, now=now, tz=BERLIN, currency="EUR", store=s)  # noqa: E731
    assert f("today", "s").gross_revenue == Money(1000, "EUR")
    assert f("today").paid_orders == 3
    assert f("7d", "s").gross_revenue.amount == 1500
    assert f("30d", "s").gross_revenue.amount == 1807
    assert f("all").gross_revenue.amount == 1827
    t = f("today", "s")
    assert (t.refunds.amount, t.net_revenue.amount, t.aov.amount) == (100, 900, 500)


def test_aov_rounds_half_up_and_is_zero_without_orders() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    assert compute_figures([day("2026-11-22", 1001, 0, 2)], period="today", now=now, tz=BERLIN, currency="EUR").aov.amount == 501
    assert compute_figures([], period="today", now=now, tz=BERLIN, currency="EUR").aov == Money(0, "EUR")


def test_other_currency_without_a_rate_is_an_error_naming_it() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    with pytest.raises(MissingRate, match="from USD to EUR for 2026-11-22"):
        compute_figures([day("2026-11-22", 1, currency="USD")], period="all", now=now, tz=BERLIN, currency="EUR")
