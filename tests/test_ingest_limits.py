"""One range for every amount, quantity and time (core/limits.py), on every path into the log, over
real HTTP into the real ingest app: signed Stripe, WooCommerce and Shopify webhooks and the events
API answer a 400 naming the field, keep the delivery in the rejected store, and append nothing;
redrive does the same. Then hypothesis throws amounts, quantities, times, money strings and nesting
of every shape at each path: the answer is a 4xx in words, or a 200 whose events are all within
the limits; never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.config import parse_config
from core.events import Event, event_from_json
from core.limits import MAX_AMOUNT, MAX_QTY, depth_problem, problem
from state.sqlite_log import SqliteLogReader
from tests.helpers import IngestServer, stripe_signature

NOW = 1_795_338_396  # 2026-11-22T09:06:36Z: the frozen clock the server judges signatures by
CONFIG = """
[orgs.shop]
timezone = "UTC"
currency = "EUR"
token = "shop-token-0123456789"
[orgs.shop.stores.st]
provider = "stripe"
secret = "whsec_limits"
[orgs.shop.stores.woo]
provider = "woocommerce"
secret = "wc_limits"
[orgs.shop.stores.sh]
provider = "shopify"
secret = "shpss_limits"
[orgs.shop.stores.site]
provider = "events"
secret = "site-key-0123456789"
"""
_ids = itertools.count()

Case = tuple[str, bytes, dict[str, str]]  # (path, body, headers) of one delivery


# --- deliveries as each vendor signs them ---------------------------------------------------------

def body_of(payload: Any) -> bytes:
    """json.dumps, not orjson: it writes integers beyond 64 bits and nesting orjson refuses to write."""
    return json.dumps(payload).encode()


def stripe(etype: str, obj: dict[str, Any], created: Any = NOW - 60) -> Case:
    body = body_of({"id": f"evt_{next(_ids)}", "object": "event", "created": created, "type": etype,
                    "data": {"object": obj}})
    return "/webhooks/stripe/st", body, {"Content-Type": "application/json",
                                         "Stripe-Signature": stripe_signature(body, "whsec_limits", NOW)}


def intent(amount: Any, currency: str = "eur") -> dict[str, Any]:
    return {"id": f"pi_{next(_ids)}", "object": "payment_intent", "amount": amount, "amount_received": amount,
            "currency": currency, "status": "succeeded", "customer": "cus_1"}


def woo(topic: str, payload: Any) -> Case:
    body = body_of(payload)
    signature = base64.b64encode(hmac.new(b"wc_limits", body, hashlib.sha256).digest()).decode()
    return "/webhooks/woocommerce/woo", body, {"Content-Type": "application/json", "X-WC-Webhook-Topic": topic,
                                               "X-WC-Webhook-Signature": signature,
                                               "X-WC-Webhook-Delivery-ID": f"d{next(_ids)}"}


def woo_order(total: Any = "10.00", status: str = "processing", created: str = "2026-11-22T09:00:00",
              price: Any = "10.00", qty: Any = 1, refund: Any = None) -> dict[str, Any]:
    return {"id": 700 + next(_ids), "status": status, "currency": "EUR", "total": total, "customer_id": 0,
            "billing": {"email": "buyer@example.com"}, "date_created_gmt": created, "date_modified_gmt": created,
            "date_paid_gmt": None, "line_items": [{"product_id": 1, "quantity": qty, "price": price, "subtotal": "10.00"}],
            "refunds": [] if refund is None else [{"id": 9, "total": refund}]}


def shopify(topic: str, payload: Any) -> Case:
    body = body_of(payload)
    signature = base64.b64encode(hmac.new(b"shpss_limits", body, hashlib.sha256).digest()).decode()
    return "/webhooks/shopify/sh", body, {"Content-Type": "application/json", "X-Shopify-Topic": topic,
                                          "X-Shopify-Hmac-Sha256": signature, "X-Shopify-Event-Id": f"e{next(_ids)}"}


def shopify_order(total: Any = "10.00", price: Any = "10.00", qty: Any = 1, currency: str = "EUR",
                  at: str = "2026-11-22T10:00:00+01:00") -> dict[str, Any]:
    return {"id": 820982911946154508 + next(_ids), "financial_status": "paid", "currency": currency,
            "total_price": total, "processed_at": at, "created_at": at, "customer": {"id": 5},
            "line_items": [{"id": 1, "variant_id": 2, "title": "Mug", "quantity": qty, "price": price}]}


def events(*batch: dict[str, Any]) -> Case:
    return "/v1/events", body_of(list(batch)), {"Content-Type": "application/json",
                                                "Authorization": "Bearer site-key-0123456789"}


def paid(amount: Any = "10.00", currency: str = "EUR", **fields: Any) -> dict[str, Any]:
    return {"type": "order_paid", "id": f"op-{next(_ids)}", "time": (NOW - 60) * 1000, "customer": "c",
            "order": "o", "currency": currency, "amount": amount, **fields}


def nested(levels: int) -> Any:
    """Objects `levels` deep ({"a": {"a": ... {}}}); 0 is a plain string."""
    value: Any = "leaf" if levels == 0 else {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# --- the server, and what a delivery did ----------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    srv = IngestServer(tmp_path_factory.mktemp("limits"), CONFIG, NOW)
    yield srv
    srv.close()


class Appended:
    """The events a delivery appended: what the log holds beyond what it held before."""

    def __init__(self, server: IngestServer) -> None:
        self.reader = SqliteLogReader(server.log_path)
        self.offsets: dict[int, str | None] = {p: None for p in range(self.reader.partitions)}
        self.since()

    def since(self) -> list[Event]:
        new = []
        for p, after in self.offsets.items():
            rows = self.reader.read(p, after, 100_000)
            if rows:
                self.offsets[p] = rows[-1][0]
            new += [event_from_json(b) for _, b in rows]
        return new


def refused(server: IngestServer, case: Case, message: str) -> None:
    """`case` gets exactly a 400 {"error": message}, is kept in the rejected store, and appends nothing."""
    appended = Appended(server)
    path, body, headers = case
    r = server.deliver(path, body, headers)
    assert (r.status_code, r.json()) == (400, {"error": message}), r.text
    [kept] = server.rejected.list(limit=1)
    assert (kept.body, kept.status, kept.reason) == (body, 400, message)
    assert appended.since() == []


# --- the bugs, one by one -------------------------------------------------------------------------

def test_an_amount_no_figure_can_hold_is_a_400_on_every_path(server: IngestServer) -> None:
    refused(server, stripe("payment_intent.succeeded", intent(9223372036854775807)),
            "payment_intent.amount_received is over the largest amount storepulse takes (1000000000000 minor units), "
            "got 9223372036854775807")
    refused(server, events(paid("92233720368547758.07")),
            "nothing was recorded; events[0]: amount is over the largest amount storepulse takes "
            "(1000000000000 minor units), got 9223372036854775807")
    refused(server, woo("order.created", woo_order(total="10000000000.01")),
            "order.total is over the largest amount storepulse takes (1000000000000 minor units), got 1000000000001")
    refused(server, shopify("orders/paid", shopify_order(total="10000000000.01")),
            "order.total_price is over the largest amount storepulse takes (1000000000000 minor units), "
            "got 1000000000001")
    # The largest amount itself is taken, on every path.
    for path, body, headers in [stripe("payment_intent.succeeded", intent(MAX_AMOUNT)), events(paid("10000000000.00")),
                                woo("order.created", woo_order(total="10000000000.00")),
                                shopify("orders/paid", shopify_order(total="10000000000.00"))]:
        r = server.deliver(path, body, headers)
        assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text


def test_a_refund_is_a_refund_event_never_a_negative_order(server: IngestServer) -> None:
    refused(server, stripe("payment_intent.succeeded", intent(-500000)),
            "payment_intent.amount must not be negative (a refund is a refund event), got -500000")
    refused(server, stripe("charge.refunded", {"id": "ch_neg", "object": "charge", "amount": 500, "amount_refunded": -500,
                                               "currency": "eur", "payment_intent": "pi_neg"}),
            "charge.amount_refunded must not be negative (a refund is a refund event), got -500")
    refused(server, woo("order.created", woo_order(total="-5000.00")),
            "order.total must not be negative (a refund is a refund event), got -500000")
    refused(server, shopify("orders/paid", shopify_order(total="-50.00")),
            "order.total_price must not be negative (a refund is a refund event), got -5000")
    refused(server, events(paid("-50.00")),
            "nothing was recorded; events[0]: amount must not be negative (a refund is a refund event), got -5000")


def test_a_woocommerce_refund_listed_negative_is_a_refund_of_its_size(server: IngestServer) -> None:
    """WooCommerce lists an order's refunds with negative totals: each is a refund, of its size."""
    appended = Appended(server)
    r = server.deliver(*woo("order.updated", woo_order(refund="-2.50")))
    assert (r.status_code, r.json()["new"]) == (200, 2), r.text
    assert sorted((e.kind.value, e.amount) for e in appended.since()) == [("order.paid", 1000), ("order.refunded", 250)]


