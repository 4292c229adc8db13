"""What the Automations view's results cost (GET /automations?period=, ws_gateway/automations.py): reading
the newest deliveries from a real SQLite outbox, then tallying them and counting the recovered carts,
beside the read alone in the same run (the baseline: what the delivery log costs whatever is done with it).

    .venv/bin/python bench/automation_results.py [--deliveries 20000] [--repeat 5]

Each delivery is a cart reminder with a full message (subject, text, HTML) and payload, as the dataflow
writes them; one cart in ten was bought after its reminder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # before bench/ itself, whose notifier.py would hide the package

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from core.changes import Record  # noqa: E402
from core.rates import RecordingRates  # noqa: E402
from core.records import Cart  # noqa: E402
from notifier.actions import Action, Message, action_key  # noqa: E402
from notifier.outbox import Attempt, Result, Status  # noqa: E402
from notifier.sqlite_outbox import SqliteOutbox  # noqa: E402
from ws_gateway import automation_results  # noqa: E402

T0 = 1_795_338_000_000  # 2026-11-22T09:00Z
BERLIN = ZoneInfo("Europe/Berlin")


def reminders(n: int) -> list[Action]:
    text = "Abandoned cart: €25.00\n- 1 × Stoneware mug (€19.00)\n- 1 × Filter papers x100 (€5.90)\n"
    out = []
    for i in range(n):
        at = T0 - (i * 7_919) % 86_400_000
        payload = {"store": "shop", "cart": f"k{i}", "amount": 2490, "currency": "EUR", "customer": f"c{i}",
                   "email": f"c{i}@shopper.example", "name": "Some One", "last_activity": at - 3_600_000,
                   "items": [["p-mug", 1, 1900, "Stoneware mug"], ["p-papers", 1, 590, "Filter papers x100"]]}
        out.append(Action(action_key("reminder", f"c{i}", f"shop:k{i}@{at}"), "acme", "reminder", "mail", "cart.abandoned",
                          f"c{i}", f"shop:k{i}@{at}", at, at + 3_600_000, payload=payload,
                          message=Message(subject="Abandoned cart: €25.00", text=text, html=f"<p>{text}</p>")))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        box = SqliteOutbox(Path(tmp) / "outbox.sqlite3")
        actions = reminders(args.deliveries)
        for i in range(0, len(actions), 1000):
            box.put(actions[i:i + 1000], T0)
        sent = T0 + 86_400_000  # every reminder delivered, as the notifier records it
        claimed = box.claim(sent, len(actions), "bench")
        box.record([Result(c, Attempt(sent, 200, 12.0, outcome="delivered"), Status.DELIVERED) for c in claimed], sent)
        carts = {f"shop:k{i}": Record("acme", 1, Cart.KIND, f"shop:k{i}", "2026-11-22", Cart(
            "shop", f"k{i}", f"c{i}", "recovered", "EUR", 2490, [], T0, T0, T0, T0 + 7_200_000)) for i in range(0, len(actions), 10)}
        read, whole = [], []
        for _ in range(args.repeat):
            began = time.perf_counter()
            found = box.list("acme", limit=args.deliveries)
            read.append(time.perf_counter() - began)
            began = time.perf_counter()
            found = box.list("acme", limit=args.deliveries)
            tallies = automation_results.tally(found, first="2026-11-21", last="2026-11-22", tz=BERLIN)
            got = automation_results.results(tallies, carts, tz=BERLIN, currency="EUR", rates=RecordingRates(None))
            whole.append(time.perf_counter() - began)
        box.close()
    print(f"{args.deliveries:,} deliveries, median of {args.repeat}: read alone {statistics.median(read) * 1000:,.0f} ms; "
          f"read, tally and results {statistics.median(whole) * 1000:,.0f} ms "
          f"({statistics.median(whole) / statistics.median(read):.2f}x the read); "
          f"{got['reminder']['reminded_carts']:,} carts reminded, {got['reminder']['recovered_carts']:,} recovered")


if __name__ == "__main__":
    main()
