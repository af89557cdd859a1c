"""The media edge, end to end, with real parts only.

A real bus and a real ``python -m services.media_edge`` (tests/support/stack.py). The
test plays signaling (``AddClient`` over RPC), the link (a real ``AUDIO_PUB`` socket
publishing ``aud/model/<session>`` at real-time pace) and the mixer (a real
``AUDIO_SUB`` on the edge's ``aud/in``), and the browser is a real aiortc peer: an
``events`` DataChannel created before the offer (answering the edge's ``latency.ping``
as the web client does), a microphone that speaks espeak-ng speech in real time, and a
recorder of what it hears on the model's track. The edge serves its metrics
(``VOXRELAY_METRICS_PORT``), which the tests scrape as Prometheus would.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
import zmq
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from prometheus_client.parser import text_string_to_metric_families

from proto import audio, events, ids, rpc, topics
from services.client.rtc import PcmTrack
from services.runtime.bus import EventPublisher
from services.runtime.media import drain_track
from services.runtime.sockets import Role, bind, make_socket
from services.runtime.zmq_loop import SocketReader
from tests.support.frames import Frame, assert_one_stream, played
from tests.support.speech import (
    BYTES_PER_MS,
    best_correlation,
    duration_ms,
    rms_dbfs,
    silence,
    speak,
)
from tests.support.stack import Running, Stack

MIC_PHRASE = "the quick brown fox jumps over the lazy dog"
MODEL_PHRASE = "hello everyone this is the assistant speaking"
AUDIBLE_DBFS = -40.0
"Speech through Opus and back measures about -20 dBFS; silence far below this."
QUIET_DBFS = -60.0
SILENT_LEAD_MS = 400
"A pause before speaking again: a muted tone that leaked would be heard in it."
CONNECT_TIMEOUT_S = 15.0
"Generous: other engineers run tests on the same 2-core machine."


# -- the browser ----------------------------------------------------------------------


class Browser:
    """A browser client of the edge: an aiortc peer with a mic, a recorder and ``events``."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("events")
        self.mic = PcmTrack()
        self.pc.addTrack(self.mic)
        self.messages: list[dict[str, Any]] = []
        self.heard = bytearray()
        "Everything received on the model's track, PCM16 24 kHz mono."
        self.opened = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def send(self, message: dict[str, Any] | str) -> None:
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def wait_state(self, *states: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
        await until(lambda: self.pc.connectionState in states, timeout,
                    f"connectionState in {states} (is {self.pc.connectionState})")

    async def message(self, predicate: Callable[[dict[str, Any]], bool],
                      timeout: float = 10.0) -> dict[str, Any]:
        """The first message (already received or arriving) that ``predicate`` accepts."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [m for m in self.messages if predicate(m)][:1]
            return bool(found)

        await until(seen, timeout, "a matching DataChannel message")
        return found[0]

    async def hear(self, ms: int, timeout: float = 10.0) -> int:
        """Wait for ``ms`` more of the model's track; returns where that began (bytes)."""
        start = len(self.heard)
        await until(lambda: len(self.heard) >= start + ms * BYTES_PER_MS, timeout,
                    f"{ms} ms of the model's track")
        return start

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def _on_message(self, message: str | bytes) -> None:
        decoded = json.loads(message)
        self.messages.append(decoded)
        if decoded["type"] == "latency.ping":  # the edge's round-trip probe: answer at once
            self.send({"type": "latency.pong", "ts": time.time() * 1000,
                       "payload": {"ping_id": decoded["payload"]["ping_id"]}})

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.get_running_loop().create_task(self._record(track))

    async def _record(self, track: MediaStreamTrack) -> None:
        await drain_track(track, self.heard.extend)


# -- the mixer's and the link's sides -----------------------------------------------


@dataclass
class Received:
    topic: bytes
    header: audio.AudioHeader
    pcm: bytes
    at: float


@dataclass
class UplinkTap:
    """A real AUDIO_SUB on the edge's ``aud/in`` publisher, as the mixer has."""

    sock: zmq.Socket[Any]
    frames: list[Received] = field(default_factory=list)
    malformed: int = 0

    def on_message(self, parts: list[bytes]) -> None:
        try:
            topic, header, pcm = audio.unpack(parts)
        except audio.FrameError:
            self.malformed += 1
            return
        self.frames.append(Received(topic, header, pcm, time.monotonic()))

    def of(self, session_id: str, client_id: str) -> list[Received]:
        topic = topics.aud_in(session_id, client_id)
        return [f for f in self.frames if f.topic == topic]


def pairs(frames: list[Received]) -> list[Frame]:
    return [(f.header, f.pcm) for f in frames]


def quiet(frame: Received) -> bool:
    return rms_dbfs(frame.pcm) < QUIET_DBFS


class Link:
    """A real AUDIO_PUB bound on loopback, publishing ``aud/model`` as the link does."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_PUB)
        self.endpoint = bind(self.sock, "tcp://127.0.0.1:*")
        self.seq = 0

    def send(self, session_id: str, pcm: bytes) -> None:
        """Publish ``pcm`` at once, frame by frame (a burst)."""
        for frame in frames_of(pcm):
            self.sock.send_multipart(audio.pack(topics.aud_model(session_id), self.seq,
                                                time.time_ns(), frame))
            self.seq += 1

    async def play(self, session_id: str, pcm: bytes) -> None:
        """Publish ``pcm`` at real-time pace, one 20 ms frame per 20 ms."""
        start = time.monotonic()
        for i, frame in enumerate(frames_of(pcm)):
            delay = start + i * audio.FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send(session_id, frame)


def frames_of(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % audio.FRAME_BYTES)
    return [pcm[i:i + audio.FRAME_BYTES] for i in range(0, len(pcm), audio.FRAME_BYTES)]


def tone(ms: int, hz: float = 440.0, dbfs: float = -12.0) -> bytes:
    t = np.arange(ms * audio.SAMPLE_RATE // 1000) / audio.SAMPLE_RATE
    amplitude = 32767 * 10 ** (dbfs / 20)
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def loudest_window_dbfs(pcm: bytes, window_ms: int) -> float:
    """The RMS level of the loudest ``window_ms`` stretch of ``pcm`` (20 ms steps)."""
    size, step = window_ms * BYTES_PER_MS, audio.FRAME_BYTES
    if len(pcm) <= size:
        return rms_dbfs(pcm)
    return max(rms_dbfs(pcm[i:i + size]) for i in range(0, len(pcm) - size + 1, step))


def loud_ms(pcm: bytes, floor_dbfs: float = AUDIBLE_DBFS) -> int:
    """How many ms of ``pcm`` (in 20 ms windows) are louder than ``floor_dbfs``."""
    step = audio.FRAME_BYTES
    return sum(audio.FRAME_MS for i in range(0, len(pcm) - step + 1, step)
               if rms_dbfs(pcm[i:i + step]) > floor_dbfs)


async def live_publisher(stack: Stack, session_id: str,
                         producer: str = "openai_link-test") -> EventPublisher:
    """An event publisher whose messages the bus is known to deliver (a handshake)."""
    publisher = stack.publisher(producer)
    try:
        async with asyncio.timeout(10):
            while not any(isinstance(e, events.AiState) and e.producer == producer
                          for e in stack.events):
                publisher.publish(events.AiState(session_id=session_id, state="idle"))
                await asyncio.sleep(0.05)
    except BaseException:
        publisher.close()
        raise
    return publisher


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(edge: Running) -> Samples:
    """Every sample the edge's /metrics serves, by (name, sorted labels)."""
    assert edge.beat is not None and edge.beat.metrics, "the edge announces its metrics URL"
    async with aiohttp.ClientSession() as http, \
            http.get(edge.beat.metrics, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def bucket_quantile(samples: Samples, name: str, q: float, **labels: str) -> float:
    """The upper bound of the histogram bucket that holds quantile ``q``."""
    total = value(samples, f"{name}_count", **labels)
    buckets = sorted((float(dict(key)["le"]), count) for (sample, key), count in samples.items()
                     if sample == f"{name}_bucket"
                     and {k: v for k, v in key if k != "le"} == labels)
    for bound, count in buckets:
        if count >= q * total:
            return bound
    raise AssertionError(f"no buckets for {name} {labels}")


async def start_edge(stack: Stack, env: dict[str, str] | None = None) -> Running:
    """``python -m services.media_edge`` serving its metrics on a free loopback port."""
    return await stack.start("media_edge", env={"VOXRELAY_METRICS_PORT": str(stack.free_port()),
                                                **(env or {})})


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[Stack]:
    async with Stack(data_dir=tmp_path) as running:
        yield running


@pytest.fixture
async def edge(stack: Stack) -> Running:
    return await start_edge(stack)


@pytest.fixture
async def browsers() -> AsyncIterator[list[Browser]]:
    """Browsers made by a test; closed (before the stack stops) when it ends."""
    made: list[Browser] = []
    yield made
    async with asyncio.timeout(10):
        for browser in made:
            await browser.close()


@pytest.fixture
def link(stack: Stack) -> Iterator[Link]:
    publisher = Link(stack.ctx)
    yield publisher
    publisher.sock.close()


@pytest.fixture
async def tap(stack: Stack, edge: Running) -> AsyncIterator[UplinkTap]:
    assert edge.beat is not None and edge.beat.audio, "the edge announces its aud/in endpoint"
    sock = make_socket(stack.ctx, Role.AUDIO_SUB)
    sock.connect(edge.beat.audio)
    sock.subscribe(topics.AUD_IN)
    uplink = UplinkTap(sock)
    reader = SocketReader(sock, uplink.on_message, "test-uplink")
    reader.start()
    yield uplink
    reader.stop()
    sock.close()


@dataclass
class Join:
    browser: Browser
    session_id: str
    client_id: str
    answer: rpc.Answer
    added_at: float
    "time.monotonic() when AddClient was sent."
    answered_at: float
    connected_at: float


async def join(stack: Stack, edge: Running, browsers: list[Browser], session_id: str,
               client_id: str | None = None, *, name: str = "ann", role: str = "speaker",
               link_audio: str = "") -> Join:
    """AddClient with a real offer, apply the answer, wait until connected."""
    browser = Browser()
    browsers.append(browser)
    client_id = client_id or ids.new_id()
    offer = await browser.offer()
    added_at = time.monotonic()
    answer = await stack.rpc(edge).call(rpc.AddClient(
        session_id=session_id, client_id=client_id, sdp=offer, name=name, role=role,
        link_audio=link_audio), timeout=10.0)
    assert isinstance(answer, rpc.Answer)
    answered_at = time.monotonic()
    await browser.accept(answer.sdp)
    await browser.wait_state("connected")
    return Join(browser, session_id, client_id, answer, added_at, answered_at, time.monotonic())


# -- tests ------------------------------------------------------------------------------


async def test_client_joins_and_is_announced_on_the_bus(stack, edge, browsers):
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id, name="ann")

    assert joined.answer.edge == edge.instance
    assert "a=candidate:" in joined.answer.sdp and "127.0.0.1" in joined.answer.sdp
    opus = re.search(r"a=rtpmap:(\d+) opus/48000", joined.answer.sdp)
    assert opus and f"a=fmtp:{opus[1]} usedtx=1" in joined.answer.sdp, \
        "the answer asks the browser for Opus DTX (VOXRELAY_EDGE_DTX)"
    event = await stack.wait_event(events.ClientJoined, client_id=joined.client_id)
    assert (event.session_id, event.name, event.role, event.transport, event.edge) == (
        session_id, "ann", "speaker", "track", edge.instance)
    await until(lambda: edge.beat is not None and edge.beat.load == 1, 5.0,
                "the edge's heartbeat to count the connected client")


async def test_client_speech_reaches_aud_in_as_frames(stack, edge, browsers, tap):
    speech = speak(MIC_PHRASE)
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id)
    print(f"\nAddClient -> answer {(joined.answered_at - joined.added_at) * 1000:.0f} ms, "
          f"-> client connected {(joined.connected_at - joined.added_at) * 1000:.0f} ms")

    joined.browser.mic.play(silence(200) + speech + silence(400))
    await until(joined.browser.mic.drained.is_set, 15.0, "the mic to play the phrase")

    def past_the_phrase() -> bool:
        frames = tap.of(session_id, joined.client_id)
        loud = [i for i, f in enumerate(frames) if not quiet(f)]
        return bool(loud) and any(quiet(f) for f in frames[loud[-1]:])

    await until(past_the_phrase, 5.0, "quiet frames after the phrase")

    frames = tap.of(session_id, joined.client_id)
    assert tap.malformed == 0
    assert all(len(f.pcm) == audio.FRAME_BYTES and f.header.samples == 480 for f in frames)
    assert_one_stream(pairs(frames), first_seq=0)
    spoken = [f for f in frames if not quiet(f)]
    rate = (spoken[-1].header.seq - spoken[0].header.seq) / (spoken[-1].at - spoken[0].at)
    assert 40 <= rate <= 60, f"{rate:.1f} frames/s"
    recording = played(pairs(frames))
    level = loudest_window_dbfs(recording, duration_ms(speech))
    assert level > AUDIBLE_DBFS, f"the phrase measured {level:.1f} dBFS"
    assert best_correlation(speech, recording) > 0.7


