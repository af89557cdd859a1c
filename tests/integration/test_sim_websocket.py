"""openai_sim over WebSocket, with the official SDK's ``client.realtime.connect()`` as client.

Every event the simulator sends is validated against the SDK's GA models by EventReader.
"""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
import websockets
from openai import AsyncOpenAI

from services.openai_sim.vad import ServerVad, SpeechStarted, VadSettings
from tests.support.speech import rms_dbfs, silence, speak
from tests.support.ws_client import EventReader

PHRASE = "what is the weather like today"
SCRIPT = """
[[turn]]
user = "What time is it"
reply = "It is {output} where you are."
function_call = { name = "get_time", arguments = { timezone = "UTC" } }

[[turn]]
user = "Thank you"
reply = "You are very welcome."
"""
GET_TIME = {"type": "function", "name": "get_time", "description": "Current time",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}}}


def client_for(sim, key: str = "sk-test") -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=sim.api_base, max_retries=0)


def ws_url(sim, query: str = "model=gpt-realtime") -> str:
    return sim.url.replace("http://", "ws://") + f"/v1/realtime?{query}"


async def test_spoken_turn_follows_the_ga_event_order(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await reader.until("session.created")
        await conn.session.update(session={
            "type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}})
        await reader.until("session.updated")
        await reader.append(silence(1000) + speak(PHRASE) + silence(1000))
        done = await reader.until("response.done")
        await reader.until("rate_limits.updated")
    assert reader.types() == [
        "session.created", "session.updated",
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "response.created", "response.output_item.added", "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done", "response.output_audio_transcript.done",
        "response.content_part.done", "response.output_item.done", "conversation.item.done",
        "response.done", "rate_limits.updated",
    ]
    by_type = {e["type"]: e for e in reader.events}
    started = by_type["input_audio_buffer.speech_started"]
    assert 650 <= started["audio_start_ms"] <= 800  # 1 s of silence, minus 300 ms padding
    assert by_type["input_audio_buffer.speech_stopped"]["audio_end_ms"] > started["audio_start_ms"]
    assert by_type["input_audio_buffer.committed"]["item_id"] == started["item_id"]
    transcript = "".join(e["delta"] for e in reader.events
                         if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == by_type["response.output_audio_transcript.done"]["transcript"]
    assert done["response"]["status"] == "completed"
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] > 0
    assert done["response"]["output"][0]["content"][0]["transcript"] == transcript
    assert by_type["conversation.item.input_audio_transcription.completed"]["transcript"].startswith(
        "[speech ")


async def test_reply_audio_is_audible_speech(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await reader.append(silence(300) + speak(PHRASE) + silence(800))
        done = await reader.until("response.done")
    audio = reader.audio(done["response"]["id"])
    assert len(audio) / 48_000 > 1.0
    assert rms_dbfs(audio) > -35
    vad_events = ServerVad(VadSettings()).process(audio)
    assert any(isinstance(e, SpeechStarted) for e in vad_events)


async def test_echo_mode_replies_with_the_users_own_utterance(start_sim):
    echo = start_sim("--reply-mode", "echo", "--response-latency-ms", "50")
    phrase = speak(PHRASE)
    async with client_for(echo).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await reader.append(silence(500) + phrase + silence(800))
        done = await reader.until("response.done")
    reply = reader.audio(done["response"]["id"])
    # Over WebSocket nothing is coded on the way: the echo is the utterance, sample for sample.
    assert len(reply) > 0.8 * len(phrase)
    assert reply in phrase


async def test_text_turn_with_manual_turns_and_text_output(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "audio": {"input": {"turn_detection": None}}})
        updated = await reader.until("session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        await conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
        added = await reader.until("conversation.item.added")
        assert added["item"]["content"][0]["text"] == "hi"
        await reader.until("conversation.item.done")
        await conn.response.create()
        done = await reader.until("response.done")
    text = "".join(e["delta"] for e in reader.events if e["type"] == "response.output_text.delta")
    assert text and done["response"]["output"][0]["content"][0] == {"type": "output_text", "text": text}
    assert "response.output_audio.delta" not in reader.types(skip_deltas=False)


async def test_manual_commit_needs_100_ms_of_audio(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await conn.session.update(session={"type": "realtime",
                                           "audio": {"input": {"turn_detection": None}}})
        await reader.until("session.updated")
        await reader.append(silence(50))
        await conn.input_audio_buffer.commit(event_id="evt_commit_1")
        error = (await reader.until("error"))["error"]
        assert error["code"] == "input_audio_buffer_commit_empty"
        assert "50.00ms" in error["message"] and error["event_id"] == "evt_commit_1"
        await reader.append(speak("hello there"))
        await conn.input_audio_buffer.commit()
        committed = await reader.until("input_audio_buffer.committed")
        await conn.response.create()
        done = await reader.until("response.done")
    assert "input_audio_buffer.speech_started" not in reader.types()
    assert done["response"]["status"] == "completed"
    assert committed["item_id"]


async def test_bad_client_events_get_real_errors_and_the_session_lives_on(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await reader.until("session.created")

        async def error_for(raw: str) -> dict:
            await conn.send_raw(raw)
            return (await reader.until("error"))["error"]

        assert (await error_for("{not json"))["code"] == "invalid_json"
        assert (await error_for("[1, 2]"))["code"] == "invalid_event"
        assert (await error_for('{"event_id": "e1"}'))["code"] == "invalid_event"
        unknown = await error_for('{"type": "conversation.explode"}')
        assert unknown["code"] == "invalid_value" and unknown["param"] == "type"
        missing_type = await error_for(json.dumps({"type": "session.update",
                                                   "session": {"instructions": "x"}}))
        assert (missing_type["code"], missing_type["param"]) == ("missing_required_parameter",
                                                                 "session.type")
        beta = await error_for(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "changed", "voice": "echo"}}))
        assert (beta["code"], beta["param"]) == ("unknown_parameter", "session.voice")
        assert (await error_for('{"type": "response.cancel"}'))["code"] == "response_cancel_not_active"
        bad_b64 = await error_for('{"type": "input_audio_buffer.append", "audio": "***"}')
        assert bad_b64["code"] == "invalid_value" and bad_b64["param"] == "audio"
        huge = "A" * (21 * 1024 * 1024)
        assert (await error_for(json.dumps({"type": "input_audio_buffer.append", "audio": huge})))[
            "param"] == "audio"
        legacy = await error_for('{"type": "transcription_session.update", "session": {}}')
        assert legacy["code"] == "beta_api_shape_disabled"
        truncate_user = await error_for('{"type": "conversation.item.truncate", "item_id": "nope",'
                                        ' "content_index": 0, "audio_end_ms": 10}')
        assert truncate_user["code"] == "item_truncate_invalid_item_id"

        # The rejected update changed nothing; the session still answers.
        await conn.session.update(session={"type": "realtime"})
        updated = await reader.until("session.updated")
        assert updated["session"]["instructions"] != "changed"
        await conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "still here?"}]})
        await conn.response.create()
        await conn.response.create(event_id="evt_second")
        conflict = (await reader.until("error"))["error"]
        assert conflict["code"] == "conversation_already_has_active_response"
        assert conflict["event_id"] == "evt_second"
        done = await reader.until("response.done")
    assert done["response"]["status"] == "completed"


