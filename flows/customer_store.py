"""The customers of a segments book (flows/membership.py), live or packed: a customer nothing has
touched for a whole epoch is held as the bytes its snapshot wrote (flows/segment_states.py, ~0.3 KB
at 100 segments) instead of its objects (~2.8 KB), and unpacked when something touches it again
(~40 us). Most of a shop's customers are idle at any moment, so the book's memory follows its active
customers, not all of them; a restore takes the snapshot's bytes as they are, unpacking nobody.

A mapping of key -> customer like the dict it replaces: reading a customer (`get`, `[]`) unpacks it
and keeps it live, so whatever the caller changes stays changed. What has to look at every customer
without unpacking them (the snapshot's tables, the timers, a segment's members) reads the packed
ones through the `packed` view and flows/segment_states.py's readers.

Which customers are held packed is the book's call (Membership.take_changes): at a snapshot, those
nothing touched since the snapshot before, once the watermark has passed their kept steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING

from flows.segment_states import unpack

if TYPE_CHECKING:
    from flows.membership import _Customer


class Customers(MutableMapping[str, "_Customer"]):
    __slots__ = ("currency", "live", "packed")

    def __init__(self, currency: str, live: Mapping[str, _Customer] | None = None,
                 packed: Mapping[str, bytes] | None = None) -> None:
        self.currency = currency
        self.live: dict[str, _Customer] = dict(live or {})
        self.packed: dict[str, bytes] = dict(packed or {})

    def __getitem__(self, key: str) -> _Customer:
        c = self.live.get(key)
        if c is None:
            data = self.packed.pop(key)  # KeyError: neither live nor packed
            c = self.live[key] = self._unpack(key, data)
        return c

    def _unpack(self, key: str, data: bytes) -> _Customer:
        from flows.membership import State, _Customer  # here: flows/membership.py imports this module
        return unpack(data, key, self.currency, State, _Customer)

    def __setitem__(self, key: str, c: _Customer) -> None:
        self.packed.pop(key, None)
        self.live[key] = c

    def __delitem__(self, key: str) -> None:
        if self.live.pop(key, None) is None:
            del self.packed[key]

    def __contains__(self, key: object) -> bool:
        return key in self.live or key in self.packed

    def __iter__(self) -> Iterator[str]:
        # over copies: reading a packed customer while iterating moves it to `live`
        yield from list(self.live)
        yield from list(self.packed)

    def __len__(self) -> int:
        return len(self.live) + len(self.packed)

    def __eq__(self, other: object) -> bool:
        """Customer by customer, the packed ones unpacked for the comparison only (they stay packed)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        theirs = other._view() if isinstance(other, Customers) else dict(other.items())
        return self._view() == theirs

    def _view(self) -> dict[str, _Customer]:
        return {**self.live, **{k: self._unpack(k, data) for k, data in self.packed.items()}}

    def __repr__(self) -> str:
        return f"Customers({len(self.live)} live, {len(self.packed)} packed)"

    def hold_packed(self, packed: Mapping[str, bytes]) -> None:
        """Holds these live customers as these bytes (their exact packed form) from now on."""
        for key, data in packed.items():
            del self.live[key]
            self.packed[key] = data

    def __getstate__(self) -> tuple[str, dict[str, _Customer], dict[str, bytes]]:
        return self.currency, self.live, self.packed

    def __setstate__(self, state: tuple[str, dict[str, _Customer], dict[str, bytes]]) -> None:
        self.currency, self.live, self.packed = state
