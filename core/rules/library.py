"""The predefined segments: documented rules in the same language, which a user can copy and change.

A rule here may name a threshold as "$name" (a string standing alone as a value): it is filled from
the organisation's `Thresholds`, so "big spenders" means what the organisation says a big spender
is. `rules(subject, thresholds)` gives every predefined rule ready for `parse_segments`; the table in
docs/segments.md lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from core.rules.criteria import Subject


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What the organisation calls big, recent, frequent ... Money in its currency as decimal strings,
    durations as "30d"; an empty featured category or brand leaves out the segments that use it."""

    big_spender: str = "1000"  # lifetime gross spend
    big_order: str = "250"  # one order's amount
    open_cart: str = "100"  # open carts' value now
    loyal_orders: int = 5
    inactive_after: str = "90d"  # no activity for this long
    bulk_items: int = 20  # units in 90 days
    many_refunds: int = 2  # refunds in 180 days
    rfm_recent: str = "30d"  # R: a last order within this is recent ...
    rfm_dormant: str = "90d"  # ... and one at least this long ago dormant (between: neither)
    rfm_frequent: int = 3  # F: orders, lifetime
    rfm_high_spend: str = "500"  # M: lifetime gross spend
    best_seller_units: int = 50  # products: units in 30 days
    trending_units: int = 20  # units in 7 days
    top_product_revenue: str = "5000"  # revenue in 30 days
    most_abandoned: int = 10  # abandoned carts in 30 days
    featured_category: str = ""
    featured_brand: str = ""


@dataclass(frozen=True, slots=True)
class Predefined:
    id: str
    name: str
    description: str
    rule: dict[str, Any]  # JSON, with "$threshold" placeholders
    subject: Subject = Subject.CUSTOMER


def _c(id: str, name: str, description: str, rule: dict[str, Any]) -> Predefined:
    return Predefined(id, name, description, rule)


def _p(id: str, name: str, description: str, rule: dict[str, Any]) -> Predefined:
    return Predefined(id, name, description, rule, Subject.PRODUCT)


BOUGHT = {"orders": {"gte": 1}}
NEVER_BOUGHT = {"orders": {"eq": 0}}
RECENT = {"last_order_at": {"after": "$rfm_recent"}}
DORMANT = {"last_order_at": {"before": "$rfm_dormant"}}
FREQUENT = {"orders": {"gte": "$rfm_frequent"}}
HIGH_SPEND = {"spent": {"gte": "$rfm_high_spend"}}

