"""An organisation's preview columns (ws_gateway/preview_columns.py) saved at shutdown and taken back at
the next start, so that a restart does not read every record again (~75 s at 1M customers and 2.1M
orders, bench/segment_preview.py) while previews take the records' path (79-174 s each at 1M).

The columns are saved with the read model's day stamps (state/day_stamps.py) of the point they are
complete at: stamps read before the records the columns were built (or last caught up) from were read,
so every write applied before that read is in the columns. A write after it changed its day's stamp
(both days' for a record that moved), so at the next start the days whose stamp differs from the saved
one (or that are new) are the only ones whose records may be newer than the columns': only those are
caught up (ws_gateway/preview_index.py `catch_up`), and what the stamps of the point say holds however
long ago it was and however far the feed had brought the columns beyond it (they only take a record
newer than their row, so a record taken twice changes nothing). The stamps are not read at shutdown:
the change feed may lag the read model there, and a write whose record the columns never took would
look fresh.

Within one read model only (stamps count writes from its creation), with the same code, zone, currency
and rates (the amounts were converted with them): the file's first line is a digest of the read model's
identity, of this storepulse's code (ws_gateway/kept_file.py `code_digest`, taken at start), of the
organisation, its zone and currency, and of the rates. Any difference, a damaged file or one from
another format: not used, the columns are built from the records as without it (said in the log).

A file per organisation, `preview-columns-<org>.pickle` in the data directory: pickle protocol 5 (the
numpy arrays written as their bytes), written to a temporary file, fsynced and renamed into place. A
process killed without a shutdown leaves the file of the shutdown before: still right, older.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import Org
from core.rates import Rates
from core.rules import Context
from ws_gateway import kept_file
from ws_gateway.preview_columns import PreviewColumns

log = logging.getLogger("storepulse.gateway")

FORMAT = b"storepulse preview columns 1"
# Per record kind ("customer", "order", "cart"), per day, the read model's stamp.
Stamps = dict[str, dict[str, int]]


def mark(model_identity: str, code: bytes, org: Org, rates: Rates | None) -> bytes:
    """The file's first line: what its columns were computed from (the module's docstring)."""
    return kept_file.mark(FORMAT, model_identity, code, f"{org.id}\0{org.timezone}\0{org.currency}", rates)


@dataclass(frozen=True, slots=True)
class KeptColumns:
    """Where an organisation's columns are saved, and the mark they must carry to be taken back."""

    path: Path
    first_line: bytes

    def save(self, columns: PreviewColumns, stamps: Stamps) -> int:
        """Writes the columns and the stamps they are complete at (atomically); returns the bytes written.
        The caller holds the columns' lock (nothing may change them meanwhile)."""
        return kept_file.write({"stamps": stamps, "columns": columns.saved()}, self.path, self.first_line)

    def load(self, ctx: Context) -> tuple[PreviewColumns, Stamps] | None:
        """The saved columns (converting later records with `ctx`) and the stamps they are complete at, if
        the file carries this mark and is whole; None otherwise (no file, another mark, damaged: logged)."""
        saved = kept_file.read(self.path, self.first_line, "preview columns", log)
        if saved is None:
            return None
        try:
            stamps = {str(kind): {str(d): int(s) for d, s in days.items()} for kind, days in saved["stamps"].items()}
            return PreviewColumns.restore(ctx, saved["columns"]), stamps
        except Exception as exc:  # not columns of this layout: built from the records
            log.warning("preview columns in %s not used: %s", self.path, exc)
            return None


def at(data_dir: Path, model_identity: str, code: bytes, org: Org, rates: Rates | None) -> KeptColumns:
    """The organisation's columns' file in `data_dir`, marked for this model, code, organisation and rates."""
    return KeptColumns(data_dir / f"preview-columns-{org.id}.pickle", mark(model_identity, code, org, rates))


def timed_save(kept: KeptColumns, columns: PreviewColumns, stamps: Stamps) -> None:
    """`save`, logged; a failure costs the next start its head start, not this shutdown."""
    began = time.perf_counter()
    try:
        size = kept.save(columns, stamps)
    except Exception:
        log.exception("saving the preview columns to %s failed", kept.path)
        return
    log.info("preview columns saved to %s (%.0f MB) in %.1f s", kept.path, size / 1e6, time.perf_counter() - began)
