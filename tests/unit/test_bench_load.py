"""What the load generator makes of the frames a client heard."""

from benchmarks.load import longest_gap


def test_the_longest_gap_and_when_it_began():
    arrivals = [100.0 + 0.02 * i for i in range(1, 50)]  # a frame every 20 ms for a second
    arrivals = [t for t in arrivals if not 100.5 < t < 100.75]  # then 260 ms without any
    assert longest_gap(100.0, arrivals, 101.0) == (260.0, 0.5)


def test_a_window_without_frames_is_one_gap_from_its_start():
    assert longest_gap(10.0, [], 12.5) == (2500.0, 0.0)
