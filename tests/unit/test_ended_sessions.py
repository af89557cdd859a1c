"""How long signaling holds an ended session (services/signaling/conductor.py)."""

from __future__ import annotations

from services.signaling.conductor import EndedSessions
from tests.support.clock import ManualClock


def test_an_ended_session_is_held_for_its_time_then_let_go():
    clock = ManualClock(1000.0)
    ended = EndedSessions(keep_s=60.0, max_kept=100, clock=clock)
    assert ended.add("first") == []
    clock.now += 30
    assert ended.add("second") == []
    clock.now += 31  # "first" ended 61 s ago, "second" 31 s ago
    assert ended.add("third") == ["first"]
    clock.now += 60
    assert ended.add("fourth") == ["second", "third"]
    assert len(ended) == 1


def test_no_more_than_the_limit_are_held_however_recent():
    ended = EndedSessions(keep_s=3600.0, max_kept=3, clock=ManualClock(1000.0))
    let_go = [gone for n in range(10) for gone in ended.add(f"s{n}")]
    assert let_go == [f"s{n}" for n in range(7)]
    assert len(ended) == 3
