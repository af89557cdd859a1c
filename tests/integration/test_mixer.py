"""The mixer process on a real bus: the test plays the media edge (a real AUDIO_PUB bound on
loopback, publishing ``aud/in``) and the link (a real AUDIO_SUB on the mixer's announced
audio endpoint, reading ``aud/mix``)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
import zmq

from proto import audio, events, ids, rpc, topics
from services.runtime.sockets import Role, bind, make_socket
from services.runtime.zmq_loop import SocketReader
from tests.support.speech import rms_dbfs, speak
from tests.support.stack import Running, Stack, stop_process

FRAME_S = audio.FRAME_MS / 1000
FRAME_NS = audio.FRAME_MS * 1_000_000
WAIT_S = 10.0
"Every wait's limit: generous, other test runs share this machine."
SILENCE = bytes(audio.FRAME_BYTES)


def level(value: int) -> bytes:
    """A frame of one constant sample value: easy to find in a mix, and to add up."""
    return np.full(audio.FRAME_SAMPLES, value, dtype="<i2").tobytes()


def values(pcm: bytes) -> set[int]:
    return set(np.frombuffer(pcm, dtype="<i2").tolist())


class Edge:
    """Plays a media edge: publishes clients' ``aud/in`` frames from a bound AUDIO_PUB."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_PUB)
        self.endpoint = bind(self.sock, "tcp://127.0.0.1:*")
        self._seq: collections.Counter[str] = collections.Counter()

    def send(self, session_id: str, client_id: str, pcm: bytes) -> int:
        """Publish one frame now; returns its capture_ns."""
        capture_ns = time.time_ns()
        seq = self._seq[client_id]
        self._seq[client_id] += 1
        self.sock.send_multipart(audio.pack(topics.aud_in(session_id, client_id), seq,
                                            capture_ns, pcm))
        return capture_ns

    async def play(self, session_id: str, client_id: str, frames: list[bytes]) -> list[int]:
        """Publish ``frames`` at real-time pace (drift-free); returns their capture_ns."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        stamps = []
        for n, pcm in enumerate(frames):
            await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))
            stamps.append(self.send(session_id, client_id, pcm))
        return stamps

    def close(self) -> None:
        self.sock.close(linger=0)


@dataclass(frozen=True)
class Received:
    header: audio.AudioHeader
    pcm: bytes


class MixReader:
    """Plays the link: every ``aud/mix`` frame of one session, as it arrives."""

    def __init__(self, ctx: zmq.Context[Any], running: Running, session_id: str) -> None:
        assert running.beat is not None and running.beat.audio
        self.sock = make_socket(ctx, Role.AUDIO_SUB)
        self.sock.connect(running.beat.audio)
        self.sock.subscribe(topics.aud_mix(session_id))
        self.frames: list[Received] = []
        self._reader = SocketReader(self.sock, self._on_message, "test-mix")
        self._reader.start()

    def _on_message(self, parts: list[bytes]) -> None:
        _, header, pcm = audio.unpack(parts)
        self.frames.append(Received(header, pcm))

    async def wait_for(self, condition: Any, what: str, after: int = 0) -> Received:
        """The first frame from index ``after`` on for which ``condition(frame)`` holds."""
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    for frame in self.frames[after:]:
                        if condition(frame):
                            return frame
                    after = max(after, len(self.frames))
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"no mix frame {what} within {WAIT_S} s") from None

    async def wait_count(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while len(self.frames) < count:
                await asyncio.sleep(0.01)

    def close(self) -> None:
        self._reader.stop()
        self.sock.close(linger=0)


@dataclass
class Rig:
    stack: Stack
    mixer: Running
    session_id: str
    mix: MixReader
    metrics_url: str
    edges: list[Edge] = field(default_factory=list)

    def edge(self) -> Edge:
        edge = Edge(self.stack.ctx)
        self.edges.append(edge)
        return edge

    async def rpc(self, request: rpc.Request) -> rpc.AnyReply:
        return await self.stack.rpc(self.mixer).call(request)

    async def add_speaker(self, edge: Edge, client_id: str, probe: int) -> None:
        """AddClient, then handshake: publish ``probe`` frames until the mix carries them."""
        await self.rpc(rpc.AddClient(session_id=self.session_id, client_id=client_id,
                                     edge_audio=edge.endpoint))
        stop = asyncio.Event()

        async def probe_until_heard() -> None:
            while not stop.is_set():
                edge.send(self.session_id, client_id, level(probe))
                await asyncio.sleep(FRAME_S)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(probe_until_heard())
            try:
                await self.mix.wait_for(lambda f: probe in values(f.pcm), f"carrying {probe}")
            finally:
                stop.set()
        await self.mix.wait_for(lambda f: f.pcm == SILENCE, "of silence after probing",
                                after=len(self.mix.frames))


@asynccontextmanager
async def running_rig(tmp_path: Any, skip_silence: bool) -> AsyncIterator[Rig]:
    async with Stack(data_dir=tmp_path) as stack:
        metrics_port = stack.free_port()
        mixer = await stack.start("mixer", env={
            "VOXRELAY_METRICS_PORT": str(metrics_port),
            "VOXRELAY_BUS_SKIP_SILENCE": "1" if skip_silence else "0"})
        session_id = ids.new_id()
        assert isinstance(await stack.rpc(mixer).call(rpc.StartSession(session_id=session_id)),
                          rpc.Ok)
        rig = Rig(stack, mixer, session_id, MixReader(stack.ctx, mixer, session_id),
                  f"http://127.0.0.1:{metrics_port}/metrics")
        try:
            yield rig
        finally:
            rig.mix.close()
            for edge in rig.edges:
                edge.close()
            assert stop_process(mixer.proc), "the mixer did not exit cleanly on SIGTERM"


@pytest.fixture
async def rig(tmp_path: Any) -> AsyncIterator[Rig]:
    """A mixer that sends every tick's frame (``VOXRELAY_BUS_SKIP_SILENCE=0``): what it
    mixes, and when, is visible frame by frame, silence included."""
    async with running_rig(tmp_path, skip_silence=False) as rig:
        yield rig


async def test_ticks_that_mix_no_client_frame_stay_off_the_bus(tmp_path: Any):
    """The default: the mix carries what the clients' edges sent, their quiet tails
    included, at their pace; the ticks between their turns send nothing, and the next
    frame says how many ticks that was."""
    async with running_rig(tmp_path, skip_silence=True) as rig:
        edge, client = rig.edge(), ids.new_id()
        await rig.rpc(rpc.AddClient(session_id=rig.session_id, client_id=client,
                                    edge_audio=edge.endpoint))
        await asyncio.sleep(0.3)  # ticks of a session with a client and nothing to mix
        assert rig.mix.frames == [], "a session's silence before any sound is never sent"

        async def heard(turn: list[bytes], value: int) -> list[int]:
            for _ in range(int(WAIT_S / FRAME_S)):  # until the mixer follows this client
                stamps = await edge.play(rig.session_id, client, turn)
                if any(f.header.capture_ns in stamps for f in rig.mix.frames):
                    return stamps
                await asyncio.sleep(0.2)
            raise AssertionError(f"the mix never carried the frames of {value}")

        first = await heard([level(700)] * 5 + [SILENCE] * 3, 700)
        await asyncio.sleep(0.4)  # 20 ticks with nothing to mix
        shown = len(rig.mix.frames)
        assert all(f.header.capture_ns in first for f in rig.mix.frames[-8:])
        second = await edge.play(rig.session_id, client, [level(300)] * 3)
        await rig.mix.wait_for(lambda f: f.header.capture_ns == second[-1], "of 300",
                               after=shown)

        sent = set(first) | set(second)
        assert all(f.header.capture_ns in sent for f in rig.mix.frames), "no tick's silence"
        tail = [f for f in rig.mix.frames if f.header.capture_ns in first[-3:]]
        assert [f.pcm for f in tail] == [SILENCE] * 3, "the client's quiet tail goes on"
        resumed = rig.mix.frames[shown]
        assert values(resumed.pcm) == {300}
        previous = rig.mix.frames[shown - 1].header.seq
        assert resumed.header.silent_before >= 15, "the pause's ticks are counted"
        assert resumed.header.seq - resumed.header.silent_before == previous + 1


async def test_speech_is_mixed_in_real_time_and_keeps_its_capture_time(rig: Rig):
    await rig.mix.wait_count(10)
    assert all(f.pcm == SILENCE for f in rig.mix.frames), "a session starts silent"
    edge, client = rig.edge(), ids.new_id()
    await rig.add_speaker(edge, client, probe=3)

    speech = speak("testing the mixer one two three").ljust(50 * audio.FRAME_BYTES, b"\0")
    frames = [speech[n * audio.FRAME_BYTES:(n + 1) * audio.FRAME_BYTES] for n in range(50)]
    start = len(rig.mix.frames)
    stamps = await edge.play(rig.session_id, client, frames)
    sent = dict(zip(stamps, frames, strict=True))
    last = await rig.mix.wait_for(lambda f: f.header.capture_ns == stamps[-1],
                                  "with the last speech frame", after=start)

    mixed = rig.mix.frames[start:rig.mix.frames.index(last) + 1]
    speech_frames = [f for f in mixed if f.header.capture_ns in sent]
    assert len(speech_frames) >= 45, f"only {len(speech_frames)} of 50 speech frames mixed"
    assert all(f.header.capture_ns in sent for f in mixed if f.pcm != SILENCE)
    for frame in speech_frames:  # one speaker: its own audio, at unity gain
        original = sent[frame.header.capture_ns]
        assert abs(rms_dbfs(frame.pcm) - rms_dbfs(original)) < 1.0
    assert rms_dbfs(b"".join(f.pcm for f in speech_frames)) > -30
    seqs = [f.header.seq for f in mixed]
    assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False))

    # The client stops sending: the mixer keeps its 20 ms clock (silence stamped by it).
    after = len(rig.mix.frames)
    first = await rig.mix.wait_for(lambda f: f.pcm == SILENCE, "of silence", after=after)
    window_end = first.header.capture_ns + 1_000_000_000
    await rig.mix.wait_for(lambda f: f.header.capture_ns >= window_end, "after the window",
                           after=after)
    in_window = [f for f in rig.mix.frames[after:]
                 if first.header.capture_ns <= f.header.capture_ns < window_end]
    assert all(f.pcm == SILENCE for f in in_window)
    assert 45 <= len(in_window) <= 55, f"{len(in_window)} frames in 1 s"


async def test_two_clients_are_summed_until_one_is_removed(rig: Rig):
    edge_a, edge_b = rig.edge(), rig.edge()
    a, b, listener = ids.new_id(), ids.new_id(), ids.new_id()
    await rig.add_speaker(edge_a, a, probe=5)
    await rig.add_speaker(edge_b, b, probe=7)
    await rig.rpc(rpc.AddClient(session_id=rig.session_id, client_id=listener, role="listener",
                                edge_audio=edge_a.endpoint))
    stop = asyncio.Event()

    async def talk() -> None:  # a at 1000, b at 200, the listener at 30: all the time
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while not stop.is_set():
            edge_a.send(rig.session_id, a, level(1000))
            edge_b.send(rig.session_id, b, level(200))
            edge_a.send(rig.session_id, listener, level(30))
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(talk())
        try:
            start = len(rig.mix.frames)
            both = await rig.mix.wait_for(lambda f: values(f.pcm) == {1200}, "of a + b",
                                          after=start)
            summed_from = rig.mix.frames.index(both)
            await rig.mix.wait_count(summed_from + 25)
            await rig.rpc(rpc.RemoveClient(session_id=rig.session_id, client_id=b))
            await rig.rpc(rpc.RemoveClient(session_id=rig.session_id, client_id=b))  # idempotent
            removed_at = len(rig.mix.frames)
            only_a = await rig.mix.wait_for(lambda f: values(f.pcm) == {1000}, "of a alone",
                                            after=removed_at)
            a_from = rig.mix.frames.index(only_a)
            await rig.mix.wait_count(a_from + 25)
        finally:
            stop.set()

    seen = [values(f.pcm) for f in rig.mix.frames[start:]]
    # Only a, b and their sum (a client may miss a tick): the listener is never mixed.
    assert all(v in ({0}, {1000}, {200}, {1200}) for v in seen), set(map(frozenset, seen))
    summed = [values(f.pcm) for f in rig.mix.frames[summed_from:summed_from + 25]]
    assert summed.count({1200}) >= 20
    after_removal = [values(f.pcm) for f in rig.mix.frames[a_from:a_from + 25]]
    assert all(200 not in v and 1200 not in v for v in after_removal)
    assert after_removal.count({1000}) >= 20


async def test_garbage_on_aud_in_is_dropped_and_the_mixer_keeps_mixing(rig: Rig):
    edge, client = rig.edge(), ids.new_id()
    await rig.add_speaker(edge, client, probe=9)
    topic = topics.aud_in(rig.session_id, client)
    good_header = audio.pack(topic, 0, time.time_ns(), level(1))[1]
    garbage = [
        [topic],
        [topic, b"\xc1not msgpack", level(1)],
        [topic, good_header, level(1)[:100]],  # header says 480 samples
        audio.pack(topic, 1, time.time_ns(), level(1)[:480]),  # a 10 ms frame
        [topic + b"ff", good_header, level(1)],  # a bad client id that prefix-matches
        [topic, good_header.replace(b"\x01", b"\x02", 1), level(1)],  # version 2
    ]
    for _ in range(20):  # paced like audio, so no high-water mark drops any of it
        for parts in garbage:
            edge.sock.send_multipart(parts)
        await asyncio.sleep(FRAME_S)
    assert isinstance(await rig.rpc(rpc.Ping()), rpc.Ok)
    start = len(rig.mix.frames)
    await edge.play(rig.session_id, client, [level(11)] * 5)
    await rig.mix.wait_for(lambda f: values(f.pcm) == {11}, "carrying 11 after garbage",
                           after=start)
    async with aiohttp.ClientSession() as http, http.get(rig.metrics_url) as response:
        text = await response.text()
    decode = next(line for line in text.splitlines()
                  if line.startswith('voxrelay_mixer_frames_dropped_total{reason="decode"}'))
    assert float(decode.split()[-1]) >= 100  # 6 kinds x 20, a few perhaps lost on the way


async def test_rpc_answers_and_load_follow_the_sessions(rig: Rig):
    other = ids.new_id()
    call = rig.rpc
    with pytest.raises(rpc.RpcError) as info:
        await call(rpc.AddClient(session_id=other, client_id=ids.new_id(),
                                 edge_audio="tcp://127.0.0.1:1"))
    assert info.value.code == "not_found"
    with pytest.raises(rpc.RpcError) as info:
        await call(rpc.RemoveClient(session_id=other, client_id=ids.new_id()))
    assert info.value.code == "not_found"
    for bad in (rpc.GetTranscript(session_id=rig.session_id),
                rpc.StartSession(session_id="not-an-id"),
                rpc.AddClient(session_id=rig.session_id, client_id=ids.new_id(), role="judge",
                              edge_audio="tcp://127.0.0.1:1"),
                rpc.AddClient(session_id=rig.session_id, client_id=ids.new_id())):
        with pytest.raises(rpc.RpcError) as info:
            await call(bad)
        assert info.value.code == "bad_request", bad
    assert isinstance(await call(rpc.StopSession(session_id=other)), rpc.Ok)

    await call(rpc.StartSession(session_id=other))
    await call(rpc.StartSession(session_id=other))  # a retried start is harmless
    await wait_load(rig, 2)
    await call(rpc.StopSession(session_id=other))
    await call(rpc.StopSession(session_id=rig.session_id))
    await wait_load(rig, 0)
    stopped_at = len(rig.mix.frames)
    assert isinstance(await call(rpc.Ping()), rpc.Ok)
    # A stopped session publishes nothing more (a frame already in flight may still land).
    await asyncio.sleep(0.2)
    assert len(rig.mix.frames) <= stopped_at + 1


async def wait_load(rig: Rig, load: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while rig.mixer.beat is None or rig.mixer.beat.load != load:
            await asyncio.sleep(0.05)


async def test_voice_activity_is_published_when_a_client_starts_and_stops_speaking(rig: Rig):
    edge, client = rig.edge(), ids.new_id()
    await rig.add_speaker(edge, client, probe=3)  # a probe far below any voice
    speech = speak("testing the mixer one two three").ljust(60 * audio.FRAME_BYTES, b"\0")
    frames = [speech[n * audio.FRAME_BYTES:(n + 1) * audio.FRAME_BYTES] for n in range(60)]
    stamps = await edge.play(rig.session_id, client, frames + [SILENCE] * 30)
    voiced = [s for s, f in zip(stamps, frames, strict=False) if rms_dbfs(f) > -45]
    stopped = await rig.stack.wait_event(events.VoiceActivity, WAIT_S, client_id=client,
                                         active=False)
    changes = [e for e in rig.stack.events
               if isinstance(e, events.VoiceActivity) and e.client_id == client]
    assert [e.active for e in changes] == [True, False], "transitions only"
    started = changes[0]
    assert (started.session_id, started.producer) == (rig.session_id, rig.mixer.instance)
    # Capture times: where the first voiced frame began, and where the last one ended.
    assert started.at == pytest.approx(voiced[0] / 1e9, abs=1e-6)
    assert stopped.at == pytest.approx((voiced[-1] + FRAME_NS) / 1e9, abs=1e-6)
    assert stopped.ts - stopped.at < 1.0


class LinkStandIn:
    """Plays the session's link: the model's voice on ``aud/model`` from a bound AUDIO_PUB."""

    def __init__(self, ctx: zmq.Context[Any], session_id: str) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_PUB)
        self.endpoint = bind(self.sock, "tcp://127.0.0.1:*")
        self.topic = topics.aud_model(session_id)
        self.seq = 0

    def send(self, pcm: bytes) -> None:
        self.sock.send_multipart(audio.pack(self.topic, self.seq, time.time_ns(), pcm))
        self.seq += 1

    def close(self) -> None:
        self.sock.close(linger=0)


def scaled(pcm: bytes, db: float) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) * 10 ** (db / 20)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def framed(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % audio.FRAME_BYTES)
    return [pcm[i:i + audio.FRAME_BYTES] for i in range(0, len(pcm), audio.FRAME_BYTES)]


async def play_together(link: LinkStandIn, edge: Edge, session_id: str, client: str,
                        model: list[bytes], mic: list[bytes]) -> list[int]:
    """The model's frames and the client's, side by side at real-time pace: mic stamps."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    stamps = []
    for n in range(max(len(model), len(mic))):
        await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))
        link.send(model[n] if n < len(model) else SILENCE)
        stamps.append(edge.send(session_id, client, mic[n] if n < len(mic) else SILENCE))
    return stamps


