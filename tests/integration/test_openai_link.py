"""openai_link as a real process on a real bus, talking WebRTC to a real simulator process.

The test plays the session's mixer with a real ``AUDIO_PUB`` socket (``aud/mix`` frames
every 20 ms at real-time pace) and listens to ``aud/model`` with a real ``AUDIO_SUB``
on the endpoint the link announces in its heartbeat. The simulator stands in for the
OpenAI Realtime API (it is the only fake: the API is outside the machine).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from proto import audio, events, ids, rpc, topics
from services.runtime.bus import EventPublisher
from services.runtime.media import audible
from services.runtime.sockets import Role, bind, make_socket
from services.runtime.zmq_loop import SocketReader, send_nowait
from tests.support.frames import assert_one_stream, played
from tests.support.ports import free_tcp_endpoint
from tests.support.sim_process import SimProcess
from tests.support.speech import BYTES_PER_MS, rms_dbfs, silence, speak
from tests.support.stack import Running, Stack

SECRET = "sk-test-SECRETVALUE"
PHRASE = "what is the weather like today"
"A turn without commas: server VAD (silence 200 ms) hears it as one utterance."
CONNECT_TIMEOUT_S = 8.0
RPC_TIMEOUT_S = 15.0
"AddClient waits for the Realtime connection (up to the link's 8 s connect timeout)."
TURN_TIMEOUT_S = 20.0
RECONNECT_TIMEOUT_S = 5.0
"A dropped call is reopened by the link well within this (its first retry is within 0.25 s)."
AUDIBLE_DBFS = -40.0
PAUSE_SETTLES_S = 0.3
"A stream quiet this long past a time has sent everything it had before it."
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


class MixerStandIn:
    """The session's mixer, played by the test: one 20 ms ``aud/mix`` frame every 20 ms."""

    def __init__(self, ctx: zmq.Context[Any], session_id: str) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_PUB)
        self.endpoint = bind(self.sock, "tcp://127.0.0.1:*")
        self.topic = topics.aud_mix(session_id)
        self._pending = bytearray()

    def play(self, pcm: bytes) -> None:
        self._pending += pcm

    async def run(self) -> None:
        start, seq = time.monotonic(), 0
        while True:
            chunk = bytes(self._pending[: audio.FRAME_BYTES])
            del self._pending[: audio.FRAME_BYTES]
            chunk += bytes(audio.FRAME_BYTES - len(chunk))
            seq += 1
            send_nowait(self.sock, audio.pack(self.topic, seq, time.time_ns(), chunk))
            await asyncio.sleep(max(0.0, start + seq * audio.FRAME_MS / 1000 - time.monotonic()))

    def close(self) -> None:
        self.sock.close(linger=0)


