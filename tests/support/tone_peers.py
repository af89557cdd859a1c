"""Two aiortc peers on this loop: one says a tone, the other hears it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
from aiortc import RTCPeerConnection

from proto.audio import FRAME_SAMPLES, SAMPLE_RATE
from services.client.rtc import PcmTrack
from services.runtime.media import drain_track

WAIT_S = 10.0
LOUD_PEAK = 4000


def tone(frames: int) -> bytes:
    """``frames`` 20 ms frames of a 440 Hz tone, peak 8000."""
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


async def hear_a_tone(sender: RTCPeerConnection, receiver: RTCPeerConnection,
                      mic: PcmTrack, heard: list[bytes],
                      hear: Callable[[bytes], None] | None = None) -> None:
    """Connect ``sender`` (its track ``mic``) to ``receiver``, whose track is drained
    into ``hear`` (by default appended to ``heard``); once something is heard, say a
    tone and wait until ``heard`` holds a loud frame of it."""
    receiver.on("track", lambda track: asyncio.ensure_future(
        drain_track(track, hear or heard.append)))
    sender.addTrack(mic)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    deadline = time.monotonic() + WAIT_S
    while not heard:
        assert time.monotonic() < deadline, "nothing was heard"
        await asyncio.sleep(0.02)
    mic.play(tone(10))
    while not any(np.abs(np.frombuffer(p, "<i2")).max() > LOUD_PEAK for p in heard):
        assert time.monotonic() < deadline, "the tone was not heard"
        await asyncio.sleep(0.02)
