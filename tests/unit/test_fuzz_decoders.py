"""Property-based fuzz of every decoder that meets bytes from outside a process.

Each decoder either returns a value of its type or raises its one documented error (which
the receiving service drops and counts); nothing else may escape, whatever the bytes. The
inputs mix random bytes with mutations of real messages (a valid message truncated, with
bytes flipped, or with other msgpack/JSON values put in its fields).
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proto import audio, events, heartbeat, ids, rpc, topics
from services.media_edge import channel
from services.openai_link import realtime_events

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
SID = ids.new_id()

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=40))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=20)


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` cut short, with a byte changed, or with bytes spliced in."""
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    flipped = st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
        lambda pair: valid[:pair[0]] + bytes([pair[1]]) + valid[pair[0] + 1:])
    spliced = st.tuples(st.integers(0, len(valid)), st.binary(max_size=16)).map(
        lambda pair: valid[:pair[0]] + pair[1] + valid[pair[0]:])
    return st.one_of(cut, flipped, spliced)


def msgpack_of(fields: dict[str, object]) -> st.SearchStrategy[bytes]:
    """A valid message's fields, some replaced by arbitrary values, as msgpack."""
    return st.dictionaries(st.sampled_from(sorted(fields)), json_values, max_size=4).map(
        lambda changes: msgspec.msgpack.encode({**fields, **changes}))


EVENT = events.encode(events.TranscriptDone(session_id=SID, turn_id="t", role="user",
                                            text="hello", started_at=1.0, ended_at=2.0))
REQUEST = rpc.encode(rpc.AddClient(session_id=SID, client_id=ids.new_id(), sdp="v=0\r\n"))
REPLY = rpc.encode(rpc.SessionList(sessions=[rpc.SessionSummary(session_id=SID)]))
BEAT = msgspec.msgpack.encode(msgspec.msgpack.decode(heartbeat.encode(heartbeat.Heartbeat(
    service="mixer", instance="mixer-1", pid=1, started_at=1.0, ts=2.0))))
HEADER = audio.pack(topics.aud_in(SID, SID), 1, 2, b"\0" * 960)[1]


@SETTINGS
@given(st.one_of(st.binary(max_size=300), mutations(EVENT),
                 msgpack_of(msgspec.msgpack.decode(EVENT))))
def test_bus_events_decode_or_raise_event_error(data: bytes) -> None:
    try:
        assert isinstance(events.decode(data), events.Event)
    except events.EventError:
        pass


@SETTINGS
@given(st.one_of(st.binary(max_size=300), mutations(REQUEST), mutations(REPLY),
                 msgpack_of(msgspec.msgpack.decode(REQUEST))))
def test_rpc_messages_decode_or_raise_a_decode_error(data: bytes) -> None:
    for decode in (rpc.decode_request, rpc.decode_reply):
        try:
            decode(data)
        except msgspec.DecodeError:
            pass


@SETTINGS
@given(st.one_of(st.binary(max_size=200), mutations(BEAT),
                 msgpack_of(msgspec.msgpack.decode(BEAT))))
def test_heartbeats_decode_or_raise_a_decode_error(data: bytes) -> None:
    try:
        assert isinstance(heartbeat.decode(data), heartbeat.Heartbeat)
    except msgspec.DecodeError:
        pass


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=4), mutations(HEADER),
       st.binary(max_size=1200), st.binary(max_size=80))
def test_audio_frames_and_topics_unpack_or_raise_their_error(parts, header, pcm, topic) -> None:
    for message in (parts, [topic, header, pcm], [topic, HEADER, pcm]):
        try:
            _, parsed, samples = audio.unpack(message)
            assert len(samples) == parsed.samples * 2
        except audio.FrameError:
            pass
    try:
        topics.parse(topic)
    except topics.TopicError:
        pass


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 json_values.map(lambda v: msgspec.json.encode(v)),
                 st.dictionaries(st.sampled_from(["type", "ts", "payload"]), json_values)
                 .map(lambda v: msgspec.json.encode(v))))
def test_browser_messages_decode_or_are_refused_as_bad(message) -> None:
    try:
        channel.decode(message)
    except channel.BadMessage:
        pass


@SETTINGS
@given(st.one_of(st.text(max_size=300),
                 st.dictionaries(st.sampled_from(["type", "event_id", "response", "item",
                                                  "delta", "error", "session"]), json_values)
                 .map(lambda v: msgspec.json.encode(v).decode())))
def test_realtime_server_events_decode_or_are_malformed(text: str) -> None:
    try:
        realtime_events.decode(text)
    except realtime_events.MalformedEvent:
        pass
