"""Stripe verification and normalisation, through a real HTTP server with an injected clock.

The real signed delivery in ../shared/fixtures/webhooks/stripe/signed_vector.* was signed in 2020:
it verifies with the clock frozen at its timestamp, and is refused as a replay with today's clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import parse_config
from core.events import Event, Item, Kind
from ingest import stripe as stripe_adapter
from tests.helpers import STRIPE_FIXTURES, IngestServer, stripe_signature

needs_shared = pytest.mark.skipif(
    not STRIPE_FIXTURES.is_dir(), reason=f"../shared is absent: no vendor fixtures at {STRIPE_FIXTURES}"
)

VECTOR_SECRET = "whsec_vG1fL6CMUouQ7cObF2VJprLVXT5jBLxB"
CONFIG = f"""
[orgs.odoo]
timezone = "Europe/Brussels"
currency = "USD"
token = "odoo-token-0123456789"
[orgs.odoo.stores.odoo-stripe]
provider = "stripe"
secret = "{VECTOR_SECRET}"
"""


class StripeServer(IngestServer):
    """The ingest app of CONFIG, its clock frozen at `now`."""

    def __init__(self, tmp: Path, now: float) -> None:
        super().__init__(tmp, CONFIG, now)

    def post(self, body: bytes, signature: str) -> httpx.Response:
        return self.deliver("/webhooks/stripe/odoo-stripe", body,
                            {"Stripe-Signature": signature, "Content-Type": "application/json"})


@pytest.fixture
def vector() -> tuple[bytes, str, int]:
    meta = json.loads((STRIPE_FIXTURES / "signed_vector.checkout.session.completed.meta.json").read_text())
    body = (STRIPE_FIXTURES / meta["body_file"]).read_bytes()
    header = meta["headers"]["Stripe-Signature"]
    return body, header, int(header.split(",")[0][2:])


@needs_shared
def test_real_signed_delivery_verifies_with_the_clock_frozen_at_its_timestamp(vector, tmp_path: Path) -> None:
    body, header, t = vector
    (tmp_path / "a").mkdir()
    server = StripeServer(tmp_path / "a", now=t)
    try:
        r = server.post(body, header)
        assert r.status_code == 200, r.text
        paid_id = "stripe:odoo-stripe:paid:pi_1GqFpCAlCFm536g8HsBSvSEt"
        assert r.json() == {"status": "accepted", "events": [paid_id], "new": 1, "duplicates": 0}
        [event] = server.logged()
        # 2019-05-16 API: no amount_total; the order is its display_items: 2 x 15.00 USD.
        assert event == Event(
            id=paid_id, kind=Kind.ORDER_PAID, org="odoo",
            store="odoo-stripe", time=1591264651000, amount=3000, currency="USD", customer="cus_HP3xLqXMIwBfTg",
            order="pi_1GqFpCAlCFm536g8HsBSvSEt",
            items=(Item(product="t-shirt", qty=2, unit_price=1500, name="t-shirt"),),
            raw_id="cs_test_SI8yz61JCZ4gxd7Z5oGfQSn9ZbubC6SZF3bJTxvy2PVqSd3dzbDV1kyd",
            cart="cs_test_SI8yz61JCZ4gxd7Z5oGfQSn9ZbubC6SZF3bJTxvy2PVqSd3dzbDV1kyd",
        )
        # Within the 300 s tolerance it still verifies; a redelivery is a duplicate, not a second order.
        server.now = t + 299
        assert server.post(body, header).json()["status"] == "duplicate"
    finally:
        server.close()


@needs_shared
def test_real_signed_delivery_is_refused_when_changed_or_replayed(vector, tmp_path: Path) -> None:
    body, header, t = vector
    (tmp_path / "b").mkdir()
    server = StripeServer(tmp_path / "b", now=t)
    try:
        tampered = server.post(body.replace(b"1500", b"10"), header)
        assert tampered.status_code == 400 and "does not verify" in tampered.json()["error"]
        other_secret = server.post(body, stripe_signature(body, "whsec_someone_else", t))
        assert other_secret.status_code == 400
        server.now = t + 301
        late = server.post(body, header)
        assert late.status_code == 400 and "more than 300 s old" in late.json()["error"]
        assert server.logged() == []
    finally:
        server.close()


S = "stripe:odoo-stripe"
FIXTURE_EXPECTATIONS = {
    # file: (event id, kind, amount in ISO minor units, currency, order key)
    "payment_intent.succeeded.json": (f"{S}:paid:pi_000000000000000000000000", Kind.ORDER_PAID, 2000, "USD", "pi_000000000000000000000000"),
    "charge.succeeded.json": (f"{S}:paid:pi_000000000000000000000000", Kind.ORDER_PAID, 2000, "USD", "pi_000000000000000000000000"),
    "invoice.paid.json": (f"{S}:paid:pi_000000000000000000000000", Kind.ORDER_PAID, 2000, "USD", "pi_000000000000000000000000"),
    "charge.succeeded.api-2026-04-22.dahlia.json": (f"{S}:paid:pi_3TbGBUJEe0yY0QKr1NhtlhQp", Kind.ORDER_PAID, 22200, "USD", "pi_3TbGBUJEe0yY0QKr1NhtlhQp"),
    "charge.refunded.json": (f"{S}:refunded:ch_000000000000000000000000:100", Kind.ORDER_REFUNDED, 100, "USD", "ch_000000000000000000000000"),
    "checkout.session.completed.stripe-ruby-mock.json": (f"{S}:paid:pi_00000000000000", Kind.ORDER_PAID, 25000, "USD", "pi_00000000000000"),
    "checkout.session.completed.json": (f"{S}:paid:pi_1GqFpCAlCFm536g8HsBSvSEt", Kind.ORDER_PAID, 3000, "USD", "pi_1GqFpCAlCFm536g8HsBSvSEt"),
    "customer.created.json": (f"{S}:customer:cus_00000000000000:created", Kind.CUSTOMER_CREATED, 0, "", None),
    "customer.updated.json": (f"{S}:evt_000000000000000000000000", Kind.CUSTOMER_UPDATED, 0, "", None),
    "product.updated.json": (f"{S}:evt_000000000000000000000000", Kind.PRODUCT_UPDATED, 0, "", None),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_fixtures_normalise(name: str) -> None:
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    payload = json.loads((STRIPE_FIXTURES / name).read_text())
    [event] = stripe_adapter.normalise(payload, store)
    assert (event.id, event.kind, event.amount, event.currency, event.order) == FIXTURE_EXPECTATIONS[name]
    assert event.time == payload["created"] * 1000
    assert (event.org, event.store) == ("odoo", "odoo-stripe")


@needs_shared
def test_one_payment_seen_as_intent_charge_and_invoice_is_one_fact() -> None:
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    ids = {stripe_adapter.normalise(json.loads((STRIPE_FIXTURES / n).read_text()), store)[0].id
           for n in ("payment_intent.succeeded.json", "charge.succeeded.json", "invoice.paid.json")}
    assert ids == {f"{S}:paid:pi_000000000000000000000000"}


@needs_shared
@pytest.mark.parametrize("name", ["event.docs-example.setup_intent.created.json", "openapi-fixtures/event.json"])
def test_fixtures_of_types_not_used_are_ignored(name: str) -> None:
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    assert stripe_adapter.normalise(json.loads((STRIPE_FIXTURES / name).read_text()), store) == []


def test_expired_checkout_is_an_abandoned_cart() -> None:
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    payload = {"id": "evt_1", "type": "checkout.session.expired", "created": 1_700_000_000,
               "data": {"object": {"id": "cs_1", "object": "checkout.session", "status": "expired",
                                   "amount_total": 4200, "currency": "eur", "customer": "cus_9"}}}
    [e] = stripe_adapter.normalise(payload, store)
    assert (e.id, e.kind, e.cart, e.amount, e.currency, e.customer) == (
        f"{S}:checkout:cs_1:expired", Kind.CHECKOUT_EXPIRED, "cs_1", 4200, "EUR", "cus_9")


def test_a_guest_checkout_names_its_buyer_and_its_expiry_the_same_person() -> None:
    """What the buyer typed at the checkout (customer_details) travels as attrs `email` and `customer_name`;
    a guest is the e-mail, so the session's abandoned cart and a later paid session are one person."""
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    session = {"id": "cs_2", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
               "amount_total": 4200, "currency": "eur", "customer": None, "payment_intent": "pi_2",
               "customer_details": {"email": " guest@example.com ", "name": "Gil  Guest", "phone": None}}
    [paid] = stripe_adapter.paid_from_checkout_session(session, store, 1_700_000_000_000, "evt_2")
    [expired] = stripe_adapter.expired_checkout({**session, "status": "expired"}, store, 1_700_000_000_000, "evt_3")
    for e in (paid, expired):
        assert (e.customer, e.attrs) == ("guest@example.com", {"email": "guest@example.com", "customer_name": "Gil Guest"})
    [known] = stripe_adapter.paid_from_checkout_session({**session, "customer": "cus_9", "customer_details": None,
                                                         "customer_email": "k@example.com"}, store, 1_700_000_000_000)
    assert (known.customer, known.attrs) == ("cus_9", {"email": "k@example.com"})
    [bare] = stripe_adapter.expired_checkout({"id": "cs_3", "object": "checkout.session"}, store, 1_700_000_000_000, "e")
    assert (bare.customer, bare.attrs) == (None, {})