class ModelListener:
    """What an edge hears: every ``aud/model/<session>`` frame, checked on receipt."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, session_id: str) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_SUB)
        self.sock.connect(endpoint)
        self.sock.subscribe(topics.aud_model(session_id))
        self.frames: list[tuple[audio.AudioHeader, bytes]] = []
        self.malformed = 0
        self._reader = SocketReader(self.sock, self._on_message, "test-aud-model")
        self._reader.start()

    def _on_message(self, parts: list[bytes]) -> None:
        try:
            _, header, pcm = audio.unpack(parts)
        except audio.FrameError:
            self.malformed += 1
            return
        self.frames.append((header, pcm))

    def pcm_between(self, start: float, end: float) -> bytes:
        """The audio the link sent between two wall-clock times (capture_ns), with the
        silence it kept off the bus."""
        return played([(header, pcm) for header, pcm in self.frames
                       if start <= header.capture_ns / 1e9 <= end])

    async def wait_until(self, wall_time: float, timeout: float = 10.0) -> None:
        """Until the stream has reached ``wall_time``: a frame captured then or later, or
        the clock past it while the stream pauses (its last frame quiet: silence kept off
        the bus)."""
        def reached() -> bool:
            if not self.frames:
                return False
            header, pcm = self.frames[-1]
            return header.capture_ns / 1e9 >= wall_time or (
                time.time() >= wall_time + PAUSE_SETTLES_S and not audible(pcm))

        async with asyncio.timeout(timeout):
            while not reached():
                await asyncio.sleep(0.02)

    def close(self) -> None:
        self._reader.stop()
        self.sock.close(linger=0)


@dataclass
class LinkSessionUnderTest:
    stack: Stack
    link: Any
    "The link's RPC client."
    mixer: MixerStandIn
    sid: str
    metrics_port: int


@asynccontextmanager
async def session_on_link(stack: Stack, link_env: dict[str, str] | None = None
                          ) -> AsyncIterator[LinkSessionUnderTest]:
    """A link process (its /metrics on a free port) holding one started session, whose
    mixer the test plays; the mixer stops and closes on the way out."""
    metrics_port = stack.free_port()
    link = await stack.start("openai_link", env={"VOXRELAY_METRICS_PORT": str(metrics_port),
                                                 **(link_env or {})})
    client = stack.rpc(link)
    sid = ids.new_id()
    mixer = MixerStandIn(stack.ctx, sid)
    playing = asyncio.create_task(mixer.run())
    try:
        await client.call(rpc.StartSession(session_id=sid, instructions="Be brief.",
                                           voice="marin", mixer_audio=mixer.endpoint))
        yield LinkSessionUnderTest(stack, client, mixer, sid, metrics_port)
    finally:
        playing.cancel()
        await asyncio.gather(playing, return_exceptions=True)
        mixer.close()


async def sim_calls(sim: SimProcess) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}/_sim/calls",
                            timeout=aiohttp.ClientTimeout(total=5)) as r:
            return (await r.json())["calls"]


async def poll(condition: Callable[[], Any], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@pytest.fixture
async def link_stack(tmp_path, sim: SimProcess) -> AsyncIterator[tuple[Stack, Running]]:
    env = {"VOXRELAY_OPENAI_BASE_URL": sim.api_base, "OPENAI_API_KEY": SECRET}
    async with Stack(data_dir=tmp_path, env=env) as stack:
        yield stack, await stack.start("openai_link")


async def test_a_spoken_turn_is_answered_in_voice_and_in_events(link_stack, sim):
    stack, link = link_stack
    assert link.beat is not None and link.beat.audio.startswith("tcp://127.0.0.1:")
    client = stack.rpc(link)
    sid = ids.new_id()
    mixer = MixerStandIn(stack.ctx, sid)
    listener = ModelListener(stack.ctx, link.beat.audio, sid)
    playing = asyncio.create_task(mixer.run())
    publisher: EventPublisher | None = None
    try:
        started = await client.call(rpc.StartSession(
            session_id=sid, instructions="Be brief.", voice="marin", mixer_audio=mixer.endpoint))
        assert isinstance(started, rpc.Ok)
        await poll(lambda: _load_is(stack, link, 1), 5, "the heartbeat counts the session")
        assert await sim_calls(sim) == []  # no client yet: no Realtime connection

        # The first client opens the Realtime connection; the second finds it open.
        ada, bo = ids.new_id(), ids.new_id()
        began = time.monotonic()
        joined = await client.call(rpc.AddClient(session_id=sid, client_id=ada, name="Ada"),
                                   timeout=RPC_TIMEOUT_S)
        assert isinstance(joined, rpc.Ok)
        print(f"AddClient answered Ok after {time.monotonic() - began:.2f} s")
        await client.call(rpc.AddClient(session_id=sid, client_id=bo, name="Bo"),
                          timeout=RPC_TIMEOUT_S)
        calls = await sim_calls(sim)
        assert [(c["transport"], c["connection_state"]) for c in calls] == [
            ("webrtc", "connected")]

        # AddClient's Ok came long after StartSession subscribed to aud/mix: the link hears
        # everything played from now on. Both clients speak it, as the mixer reports.
        speech = speak(PHRASE)
        publisher = await live_publisher(stack, sid)
        spoken_at = time.time() + 0.5
        mixer.play(silence(500) + speech + silence(1500))
        for who in (ada, bo):
            publisher.publish(events.VoiceActivity(session_id=sid, client_id=who, active=True,
                                                   at=spoken_at))
        ai_start, ai_end = await check_turns(stack, sid, publisher, (ada, bo),
                                             spoken_at + len(speech) / BYTES_PER_MS / 1000)
        await check_model_audio(listener, ai_start, ai_end)
        check_records(stack, sid)

        stopped = await client.call(rpc.StopSession(session_id=sid, reason="test over"))
        assert isinstance(stopped, rpc.Ok)
        await poll(lambda: _no_calls(sim), 10, "the simulator's call ended")
        assert isinstance(await client.call(rpc.StopSession(session_id=sid)), rpc.Ok)
        await poll(lambda: _load_is(stack, link, 0), 5, "the heartbeat forgets the session")
        for event in stack.events:
            assert SECRET not in events.to_json(event), event
    finally:
        playing.cancel()
        await asyncio.gather(playing, return_exceptions=True)
        if publisher is not None:
            publisher.close()
        listener.close()
        mixer.close()


async def live_publisher(stack: Stack, sid: str) -> EventPublisher:
    """An event publisher whose messages the bus is known to deliver (a handshake)."""
    publisher = stack.publisher("mixer-test")
    nobody = ids.new_id()  # activity of a client the link does not know: ignored
    async with asyncio.timeout(10):
        while not any(isinstance(e, events.VoiceActivity) and e.producer == "mixer-test"
                      for e in stack.events):
            publisher.publish(events.VoiceActivity(session_id=sid, client_id=nobody,
                                                   active=False))
            await asyncio.sleep(0.05)
    return publisher


async def check_turns(stack: Stack, sid: str, publisher: EventPublisher,
                      speakers: tuple[str, ...], spoken_until: float,
                      ) -> tuple[events.TurnStart, events.TurnEnd]:
    """The user's turn, its transcript, the AI's turn and transcript, in order on the bus."""
    user_start = await stack.wait_event(events.TurnStart, TURN_TIMEOUT_S, session_id=sid,
                                        role="user")
    for who in speakers:  # the mixer hears them stop
        publisher.publish(events.VoiceActivity(session_id=sid, client_id=who, active=False,
                                               at=spoken_until))
    user_done = await stack.wait_event(events.TranscriptDone, TURN_TIMEOUT_S, session_id=sid,
                                       role="user")
    ai_start = await stack.wait_event(events.TurnStart, TURN_TIMEOUT_S, session_id=sid,
                                      role="assistant")
    ai_done = await stack.wait_event(events.TranscriptDone, TURN_TIMEOUT_S, session_id=sid,
                                     role="assistant")
    ai_end = await stack.wait_event(events.TurnEnd, TURN_TIMEOUT_S, session_id=sid,
                                    role="assistant")
    assert user_start.seq < user_done.seq < ai_start.seq < ai_done.seq < ai_end.seq
    assert len({e.producer for e in (user_start, ai_start, ai_end)}) == 1
    assert user_start.speaker == "Ada+Bo"  # both were heard as the turn began
    assert user_done.speaker == "Ada+Bo" and user_done.text
    assert user_done.started_at < user_done.ended_at <= user_done.ts
    assert ai_done.text and ai_done.speaker == "assistant"
    assert ai_end.status == "completed" and ai_end.turn_id == ai_start.turn_id
    # output_audio_buffer.stopped, once the reply has played out:
    await poll(lambda: _listening_after(stack, ai_end), TURN_TIMEOUT_S, "listening again")
    print("bus:", " ".join(events.tag(e) + (f"({e.role})" if hasattr(e, "role") else "")
                           for e in stack.events if e.session_id == sid
                           and not isinstance(e, events.RealtimeEvent)))
    states = [e.state for e in stack.events
              if isinstance(e, events.AiState) and e.session_id == sid]
    assert states == ["listening", "thinking", "speaking", "listening"]
    return ai_start, ai_end


async def check_model_audio(listener: ModelListener, ai_start: events.TurnStart,
                            ai_end: events.TurnEnd) -> None:
    """The model's voice came out on aud/model: valid 20 ms frames, in order, audible."""
    await listener.wait_until(ai_end.ts + 0.2)
    assert listener.malformed == 0 and len(listener.frames) > 50
    assert_one_stream(listener.frames)
    assert {len(pcm) for _, pcm in listener.frames} == {audio.FRAME_BYTES}
    reply = listener.pcm_between(ai_start.ts, ai_end.ts)
    print(f"reply: {len(reply) // BYTES_PER_MS} ms at {rms_dbfs(reply):.1f} dBFS; "
          f"{len(listener.frames)} frames on aud/model")
    assert len(reply) // BYTES_PER_MS > 1000
    assert rms_dbfs(reply) > AUDIBLE_DBFS


