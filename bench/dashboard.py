"""How long the dashboard's overview takes to draw in Debian's Chromium, beside what its API calls
alone take from a plain Python client in the same run.

Starts a fresh `storepulse up` (the demo, with its 90 days of history, where this storepulse has one;
else the test shop of tests/dashboard_shop.py), records the requests one overview load makes, then:

- page: navigation start to the overview drawn (the eight KPI values and the three charts), median of N;
- baseline: the same requests issued by httpx, 3 in flight as the page keeps them, median of N.

    .venv/bin/python bench/dashboard.py [--repeat 3]

With `--read-model DIR` (a data directory bench/read_api.py filled: 1M customers, 1M orders in 90
days), it starts `storepulse up` (with that config: no demo) over it instead and, per period (today, 7d, 30d, 90d), times
choosing the period in the page until its last API answer, beside the same requests bare. With
`--read-model DIR --restart`: the dashboard opened right after a start without the read side's kept file,
then right after a restart with the file the first start saved (`restarts`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import STOREPULSE, Storepulse, free_port
from tests.screenshots import _demo, _shop

REFILL_S = 10  # between runs: the organisation's read budget (200 units, 20 a second) refills whole
# the KPIs, the revenue and orders charts, and orders against carts: a chart over several days, or (one day,
# as today) a list of bars
DRAWN = """() => [...document.querySelectorAll('[data-kpi]')].every((e) => e.textContent !== '–')
  && document.querySelectorAll('#view-overview canvas').length >= 2
  && (document.querySelectorAll('#view-overview canvas').length >= 3
      || document.querySelector('#view-overview [data-chart="orders-carts-day"]') !== null)"""


KPIS = "() => [...document.querySelectorAll('[data-kpi]')].every((e) => e.textContent !== '–')"
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


def choose(page: Page, period: str) -> float:
    """Seconds from choosing `period` in the filter to the last API answer it caused (the page draws
    within a frame of it)."""
    pending: set[object] = set()
    last: list[float] = [0.0]

    def sent(r: object) -> None:
        if "/api/" in getattr(r, "url", ""):
            pending.add(r)

    def done(r: object) -> None:
        if r in pending:
            pending.discard(r)
            last[0] = time.perf_counter()
    page.on("request", sent)
    page.on("requestfinished", done)
    page.on("requestfailed", done)
    started = time.perf_counter()
    page.select_option("#period", period)
    while not last[0] or pending or time.perf_counter() - last[0] < 0.5:  # quiet for half a second
        page.wait_for_timeout(50)
        if time.perf_counter() - started > 120:
            raise AssertionError(f"{period}: still waiting for {len(pending)} API answers after 120 s")
    page.remove_listener("request", sent)
    page.remove_listener("requestfinished", done)
    page.remove_listener("requestfailed", done)
    return last[0] - started


def _up(config: Path, data_dir: Path, log: IO[bytes], logfile: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`storepulse up` over `data_dir` (no request limits), once it answers: the process and its base URL."""
    http, ws = free_port(), free_port()
    base = f"http://127.0.0.1:{http}"
    proc = subprocess.Popen([*STOREPULSE, "up", "--config", str(config), "--data-dir", str(data_dir),
                             "--http-port", str(http), "--ws-port", str(ws), "--api-rate", "100000",
                             "--api-burst", "100000"], stdout=log, stderr=subprocess.STDOUT)
    while True:
        try:
            if httpx.get(f"{base}/metrics", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise AssertionError(logfile.read_text()[-3000:])
        time.sleep(0.1)


def read_model(data_dir: Path, repeat: int) -> None:
    """The overview over bench/read_api.py's 1M-customer read model, per period."""
    from bench.read_api import CONFIG, ORG, TOKEN  # the organisation that data was written for
    with tempfile.TemporaryDirectory(prefix="sp-bench-dash-") as tmp:
        config = Path(tmp) / "storepulse.toml"
        config.write_text(CONFIG)
        log = open(Path(tmp) / "gateway.log", "wb")
        started = time.perf_counter()
        proc, base = _up(config, data_dir, log, Path(tmp) / "gateway.log")
        try:
            print(f"storepulse up in {time.perf_counter() - started:.1f} s over {data_dir} (org {ORG})")
            # what it computes in the background at start (ws_gateway/warm_start.py, preview_index.py):
            # measured after it, as a shop owner opening the dashboard a few minutes after a restart
            logfile = Path(tmp) / "gateway.log"
            while not all(line in logfile.read_text() for line in ("warming done in", "preview columns of")):
                if time.perf_counter() - started > 900:
                    raise AssertionError("no warming or preview build after 900 s:\n" + logfile.read_text()[-3000:])
                time.sleep(1)
            print(f"warmed and preview columns built {time.perf_counter() - started:.1f} s after the start:")
            for line in logfile.read_text().splitlines():
                if " warmed " in line or "preview columns of" in line or "warming done" in line:
                    print("  " + line.split(" INFO ", 1)[-1])
            rows: list[tuple[str, list[float], list[str]]] = []
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                first = time.perf_counter()
                page.goto(f"{base}/#token={TOKEN}")
                page.wait_for_function(KPIS, timeout=600_000)  # its charts: none for a day without data
                print(f"first overview (today) drawn {time.perf_counter() - first:.1f} s after the page was asked for")
                for period in ("7d", "30d", "90d", "today"):
                    seen: list[str] = []
                    page.on("request", lambda r: seen.append(r.url) if "/api/" in r.url else None)
                    times = []
                    for i in range(repeat + 1):  # the first computes what is not kept yet
                        page.select_option("#period", "yesterday" if period == "today" else "today")
                        page.wait_for_timeout(1500)
                        seen.clear()
                        times.append(choose(page, period))
                    rows.append((period, times, [u.removeprefix(base) for u in seen]))
                browser.close()
            # the same requests bare (after Playwright: its sync API holds an event loop in this thread)
            measured = [(period, times, [asyncio.run(replay(base, TOKEN, urls)) for _ in range(repeat)])
                        for period, times, urls in rows]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    print("period  first choice   then median (runs)            the same API requests bare: median (runs), ms")
    for period, times, bare in measured:
        print(f"{period:6} {times[0] * 1000:9.0f} ms  {statistics.median(times[1:]) * 1000:7.0f} ms"
              f" ({', '.join(f'{t * 1000:.0f}' for t in times[1:])})   {statistics.median(bare) * 1000:7.0f}"
              f" ({', '.join(f'{b * 1000:.0f}' for b in bare)})")


def restarts(data_dir: Path) -> None:
    """A start with no kept files (the baseline: warming computes everything, the preview columns are built)
    and a restart that takes the files the first one saved (ws_gateway/kept_file.py, preview_keep.py), each measured as a shop owner opening the
    dashboard right after it: the overview drawn and the first choice of 7d, 30d, 90d, from the moment
    `storepulse up` answers; and when warming was done."""
    from bench.read_api import CONFIG, ORG, TOKEN  # the organisation that data was written for
    for kept in (data_dir / "readside-kept.pickle", *data_dir.glob("preview-columns-*.pickle")):
        kept.unlink()  # the first start is a cold one: the lists' parts and the preview columns computed
    with tempfile.TemporaryDirectory(prefix="sp-bench-dash-") as tmp:
        config = Path(tmp) / "storepulse.toml"
        config.write_text(CONFIG)
        logfile = Path(tmp) / "gateway.log"
        results = []
        for run in ("start, no kept file", "restart, kept file"):
            before = logfile.read_text() if logfile.exists() else ""
            log = open(logfile, "ab")
            started = time.perf_counter()
            proc, base = _up(config, data_dir, log, logfile)
            try:
                up = time.perf_counter() - started
                times: list[tuple[str, float]] = []
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    first = time.perf_counter()
                    page.goto(f"{base}/#token={TOKEN}")
                    page.wait_for_function(KPIS, timeout=600_000)
                    times.append(("overview (today) drawn", time.perf_counter() - first))
                    for period in ("7d", "30d", "90d"):
                        times.append((f"first choice of {period}", choose(page, period)))
                    browser.close()
                text = lambda: logfile.read_text()[len(before):]  # noqa: E731 (this run's part of the log)
                awaited = "kept parts saved to" if run.startswith("start") else "warming done"  # nothing new to save
                while awaited not in text():
                    if time.perf_counter() - started > 900:
                        raise AssertionError(f"no {awaited!r} after 900 s:\n" + text()[-3000:])
                    time.sleep(0.5)
                lines = [line.split(" INFO ", 1)[-1] for line in text().splitlines()
                         if "warming done" in line or "kept parts" in line or "preview columns" in line]
                results.append((run, up, times, lines))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
                log.close()
    print(f"{ORG}: the dashboard opened right after `storepulse up` answered, over {data_dir}")
    for run, up, times, lines in results:
        print(f"{run}: answering {up:.1f} s after the start")
        for what, t in times:
            print(f"  {what}: {t * 1000:,.0f} ms")
        for line in lines:
            print(f"  log: {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--read-model", type=Path, help="a data directory bench/read_api.py filled (1M customers)")
    ap.add_argument("--restart", action="store_true",
                    help="with --read-model: a start without the kept file, then a restart with it (`restarts`)")
    args = ap.parse_args()
    if args.read_model and args.restart:
        return restarts(args.read_model)
    if args.read_model:
        return read_model(args.read_model, args.repeat)
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
