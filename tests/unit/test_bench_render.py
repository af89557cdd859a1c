"""What ``voxrelay bench`` prints under its table."""

from benchmarks.bench import render


def _row(read_behind_ms: float) -> dict:
    return {"conversations": 28, "cpu_s_per_conversation_s": 0.04,
            "rss_mb_per_conversation": 1.8, "rss_growth_pct": 0.5,
            "clients": {"errors": [], "delivery_min": 1.0, "longest_gap_ms": 72.6,
                        "longest_gap_heard_ms": 203.4, "answered": 129, "turns": 129,
                        "voice_to_voice_p50_ms": 262.4, "voice_to_voice_p99_ms": 301.9,
                        "voice_to_voice_heard_p50_ms": 1107.7,
                        "voice_to_voice_heard_p99_ms": 5748.4,
                        "read_behind_ms": read_behind_ms},
            "bus_hops": {}}


def test_a_load_generator_reading_its_packets_late_is_named_under_the_table():
    text = render({"steps": [{"conversations": 28, "voxrelay": _row(1187.6)}]})
    assert "| voxrelay | 28 | 0.04 |" in text
    assert "72.6 (203.4)" in text  # at the socket, and as the client's loop heard it
    assert "262.4 / 301.9 (1107.7 / 5748.4)" in text  # voice→voice, the same two ways
    assert "the load generator read packets late" in text
    assert "voxrelay at 28: 1187.6 ms" in text


def test_a_load_generator_that_kept_up_is_not_mentioned():
    text = render({"steps": [{"conversations": 28, "voxrelay": _row(15.5)}]})
    assert "read packets late" not in text
