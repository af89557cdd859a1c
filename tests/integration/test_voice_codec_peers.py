"""Voice Opus between two real aiortc peers on loopback: pre-encoded packets out, inline
decoding in, the same sound at the far end, and no decoder thread left running."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from aiortc import RTCPeerConnection

from services.openai_link.uplink_track import UplinkTrack
from services.runtime.media import drain_track
from services.runtime.voice_codec import install_inline_decoding
from tests.support.speech import best_correlation, send_paced, speak


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
