"""Screenshots of every dashboard view into docs/screenshots/ (not a test; run by hand or `make screenshots`).

Starts a fresh `storepulse up` with the test organisations, posts the shop of tests/dashboard_shop.py
through the events API and a Stripe payment, then drives Debian's Chromium through each view.

    .venv/bin/python -m tests.screenshots [--out docs/screenshots] [--lang en]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.dashboard_shop import shop_events
from tests.helpers import TOKENS, Storepulse, payment_intent_succeeded, wait_json
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

VIEWS = ["overview", "orders", "carts", "products", "customers", "marketing", "segments", "automations", "connections"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--views", default=",".join(VIEWS), help="comma-separated views (default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sp-shots-") as tmp:
        sp = Storepulse(Path(tmp)).start()
        try:
            now = int(time.time() * 1000)
            r = sp.post_events({"events": shop_events(now)})
            assert r.status_code == 200, r.text
            sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_shot", "pi_shot", 4_990))
            wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/figures", period="7d").json(),
                      lambda b: b["paid_orders"] >= 21, what="the shop's orders in the figures")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(locale="en-GB", timezone_id="Europe/Berlin", viewport={"width": 1280, "height": 900})
                page.goto(f"{sp.base}/?lang={args.lang}#token={TOKENS['acme']}")
                expect(page.locator("#dashboard")).to_be_visible(timeout=15_000)
                page.select_option("#period", "7d")
                for view in args.views.split(","):
                    page.click(f"#tab-{view}")
                    expect(page.locator(f"#view-{view}")).to_be_visible()
                    page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(700)  # charts draw after their data arrives
                    shot = out / f"{view}{'' if args.lang == 'en' else '-' + args.lang}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    print(shot)
                browser.close()
        finally:
            sp.ensure_stopped()


if __name__ == "__main__":
    main()