async def test_barge_in_cancels_the_reply_and_truncate_cuts_the_item(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await reader.append(silence(300) + speak(PHRASE) + silence(600))
        first_audio = await reader.until("response.output_audio.delta")
        await reader.append(speak("wait stop please") + silence(600))
        started = await reader.until("input_audio_buffer.speech_started")
        done = await reader.until("response.done")
        assert done["response"]["id"] == first_audio["response_id"]
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        item = done["response"]["output"][0]
        assert item["status"] == "incomplete"
        assert reader.events.index(started) < reader.events.index(done)

        # The client played half of what it got before the barge-in: it truncates there.
        received_ms = len(reader.audio(done["response"]["id"])) // 48
        played_ms = received_ms // 2
        await conn.conversation.item.truncate(item_id=item["id"], content_index=0,
                                              audio_end_ms=played_ms)
        truncated = await reader.until("conversation.item.truncated")
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item["id"], played_ms)
        await conn.conversation.item.truncate(item_id=item["id"], content_index=0, audio_end_ms=99_000)
        too_long = (await reader.until("error"))["error"]
        assert too_long["code"] == "invalid_value" and f"{played_ms}ms" in too_long["message"]
        # The interruption became the next user turn, which gets its own reply.
        if not any(e["type"] == "response.done" and e is not done for e in reader.events):
            await reader.until("response.done")
    replies = [e["response"] for e in reader.events if e["type"] == "response.done"]
    assert [r["status"] for r in replies] == ["cancelled", "completed"]


