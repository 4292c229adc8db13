"""A small, deterministic shop for the dashboard's browser tests and screenshots: events API events
(visits, carts, orders with items, e-mail clicks, refunds) over the days before `now`, so every view
of the dashboard has something to show. Times are relative to `now` (Unix ms), which the caller passes."""

from __future__ import annotations

from typing import Any

HOUR = 3_600_000
DAY = 24 * HOUR
PRODUCTS = [("mug", "Mug", "12.50", "Kitchen"), ("tee", "T-shirt", "24.00", "Apparel"), ("cap", "Cap", "18.90", "Apparel"),
            ("lamp", "Desk lamp", "49.00", "Home"), ("pen", "Fountain pen", "35.00", "Office")]


def shop_events(now: int, days: int = 6, prefix: str = "shop") -> list[dict[str, Any]]:
    """Per day d (0 = today, each event at least an hour before `now`): visits, carts (some bought,
    some left), paid orders of up to three products, e-mail clicks before some orders, one refund."""
    out: list[dict[str, Any]] = []
    for d in range(days):
        base = now - d * DAY - 2 * HOUR
        for i in range(3 + d % 3):  # customers of the day
            customer = f"{prefix}-c{(d * 3 + i) % 7}"
            visitor = f"{prefix}-v{d}-{i}"
            t = base - i * 60_000
            n = f"{prefix}-{d}-{i}"
            out.append({"type": "page_view", "id": f"pv-{n}", "time": t - 30_000, "visitor": visitor, "url": "/"})
            out.append({"type": "identify", "id": f"id-{n}", "time": t - 25_000, "visitor": visitor, "customer": customer})
            chosen = [PRODUCTS[(d + i + k) % len(PRODUCTS)] for k in range(1 + (i % 3))]
            for k, (sku, name, price, cat) in enumerate(chosen):
                out.append({"type": "add_to_cart", "id": f"ac-{n}-{k}", "time": t - 20_000 + k, "customer": customer,
                            "cart": f"cart-{n}", "product": sku, "product_name": name, "qty": 1, "price": price,
                            "currency": "EUR", "category": cat, "brand": "Acme"})
            if i % 4 == 3:
                continue  # this cart is left: abandoned once abandon_after passes
            if i % 2 == 0:
                campaign = "spring-sale" if d % 2 == 0 else None
                key = {"campaign": campaign} if campaign else {"automation": "welcome"}
                out.append({"type": "email_click", "id": f"em-{n}", "time": t - 40_000, "customer": customer, **key})
            total = sum(round(float(p) * 100) for _, _, p, _ in chosen)
            out.append({"type": "order_paid", "id": f"op-{n}", "time": t, "customer": customer, "order": f"o-{n}",
                        "cart": f"cart-{n}", "amount": f"{total // 100}.{total % 100:02d}", "currency": "EUR",
                        "items": [{"product": sku, "name": name, "qty": 1, "price": price, "category": cat}
                                  for sku, name, price, cat in chosen]})
        if d == 2:
            out.append({"type": "order_refunded", "id": f"rf-{prefix}-{d}", "time": base + 600_000, "customer": f"{prefix}-c6",
                        "order": f"o-{prefix}-{d}-0", "amount": "5.00", "currency": "EUR"})
    for k in range(3):  # registered, never bought
        out.append({"type": "identify", "id": f"reg-{prefix}-{k}", "time": now - HOUR - k * 1000, "visitor": f"{prefix}-reg{k}",
                    "customer": f"{prefix}-new{k}"})
    return out
