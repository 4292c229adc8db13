"""Messages (core/automations/messages.py): the default templates of each trigger in en/de/es/fr/it
with money and dates in the locale (exact strings, Babel's CLDR spacing included), user templates in
the sandbox, and every part of a message."""

from __future__ import annotations

from typing import Any

import pytest

from core.automations.definition import LOCALES, TRIGGERS
from core.automations.messages import money, render, when
from core.automations.templates import DEFAULTS

pytestmark = pytest.mark.unit

NBSP, NNBSP = "\xa0", "\u202f"
AT = 1_796_036_400_000  # 2026-11-30 11:00 UTC: 12:00 in Berlin, 06:00 in New York
ORDER: dict[str, Any] = {"customer": "c1", "name": "Ada Lovelace", "order": "o-17", "amount": 123450, "currency": "EUR",
                         "items": [["p1", 2, 50000, "Mug"], ["p2", 1, 23450, "Tea"]]}
CART: dict[str, Any] = {"customer": "c9", "email": "bo@example.com", "cart": "k1", "amount": 4990, "currency": "JPY",
                        "items": [["p1", 1, 4990, ""]]}


def order_paid(locale: str, **kw: Any) -> Any:
    return render("big-order", "order.paid", "c1", "ev1", AT, AT, ORDER, locale=locale, timezone="Europe/Berlin", **kw)


@pytest.mark.parametrize(("locale", "subject", "line"), [
    ("en", "New order o-17: €1,234.50",
     f"Ada Lovelace paid €1,234.50 for order o-17 (3 items) on Nov 30, 2026, 12:00{NNBSP}PM."),
    ("de", f"Neue Bestellung o-17: 1.234,50{NBSP}€",
     f"Ada Lovelace hat am 30.11.2026, 12:00 1.234,50{NBSP}€ für Bestellung o-17 bezahlt (3 Artikel)."),
    ("es", f"Nuevo pedido o-17: 1.234,50{NBSP}€",
     f"Ada Lovelace pagó 1.234,50{NBSP}€ por el pedido o-17 (3 artículos) el 30 nov 2026, 12:00."),
    ("fr", f"Nouvelle commande o-17 : 1{NNBSP}234,50{NBSP}€",
     f"Ada Lovelace a payé 1{NNBSP}234,50{NBSP}€ pour la commande o-17 (3 articles) le 30 nov. 2026, 12:00."),
    ("it", f"Nuovo ordine o-17: 1.234,50{NBSP}€",
     f"Ada Lovelace ha pagato 1.234,50{NBSP}€ per l'ordine o-17 (3 articoli) il 30 nov 2026, 12:00."),
])
def test_an_order_paid_in_each_language(locale: str, subject: str, line: str) -> None:
    m = order_paid(locale)
    price = {"en": ("€500.00", "€234.50"), "fr": (f"500,00{NBSP}€", f"234,50{NBSP}€")}.get(
        locale, (f"500,00{NBSP}€", f"234,50{NBSP}€"))
    assert m.subject == subject
    assert m.text == f"{line}\n\n- 2 × Mug ({price[0]})\n- 1 × Tea ({price[1]})"
    assert m.slack_text == f"*{subject}*\n{line}"
    assert m.html == f"<p>{line.replace(chr(39), '&#x27;')}</p><ul><li>2 × Mug ({price[0]})</li><li>1 × Tea ({price[1]})</li></ul>"
    assert m.json == {"automation": "big-order", "trigger": "order.paid", "subject": "c1", "cause": "ev1",
                      "fired_at": AT, "due_at": AT, "locale": locale, "title": subject, "text": line, "data": ORDER}


@pytest.mark.parametrize(("locale", "subject", "line"), [
    ("en", "Abandoned cart: ¥4,990", f"bo@example.com left a cart worth ¥4,990 (1 item) on Nov 30, 2026, 6:00{NNBSP}AM."),
    ("de", f"Verlassener Warenkorb: 4.990{NBSP}¥",
     f"bo@example.com hat am 30.11.2026, 06:00 einen Warenkorb im Wert von 4.990{NBSP}¥ verlassen (1 Artikel)."),
    ("es", f"Carrito abandonado: 4.990{NBSP}JPY",
     f"bo@example.com abandonó un carrito de 4.990{NBSP}JPY (1 artículo) el 30 nov 2026, 6:00."),
    ("fr", f"Panier abandonné : 4{NNBSP}990{NBSP}JPY",
     f"bo@example.com a abandonné un panier de 4{NNBSP}990{NBSP}JPY (1 article) le 30 nov. 2026, 06:00."),
    ("it", f"Carrello abbandonato: 4.990{NBSP}JPY",
     f"bo@example.com ha abbandonato un carrello di 4.990{NBSP}JPY (1 articolo) il 30 nov 2026, 06:00."),
])
def test_an_abandoned_cart_in_each_language_with_a_currency_without_decimals(locale: str, subject: str, line: str) -> None:
    m = render("rem", "cart.abandoned", "c9", "s:k1@1", AT, AT, CART, locale=locale, timezone="America/New_York")
    assert (m.subject, m.text.split("\n")[0]) == (subject, line)


