"""The simulator's WebRTC path, end to end, with real parts only.

The simulator runs as a child process; the client is a real aiortc peer
(``RealtimeRtcClient``) that speaks espeak-ng audio into its microphone track and
records what it hears on the model's track; REST and the sideband WebSocket go
through the official ``openai`` package.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from websockets.exceptions import InvalidStatus

from tests.support.realtime_events import validate_server_event
from tests.support.rtc_client import RealtimeRtcClient
from tests.support.sim_process import SimProcess
from tests.support.speech import (
    BYTES_PER_MS,
    best_correlation,
    duration_ms,
    rms_dbfs,
    silence,
    speak,
)

API_KEY = "sk-test"
SESSION = {"type": "realtime", "model": "gpt-realtime"}
PHRASE = "what is the weather like today"
"A turn without commas: server VAD (silence 200 ms) hears it as one utterance."
OTHER_PHRASE = "please remind me to buy seven green apples"
"The control for echo correlation: a different sentence of a similar length."
INTERRUPTION = "sorry to cut in but I have another question for you"
FIRST_LINE = "Hello! This is the voxrelay simulator. I can hear you."
"The default script's first reply (about 3 s of speech)."
LOCATION = re.compile(r"^/v1/realtime/calls/(rtc_[A-Za-z0-9_]+)$")

AUDIBLE_DBFS = -45.0
"A reply being heard: espeak speech through Opus measures about -20 dBFS."
QUIET_DBFS = -60.0
"Near silence: Opus-coded digital silence measures far below this."


# -- helpers ------------------------------------------------------------------------


class Watch:
    """Follows a client as events arrive, noting how much model audio had been heard.

    ``heard_at[i]`` is ``len(rtc.heard)`` when ``rtc.events[i]`` arrived, which
    places each event on the timeline of the audio the client received.
    """

    def __init__(self, rtc: RealtimeRtcClient) -> None:
        assert not rtc.events, "attach before any event arrives"
        self.rtc = rtc
        self.heard_at: list[int] = []
        self.arrived_at: list[float] = []
        self._arrived = asyncio.Event()
        self.closed = asyncio.Event()
        rtc.channel.on("message", self._on_message)
        rtc.channel.on("close", self.closed.set)
        rtc.pc.on("connectionstatechange", self._on_state)

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.rtc.events

    def types(self) -> list[str]:
        return [e["type"] for e in self.rtc.events]

    async def next(self, kind: str, *, since: int = 0, timeout: float = 10.0) -> int:
        """Index in ``events`` of the first ``kind`` event at or after ``since`` (waits)."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(since, len(self.rtc.events)):
                    if self.rtc.events[i]["type"] == kind:
                        return i
                since = len(self.rtc.events)
                self._arrived.clear()
                await self._arrived.wait()

    async def hear(self, until_byte: int, timeout: float = 5.0) -> None:
        """Wait until the client has heard ``until_byte`` bytes of the model track."""
        async with asyncio.timeout(timeout):
            while len(self.rtc.heard) < until_byte:
                await asyncio.sleep(0.02)

    async def hear_more(self, ms: int, timeout: float = 5.0) -> int:
        """Wait for ``ms`` more of the model track; returns where that began (bytes)."""
        start = len(self.rtc.heard)
        await self.hear(start + ms * BYTES_PER_MS, timeout)
        return start

    def level(self, start: int, end: int) -> float:
        return rms_dbfs(bytes(self.rtc.heard[start:end]))

    async def wait_closed(self, timeout: float) -> None:
        """The data channel closed and the peer connection is closed (or failed)."""
        async with asyncio.timeout(timeout):
            await self.closed.wait()
            while self.rtc.pc.connectionState not in ("closed", "failed"):
                await asyncio.sleep(0.02)

    def _on_message(self, message: str | bytes) -> None:
        # RealtimeRtcClient's own handler ran first: the event is in rtc.events.
        self.heard_at.append(len(self.rtc.heard))
        self.arrived_at.append(time.monotonic())
        self._arrived.set()

    def _on_state(self) -> None:
        if self.rtc.pc.connectionState in ("closed", "failed"):
            self.closed.set()