def check_records(stack: Stack, sid: str) -> None:
    """Every Realtime event was recorded (audio deltas excepted), with the call's settings."""
    records = [e for e in stack.events
               if isinstance(e, events.RealtimeEvent) and e.session_id == sid]
    kinds = {e.event_type for e in records}
    assert {"session.created", "session.updated", "input_audio_buffer.committed",
            "output_audio_buffer.started", "response.done"} <= kinds
    assert "response.output_audio.delta" not in kinds
    # The call was made with the session's voice and instructions, transcription on.
    for record in records:
        if record.event_type in ("session.created", "session.updated"):
            session = json.loads(record.data)["session"]
            assert session["type"] == "realtime" and session["model"] == "gpt-realtime"
            assert session["instructions"] == "Be brief."
            assert session["audio"]["output"]["voice"] == "marin"
            assert session["audio"]["input"]["transcription"]["model"] == TRANSCRIPTION_MODEL


async def _load_is(stack: Stack, link: Running, load: int) -> bool:
    beat = stack.registry.get(link.instance)
    return beat is not None and beat.load == load


async def _listening_after(stack: Stack, event: events.Event) -> bool:
    return any(isinstance(e, events.AiState) and e.state == "listening" and e.seq > event.seq
               and e.producer == event.producer for e in stack.events)


