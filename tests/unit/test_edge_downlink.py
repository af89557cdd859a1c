"""The edge's aud/model subscriptions, on real ZeroMQ sockets: frames carry their capture
time on, each is metered as the link_to_edge hop, and sequence gaps count as drops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq
from prometheus_client import REGISTRY

from proto import audio, ids, topics
from services.media_edge.downlink import Downlink
from services.runtime.sockets import Role, bind, make_socket


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def gap_drops() -> float:
    return sample("voxrelay_edge_frames_dropped_total", reason="gap")


def hops() -> float:
    return sample("voxrelay_bus_hop_seconds_count", stage="link_to_edge")


@dataclass
class Heard:
    frames: list[tuple[str, bytes, int]] = field(default_factory=list)

    def __call__(self, session_id: str, pcm: bytes, capture_ns: int) -> None:
        self.frames.append((session_id, pcm, capture_ns))


@dataclass
class Rig:
    pub: zmq.Socket[Any]
    endpoint: str
    downlink: Downlink
    heard: Heard

    def send(self, session_id: str, seq: int, capture_ns: int = 0) -> None:
        pcm = bytes([seq % 256]) * audio.FRAME_BYTES
        self.pub.send_multipart(audio.pack(topics.aud_model(session_id), seq,
                                           capture_ns or time.time_ns(), pcm))

    async def handshake(self, session_id: str, seq: int = 0) -> int:
        """Send frames from ``seq`` until one arrives (no sleeping for slow joiners);
        returns the next seq."""
        async with asyncio.timeout(5):
            while not any(s == session_id for s, _, _ in self.heard.frames):
                self.send(session_id, seq)
                seq += 1
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the last ones sent may still be on their way
        return seq

    async def until_heard(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.heard.frames) < count:
                await asyncio.sleep(0.005)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    ctx: zmq.Context[Any] = zmq.Context()
    pub = make_socket(ctx, Role.AUDIO_PUB)
    endpoint = bind(pub, "tcp://127.0.0.1:*")
    heard = Heard()
    downlink = Downlink(ctx, heard, "test-edge")
    downlink.start()
    yield Rig(pub, endpoint, downlink, heard)
    downlink.close()
    pub.close(linger=0)
    ctx.destroy(linger=0)


async def test_frames_carry_their_capture_time_and_each_is_a_metered_hop(rig):
    session_id = ids.new_id()
    rig.downlink.attach(session_id, rig.endpoint)
    seq = await rig.handshake(session_id)
    before_hops, before_gaps = hops(), gap_drops()
    count = len(rig.heard.frames)
    captured = time.time_ns() - 30_000_000
    rig.send(session_id, seq, captured)
    await rig.until_heard(count + 1)

    assert rig.heard.frames[-1][0] == session_id and rig.heard.frames[-1][2] == captured
    assert hops() - before_hops == 1
    assert gap_drops() == before_gaps


async def test_a_sequence_gap_is_counted_as_dropped_frames(rig):
    session_id = ids.new_id()
    rig.downlink.attach(session_id, rig.endpoint)
    seq = await rig.handshake(session_id)
    before, lost = gap_drops(), sample("voxrelay_bus_frames_lost_total", stage="link_to_edge")
    count = len(rig.heard.frames)
    rig.send(session_id, seq)
    rig.send(session_id, seq + 4)  # three frames lost between the link and here
    await rig.until_heard(count + 2)

    assert gap_drops() - before == 3
    assert sample("voxrelay_bus_frames_lost_total", stage="link_to_edge") - lost == 3


async def test_a_session_detached_and_attached_again_starts_a_new_stream(rig):
    session_id = ids.new_id()
    rig.downlink.attach(session_id, rig.endpoint)
    seq = await rig.handshake(session_id, seq=500)
    rig.downlink.detach(session_id)
    before = gap_drops()

    rig.downlink.attach(session_id, rig.endpoint)
    rig.heard.frames.clear()
    await rig.handshake(session_id, seq=seq + 50)  # a fresh link stream, further on
    assert gap_drops() == before
