"""Instants keyed by a segment's bit, packed: a bit mask says which bits hold one, an array holds the
instants in bit order. What a customer's state keeps per segment (the next instant its value may
change, the instant it entered): a dict of up to 100 ints cost ~2 KB per customer, this 8 bytes an
instant plus ~130 bytes. Lookups and changes go through the mask's popcount; a state changes a few
bits per evaluation, so the array's shifts cost less than a dict's hashing would."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

_UNKNOWN = 2**64  # `low` not known: above every instant an array("q") holds


class BitTimes:
    # `low`: the earliest instant (None: none), kept as instants are set and popped, or _UNKNOWN until
    # asked: earliest() is asked at every input and timer of a customer (its due), min() walked them all
    __slots__ = ("mask", "times", "low")

    def __init__(self, mask: int = 0, times: array[int] | None = None) -> None:
        self.mask = mask
        self.times = times if times is not None else array("q")
        self.low: int | None = _UNKNOWN if self.times else None

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> BitTimes:
        """From (bit, instant) pairs (a bit given twice keeps its last instant)."""
        out = cls()
        for bit, at in pairs:
            out[bit] = at
        return out

    def _index(self, bit: int) -> int:
        return (self.mask & ((1 << bit) - 1)).bit_count()

    def get(self, bit: int, default: int | None = None) -> int | None:
        if not self.mask >> bit & 1:
            return default
        return self.times[self._index(bit)]

    def __contains__(self, bit: object) -> bool:
        return isinstance(bit, int) and bool(self.mask >> bit & 1)

    def __setitem__(self, bit: int, at: int) -> None:
        mask = self.mask
        i = (mask & ((1 << bit) - 1)).bit_count()  # _index, inlined: every evaluation with a timer sets one
        low = self.low
        if mask >> bit & 1:
            old = self.times[i]
            self.times[i] = at
            if low is not None and low != _UNKNOWN:
                if at <= low:
                    self.low = at
                elif old == low:
                    self.low = _UNKNOWN
        else:
            self.times.insert(i, at)
            self.mask = mask | 1 << bit
            if low is None or (low != _UNKNOWN and at < low):
                self.low = at

    def pop(self, bit: int, default: int | None = None) -> int | None:
        if not self.mask >> bit & 1:
            return default
        self.mask &= ~(1 << bit)
        at = self.times.pop(self._index(bit))
        if at == self.low:
            self.low = _UNKNOWN
        return at

    def bits(self) -> Iterator[int]:
        """The bits holding an instant, lowest first."""
        m = self.mask
        while m:
            low = m & -m
            yield low.bit_length() - 1
            m ^= low

    def bits_at(self, at: int) -> list[int]:
        """The bits holding instant `at`, lowest first: what fires at a due instant, found by the array's
        own search rather than by walking every (bit, instant) pair."""
        times, i = self.times, -1
        out: list[int] = []
        mask, skipped = self.mask, 0  # mask: the bits from index `skipped` on
        while True:
            try:
                i = times.index(at, i + 1)
            except ValueError:
                return out
            while skipped < i:
                mask &= mask - 1
                skipped += 1
            out.append((mask & -mask).bit_length() - 1)

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(self.bits(), self.times, strict=True)

    def earliest(self) -> int | None:
        low = self.low
        if low == _UNKNOWN:
            low = self.low = min(self.times) if self.times else None
        return low

    def copy(self) -> BitTimes:
        out = BitTimes(self.mask, array("q", self.times))
        out.low = self.low
        return out

    def __getstate__(self) -> tuple[int, array[int]]:
        return self.mask, self.times

    def __setstate__(self, state: tuple[object, object]) -> None:
        # (mask, times); or, pickled before `low` was a slot, (None, {"mask": ..., "times": ...})
        slots = state[1] if isinstance(state[1], dict) else {"mask": state[0], "times": state[1]}
        self.__init__(slots["mask"], slots["times"])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.times)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BitTimes) and self.mask == other.mask and self.times == other.times

    def __hash__(self) -> int:  # mutable: not hashable, as a dict is not
        raise TypeError("BitTimes is mutable")

    def __repr__(self) -> str:
        return f"BitTimes({dict(self.items())})"

    def packed(self) -> tuple[int, bytes]:
        """What a snapshot keeps (no class reference per customer: flows/snapshot_files.py pickles
        without a memo)."""
        return self.mask, self.times.tobytes()

    @classmethod
    def unpacked(cls, packed: tuple[int, bytes]) -> BitTimes:
        times = array("q")
        times.frombytes(packed[1])
        return cls(packed[0], times)
