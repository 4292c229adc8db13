"""Pipeline health checks (core/health.py): pure, time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.health import (
    DEAD_LETTERS,
    Check,
    Incidents,
    Problem,
    channel_problems,
    log_unavailable,
    rejected_burst,
    store_silent,
    usual_gap_s,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0  # seconds; a fixed instant


def test_the_usual_gap_is_the_95th_percentile_of_gaps_between_active_minutes() -> None:
    assert usual_gap_s(list(range(11))) is None  # 11 active minutes: too few to know
    assert usual_gap_s(list(range(20))) == 60  # every minute
    # 19 gaps of 2 minutes and one of 60: the 95th percentile (19th of 20) is 2 minutes, the outlier ignored
    minutes = [2 * i for i in range(20)] + [38 + 60]
    assert usual_gap_s(minutes) == 120
    assert usual_gap_s(minutes + minutes) == 120  # duplicates do not count


def test_a_busy_store_is_silent_after_the_floor_a_sparse_one_after_four_usual_gaps() -> None:
    busy = [int(NOW // 60) - 200 + i for i in range(100)]  # an event every minute until 100 minutes ago
    assert store_silent("s1", busy, NOW - 29 * 60, NOW) is None
    assert store_silent("s1", busy, NOW - 30 * 60, NOW) == Problem(
        Check.STORE_SILENT, "s1", (("silent_s", 1800), ("usual_gap_s", 60)))
    sparse = [int(NOW // 60) - 1440 + 30 * i for i in range(40)]  # every 30 minutes: silent after 2 hours
    assert store_silent("s2", sparse, NOW - 119 * 60, NOW) is None
    assert store_silent("s2", sparse, NOW - 120 * 60, NOW) is not None
    assert store_silent("s3", [], None, NOW) is None and store_silent("s3", busy, None, NOW) is None


def test_a_burst_of_rejections_names_its_most_frequent_reason() -> None:
    rejected = [(NOW - i, "signature mismatch") for i in range(7)] + [(NOW - 5, "bad json")] * 2
    assert rejected_burst("s1", rejected, NOW) is None  # 9
    rejected.append((NOW - 599, "signature mismatch"))
    assert rejected_burst("s1", rejected, NOW) == Problem(
        Check.DELIVERIES_REJECTED, "s1", (("count", 10), ("reason", "signature mismatch")))
    assert rejected_burst("s1", rejected, NOW + 2) is None  # the oldest left the 10-minute window


def test_log_and_channels() -> None:
    assert log_unavailable(None, NOW) is None
    assert log_unavailable(NOW - 42, NOW) == Problem(Check.LOG_UNAVAILABLE, "", (("for_s", 42),))
    assert channel_problems("ops", None, DEAD_LETTERS - 1) == []
    assert [p.check for p in channel_problems("ops", "410 Gone", DEAD_LETTERS)] == [Check.CHANNEL_DISABLED,
                                                                                   Check.DEAD_LETTERS]


def test_an_incident_alerts_once_when_it_opens_and_once_when_it_resolves() -> None:
    incidents = Incidents()
    silent = Problem(Check.STORE_SILENT, "s1", (("silent_s", 1800), ("usual_gap_s", 60)))
    assert incidents.update([silent], NOW) == ([silent], [])
    longer = Problem(Check.STORE_SILENT, "s1", (("silent_s", 3600), ("usual_gap_s", 60)))
    assert incidents.update([longer], NOW + 1800) == ([], [])
    assert incidents.update([], NOW + 1900) == ([], [(longer, NOW)])
    assert incidents.update([], NOW + 2000) == ([], [])


@given(st.lists(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3), max_size=20))
def test_every_opening_is_resolved_at_most_once(checks: list[list[str]]) -> None:
    incidents, open_now = Incidents(), set()
    for t, subjects in enumerate(checks):
        opened, resolved = incidents.update([Problem(Check.CHANNEL_DISABLED, s) for s in subjects], NOW + t)
        assert not {p.subject for p in opened} & open_now
        assert {p.subject for p, _ in resolved} <= open_now
        open_now = (open_now | {p.subject for p in opened}) - {p.subject for p, _ in resolved}
        assert open_now == set(subjects)
