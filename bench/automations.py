"""Automations: what the automations book costs per event inside an organisation, side by side in one
run with its baseline, the same organisation with no automations (this machine is noisy; ratios hold,
seconds do not).

The same synthetic shop goes through `Organisation.apply_all` twice, in batches of 500 with the wall
clock given: N customers, each adding to a cart and, for 60 % of them, paying within the hour (one
order in ten of 100 € or more), the others abandoning it. The automations: a big-order alert
(order.paid, if order_value >= 100.00) to two channels, an abandoned-cart reminder (wait 1h,
cancel_on order.paid, once) and a quota alert. The run prints µs per event for both, the actions
released, and checks that the two runs folded the same figures.

    .venv/bin/python bench/automations.py [--customers 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from core.config import Org, parse_config  # noqa: E402
from core.events import Event, Item, Kind  # noqa: E402
from flows.organisation import Organisation  # noqa: E402

MIN = 60_000
NOW = 1_795_338_000_000
CHANNELS = "".join(f'[orgs.o.channels.{c}]\nkind = "slack"\nurl = "https://hooks.slack.example/{c}"\n'
                   for c in ("ops", "crm", "mail"))
BASE = f'[orgs.o]\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\nabandon_after = 30\nplan_limit = 1000000\n{CHANNELS}'
AUTOMATIONS = """
[orgs.o.automations.big-order]
trigger = "order.paid"
if = { order_value = { gte = "100.00" } }
send = ["ops", "crm"]
[orgs.o.automations.reminder]
trigger = "cart.abandoned"
wait = "1h"
cancel_on = ["order.paid"]
once = true
send = ["mail"]
[orgs.o.automations.quota]
trigger = "quota.crossed"
send = ["ops"]
"""


def shop(n: int) -> list[Event]:
    """Events in time order: one customer every 2 s of event time, over the last n * 2 s before NOW."""
    out: list[Event] = []
    start = NOW - n * 2000 - 3 * 60 * MIN
    for i in range(n):
        t, c = start + i * 2000, f"c{i}"
        price = 12_000 if i % 10 == 0 else 2_500
        out.append(Event(id=f"a{i}", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=t, cart=f"k{i}", customer=c,
                         currency="EUR", amount=price, items=(Item(f"p{i % 200}", 1, price),)))
        if i % 10 < 6:
            out.append(Event(id=f"p{i}", kind=Kind.ORDER_PAID, org="o", store="s", time=t + 20 * MIN, order=f"o{i}",
                             cart=f"k{i}", customer=c, currency="EUR", amount=price, items=(Item(f"p{i % 200}", 1, price),)))
    out.sort(key=lambda e: e.time)
    return out


def run(org_config: Org, events: list[Event]) -> tuple[float, int, Organisation]:
    org = Organisation.new(org_config)
    org.arm(NOW)
    actions = 0
    started = time.process_time()
    for i in range(0, len(events), 500):
        org.apply_all(events[i:i + 500], NOW)
        actions += len(org.take_actions())
    org.tick(NOW + 2 * 60 * MIN)  # every wait over
    actions += len(org.take_actions())
    return time.process_time() - started, actions, org


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=50_000)
    args = parser.parse_args()
    events = shop(args.customers)
    plain = parse_config(BASE + '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n', {}).orgs["o"]
    with_automations = parse_config(BASE + AUTOMATIONS + '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n',
                                    {}).orgs["o"]
    base_s, none, base_org = run(plain, events)
    auto_s, actions, auto_org = run(with_automations, events)
    assert none == 0
    assert base_org.ledger.version == auto_org.ledger.version and base_org.watermark == auto_org.watermark
    n = len(events)
    print(f"{n:,} events, {args.customers:,} customers")
    print(f"baseline (no automations):   {base_s / n * 1e6:8.1f} µs/event CPU")
    print(f"with 3 automations:          {auto_s / n * 1e6:8.1f} µs/event CPU  "
          f"(+{(auto_s - base_s) / n * 1e6:.1f} µs, x{auto_s / base_s:.2f})")
    print(f"actions released: {actions:,}; still pending: {len(auto_org.automations.triggers.pending())}")


if __name__ == "__main__":
    main()
