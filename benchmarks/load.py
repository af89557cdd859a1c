"""The load generator: conversations of aiortc clients, in processes of their own.

Each conversation is one client of its own session. It speaks an espeak phrase, waits
for the reply (the simulator in echo mode says the phrase back) to start and then to end,
pauses briefly and speaks again, until its time is up: both directions stay busy about
half the time each, as in a real conversation. What it hears is recorded frame by frame
(arrival time and level), which gives:

- ``frames``: 20 ms frames received over the measured window, and the ``delivery`` ratio
  against the window's length (the server sends a frame every 20 ms, silence included);
- ``longest_gap_ms``: the longest time between two frames arriving, and
  ``longest_gap_at_s`` when it began (seconds into the window: at the start, new
  sessions were still being set up; in the middle, the load itself);

  frames are counted and timed as their RTP packets reached the client's socket, by the
  kernel's receive timestamp (``SIOCGSTAMP``), not when the client's event loop got to
  them: at high counts the load generator is short of CPU itself, and a browser's
  network stack, on a machine of its own, would not have stalled with it. What the
  client's loop heard is kept as ``longest_gap_heard_ms``, and the longest a packet
  waited at the socket to be read as ``read_behind_ms``;
- ``reply_ms``: per turn, from the end of the client's speech to the first loud frame of
  the reply (voice to voice): from when the packet carrying the speech's last sample
  left the client to when the packet carrying the reply's first loud frame reached its
  socket (matched by its RTP timestamp). As the gaps, it leaves out what the client
  itself adds: its loop's lag and its jitter buffer (aiortc's holds four frames, 80 ms,
  before it decodes one). ``reply_heard_ms`` is the same turn as the client's loop
  timed it (from when the speech was due to end to when it handled the loud frame).

The clients run in ``processes`` worker processes (spawned, so nothing is shared with
the measuring process) whose CPU is not counted against the server. They cost what
browsers would (native-like voice Opus encoding, decoding on the loop; the jitter buffer
stays aiortc's), so at high counts the machine's two cores go to the server rather than
to its load generator. The same clients
drive voxrelay and the baseline bridge: both answer ``POST /v1/sessions`` and
``POST /v1/sessions/{sid}/clients``.
"""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiohttp
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from proto.audio import FRAME_BYTES
from services.client.rtc import PcmTrack
from services.client.voxrelay import VoxrelayClient, create_session
from services.runtime import configure_ice_hosts
from services.runtime.media import drain_track
from services.runtime.voice_codec import install_inline_decoding
from tests.support.speech import duration_ms, silence, speak

from .procfs import lower_priority

PHRASES = ("What is the weather like today", "Tell me something about the sea",
           "How far away is the moon", "Which river is the longest")
LOUD_RMS = 300.0
"A frame louder than this (PCM16 RMS) is voice, not silence or comfort noise."
REPLY_WAIT_S = 10.0
QUIET_END_S = 0.7
"A reply is over once no loud frame arrived for this long."
PAUSE_S = 0.4
FRAME_S = 0.02


@dataclass
class ClientResult:
    frames: int = 0
    window_s: float = 0.0
    longest_gap_ms: float = 0.0
    longest_gap_at_s: float = 0.0
    "When the longest gap began, in seconds from the start of the window."
    longest_gap_heard_ms: float = 0.0
    "The longest gap as the client's event loop handled the frames (its own stalls too)."
    read_behind_ms: float = 0.0
    "The longest a packet waited at the client's socket to be read (its loop's lag)."
    turns: int = 0
    answered: int = 0
    reply_ms: list[float] = field(default_factory=list)
    "Voice to voice, per answered turn, timed at the client's socket."
    reply_heard_ms: list[float] = field(default_factory=list)
    "The same turns as the client's loop timed them (its own lag too)."
    error: str = ""

    @property
    def delivery(self) -> float:
        return min(1.0, self.frames * FRAME_S / self.window_s) if self.window_s else 0.0