CUSTOMER_SEGMENTS: tuple[Predefined, ...] = (
    _c("one_time_buyers", "One-time buyers", "Exactly one paid order, ever.", {"orders": {"eq": 1}}),
    _c("repeat_buyers", "Repeat buyers", "Two paid orders or more.", {"orders": {"gte": 2}}),
    _c("loyal_customers", "Loyal customers", "At least `loyal_orders` paid orders.", {"orders": {"gte": "$loyal_orders"}}),
    _c("buyers", "Buyers", "At least one paid order.", BOUGHT),
    _c("registered_never_bought", "Registered, never bought", "Known to the shop, no paid order yet.", NEVER_BOUGHT),
    _c("registered_never_bought_inactive", "Registered, never bought, inactive",
       "No paid order, and no activity for `inactive_after`.",
       {"all": [NEVER_BOUGHT, {"last_active_at": {"before": "$inactive_after"}}]}),
    _c("inactive", "Inactive", "No activity (visit, cart, order, e-mail engagement) for `inactive_after`.",
       {"last_active_at": {"before": "$inactive_after"}}),
    _c("new_registrations", "Registered this week", "Registered in the last 7 days.", {"registered_at": {"after": "7d"}}),
    _c("new_customers", "New customers", "First paid order in the last 30 days.", {"first_order_at": {"after": "30d"}}),
    _c("ordered_today", "Ordered today", "Last paid order today (local day).", {"last_order_at": {"on": "0d"}}),
    _c("ordered_two_days_ago", "Ordered two days ago",
       "Last paid order exactly two local days ago (the day before yesterday): a follow-up after delivery.",
       {"last_order_at": {"on": "2d"}}),
    _c("active_buyers_30d", "Bought in the last 30 days", "At least one paid order in the last 30 days.",
       {"orders": {"gte": 1, "within": "30d"}}),
    _c("at_risk", "At risk", "Two paid orders or more, the last 90 to 180 days ago.",
       {"all": [{"orders": {"gte": 2}}, {"last_order_at": {"before": "90d"}}, {"last_order_at": {"after": "180d"}}]}),
    _c("lapsed", "Lapsed", "Two paid orders or more, none in the last 180 days.",
       {"all": [{"orders": {"gte": 2}}, {"last_order_at": {"before": "180d"}}]}),
    _c("one_time_lapsed", "Bought once, never came back", "Exactly one paid order, at least 90 days ago.",
       {"all": [{"orders": {"eq": 1}}, {"last_order_at": {"before": "90d"}}]}),
    _c("abandoned_cart_24h", "Abandoned a cart in the last 24 h", "A cart counted abandoned in the last 24 hours.",
       {"last_abandoned_cart_at": {"after": "24h"}}),
    _c("abandoned_cart_no_order", "Abandoned a cart, no order since",
       "A cart abandoned in the last 24 hours and no paid order in them.",
       {"all": [{"last_abandoned_cart_at": {"after": "24h"}}, {"orders": {"eq": 0, "within": "24h"}}]}),
    _c("open_cart", "Has an open cart", "Open carts worth more than nothing now.", {"open_cart_value": {"gt": "0"}}),
    _c("open_cart_over_threshold", "Open cart over threshold", "Open carts worth at least `open_cart` now.",
       {"open_cart_value": {"gte": "$open_cart"}}),
    _c("carted_never_bought", "Started a cart, never bought", "Created a cart at some point, no paid order.",
       {"all": [{"last_cart_created_at": {"exists": True}}, NEVER_BOUGHT]}),
    _c("big_spenders", "Big spenders", "Lifetime gross spend of at least `big_spender`.",
       {"spent": {"gte": "$big_spender"}}),
    _c("big_spenders_90d", "Big spenders this quarter", "Gross spend of at least `big_spender` in the last 90 days.",
       {"spent": {"gte": "$big_spender", "within": "90d"}}),
    _c("big_single_order", "Big single order", "At least one paid order of `big_order` or more.",
       {"order_value": {"gte": "$big_order"}}),
    _c("bulk_buyers", "Bulk buyers", "At least `bulk_items` units bought in the last 90 days.",
       {"items": {"gte": "$bulk_items", "within": "90d"}}),
    _c("email_engaged", "E-mail engaged", "Opened or clicked an e-mail in the last 30 days.",
       {"email_engaged": {"gte": 1, "within": "30d"}}),
    _c("email_engaged_never_bought", "E-mail engaged, never bought",
       "Opened or clicked an e-mail in the last 30 days, no paid order ever.",
       {"all": [{"email_engaged": {"gte": 1, "within": "30d"}}, NEVER_BOUGHT]}),
    _c("buyers_ignoring_email", "Buyers who ignore e-mail", "Bought at least once, no e-mail open or click in 90 days.",
       {"all": [BOUGHT, {"email_engaged": {"eq": 0, "within": "90d"}}]}),
    _c("refunders", "Refunders", "At least one refund, ever.", {"refunds": {"gte": 1}}),
    _c("frequent_refunders", "Frequent refunders", "At least `many_refunds` refunds in the last 180 days.",
       {"refunds": {"gte": "$many_refunds", "within": "180d"}}),
    _c("refunded_everything", "Refunded everything", "Bought, and refunds equal or exceed what was paid.",
       {"all": [BOUGHT, {"net_spent": {"lte": "0"}}]}),
    _c("multi_store", "Multi-store customers", "Known at two stores or more of the organisation.",
       {"stores": {"gte": 2}}),
    # Recency / frequency / monetary groups: every buyer is in exactly one of the eight.
    _c("rfm_champions", "RFM: champions", "Recent, frequent and high spending.", {"all": [RECENT, FREQUENT, HIGH_SPEND]}),
    _c("rfm_potential_loyalists", "RFM: potential loyalists", "Recent, two orders or more, not yet champions.",
       {"all": [RECENT, {"orders": {"gte": 2}}, {"in_segment": {"ne": "rfm_champions"}}]}),
    _c("rfm_promising", "RFM: promising", "Recent first-time buyers.", {"all": [RECENT, {"orders": {"eq": 1}}]}),
    _c("rfm_loyal", "RFM: loyal", "Frequent, last order neither recent nor dormant.",
       {"all": [{"not": RECENT}, {"not": DORMANT}, FREQUENT]}),
    _c("rfm_need_attention", "RFM: need attention", "Not frequent, last order neither recent nor dormant.",
       {"all": [BOUGHT, {"not": RECENT}, {"not": DORMANT}, {"not": FREQUENT}]}),
    _c("rfm_cannot_lose", "RFM: cannot lose them", "Dormant, but frequent and high spending.",
       {"all": [DORMANT, FREQUENT, HIGH_SPEND]}),
    _c("rfm_at_risk", "RFM: at risk", "Dormant and frequent, not high spending.",
       {"all": [DORMANT, FREQUENT, {"not": HIGH_SPEND}]}),
    _c("rfm_hibernating", "RFM: hibernating", "Dormant and not frequent.", {"all": [DORMANT, {"not": FREQUENT}]}),
)