async def test_model_audio_is_heard_by_every_client_of_the_session(stack, edge, browsers, link,
                                                                   tap):
    speech = speak(MODEL_PHRASE)
    session_id = ids.new_id()
    ann = await join(stack, edge, browsers, session_id, name="ann", link_audio=link.endpoint)
    bob = await join(stack, edge, browsers, session_id, name="bob", role="listener",
                     link_audio=link.endpoint)
    for browser in (ann.browser, bob.browser):
        await browser.hear(200)
    marks = [len(b.heard) for b in (ann.browser, bob.browser)]

    for browser in (ann.browser, bob.browser):
        browser.mic.play(tone(600))
    await link.play(session_id, speech)
    for browser, mark in zip((ann.browser, bob.browser), marks, strict=True):
        end = mark + (duration_ms(speech) + 400) * BYTES_PER_MS
        await until(lambda b=browser, e=end: len(b.heard) >= e, 10.0, "the whole phrase")
        before, during = bytes(browser.heard[:mark]), bytes(browser.heard[mark:])
        assert rms_dbfs(before) < QUIET_DBFS, "silence before the model spoke"
        level = loudest_window_dbfs(during, duration_ms(speech))
        assert level > AUDIBLE_DBFS, f"the model's speech measured {level:.1f} dBFS"
        assert best_correlation(speech, during) > 0.7
    # A listener is heard by no one: only the speaker's microphone reaches aud/in.
    await until(lambda: bool(tap.of(session_id, ann.client_id)), 5.0, "the speaker's tone")
    assert not tap.of(session_id, bob.client_id)


