"""Metrics every service shares: its identity, its event loop, the bus hops it receives,
the messages its ZeroMQ sockets rejected.

Each process has one registry (prometheus_client's default, which also carries the
process collector's ``process_resident_memory_bytes`` — the per-service RSS — and
:mod:`.procstat`'s wake-ups and time waiting for a core) and serves it on
``VOXRELAY_METRICS_PORT`` (signaling on its HTTP port). Prometheus tells the processes
apart by target; ``voxrelay_service_info`` names them for dashboards.

Latency along the audio path comes from the two times every bus frame carries
(``proto/audio.py``): ``sent_ns``, when its publisher sent it, gives the hop itself
(:class:`HopMeter`); ``capture_ns``, when its audio was captured, gives the frame's
age where it leaves voxrelay (``FRAME_AGE``). Bucket boundaries sit at the targets:
1 ms for a bus hop, 30/60/100 ms for added latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from proto.audio import AudioHeader

from .procstat import SchedulerCollector

logger = logging.getLogger(__name__)

HOP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
AGE_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

REGISTRY.register(SchedulerCollector())
SERVICE_INFO = Gauge("voxrelay_service_info", "Always 1: which service this process is",
                     ["service", "instance"])
LOOP_LAG = Histogram("voxrelay_event_loop_lag_seconds",
                     "How late the event loop woke a timer (sampled 4 times a second)",
                     buckets=LAG_BUCKETS)
BUS_HOP = Histogram(
    "voxrelay_bus_hop_seconds",
    "One bus hop of an audio frame, publisher send to receiver: edge_to_mixer (aud/in), "
    "mixer_to_link (aud/mix), link_to_edge and link_to_mixer (aud/model)",
    ["stage"], buckets=HOP_BUCKETS)
FRAME_AGE = Histogram(
    "voxrelay_frame_age_seconds",
    "Age of an audio frame when it is handed to an encoder leaving voxrelay: at=model "
    "(microphone capture at the edge → the Realtime uplink), at=client (model audio received "
    "by the link → a client's downlink)",
    ["at"], buckets=AGE_BUCKETS)
FRAMES_LOST = Counter(
    "voxrelay_bus_frames_lost_total",
    "Audio frames missing from a stream on the bus (sequence gaps), by stage",
    ["stage"])

MESSAGES_REJECTED = Counter(
    "voxrelay_bus_messages_rejected_total",
    "Messages a ZeroMQ socket received and dropped unused, by socket (events, rpc_server, "
    "rpc_client, aud_in, aud_mix, aud_model, audio) and reason (frames: wrong number of "
    "parts; protocol: not voxrelay's RPC; decode: not a message of the wire contract; kind: "
    "a message this socket does not take; error: its handler failed on it)",
    ["socket", "reason"])

STAGES = ("edge_to_mixer", "mixer_to_link", "link_to_edge", "link_to_mixer")
MAX_STREAMS = 4096
"Streams whose last seq a HopMeter remembers (the oldest is forgotten first)."
RESTART_GAP = 1000
"A seq jump this large (or backwards) is a restarted stream, not lost frames."


def announce(service: str, instance: str) -> None:
    """Name this process in ``voxrelay_service_info``."""
    SERVICE_INFO.labels(service, instance).set(1)


class HopMeter:
    """The receiving end of one bus stage: hop latency per frame, gaps per stream (less
    the silence a publisher kept off the bus, ``AudioHeader.silent_before``)."""

    def __init__(self, stage: str, on_gap: Callable[[int], object] | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
        self.stage = stage
        self._hop = BUS_HOP.labels(stage)
        self._lost = FRAMES_LOST.labels(stage)
        self._on_gap = on_gap
        self._clock = clock
        self._last: OrderedDict[bytes, int] = OrderedDict()

    def observe(self, topic: bytes, header: AudioHeader) -> None:
        """A good frame arrived on ``topic``."""
        if header.sent_ns:
            self._hop.observe(max(0, self._clock() - header.sent_ns) / 1e9)
        last = self._last.get(topic)
        self._last[topic] = header.seq
        if last is None:
            if len(self._last) > MAX_STREAMS:
                self._last.popitem(last=False)
            return
        # frames missing before this one, less the silence its publisher kept off the bus
        gap = header.seq - last - 1 - header.silent_before
        if 0 < gap < RESTART_GAP:
            self._lost.inc(gap)
            if self._on_gap is not None:
                self._on_gap(gap)

    def forget(self, topic: bytes) -> None:
        """The stream ended (its session or client went)."""
        self._last.pop(topic, None)


def frame_age(at: str) -> Callable[[int], None]:
    """An observer of frame ages at ``at`` ('model' or 'client'), given a capture time (ns)."""
    child = FRAME_AGE.labels(at)

    def observe(capture_ns: int) -> None:
        child.observe(max(0, time.time_ns() - capture_ns) / 1e9)

    return observe


class LoopLagMonitor:
    """Samples how late the event loop runs a timer; the newest sample is ``lag``."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.lag = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.lag = max(0.0, loop.time() - due)
            LOOP_LAG.observe(self.lag)
