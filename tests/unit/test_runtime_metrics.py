"""The receiving end of a bus hop: its latency from ``sent_ns``, lost frames from ``seq``."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from proto.audio import VERSION, AudioHeader
from services.runtime.metrics import HopMeter

TOPIC = b"aud/in/" + b"a" * 32 + b"/" + b"b" * 32


def header(seq: int, sent_ns: int) -> AudioHeader:
    return AudioHeader(VERSION, seq, capture_ns=sent_ns - 5_000_000, sent_ns=sent_ns)


def sample(name: str, stage: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": stage}) or 0.0


def test_hop_latency_is_receive_time_minus_send_time():
    now = [10_000_000_000]
    meter = HopMeter("link_to_mixer", clock=lambda: now[0])
    count = sample("voxrelay_bus_hop_seconds_count", "link_to_mixer")
    total = sample("voxrelay_bus_hop_seconds_sum", "link_to_mixer")
    meter.observe(TOPIC, header(1, now[0] - 300_000))  # 0.3 ms on the way
    meter.observe(TOPIC, AudioHeader(VERSION, 2, capture_ns=1))  # an old sender: no sent_ns
    assert sample("voxrelay_bus_hop_seconds_count", "link_to_mixer") == count + 1
    assert sample("voxrelay_bus_hop_seconds_sum", "link_to_mixer") == pytest.approx(
        total + 0.0003)


def test_gaps_are_counted_per_stream_and_restarts_are_not():
    gaps: list[int] = []
    meter = HopMeter("edge_to_mixer", on_gap=gaps.append)
    other = TOPIC[:-1] + b"c"
    lost = sample("voxrelay_bus_frames_lost_total", "edge_to_mixer")
    for seq in (1, 2, 5):  # 3 and 4 never came
        meter.observe(TOPIC, header(seq, 1))
    meter.observe(other, header(7, 1))  # another stream's first frame: no gap
    meter.observe(TOPIC, header(0, 1))  # the stream started over
    meter.observe(TOPIC, header(1, 1))
    meter.forget(other)
    meter.observe(other, header(40, 1))  # forgotten: a fresh start
    assert gaps == [2]
    assert sample("voxrelay_bus_frames_lost_total", "edge_to_mixer") == lost + 2


def test_silence_kept_off_the_bus_is_not_counted_lost():
    gaps: list[int] = []
    meter = HopMeter("link_to_edge", on_gap=gaps.append)
    topic = TOPIC[:-1] + b"d"
    lost = sample("voxrelay_bus_frames_lost_total", "link_to_edge")
    meter.observe(topic, header(1, 1))
    meter.observe(topic, AudioHeader(VERSION, 60, 1, sent_ns=1, silent_before=58))  # pause
    meter.observe(topic, AudioHeader(VERSION, 70, 1, sent_ns=1, silent_before=5))  # 4 lost
    meter.observe(topic, AudioHeader(VERSION, 2000, 1, sent_ns=1, silent_before=1929))
    assert gaps == [4]
    assert sample("voxrelay_bus_frames_lost_total", "link_to_edge") == lost + 4


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage"):
        HopMeter("edge_to_moon")
