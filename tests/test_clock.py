"""core/clock.py: the one ISO 8601 -> milliseconds conversion, exact to the millisecond (no float)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import NoOffset, ms_from_iso, ms_of

pytestmark = pytest.mark.unit  # pure domain tests, in-process: `pytest -m unit` runs them alone


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
       st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))))
def test_every_instant_to_the_millisecond(t: datetime, tz: timezone) -> None:
    aware = t.replace(tzinfo=tz)
    utc = aware.astimezone(UTC)
    expected = calendar.timegm(utc.utctimetuple()) * 1000 + utc.microsecond // 1000  # another path: seconds, then ms
    assert ms_from_iso(aware.isoformat()) == ms_of(aware) == expected


def test_a_time_without_an_offset_is_in_the_zone_given_or_refused() -> None:
    assert ms_from_iso("2017-03-22T19:28:02", naive=UTC) == 1490210882000
    assert ms_from_iso("2017-03-22T19:28:02Z") == ms_from_iso("2017-03-22T20:28:02+01:00") == 1490210882000
    with pytest.raises(NoOffset, match=r"'2017-03-22T19:28:02' has no UTC offset \(add Z or \+01:00\)"):
        ms_from_iso("2017-03-22T19:28:02")
    with pytest.raises(ValueError, match="'last tuesday' is not ISO 8601"):
        ms_from_iso("last tuesday", naive=UTC)
    assert ms_from_iso("1969-12-31T23:59:59.9995Z") == -1  # floor, as ms_of: before the epoch too
