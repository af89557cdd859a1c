"""A microphone track for voxrelay's Python clients: queued PCM played in real time."""

from __future__ import annotations

import asyncio

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from proto.audio import FRAME_BYTES
from services.runtime.media import Pacer, pcm_frame


class PcmTrack(MediaStreamTrack):
    """A microphone that plays queued PCM16 24 kHz mono in real time, silence otherwise."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._pacer = Pacer()
        self.drained = asyncio.Event()
        self.drained.set()

    def play(self, pcm: bytes) -> None:
        self._pending += pcm
        self.drained.clear()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next()
        chunk = bytes(self._pending[:FRAME_BYTES])
        del self._pending[:FRAME_BYTES]
        if not self._pending:
            self.drained.set()
        return pcm_frame(chunk + bytes(FRAME_BYTES - len(chunk)), pts)