def test_what_an_adapter_lets_through_the_one_check_before_the_log_refuses(server: IngestServer) -> None:
    """Times and quantities are left to the check every path's events pass (ingest/admit.py)."""
    order = woo_order(status="pending", created="0001-01-01T00:00:00")
    refused(server, woo("order.created", order),
            f"event woocommerce:woo:order:{order['id']}:placed (order.placed): time must be Unix milliseconds from 1970 "
            "to before the year 5000, got -62135596800000")
    sh = shopify_order(qty=MAX_QTY + 1)
    refused(server, shopify("orders/paid", sh),
            f"event shopify:sh:order:{sh['id']}:paid (order.paid): items[0].qty must be an integer from 0 to 1000000, "
            "got 1000001")
    refused(server, stripe("payment_intent.succeeded", intent(100), created=10**14),
            "event.created must be Unix seconds from 1970 to before the year 5000, got 100000000000000")


@pytest.mark.parametrize(("amount", "reason"), [
    ("0.001", "'0.001' has more decimals than EUR has (2)"), ("0.005", "'0.005' has more decimals than EUR has (2)"),
    ("1_000", "not a plain decimal amount"), ("\u0665", "not a plain decimal amount"),
    ("1e2", "not a plain decimal amount"), (" 1", "not a plain decimal amount"), ("+1", "not a plain decimal amount"),
    ("NaN", "not a plain decimal amount"),
])
def test_money_strings_are_plain_decimals_of_the_currency(server: IngestServer, amount: str, reason: str) -> None:
    path, body, headers = events(paid(amount))
    r = server.deliver(path, body, headers)
    assert r.status_code == 400 and r.json()["error"].startswith(f"nothing was recorded; events[0]: amount: {reason}")
    path, body, headers = shopify("orders/paid", shopify_order(total=amount))
    r = server.deliver(path, body, headers)
    assert r.status_code == 400 and r.json()["error"].startswith("order.total_price is not a decimal amount of EUR")


