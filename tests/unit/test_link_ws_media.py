"""The WebSocket transport's audio: batched appends up (services/openai_link/ws_uplink.py),
deltas framed and paced out at real time, with barge-in cuts, down
(services/openai_link/ws_playout.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from services.openai_link.ws_playout import ModelPlayout
from services.openai_link.ws_uplink import MAX_QUEUED_BATCHES, WsUplink, append_event

FRAME = 960


def frame(value: int) -> bytes:
    return bytes([value]) * FRAME


# -- uplink ---------------------------------------------------------------------------


def test_frames_go_up_in_batches_of_two_with_their_capture_times():
    wakes: list[None] = []
    sent: list[int] = []
    uplink = WsUplink(lambda: wakes.append(None))
    uplink.on_sent = sent.append
    uplink.push(frame(1), 101)
    assert uplink.take() is None and wakes == []
    uplink.push(frame(2), 102)
    batch = uplink.take()
    assert batch is not None and len(wakes) == 1
    event = json.loads(append_event(batch))
    assert event["type"] == "input_audio_buffer.append"
    assert base64.b64decode(event["audio"]) == frame(1) + frame(2)
    uplink.sent(batch)
    assert sent == [101, 102]


def test_a_socket_that_cannot_keep_up_loses_the_oldest_batches():
    uplink = WsUplink(lambda: None)
    for n in range(2 * (MAX_QUEUED_BATCHES + 2)):
        uplink.push(frame(n), n + 1)
    assert uplink.dropped == 4
    first = uplink.take()
    assert first is not None and [c for _, c in first] == [5, 6]


# -- downlink -------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []
        self.marks: list[tuple[str, str]] = []

    def audio(self, pcm: bytes) -> None:
        self.frames.append((time.monotonic(), pcm))

    def started(self, response_id: str) -> None:
        self.marks.append(("started", response_id))

    def stopped(self, response_id: str) -> None:
        self.marks.append(("stopped", response_id))


def playout(rec: Recorder) -> ModelPlayout:
    return ModelPlayout(rec.audio, rec.started, rec.stopped)


async def test_a_burst_of_deltas_plays_out_in_exact_frames_at_real_time():
    rec = Recorder()
    player = playout(rec)
    task = asyncio.create_task(player.run())
    try:
        # 496 ms of audio in odd-sized deltas, all at once (as a fast WebSocket sends it)
        pcm = bytes(range(256)) * 93
        for i in range(0, len(pcm), 1_000):
            player.add("resp_1", "item_1", pcm[i:i + 1_000])
        player.response_done("resp_1")
        async with asyncio.timeout(3):
            while ("stopped", "resp_1") not in rec.marks:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert rec.marks == [("started", "resp_1"), ("stopped", "resp_1")]
    assert [len(f) for _, f in rec.frames] == [FRAME] * 25  # the last padded with silence
    played = b"".join(f for _, f in rec.frames)
    assert played == pcm + bytes(25 * FRAME - len(pcm))
    span = rec.frames[-1][0] - rec.frames[0][0]
    assert span == pytest.approx(24 * 0.02, abs=0.06)


async def test_a_barge_in_drops_the_unplayed_audio_and_says_where_it_was_cut():
    rec = Recorder()
    player = playout(rec)
    task = asyncio.create_task(player.run())
    try:
        for n in range(50):  # one second
            player.add("resp_1", "item_1", frame(n))
        async with asyncio.timeout(3):
            while len(rec.frames) < 10:
                await asyncio.sleep(0.005)
        cut = player.interrupt()
        assert cut is not None and (cut.response_id, cut.item_id) == ("resp_1", "item_1")
        assert cut.played_ms == 20 * len(rec.frames)
        assert player.queued_frames == 0 and player.playing is None
        player.add("resp_1", "item_1", frame(99))  # a late delta of the cut reply: dropped
        await asyncio.sleep(0.1)
        assert cut.played_ms == 20 * len(rec.frames)
        assert player.interrupt() is None  # nothing left to cut
    finally:
        task.cancel()
    assert rec.marks == [("started", "resp_1")]  # the connection reports the cut (cleared)