async def test_client_facing_events_reach_the_data_channel_of_their_session_only(
        stack, edge, browsers):
    session_id, other_session = ids.new_id(), ids.new_id()
    joined = await join(stack, edge, browsers, session_id)
    browser = joined.browser
    await until(browser.opened.is_set, 10.0, "the events channel to open")
    publisher = stack.publisher("openai_link-test")
    try:
        # Handshake, not a sleep: publish until the edge has forwarded one.
        async with asyncio.timeout(10):
            while not any(m["type"] == "ai.state" for m in browser.messages):
                publisher.publish(events.AiState(session_id=session_id, state="listening"))
                await asyncio.sleep(0.05)
        publisher.publish(events.TurnStart(session_id=other_session, turn_id="elsewhere",
                                           role="assistant", speaker="assistant"))
        publisher.publish(events.RealtimeEvent(session_id=session_id, event_type="x", data="{}"))
        sent = publisher.publish(events.TurnStart(session_id=session_id, turn_id="here",
                                                  role="assistant", speaker="assistant"))
        message = await browser.message(lambda m: m["type"] == "turn.start")
    finally:
        publisher.close()

    assert message == {"type": "turn.start", "ts": sent.ts,
                       "payload": {"turn_id": "here", "role": "assistant",
                                   "speaker": "assistant"}}
    # Sent before it on the same ordered path: had they been forwarded, they would be here.
    assert not [m for m in browser.messages if m["type"] == "realtime.event"
                or m.get("payload", {}).get("turn_id") == "elsewhere"]


