"""`storepulse rates update`: download the latest ECB reference-rate history into the data directory,
where `storepulse up` reads it (unless the config names a rates_file). It needs no config."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from core.config import Config
from core.rates import RatesFileError, parse_ecb_csv
from storepulse.rates_source import DOWNLOADED, ECB_HISTORY_URL, csv_of_zip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("rates", help="update the ECB exchange-rate history")
    verbs = p.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("update", help=f"download {ECB_HISTORY_URL} into the data directory")
    common(up)
    up.add_argument("--url", default=ECB_HISTORY_URL, help="where the ECB history zip is (a mirror, or a test server)")
    up.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")


def update(url: str, data_dir: Path, timeout: float) -> int:
    """Download, check (it must parse as an ECB history), then replace the data directory's copy
    atomically: a failed or cut download leaves the rates in use as they were."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        print(f"storepulse rates update: {url} answered {exc.response.status_code}; the rates in use are unchanged",
              file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"storepulse rates update: cannot reach {url} ({type(exc).__name__}: {exc}); is this machine offline? "
              "The rates in use are unchanged (the downloaded ones if any, else those shipped with storepulse)",
              file=sys.stderr)
        return 1
    try:
        text = csv_of_zip(response.content)
        rates = parse_ecb_csv(text)
    except (ValueError, RatesFileError) as exc:
        print(f"storepulse rates update: {url} did not hold an ECB history ({exc}); the rates in use are unchanged",
              file=sys.stderr)
        return 1
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / DOWNLOADED
    part = target.with_suffix(".part")
    part.write_text(text)
    os.replace(part, target)
    print(f"storepulse rates update: {len(rates.currencies)} currencies up to {rates.last_day()} written to {target}; "
          "restart storepulse to use them")
    return 0


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    return update(args.url, args.data_dir, args.timeout)