class TimedMic(PcmTrack):
    """A microphone that notes when each of its frames went out (aiortc sends a frame's
    packet in the same step as ``recv`` hands the frame over)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[float] = []

    async def next_frame(self) -> tuple[bytes, int]:
        frame = await super().next_frame()
        self.sent_at.append(time.monotonic())
        return frame

    def say(self, speech: bytes, after: bytes = b"") -> int:
        """Play ``speech`` then ``after``; returns the index in ``sent_at`` of the frame
        that will carry the speech's last sample."""
        last = len(self.sent_at) + (self.queued + len(speech) - 1) // FRAME_BYTES
        self.play(speech + after)
        return last


class NotingPts:
    """A received track whose ``recv`` tells ``note`` each frame's pts (the RTP timestamp
    of the packet it was decoded from) before handing the frame on."""

    def __init__(self, track: MediaStreamTrack, note: Callable[[int | None], None]) -> None:
        self._track = track
        self._note = note

    async def recv(self) -> Any:
        frame = await self._track.recv()
        self._note(frame.pts)
        return frame


class ListeningClient(VoxrelayClient):
    """A client that notes when each frame arrived and whether it was loud, and the
    loud frames heard since it last spoke (:attr:`loud_frames`)."""

    def __init__(self, name: str) -> None:
        self.timed_mic = TimedMic()
        super().__init__(name, mic=self.timed_mic)
        self.arrivals: list[float] = []
        self.loud_at: float = 0.0
        self.loud_frames: list[int | None] = []
        """The pts of each loud frame heard since :meth:`say`, in order. A loop that
        reads its socket late hears the end of the last reply after it spoke again, so
        the first of them need not be the reply to what it said (see
        :func:`first_reached_after`)."""
        self._pts: int | None = None

    def say(self, speech: bytes, after: bytes = b"") -> int:
        """:meth:`TimedMic.say`, listening afresh for the reply's loud frames."""
        self.loud_frames = []
        return self.timed_mic.say(speech, after)

    async def _read(self, track: MediaStreamTrack) -> None:
        await drain_track(NotingPts(track, self._note_pts), self._hear)  # type: ignore[arg-type]

    def _note_pts(self, pts: int | None) -> None:
        self._pts = pts

    def _hear(self, pcm: bytes) -> None:
        now = time.monotonic()
        self.arrivals.append(now)
        if loudness(pcm) > LOUD_RMS:
            self.loud_at = now
            self.loud_frames.append(self._pts)


SIOCGSTAMP = 0x8906
"Linux: the receive time of the last datagram read from a socket (a struct timeval)."


def is_rtp(datagram: bytes) -> bool:
    """An RTP packet (SRTP leaves the header in the clear), not RTCP, DTLS or STUN."""
    return len(datagram) >= 12 and 128 <= datagram[0] < 192 and not 192 <= datagram[1] <= 223


def receive_time(sock: Any) -> float:
    """When the datagram just read from ``sock`` reached it, on ``time.monotonic``'s
    clock (the kernel stamps it in CLOCK_REALTIME); now if the kernel has no stamp."""
    try:
        seconds, micros = struct.unpack("@qq", fcntl.ioctl(sock.fileno(), SIOCGSTAMP,
                                                          bytes(16)))
    except OSError:
        return time.monotonic()
    return seconds + micros / 1e6 - (time.time() - time.monotonic())


READ_BEHIND_S = 15.0
"At the window's end, how long a client waits to read the packets that reached it."