def test_vendors_extra_decimals_are_read_as_each_vendor_writes_them(server: IngestServer) -> None:
    """WooCommerce writes the shop's own number of decimals: rounded half up. Shopify writes the
    currency's: extra zeros are exact, anything else is refused."""
    appended = Appended(server)
    assert server.deliver(*woo("order.created", woo_order(total="10.005", price="10.005"))).status_code == 200
    [e] = appended.since()
    assert (e.amount, e.items[0].unit_price) == (1001, 1001)
    assert server.deliver(*shopify("orders/paid", shopify_order(total="1980.00", price="1980.00", currency="JPY"))).status_code == 200
    [e] = appended.since()
    assert (e.amount, e.currency) == (1980, "JPY")


def test_nesting_too_deep_for_the_log_is_a_400_kept_and_no_traceback(server: IngestServer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    refused(server, events({"type": "custom", "id": "deep", "time": (NOW - 60) * 1000, "visitor": "v", "name": "x",
                            "properties": nested(254)}),
            "nothing was recorded; events[0]: properties nests objects and lists more than 32 levels deep")
    assert not [r for r in caplog.records if r.exc_info]


def test_redrive_applies_the_same_check(server: IngestServer) -> None:
    """A delivery kept for its signature is redriven once the secret is fixed: its event out of range
    keeps it refused, in words."""
    order = woo_order(status="pending", created="0001-01-01T00:00:00")
    path, body, headers = woo("order.created", order)
    headers["X-WC-Webhook-Signature"] = base64.b64encode(hmac.new(b"wc_rotated", body, hashlib.sha256).digest()).decode()
    assert server.deliver(path, body, headers).status_code == 400
    [kept] = server.rejected.list(limit=1)
    assert kept.reason.startswith("X-WC-Webhook-Signature does not match the body")
    config = server.ingest.config
    server.ingest.config = parse_config(CONFIG.replace('secret = "wc_limits"', 'secret = "wc_rotated"'), {})
    try:
        result = server.run(server.ingest.redrive(kept))
    finally:
        server.ingest.config = config
    assert result == (f"still rejected (400): event woocommerce:woo:order:{order['id']}:placed (order.placed): time must "
                      "be Unix milliseconds from 1970 to before the year 5000, got -62135596800000")


# --- hypothesis: anything at every path -------------------------------------------------------------

def mostly(good: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times in four: a delivery is accepted only when every field of it is."""
    return st.integers(0, 3).flatmap(lambda i: wild if i == 0 else good)


ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-(10**13), 10**13), st.integers(-(2**70), 2**70),
                 st.sampled_from([0, 1, -1, -500000, MAX_AMOUNT, MAX_AMOUNT + 1, 10**10, 2**63 - 1]))
money_text = st.one_of(
    st.from_regex(r"-?[0-9]{1,22}(\.[0-9]{0,5})?", fullmatch=True),
    st.sampled_from(["0.001", "0.005", "1_000", "\u0665", "1e2", " 1", "+1", "NaN", "Infinity", "1.", ".5", "-0.00",
                     "92233720368547758.07", "10000000000.00", "10000000000.01", "9999999999.99", "0", "12.34"]),
    st.text(max_size=8),
)
anything = st.one_of(st.none(), st.booleans(), st.floats(), st.lists(st.integers(), max_size=2), st.just({}))
# Near the edge of the range, and in it: minor units (Stripe), decimal strings (the others).
good_ints = st.one_of(st.integers(0, 10**6), st.integers(MAX_AMOUNT - 3, MAX_AMOUNT + 3))
good_text = st.one_of(st.builds(lambda w, f: f"{w}.{f:02d}", st.integers(0, 10**10 + 1), st.integers(0, 99)),
                      st.integers(0, 10**6).map(str))
stripe_amounts = mostly(good_ints, st.one_of(ints, money_text, anything))
amounts = mostly(good_text, st.one_of(ints, money_text, anything))
qtys = mostly(st.integers(1, 5), st.one_of(st.sampled_from([0, MAX_QTY, MAX_QTY + 1]), st.integers(-5, 2 * MAX_QTY),
                                          st.integers(-(2**70), 2**70), anything))
depths = mostly(st.integers(1, 33), st.integers(0, 300))
currencies = mostly(st.just("EUR"), st.sampled_from(["JPY", "KWD", "ISK", "MGA"]))
woo_times = mostly(st.just("2026-11-22T09:00:00"), st.sampled_from([
    "0001-01-01T00:00:00", "9999-12-31T23:59:59", "1970-01-01T00:00:00", "4999-12-31T23:59:59", "5000-01-01T00:00:00"]))


@st.composite
def stripe_cases(draw: st.DrawFn) -> Case:
    currency = draw(currencies).lower()
    kind = draw(st.sampled_from(["intent", "refund", "session", "customer"]))
    created = draw(mostly(st.just(NOW - 60), ints))
    if kind == "intent":
        return stripe("payment_intent.succeeded", intent(draw(stripe_amounts), currency), created)
    if kind == "refund":
        return stripe("charge.refunded", {"id": f"ch_{next(_ids)}", "object": "charge", "amount": draw(stripe_amounts),
                                          "amount_refunded": draw(stripe_amounts), "currency": currency,
                                          "payment_intent": "pi_r"}, created)
    if kind == "session":  # API versions before 2020: the order is its display_items
        lines = [{"amount": draw(stripe_amounts), "currency": currency, "quantity": draw(qtys), "custom": {"name": "x"}}
                 for _ in range(draw(st.integers(1, 3)))]
        return stripe("checkout.session.completed", {"id": f"cs_{next(_ids)}", "object": "checkout.session",
                                                     "payment_intent": f"pi_{next(_ids)}", "payment_status": "paid",
                                                     "mode": "payment", "display_items": lines}, created)
    return stripe("customer.created", {"id": f"cus_{next(_ids)}", "object": "customer", "email": "a@example.com",
                                       "name": nested(draw(depths)), "created": created}, created)


@st.composite
def woo_cases(draw: st.DrawFn) -> Case:
    order = woo_order(total=draw(amounts), status=draw(st.sampled_from(["processing", "pending", "cancelled"])),
                      created=draw(woo_times), price=draw(amounts), qty=draw(qtys),
                      refund=draw(st.one_of(st.none(), amounts)))
    order["meta_data"] = [{"key": "deep", "value": nested(draw(depths))}]
    return woo(draw(st.sampled_from(["order.created", "order.updated"])), order)


@st.composite
def shopify_cases(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        return shopify("customers/update", {"id": 5 + next(_ids), "email": "a@example.com",
                                            "updated_at": "2026-11-22T10:00:00+01:00", "total_spent": draw(amounts),
                                            "verified_email": nested(draw(depths))})
    return shopify("orders/paid", shopify_order(total=draw(amounts), price=draw(amounts), qty=draw(qtys),
                                                currency=draw(currencies),
                                                at=draw(mostly(st.just("2026-11-22T10:00:00+01:00"), st.sampled_from(
                                                    ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59Z"])))))


@st.composite
def events_cases(draw: st.DrawFn) -> Case:
    item = {"product": "p", "qty": draw(qtys), "price": draw(amounts)}
    time = draw(mostly(st.just((NOW - 60) * 1000), st.one_of(ints, anything, st.just("5000-01-01T00:00:00Z"))))
    return events(paid(draw(amounts), draw(currencies), time=time, items=[item], properties=nested(draw(depths))))


@pytest.mark.parametrize("cases", [stripe_cases, woo_cases, shopify_cases, events_cases])
@settings(max_examples=75, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_path_answers_a_4xx_in_words_or_appends_only_events_within_the_limits(
        server: IngestServer, cases: Callable[[], st.SearchStrategy[Case]], data: st.DataObject) -> None:
    appended = Appended(server)
    path, body, headers = data.draw(cases())
    r = server.deliver(path, body, headers)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
    answer = r.json()
    event(f"{path.rsplit('/', 1)[-1]} {r.status_code} {answer.get('status', '')}")  # --hypothesis-show-statistics
    if r.status_code != 200:
        assert isinstance(answer["error"], str) and answer["error"], answer
        [kept] = server.rejected.list(limit=1)
        assert (kept.body, kept.reason) == (body, answer["error"])
        assert appended.since() == []
        return
    new = appended.since()
    assert len(new) == answer.get("new", 0), answer
    for e in new:
        assert problem(e) is None and depth_problem(e.attrs) is None, e
