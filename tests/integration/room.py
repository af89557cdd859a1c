"""Several devices in one room, for the multi-device tests (tests/integration/test_multi_device.py).

- :class:`Room`: the whole stack as real processes on a real bus (recorder, mixer, link,
  two media edges, signaling) against a simulator process, with the test's own view of
  the bus (``stack.events``, heartbeats) and a tap on the mixer's ``aud/mix``.
- :class:`Device`: a real aiortc client of the HTTP API (:class:`VoxrelayClient`) with a
  role, a microphone that can also pick up what its loudspeaker plays (a phone on the
  table: the AI's voice comes back, delayed and quieter) and can stall (a frozen device
  that sends nothing), and a way to mute itself on its ``events`` channel.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import zmq
from aiortc import RTCSessionDescription

from proto import audio, topics
from services.client.rtc import PcmTrack
from services.client.voxrelay import VoxrelayClient, create_session
from services.runtime.media import Pacer
from services.runtime.sockets import Role, make_socket
from services.runtime.zmq_loop import SocketReader
from tests.support.sim_process import SimProcess
from tests.support.speech import BYTES_PER_MS, rms_dbfs
from tests.support.stack import Running, Stack

WAIT_S = 30.0
"Every wait's limit: generous, other test runs share this 2-core machine."
ECHO_SLACK_MS = 400
"How far a device's playout may fall behind before it skips ahead (as a phone's would)."
SERVICES = ("recorder", "mixer", "openai_link", "media_edge", "media_edge", "signaling")


class RoomMic(PcmTrack):
    """A microphone: queued speech, plus (optionally) the loudspeaker's sound, delayed."""

    def __init__(self) -> None:
        super().__init__()
        self._echo = bytearray()
        self._echo_gain = 0.0
        self._echo_bytes = 0
        self._running = asyncio.Event()
        self._running.set()

    def pick_up(self, delay_ms: int, gain_db: float) -> None:
        """From now on, what the device plays is heard again ``delay_ms`` later."""
        self._echo_bytes = delay_ms * BYTES_PER_MS
        self._echo = bytearray(self._echo_bytes)
        self._echo_gain = 10 ** (gain_db / 20)

    def played(self, pcm: bytes) -> None:
        """The loudspeaker played ``pcm``."""
        if self._echo_gain:
            self._echo += pcm
            excess = len(self._echo) - self._echo_bytes - ECHO_SLACK_MS * BYTES_PER_MS
            if excess > 0:  # far behind (a stalled test loop): catch up
                del self._echo[:excess]

    def stall(self) -> None:
        """Send nothing until :meth:`resume` (a frozen device)."""
        self._running.clear()

    def resume(self) -> None:
        """Send again from now on (not the frames the stall missed)."""
        pacer = Pacer()
        pacer.pts = self._pacer.pts + audio.FRAME_SAMPLES  # its first frame: the next pts
        self._pacer = pacer
        self._running.set()

    async def next_frame(self) -> tuple[bytes, int]:
        await self._running.wait()
        pcm, pts = await super().next_frame()
        if not self._echo_gain or len(self._echo) < audio.FRAME_BYTES:
            return pcm, pts
        echo = np.frombuffer(bytes(self._echo[:audio.FRAME_BYTES]), dtype="<i2")
        del self._echo[:audio.FRAME_BYTES]
        voice = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        total = np.clip(voice + echo * np.float32(self._echo_gain), -32768, 32767)
        return total.astype("<i2").tobytes(), pts