@pytest.mark.parametrize(("locale", "subject"), [("en", "Plan quota at 80 %"), ("de", "Kontingent zu 80 % genutzt"),
                                                 ("es", "Cuota del plan al 80 %"), ("fr", "Quota du forfait à 80 %"),
                                                 ("it", "Quota del piano al 80 %")])
def test_a_quota_alert_in_each_language(locale: str, subject: str) -> None:
    m = render("quota", "quota.crossed", "", "quota:80@1", AT, AT, {"percent": 80, "count": 800, "limit": 1000},
               locale=locale, timezone="UTC")
    assert m.subject == subject and "800" in m.text and "1000" in m.text


def test_every_trigger_has_a_default_in_every_language() -> None:
    for locale in LOCALES:
        for trigger in TRIGGERS:
            m = render("a", trigger, "c1", "x", AT, AT, {"segment": "vip", "order": "o1"}, locale=locale, timezone="UTC")
            assert m.subject and m.text and m.html.startswith("<p>") and m.slack_text.startswith("*")
    assert {loc for loc, _ in DEFAULTS} == set(LOCALES)
    assert all(len({t for loc, t in DEFAULTS if loc == locale}) == len({t for _, t in DEFAULTS}) for locale in LOCALES)


def test_money_uses_each_currencys_exponent() -> None:
    assert money(1234, "KWD", "en") == f"KWD{NBSP}1.234"  # three decimals; CLDR's currency spacing, as Intl writes it
    assert money(1980, "JPY", "de") == f"1.980{NBSP}¥"
    assert money(-500, "EUR", "en") == "-€5.00"
    assert when(AT, "Asia/Tokyo", "en") == f"Nov 30, 2026, 8:00{NNBSP}PM"


def test_templates_override_parts_and_may_use_the_filters() -> None:
    m = order_paid("de", templates={
        "subject": "Danke, {{ name }}!", "text": "{{ amount }} am {{ date }}; {{ 250000 | money('CHF') }}",
        "html": "<b>{{ name }}</b> {{ payload.order }}", "slack_text": "{{ due_date }}",
        "json": '{"order": "{{ order }}", "total": {{ payload.amount }}}'})
    assert m.subject == "Danke, Ada Lovelace!"
    assert m.text == f"1.234,50{NBSP}€ am 30.11.2026, 12:00; 2.500,00{NBSP}CHF"
    assert m.html == "<b>Ada Lovelace</b> o-17"
    assert m.slack_text == "30.11.2026, 12:00"
    assert m.json == {"order": "o-17", "total": 123450}


def test_the_html_part_escapes_what_the_shop_sent_and_slack_text_too() -> None:
    payload = {**ORDER, "name": "<script>alert(1)</script> & co"}
    m = render("a", "order.paid", "c1", "e", AT, AT, payload, locale="en", timezone="UTC",
               templates={"html": "<p>{{ name }}</p>"})
    assert m.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"
    assert "<script>" not in m.slack_text and "&lt;script&gt;" in m.slack_text


def test_a_template_cannot_reach_python_internals_and_a_failing_one_keeps_the_default() -> None:
    sneaky = "{{ payload.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}"
    m = order_paid("en", templates={"subject": sneaky, "text": "{{ 'x' | money('EUR') }}"})
    assert m.subject == "New order o-17: €1,234.50"  # the sandbox refused: the default stays
    assert m.text.startswith("Ada Lovelace paid")  # money('x') raised: the default stays
    m = order_paid("en", templates={"json": "not json {{ order }}"})
    assert m.json["title"] == "New order o-17: €1,234.50"


def test_the_webhook_json_carries_the_overridden_subject_and_text() -> None:
    m = order_paid("en", templates={"subject": "Paid: {{ amount }}", "text": "Thanks {{ name }}"})
    assert (m.json["title"], m.json["text"]) == ("Paid: €1,234.50", "Thanks Ada Lovelace")


def test_a_sample_firing_is_what_the_book_gives_in_the_currency_s_units() -> None:
    from core.automations.samples import sample

    subject, cause, cart = sample("cart.abandoned", store="shop", currency="JPY", at=1_000_000)
    assert (subject, cause) == ("sample-customer", "shop:sample-cart@1000000")
    assert cart["amount"] == 30 and cart["items"][0] == ["mug", 2, 12, "Stoneware mug"]  # yen have no minor unit
    _, _, order = sample("order.paid", store="shop", currency="KWD", at=0)
    assert order["amount"] == 30_000 and order["currency"] == "KWD"  # three decimals
    m = render("reminder", "cart.abandoned", subject, cause, 1_000_000, 1_000_000,
               sample("cart.abandoned", store="shop", currency="EUR", at=1_000_000)[2], locale="de", timezone="Europe/Berlin")
    assert m.text.splitlines()[2:] == ["- 2 × Stoneware mug (12,00\u00a0€)", "- 1 × Filter papers x100 (6,00\u00a0€)"]
    assert sample("segment.exited", store="shop", currency="EUR", at=5, segment="vip")[2] == {
        "customer": "sample-customer", "email": "ann@example.com", "name": "Ann Example", "segment": "vip", "change": "exited"}
    assert sample("schedule", store="shop", currency="EUR", at=5, digest={"digest": "day", "last": "2026-12-06"})[2] == {
        "digest": "day", "last": "2026-12-06"}
