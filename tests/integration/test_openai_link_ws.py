"""openai_link over the Realtime WebSocket transport, forced or as the fallback from WebRTC.

The same real processes as ``test_openai_link.py``: the link on a real bus, a real
simulator process (which sends WebSocket audio several times faster than real time), the
test playing the mixer on a real ``aud/mix`` socket and listening to ``aud/model``.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from proto import events, ids, rpc
from tests.integration.test_openai_link import (
    PHRASE,
    RPC_TIMEOUT_S,
    SECRET,
    MixerStandIn,
    ModelListener,
    check_turns,
    live_publisher,
    metric_values,
    session_on_link,
    sim_calls,
    spoken_turn,
)
from tests.support.frames import assert_one_stream
from tests.support.sim_process import SimProcess
from tests.support.speech import BYTES_PER_MS, rms_dbfs, silence, speak
from tests.support.stack import Stack

FRAME_S = 0.02
UNREACHABLE_ICE_HOST = "192.0.2.1"
"TEST-NET-1 (RFC 5737): never an address of this machine, so no ICE candidate can work."


def reply_frames(listener: ModelListener, start: float, end: float) -> list[tuple[int, float]]:
    """Seqs and publish times (s) of the aud/model frames between two wall times."""
    return [(header.seq, header.capture_ns / 1e9) for header, _ in listener.frames
            if start <= header.capture_ns / 1e9 <= end]


def check_real_time(frames: list[tuple[int, float]]) -> None:
    """The frames came out one per 20 ms (silence kept off the bus counted by seq): no
    burst, however fast the deltas came."""
    assert len(frames) > 50, len(frames)
    times = [at for _, at in frames]
    span = times[-1] - times[0]
    rate = (frames[-1][0] - frames[0][0]) / span
    gaps = [b - a for (s, a), (t, b) in itertools.pairwise(frames) if t == s + 1]
    most_in_500ms = max(sum(1 for t in times[i:] if t < start + 0.5)
                        for i, start in enumerate(times))
    print(f"{len(times)} reply frames over {span:.2f} s: {rate:.1f} frames/s, "
          f"gaps {min(gaps) * 1000:.1f}..{max(gaps) * 1000:.1f} ms, "
          f"at most {most_in_500ms} in 500 ms")
    assert 45 <= rate <= 55
    assert most_in_500ms <= 30  # 25 at real time; a burst would be several times that
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(FRAME_S, abs=0.004)


@pytest.mark.fault
@pytest.mark.timeout(60)
async def test_over_websocket_a_spoken_turn_is_answered_at_real_time(tmp_path, sim: SimProcess):
    env = {"VOXRELAY_OPENAI_BASE_URL": sim.api_base, "OPENAI_API_KEY": SECRET,
           "VOXRELAY_OPENAI_TRANSPORT": "websocket"}
    async with Stack(data_dir=tmp_path, env=env) as stack:
        link = await stack.start("openai_link")
        assert link.beat is not None
        client = stack.rpc(link)
        sid = ids.new_id()
        mixer = MixerStandIn(stack.ctx, sid)
        listener = ModelListener(stack.ctx, link.beat.audio, sid)
        playing = asyncio.create_task(mixer.run())
        publisher = None
        try:
            await client.call(rpc.StartSession(session_id=sid, instructions="Be brief.",
                                               voice="marin", mixer_audio=mixer.endpoint))
            ada, bo = ids.new_id(), ids.new_id()
            for who, name in ((ada, "Ada"), (bo, "Bo")):
                assert isinstance(await client.call(
                    rpc.AddClient(session_id=sid, client_id=who, name=name),
                    timeout=RPC_TIMEOUT_S), rpc.Ok)
            assert [c["transport"] for c in await sim_calls(sim)] == ["websocket"]

            speech = speak(PHRASE)
            publisher = await live_publisher(stack, sid)
            spoken_at = time.time() + 0.5
            mixer.play(silence(500) + speech + silence(1500))
            for who in (ada, bo):
                publisher.publish(events.VoiceActivity(session_id=sid, client_id=who,
                                                       active=True, at=spoken_at))
            ai_start, ai_end = await check_turns(
                stack, sid, publisher, (ada, bo), spoken_at + len(speech) / BYTES_PER_MS / 1000)
            # check_turns saw ai.state listening, thinking, speaking, listening: the
            # playout events the link makes for itself over WebSocket.
            [started] = [e for e in stack.events if isinstance(e, events.RealtimeEvent)
                         and e.session_id == sid
                         and e.event_type == "output_audio_buffer.started"]
            [stopped] = [e for e in stack.events if isinstance(e, events.RealtimeEvent)
                         and e.session_id == sid
                         and e.event_type == "output_audio_buffer.stopped"]
            assert '"event_link_local_' in started.data
            kinds = {e.event_type for e in stack.events
                     if isinstance(e, events.RealtimeEvent) and e.session_id == sid}
            assert {"session.updated", "input_audio_buffer.committed", "response.done"} <= kinds
            assert "response.output_audio.delta" not in kinds

            # The reply came out on aud/model as valid 20 ms frames, one every 20 ms, from
            # the playout's start to its end (long after response.done, the deltas being
            # several times faster than real time).
            assert listener.malformed == 0
            assert_one_stream(listener.frames)
            assert {len(pcm) for _, pcm in listener.frames} == {960}
            check_real_time(reply_frames(listener, started.ts - 0.1, stopped.ts + 0.1))
            assert stopped.ts > ai_end.ts + 0.5  # played out after the response was done
            reply = listener.pcm_between(started.ts - 0.1, stopped.ts + 0.1)
            print(f"reply: {len(reply) // BYTES_PER_MS} ms at {rms_dbfs(reply):.1f} dBFS")
            assert len(reply) // BYTES_PER_MS > 1000 and rms_dbfs(reply) > -40.0
            assert ai_start.ts <= started.ts + 0.5
        finally:
            playing.cancel()
            await asyncio.gather(playing, return_exceptions=True)
            if publisher is not None:
                publisher.close()
            listener.close()
            mixer.close()


@pytest.mark.fault
@pytest.mark.timeout(60)
async def test_when_webrtc_cannot_connect_the_conversation_falls_back_to_websocket(
        tmp_path, sim: SimProcess):
    env = {"VOXRELAY_OPENAI_BASE_URL": sim.api_base, "OPENAI_API_KEY": SECRET}
    link_env = {"VOXRELAY_ICE_HOSTS": UNREACHABLE_ICE_HOST,  # WebRTC's ICE cannot succeed
                "VOXRELAY_OPENAI_WEBRTC_TIMEOUT_S": "2"}
    async with Stack(data_dir=tmp_path, env=env) as stack, \
            session_on_link(stack, link_env) as under:
        sid, metrics_port = under.sid, under.metrics_port
        began = time.monotonic()
        assert isinstance(await under.link.call(
            rpc.AddClient(session_id=sid, client_id=ids.new_id(), name="Ada"),
            timeout=RPC_TIMEOUT_S), rpc.Ok)
        took = time.monotonic() - began
        print(f"AddClient answered Ok after {took:.2f} s (WebRTC given 2 s)")
        assert 2.0 <= took < 6.0
        assert await metric_values(metrics_port, "voxrelay_fallbacks_total") == {
            "realtime_websocket": 1.0}
        # The failed WebRTC call was hung up; the conversation is on a WebSocket.
        async with asyncio.timeout(10):
            while [c["transport"] for c in await sim_calls(sim)] != ["websocket"]:
                await asyncio.sleep(0.1)

        user, ai, _ = await spoken_turn(stack, under.mixer, sid, after=0)
        assert (user.speaker, ai.speaker) == ("Ada", "assistant")
        assert await metric_values(metrics_port, "voxrelay_fallbacks_total") == {
            "realtime_websocket": 1.0}
        unavailable = [e for e in stack.events if isinstance(e, events.ErrorEvent)
                       and e.session_id == sid]
        assert unavailable == []
