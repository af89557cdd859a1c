"""A microphone track for voxrelay's Python clients: queued PCM played in real time.

Frames are encoded here, as a browser's native encoder would (voice Opus, mono 24 kHz:
:class:`~services.runtime.voice_codec.VoiceEncoder`), and handed to aiortc as packets,
which it only packetizes: stock aiortc's per-frame audio-level loop, resampling to
48 kHz stereo and encoder thread would make a load generator of these clients cost
more CPU than the server it measures.
"""

from __future__ import annotations

import asyncio

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import Packet

from proto.audio import FRAME_BYTES
from services.runtime.media import Pacer
from services.runtime.voice_codec import VoiceEncoder, voice_packet


class PcmTrack(MediaStreamTrack):
    """A microphone that plays queued PCM16 24 kHz mono in real time, silence otherwise."""

    kind = "audio"
    voice_packets = True
    "recv() returns voice_packet()s (see services.runtime.rtp_send)."

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._pacer = Pacer()
        self._encoder = VoiceEncoder()
        self.drained = asyncio.Event()
        self.drained.set()

    def play(self, pcm: bytes) -> None:
        self._pending += pcm
        self.drained.clear()

    @property
    def queued(self) -> int:
        """Bytes played but not yet handed out."""
        return len(self._pending)

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        pcm, pts = await self.next_frame()
        return voice_packet(self._encoder.encode(pcm), pts)

    async def next_frame(self) -> tuple[bytes, int]:
        """The next 20 ms of PCM (silence once the queue is empty), when it is due, and
        its pts."""
        pts = await self._pacer.next()
        chunk = bytes(self._pending[:FRAME_BYTES])
        del self._pending[:FRAME_BYTES]
        if not self._pending:
            self.drained.set()
        return chunk + bytes(FRAME_BYTES - len(chunk)), pts
