"""What a book with large tables offers the snapshot files (flows/snapshot_files.py): its tables by
name, the entries changed since the last snapshot, a copy without them to pickle beside the files,
and the tables put back on restore. The revenue ledger, the profiles book and the segment books keep
theirs this way; the organisation (flows/organisation.py) goes over them alike."""

from __future__ import annotations

from typing import Any, Protocol, Self


class TabledBook(Protocol):
    def table_names(self) -> tuple[str, ...]:
        """The names of its tables in the snapshot files (unique across the organisation's books)."""
        ...

    def tables(self) -> dict[str, dict[Any, Any]]:
        """Its tables whole, for rewriting the files."""
        ...

    def held_entries(self) -> int:
        """How many entries its tables hold (without building them)."""
        ...

    def take_changes(self) -> dict[str, dict[Any, Any]]:
        """The entries changed since the last call (None or left out: gone)."""
        ...

    def without_tables(self) -> Self:
        """A copy without the tables: what a snapshot pickles beside the files."""
        ...

    def with_tables(self, tables: dict[str, dict[Any, Any]]) -> Self:
        """Itself with restored tables (those of `table_names` the files held) put back."""
        ...