async def _no_calls(sim: SimProcess) -> bool:
    return await sim_calls(sim) == []


async def test_a_dropped_call_with_nobody_present_waits_for_the_next_join(link_stack, sim):
    stack, link = link_stack
    client = stack.rpc(link)
    sid = ids.new_id()
    ada = ids.new_id()
    await client.call(rpc.StartSession(session_id=sid, mixer_audio=free_tcp_endpoint()))
    await client.call(rpc.AddClient(session_id=sid, client_id=ada, name="Ada"),
                      timeout=RPC_TIMEOUT_S)
    [first] = [c["call_id"] for c in await sim_calls(sim)]
    # Ada's connection goes (her edge says so); the link hears it as the test does.
    publisher = await live_publisher(stack, sid)
    try:
        publisher.publish(events.ClientLeft(session_id=sid, client_id=ada, reason="closed"))
        await stack.wait_event(events.ClientLeft, 5, session_id=sid, client_id=ada)
    finally:
        publisher.close()
    await drop(sim, first)
    error = await stack.wait_event(events.ErrorEvent, TURN_TIMEOUT_S, session_id=sid,
                                   code="realtime_disconnected")
    assert error.source == "openai_link"
    # Nobody to talk to: no new call (a reconnect would have begun within 0.25 s).
    await asyncio.sleep(1.5)
    assert await sim_calls(sim) == []
    # The next client to join opens a new call under the same session.
    await client.call(rpc.AddClient(session_id=sid, client_id=ids.new_id(), name="Bo"),
                      timeout=RPC_TIMEOUT_S)
    calls = [c["call_id"] for c in await sim_calls(sim)]
    assert len(calls) == 1 and calls[0] != first
    # Shutting the link down hangs its calls up.
    began = time.monotonic()
    link.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(link.proc.wait, 10) == 0
    print(f"link exited {time.monotonic() - began:.2f} s after SIGTERM")
    await poll(lambda: _no_calls(sim), 10, "the simulator's call ended")