def test_charges_and_invoices_name_their_buyer() -> None:
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    charge = {"id": "ch_1", "object": "charge", "paid": True, "status": "succeeded", "amount_captured": 500,
              "currency": "usd", "payment_intent": "pi_5", "receipt_email": "receipt@example.com",
              "billing_details": {"email": None, "name": "Bea Billing"}}
    [e] = stripe_adapter.paid_from_charge(charge, store, 1_700_000_000_000)
    assert e.attrs == {"email": "receipt@example.com", "customer_name": "Bea Billing"}
    invoice = {"id": "in_2", "object": "invoice", "status": "paid", "amount_paid": 1999, "currency": "usd",
               "customer": "cus_1", "customer_email": "inv@example.com", "customer_name": "Ivo Invoice"}
    [e] = stripe_adapter.paid_from_invoice(invoice, store, 1_700_000_000_000)
    assert e.attrs == {"email": "inv@example.com", "customer_name": "Ivo Invoice"}


@pytest.mark.parametrize(
    ("amount", "currency", "iso"),
    [(1500, "EUR", 1500), (1500, "JPY", 1500), (12340, "KWD", 12340), (50000, "ISK", 500), (700, "MGA", 70000)],
)
def test_stripe_amounts_become_iso_minor_units(amount: int, currency: str, iso: int) -> None:
    assert stripe_adapter.to_iso_minor(amount, currency) == iso