async def test_latency_ping_gets_a_pong_with_the_same_ping_id(stack, edge, browsers):
    joined = await join(stack, edge, browsers, ids.new_id())
    browser = joined.browser
    await until(browser.opened.is_set, 10.0, "the events channel to open")
    browser.send("not json at all")
    browser.send({"type": "latency.ping", "payload": {"ping_id": "x" * 20_000}})
    browser.send({"type": "something.else", "payload": {}})
    browser.send({"type": "latency.ping", "payload": {}})
    sent_ms = time.time() * 1000
    browser.send({"type": "latency.ping", "ts": sent_ms, "payload": {"ping_id": "p-1"}})

    pong = await browser.message(lambda m: m["type"] == "latency.pong")
    assert pong["payload"] == {"ping_id": "p-1", "client_ts": sent_ms}
    assert abs(pong["ts"] - time.time()) < 5.0, "server time, unix seconds"
    assert [m["type"] for m in browser.messages].count("latency.pong") == 1
    assert browser.channel.readyState == "open", "bad messages never close the channel"


async def test_a_muted_client_publishes_nothing_until_it_unmutes(stack, edge, browsers, tap):
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id)
    browser, client_id = joined.browser, joined.client_id
    await until(browser.opened.is_set, 10.0, "the events channel to open")
    browser.mic.play(tone(300) + silence(200))
    await until(lambda: bool(tap.of(session_id, client_id)), 10.0, "a first aud/in frame")
    await until(browser.mic.drained.is_set, 10.0, "the mic to play before muting")

    browser.send({"type": "client.mute", "ts": time.time() * 1000, "payload": {"muted": True}})
    muted = await stack.wait_event(events.ClientMuted, client_id=client_id, muted=True)
    assert muted.session_id == session_id
    told = await browser.message(lambda m: m["type"] == "client.muted")
    assert told["payload"] == {"client_id": client_id, "muted": True}
    browser.send({"type": "client.mute", "payload": {"muted": True}})  # again: no news
    browser.mic.play(tone(1500) + silence(500))  # it speaks while muted: nothing goes out
    await until(browser.mic.drained.is_set, 10.0, "the mic to play while muted")

    browser.send({"type": "client.mute", "payload": {"muted": False}})
    unmuted = await stack.wait_event(events.ClientMuted, client_id=client_id, muted=False)
    browser.mic.play(silence(SILENT_LEAD_MS) + tone(300))  # it speaks again, after a pause
    await until(lambda: tap.of(session_id, client_id)[-1].header.capture_ns > unmuted.ts * 1e9,
                10.0, "frames again after unmuting")
    frames = tap.of(session_id, client_id)
    between = [f for f in frames if muted.ts * 1e9 < f.header.capture_ns < unmuted.ts * 1e9]
    assert not between, f"{len(between)} frames published while muted"
    pause_ends_ns = unmuted.ts * 1e9 + SILENT_LEAD_MS * 1e6 * 0.75
    after = [f for f in frames if unmuted.ts * 1e9 < f.header.capture_ns < pause_ends_ns]
    assert all(rms_dbfs(f.pcm) < QUIET_DBFS for f in after), "the tone was muted, not delayed"
    assert_one_stream(pairs(frames), first_seq=0)
    assert len([e for e in stack.events if isinstance(e, events.ClientMuted)]) == 2


