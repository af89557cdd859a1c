"""The recorder's audio taps with real ZeroMQ sockets: a recorded session is heard from
every publisher of its streams, an unrecorded one never, and an ended one leaves neither
subscription nor connection behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from prometheus_client import REGISTRY

from proto import audio, events, topics
from proto.heartbeat import Heartbeat
from proto.ids import new_id
from services.recorder.audio import AudioRecorder
from services.recorder.audio_config import RecordingConfig, RecordMode
from services.runtime.sockets import Role, bind, make_socket

WAIT_S = 10.0
PCM = bytes(range(256)) * (audio.FRAME_BYTES // 256) + bytes(audio.FRAME_BYTES % 256)


class Publisher:
    """An AUDIO_PUB bound on loopback, as an edge, mixer or link has."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.sock = make_socket(ctx, Role.AUDIO_PUB)
        self.endpoint = bind(self.sock, "tcp://127.0.0.1:*")
        self.seq = 0

    def send(self, *topic_list: bytes) -> None:
        self.seq += 1
        for topic in topic_list:
            self.sock.send_multipart(audio.pack(topic, self.seq, time.time_ns(), PCM))


def beat(service: str, instance: str, endpoint: str) -> Heartbeat:
    return Heartbeat(service=service, instance=instance, pid=1, audio=endpoint,
                     started_at=0.0, ts=0.0)


def streams_gauge() -> float:
    return REGISTRY.get_sample_value("voxrelay_recorder_audio_streams") or 0.0


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


@contextlib.asynccontextmanager
async def running(recorder: AudioRecorder) -> AsyncIterator[None]:
    task = asyncio.create_task(recorder.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Any, what: str, poke: Any = lambda: None) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while not condition():
                poke()
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT_S} s: {what}") from None


def index(folder: Path) -> dict[str, Any]:
    path = folder / "index.json"
    return json.loads(path.read_text()) if path.exists() else {"streams": []}


async def test_a_recorded_session_is_heard_everywhere_and_ends_without_leftovers(tmp_path, ctx):
    edge, mixer, link = Publisher(ctx), Publisher(ctx), Publisher(ctx)
    recorder = AudioRecorder(ctx, RecordingConfig(directory=tmp_path), "recorder-test")
    sid, unrecorded, client = new_id(), new_id(), new_id()
    streams_before = streams_gauge()
    async with running(recorder):
        recorder.on_heartbeat(beat("media_edge", "media_edge-1", edge.endpoint))
        recorder.on_heartbeat(beat("recorder", "recorder-2", "tcp://127.0.0.1:9"))  # no audio
        recorder.start_session(sid, True, mixer.endpoint, link.endpoint)
        recorder.start_session(unrecorded, False, mixer.endpoint, link.endpoint)
        recorder.on_event(events.ClientJoined(session_id=sid, client_id=client, name="kitchen"))
        assert list(recorder.sessions) == [sid]
        for endpoint in (edge.endpoint, mixer.endpoint, link.endpoint):
            assert recorder.connected_to(endpoint)
        assert not recorder.connected_to("tcp://127.0.0.1:9")

        def publish() -> None:
            edge.send(topics.aud_in(sid, client), topics.aud_in(unrecorded, client))
            mixer.send(topics.aud_mix(sid), topics.aud_mix(unrecorded))
            link.send(topics.aud_model(sid), topics.aud_model(unrecorded))

        folder = tmp_path / sid
        files = {"mix.wav", "model.wav", f"client-{client}.wav"}
        await until(lambda: files <= {p.name for p in folder.glob("*.wav")},
                    "a file for each of the session's streams", poke=publish)
        await until(lambda: streams_gauge() - streams_before == 3, "three streams counted",
                    poke=publish)

        recorder.on_event(events.SessionEnded(session_id=sid))
        assert recorder.sessions == {}
        for endpoint in (edge.endpoint, mixer.endpoint, link.endpoint):
            assert not recorder.connected_to(endpoint)
        await until(lambda: streams_gauge() == streams_before, "the session's files finished")
        listed = {s["file"]: s for s in index(folder)["streams"]}
        assert set(listed) == files
        assert listed[f"client-{client}.wav"]["client_name"] == "kitchen"
        assert {s["kind"] for s in listed.values()} == {"client", "mix", "model"}
        assert all(s["frames"] > 0 for s in listed.values())
    assert not (tmp_path / unrecorded).exists()


async def test_a_publisher_that_moves_is_followed_and_the_old_endpoint_let_go(tmp_path, ctx):
    first, second = Publisher(ctx), Publisher(ctx)
    recorder = AudioRecorder(ctx, RecordingConfig(directory=tmp_path), "recorder-test")
    sid = new_id()
    async with running(recorder):
        recorder.start_session(sid, True)
        recorder.on_heartbeat(beat("mixer", "mixer-1", first.endpoint))
        assert recorder.connected_to(first.endpoint)
        recorder.on_heartbeat(beat("mixer", "mixer-1", second.endpoint))  # restarted
        assert recorder.connected_to(second.endpoint)
        assert not recorder.connected_to(first.endpoint)
        await until(lambda: (tmp_path / sid / "mix.wav").exists(), "the mix from its new place",
                    poke=lambda: second.send(topics.aud_mix(sid)))
        recorder.stop_session(sid)
        assert not recorder.connected_to(second.endpoint)


async def test_with_recording_set_to_all_every_session_is_recorded_and_off_none(tmp_path, ctx):
    everything = AudioRecorder(ctx, RecordingConfig(mode=RecordMode.ALL, directory=tmp_path),
                               "recorder-all")
    nothing = AudioRecorder(ctx, RecordingConfig(mode=RecordMode.OFF, directory=tmp_path),
                            "recorder-off")
    sid = new_id()
    async with running(everything), running(nothing):
        everything.start_session(sid, False)
        nothing.start_session(sid, True)
        assert list(everything.sessions) == [sid] and nothing.sessions == {}
