"""The soak benchmark's fault schedule: every fault once in ten minutes, none too late."""

from __future__ import annotations

import pytest

from benchmarks.soak import FAULTS, fault_schedule


def test_a_ten_minute_soak_injects_every_fault_once_in_rotation():
    schedule = fault_schedule(600, first_at_s=70, every_s=90, tail_s=40)
    assert [kind for _, kind in schedule] == list(FAULTS)
    assert [at for at, _ in schedule] == [70, 160, 250, 340, 430, 520]


def test_no_fault_is_injected_too_late_for_its_recovery_to_be_seen():
    schedule = fault_schedule(180, first_at_s=55, every_s=10, tail_s=40)
    assert schedule[-1][0] <= 140
    assert [kind for _, kind in schedule][:len(FAULTS) + 1] == [*FAULTS, FAULTS[0]]


def test_a_soak_shorter_than_its_warm_up_injects_nothing():
    assert fault_schedule(60, first_at_s=70, every_s=90, tail_s=40) == []


def test_a_non_positive_interval_is_refused():
    with pytest.raises(ValueError, match="'every_s' must be > 0"):
        fault_schedule(600, first_at_s=70, every_s=0, tail_s=40)


def test_a_chosen_set_of_faults_rotates_alone_and_unknown_ones_are_refused():
    schedule = fault_schedule(300, first_at_s=30, every_s=60, tail_s=40,
                              faults=("kill recorder-1",))
    assert schedule == [(30, "kill recorder-1"), (90, "kill recorder-1"), (150, "kill recorder-1"),
                        (210, "kill recorder-1")]
    with pytest.raises(ValueError, match="kill everything"):
        fault_schedule(300, first_at_s=30, every_s=60, tail_s=40, faults=("kill everything",))
