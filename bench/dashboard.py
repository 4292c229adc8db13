"""How long the dashboard's overview takes to draw in Debian's Chromium, beside what its API calls
alone take from a plain Python client in the same run.

Starts a fresh `storepulse up` (the demo, with its 90 days of history, where this storepulse has one;
else the test shop of tests/dashboard_shop.py), records the requests one overview load makes, then:

- page: navigation start to the overview drawn (the eight KPI values and the three charts), median of N;
- baseline: the same requests issued by httpx, 3 in flight as the page keeps them, median of N.

    .venv/bin/python bench/dashboard.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from tests.helpers import Storepulse
from tests.screenshots import _demo, _shop
from tests.test_dashboard_views import CHROMIUM, CHROMIUM_ARGS

REFILL_S = 10  # between runs: the organisation's read budget (200 units, 20 a second) refills whole
DRAWN = """() => [...document.querySelectorAll('[data-kpi]')].every((e) => e.textContent !== '–')
  && document.querySelectorAll('#view-overview canvas').length >= 3"""


PHASES: list[tuple[float, float, float]] = []  # per load: first API request, last API answer, drawn (s)


def load(page: Page, url: str) -> float:
    """Seconds from navigation to the overview drawn (its default period, today)."""
    page.goto("about:blank")
    marks: list[float] = []
    page.on("request", lambda r: marks.append(time.perf_counter()) if "/api/" in r.url and not marks else None)
    last: list[float] = [0.0]
    page.on("requestfinished", lambda r: last.__setitem__(0, time.perf_counter()) if "/api/" in r.url else None)
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(DRAWN, timeout=60_000)
    drawn = time.perf_counter() - started
    PHASES.append((marks[0] - started if marks else 0.0, last[0] - started, drawn))
    return drawn


async def replay(base: str, token: str, urls: list[str]) -> float:
    """The same API requests, 3 at a time, as the page sends them: seconds for all."""
    gate = asyncio.Semaphore(3)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        async def one(u: str) -> None:
            async with gate:
                r = await client.get(u)
                if r.status_code not in (200, 404):  # 404: an optional API (segments, automations) this server lacks
                    raise AssertionError(f"{u}: {r.status_code} {r.text[:200]}")
        started = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sp-bench-dash-") as tmp:
        sp = Storepulse(Path(tmp))
        demo = importlib.util.find_spec("storepulse.demo") is not None
        url = _demo(sp) if demo else _shop(sp)
        token = url.split("#token=", 1)[1]
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                seen: list[str] = []
                page.on("request", lambda r: seen.append(r.url) if "/api/" in r.url else None)
                load(page, url)  # warm-up, and the requests one load makes
                urls = [u.removeprefix(sp.base) for u in seen]
                pages = []
                for _ in range(args.repeat):
                    time.sleep(REFILL_S)
                    pages.append(load(page, url))
                browser.close()
            bare = []
            for _ in range(args.repeat):
                time.sleep(REFILL_S)
                bare.append(asyncio.run(replay(sp.base, token, urls)))
        finally:
            sp.ensure_stopped()
    print(f"data: {'the demo (90 days of history)' if demo else 'the test shop'}; period: today (the page's default)")
    print(f"API requests one overview load makes: {len(urls)}")
    print(f"overview drawn in Chromium:      median {statistics.median(pages) * 1000:7.0f} ms  (runs {', '.join(f'{p * 1000:.0f}' for p in pages)})")
    first, done = statistics.median(p[0] for p in PHASES[1:]), statistics.median(p[1] for p in PHASES[1:])
    print(f"  of which: the first API request at {first * 1000:.0f} ms (page, modules, WebSocket snapshot), "
          f"the last API answer by {done * 1000:.0f} ms (medians)")
    print(f"baseline, the same requests bare: median {statistics.median(bare) * 1000:7.0f} ms  (runs {', '.join(f'{b * 1000:.0f}' for b in bare)})")


if __name__ == "__main__":
    main()