async def test_scripted_function_call_round_trip(start_sim, tmp_path):
    script = tmp_path / "script.toml"
    script.write_text(SCRIPT)
    scripted = start_sim("--script", str(script), "--response-latency-ms", "50")
    async with client_for(scripted).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await conn.session.update(session={
            "type": "realtime", "tools": [GET_TIME],
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}})
        await reader.until("session.updated")
        await reader.append(silence(300) + speak("what time is it") + silence(600))
        transcription = await reader.until("conversation.item.input_audio_transcription.completed")
        assert transcription["transcript"] == "What time is it"
        call_done = await reader.until("response.done")
        call = call_done["response"]["output"][0]
        assert (call["type"], call["name"]) == ("function_call", "get_time")
        assert json.loads(call["arguments"]) == {"timezone": "UTC"}
        arguments = next(e for e in reader.events
                         if e["type"] == "response.function_call_arguments.done")
        assert arguments["name"] == "get_time" and arguments["call_id"] == call["call_id"]
        assert not reader.audio(call_done["response"]["id"])

        await conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": call["call_id"], "output": "half past nine"})
        await reader.until("conversation.item.done")
        await conn.response.create()
        spoken = await reader.until("response.done")
    transcript = spoken["response"]["output"][0]["content"][0]["transcript"]
    assert transcript == "It is half past nine where you are."


async def test_session_cap_ends_with_session_expired_then_close_1001(start_sim):
    capped = start_sim("--session-cap-s", "1.5")
    async with client_for(capped).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        error = await reader.until("error", timeout=10)
        assert error["error"]["code"] == "session_expired"
        assert "maximum duration" in error["error"]["message"]
        with pytest.raises(websockets.ConnectionClosed) as info:
            await reader.next(timeout=5)
    assert info.value.rcvd.code == 1001
    assert "maximum duration" in info.value.rcvd.reason


async def test_beta_handshake_is_refused_with_close_4000(sim):
    async with websockets.connect(ws_url(sim), additional_headers={
            "Authorization": "Bearer sk-test", "OpenAI-Beta": "realtime=v1"}) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert error["error"]["code"] == "beta_api_shape_disabled"
    assert info.value.rcvd.code == 4000


async def test_browser_subprotocol_auth(sim):
    protocols = ["realtime", "openai-insecure-api-key.sk-test"]
    async with websockets.connect(ws_url(sim), subprotocols=protocols) as ws:
        assert ws.subprotocol == "realtime"
        created = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert created["type"] == "session.created"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(ws_url(sim), subprotocols=["realtime",
                                                                 "openai-insecure-api-key.nope"]):
            pass
    assert info.value.response.status_code == 401


async def test_drop_switch_cuts_the_socket(sim):
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        created = await reader.until("session.created")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{sim.url}/_sim/drop", json={}) as resp:
                assert created["session"]["id"] in (await resp.json())["dropped"]
        with pytest.raises(websockets.ConnectionClosed) as info:
            await reader.next(timeout=5)
    assert info.value.rcvd is None  # no close frame: the connection was cut


async def test_appends_at_any_chunk_size_are_heard_the_same(sim):
    pcm = silence(400) + speak("hello there friend") + silence(700)
    async with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        for i in range(0, len(pcm), 4410):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + 4410]).decode())
        await reader.until("response.done")
    assert reader.types().count("input_audio_buffer.speech_started") == 1
