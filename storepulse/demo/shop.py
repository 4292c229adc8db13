"""What happens in the demo shops: visits, carts, checkouts, purchases, refunds, e-mail engagement.

Pure and deterministic: every hour of history and every live tick draws from its own generator,
seeded by (seed, the slot's start), so the same slot always yields the same happenings with the
same ids (a history sent again after a crash is dropped as duplicates), whatever came before it.
Times are ms since the epoch, UTC, given by the caller.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    category: str
    brand: str
    price: int  # minor units of EUR (a USD store charges the same number of cents)


CATALOGUE = (
    Product("p-espresso", "Espresso beans 1 kg", "coffee", "Torrefazione", 2490),
    Product("p-filter", "Filter roast 500 g", "coffee", "Torrefazione", 1290),
    Product("p-decaf", "Decaf 250 g", "coffee", "Nachtcafe", 890),
    Product("p-grinder", "Hand grinder", "equipment", "Mahlwerk", 8900),
    Product("p-kettle", "Gooseneck kettle", "equipment", "Mahlwerk", 5900),
    Product("p-dripper", "Ceramic dripper", "equipment", "Keramik", 2900),
    Product("p-papers", "Filter papers x100", "accessories", "Keramik", 590),
    Product("p-mug", "Stoneware mug", "accessories", "Keramik", 1900),
    Product("p-scale", "Brew scale", "equipment", "Mahlwerk", 4500),
    Product("p-tea", "Sencha 100 g", "tea", "Teehaus", 1150),
    Product("p-gift", "Gift card", "gifts", "Torrefazione", 5000),
    Product("p-sub", "Monthly beans", "coffee", "Torrefazione", 1990),
)
CAMPAIGNS = ("spring-sale", "new-roasts", "brewing-guide", "black-friday")
AUTOMATIONS = ("abandoned-cart", "welcome", "win-back")
CUSTOMERS = 400  # the pool returning customers are drawn from
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannah", "Ivan", "Jonas", "Katarina",
               "Lukas", "Mia", "Noah", "Olga", "Paul", "Rosa", "Samir", "Tilda", "Yusuf", "Zoe", "Mateo", "Ines")
LAST_NAMES = ("Becker", "Costa", "Dubois", "Fischer", "García", "Hansen", "Jovanović", "Klein", "Larsen", "Müller",
              "Novak", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Vogel", "Weber", "Yılmaz", "Zimmermann", "Berg")


def person(number: int) -> str:
    """The name of the demo's person `number` (a customer, or a guest by order number): the same at
    every store, so one person reads the same in every list."""
    return f"{FIRST_NAMES[number % len(FIRST_NAMES)]} {LAST_NAMES[number // len(FIRST_NAMES) % len(LAST_NAMES)]}"
REGULARS = 0.4  # a vendor order's draw below this (and above 0.15, a guest's) is a regular's


@dataclass(frozen=True, slots=True)
class Line:
    product: Product
    qty: int

    @property
    def total(self) -> int:
        return self.product.price * self.qty


@dataclass(frozen=True, slots=True)
class SiteEvent:
    """One event for the events API (its JSON fields), at `time`."""

    time: int
    fields: dict[str, object]


@dataclass(frozen=True, slots=True)
class Order:
    """A paid order at a vendor store (Stripe, WooCommerce or Shopify)."""

    provider: str
    number: int  # unique per store; the vendor's order id is made from it
    time: int
    customer: int | None  # None: a guest
    lines: tuple[Line, ...]
    refund: int = 0  # minor units refunded a day later (0: none)

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)


@dataclass(frozen=True, slots=True)
class Registration:
    """A customer account created at the WooCommerce store (who may never buy)."""

    customer: int
    time: int


@dataclass(slots=True)
class Happenings:
    site: list[SiteEvent] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)


def _lines(rng: random.Random) -> tuple[Line, ...]:
    picks = rng.sample(CATALOGUE, rng.choice((1, 1, 1, 2, 2, 3)))
    return tuple(Line(p, rng.choice((1, 1, 1, 2, 3))) for p in picks)


def _busy(t: int) -> float:
    """How busy the shops are at `t`, 0.3 to 1.3: quiet at night (UTC), busier at weekends."""
    hour = (t // HOUR_MS) % 24
    weekday = (t // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: 0 is Monday
    day = 0.3 + 0.7 * max(0.0, math.sin(math.pi * (hour - 5) / 18)) if 5 <= hour <= 23 else 0.3
    return day * (1.3 if weekday >= 5 else 1.0)


def _session(rng: random.Random, tag: str, start: int, span: int, buy: bool | None, out: Happenings) -> None:
    """One visitor's visit to the site (the events-API store), all events within `span` ms of `start`."""
    step = max(1, span // 8)
    visitor = f"v-{tag}"
    known = rng.random() < 0.55
    customer = f"c{rng.randrange(CUSTOMERS)}" if known else None
    who: dict[str, object] = {"visitor": visitor, **({"customer": customer} if customer else {})}

    def add(at: int, name: str, **fields: object) -> None:
        out.site.append(SiteEvent(at, {"id": f"{tag}-{name}", "time": at, **who, **fields}))

    t = start
    if customer and rng.random() < 0.35:  # came from an e-mail: opened, then clicked
        key = "campaign" if rng.random() < 0.6 else "automation"
        name = rng.choice(CAMPAIGNS if key == "campaign" else AUTOMATIONS)
        add(t, "open", type="email_open", **{key: name})
        t += step
        add(t, "click", type="email_click", **{key: name})
        t += step
    add(t, "view", type="page_view", url="/")
    viewed = rng.choice(CATALOGUE)
    t += step
    add(t, "product", type="product_view", product=viewed.id, product_name=viewed.name, category=viewed.category,
        brand=viewed.brand, price=_major(viewed.price), currency="EUR")
    if not (buy or (buy is None and rng.random() < 0.35)):
        return
    lines = _lines(rng)
    cart = f"cart-{tag}"
    items = [{"product": ln.product.id, "qty": ln.qty, "price": _major(ln.product.price), "name": ln.product.name,
              "category": ln.product.category, "brand": ln.product.brand} for ln in lines]
    amount = _major(sum(ln.total for ln in lines))
    t += step
    add(t, "add", type="add_to_cart", cart=cart, currency="EUR", items=items[:1])
    t += step
    add(t, "cart", type="cart_updated", cart=cart, currency="EUR", amount=amount, items=items)
    if not (buy or (buy is None and rng.random() < 0.6)):
        return
    t += step
    add(t, "checkout", type="checkout_started", cart=cart, currency="EUR", amount=amount, items=items)
    if not (buy or (buy is None and rng.random() < 0.7)):
        return
    number = int(customer[1:]) if customer else CUSTOMERS + rng.randrange(10**6)
    contact = {"email": f"c{number}@example.com", "customer_name": person(number)}  # typed at the checkout
    if customer is None:  # a purchase needs an account: the visitor signs up and is identified
        customer = f"c{number}"
        t += step
        add(t, "identify", type="identify", customer=customer,
            properties={"email": contact["email"], "name": contact["customer_name"]})
        who["customer"] = customer
    t += step
    add(t, "paid", type="order_paid", order=f"o-{tag}", cart=cart, currency="EUR", amount=amount, items=items,
        properties=contact)
    if rng.random() < 0.06:
        refund = sum(ln.total for ln in lines[:1])
        add(t + DAY_MS, "refund", type="order_refunded", order=f"o-{tag}", currency="EUR", amount=_major(refund))


def _major(minor: int) -> str:
    """An amount as the plain decimal string the events API takes ("12.34")."""
    return f"{minor // 100}.{minor % 100:02d}"


def _buyer(rng: random.Random) -> int | None:
    """Who pays a vendor order: a guest (15 %), one of the shop's regulars (the pool), or a first-time
    buyer, so that about a quarter of a period's buyers have bought before, as in a real shop."""
    draw = rng.random()
    if draw < 0.15:
        return None
    return rng.randrange(CUSTOMERS) if draw < REGULARS else CUSTOMERS + rng.randrange(10**6)


def _order(rng: random.Random, provider: str, number: int, t: int) -> Order:
    customer = _buyer(rng)
    lines = _lines(rng)
    refund = lines[0].total if rng.random() < 0.07 else 0
    return Order(provider, number, t, customer, lines, refund)


def hour(seed: int, start: int) -> Happenings:
    """The happenings of the hour that starts at `start` (ms): site sessions, vendor orders, sign-ups."""
    rng = random.Random(f"{seed}:hour:{start}")
    out = Happenings()
    busy = _busy(start)
    sessions = int(6 * busy + rng.random() * 4)
    for n in range(sessions):
        _session(rng, f"h{start // 1000}-{n}", start + rng.randrange(HOUR_MS - 600_000), 480_000, None, out)
    for i, provider in enumerate(("stripe", "woocommerce", "shopify")):
        if rng.random() < 0.22 * busy:
            out.orders.append(_order(rng, provider, (start // 60_000) * 10 + i, start + rng.randrange(HOUR_MS)))
    if rng.random() < 0.08:
        out.registrations.append(Registration(100_000 + (start // HOUR_MS) % 10**6, start + rng.randrange(HOUR_MS)))
    # E-mails opened and not clicked (drawn last: the hour's other happenings stay as they were), so
    # that about a third of the people who open one click it, as in a real shop.
    for n in range(int(3 * busy + rng.random() * 2)):
        key = "campaign" if rng.random() < 0.6 else "automation"
        name = rng.choice(CAMPAIGNS if key == "campaign" else AUTOMATIONS)
        at = start + rng.randrange(HOUR_MS)
        out.site.append(SiteEvent(at, {"id": f"h{start // 1000}-open-{n}", "type": "email_open", "time": at,
                                       "customer": f"c{rng.randrange(CUSTOMERS)}", key: name}))
    _sends(rng, start, busy, out)
    _comebacks(seed, start, out)
    return out


COMEBACK = 0.15  # of the carts left in an hour, the share bought 2-8 hours later


def _comebacks(seed: int, start: int, out: Happenings) -> None:
    """Some shoppers who left a cart come back hours later and buy it, as a reminder brings some back
    (after the demo's abandoned-cart automation has sent one: the automation's results count them). From a
    generator of its own, so the hour's other happenings stay as they were."""
    rng = random.Random(f"{seed}:comeback:{start}")
    bought = {e.fields.get("cart") for e in out.site if e.fields["type"] == "order_paid"}
    left = [e for e in out.site if e.fields["type"] == "cart_updated" and e.fields["cart"] not in bought]
    for e in left:
        if rng.random() >= COMEBACK:
            continue
        f, at = e.fields, e.time + rng.randrange(2 * HOUR_MS, 8 * HOUR_MS)
        tag, customer = str(f["cart"]).removeprefix("cart-"), f.get("customer")
        number = int(str(customer)[1:]) if customer else CUSTOMERS + rng.randrange(10**6)
        contact = {"email": f"c{number}@example.com", "customer_name": person(number)}
        who = {"visitor": f["visitor"], "customer": f"c{number}"}
        if not customer:  # a purchase needs an account: the visitor signs up and is identified
            out.site.append(SiteEvent(at - 1000, {"id": f"{tag}-back-identify", "type": "identify", "time": at - 1000, **who,
                                                  "properties": {"email": contact["email"], "name": contact["customer_name"]}}))
        out.site.append(SiteEvent(at, {"id": f"{tag}-back-paid", "type": "order_paid", "time": at, **who, "order": f"o-{tag}",
                                       "cart": f["cart"], "currency": "EUR", "amount": f["amount"], "items": f["items"],
                                       "properties": contact}))


def _sends(rng: random.Random, start: int, busy: float, out: Happenings) -> None:
    """E-mails sent (drawn after everything else of the hour): campaign i goes to every known customer
    on weekday i (Monday: the first) at 09:00 UTC, once a week; each automation sends one or two an hour
    (busier hours more), so opens over sends are a campaign's ~20 % and an automation's ~45 %."""
    weekday = (start // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: 0 is Monday
    if (start // HOUR_MS) % 24 == 9 and weekday < len(CAMPAIGNS):
        campaign = CAMPAIGNS[weekday]
        for c in range(CUSTOMERS):
            out.site.append(SiteEvent(start + c, {"id": f"h{start // 1000}-sent-{c}", "type": "email_sent",
                                                  "time": start + c, "customer": f"c{c}", "campaign": campaign}))
    for automation in AUTOMATIONS:
        for n in range(int(1.5 * busy + rng.random())):
            at = start + rng.randrange(HOUR_MS)
            out.site.append(SiteEvent(at, {"id": f"h{start // 1000}-sent-{automation}-{n}", "type": "email_sent", "time": at,
                                           "customer": f"c{rng.randrange(CUSTOMERS)}", "automation": automation}))


def tick(seed: int, at: int, span: int, number: int) -> Happenings:
    """Live traffic of the `span` ms before `at`: two visits, and a paid order at one of the four
    kinds of store in turn (`number` counts ticks), so every figure moves every few seconds."""
    rng = random.Random(f"{seed}:tick:{at}")
    out = Happenings()
    turn = ("events", "stripe", "woocommerce", "shopify")[number % 4]
    for n in range(2):
        _session(rng, f"t{at}-{n}", at - span, span, True if (turn == "events" and n == 0) else None, out)
    if turn != "events":
        out.orders.append(_order(rng, turn, at * 10 + 9, at - span // 2))  # by the ms: ticks may be < 1 s apart
    out.site = [e for e in out.site if e.time <= at]  # a refund a day later has not happened yet
    out.orders = [o if o.refund == 0 else Order(o.provider, o.number, o.time, o.customer, o.lines) for o in out.orders]
    return out