async def drop(sim: SimProcess, call_id: str) -> None:
    """The simulator ends the call abruptly, without a hangup (a network failure)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}/_sim/drop", json={"call_id": call_id},
                             timeout=aiohttp.ClientTimeout(total=5)) as r:
            assert (await r.json())["dropped"] == [call_id]


@pytest.mark.fault
@pytest.mark.timeout(60)
async def test_a_dropped_call_reconnects_by_itself_and_the_model_keeps_the_conversation(
        tmp_path, sim):
    env = {"VOXRELAY_OPENAI_BASE_URL": sim.api_base, "OPENAI_API_KEY": SECRET}
    async with Stack(data_dir=tmp_path, env=env) as stack, session_on_link(stack) as under:
        sid, mixer = under.sid, under.mixer
        await under.link.call(rpc.AddClient(session_id=sid, client_id=ids.new_id(), name="Ada"),
                              timeout=RPC_TIMEOUT_S)
        [first] = [c["call_id"] for c in await sim_calls(sim)]

        # A first exchange, on the first call.
        user1, ai1, end1 = await spoken_turn(stack, mixer, sid, after=0)
        assert (user1.speaker, ai1.speaker) == ("Ada", "assistant")

        # The call drops. No client joins again: the link reopens it by itself.
        await drop(sim, first)
        dropped_at = time.monotonic()
        gone = await stack.wait_event(events.ErrorEvent, TURN_TIMEOUT_S, session_id=sid,
                                      code="realtime_disconnected")
        back = await wait_after(stack, gone.seq, RECONNECT_TIMEOUT_S, events.AiState,
                                session_id=sid, state="listening")
        took = time.monotonic() - dropped_at
        print(f"reconnected {took:.2f} s after the drop")
        assert took < RECONNECT_TIMEOUT_S
        states = [e.state for e in stack.events if isinstance(e, events.AiState)
                  and e.session_id == sid and gone.seq < e.seq <= back.seq]
        assert states == ["idle", "listening"]
        [call] = await sim_calls(sim)
        assert call["call_id"] != first and call["connection_state"] == "connected"
        # ... and told the new call the conversation so far, before using it.
        assert [(i["role"], i["text"]) for i in call["items"]] == [
            ("user", user1.text), ("assistant", ai1.text)]

        # The conversation carries on: a second spoken turn is answered on the new call.
        user2, ai2, end2 = await spoken_turn(stack, mixer, sid, after=back.seq)
        assert end2.status == "completed" and end2.turn_id != end1.turn_id
        [call] = await sim_calls(sim)
        assert [(i["role"], i["text"]) for i in call["items"]] == [
            ("user", user1.text), ("assistant", ai1.text),
            ("user", user2.text), ("assistant", ai2.text)]
        unavailable = [e for e in stack.events if isinstance(e, events.ErrorEvent)
                       and e.session_id == sid and e.code == "realtime_unavailable"]
        assert unavailable == []
        reconnects = await metric_values(under.metrics_port,
                                         "voxrelay_link_realtime_reconnects_total")
        assert reconnects == {"ok": 1.0, "failed": 0.0, "gave_up": 0.0}


async def spoken_turn(stack: Stack, mixer: MixerStandIn, sid: str, after: int,
                      ) -> tuple[events.TranscriptDone, events.TranscriptDone, events.TurnEnd]:
    """Speak a phrase into the mix; the user's transcript, the AI's, and its turn.end."""
    mixer.play(silence(300) + speak(PHRASE) + silence(1500))
    user = await wait_after(stack, after, TURN_TIMEOUT_S, events.TranscriptDone,
                            session_id=sid, role="user")
    ai = await wait_after(stack, after, TURN_TIMEOUT_S, events.TranscriptDone,
                          session_id=sid, role="assistant")
    end = await wait_after(stack, after, TURN_TIMEOUT_S, events.TurnEnd, session_id=sid,
                           role="assistant")
    assert user.text and ai.text and end.status == "completed"
    return user, ai, end


async def wait_after(stack: Stack, seq: int, timeout: float, kind: type, **match: Any) -> Any:
    """The first event of ``kind`` matching ``match`` published after ``seq`` (the link's)."""
    async with asyncio.timeout(timeout):
        while True:
            for event in stack.events:
                if isinstance(event, kind) and event.seq > seq and all(
                        getattr(event, k) == v for k, v in match.items()):
                    return event
            await asyncio.sleep(0.02)


async def metric_values(port: int, name: str) -> dict[str, float]:
    """A labelled counter's samples from a process's /metrics, by its one label's value."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics",
                            timeout=aiohttp.ClientTimeout(total=5)) as r:
            text = await r.text()
    return {next(iter(sample.labels.values())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name}


async def test_add_client_is_unavailable_when_the_api_is_unreachable(tmp_path, start_sim):
    stopped = start_sim()
    stopped.stop()  # the port is closed now: connections are refused
    env = {"VOXRELAY_OPENAI_BASE_URL": stopped.api_base}
    async with Stack(data_dir=tmp_path, env=env) as stack:
        link = await stack.start("openai_link")
        client = stack.rpc(link)
        sid = ids.new_id()
        await client.call(rpc.StartSession(session_id=sid, mixer_audio=free_tcp_endpoint()))
        began = time.monotonic()
        with pytest.raises(rpc.RpcError) as refused:
            await client.call(rpc.AddClient(session_id=sid, client_id=ids.new_id(), name="Ada"),
                              timeout=RPC_TIMEOUT_S)
        took = time.monotonic() - began
        assert refused.value.code == "unavailable"
        assert "cannot reach the Realtime API" in refused.value.message
        assert took < CONNECT_TIMEOUT_S + 2
        error = await stack.wait_event(events.ErrorEvent, session_id=sid,
                                       code="realtime_unavailable")
        assert error.source == "openai_link"
        # The link stays up and serves on.
        assert link.proc.poll() is None
        assert isinstance(await client.call(rpc.Ping()), rpc.Ok)
        assert isinstance(await client.call(rpc.StopSession(session_id=sid)), rpc.Ok)


async def test_a_refused_key_is_a_clear_unavailable_that_never_shows_the_key(
        tmp_path, start_sim):
    strict = start_sim("--api-key", "sk-the-only-key-it-takes")
    env = {"VOXRELAY_OPENAI_BASE_URL": strict.api_base, "OPENAI_API_KEY": SECRET}
    async with Stack(data_dir=tmp_path, env=env) as stack:
        link = await stack.start("openai_link")
        client = stack.rpc(link)
        sid = ids.new_id()
        await client.call(rpc.StartSession(session_id=sid, mixer_audio=free_tcp_endpoint()))
        with pytest.raises(rpc.RpcError) as refused:
            await client.call(rpc.AddClient(session_id=sid, client_id=ids.new_id()),
                              timeout=RPC_TIMEOUT_S)
        assert refused.value.code == "unavailable"
        assert "HTTP 401 invalid_api_key" in refused.value.message
        assert SECRET not in refused.value.message
        await stack.wait_event(events.ErrorEvent, session_id=sid, code="realtime_unavailable")
        for event in stack.events:
            assert SECRET not in events.to_json(event), event
        assert await sim_calls(strict) == []


async def test_add_client_gives_up_at_the_connect_timeout_when_the_api_never_answers(tmp_path):
    accepted = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the link gives up and closes the connection
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {"VOXRELAY_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "VOXRELAY_OPENAI_CONNECT_TIMEOUT_S": "2"}
    try:
        async with Stack(data_dir=tmp_path, env=env) as stack:
            link = await stack.start("openai_link")
            client = stack.rpc(link)
            sid = ids.new_id()
            await client.call(rpc.StartSession(session_id=sid, mixer_audio=free_tcp_endpoint()))
            began = time.monotonic()
            with pytest.raises(rpc.RpcError) as refused:
                await client.call(rpc.AddClient(session_id=sid, client_id=ids.new_id()),
                                  timeout=RPC_TIMEOUT_S)
            took = time.monotonic() - began
            assert accepted.is_set()
            assert refused.value.code == "unavailable"
            assert "within 2 s (stuck posting the offer)" in refused.value.message
            assert 2.0 <= took < 6.0
            assert isinstance(await client.call(rpc.Ping()), rpc.Ok)
            assert link.proc.poll() is None
    finally:
        server.close()
        await server.wait_closed()


async def test_requests_the_link_does_not_serve_are_bad_requests(tmp_path, sim):
    async with Stack(data_dir=tmp_path, env={"VOXRELAY_OPENAI_BASE_URL": sim.api_base}) as stack:
        link = await stack.start("openai_link")
        client = stack.rpc(link)
        sid = ids.new_id()
        for request, code in [
            (rpc.GetTranscript(session_id=sid), "bad_request"),
            (rpc.DirectCall(session_id=sid, client_id=ids.new_id(), sdp="v=0\r\n",
                            client_secret="ek_x"), "not_found"),
            (rpc.StartSession(session_id="not-an-id", mixer_audio=free_tcp_endpoint()),
             "bad_request"),
            (rpc.StartSession(session_id=sid), "bad_request"),
            (rpc.AddClient(session_id=sid, client_id=ids.new_id()), "not_found"),
        ]:
            with pytest.raises(rpc.RpcError) as refused:
                await client.call(request)
            assert refused.value.code == code, request
        assert isinstance(await client.call(rpc.StopSession(session_id=sid)), rpc.Ok)
        # a direct call's client leaving (none here): idempotent
        assert isinstance(await client.call(rpc.RemoveClient(session_id=sid,
                                                             client_id=ids.new_id())), rpc.Ok)


async def test_a_call_near_the_session_cap_is_replaced_at_a_quiet_moment_keeping_the_conversation(
        tmp_path, start_sim):
    """The simulator ends calls after 16 s (the API: 60 min); the link replaces a call
    6 s old at its next quiet moment — a turn is under way then, so it waits for it — with
    a new call that knows the conversation. Nothing is dropped: no realtime_disconnected,
    every turn answered, the old call hung up before the cap."""
    sim = start_sim("--response-latency-ms", "150", "--session-cap-s", "16")
    env = {"VOXRELAY_OPENAI_BASE_URL": sim.api_base, "OPENAI_API_KEY": SECRET,
           "VOXRELAY_OPENAI_ROLLOVER_AFTER_S": "6", "VOXRELAY_OPENAI_ROLLOVER_GRACE_S": "8"}
    async with Stack(data_dir=tmp_path, env=env) as stack, session_on_link(stack) as under:
        sid, mixer = under.sid, under.mixer
        await under.link.call(rpc.AddClient(session_id=sid, client_id=ids.new_id(), name="Ada"),
                              timeout=RPC_TIMEOUT_S)
        [first] = [c["call_id"] for c in await sim_calls(sim)]
        user1, ai1, _ = await spoken_turn(stack, mixer, sid, after=0)
        # A turn spans the moment the call comes due (6 s): the swap waits for it.
        await asyncio.sleep(max(0.0, 5.0 - (time.time() - user1.started_at)))
        user2, ai2, end2 = await spoken_turn(stack, mixer, sid, after=end_seq(stack, sid))

        async def replaced() -> bool:
            calls = await sim_calls(sim)
            return [c["call_id"] for c in calls] != [first] and len(calls) == 1
        await poll(replaced, 10.0, "the call to be replaced")
        [call] = await sim_calls(sim)
        assert [(i["role"], i["text"]) for i in call["items"]][:4] == [
            ("user", user1.text), ("assistant", ai1.text),
            ("user", user2.text), ("assistant", ai2.text)]
        _, _, end3 = await spoken_turn(stack, mixer, sid, after=end2.seq)
        assert end3.status == "completed"
        errors = [e.code for e in stack.events if isinstance(e, events.ErrorEvent)
                  and e.session_id == sid]
        assert errors == []
        rollovers = await metric_values(under.metrics_port,
                                        "voxrelay_link_realtime_rollovers_total")
        assert rollovers.get("quiet") == 1.0 and not rollovers.get("failed")


def end_seq(stack: Stack, sid: str) -> int:
    """The seq of the session's last event so far."""
    return max((e.seq for e in stack.events if getattr(e, "session_id", None) == sid),
               default=0)