async def test_a_microphone_echoing_the_model_is_ducked_and_real_speech_is_not(rig: Rig):
    session_id = ids.new_id()
    link = LinkStandIn(rig.stack.ctx, session_id)
    mix = MixReader(rig.stack.ctx, rig.mixer, session_id)
    edge, phone = rig.edge(), ids.new_id()
    try:
        await rig.rpc(rpc.StartSession(session_id=session_id, link_audio=link.endpoint))
        await rig.rpc(rpc.AddClient(session_id=session_id, client_id=phone,
                                    edge_audio=edge.endpoint))
        voice = framed(speak("hello everyone this is the assistant speaking", "en-us+f3"))
        delay = 10  # frames: 200 ms from the model's voice to the phone's microphone
        echo = [SILENCE] * delay + [scaled(f, -12) for f in voice]
        # Handshake: both streams flow until the mixer has ducked an echo frame.
        async with asyncio.timeout(WAIT_S):
            while True:
                played = await play_together(link, edge, session_id, phone, voice, echo)
                await mix.wait_for(lambda f, t=played[-1]: f.header.capture_ns == t,
                                   "the handshake's last frame")
                if any(f.header.capture_ns in set(played) and rms_dbfs(f.pcm) < -60
                       for f in mix.frames):
                    break
        start = len(mix.frames)
        stamps = await play_together(link, edge, session_id, phone, voice, echo)
        # The echo again, then a person speaking over it (louder: nearer), as the model talks on.
        words = framed(speak("stop I have a question"))
        over = [_sum(e, w) for e, w in zip(echo[:len(words) + delay], [SILENCE] * delay + words,
                                            strict=True)]
        over_stamps = await play_together(link, edge, session_id, phone, voice, over)
        await mix.wait_for(lambda f: f.header.capture_ns == over_stamps[-1], "the last frame",
                           after=start)
    finally:
        link.close()
    mixed = {f.header.capture_ns: f.pcm for f in mix.frames[start:]}
    sent = dict(zip(stamps, echo, strict=True))
    loud = [t for t, pcm in sent.items() if rms_dbfs(pcm) > -40 and t in mixed]
    ducked = [t for t in loud if rms_dbfs(mixed[t]) < rms_dbfs(sent[t]) - 20]
    print(f"{len(ducked)} of {len(loud)} loud echo frames ducked")
    assert len(loud) > 50 and len(ducked) >= 0.9 * len(loud)
    spoken = [t for t, w in zip(over_stamps[delay:], words, strict=False)
              if rms_dbfs(w) > -35 and t in mixed]
    through = [t for t in spoken if rms_dbfs(mixed[t]) > -40]
    print(f"{len(through)} of {len(spoken)} frames of speech over the echo mixed")
    assert len(through) >= 0.8 * len(spoken)


def _sum(a: bytes, b: bytes) -> bytes:
    total = np.frombuffer(a, dtype="<i2").astype(np.int32) + np.frombuffer(b, dtype="<i2")
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()
