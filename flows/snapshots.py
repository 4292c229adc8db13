"""An organisation's state as a Bytewax snapshot, and back: the dataflow layer's persistence.

The books only hand out their large tables and what changed in them (`take_changes`, `tables`,
`without_tables`, `with_tables`: the revenue ledger's orders, refunds and buckets, the profiles'
customers, final orders and refund totals); this module writes the changed entries to the
organisation's snapshot files (flows/snapshot_files.py) and pickles the small rest with the list
of files. A restore reads the files back into the books.
"""

from __future__ import annotations

import gc
import io
import pickle
from collections.abc import Callable

from flows.automations import AutomationBook
from flows.book import TooLate
from flows.organisation import Organisation
from flows.revenue import OLD_RECOVERY_STATE
from flows.snapshot_files import FileList, SnapshotFile, SnapshotFiles

FORMAT = "storepulse-organisation-2"
# Classes pickled under the names they had before flows/snapshot_files.py was named so.
_RENAMED = {("flows.segments", "SegmentState"): FileList, ("flows.segments", "Segment"): SnapshotFile}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        return _RENAMED.get((module, name)) or super().find_class(module, name)


def save(org: Organisation, files: SnapshotFiles) -> bytes:
    """The state as bytes for a Bytewax snapshot: the ledger's changed entries go to snapshot files,
    the rest is pickled here with the list of files."""
    listed = files.save(org.take_changes(), org.keeps, org.tables, org.held_entries)
    return pickle.dumps((FORMAT, org.without_tables(), listed), protocol=pickle.HIGHEST_PROTOCOL)


def load(data: object, files_for: Callable[[str], SnapshotFiles], prune: bool = True) -> Organisation:
    """The organisation `save` wrote; `files_for(org_id)` gives its snapshot files (`prune`: see
    SnapshotFiles.load). It is disarmed: the dataflow arms it again once it has read the log to its end."""
    loaded = _Unpickler(io.BytesIO(data)).load() if isinstance(data, bytes) else None
    if not (isinstance(loaded, tuple) and loaded and loaded[0] == FORMAT):
        raise RuntimeError(OLD_RECOVERY_STATE)
    _, org, listed = loaded
    assert isinstance(org, Organisation) and isinstance(listed, FileList)
    for book in (org.shoppers.carts, org.shoppers.journey, org.shoppers.attribution):
        if "too_late" in vars(book):  # a snapshot from before refusals were kept per store
            book.late = TooLate(vars(book).pop("too_late"))
    if "automations" not in vars(org):  # a snapshot from before automations: none pending
        org.automations = AutomationBook(org.ledger.org, org.ledger.timezone)
    # Restoring a large state creates millions of objects, none of them garbage: the cyclic collector
    # would scan them again and again while they come in (half of a 1M-customer restore's CPU). Paused
    # while they come in (not frozen after: gc.freeze would keep any cycle among them, and every
    # extension object then alive, past the interpreter's exit).
    paused = gc.isenabled()
    gc.disable()
    try:
        org.with_tables(files_for(org.ledger.org).load(listed, org.keeps, prune))
    finally:
        if paused:
            gc.enable()
    org.armed = False
    return org