def test_invoice_of_current_api_names_its_payment_intent_in_payments() -> None:
    store = parse_config(CONFIG, {}).store("odoo-stripe")
    invoice = {"id": "in_1", "object": "invoice", "status": "paid", "amount_paid": 1999, "currency": "usd",
               "customer": "cus_1", "payments": {"object": "list", "data": [
                   {"object": "invoice_payment", "status": "paid",
                    "payment": {"type": "payment_intent", "payment_intent": "pi_42"}}]}}
    [e] = stripe_adapter.paid_from_invoice(invoice, store, 1_700_000_000_000)
    assert (e.id, e.order, e.amount) == (f"{S}:paid:pi_42", "pi_42", 1999)
    del invoice["payments"]
    [e] = stripe_adapter.paid_from_invoice(invoice, store, 1_700_000_000_000)
    assert e.order == "in_1"


def test_signature_header_forms() -> None:
    """Stripe's scheme, checked on the raw bytes: any v1 entry may match (a secret being rolled sends
    two), entries of other schemes are ignored, a header without t or v1 says what is missing."""
    from ingest.errors import BadSignature
    from ingest.stripe import verify

    body, t = b'{"id": "evt_1"}', 1_700_000_000
    good = stripe_signature(body, "whsec_new", t).split(",")[1]
    old = stripe_signature(body, "whsec_old", t).split(",")[1]
    verify(body, f"t={t},{old},{good},v0=abc", "whsec_new", t)
    verify(body, f"t={t}, {good}", "whsec_new", t + 300)
    cases = {
        f"t={t},{old}": "no signature matches",
        f"{good}": "no t=<unix time>",
        f"t=abc,{good}": "no t=<unix time>",
        f"t={t},v0={good[3:]}": "no v1 signature",
        f"t={t + 1},{good}": "no signature matches",
    }
    for header, message in cases.items():
        with pytest.raises(BadSignature, match=message):
            verify(body, header, "whsec_new", t)
    with pytest.raises(BadSignature, match="more than 300 s old"):
        verify(body, f"t={t},{good}", "whsec_new", t + 301)


def _header_parts() -> st.SearchStrategy[list[str]]:
    body, t = b'{"id": "evt_1"}', 1_700_000_000
    good = stripe_signature(body, "whsec_new", t).split(",")[1]
    old = stripe_signature(body, "whsec_old", t).split(",")[1]
    part = st.sampled_from([f"t={t}", f"t={t + 1}", "t=abc", "t=\u00b2", good, old, "v0=" + good[3:], "v1=", "junk", "",
                            "t=", good.upper(), good + "0"])
    return st.lists(part, max_size=5)


@settings(max_examples=500, deadline=None)
@given(_header_parts())
def test_our_signature_check_agrees_with_the_stripe_library(parts: list[str]) -> None:
    """verify() replaced stripe.WebhookSignature.verify_header (one C call instead of the library's
    Python): on every header these parts make, both accept or both refuse."""
    import stripe

    from ingest.errors import BadSignature
    from ingest.stripe import verify

    body, header = b'{"id": "evt_1"}', ",".join(parts)
    try:
        stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_new", tolerance=None)
        library = True
    except stripe.SignatureVerificationError:
        library = False
    try:
        verify(body, header, "whsec_new", 1_700_000_000)
        ours = True
    except BadSignature:
        ours = False
    assert ours == library, header