@dataclass
class Call:
    rtc: RealtimeRtcClient
    watch: Watch
    call_id: str
    answer: str
    headers: dict[str, str]
    request_headers: dict[str, str]

    @property
    def created(self) -> dict[str, Any]:
        return self.rtc.events[0]


@asynccontextmanager
async def rtc_call(
    client: AsyncOpenAI, session: dict[str, Any] | None = SESSION
) -> AsyncIterator[Call]:
    """A connected WebRTC call (``session.created`` received); closed on exit.

    With ``session`` the SDK sends multipart (sdp + session); without, a raw
    ``application/sdp`` body. On a clean exit every event received must be a
    valid GA server event.
    """
    rtc = RealtimeRtcClient()
    watch = Watch(rtc)
    try:
        async with asyncio.timeout(15):
            offer = await rtc.offer()
            calls = client.realtime.calls.with_raw_response
            raw = await (calls.create(sdp=offer) if session is None
                         else calls.create(sdp=offer, session=session))
            assert raw.http_response.status_code == 201, raw.http_response.text
            location = LOCATION.match(raw.headers["location"])
            assert location is not None, raw.headers["location"]
            call = Call(rtc, watch, location.group(1), raw.http_response.text,
                        dict(raw.headers), dict(raw.http_request.headers))
            await rtc.accept(call.answer)
            await watch.next("session.created")
        assert watch.types()[0] == "session.created"
        yield call
        for event in rtc.events:
            validate_server_event(event)
    finally:
        await close_client(rtc)


async def close_client(rtc: RealtimeRtcClient) -> None:
    async with asyncio.timeout(5):
        await rtc.close()


def turn(phrase: str = PHRASE, tail_ms: int = 1200) -> bytes:
    """A spoken utterance, with a little lead-in and enough silence after for VAD."""
    return silence(300) + speak(phrase) + silence(tail_ms)


WINDOW = 10 * BYTES_PER_MS


def loud_windows(pcm: bytes, floor_dbfs: float) -> list[int]:
    """Byte offsets of the 10 ms windows of ``pcm`` louder than ``floor_dbfs``."""
    return [i for i in range(0, len(pcm) - WINDOW + 1, WINDOW)
            if rms_dbfs(pcm[i : i + WINDOW]) > floor_dbfs]


def audible_ms(pcm: bytes, floor_dbfs: float = -50.0) -> int:
    """From the start of the first to the end of the last window above ``floor_dbfs``."""
    loud = loud_windows(pcm, floor_dbfs)
    return (loud[-1] + WINDOW - loud[0]) // BYTES_PER_MS if loud else 0


def last_audible(pcm: bytes, floor_dbfs: float = -50.0) -> int:
    """Where (in bytes) the last window above ``floor_dbfs`` ends."""
    loud = loud_windows(pcm, floor_dbfs)
    return loud[-1] + WINDOW if loud else 0


def assert_in_order(types: list[str], expected: list[str]) -> None:
    """``expected`` occurs in ``types`` as a subsequence, in this order."""
    start = 0
    for n, kind in enumerate(expected):
        assert kind in types[start:], f"{kind} missing after {expected[:n]}: {types}"
        start = types.index(kind, start) + 1


async def sim_post(sim: SimProcess, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}{path}", json=body,
                             timeout=aiohttp.ClientTimeout(total=5)) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def live_calls(sim: SimProcess) -> list[str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}/_sim/calls", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return [c["call_id"] for c in (await r.json())["calls"] if c["transport"] == "webrtc"]


