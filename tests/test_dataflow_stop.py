"""How `storepulse flows` takes signals (flows/run.py GracefulStop): the first asks for a clean stop,
the same stop arriving twice (the terminal's Ctrl-C to the group, and `up` passing its own on) is not
a second request, a later second signal or the grace alarm interrupts."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from flows import run
from flows.run import GracefulStop


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    now = [100.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: now[0])
    before = signal.getsignal(signal.SIGALRM)
    yield now
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def test_first_signal_asks_for_a_clean_stop_and_arms_the_grace_alarm(clock: list[float]) -> None:
    stop = GracefulStop()
    assert not stop.requested()
    stop(signal.SIGINT, None)
    assert stop.requested()
    assert signal.getsignal(signal.SIGALRM) is stop
    assert 0 < signal.alarm(0) <= GracefulStop.GRACE_SECONDS


def test_the_same_stop_arriving_twice_is_not_a_second_request(clock: list[float]) -> None:
    stop = GracefulStop()
    stop(signal.SIGINT, None)
    clock[0] += 0.3
    stop(signal.SIGINT, None)  # up's supervisor passing the terminal's Ctrl-C on
    stop(signal.SIGTERM, None)
    assert stop.requested()


def test_a_later_second_signal_interrupts(clock: list[float]) -> None:
    stop = GracefulStop()
    stop(signal.SIGTERM, None)
    clock[0] += GracefulStop.ECHO_SECONDS
    with pytest.raises(KeyboardInterrupt):
        stop(signal.SIGINT, None)


def test_the_grace_alarm_interrupts(clock: list[float]) -> None:
    stop = GracefulStop()
    stop(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        stop(signal.SIGALRM, None)
