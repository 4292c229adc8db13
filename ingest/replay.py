"""Dataset replay: real shop data files (../shared/data, see its SOURCES.md) as canonical events.

Two layers, like every adapter in ingest/:

- pure mappers, one per dataset: `feed(row)` a CSV row at a time, then `finish()` returns the
  events in time order with the rows it skipped, counted by reason. No I/O, no clock;
- a thin driver: `map_file` streams a .csv or .csv.gz file through a mapper, `append_events`
  appends the events in batches at a given pace, `replay` does both.

Event ids are deterministic (`replay:<store>:invoice:<InvoiceNo>`, ...), so replaying a file
twice within 30 days appends nothing the second time (later the Redis log may append it all again,
and no figure moves: docs/operations.md, "Duplicates"), and exact duplicate lines of a file
collapse in the log.

online-retail (UCI Online Retail, a UK gift shop, GBP, shop time Europe/London):
- an invoice of digits only is one ORDER_PAID (`order` = the invoice number) at the earliest
  InvoiceDate of its lines. Its amount is the sum over its lines with Quantity > 0 and
  UnitPrice > 0 of round-half-up(Quantity x UnitPrice x 100) pence, exact (Decimal); its items are
  those lines (StockCode, Description, Quantity, UnitPrice in pence rounded half up). Other lines
  are skipped; an invoice left without a line is no order (counted in `empty_invoices`);
- an invoice 'C<digits>' is one ORDER_REFUNDED at its earliest line time: `refund` = the invoice
  number, `order` = None (the data does not say which order it refunds), amount = the sum of
  round-half-up(-Quantity x UnitPrice x 100) over its lines with Quantity < 0 and UnitPrice > 0,
  items = those lines with the returned quantity (positive);
- invoices 'A...' (bad-debt adjustments) and anything else are skipped;
- CustomerID '17850.0' is customer '17850'; an empty one is a guest (customer None);
- a line beyond core.limits (Quantity over 1,000,000, a UnitPrice or Quantity x UnitPrice over the
  largest amount) is skipped like a malformed one.

rees46 (REES46 multi-category store behaviour log, USD, times in UTC):
- `view` -> PRODUCT_VIEWED, `cart` -> CART_ITEM_ADDED (cart = user_session, amount = the item's
  price); both with one item (product_id, qty 1, price in cents, category_code, brand). REES46's
  user_id is a stable, known user, so it is both `visitor` and `customer`. Their ids hash the whole
  line, so only exact duplicate lines share an id;
- the `purchase` rows of one user_session are one ORDER_PAID (`order` = `cart` = user_session) at
  the time of its first purchase row; amount = the sum of their prices, items = the products
  bought (the same product bought twice at one price is one item of qty 2). An exact duplicate
  purchase line is counted once. A price over the largest amount (core.limits) skips its row.

Whatever a mapper made, the driver appends only the events within core.limits' ranges
(ingest/admit.py); the others are counted in `Summary.refused` and reported, never appended.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from core.events import Event, Item, Kind
from core.limits import MAX_AMOUNT, MAX_QTY
from ingest.admit import admitted
from state.log import EventLog

DATASETS = ("online-retail", "rees46")
BATCH = 5000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
_DIGITS = re.compile(r"[0-9]+")


class DatasetError(ValueError):
    """The file is not (a readable copy of) the data set it was said to be."""


@dataclass(slots=True)
class Mapped:
    """What a mapper made of a file: events in time order and the rows it could not use."""

    events: list[Event]
    rows: int
    skipped: Counter[str] = field(default_factory=Counter)
    empty_invoices: int = 0  # online-retail: invoices none of whose lines counted, so no event


class Mapper(Protocol):
    def feed(self, row: Sequence[str]) -> None: ...

    def finish(self) -> Mapped: ...


def _columns(header: Sequence[str], names: Sequence[str], dataset: str) -> list[int]:
    clean = [h.strip().lstrip("\ufeff") for h in header]
    missing = [n for n in names if n not in clean]
    if missing:
        raise DatasetError(
            f"not a {dataset} file: the header lacks {', '.join(missing)} (it has {', '.join(clean) or 'nothing'})"
        )
    return [clean.index(n) for n in names]


def _half_up(value: Decimal) -> int:
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP))


_DATETIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")


def _local_ms(text: str, tz: ZoneInfo | timezone, suffix: str = "") -> int:
    """'YYYY-MM-DD HH:MM:SS' + suffix, wall-clock time in `tz`, as UTC ms; ValueError if malformed.

    A time that occurs twice when summer time ends is read as its first occurrence (fold=0), and
    one that does not exist when summer time starts with the offset from before (zoneinfo's rules).
    """
    m = _DATETIME.match(text)
    if m is None or len(text) != m.end() + len(suffix) or not text.endswith(suffix):
        raise ValueError(f"not a 'YYYY-MM-DD HH:MM:SS{suffix}' time: {text!r}")
    year, month, day, hour, minute, second = map(int, m.groups())
    dt = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    return (dt - _EPOCH) // _MS


# --- online-retail -----------------------------------------------------------------------------

_LONDON = ZoneInfo("Europe/London")
_OR_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")


@dataclass(slots=True)
class _Invoice:
    refund: bool
    seq: int  # the first line's position, to order invoices of the same minute as the file does
    time: int
    customer: str | None
    country: str
    amount: int = 0
    items: list[Item] = field(default_factory=list)


def _invoice_kind(invoice: str) -> bool | str:
    """False for an order, True for a refund, else why the invoice is skipped."""
    if _DIGITS.fullmatch(invoice):
        return False
    if invoice[:1] == "C" and _DIGITS.fullmatch(invoice, 1):
        return True
    if invoice[:1] == "A":
        return "adjustment invoice (InvoiceNo starts with 'A')"
    return "InvoiceNo neither digits nor 'C' + digits"


def _sign_problem(refund: bool, qty: int, unit: Decimal) -> str | None:
    """Why a line's Quantity or UnitPrice has the wrong sign for its invoice (a refund's quantity is
    negative, an order's positive; a price is always positive), or None."""
    if refund:
        if qty >= 0:
            return "refund line with Quantity >= 0"
        if unit <= 0:
            return "refund line with UnitPrice <= 0"
    else:
        if qty <= 0:
            return "order line with Quantity <= 0"
        if unit <= 0:
            return "order line with UnitPrice <= 0"
    return None


class _RowMapper:
    """What every data set's mapper does alike: find its columns in the header, count rows, count
    skipped rows by reason, and parse a row's time once for a run of rows that repeat it."""

    dataset: str
    columns: tuple[str, ...]

    def __init__(self, org: str, store: str, header: Sequence[str]) -> None:
        self.org = org
        self.store = store
        self._cols = _columns(header, self.columns, self.dataset)
        self._width = len(header)
        self._rows = 0
        self._skipped: Counter[str] = Counter()
        self._last_time = ("", 0)

    def feed(self, row: Sequence[str]) -> None:
        self._rows += 1
        reason = "malformed row (wrong number of columns)" if len(row) != self._width else self._line(row)
        if reason is not None:
            self._skipped[reason] += 1

    def _line(self, row: Sequence[str]) -> str | None:
        """Folds one well-formed row in; why it is skipped, or None."""
        raise NotImplementedError

    def _parse_time(self, text: str) -> int:
        raise NotImplementedError

    def _time(self, text: str) -> int | None:
        if self._last_time[0] != text:
            try:
                self._last_time = (text, self._parse_time(text))
            except ValueError:
                return None
        return self._last_time[1]


class OnlineRetail(_RowMapper):
    """Rows of UCI Online Retail -> ORDER_PAID per invoice, ORDER_REFUNDED per 'C' invoice (GBP)."""

    dataset = "online-retail"
    columns = _OR_COLUMNS
    currency = "GBP"

    def __init__(self, org: str, store: str, header: Sequence[str]) -> None:
        super().__init__(org, store, header)
        self._invoices: dict[str, _Invoice] = {}
        # Lines of an invoice share their date, customer and often prices: remember the last ones.
        self._last_customer: tuple[str, str | None] = ("", None)
        self._prices: dict[str, tuple[Decimal, int, int | None]] = {}
        self._last_invoice: tuple[str, bool | str] = ("", _invoice_kind(""))

    def _line(self, row: Sequence[str]) -> str | None:
        i_inv, i_code, i_desc, i_qty, i_date, i_price, i_cust, i_country = self._cols
        invoice = row[i_inv]
        if invoice != self._last_invoice[0]:
            self._last_invoice = (invoice, _invoice_kind(invoice))
        refund = self._last_invoice[1]
        if isinstance(refund, str):
            return refund
        try:
            qty = int(row[i_qty])
        except ValueError:
            return "malformed Quantity"
        price = self._price(row[i_price])
        if price is None:
            return "malformed UnitPrice"
        at = self._time(row[i_date])
        if at is None:
            return "malformed InvoiceDate"
        customer = self._customer(row[i_cust])
        if customer == "":
            return "malformed CustomerID"
        inv = self._invoices.get(invoice)
        if inv is None:
            inv = self._invoices[invoice] = _Invoice(refund, self._rows, at, customer, row[i_country].strip())
        elif at < inv.time:
            inv.time = at  # the file has invoices whose lines are a minute apart; the earliest counts
        unit, unit_minor, pence = price
        wrong = _sign_problem(refund, qty, unit)
        if wrong is not None:
            return wrong
        qty = -qty if refund else qty
        if qty > MAX_QTY:
            return "Quantity out of range"
        # round-half-up(Quantity x UnitPrice x 100): an integer product when the price has at most
        # two decimals (exact either way), Decimal arithmetic for the few prices with more.
        line = qty * pence if pence is not None else _half_up(qty * unit * _HUNDRED)
        if unit_minor > MAX_AMOUNT:
            return "UnitPrice out of range"
        if line > MAX_AMOUNT:
            return "Quantity x UnitPrice out of range"
        inv.amount += line
        inv.items.append(Item(row[i_code], qty, unit_minor, row[i_desc].strip()))  # positional: 2x faster
        return None

    def _price(self, text: str) -> tuple[Decimal, int, int | None] | None:
        """(UnitPrice, UnitPrice in pence rounded half up, UnitPrice in pence if that is exact)."""
        hit = self._prices.get(text)
        if hit is None:
            try:
                value = Decimal(text)
            except InvalidOperation:
                return None
            if not value.is_finite():
                return None
            pence = value * _HUNDRED
            exact = int(pence) if pence == pence.to_integral_value() else None
            hit = self._prices[text] = (value, _half_up(pence), exact)
        return hit

    def _parse_time(self, text: str) -> int:
        return _local_ms(text, _LONDON)

    def _customer(self, text: str) -> str | None:
        """'17850.0' -> '17850', '' -> None (guest); '' is returned for a value that is no integer."""
        if self._last_customer[0] != text:
            text_ = text.strip()
            if not text_:
                value: str | None = None
            else:
                try:
                    number = Decimal(text_)
                except InvalidOperation:
                    return ""
                if not number.is_finite() or number != number.to_integral_value() or number < 0:
                    return ""
                value = str(int(number))
            self._last_customer = (text, value)
        return self._last_customer[1]

    def finish(self) -> Mapped:
        events = []
        empty = 0
        for number, inv in sorted(self._invoices.items(), key=lambda kv: (kv[1].time, kv[1].seq)):
            if not inv.items:
                empty += 1
                continue
            events.append(Event(
                id=f"replay:{self.store}:invoice:{number}",
                kind=Kind.ORDER_REFUNDED if inv.refund else Kind.ORDER_PAID,
                org=self.org,
                store=self.store,
                time=inv.time,
                amount=inv.amount,
                currency=self.currency,
                customer=inv.customer,
                order=None if inv.refund else number,
                refund=number if inv.refund else None,
                items=tuple(inv.items),
                raw_id=number,
                attrs={"country": inv.country} if inv.country else {},
            ))
        return Mapped(events, self._rows, self._skipped, empty)


# --- rees46 ------------------------------------------------------------------------------------

_REES_COLUMNS = (
    "event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price", "user_id", "user_session",
)
_REES_KINDS = {"view": Kind.PRODUCT_VIEWED, "cart": Kind.CART_ITEM_ADDED}


@dataclass(slots=True)
class _Order:
    seq: int
    time: int
    customer: str
    lines: set[str] = field(default_factory=set)  # digests of its purchase lines, to count a duplicate once
    amount: int = 0
    items: dict[tuple[str, int, str, str], int] = field(default_factory=dict)  # (product, price, category, brand) -> qty


class Rees46(_RowMapper):
    """Rows of the REES46 behaviour log -> PRODUCT_VIEWED, CART_ITEM_ADDED, ORDER_PAID per session (USD)."""

    dataset = "rees46"
    columns = _REES_COLUMNS
    currency = "USD"

    def __init__(self, org: str, store: str, header: Sequence[str]) -> None:
        super().__init__(org, store, header)
        self._events: list[tuple[int, int, Event]] = []  # (time, seq, event)
        self._orders: dict[str, _Order] = {}
        self._prices: dict[str, int] = {}

    def _line(self, row: Sequence[str]) -> str | None:
        i_time, i_type, i_product, _, i_category, i_brand, i_price, i_user, i_session = self._cols
        kind = row[i_type]
        if kind not in ("view", "cart", "purchase"):
            return "event_type neither view, cart nor purchase"
        at = self._time(row[i_time])
        if at is None:
            return "malformed event_time"
        price = self._price(row[i_price])
        if price is None:
            return "malformed price"
        if price > MAX_AMOUNT:
            return "price out of range"
        product, user, session = row[i_product], row[i_user], row[i_session]
        if not product:
            return "missing product_id"
        if not user:
            return "missing user_id"
        if not session and kind != "view":
            return "cart or purchase without user_session"
        digest = hashlib.blake2b("\x1f".join(row).encode(), digest_size=12).hexdigest()
        category, brand = row[i_category], row[i_brand]
        if kind == "purchase":
            order = self._orders.get(session)
            if order is None:
                order = self._orders[session] = _Order(self._rows, at, user)
            if digest not in order.lines:
                order.lines.add(digest)
                order.amount += price
                key = (product, price, category, brand)
                order.items[key] = order.items.get(key, 0) + 1
            return None
        event = Event(
            id=f"replay:{self.store}:{kind}:{digest}",
            kind=_REES_KINDS[kind],
            org=self.org,
            store=self.store,
            time=at,
            amount=price if kind == "cart" else 0,
            currency=self.currency,
            customer=user,
            visitor=user,
            cart=session if kind == "cart" else None,
            items=(Item(product, 1, price, "", category, brand),),
            raw_id=product,
            attrs={"session": session} if kind == "view" and session else {},
        )
        self._events.append((at, self._rows, event))
        return None

    def _parse_time(self, text: str) -> int:
        return _local_ms(text, UTC, " UTC")

    def _price(self, text: str) -> int | None:
        cents = self._prices.get(text)
        if cents is None:
            try:
                value = Decimal(text)
            except InvalidOperation:
                return None
            if not value.is_finite() or value < 0:
                return None
            cents = _half_up(value * _HUNDRED)
            if len(self._prices) < 100_000:
                self._prices[text] = cents
        return cents

    def finish(self) -> Mapped:
        timed = list(self._events)
        for session, order in self._orders.items():
            timed.append((order.time, order.seq, Event(
                id=f"replay:{self.store}:session:{session}",
                kind=Kind.ORDER_PAID,
                org=self.org,
                store=self.store,
                time=order.time,
                amount=order.amount,
                currency=self.currency,
                customer=order.customer,
                visitor=order.customer,
                order=session,
                cart=session,
                items=tuple(Item(p, qty, price, "", c, b) for (p, price, c, b), qty in order.items.items()),
                raw_id=session,
            )))
        timed.sort(key=lambda t: (t[0], t[1]))
        return Mapped([e for _, _, e in timed], self._rows, self._skipped)


def mapper(dataset: str, org: str, store: str, header: Sequence[str]) -> Mapper:
    if dataset == "online-retail":
        return OnlineRetail(org, store, header)
    if dataset == "rees46":
        return Rees46(org, store, header)
    raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


def map_rows(dataset: str, org: str, store: str, rows: Iterable[Sequence[str]]) -> Mapped:
    """Maps CSV rows, the header first (e.g. `csv.reader(io.StringIO(text))`)."""
    it = iter(rows)
    header = next(it, None)
    if header is None:
        raise DatasetError(f"not a {dataset} file: it is empty")
    m = mapper(dataset, org, store, header)
    for row in it:
        m.feed(row)
    return m.finish()


# --- the driver --------------------------------------------------------------------------------

# (phase, done, total): "reading" in bytes of the file, "appending" in events.
Progress = Callable[[str, int, int], None]


@dataclass(slots=True)
class Summary:
    rows: int = 0
    events: int = 0
    appended: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    empty_invoices: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # events outside core.limits: not appended
    refused_examples: list[str] = field(default_factory=list)  # the first few, "<event id>: why"
    read_seconds: float = 0.0
    append_seconds: float = 0.0

    @classmethod
    def of(cls, mapped: Mapped, read_seconds: float) -> Summary:
        """What is known before appending: rows, events by kind, skipped rows."""
        kinds = Counter(e.kind.value for e in mapped.events)
        return cls(rows=mapped.rows, events=len(mapped.events), skipped=mapped.skipped,
                   empty_invoices=mapped.empty_invoices, by_kind=kinds, read_seconds=read_seconds)


@contextmanager
def _csv_rows(path: Path) -> Iterator[tuple[Iterator[list[str]], Callable[[], int], int]]:
    """The file's rows (plain or gzip CSV, told apart by content) and where in the file we are."""
    raw = open(path, "rb")
    try:
        size = path.stat().st_size
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        binary = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        yield csv.reader(text), raw.tell, size
    finally:
        raw.close()


def map_file(path: Path, dataset: str, org: str, store: str, progress: Progress | None = None) -> Mapped:
    """Streams a .csv or .csv.gz file through the dataset's mapper (which holds its events: online-retail
    needs all lines of an invoice, which the file does not keep together, and both are emitted in time order)."""
    with _csv_rows(path) as (rows, position, size):
        n = 0
        try:
            header = next(rows, None)
            if header is None:
                raise DatasetError(f"{path} is empty: expected a {dataset} CSV file with a header line")
            m = mapper(dataset, org, store, header)
            feed = m.feed
            for row in rows:
                feed(row)
                n += 1
                if progress is not None and not n & 0x3FFF:
                    progress("reading", position(), size)
        except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as exc:
            raise DatasetError(f"{path}: unreadable after {n} rows: {exc}") from None
        if progress is not None:
            progress("reading", size, size)
        return m.finish()


async def append_events(
    log: EventLog,
    events: Sequence[Event],
    summary: Summary,
    speed: float | None = None,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> None:
    """Appends in batches, `speed` events per second at most (None: as fast as the log takes them).

    An event outside core.limits' ranges (an invoice whose lines add up to more than the largest
    amount) is not appended: it is counted in `summary.refused`, and the replay goes on. Counts into
    `summary` as it goes, so an interrupted replay still says how far it got.
    """
    if speed is not None:
        if speed <= 0:
            raise ValueError("speed must be a positive number of events per second")
        batch = max(1, min(batch, int(speed / 10)))  # about ten appends a second keep the pace smooth
    loop = asyncio.get_running_loop()
    start = loop.time()
    if progress is not None:
        progress("appending", 0, len(events))
    for i in range(0, len(events), batch):
        if speed is not None:
            delay = start + i / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        kept, refused = admitted(events[i : i + batch])
        summary.refused += len(refused)
        summary.refused_examples += refused[: max(0, 5 - len(summary.refused_examples))]
        results = await log.append(kept) if kept else []
        new = sum(results)
        summary.appended += new
        summary.duplicates += len(results) - new
        if progress is not None:
            progress("appending", min(i + batch, len(events)), len(events))


async def append_timed(
    log: EventLog,
    events: Sequence[Event],
    summary: Summary,
    speed: float | None = None,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> None:
    """append_events, keeping the time it took in `summary.append_seconds` (even when interrupted)."""
    t = time.perf_counter()
    try:
        await append_events(log, events, summary, speed, batch, progress)
    finally:
        summary.append_seconds = time.perf_counter() - t


async def replay(
    path: Path,
    dataset: str,
    log: EventLog,
    org: str,
    store: str,
    speed: float | None = None,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> Summary:
    """Reads and maps the whole file, then appends its events in time order.

    The reading blocks the event loop: the command reads before it starts one (so Ctrl-C works).
    """
    t = time.perf_counter()
    mapped = map_file(path, dataset, org, store, progress)
    summary = Summary.of(mapped, time.perf_counter() - t)
    await append_timed(log, mapped.events, summary, speed, batch, progress)
    return summary
