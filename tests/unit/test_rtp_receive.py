"""The lean receive path reads what aiortc reads, keeps what aiortc keeps, and hands a
voice frame on in the socket's callback."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from services.client.rtc import PcmTrack
from services.runtime.media import read_frames
from services.runtime.rtp_receive import VoiceIn, rtp_fields, run_now
from services.runtime.voice_rtp import install_voice_rtp
from tests.support.tone_peers import hear_a_tone

WAIT_S = 10.0
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def extensions() -> HeaderExtensionsMap:
    xmap = HeaderExtensionsMap()
    xmap.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri)
        for i, uri in enumerate((MID, ABS_SEND_TIME, AUDIO_LEVEL), 1)]))
    return xmap


@pytest.mark.parametrize("csrc, mid, level, padding", [
    ([], None, None, 0),
    ([], "0", None, 0),
    ([7, 8, 9], "audio-12", (True, 40), 0),
    ([1], None, (False, 127), 4),
    ([], "1", None, 1),
])
def test_rtp_fields_are_what_aiortc_parses(csrc, mid, level, padding):
    xmap = extensions()
    packet = RtpPacket(payload_type=111, marker=1, sequence_number=65535,
                       timestamp=0xFFFFFFF0, ssrc=0x12345678, payload=bytes(range(77)))
    packet.csrc, packet.padding_size = csrc, padding
    packet.extensions.mid, packet.extensions.audio_level = mid, level
    packet.extensions.abs_send_time = 0xABCDEF
    data = packet.serialize(xmap)
    parsed = RtpPacket.parse(data, xmap)
    assert rtp_fields(data) == (parsed.payload_type, parsed.sequence_number,
                                parsed.timestamp, parsed.ssrc, parsed.payload)


@pytest.mark.parametrize("data", [
    bytes(11),                                            # shorter than a header
    bytes([0x40, 111]) + bytes(20),                       # RTP version 1
    bytes([0x90, 111]) + bytes(12),                       # extension header cut off
    bytes([0x90, 111]) + bytes(10) + b"\xbe\xde\x00\x09" + bytes(8),  # extension cut off
    bytes([0xA0, 111]) + bytes(20) + b"\x00",             # padding of zero bytes
    bytes([0xA0, 111]) + bytes(10) + bytes([40]),         # more padding than packet
])
def test_rtp_fields_refuses_what_aiortc_refuses(data):
    with pytest.raises(ValueError):
        RtpPacket.parse(data, extensions())
    assert rtp_fields(data) is None


async def test_run_now_runs_a_coroutine_on_the_callers_stack_and_a_task_takes_the_rest(
        caplog):
    steps: list[str] = []
    later: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def at_once() -> None:
        steps.append("at once")

    async def waits() -> None:
        steps.append("before")
        steps.append(await later)

    async def fails() -> None:
        raise RuntimeError("a bad packet")

    run_now(at_once())
    assert steps == ["at once"]  # before run_now returned
    run_now(waits())
    assert steps == ["at once", "before"]
    later.set_result("after")
    async with asyncio.timeout(WAIT_S):
        while len(steps) < 3:
            await asyncio.sleep(0.01)
    assert steps == ["at once", "before", "after"]
    with caplog.at_level(logging.ERROR, logger="services.runtime.rtp_receive"):
        run_now(fails())  # logged, not raised into the socket's callback
    assert "a bad packet" in caplog.text


class Frame:
    """What a receiver's decoder hands a track."""

    def __init__(self, n: int) -> None:
        self.n = n


async def test_read_frames_hands_each_frame_as_it_is_put_then_ends_with_the_receiver():
    track = RemoteStreamTrack(kind="audio")
    track._queue.put_nowait(Frame(0))  # queued before anyone read
    handed: list[int] = []
    reading = asyncio.ensure_future(read_frames(track, lambda f: handed.append(f.n)))
    await asyncio.sleep(0)
    assert handed == [0]
    track._queue.put_nowait(Frame(1))
    assert handed == [0, 1]  # on the putter's stack, before put_nowait returned
    track._queue.put_nowait(None)  # the receiver stopped
    await asyncio.wait_for(reading, WAIT_S)
    assert track.readyState == "ended"
    assert "put_nowait" not in vars(track._queue)


async def test_read_frames_raises_what_the_consumer_raised_and_keeps_later_frames():
    track = RemoteStreamTrack(kind="audio")

    def take(frame: Frame) -> None:
        if frame.n == 1:
            raise ValueError("cannot take frame 1")

    reading = asyncio.ensure_future(read_frames(track, take))
    await asyncio.sleep(0)
    for n in range(3):
        track._queue.put_nowait(Frame(n))
    with pytest.raises(ValueError, match="frame 1"):
        await asyncio.wait_for(reading, WAIT_S)
    assert track.readyState == "live"
    assert (await asyncio.wait_for(track.recv(), WAIT_S)).n == 2  # as a recv() loop left it


async def test_read_frames_ends_when_the_track_is_stopped():
    track = RemoteStreamTrack(kind="audio")
    reading = asyncio.ensure_future(read_frames(track, lambda f: None))
    await asyncio.sleep(0)
    track.stop()
    await asyncio.wait_for(reading, WAIT_S)
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_voice_is_decoded_and_heard_in_the_socket_callback_and_reported(monkeypatch):
    install_voice_rtp()
    taken: list[int] = []
    take = VoiceIn.take

    def counted(self, data):
        taken.append(1)
        return take(self, data)

    monkeypatch.setattr(VoiceIn, "take", counted)
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    heard: list[bytes] = []
    in_task: list[bool] = []

    def hear(pcm: bytes) -> None:
        heard.append(pcm)
        in_task.append(asyncio.current_task() is not None)

    try:
        await hear_a_tone(sender, receiver, PcmTrack(), heard, hear)
        deadline = time.monotonic() + WAIT_S
        reported = []
        while not reported:  # the receiver's RTCP reports read its statistics
            assert time.monotonic() < deadline, "no receiver report reached the sender"
            await asyncio.sleep(0.1)
            reported = [s for s in (await sender.getStats()).values()
                        if s.type == "remote-inbound-rtp"]
        # with the sender stopped, what it sent is heard before the counts are read
        await sender.getSenders()[0].stop()
        await asyncio.sleep(0.2)
        received = [s for s in (await receiver.getStats()).values()
                    if s.type == "inbound-rtp"]
    finally:
        await sender.close()
        await receiver.close()
    assert received and received[0].packetsReceived >= len(heard) > 10
    # every packet but the first (aiortc's own path learns the sender's SSRC) went lean
    assert len(taken) >= received[0].packetsReceived - 1
    assert not any(in_task[1:]), "a frame was handed on from a task, not the socket"
    assert reported[0].packetsLost == 0
