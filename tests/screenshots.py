"""Screenshots of every dashboard view into docs/screenshots/ (not a test; run by hand or `make screenshots`).

Starts a fresh `storepulse up`: the built-in demo (90 days of a simulated shop) where this storepulse
has one (`storepulse/demo`), else the test organisations with the shop of tests/dashboard_shop.py
posted through the events API and a Stripe payment. Then drives Debian's Chromium through each view.

    .venv/bin/python -m tests.screenshots [--out docs/screenshots] [--lang en]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from storepulse import STOREPULSE
from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.dashboard_shop import shop_events
from tests.helpers import TOKENS, Storepulse, payment_intent_succeeded, wait_for, wait_json

VIEWS = ["overview", "orders", "carts", "products", "customers", "marketing", "segments", "automations", "connections"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--views", default=",".join(VIEWS), help="comma-separated views (default: all)")
    ap.add_argument("--period", default="30d", help="the period filter (default: 30d; today draws hours)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sp-shots-") as tmp:
        sp = Storepulse(Path(tmp))
        try:
            if importlib.util.find_spec("storepulse.demo") is not None:
                url = _demo(sp)
            else:
                url = _shop(sp)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(locale="en-GB", timezone_id="Europe/Berlin", viewport={"width": 1280, "height": 900})
                page.goto(url.replace("/#", f"/?lang={args.lang}#"))
                expect(page.locator("#dashboard")).to_be_visible(timeout=15_000)
                page.select_option("#period", args.period)
                for view in args.views.split(","):
                    page.click(f"#tab-{view}")
                    expect(page.locator(f"#view-{view}")).to_be_visible()
                    page.wait_for_load_state("networkidle")
                    if view == "segments":  # open the segment with the most members, to show them and their history
                        page.evaluate("""() => { const rows = [...document.querySelectorAll('#view-segments tbody tr')];
                            const n = (r) => Number(r.cells[1].textContent.replace(/\\D/g, '')) || 0;
                            const best = rows.sort((a, b) => n(b) - n(a))[0]; if (best) best.querySelector('button').click(); }""")
                        page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(700)  # charts draw after their data arrives
                    suffix = ('' if args.lang == 'en' else '-' + args.lang) + ('' if args.period == '30d' else '-' + args.period)
                    shot = out / f"{view}{suffix}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    print(shot)
                browser.close()
        finally:
            sp.ensure_stopped()


def _shop(sp: Storepulse) -> str:
    """The test organisations with tests/dashboard_shop.py's shop; the dashboard's URL."""
    sp.start()
    r = sp.post_events({"events": shop_events(int(time.time() * 1000))})
    assert r.status_code == 200, r.text
    sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_shot", "pi_shot", 4_990))
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/figures", period="7d").json(),
              lambda b: b["paid_orders"] >= 21, what="the shop's orders in the figures")
    return f"{sp.base}/#token={TOKENS['acme']}"


def _demo(sp: Storepulse) -> str:
    """`storepulse up` with no config, in a directory without storepulse.toml: the demo. Its URL (with
    the token) from the start-up banner, once its history is in."""
    sp.config.unlink()
    cmd = [*STOREPULSE, "up", "--data-dir", str(sp.data_dir), "--http-port", str(sp.http_port), "--ws-port", str(sp.ws_port)]
    with open(sp.logfile, "ab") as out:
        sp.proc = subprocess.Popen(cmd, cwd=sp.workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    found: list[str] = []

    def ready() -> bool:
        if sp.proc is not None and sp.proc.poll() is not None:
            raise AssertionError(f"storepulse up exited:\n{sp.log_tail()}")
        log = sp.log_tail(200_000)
        found[:] = re.findall(r"dashboard (http://\S+#token=\S+)", log)
        return bool(found) and "days of history sent" in log

    wait_for(ready, 120, "the demo's banner and its history")
    # Then until the dataflow has folded all of it: its report of being caught up is newer than now.
    sent = datetime.now(UTC)
    base, token = found[0].split("/#token=")
    org = re.findall(r"org (\S+): dashboard", sp.log_tail(200_000))[0]

    def folded() -> bool:
        r = httpx.get(f"{base}/api/v1/orgs/{org}/health", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        at = r.json()["figures"]["caught_up_at"] if r.status_code == 200 else None
        return at is not None and datetime.fromisoformat(at) > sent

    wait_for(folded, 120, "the dataflow to fold the demo's history")
    return found[0]


if __name__ == "__main__":
    main()
