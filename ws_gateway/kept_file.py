"""What the read side kept (ws_gateway/day_cache.py: the lists' day parts, the best customers' and the
order lists' period sums) saved at shutdown and taken back at the next start, so that a restart does not
compute them all again: warming computed ~55 s of them at 1M customers and 1M orders
(ws_gateway/warm_start.py), and until it had, a request waited for the part it needed.

A saved part is only used under the stamp it was computed at (a day written since is computed again, as
any stale part), so the file stays right however old it is, as long as it was computed from the same
read model by the same code with the same rates and settings. The file's first line says which: a digest
of the read model's identity (made when the model was created: a model rebuilt from the log is another
one, whose stamps start again), this storepulse's code that computes the parts (taken at start: code
replaced under a running process must not label what the old code computed), the organisations'
settings and the exchange rates. Any difference, a damaged file or one from another format: it is not
used, warming computes everything (and says why in the log).

Saved by pickle, with the read side quiescent (after the HTTP server stopped: a state is changed under
its own lock, not the cache's), written to a temporary file, fsynced and renamed into place. A process
killed without a shutdown leaves the file of the shutdown before: still right, older.
"""

from __future__ import annotations

import copyreg
import gc
import hashlib
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Config
from core.rates import Rates
from state.day_stamps import DayStamped, Identified
from ws_gateway.day_cache import DayCache, Kept

log = logging.getLogger(__name__)

NAME = "readside-kept.pickle"
FORMAT = b"storepulse read side kept parts 1"
# The code whose objects the file holds or whose functions computed them.
CODE = ("core", "state", "ws_gateway")
_LOCK = type(threading.Lock())
_PICKLING = copyreg.dispatch_table.copy()
_PICKLING[_LOCK] = lambda _: (threading.Lock, ())  # the states' locks: saved unheld, as new ones


def code_digest(root: Path | None = None) -> bytes:
    """A digest of the source of the packages that compute or hold the parts (call it at start)."""
    base = root or Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in CODE:
        for path in sorted((base / package).rglob("*.py")):
            h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.digest()


def mark(model_identity: str, code: bytes, config: Config, rates: Rates | None) -> bytes:
    """The file's first line: what its parts were computed from (the module's docstring)."""
    h = hashlib.sha256(FORMAT)
    h.update(model_identity.encode() + b"\0" + code)
    h.update(repr(sorted((o.id, o.currency, o.timezone, sorted(o.stores)) for o in config.orgs.values())).encode())
    if rates is not None:
        h.update(rates.digest())
    return h.hexdigest().encode() + b"\n"


@dataclass(frozen=True, slots=True)
class KeptFile:
    """Where a read side's kept parts are saved, and the mark they must carry to be taken back."""

    path: Path
    first_line: bytes

    def save(self, cache: DayCache) -> int:
        """Writes what `cache` keeps (atomically); returns the bytes written."""
        return save(cache, self.path, self.first_line)

    def load(self, cache: DayCache) -> int | None:
        """`load` of this file into `cache`."""
        return load(cache, self.path, self.first_line)


def at(data_dir: Path, model: object, config: Config, rates: Rates | None) -> KeptFile | None:
    """The read side's kept file in `data_dir`, marked for this model, code, settings and rates (call it at
    start); None for a model without day stamps or an identity (nothing it keeps could be trusted later)."""
    if not isinstance(model, DayStamped) or not isinstance(model, Identified):
        return None
    return KeptFile(data_dir / NAME, mark(model.identity(), code_digest(), config, rates))


def save(cache: DayCache, path: Path, first_line: bytes) -> int:
    """Writes what `cache` keeps to `path` (atomically); returns the bytes written."""
    kept = cache.kept()
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # with Redis nothing else writes to the data dir
    with open(tmp, "wb") as f:
        f.write(first_line)
        pickler = pickle.Pickler(f, protocol=5)
        pickler.dispatch_table = _PICKLING
        pickler.dump(kept)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, path)
    return size


def load(cache: DayCache, path: Path, first_line: bytes) -> int | None:
    """Gives `cache` what `path` holds if it was computed from the same model, code, settings and rates;
    returns the parts taken, or None (no file, another mark, a damaged file: said in the log)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        if f.readline() != first_line:
            log.info("kept parts in %s are of another read model, storepulse, settings or rates: not used", path)
            return None
        began = time.perf_counter()
        paused = gc.isenabled()
        gc.disable()  # millions of objects come in, none of them garbage: no collection walks them meanwhile
        try:
            kept: Any = pickle.load(f)
        except Exception as exc:  # a file cut short or damaged: warming computes everything
            log.warning("kept parts in %s not used: %s", path, exc)
            return None
        finally:
            if paused:
                gc.enable()
    if not isinstance(kept, Kept):
        log.warning("kept parts in %s not used: not a read side's parts", path)
        return None
    taken = cache.adopt(kept)
    log.info("took %d kept parts from %s in %.1f s", taken, path, time.perf_counter() - began)
    return taken