class Device(VoxrelayClient):
    """A client device with a role, a room microphone and a mute button."""

    def __init__(self, name: str, role: str = "speaker") -> None:
        super().__init__(name)
        self.role = role
        self.room_mic = RoomMic()
        [sender] = self.pc.getSenders()
        sender.replaceTrack(self.room_mic)
        self.mic.stop()
        self.mic = self.room_mic

    async def join(self, http: aiohttp.ClientSession, base: str, session: dict[str, Any]) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(f"{base}/v1/sessions/{session['session_id']}/clients",
                             json={"sdp": self.pc.localDescription.sdp, "type": "offer",
                                   "name": self.name, "role": self.role},
                             headers={"Authorization": f"Bearer {session['token']}"}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
        self.client_id = body["client_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))

    def send(self, kind: str, payload: dict[str, Any]) -> None:
        self.channel.send(json.dumps({"type": kind, "ts": time.time() * 1000,
                                      "payload": payload}))

    def mute(self, muted: bool) -> None:
        self.send("client.mute", {"muted": muted})

    def mark(self) -> int:
        """Where the events received so far end (for :meth:`next_event`)."""
        return len(self.events)

    async def next_event(self, kind: str, after: int, timeout: float = WAIT_S,
                         **payload: Any) -> dict[str, Any]:
        """The first event of ``kind`` matching ``payload`` received after ``after``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.events[after:]:
                        if event["type"] == kind and all(
                                event["payload"].get(k) == v for k, v in payload.items()):
                            return event
                    await asyncio.sleep(0.02)
        except TimeoutError:
            seen = [_described(e) for e in self.events[after:] if e["type"] != "latency.ping"]
            raise AssertionError(f"{self.name}: no {kind} {payload} within {timeout} s "
                                 f"(got {seen})") from None

    async def until_hearing_voice(self, since: int, ms: int = 200,
                                  timeout: float = WAIT_S) -> None:
        """Until ``ms`` of audible sound (the AI speaking) has reached this device's
        loudspeaker after byte ``since`` of :attr:`heard`."""
        frame = 20 * BYTES_PER_MS
        since -= since % frame
        try:
            async with asyncio.timeout(timeout):
                while True:
                    heard = bytes(self.heard[since:])
                    loud = sum(rms_dbfs(heard[i:i + frame]) > AUDIBLE_DBFS
                               for i in range(0, len(heard) - frame + 1, frame))
                    if loud * 20 >= ms:
                        return
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"{self.name}: did not hear {ms} ms of voice within "
                                 f"{timeout} s") from None

    def _hear(self, pcm: bytes) -> None:
        super()._hear(pcm)
        self.room_mic.played(pcm)


AUDIBLE_DBFS = -45.0
"Louder than this, a frame at a device's loudspeaker is someone speaking."


def _described(event: dict[str, Any]) -> str:
    """An event's type, with the role or speaker of a turn event (for failure messages)."""
    payload = event.get("payload") or {}
    who = payload.get("role") or payload.get("speaker")
    return f"{event['type']}({who})" if who else event["type"]


@dataclass(frozen=True)
class MixFrame:
    at: float
    "time.monotonic() on arrival."
    seq: int
    silent_before: int
    "Ticks of silence the mixer kept off the bus just before this frame."
    dbfs: float


class MixTap:
    """A real AUDIO_SUB on the mixer's audio endpoint: one session's ``aud/mix`` frames."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, session_id: str) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_SUB)
        self.sock.connect(endpoint)
        self.sock.subscribe(topics.aud_mix(session_id))
        self.frames: list[MixFrame] = []
        self._reader = SocketReader(self.sock, self._on_message, "test-mix-tap")
        self._reader.start()

    def _on_message(self, parts: list[bytes]) -> None:
        _, header, pcm = audio.unpack(parts)
        self.frames.append(MixFrame(time.monotonic(), header.seq, header.silent_before,
                                   rms_dbfs(pcm)))

    def between(self, start: float, end: float) -> list[MixFrame]:
        return [f for f in self.frames if start <= f.at < end]

    def close(self) -> None:
        self._reader.stop()
        self.sock.close(linger=0)


@dataclass
class Room:
    stack: Stack
    sim: SimProcess
    url: str
    http: aiohttp.ClientSession
    mixer_metrics: str
    running: dict[str, Running] = field(default_factory=dict)
    devices: list[Device] = field(default_factory=list)
    taps: list[MixTap] = field(default_factory=list)

    @classmethod
    async def open(cls, stack: Stack, sim: SimProcess, http: aiohttp.ClientSession,
                   signaling_env: dict[str, str] | None = None) -> Room:
        """Start every service (at once) and wait until signaling sees them all."""
        port, metrics_port = stack.free_port(), stack.free_port()
        envs = {"signaling": {"VOXRELAY_HTTP_PORT": str(port), **(signaling_env or {})},
                "mixer": {"VOXRELAY_METRICS_PORT": str(metrics_port)}}
        started = await asyncio.gather(*(
            stack.start(service, env=envs.get(service), instance=f"{service}-{n}")
            for n, service in enumerate(SERVICES, start=1)))
        room = cls(stack, sim, f"http://127.0.0.1:{port}", http,
                   f"http://127.0.0.1:{metrics_port}/metrics", {r.instance: r for r in started})
        await room.until(room._healthy, "signaling to see every service")
        return room

    async def _healthy(self) -> bool:
        async with self.http.get(f"{self.url}/healthz") as resp:
            return resp.status == 200

    async def until(self, condition: Any, what: str, timeout: float = WAIT_S) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not await condition():
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"not within {timeout} s: {what}") from None

    async def create_session(self, **fields: Any) -> dict[str, Any]:
        return await create_session(self.http, self.url, **fields)

    async def join(self, session: dict[str, Any], name: str, role: str = "speaker") -> Device:
        """Join a device and wait until it is connected and its edge counts it."""
        before = await self.edge_loads()
        device = Device(name, role)
        self.devices.append(device)
        await device.join(self.http, self.url, session)
        await device.wait_connected(WAIT_S)
        total = sum(before.values()) + 1
        await self.until(lambda: self._edges_total(total),
                         f"the edges' heartbeats to count {name}")
        return device

    async def _edges_total(self, total: int) -> bool:
        return sum((await self.edge_loads()).values()) >= total

    async def edge_loads(self) -> dict[str, int]:
        """Clients per media edge, as signaling sees them (from heartbeats)."""
        async with self.http.get(f"{self.url}/healthz") as resp:
            services = (await resp.json())["services"]
        return {e["instance"]: e["load"] for e in services["media_edge"]}

    async def session_detail(self, session: dict[str, Any]) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/v1/sessions/{session['session_id']}") as resp:
            assert resp.status == 200
            return await resp.json()

    async def transcript(self, session: dict[str, Any]) -> list[dict[str, Any]]:
        sid = session["session_id"]
        async with self.http.get(f"{self.url}/v1/sessions/{sid}/transcript") as resp:
            assert resp.status == 200
            return (await resp.json())["entries"]

    async def mixer_metric(self, name: str) -> float:
        """A counter or gauge of the mixer (without labels), from its /metrics."""
        async with self.http.get(self.mixer_metrics) as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError(f"the mixer exports no {name}")

    def tap_mix(self, session: dict[str, Any]) -> MixTap:
        mixer = self.running["mixer-2"]
        assert mixer.beat is not None and mixer.beat.audio
        tap = MixTap(self.stack.ctx, mixer.beat.audio, session["session_id"])
        self.taps.append(tap)
        return tap

    def bus_events(self, kind: type, session: dict[str, Any]) -> list[Any]:
        return [e for e in self.stack.events
                if isinstance(e, kind) and e.session_id == session["session_id"]]

    async def close(self) -> None:
        for tap in self.taps:
            tap.close()
        async with asyncio.timeout(10):
            for device in self.devices:
                await device.close()


def speech_turn(pcm: bytes) -> bytes:
    """What a device says in a turn: a breath, the phrase, and the silence that ends it."""
    return bytes(200 * BYTES_PER_MS) + pcm + bytes(1200 * BYTES_PER_MS)