async def test_bad_offer_is_refused_and_the_edge_keeps_working(stack, edge, browsers):
    session_id = ids.new_id()
    client = stack.rpc(edge)
    for sdp in ("", "this is not sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"):
        with pytest.raises(rpc.RpcError) as refused:
            await client.call(rpc.AddClient(session_id=session_id, client_id=ids.new_id(),
                                            sdp=sdp))
        assert refused.value.code == "bad_request"
        assert "SDP" in refused.value.message
    with pytest.raises(rpc.RpcError) as refused:
        await client.call(rpc.AddClient(session_id="not-an-id", client_id=ids.new_id()))
    assert refused.value.code == "bad_request" and "session_id" in refused.value.message
    with pytest.raises(rpc.RpcError) as refused:
        await client.call(rpc.GetTranscript(session_id=session_id))
    assert refused.value.code == "bad_request"  # the recorder's business, not an edge's

    assert isinstance(await client.call(rpc.Ping()), rpc.Ok)
    joined = await join(stack, edge, browsers, session_id)
    await stack.wait_event(events.ClientJoined, client_id=joined.client_id)


async def test_remove_client_closes_its_connection(stack, edge, browsers):
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id)
    client = stack.rpc(edge)

    assert isinstance(await client.call(rpc.RemoveClient(session_id=session_id,
                                                         client_id=joined.client_id)), rpc.Ok)
    await joined.browser.wait_state("closed", "failed", timeout=10.0)
    left = await stack.wait_event(events.ClientLeft, client_id=joined.client_id)
    assert left.reason == "removed"
    again = rpc.RemoveClient(session_id=session_id, client_id=joined.client_id)
    assert isinstance(await client.call(again), rpc.Ok), "idempotent"
    assert isinstance(await client.call(rpc.StopSession(session_id=session_id)), rpc.Ok)
    await until(lambda: edge.beat is not None and edge.beat.load == 0, 5.0, "load back to 0")


