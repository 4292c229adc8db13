"""The cyclic collector's pauses are counted (flows/gc_watch.py): a collection adds one pause, its time,
and raises the longest pause when longer; watching twice counts once."""

from __future__ import annotations

import gc

import pytest

from flows import gc_watch, metrics

pytestmark = pytest.mark.unit


def test_a_collection_is_counted_once_with_its_time() -> None:
    gc_watch.watch()
    gc_watch.watch()
    was = gc.isenabled()
    gc.disable()  # no collection but the one below
    try:
        junk = [[i] for i in range(200_000)]  # something for a full collection to scan
        pauses, seconds = metrics.GC_PAUSES._value.get(), metrics.GC_SECONDS._value.get()
        gc.collect()
        del junk
    finally:
        if was:
            gc.enable()
    assert metrics.GC_PAUSES._value.get() == pauses + 1
    took = metrics.GC_SECONDS._value.get() - seconds
    assert took > 0 and metrics.GC_LONGEST._value.get() >= took