def sdk(sim: SimProcess, api_key: str = API_KEY) -> AsyncOpenAI:
    """The official client, pointed at the simulator: no retries, short timeouts."""
    return AsyncOpenAI(api_key=api_key, base_url=sim.api_base, max_retries=0, timeout=10.0)


@pytest.fixture
async def client(sim: SimProcess) -> AsyncIterator[AsyncOpenAI]:
    async with sdk(sim) as c:
        yield c


# -- 1. the SDP exchange ---------------------------------------------------------------


async def test_multipart_offer_gets_201_with_call_location_and_a_loopback_opus_answer(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    session = {**SESSION, "instructions": "Answer like a ship's captain."}
    async with rtc_call(client, session) as call:
        assert call.request_headers["content-type"].startswith("multipart/form-data")
        assert call.headers["content-type"].startswith("application/sdp")
        answer = call.answer
        assert answer.startswith("v=0\r\n")
        assert "a=setup:active" in answer
        assert re.search(r"^a=rtpmap:\d+ opus/48000/2\r$", answer, re.M)
        assert re.search(r"^m=application \d+ UDP/DTLS/SCTP webrtc-datachannel\r$", answer, re.M)
        candidates = re.findall(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+)", answer, re.M)
        assert candidates and set(candidates) == {("127.0.0.1", "host")}
        # The answer is usable: the data channel opened and the session is the one asked for.
        assert call.rtc.channel.readyState == "open"
        created = call.created["session"]
        assert created["instructions"] == "Answer like a ship's captain."
        assert created["type"] == "realtime" and created["id"].startswith("sess_")
        assert call.call_id in await live_calls(sim)


async def test_raw_sdp_offer_with_ephemeral_key_binds_the_minted_session(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    secret = await client.realtime.client_secrets.create(session={
        **SESSION,
        "instructions": "You are a terse lighthouse keeper.",
        "audio": {"output": {"voice": "coral"}},
    })
    assert secret.value.startswith("ek_")
    async with sdk(sim, secret.value) as browser:
        async with rtc_call(browser, session=None) as call:
            # Without a session the SDK posts the bare offer, as a browser would.
            assert call.request_headers["content-type"] == "application/sdp"
            assert call.request_headers["authorization"] == f"Bearer {secret.value}"
            assert call.headers["content-type"].startswith("application/sdp")
            assert "a=setup:active" in call.answer
            created = call.created["session"]
            assert created["instructions"] == "You are a terse lighthouse keeper."
            assert created["audio"]["output"]["voice"] == "coral"


async def test_raw_sdp_offer_over_plain_http_with_ephemeral_key(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    """The browser recipe, byte for byte: fetch(POST, application/sdp, Bearer ek_…)."""
    secret = await client.realtime.client_secrets.create(
        session={**SESSION, "audio": {"output": {"voice": "sage"}}})
    rtc = RealtimeRtcClient()
    watch = Watch(rtc)
    try:
        async with asyncio.timeout(15):
            offer = await rtc.offer()
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{sim.api_base}/realtime/calls", data=offer.encode(),
                    headers={"Authorization": f"Bearer {secret.value}",
                             "Content-Type": "application/sdp", "Accept": "application/sdp"},
                ) as r:
                    assert r.status == 201, await r.text()
                    assert r.content_type == "application/sdp"
                    assert LOCATION.match(r.headers["Location"])
                    answer = await r.text()
            await rtc.accept(answer)
            await watch.next("session.created")
        assert rtc.events[0]["session"]["audio"]["output"]["voice"] == "sage"
    finally:
        await close_client(rtc)


# -- 2. a spoken turn ------------------------------------------------------------------


async def test_spoken_turn_gets_a_reply_the_client_hears_on_its_track(client: AsyncOpenAI) -> None:
    async with rtc_call(client) as call:
        watch = call.watch
        spoken_from = len(call.rtc.heard)
        call.rtc.mic.play(turn())
        started = await watch.next("output_audio_buffer.started", timeout=15)
        stopped = await watch.next("output_audio_buffer.stopped", since=started, timeout=15)
        await watch.hear(watch.heard_at[stopped] + 600 * BYTES_PER_MS)

        types = watch.types()
        assert_in_order(types, [
            "session.created",
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",          # the user's audio item
            "conversation.item.done",
            "response.created",
            "response.output_item.added",
            "conversation.item.added",          # the assistant's item, in progress
            "response.content_part.added",
            "output_audio_buffer.started",      # after content_part.added (§4.4 C)
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
            "output_audio_buffer.stopped",      # after response.done, once playout drained
        ])
        assert "response.output_audio.delta" not in types, "audio must only be on the track"
        assert types.count("response.done") == 1

        done = watch.events[types.index("response.done")]["response"]
        assert done["status"] == "completed"
        response_id = done["id"]
        assert watch.events[started]["response_id"] == response_id
        assert watch.events[stopped]["response_id"] == response_id
        transcript = done["output"][0]["content"][0]["transcript"]
        assert transcript == FIRST_LINE

        # The server measured the utterance on the audio it received over RTP: prefix
        # padding (300 ms) + the speech itself + the silence that ended it (200 ms).
        speech_started = watch.events[types.index("input_audio_buffer.speech_started")]
        speech_stopped = watch.events[types.index("input_audio_buffer.speech_stopped")]
        item_ms = speech_stopped["audio_end_ms"] - speech_started["audio_start_ms"]
        assert abs(item_ms - (300 + audible_ms(speak(PHRASE), -40.0) + 200)) < 150

        # What the client heard: silence while it spoke, then the reply, all of it.
        reply = speak(transcript)  # the simulator's voice for 'alloy' is espeak en-us
        reply_ms = duration_ms(reply)
        start, end = watch.heard_at[started], watch.heard_at[stopped]
        heard = bytes(call.rtc.heard[start - 500 * BYTES_PER_MS : end + 600 * BYTES_PER_MS])
        assert watch.level(spoken_from, start - 200 * BYTES_PER_MS) < QUIET_DBFS
        assert watch.level(start, end) > AUDIBLE_DBFS
        assert abs((end - start) // BYTES_PER_MS - reply_ms) < 400
        assert audible_ms(heard) > 0.9 * audible_ms(reply)
        correlation = best_correlation(reply, heard)
        print(f"reply correlation: {correlation:.3f}")
        assert correlation > 0.8


# -- 3. echo mode ----------------------------------------------------------------------


async def test_echo_mode_plays_the_users_own_words_back(
    start_sim: Callable[..., SimProcess],
) -> None:
    sim = start_sim("--reply-mode", "echo", "--response-latency-ms", "100")
    async with sdk(sim) as client:
        async with rtc_call(client) as call:
            watch = call.watch
            call.rtc.mic.play(turn())
            stopped_speaking = await watch.next("input_audio_buffer.speech_stopped", timeout=10)
            started = await watch.next("output_audio_buffer.started", timeout=10)
            stopped = await watch.next("output_audio_buffer.stopped", since=started, timeout=10)
            # espeak's own output has up to ~300 ms of silence at either end: keep
            # enough of the track around the echo for the whole reference to align.
            await watch.hear(watch.heard_at[stopped] + 800 * BYTES_PER_MS)
            heard = bytes(call.rtc.heard[watch.heard_at[started] - 500 * BYTES_PER_MS :])

            same = best_correlation(speak(PHRASE), heard)
            other = best_correlation(speak(OTHER_PHRASE), heard)
            print(f"echo correlation: same phrase {same:.3f}, other phrase {other:.3f}")
            assert same > 0.8
            assert other < 0.6
            assert same - other > 0.3
            # An exact latency probe: the echo starts about --response-latency-ms after
            # the end of speech was detected.
            latency = watch.arrived_at[started] - watch.arrived_at[stopped_speaking]
            assert 0.05 < latency < 0.6
            done = next(e for e in watch.events if e["type"] == "response.done")
            assert done["response"]["status"] == "completed"


# -- 4. barge-in -----------------------------------------------------------------------


async def test_barge_in_cancels_the_reply_and_the_client_stops_hearing_it(
    client: AsyncOpenAI,
) -> None:
    async with rtc_call(client) as call:
        watch = call.watch
        call.rtc.mic.play(turn())
        started = await watch.next("output_audio_buffer.started", timeout=15)
        reply_id = watch.events[started]["response_id"]
        # Let a second of the ~3.5 s reply play, then talk over it.
        await watch.hear(watch.heard_at[started] + 1000 * BYTES_PER_MS)
        talk_from = len(call.rtc.heard)
        call.rtc.mic.play(speak(INTERRUPTION) + silence(1000))

        barge = await watch.next("input_audio_buffer.speech_started", since=started, timeout=5)
        cleared = await watch.next("output_audio_buffer.cleared", since=started, timeout=5)
        done = await watch.next("response.done", since=started, timeout=5)
        assert barge < cleared < done
        assert watch.events[cleared]["response_id"] == reply_id
        response = watch.events[done]["response"]
        assert response["id"] == reply_id
        assert response["status"] == "cancelled"
        assert response["status_details"]["reason"] == "turn_detected"
        item = response["output"][0]
        assert item["status"] == "incomplete"
        said = item["content"][0]["transcript"]
        assert said and FIRST_LINE.startswith(said) and len(said) < len(FIRST_LINE)

        # The reply was audible until the interruption, and silent soon after it.
        cleared_at = watch.heard_at[cleared]
        await watch.hear(cleared_at + 700 * BYTES_PER_MS)
        assert watch.level(watch.heard_at[started], talk_from) > AUDIBLE_DBFS
        assert watch.level(cleared_at + 300 * BYTES_PER_MS,
                           cleared_at + 700 * BYTES_PER_MS) < QUIET_DBFS
        audible_until = last_audible(bytes(call.rtc.heard[: cleared_at + 700 * BYTES_PER_MS]))
        def ms(at: int) -> int:
            return (at - talk_from) // BYTES_PER_MS

        print(f"barge-in: output_audio_buffer.cleared {ms(cleared_at)} ms and the reply's last "
              f"audible audio {ms(audible_until)} ms after the client began talking over it")
        assert audible_until < cleared_at + 300 * BYTES_PER_MS
        # No new reply talks over the user while they are still speaking.
        assert "output_audio_buffer.started" not in watch.types()[started + 1 :]


# -- 5. sideband -----------------------------------------------------------------------


async def test_sideband_sees_the_calls_events_and_can_make_the_model_speak(
    client: AsyncOpenAI,
) -> None:
    async with rtc_call(client) as call:
        watch = call.watch
        async with asyncio.timeout(10):
            sideband = await client.realtime.connect(call_id=call.call_id).enter()
        side: list[dict[str, Any]] = []

        async def side_until(kind: str, timeout: float = 15.0) -> dict[str, Any]:
            async with asyncio.timeout(timeout):
                while True:
                    side.append(json.loads(await sideband.recv_bytes()))
                    if side[-1]["type"] == kind:
                        return side[-1]

        try:
            created = await side_until("session.created", timeout=5)
            assert len(side) == 1
            assert created["session"]["id"] == call.created["session"]["id"]

            # A spoken turn: the sideband gets exactly what the data channel gets.
            call.rtc.mic.play(turn())
            await side_until("response.done")
            done = await watch.next("response.done", timeout=5)
            channel_turn = [(e["type"], e["event_id"]) for e in watch.events[1 : done + 1]]
            sideband_turn = [(e["type"], e["event_id"]) for e in side[1:]]
            assert sideband_turn == channel_turn
            assert "input_audio_buffer.speech_started" in dict(channel_turn)
            assert watch.types().count("session.created") == 1
            stopped = await watch.next("output_audio_buffer.stopped", since=done, timeout=5)
            await side_until("output_audio_buffer.stopped", timeout=5)

            # The sideband asks for a response: the model speaks on the WebRTC track.
            quiet_from = await watch.hear_more(300)
            await sideband.response.create()
            speaking = await watch.next("output_audio_buffer.started", since=stopped, timeout=5)
            side_created = await side_until("response.created", timeout=5)
            assert watch.events[speaking]["response_id"] == side_created["response"]["id"]
            start = watch.heard_at[speaking]
            await watch.hear(start + 800 * BYTES_PER_MS)
            assert watch.level(quiet_from, quiet_from + 300 * BYTES_PER_MS) < QUIET_DBFS
            assert watch.level(start, start + 800 * BYTES_PER_MS) > AUDIBLE_DBFS
            # ... and can cancel it.
            await sideband.response.cancel()
            side_done = await side_until("response.done", timeout=5)
            assert side_done["response"]["id"] == side_created["response"]["id"]
            assert side_done["response"]["status"] == "cancelled"
            assert side_done["response"]["status_details"]["reason"] == "client_cancelled"
            channel_done = await watch.next("response.done", since=speaking, timeout=5)
            assert watch.events[channel_done]["event_id"] == side_done["event_id"]
            for event in side:
                validate_server_event(event)
        finally:
            async with asyncio.timeout(5):
                await sideband.close()


async def test_sideband_refuses_ephemeral_keys_and_unknown_calls(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    secret = await client.realtime.client_secrets.create(session=SESSION)
    async with rtc_call(client) as call:
        async with sdk(sim, secret.value) as browser:
            with pytest.raises(InvalidStatus) as with_ek:
                async with asyncio.timeout(10), browser.realtime.connect(call_id=call.call_id):
                    pass
        with pytest.raises(InvalidStatus) as unknown:
            async with asyncio.timeout(10), client.realtime.connect(call_id="rtc_u1_" + "0" * 32):
                pass
        for refused in (with_ek.value, unknown.value):
            assert refused.response.status_code == 404
            error = json.loads(refused.response.body)["error"]
            assert error["code"] == "call_id_not_found"
            assert error["message"] == "No session found for the provided call_id"
        # Being refused a sideband does not disturb the call.
        assert call.rtc.channel.readyState == "open"
        assert call.call_id in await live_calls(sim)


# -- 6. hangup -------------------------------------------------------------------------


async def wait_call_gone(sim: SimProcess, call_id: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while call_id in await live_calls(sim):
            await asyncio.sleep(0.05)


async def test_hangup_closes_the_clients_peer_connection(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    async with rtc_call(client) as call:
        began = time.monotonic()
        raw = await client.realtime.calls.with_raw_response.hangup(call.call_id)
        assert raw.http_response.status_code == 200
        await call.watch.wait_closed(timeout=5)
        print(f"hangup: client closed after {time.monotonic() - began:.3f} s")
        assert call.rtc.channel.readyState == "closed"
        await wait_call_gone(sim, call.call_id)
    with pytest.raises(openai.NotFoundError):
        await client.realtime.calls.hangup(call.call_id)


async def test_client_closing_its_peer_connection_ends_the_call(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    async with rtc_call(client) as call:
        assert call.call_id in await live_calls(sim)
        await close_client(call.rtc)
        await wait_call_gone(sim, call.call_id)
    with pytest.raises(openai.NotFoundError):
        await client.realtime.calls.hangup(call.call_id)


async def test_hangup_of_an_unknown_call_is_404_call_id_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        await client.realtime.calls.hangup("rtc_u1_" + "0" * 32)
    assert refused.value.status_code == 404
    error = refused.value.response.json()["error"]
    assert error["code"] == "call_id_not_found"
    assert error["type"] == "invalid_request_error"


# -- 7. bad offers ---------------------------------------------------------------------


BAD_OFFERS: dict[str, Callable[[str], str]] = {
    "not_sdp": lambda offer: "hello",
    "no_media": lambda offer: "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "cut_mid_line": lambda offer: offer[: offer.index("a=fingerprint:") + 30],
    "cut_before_dtls_setup": lambda offer: offer[: offer.index("a=setup:")],
    "cut_in_datachannel_section":
        lambda offer: offer[: offer.index("a=fingerprint:", offer.index("m=application"))],
    "final_crlf_trimmed": lambda offer: offer.rstrip("\r\n"),
}


@pytest.mark.parametrize("spoil", BAD_OFFERS.values(), ids=list(BAD_OFFERS))
async def test_bad_offer_is_400_invalid_offer_and_good_calls_still_work(
    client: AsyncOpenAI, spoil: Callable[[str], str],
) -> None:
    rtc = RealtimeRtcClient()
    try:
        bad = spoil(await rtc.offer())
    finally:
        await close_client(rtc)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.realtime.calls.create(sdp=bad, session=SESSION)
    assert refused.value.status_code == 400
    error = refused.value.response.json()["error"]
    assert error["code"] == "invalid_offer", error
    assert error["message"].startswith("Failed to parse offer")
    async with rtc_call(client) as call:
        assert call.rtc.channel.readyState == "open"


# -- 8. fault switch -------------------------------------------------------------------


async def test_sim_drop_ends_a_call_without_hangup_and_spares_the_others(
    sim: SimProcess, client: AsyncOpenAI,
) -> None:
    async with rtc_call(client) as victim, rtc_call(client) as bystander:
        began = time.monotonic()
        assert await sim_post(sim, "/_sim/drop", {"call_id": victim.call_id}) == {
            "dropped": [victim.call_id]}
        await victim.watch.wait_closed(timeout=5)
        assert victim.rtc.channel.readyState == "closed"
        print(f"drop: client closed after {time.monotonic() - began:.3f} s")
        await wait_call_gone(sim, victim.call_id)
        # The other call goes on.
        bystander.rtc.send({"type": "session.update",
                            "session": {"type": "realtime", "instructions": "Still here."}})
        updated = await bystander.watch.next("session.updated", timeout=5)
        assert bystander.watch.events[updated]["session"]["instructions"] == "Still here."
        assert bystander.rtc.pc.connectionState == "connected"
        assert bystander.call_id in await live_calls(sim)


# -- 9. session cap --------------------------------------------------------------------


async def test_session_cap_sends_session_expired_then_ends_the_call(
    start_sim: Callable[..., SimProcess],
) -> None:
    sim = start_sim("--session-cap-s", "2")
    async with sdk(sim) as client:
        began, began_wall = time.monotonic(), time.time()
        async with rtc_call(client) as call:
            watch = call.watch
            assert abs(call.created["session"]["expires_at"] - (began_wall + 2)) <= 1.5
            expired = await watch.next("error", timeout=5)
            error = watch.events[expired]["error"]
            assert error["code"] == "session_expired"
            assert error["message"] == "Your session hit the maximum duration of 2 seconds."
            await watch.wait_closed(timeout=5)
            closed = time.monotonic()
            assert call.rtc.channel.readyState == "closed"
            print(f"session cap: error after {watch.arrived_at[expired] - began:.2f} s, "
                  f"connection closed after {closed - began:.2f} s")
            assert 1.5 < watch.arrived_at[expired] - began < 3.5
            assert closed - watch.arrived_at[expired] < 2.0
            assert watch.types()[-1] == "error", "nothing may follow session_expired"


async def test_stopping_the_simulator_closes_live_calls(start_sim) -> None:
    own = start_sim("--response-latency-ms", "150")
    async with rtc_call(sdk(own)) as call:
        own.stop()
        await call.watch.wait_closed(timeout=5)
        assert call.rtc.channel.readyState == "closed"