async def test_reconnect_replaces_the_old_connection(stack, edge, browsers, tap):
    session_id, client_id = ids.new_id(), ids.new_id()
    first = await join(stack, edge, browsers, session_id, client_id)
    first.browser.mic.play(tone(400))
    await until(lambda: len(tap.of(session_id, client_id)) >= 5, 10.0, "the first uplink")
    second = await join(stack, edge, browsers, session_id, client_id)
    second.browser.mic.play(tone(600))

    await first.browser.wait_state("closed", "failed", timeout=10.0)
    left = await stack.wait_event(events.ClientLeft, client_id=client_id)
    assert left.reason == "replaced"
    joins = [e for e in stack.events
             if isinstance(e, events.ClientJoined) and e.client_id == client_id]
    assert len(joins) == 2
    assert second.browser.pc.connectionState == "connected"
    count = len(tap.of(session_id, client_id))
    await until(lambda: len(tap.of(session_id, client_id)) >= count + 10, 10.0,
                "the new connection's uplink")
    seqs = [f.header.seq for f in tap.of(session_id, client_id)]
    assert seqs == sorted(set(seqs)), "one aud/in stream per client: seq carries on"
    samples = await scrape(edge)
    assert value(samples, "voxrelay_edge_peer_rebuilds_total") == 1
    assert value(samples, "voxrelay_edge_ice_connect_seconds_count") == 2


async def test_interruption_drops_queued_model_audio_at_once(stack, browsers, link):
    edge = await start_edge(stack, {"VOXRELAY_EDGE_QUEUE_FRAMES": "50"})
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id, link_audio=link.endpoint)
    browser = joined.browser
    publisher = await live_publisher(stack, session_id)
    mark = await browser.hear(200)
    try:
        link.send(session_id, tone(800))  # a burst: 800 ms queued at the edge
        await until(lambda: loud_ms(bytes(browser.heard[mark:])) > 0, 10.0, "the tone")
        publisher.publish(events.AiInterrupted(session_id=session_id, response_id="r1"))
        await browser.hear(1200)
    finally:
        publisher.close()
    heard = loud_ms(bytes(browser.heard[mark:]))
    print(f"\ntone heard after interruption: {heard} ms")
    assert 0 < heard < 500, f"{heard} ms of an 800 ms tone played after the interruption"


async def test_edge_exits_cleanly_on_sigterm_with_clients_connected(stack, edge, browsers):
    joined = await join(stack, edge, browsers, ids.new_id())
    await stack.wait_event(events.ClientJoined, client_id=joined.client_id)

    edge.proc.send_signal(signal.SIGTERM)
    await until(lambda: edge.proc.poll() is not None, 5.0, "the edge to exit")
    assert edge.proc.returncode == 0
    left = await stack.wait_event(events.ClientLeft, client_id=joined.client_id)
    assert left.reason == "shutdown"
    await joined.browser.wait_state("closed", "failed", timeout=10.0)


async def test_a_client_that_never_connects_is_given_up(stack, browsers):
    edge = await start_edge(stack, {"VOXRELAY_EDGE_CONNECT_TIMEOUT_S": "1"})
    browser = Browser()
    browsers.append(browser)
    client_id = ids.new_id()
    reply = await stack.rpc(edge).call(rpc.AddClient(
        session_id=ids.new_id(), client_id=client_id, sdp=await browser.offer()), timeout=10.0)
    assert isinstance(reply, rpc.Answer)  # never applied: the browser went away

    left = await stack.wait_event(events.ClientLeft, client_id=client_id)
    assert left.reason == "connect_timeout"
    assert not [e for e in stack.events
                if isinstance(e, events.ClientJoined) and e.client_id == client_id]