PRODUCT_SEGMENTS: tuple[Predefined, ...] = (
    _p("best_sellers", "Best sellers", "At least `best_seller_units` units sold in the last 30 days.",
       {"units": {"gte": "$best_seller_units", "within": "30d"}}),
    _p("trending", "Trending", "At least `trending_units` units sold in the last 7 days.",
       {"units": {"gte": "$trending_units", "within": "7d"}}),
    _p("top_revenue", "Top revenue", "Revenue of at least `top_product_revenue` in the last 30 days.",
       {"revenue": {"gte": "$top_product_revenue", "within": "30d"}}),
    _p("slow_movers", "Slow movers", "No sale in the last 30 days.", {"orders": {"eq": 0, "within": "30d"}}),
    _p("never_sold", "Never sold", "No sale, ever.", {"orders": {"eq": 0}}),
    _p("most_abandoned", "Most abandoned", "In at least `most_abandoned` abandoned carts in the last 30 days.",
       {"abandoned_carts": {"gte": "$most_abandoned", "within": "30d"}}),
    _p("abandoned_not_sold", "Abandoned, not sold", "In an abandoned cart in the last 30 days, no sale in them.",
       {"all": [{"abandoned_carts": {"gte": 1, "within": "30d"}}, {"orders": {"eq": 0, "within": "30d"}}]}),
    _p("featured_category_best_sellers", "Best sellers of the featured category",
       "Best sellers whose category is `featured_category`.",
       {"all": [{"category": {"eq": "$featured_category"}}, {"in_segment": {"eq": "best_sellers"}}]}),
    _p("featured_brand_slow_movers", "Slow movers of the featured brand", "Slow movers whose brand is `featured_brand`.",
       {"all": [{"brand": {"eq": "$featured_brand"}}, {"in_segment": {"eq": "slow_movers"}}]}),
)

LIBRARY = {Subject.CUSTOMER: CUSTOMER_SEGMENTS, Subject.PRODUCT: PRODUCT_SEGMENTS}


def fill(rule: Any, thresholds: Thresholds) -> Any:
    """The rule with each "$name" value replaced by the organisation's threshold `name`."""
    if isinstance(rule, dict):
        return {k: fill(v, thresholds) for k, v in rule.items()}
    if isinstance(rule, list):
        return [fill(v, thresholds) for v in rule]
    if isinstance(rule, str) and rule.startswith("$"):
        return getattr(thresholds, rule[1:])
    return rule


def placeholders(rule: Any) -> set[str]:
    """The threshold names a rule uses."""
    if isinstance(rule, dict):
        return set().union(*(placeholders(v) for v in rule.values()))
    if isinstance(rule, list):
        return set().union(*(placeholders(v) for v in rule))
    return {rule[1:]} if isinstance(rule, str) and rule.startswith("$") else set()


def rules(subject: Subject, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """{id: rule as JSON} of the predefined segments, thresholds filled in. A segment whose threshold
    is empty (a featured category or brand not set) is left out."""
    unset = {f.name for f in fields(Thresholds) if getattr(thresholds, f.name) == ""}
    return {p.id: fill(p.rule, thresholds) for p in LIBRARY[subject] if not placeholders(p.rule) & unset}