class SocketArrivals:
    """From its creation on, when each RTP packet reached ``pc``'s sockets (kernel time,
    see :func:`receive_time`) and when this loop read it: its ICE sockets' protocols
    note both before handing the packet on."""

    def __init__(self, pc: Any) -> None:
        self.reached: list[float] = []
        self.read: list[float] = []
        self.by_timestamp: dict[int, float] = {}
        "When the packet with each RTP timestamp reached the socket."
        self._receiver = pc.getTransceivers()[0].receiver
        ice = self._receiver.transport.transport  # the audio's, bundled
        for protocol in ice._connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            receive_time(sock)  # the kernel stamps datagrams once asked (within moments)
            protocol.datagram_received = self._noting(sock, protocol.datagram_received)

    def _noting(self, sock: Any, handle: Callable[[bytes, Any], None]
                ) -> Callable[[bytes, Any], None]:
        def note(data: bytes, addr: Any) -> None:
            if is_rtp(data):
                reached = receive_time(sock)
                self.reached.append(reached)
                self.read.append(time.monotonic())
                self.by_timestamp[int.from_bytes(data[4:8], "big")] = reached
            handle(data, addr)
        return note

    def reached_at(self, pts: int | None) -> float | None:
        """When the packet of the received frame stamped ``pts`` reached the socket (None
        if it was not seen). aiortc stamps a frame with its packet's RTP timestamp less
        the stream's first (its receiver's ``TimestampMapper``)."""
        mapper = getattr(self._receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        origin = getattr(mapper, "_origin", None)
        if pts is None or origin is None:
            return None
        return self.by_timestamp.get((pts + origin) & 0xFFFFFFFF)

    async def read_up_to(self, moment: float) -> None:
        """Wait until a packet that reached the socket after ``moment`` has been read, so
        that every one before it has too (a starved loop reads its socket late), or for
        ``READ_BEHIND_S`` at most (the server sent nothing more)."""
        deadline = time.monotonic() + READ_BEHIND_S
        while (not self.reached or self.reached[-1] <= moment) \
                and time.monotonic() < deadline:
            await asyncio.sleep(FRAME_S)

    def between(self, begun: float, ended: float) -> tuple[list[float], float]:
        """The packets that reached the socket from ``begun`` to ``ended``, and the
        longest any of them waited there to be read (s)."""
        window = [(t, r) for t, r in zip(self.reached, self.read) if begun <= t <= ended]
        return [t for t, _ in window], max((r - t for t, r in window), default=0.0)


class Listener(Protocol):
    mic: PcmTrack
    loud_at: float


def loudness(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0


def longest_gap(begun: float, arrivals: list[float], ended: float) -> tuple[float, float]:
    """The longest time without a frame over the window from ``begun`` to ``ended`` (ms),
    and when it began (seconds into the window)."""
    edges = [begun, *arrivals, ended]
    gaps = np.diff(edges)
    worst = int(np.argmax(gaps))
    return round(float(gaps[worst]) * 1000, 1), round(edges[worst] - begun, 2)


async def spoken_turn(client: Listener, speech: bytes) -> float | None:
    """Say ``speech``; the time from its end to the first loud frame heard after it
    (None: no reply in time), once that reply is over."""
    client.mic.play(speech + silence(200))
    spoken_end = time.monotonic() + duration_ms(speech) / 1000
    onset = await reply_heard(client, spoken_end)
    return None if onset is None else onset - spoken_end


async def reply_heard(client: Listener, spoken_end: float) -> float | None:
    """Wait for a loud frame heard after ``spoken_end``, then for the reply to end; when
    the loop noticed the reply (None: none came in time)."""
    deadline = spoken_end + REPLY_WAIT_S
    while client.loud_at <= spoken_end:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.01)
    onset = client.loud_at
    while time.monotonic() - client.loud_at < QUIET_END_S:
        await asyncio.sleep(0.05)
    return onset


async def timed_turn(client: ListeningClient, packets: SocketArrivals, speech: bytes
                     ) -> tuple[float, float | None] | None:
    """Say ``speech`` and wait for the reply: from the speech's end to the reply's first
    loud frame, as the client's loop timed it and as the packets left and reached its
    socket (None if either was not noted); None if no reply came in time."""
    last = client.say(speech, silence(200))
    spoken_end = time.monotonic() + duration_ms(speech) / 1000
    onset = await reply_heard(client, spoken_end)
    if onset is None:
        return None
    sent_at = client.timed_mic.sent_at
    sent = sent_at[last] if last < len(sent_at) else None
    reached = None if sent is None else first_reached_after(packets, client.loud_frames,
                                                             sent)
    at_socket = reached - sent if sent is not None and reached is not None else None
    return onset - spoken_end, at_socket


def first_reached_after(packets: SocketArrivals, loud: list[int | None], moment: float
                        ) -> float | None:
    """When the first of the loud frames stamped ``loud`` that reached the socket after
    ``moment`` reached it (None: none did, or none was seen)."""
    for pts in loud:
        reached = packets.reached_at(pts)
        if reached is not None and reached > moment:
            return reached
    return None


CREATE_ATTEMPTS = 5


async def create_with_retry(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
                            name: str) -> dict[str, Any]:
    """``POST /v1/sessions``, waiting as told (``rate_limited``: many clients started at
    once from one address) and trying again, a few times."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            return await create_session(http, url, headers=headers, name=name)
        except AssertionError as e:
            if "rate_limited" not in str(e) or attempt + 1 == CREATE_ATTEMPTS:
                raise
            await asyncio.sleep(1.0 + 0.2 * attempt)
    raise AssertionError("unreachable")


async def conversation(url: str, headers: dict[str, str], seconds: float, number: int
                       ) -> ClientResult:
    result = ClientResult()
    phrases = [speak(p) for p in PHRASES]
    async with aiohttp.ClientSession() as http:
        try:
            session = await create_with_retry(http, url, headers, f"load-{number}")
        except (AssertionError, aiohttp.ClientError) as e:
            return ClientResult(error=f"create: {e}")
        client = ListeningClient(f"load-{number}")
        try:
            await client.join(http, url, session)
            await client.wait_connected(timeout=20)
            packets = SocketArrivals(client.pc)
            await asyncio.sleep(0.5)  # the first frames reach the client
            begun = time.monotonic()
            first_frame = len(client.arrivals)
            deadline = begun + seconds
            turn = number
            while time.monotonic() < deadline:
                result.turns += 1
                reply = await timed_turn(client, packets, phrases[turn % len(phrases)])
                turn += 1
                if reply is not None:
                    result.answered += 1
                    heard, at_socket = reply
                    result.reply_heard_ms.append(round(heard * 1000, 1))
                    if at_socket is not None:
                        result.reply_ms.append(round(at_socket * 1000, 1))
                await asyncio.sleep(PAUSE_S)
            ended = time.monotonic()
            await packets.read_up_to(ended)
            arrivals, behind = packets.between(begun, ended)
            result.window_s = ended - begun
            result.frames = len(arrivals)
            result.longest_gap_ms, result.longest_gap_at_s = longest_gap(begun, arrivals,
                                                                         ended)
            heard = [t for t in client.arrivals[first_frame:] if t <= ended]
            result.longest_gap_heard_ms = longest_gap(begun, heard, ended)[0]
            result.read_behind_ms = round(behind * 1000, 1)
        except (AssertionError, TimeoutError, aiohttp.ClientError) as e:
            result.error = f"{type(e).__name__}: {e}"
        finally:
            await client.close()
            async with http.delete(f"{url}/v1/sessions/{session['session_id']}",
                                   headers={"Authorization": f"Bearer {session['token']}"}):
                pass
    return result


def _worker(url: str, headers: dict[str, str], seconds: float, numbers: list[int],
            ice_hosts: list[str] | None, niceness: int) -> list[dict[str, Any]]:
    if niceness:  # a session, so a scheduling group, of its own (see bench.lower_priority)
        os.setsid()
        lower_priority([os.getpid()], niceness)  # before any thread starts
    if ice_hosts:
        configure_ice_hosts(ice_hosts)
    install_inline_decoding()  # as a browser decodes: no thread per received track

    async def run() -> list[ClientResult]:
        return list(await asyncio.gather(*(conversation(url, headers, seconds, n)
                                           for n in numbers)))

    return [asdict(r) for r in asyncio.run(run())]


def run_load(url: str, conversations: int, seconds: float, *, processes: int = 2,
             headers: dict[str, str] | None = None,
             ice_hosts: list[str] | None = None, niceness: int = 0) -> list[ClientResult]:
    """``conversations`` conversations of ``seconds`` each, at once, spread over worker
    processes; one result per conversation. ``niceness``: the workers' nice value."""
    groups = [list(range(i, conversations, processes)) for i in range(processes)]
    groups = [g for g in groups if g]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(groups), mp_context=context) as pool:
        futures = [pool.submit(_worker, url, headers or {}, seconds, g, ice_hosts, niceness)
                   for g in groups]
        rows = [row for f in futures for row in f.result(timeout=seconds + 120)]
    return [ClientResult(**row) for row in rows]