async def test_the_edge_measures_connects_round_trips_bus_hops_and_frame_ages(
        stack, edge, browsers, link):
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id, link_audio=link.endpoint)
    browser = joined.browser
    await browser.hear(100)
    # The edge pings once the events channel is there, then every 2 s; the browser answers.
    await until(lambda: any(m["type"] == "latency.ping" for m in browser.messages), 10.0,
                "the edge's first latency.ping")
    pings = [m for m in browser.messages if m["type"] == "latency.ping"]
    assert pings[0]["payload"]["ping_id"] == "e1"
    assert abs(pings[0]["ts"] - time.time()) < 5.0, "server time, unix seconds"

    await link.play(session_id, tone(2000))
    link.seq += 3  # three frames lost between the link and the edge
    await link.play(session_id, tone(200))
    await browser.hear(300)  # the edge's queue drains into the browser
    samples = await scrape(edge)

    connects = value(samples, "voxrelay_edge_ice_connect_seconds_count")
    assert connects >= 1
    assert value(samples, "voxrelay_edge_ice_connect_seconds_sum") / connects < CONNECT_TIMEOUT_S
    round_trips = value(samples, "voxrelay_edge_round_trip_seconds_count")
    assert round_trips >= 1
    assert value(samples, "voxrelay_edge_round_trip_seconds_sum") < round_trips * 1.0
    hops = value(samples, "voxrelay_bus_hop_seconds_count", stage="link_to_edge")
    assert hops >= 100, f"{hops} frames metered on the link_to_edge hop"
    p99 = bucket_quantile(samples, "voxrelay_bus_hop_seconds", 0.99, stage="link_to_edge")
    print(f"\nlink_to_edge hop p99 <= {p99 * 1000:g} ms over {hops:.0f} frames; round trip "
          f"{value(samples, 'voxrelay_edge_round_trip_seconds_sum') / round_trips * 1000:.1f} ms")
    assert p99 <= 0.02
    ages = value(samples, "voxrelay_frame_age_seconds_count", at="client")
    assert ages >= 90, f"{ages} model frames handed to the client's encoder"
    assert ages == value(samples, "voxrelay_edge_frames_total", direction="out"), \
        "every model frame handed out has its age observed"
    assert value(samples, "voxrelay_frame_age_seconds_sum", at="client") / ages < 0.5
    assert value(samples, "voxrelay_edge_frames_dropped_total", reason="gap") == 3
    assert value(samples, "voxrelay_bus_frames_lost_total", stage="link_to_edge") == 3
    assert value(samples, "voxrelay_edge_relayed_clients_total") == 0, "loopback: direct"
    assert value(samples, "voxrelay_edge_peer_rebuilds_total") == 0


async def test_voice_to_voice_runs_from_speech_end_to_the_first_audible_reply_frame(
        stack, edge, browsers, link):
    session_id = ids.new_id()
    joined = await join(stack, edge, browsers, session_id, link_audio=link.endpoint)
    other_session = ids.new_id()
    publisher = await live_publisher(stack, session_id, producer="mixer-test")
    try:
        await joined.browser.hear(100)
        ended_at = time.time()
        # The speaker may be on another edge: any client of the session stops speaking.
        publisher.publish(events.VoiceActivity(session_id=session_id, client_id=ids.new_id(),
                                               active=False, at=ended_at))
        publisher.publish(events.VoiceActivity(session_id=other_session, client_id=ids.new_id(),
                                               active=False, at=ended_at))
        await stack.wait_event(events.VoiceActivity, session_id=other_session)
        await link.play(session_id, silence(300))  # the link's silence is not the reply
        reply_at = time.time()
        await link.play(session_id, tone(600))
        heard = await stack.wait_event(events.TurnHeard, client_id=joined.client_id)
        received_at = time.time()
        await link.play(session_id, tone(400))  # more of the reply: no second measurement
        await joined.browser.hear(300)
    finally:
        publisher.close()

    print(f"\nvoice to voice {heard.voice_to_voice_s * 1000:.0f} ms "
          f"(reply sent {(reply_at - ended_at) * 1000:.0f} ms after the speech end)")
    assert (heard.session_id, heard.producer) == (session_id, edge.instance)
    assert heard.speech_ended_at == pytest.approx(ended_at)
    assert reply_at - ended_at <= heard.voice_to_voice_s <= received_at - ended_at
    assert len([e for e in stack.events if isinstance(e, events.TurnHeard)]) == 1
    samples = await scrape(edge)
    assert value(samples, "voxrelay_voice_to_voice_seconds_count") == 1
    assert value(samples, "voxrelay_voice_to_voice_seconds_sum") == pytest.approx(
        heard.voice_to_voice_s)
