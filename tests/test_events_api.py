"""The events API's readers: the fast reader and the checked reader agree with each other and with the
reader as it was before the fast one existed (kept below, verbatim, as the reference), on every
input hypothesis can make. Over real HTTP: the inputs that used to crash the server get a 400.

The connection monitor's grouped count is held against the per-event loop it replaced."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.clock import ms_from_iso
from core.config import Store
from core.events import Event, Item, Kind, Source
from core.limits import MAX_AMOUNT
from core.money import EXPONENTS, UnknownCurrency, normalise_currency, to_minor
from ingest import events_api
from ingest.errors import BadPayload
from ingest.events_api import TYPES, Invalid, _checked_event, _fast_event, _template, parse_batch, to_event
from ingest.monitor import ConnectionMonitor
from tests.helpers import Storepulse

STORE = Store("acme-site", "acme", "events", "key", "EUR")

# --- the reference: ingest/events_api.py's reader before the fast path (commit 2885cfa), verbatim ----


class RefInvalid(Exception):
    pass


def _ref_text(d: dict[str, Any], key: str, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise RefInvalid(f"{key} is missing")
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str) or not v or len(v) > 512:
        raise RefInvalid(f"{key} must be a non-empty string of at most 512 characters")
    return v


def _ref_time(d: dict[str, Any]) -> int:
    v = d.get("time")
    if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**14:
        return v
    if isinstance(v, str):
        try:
            return ms_from_iso(v)
        except ValueError as exc:
            raise RefInvalid(f"time {exc}") from None
    raise RefInvalid("time is missing: give ISO 8601 with an offset or Unix milliseconds")


def _ref_money(d: dict[str, Any], key: str, currency: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise RefInvalid(f"{key} must be a decimal string such as \"12.34\" (or an integer), got {v!r}")
    try:
        return to_minor(v, currency)
    except (ValueError, TypeError) as exc:
        raise RefInvalid(f"{key}: {exc}") from None


def _ref_items(d: dict[str, Any], currency: str | None) -> tuple[Item, ...]:
    raw = d.get("items")
    if raw is None and d.get("product") is not None:
        raw = [{"product": d["product"], "qty": d.get("qty", 1), "price": d.get("price"), "name": d.get("product_name"),
                "category": d.get("category"), "brand": d.get("brand")}]
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 500:
        raise RefInvalid("items must be a list of at most 500 objects")
    out = []
    for i, it in enumerate(raw):
        if not isinstance(it, dict):
            raise RefInvalid(f"items[{i}] must be an object")
        try:
            product = _ref_text(it, "product", required=True)
            qty = it.get("qty", 1)
            if not isinstance(qty, int) or isinstance(qty, bool) or not 0 < qty < 10**6:
                raise RefInvalid(f"qty must be a positive integer, got {qty!r}")
            price = _ref_money(it, "price", currency) if it.get("price") is not None and currency else 0
            out.append(Item(product=product or "", qty=qty, unit_price=price, name=_ref_text(it, "name") or "",
                            category=_ref_text(it, "category") or "", brand=_ref_text(it, "brand") or ""))
        except RefInvalid as exc:
            raise RefInvalid(f"items[{i}].{exc}") from None
    return tuple(out)


def ref_to_event(d: Any, store: Store) -> Event:
    if not isinstance(d, dict):
        raise RefInvalid("must be an object")
    etype = d.get("type")
    if etype not in TYPES:
        raise RefInvalid(f"type {etype!r} is not one of {', '.join(TYPES)}")
    kind = TYPES[etype]
    client_id = _ref_text(d, "id", required=True)
    currency = None
    if d.get("currency") is not None:
        try:
            currency = normalise_currency(d["currency"])
        except UnknownCurrency as exc:
            raise RefInvalid(f"currency: {exc}") from None
    amount = 0
    if kind in (Kind.ORDER_PAID, Kind.ORDER_REFUNDED) or d.get("amount") is not None:
        if currency is None:
            raise RefInvalid("currency is missing (ISO 4217, e.g. \"EUR\")")
        amount = _ref_money(d, "amount", currency)
        if amount < 0:
            raise RefInvalid("amount must not be negative")
    visitor, customer = _ref_text(d, "visitor"), _ref_text(d, "customer")
    if visitor is None and customer is None:
        raise RefInvalid("give visitor (anonymous id) or customer, or both")
    campaign = _ref_text(d, "campaign") or _ref_text(d, "automation")
    source = Source.WEB
    if kind in (Kind.EMAIL_ENGAGED, Kind.EMAIL_SENT):
        if campaign is None:
            raise RefInvalid("campaign (or automation) is missing: e-mail engagement names what was opened or clicked")
        source = Source.AUTOMATION if d.get("automation") is not None else Source.EMAIL_CAMPAIGN
    order = _ref_text(d, "order")
    if kind in (Kind.ORDER_PAID, Kind.ORDER_REFUNDED) and order is None:
        raise RefInvalid("order is missing")
    props = d.get("properties", {})
    if not isinstance(props, dict) or len(orjson.dumps(props)) > 8192:
        raise RefInvalid("properties must be an object of at most 8 KiB")
    name = {"email_open": "open", "email_click": "click", "email_sent": "sent"}.get(etype) or _ref_text(d, "name") or _ref_text(d, "url") or ""
    return Event(
        id=f"events:{store.id}:{client_id}", kind=kind, org=store.org, store=store.id, time=_ref_time(d),
        amount=amount, currency=currency or "", customer=customer, order=order,
        refund=_ref_text(d, "refund") or (client_id if kind is Kind.ORDER_REFUNDED else None),
        items=_ref_items(d, currency), source=source, raw_id=client_id, cart=_ref_text(d, "cart"), visitor=visitor,
        campaign=campaign, name=name, attrs=props,
    )


# --- what hypothesis makes: JSON values, mostly of the right shape, often a little wrong -------------

INT64 = st.integers(-(2**63), 2**64 - 1)
json_scalars = st.one_of(st.none(), st.booleans(), INT64, st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=6))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                  st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                           max_leaves=6)
texts = st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["", "v1", "/p/1"]),
                  st.integers(511, 513).map(lambda n: "x" * n),
                  st.integers(-5, 2**64 - 1), json_values)
times = st.one_of(st.integers(-1, 10**14 + 1), st.sampled_from([95_617_583_999_999, 95_617_584_000_000]), st.sampled_from([
    "5000-01-01T00:00:00Z", "4999-12-31T23:59:59.999Z", "5000-01-01T00:59:59.999+01:00",
    "2026-11-22T10:00:00+01:00", "2026-11-22T10:00:00.123Z", "2026-11-22T10:00:00Z", "1969-12-31T23:59:59.999Z",
    "2026-11-22T10:00:00", "2026-02-30T10:00:00Z", "yesterday", "", "2026-11-22 10:00:00-05:30", "0001-01-01T00:00:00+01:00",
]), json_values)
currencies = st.one_of(st.sampled_from(["EUR", "eur", "JPY", "KWD", "XXX", "ß", "", "usd"]), json_values)
amounts = st.one_of(st.sampled_from([
    "12.34", "0", "0.00", "-1", "-0.01", "12.345", "12.3456", " 1.5", "1_000", "abc", "NaN", "Infinity", "sNaN", "٣",
    "007.50", "9.", ".5", "+1", "1e3", "1e999999", "1e-999999999", "999999999999999.99", "9999999999999999",
    "123456789012345678901234567890",
]), st.integers(-(10**16), 2**64 - 1), json_values)
qtys = st.one_of(st.integers(-1, 10**6 + 1), json_values)
item = st.fixed_dictionaries({}, optional={"product": texts, "qty": qtys, "price": amounts, "name": texts,
                                           "category": texts, "brand": texts})
items = st.one_of(st.lists(item, max_size=3), st.lists(json_values, max_size=2), json_values,
                  st.integers(500, 501).map(lambda n: [{"product": "p"}] * n))
properties = st.one_of(st.dictionaries(st.text(max_size=5), json_values, max_size=4), json_values,
                       st.integers(8178, 8183).map(lambda n: {"edge": "x" * n}))
types = st.one_of(st.sampled_from(list(TYPES)), json_values)

# Valid events of every type, then the same with a field or two replaced by anything or removed: most of
# what a random dictionary is would be refused on its type or id, and never reach the deeper checks.
good_text = st.one_of(st.text(min_size=1, max_size=8), st.integers(0, 2**63))
good_time = st.one_of(st.integers(1, 95_617_583_999_999), st.sampled_from(["2026-11-22T10:00:00+01:00", "2026-11-22T10:00:00.123Z"]))
GOOD_CURRENCIES = ["EUR", "usd", "JPY", "KWD"]


def good_amount(currency: str | None) -> st.SearchStrategy[Any]:
    """Amounts of `currency` within the rules: plain decimals with at most its decimals, or integers."""
    exp = EXPONENTS[currency.upper()] if currency else 2
    plain = st.tuples(st.integers(0, 10**6), st.integers(0, exp)).flatmap(
        lambda t: st.integers(0, 10 ** t[1] - 1).map(lambda f: f"{t[0]}.{f:0{t[1]}d}" if t[1] else str(t[0])))
    return st.one_of(plain, st.sampled_from(["0", "7", "19"]), st.integers(0, 10**6))


def good_item(currency: str | None) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"product": good_text}, optional={
        "qty": st.integers(1, 999_999), "price": good_amount(currency), "name": good_text, "category": good_text,
        "brand": good_text})


WILD = {"id": texts, "time": times, "visitor": texts, "customer": texts, "url": texts, "name": texts,
        "currency": currencies, "amount": amounts, "campaign": texts, "automation": texts, "order": texts,
        "refund": texts, "cart": texts, "properties": properties, "items": items, "product": texts,
        "qty": qtys, "price": amounts, "product_name": texts, "category": texts, "brand": texts,
        "type": types, "unknown": json_values}


@st.composite
def good_events(draw: st.DrawFn) -> dict[str, Any]:
    etype = draw(st.sampled_from(list(TYPES)))
    d: dict[str, Any] = {"type": etype, "id": draw(good_text), "time": draw(good_time)}
    who = draw(st.sampled_from(["visitor", "customer", "both"]))
    if who != "customer":
        d["visitor"] = draw(good_text)
    if who != "visitor":
        d["customer"] = draw(good_text)
    currency = None
    if etype in ("order_paid", "order_refunded") or draw(st.booleans()):
        currency = d["currency"] = draw(st.sampled_from(GOOD_CURRENCIES))
        if etype in ("order_paid", "order_refunded") or draw(st.booleans()):
            d["amount"] = draw(good_amount(currency))
    if etype in ("order_paid", "order_refunded") or draw(st.booleans()):
        d["order"] = draw(good_text)
    if etype.startswith("email") or draw(st.booleans()):
        d[draw(st.sampled_from(["campaign", "automation"]))] = draw(good_text)
    extra = {"url": good_text, "name": good_text, "cart": good_text, "refund": good_text,
             "properties": st.dictionaries(st.text(max_size=4), json_scalars, max_size=3),
             "items": st.lists(good_item(currency), max_size=3), "product": good_text, "qty": st.integers(1, 5),
             "price": good_amount(currency), "product_name": good_text, "category": good_text, "brand": good_text}
    for key in draw(st.lists(st.sampled_from(sorted(extra)), max_size=4, unique=True)):
        d[key] = draw(extra[key])
    return d


@st.composite
def bent_events(draw: st.DrawFn) -> dict[str, Any]:
    d = draw(good_events())
    for key in draw(st.lists(st.sampled_from(sorted(WILD)), min_size=1, max_size=2, unique=True)):
        if draw(st.booleans()) and key in d:
            del d[key]
        else:
            d[key] = draw(WILD[key])
    return d


random_events = st.fixed_dictionaries(
    {"type": types},
    optional={"id": texts, "time": times, "visitor": texts, "customer": texts, "url": texts, "name": texts,
              "currency": currencies, "amount": amounts, "campaign": texts, "automation": texts, "order": texts,
              "refund": texts, "cart": texts, "properties": properties, "items": items, "product": texts,
              "qty": qtys, "price": amounts, "product_name": texts, "category": texts, "brand": texts,
              "unknown": json_values},
)
# exactly what parse_batch gets from a body
events = st.one_of(good_events(), bent_events(), random_events).map(lambda d: orjson.loads(orjson.dumps(d)))


# Checks added since the reference refuse what it let through (or refused for another reason): an
# amount or price that is not a plain decimal with at most the currency's decimals ("0.001" EUR,
# "1e3", " 1"), or outside [0, MAX_AMOUNT] minor units, or a line whose qty x price is; a time before
# 1970 or from the year 5000 on (and a time of the wrong type is no longer "missing"); properties
# nested more than 32 levels. Their messages:
NEW_RULES = re.compile("|".join([
    r"^(items\[\d+\]\.price|amount): (out of range: |not a plain decimal amount|.* has more decimals than)",
    r"^(items\[\d+\]\.price|amount) (must not be negative|is over the largest amount)",
    r"^items\[\d+\]\.qty x price is over the largest amount",
    r"^time .* is out of range: ", r"^time must be ISO 8601 with an offset or Unix milliseconds",
    r"^properties nests objects and lists more than 32 levels deep$",
]))
MAX_TIME = 95_617_584_000_000
PLAIN = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def _minor(v: Any, currency: str) -> int | None:
    """The minor units of an amount the reference took, by the new rule; None where the rule refuses
    its form (written here again, from the rule, not from ingest/events_api.py)."""
    exp = EXPONENTS[currency]
    if isinstance(v, int):
        return v * 10**exp
    m = PLAIN.fullmatch(v)
    if m is None or len(m.group(2) or "") > exp:
        return None
    return int(Decimal(v).scaleb(exp))


def _depth(v: Any) -> int:
    return 1 + max(map(_depth, v.values() if isinstance(v, dict) else v), default=0) if isinstance(v, dict | list) else 0


def _breaks_a_new_rule(d: dict[str, Any], e: Event) -> bool:
    """Whether an event the reference took (as `e`) breaks a rule added since."""
    if not 0 < e.time < MAX_TIME or _depth(d.get("properties", {})) > 32:
        return True
    currency = e.currency or None
    if currency is not None and (TYPES[d["type"]] in (Kind.ORDER_PAID, Kind.ORDER_REFUNDED) or d.get("amount") is not None):
        minor = _minor(d["amount"], currency)
        if minor is None or not 0 <= minor <= MAX_AMOUNT:
            return True
    raw = d.get("items")
    if raw is None and d.get("product") is not None:
        raw = [{"qty": d.get("qty", 1), "price": d.get("price")}]
    for it in raw or []:
        if it.get("price") is not None and currency is not None:
            minor = _minor(it["price"], currency)
            if minor is None or not 0 <= minor <= MAX_AMOUNT or it.get("qty", 1) * minor > MAX_AMOUNT:
                return True
    return False


def _added_check_refused(got: tuple[Any, ...], want: tuple[Any, ...], d: dict[str, Any]) -> bool:
    if got[0] != "refused" or not NEW_RULES.search(got[1]):
        return False
    if want[0] == "refused":  # refused before too, in other words: a new check came first
        return True
    return _breaks_a_new_rule(d, want[1])


def outcome(read: Any, d: Any) -> tuple[Any, ...]:
    try:
        e = read(d, STORE)
    except (Invalid, RefInvalid) as exc:
        return ("refused", str(exc))
    return ("event", e, e.to_json())


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=events)
def test_the_readers_agree_with_the_reference(d: dict[str, Any]) -> None:
    got = outcome(to_event, d)
    assert outcome(_checked_event, d) == got
    fast = _fast_event(d, f"events:{STORE.id}:", _template(STORE))
    if fast is not None:
        assert got == ("event", fast, fast.to_json())
    try:
        want = outcome(ref_to_event, d)
    except Exception:  # the reference crashed (a 500 before): now it must be refused in words
        assert got[0] == "refused" and got[1], got
    else:
        assert got == want or _added_check_refused(got, want, d), (got, want)


COMMON = [
    {"type": "page_view", "id": "pv-1", "time": 1795338396916, "visitor": "v1", "url": "/p/1"},
    {"type": "product_view", "id": 17, "time": "2026-11-22T10:00:00.123Z", "customer": "c1", "name": "Mug",
     "properties": {"ab": "b", "n": 2}},
    {"type": "add_to_cart", "id": "ac-1", "time": 1795338396916, "visitor": "v1", "cart": "k1", "product": "sku-1",
     "qty": 2, "price": "9.99", "currency": "eur", "product_name": "Mug", "category": "Kitchen", "brand": "Acme"},
    {"type": "order_paid", "id": "op-1", "time": "2026-11-22T10:00:00+01:00", "customer": "c9", "order": "o-1",
     "amount": "19.99", "currency": "EUR", "items": [{"product": "sku-1", "qty": 2, "price": "9.99"}]},
    {"type": "order_refunded", "id": "rf-1", "time": 1795338396916, "customer": "c9", "order": "o-1",
     "amount": 500, "currency": "JPY"},
    {"type": "email_click", "id": "em-1", "time": 1795338396916, "customer": "c9", "automation": "welcome"},
    {"type": "email_open", "id": "em-2", "time": 1795338396916, "visitor": "v2", "campaign": "nov", "url": "/x"},
    {"type": "identify", "id": "id-1", "time": 1795338396916, "visitor": "v2", "customer": "c2"},
]


@pytest.mark.parametrize("d", COMMON, ids=[d["type"] for d in COMMON])
def test_common_shapes_take_the_fast_reader(d: dict[str, Any]) -> None:
    fast = _fast_event(d, f"events:{STORE.id}:", _template(STORE))
    assert fast is not None, "the fast reader gave a common, valid event up"
    want = ref_to_event(d, STORE)
    assert fast == want and fast.to_json() == want.to_json()
    again = _fast_event(d, f"events:{STORE.id}:", _template(STORE))
    assert type(fast) is Event and again is not None
    if "properties" not in d:  # no event shares its (mutable) attrs with another
        assert fast.attrs == {} and fast.attrs is not again.attrs


def test_every_problem_of_a_batch_is_listed_as_before() -> None:
    bad = [
        {"type": "page_view", "id": "a", "time": 1, "visitor": "v"},
        {"type": "teleport", "id": "b", "time": 1, "visitor": "v"},
        {"type": "page_view", "id": "c", "visitor": "v"},
        {"type": "order_paid", "id": "d", "time": 1, "customer": "c", "order": "o", "amount": 19.99, "currency": "EUR"},
        {"type": "add_to_cart", "id": "e", "time": 1, "visitor": "v", "product": "p", "qty": 0},
        "not an object",
    ]
    with pytest.raises(BadPayload) as caught:
        parse_batch(orjson.dumps({"events": bad}), STORE)
    assert caught.value.message == (
        "nothing was recorded; "
        f"events[1]: type 'teleport' is not one of {', '.join(TYPES)}; "
        "events[2]: time is missing: give ISO 8601 with an offset or Unix milliseconds; "
        "events[3]: amount must be a decimal string such as \"12.34\" (or an integer), got 19.99; "
        "events[4]: items[0].qty must be a positive integer, got 0; "
        "events[5]: must be an object"
    )
    many = [{"type": "page_view", "id": str(i), "time": 1} for i in range(25)]
    with pytest.raises(BadPayload, match=r"events\[19\]: give visitor .*\(and 5 more\)$"):
        parse_batch(orjson.dumps(many), STORE)


def test_a_batch_reads_the_same_as_one_event_at_a_time() -> None:
    outcome_ = parse_batch(orjson.dumps({"events": COMMON}), STORE)
    assert outcome_.events == [ref_to_event(d, STORE) for d in COMMON]
    assert [e.to_json() for e in outcome_.events] == [ref_to_event(d, STORE).to_json() for d in COMMON]


@pytest.mark.parametrize(("d", "message"), [
    ({"type": ["page_view"], "id": "a", "time": 1, "visitor": "v"}, "type ['page_view'] is not one of"),
    ({"type": {"a": 1}, "id": "a", "time": 1, "visitor": "v"}, "type {'a': 1} is not one of"),
    ({"type": "order_paid", "id": "a", "time": 1, "customer": "c", "order": "o", "currency": "EUR",
      "amount": "1e999999"}, "amount: not a plain decimal amount such as \"12.34\" (ASCII digits and one point): '1e999999'"),
    ({"type": "add_to_cart", "id": "a", "time": 1, "visitor": "v", "currency": "EUR", "product": "p",
      "price": "123456789012345678901234567890"}, "items[0].price: out of range"),
    ({"type": "order_paid", "id": "a", "time": 1, "customer": "c", "order": "o", "currency": "EUR",
      "amount": 184467440737095517}, "amount: out of range: 184467440737095517"),
    ({"type": "add_to_cart", "id": "a", "time": 1, "visitor": "v", "currency": "KWD", "product": "p",
      "price": "-9223372036854775.809"}, "items[0].price: out of range"),
])
def test_what_used_to_crash_is_refused_in_words(d: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception):  # the reference, or the log's to_json after it, crashed
        ref_to_event(d, STORE).to_json()
    with pytest.raises(Invalid, match=re.escape(message)):
        to_event(d, STORE)


def test_the_events_api_answers_400_where_it_answered_500(storepulse: Storepulse) -> None:
    r = storepulse.post_events([
        {"type": ["page_view"], "id": "a", "time": 1, "visitor": "v"},
        {"type": "order_paid", "id": "b", "time": 1, "customer": "c", "order": "o", "currency": "EUR", "amount": "1e999999"},
    ])
    assert r.status_code == 400, r.text
    msg = r.json()["error"]
    assert "events[0]: type ['page_view'] is not one of" in msg and "events[1]: amount: not a plain decimal amount" in msg


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` deep: {"a": {"a": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_what_crashed_the_dataflow_or_the_server_is_a_400_that_is_kept(storepulse: Storepulse) -> None:
    """An amount no figure can hold (92233720368547758.07 EUR is 2**63 - 1 cents) was accepted and
    crashed the dataflow; properties 254 levels deep were a 500 (orjson writes less depth than it
    reads). Both are refused in words, and kept in the rejected store like any 400."""
    t = int(time.time() * 1000) - 60_000  # a minute ago: nothing here depends on the day it runs
    big = {"type": "order_paid", "id": f"big-{t}", "time": t, "customer": "c", "order": "o", "currency": "EUR",
           "amount": "92233720368547758.07"}
    deep = {"type": "custom", "id": f"deep-{t}", "time": t, "visitor": "v", "name": "x", "properties": nested(254)}
    bodies = [json.dumps([big]), json.dumps([deep])]
    r = storepulse.post_events(bodies[0].encode())
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "nothing was recorded; events[0]: amount is over the largest amount storepulse takes "
                                 "(1000000000000 minor units), got 9223372036854775807"}
    d = storepulse.post_events(bodies[1].encode())
    assert d.status_code == 400, d.text
    assert d.json() == {"error": "nothing was recorded; events[0]: properties nests objects and lists more than 32 levels deep"}
    ok = storepulse.post_events([{**deep, "id": f"deep32-{t}", "properties": nested(32)}])
    assert ok.status_code == 200, ok.text  # 32 levels are taken
    kept = storepulse.get("/api/v1/orgs/acme/rejected", store="acme-site", limit=50).json()["rejected"]
    assert {x["body"]: x["reason"] for x in kept if x["body"] in bodies} == {
        bodies[0]: r.json()["error"], bodies[1]: d.json()["error"]}
    assert "Traceback" not in storepulse.log_tail(200_000)


def test_negative_prices_and_times_out_of_range_get_a_400_that_says_so(storepulse: Storepulse) -> None:
    good = {"type": "add_to_cart", "visitor": "v", "currency": "EUR", "product": "p"}
    r = storepulse.post_events(json.dumps([
        {**good, "id": "a", "time": 1, "price": "-1.50"},
        {**good, "id": "b", "time": "0001-01-01T00:00:00Z"},
        {**good, "id": "c", "time": "5000-01-01T00:00:00Z"},
        {**good, "id": "d", "time": -5},
        {**good, "id": "e", "time": 1_795_338_396_916_000},  # microseconds sent as milliseconds
        {**good, "id": "f", "time": "4999-12-31T23:59:59.999Z", "price": "0"},  # the last instant taken
        {**good, "id": "g", "time": 2**70},  # beyond 64 bits: orjson reads a float
        {**good, "id": "h", "time": True},
    ]).encode())
    assert r.status_code == 400, r.text
    assert r.json()["error"] == (
        "nothing was recorded; "
        "events[0]: items[0].price must not be negative (a refund is a refund event), got -150; "
        "events[1]: time '0001-01-01T00:00:00Z' is out of range: give an instant after 1970-01-01 and before the year 5000; "
        "events[2]: time '5000-01-01T00:00:00Z' is out of range: give an instant after 1970-01-01 and before the year 5000; "
        "events[3]: time -5 is out of range: give an instant after 1970-01-01 and before the year 5000; "
        "events[4]: time 1795338396916000 is out of range: give an instant after 1970-01-01 and before the year 5000; "
        "events[6]: time 1.1805916207174113e+21 is out of range: give an instant after 1970-01-01 and before the year 5000; "
        "events[7]: time must be ISO 8601 with an offset or Unix milliseconds (an integer), got True")


@pytest.mark.parametrize("amount", ["0.001", "0.005", "1_000", "\u0665", "1e2", " 1", "+1", "NaN", "1.", ".5", "-0.01"])
def test_money_strings_are_read_strictly(amount: str) -> None:
    d = {"type": "order_paid", "id": "a", "time": 1, "customer": "c", "order": "o", "currency": "EUR", "amount": amount}
    with pytest.raises(Invalid, match=r"^amount(: not a plain decimal amount|: '0\.00[15]' has more decimals than EUR "
                                      r"has \(2\)$| must not be negative)"):
        to_event(d, STORE)
    assert _fast_event(d, f"events:{STORE.id}:", _template(STORE)) is None


@pytest.mark.parametrize(("amount", "currency", "minor"), [("12.34", "EUR", 1234), ("1980", "JPY", 1980),
                                                           ("1.234", "KWD", 1234), (7, "EUR", 700), ("0.5", "EUR", 50)])
def test_plain_amounts_with_at_most_the_currency_decimals_are_taken(amount: Any, currency: str, minor: int) -> None:
    d = {"type": "order_paid", "id": "a", "time": 1, "customer": "c", "order": "o", "currency": currency, "amount": amount}
    assert to_event(d, STORE).amount == _checked_event(d, STORE).amount == minor


def test_a_json_time_is_read_as_ms_from_iso_reads_it() -> None:
    # The fast reader calls ms_from_iso itself; pin that an ISO time and its milliseconds agree.
    d = {"type": "page_view", "id": "a", "visitor": "v", "time": "2026-11-22T10:00:00.123+01:00"}
    assert to_event(d, STORE).time == ms_from_iso(d["time"]) == 1795338000123


# --- the connection monitor ------------------------------------------------------------------------

class _NoStats:
    def record(self, batch: object) -> None:  # pragma: no cover - flush is not called here
        raise AssertionError("not flushed in these tests")


def _per_event(events: list[Event], appended: list[bool], received_at: float,
               counts: dict[str, dict[int, int]], last_event: dict[str, int], last_received: dict[str, float]) -> None:
    """The loop monitor.appended was: one step per event."""
    minute = int(received_at // 60)
    for e, new in zip(events, appended):
        if not new:
            continue
        counts[e.store][minute] += 1
        last_event[e.store] = max(last_event.get(e.store, e.time), e.time)
        last_received[e.store] = received_at


def _event(store: str, t: int, n: int) -> Event:
    return Event(id=f"{store}-{n}", kind=Kind.PAGE_VIEWED, org="acme", store=store, time=t)


@settings(max_examples=300, deadline=None)
@given(calls=st.lists(st.tuples(
    st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.integers(1, 10**13), st.booleans()), max_size=12),
    st.floats(0, 10**6, allow_nan=False)), max_size=5))
def test_monitor_counts_as_the_per_event_loop_did(calls: list[tuple[list[tuple[str, int, bool]], float]]) -> None:
    monitor = ConnectionMonitor(_NoStats())  # type: ignore[arg-type]
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    last_event: dict[str, int] = {}
    last_received: dict[str, float] = {}
    for rows, received_at in calls:
        evs = [_event(s, t, n) for n, (s, t, _) in enumerate(rows)]
        flags = [new for _, _, new in rows]
        monitor.appended(evs, flags, received_at)
        _per_event(evs, flags, received_at, counts, last_event, last_received)
    got = {a.store: a for a in monitor.take()}
    stores = set(counts) | set(last_event)
    assert set(got) == stores
    for s in stores:
        assert got[s].minute_counts == dict(counts[s]) and got[s].last_event_time == last_event[s]
        assert got[s].last_received_at == last_received[s]


def test_a_valid_batch_of_common_shapes_never_takes_the_checked_road(monkeypatch: pytest.MonkeyPatch) -> None:
    def checked(d: Any, store: Store) -> Event:
        raise AssertionError(f"checked reader used for {d}")

    monkeypatch.setattr(events_api, "_checked_event", checked)
    assert len(parse_batch(orjson.dumps({"events": COMMON * 10}), STORE).events) == len(COMMON) * 10
