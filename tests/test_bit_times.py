"""flows/bit_times.py against a dict doing the same operations."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.bit_times import BitTimes

pytestmark = pytest.mark.unit

OPS = st.lists(st.tuples(st.sampled_from(["set", "pop"]), st.integers(0, 130),
                         st.integers(-(2**62), 2**62) | st.integers(0, 5)), max_size=60)  # (small: equal instants)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(OPS)
def test_bit_times_behave_as_a_dict_of_bits(ops: list[tuple[str, int, int]]) -> None:
    packed, model = BitTimes(), dict[int, int]()
    for op, bit, at in ops:
        if op == "set":
            packed[bit] = at
            model[bit] = at
        else:
            assert packed.pop(bit) == model.pop(bit, None)
        assert (bit in packed) == (bit in model) and packed.get(bit) == model.get(bit)
        if at % 3:  # the earliest kept through sets and pops, asked now and then (not known in between)
            assert packed.earliest() == min(model.values(), default=None)
    assert list(packed.items()) == sorted(model.items()) and len(packed) == len(model)
    assert packed.earliest() == min(model.values(), default=None)
    copy = packed.copy()
    copy[131] = 0
    assert 131 not in packed and copy != packed
    assert BitTimes.unpacked(packed.packed()) == packed == pickle.loads(pickle.dumps(packed))
    assert BitTimes.of(model.items()) == packed


def test_a_pickle_from_before_the_earliest_was_kept_loads() -> None:
    """Pickled when `mask` and `times` were the only slots: the state was (None, {slot: value})."""
    from array import array
    old = BitTimes.__new__(BitTimes)
    old.__setstate__((None, {"mask": 0b101, "times": array("q", [7, 3])}))
    assert old == BitTimes.of([(0, 7), (2, 3)]) and old.earliest() == 3
