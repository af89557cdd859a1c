"""Voice Opus between two real aiortc peers on loopback: pre-encoded packets out, inline
decoding in, the same sound at the far end, and no decoder thread left running; with
prompt jitter, every packet is decoded as it arrives (none held back for prefetch)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import Packet

from proto import audio
from services.openai_link.uplink_track import UplinkTrack
from services.runtime.media import drain_track
from services.runtime.voice_codec import (
    VoiceEncoder,
    install_inline_decoding,
    install_prompt_jitter,
    voice_packet,
)
from services.runtime.voice_decoder import load_libopus
from tests.support.speech import best_correlation, send_paced, speak


async def connect(sender: RTCPeerConnection, receiver: RTCPeerConnection,
                  track: MediaStreamTrack) -> MediaStreamTrack:
    """Offer ``track`` from ``sender``; the remote track, once the peers are connected."""
    sender.addTrack(track)
    arrived: asyncio.Future = asyncio.get_running_loop().create_future()
    connected = asyncio.Event()
    receiver.on("track", lambda remote: arrived.set_result(remote))
    sender.on("connectionstatechange",
              lambda: connected.set() if sender.connectionState == "connected" else None)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    remote = await asyncio.wait_for(arrived, 10)
    await asyncio.wait_for(connected.wait(), 10)
    return remote


class FewFrames(MediaStreamTrack):
    """Sends ``count`` frames of speech, paced, then nothing more (the track stays live)."""

    kind = "audio"

    def __init__(self, speech: bytes, count: int) -> None:
        super().__init__()
        self._frames = [speech[i * 960:(i + 1) * 960] for i in range(count)]
        self._encoder = VoiceEncoder()
        self._sent = 0

    async def recv(self) -> Packet:
        if self._sent == len(self._frames):
            await asyncio.Event().wait()  # until the peer connection closes
            raise MediaStreamError
        await asyncio.sleep(0.02)
        self._sent += 1
        return voice_packet(self._encoder.encode(self._frames[self._sent - 1]),
                            (self._sent - 1) * 480)


async def test_with_prompt_jitter_every_received_packet_is_decoded_at_once():
    # aiortc's own buffer would keep the last four frames until four more arrived
    assert install_inline_decoding() and install_prompt_jitter()
    sent = 25
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    decoded = 0
    formats = set()
    try:
        remote = await connect(sender, receiver, FewFrames(speak("one two three"), sent))
        async with asyncio.timeout(10):
            while decoded < sent:
                frame = await remote.recv()
                formats.add((frame.sample_rate, frame.layout.name, frame.samples))
                decoded += 1
    finally:
        await sender.close()
        await receiver.close()
    assert decoded == sent
    if load_libopus() is not None:  # decoded straight to the bus format
        assert formats == {(audio.SAMPLE_RATE, "mono", audio.FRAME_SAMPLES)}


async def test_speech_crosses_a_peer_connection_as_voice_opus_and_decodes_inline():
    assert install_inline_decoding()
    speech = speak("one two three four")
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    track = UplinkTrack()
    sender.addTrack(track)
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future = loop.create_future()
    connected = asyncio.Event()
    receiver.on("track", lambda remote: arrived.set_result(remote))
    sender.on("connectionstatechange",
              lambda: connected.set() if sender.connectionState == "connected" else None)
    heard = bytearray()
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        remote = await asyncio.wait_for(arrived, 10)
        drain = asyncio.create_task(drain_track(remote, heard.extend))
        await asyncio.wait_for(connected.wait(), 10)

        async def push(frame: bytes) -> None:
            track.push(frame)

        await asyncio.wait_for(send_paced(push, speech + bytes(24_000)), 30)
        assert not any(t.name == "audio-decoder" and t.is_alive()
                       for t in threading.enumerate()), "audio is decoded on the loop"
    finally:
        await sender.close()
        await receiver.close()
    await asyncio.wait_for(drain, 5)  # the receiver stopping ends the remote track
    assert len(heard) > len(speech)
    assert best_correlation(speech, bytes(heard)) > 0.8
    assert np.abs(np.frombuffer(bytes(heard), dtype="<i2")).max() > 3000, "speech, not silence"
