"""What the read side kept (ws_gateway/day_cache.py: the lists' day parts, the best customers' and the
order lists' period sums) saved while it runs and taken back at the next start, so that a restart does
not compute them all again: warming computed ~50 s of them at 1M customers and 1M orders
(ws_gateway/warm_start.py), and until it had, a request waited for the part it needed.

A saved part is only used under the stamp it was computed at (a day written since is computed again, as
any stale part), so the file stays right however old it is, as long as it was computed from the same
read model by the same code with the same rates and settings. The file's first line says which: a digest
of the read model's identity (made when the model was created: a model rebuilt from the log is another
one, whose stamps start again), this storepulse's code that computes the parts (taken at start: code
replaced under a running process must not label what the old code computed), the organisations'
settings and the exchange rates. Any difference, a damaged file or one from another format: it is not
used, warming computes everything (and says why in the log).

Saved by pickle from a forked child (`save_in_background`: the parent holds requests only for the fork),
once warming is done and then every hour when parts changed (warm_start.SAVE_SECONDS), to a
temporary file, fsynced and renamed into place: a process killed at any moment leaves the last
complete file.
"""

from __future__ import annotations

import copyreg
import functools
import gc
import hashlib
import logging
import os
import pickle
import signal
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


@functools.cache
def code_digest(root: Path | None = None) -> bytes:
    """A digest of the source of the packages that compute or hold the parts: read once, at the first call
    (at start), so code replaced under a running process does not label what the old code computed."""
    base = root or Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in CODE:
        for path in sorted((base / package).rglob("*.py")):
            h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.digest()


def mark(fmt: bytes, model_identity: str, code: bytes, settings: str, rates: Rates | None) -> bytes:
    """A kept file's first line: a digest of what its contents were computed from (the module's docstring);
    `fmt` names the file's format, `settings` the organisations' settings its contents depend on."""
    h = hashlib.sha256(fmt)
    h.update(model_identity.encode() + b"\0" + code + b"\0" + settings.encode() + b"\0")
    h.update(b"no rates" if rates is None else rates.digest())
    return h.hexdigest().encode() + b"\n"


def settings_of(config: Config) -> str:
    """What the read side's parts depend on of the organisations: their ids, currencies, zones and stores."""
    return repr(sorted((o.id, o.currency, o.timezone, sorted(o.stores)) for o in config.orgs.values()))


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
    return KeptFile(data_dir / NAME, mark(FORMAT, model.identity(), code_digest(), settings_of(config), rates))


def save(cache: DayCache, path: Path, first_line: bytes) -> int:
    """Writes what `cache` keeps to `path` (atomically), in this process: seconds to tens of seconds at 1M
    customers, with requests waiting meanwhile; returns the bytes written. `save_in_background` is the
    gateway's."""
    with cache.still() as kept:
        return write(kept, path, first_line)


def write(obj: object, path: Path, first_line: bytes) -> int:
    """`first_line`, then `obj` pickled (locks as new ones), to a temporary file of this process, fsynced and
    renamed to `path`: a reader finds the old file or the new one, whole, even with several gateways saving
    to one data dir. Returns the bytes written."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # with Redis nothing else writes to the data dir
    try:
        with open(tmp, "wb") as f:
            f.write(first_line)
            pickler = pickle.Pickler(f, protocol=5)
            pickler.dispatch_table = _PICKLING
            pickler.dump(obj)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def save_in_background(cache: DayCache, kept: KeptFile) -> int:
    """Forks a child that writes what `cache` keeps to `kept` and exits; returns its pid (reap it with
    os.waitpid: exit status 0 once the file is in place). The fork happens with every state and the
    cache held still (DayCache.still: requests wait for the fork alone, tens of milliseconds), so the
    child pickles one consistent instant while this process goes on serving: pickling ~5M objects takes
    ~20 s at 1M customers, far too long to hold requests or a shutdown for. The child's memory is this
    process's pages, copied as either side writes them (the child's reference counts touch what it
    pickles: 2.9 GB of private pages at 1M customers beside the gateway's 3.7 GB, measured, for the ~20 s). It
    closes every file it inherited (the gateway's ports stay the gateway's) and ignores Ctrl-C and
    SIGTERM, so a shutdown during a save leaves it to finish the file."""
    with cache.still() as contents:
        pid = os.fork()
        if pid == 0:  # the child: only this thread exists here; it takes no lock another thread held
            status = 1
            try:
                # the gateway's listening sockets, connections and files: not held past the gateway's
                # exit (a restart during a save would find its ports taken), never used here
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                gc.disable()  # nothing it allocates is garbage before it exits
                write(contents, kept.path, kept.first_line)
                status = 0
            finally:
                os._exit(status)
    return pid


def read(path: Path, first_line: bytes, what: str, logger: logging.Logger = log) -> Any | None:
    """What a kept file holds if its first line is `first_line` and it unpickles whole; None otherwise (no
    file, another mark, a damaged file: said in `logger`'s log, naming `what`). Everything it brought is frozen out
    of the collector's scans: long-lived, as what warming builds (it freezes that too); else the first
    young collection after this walks all of it (1.2 s at 1M customers)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        if f.readline() != first_line:
            logger.info("%s in %s are of another read model, storepulse, settings or rates: not used", what, path)
            return None
        paused = gc.isenabled()
        gc.disable()  # millions of objects come in, none of them garbage: no collection walks them meanwhile
        try:
            got = pickle.load(f)
        except Exception as exc:  # a file cut short or damaged: computed as without it
            logger.warning("%s in %s not used: %s", what, path, exc)
            return None
        else:
            gc.freeze()
        finally:
            if paused:
                gc.enable()
    return got


def load(cache: DayCache, path: Path, first_line: bytes) -> int | None:
    """Gives `cache` what `path` holds if it was computed from the same model, code, settings and rates;
    returns the parts taken, or None (no file, another mark, a damaged file: said in the log)."""
    began = time.perf_counter()
    kept = read(path, first_line, "kept parts")
    if kept is None:
        return None
    if not isinstance(kept, Kept):
        log.warning("kept parts in %s not used: not a read side's parts", path)
        return None
    taken = cache.adopt(kept)
    log.info("took %d kept parts from %s in %.1f s", taken, path, time.perf_counter() - began)
    return taken
