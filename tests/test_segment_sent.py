"""The gateway's memory of the segment changes it sent (ws_gateway/segment_sent.py): what it retracts."""

from __future__ import annotations

import pytest

from ws_gateway.segment_sent import SentChanges

pytestmark = pytest.mark.unit


def test_a_sent_change_is_retracted_once_with_its_number_and_one_never_sent_not_at_all() -> None:
    sent = SentChanges(lateness_ms=5000)
    assert sent.sent("s|a|1000|entered", 1000) == 1 and sent.sent("s|b|1200|entered", 1200) == 2
    assert sent.withdrawn("s|b|1200|entered") == 2
    assert sent.withdrawn("s|b|1200|entered") is None  # said once
    assert sent.withdrawn("s|c|1100|entered") is None  # entered and withdrawn in one batch: never sent
    assert sent.seq == 2 and len(sent) == 1


def test_a_change_older_than_the_lateness_behind_the_newest_is_forgotten() -> None:
    sent = SentChanges(lateness_ms=5000)
    sent.sent("old", 1000)
    sent.sent("edge", 6000)
    sent.sent("new", 11_000)  # the watermark is at least 6000 now: "old" (1000 < 6000) can never be withdrawn
    assert sent.withdrawn("old") is None
    assert sent.withdrawn("edge") == 2 and sent.withdrawn("new") == 3


def test_the_guard_keeps_at_most_that_many_the_oldest_go_first() -> None:
    sent = SentChanges(lateness_ms=10**12, most=3)
    for i in range(5):
        sent.sent(f"k{i}", 100 + i)
    assert len(sent) == 3 and sent.withdrawn("k1") is None and sent.withdrawn("k2") == 3
