"""What the edge accepts from browsers and signaling: channel messages, offers, clients."""

from __future__ import annotations

import json

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from proto import ids
from services.media_edge.channel import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    ClientMute,
    LatencyPing,
    LatencyPong,
    Pings,
    decode,
    ping,
    pong,
)
from services.media_edge.config import from_env
from services.media_edge.peer import ClientInfo, InvalidOffer, check_offer, plays_dtx
from services.runtime import ConfigError


def test_a_latency_ping_is_answered_with_its_ping_id_and_client_time():
    ping = decode('{"type": "latency.ping", "ts": 1700000000123, "payload": {"ping_id": 7}}')
    assert isinstance(ping, LatencyPing)
    assert json.loads(pong(ping, 1700000000.5)) == {
        "type": "latency.pong", "ts": 1700000000.5,
        "payload": {"ping_id": 7, "client_ts": 1700000000123.0}}


def test_the_edge_pings_with_its_own_id_and_server_time():
    assert json.loads(ping("e3", 1700000000.25)) == {
        "type": "latency.ping", "ts": 1700000000.25, "payload": {"ping_id": "e3"}}


def test_a_pong_to_the_edges_ping_is_understood_whatever_else_it_carries():
    answer = decode('{"type": "latency.pong", "ts": 1700000000123, '
                    '"payload": {"ping_id": "e3", "client_ts": 5}}')
    assert isinstance(answer, LatencyPong) and answer.payload.ping_id == "e3"
    assert decode('{"type": "latency.pong", "payload": {"ping_id": "e4"}}').ts is None


def test_a_pong_gives_the_round_trip_of_its_own_ping_once():
    pings = Pings()
    first, second = pings.issue(10.0), pings.issue(12.0)
    assert (first, second) == ("e1", "e2")
    assert pings.answer(second, 12.04) == pytest.approx(0.04)
    assert pings.answer(second, 12.05) is None, "answered already"
    assert pings.answer("e99", 12.05) is None, "never sent"
    assert pings.answer(1, 12.05) is None, "not one of the edge's ids"
    assert pings.answer(first, 12.1) == pytest.approx(2.1)
    assert len(pings) == 0


def test_unanswered_pings_are_forgotten_by_age_and_number():
    pings = Pings(max_outstanding=8, timeout_s=10.0)
    old = pings.issue(0.0)
    pings.issue(5.0)
    assert pings.answer(old, 10.5) is None, "older than 10 s"
    assert len(pings) == 1
    ids_ = [pings.issue(11.0 + n) for n in range(10)]
    assert len(pings) == 8
    assert pings.answer(ids_[1], 21.0) is None, "pushed out by newer ones"
    assert pings.answer(ids_[-1], 21.0) == pytest.approx(1.0)


def test_a_mute_request_says_whether_to_mute():
    muted = decode('{"type": "client.mute", "ts": 1700000000123, "payload": {"muted": true}}')
    assert isinstance(muted, ClientMute) and muted.payload.muted is True
    assert decode('{"type": "client.mute", "payload": {"muted": false}}').payload.muted is False


@pytest.mark.parametrize(("message", "reason"), [
    ('{"type": "client.mute", "payload": {}}', "malformed"),
    ('{"type": "client.mute", "payload": {"muted": "yes"}}', "malformed"),
    ('{"type": "client.mute"}', "malformed"),
    ("not json", "malformed"),
    (b"\xff\xfe", "binary"),
    (b'{"type": "latency.ping", "payload": {"ping_id": 1}}', "binary"),
    ('{"type": "latency.ping"}', "malformed"),
    ('{"type": "latency.ping", "payload": {}}', "malformed"),
    ('{"type": "latency.pong", "payload": {}}', "malformed"),
    ('{"type": "latency.pong", "payload": {"ping_id": ["e1"]}}', "malformed"),
    ('{"type": "latency.pong"}', "malformed"),
    ('{"type": "session.update", "payload": {"ping_id": "a"}}', "malformed"),
    ('{"payload": {"ping_id": "a"}}', "malformed"),
    ('["latency.ping"]', "malformed"),
    ('{"type": "latency.ping", "payload": {"ping_id": "' + "x" * MAX_MESSAGE_BYTES + '"}}',
     "oversized"),
])
def test_unusable_browser_messages_are_refused_with_a_reason(message, reason):
    with pytest.raises(BadMessage) as refused:
        decode(message)
    assert refused.value.reason == reason


@pytest.mark.parametrize("sdp", ["", "garbage", "v=0\r\ns=-\r\n",
                                 "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                                 "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
                                 "a=rtpmap:111 opus/48000/2\r\n"])
def test_what_is_not_a_complete_offer_is_refused(sdp):
    with pytest.raises(InvalidOffer):
        check_offer(sdp)


async def test_a_real_offer_passes_the_check():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        pc.createDataChannel("events")
        await pc.setLocalDescription(await pc.createOffer())
        check_offer(pc.localDescription.sdp)
    finally:
        await pc.close()


def test_client_info_names_the_field_it_refuses():
    session_id, client_id = ids.new_id(), ids.new_id()
    with pytest.raises(ValueError, match="'session_id'"):
        ClientInfo("abc", client_id)
    with pytest.raises(ValueError, match="'role'"):
        ClientInfo(session_id, client_id, role="host")
    with pytest.raises(ValueError, match="'transport'"):
        ClientInfo(session_id, client_id, transport="carrier-pigeon")
    assert ClientInfo(session_id, client_id, role="listener").label == \
        f"{session_id[:8]}/{client_id[:8]}"


def test_config_reads_ice_and_queue_settings_and_names_bad_keys():
    config = from_env({"VOXRELAY_ICE_HOSTS": "127.0.0.1", "VOXRELAY_EDGE_QUEUE_FRAMES": "25",
                       "VOXRELAY_INSTANCE": "media_edge-9"})
    assert (config.ice_hosts, config.ice_servers, config.queue_frames, config.instance) == (
        ("127.0.0.1",), (), 25, "media_edge-9")
    assert from_env({}).ice_hosts is None
    with pytest.raises(ConfigError, match="VOXRELAY_EDGE_QUEUE_FRAMES"):
        from_env({"VOXRELAY_EDGE_QUEUE_FRAMES": "0"})
    with pytest.raises(ConfigError, match="VOXRELAY_EDGE_CONNECT_TIMEOUT_S"):
        from_env({"VOXRELAY_EDGE_CONNECT_TIMEOUT_S": "soon"})


def test_dtx_is_asked_for_when_silence_stays_off_the_bus_unless_told():
    assert from_env({}).dtx is True
    # every frame on the bus: a browser's DTX gaps would read as losses, so not by default
    assert from_env({"VOXRELAY_BUS_SKIP_SILENCE": "0"}).dtx is False
    assert from_env({"VOXRELAY_BUS_SKIP_SILENCE": "0", "VOXRELAY_EDGE_DTX": "1"}).dtx is True
    assert from_env({"VOXRELAY_EDGE_DTX": "0"}).dtx is False


def test_a_client_plays_dtx_only_if_its_offer_says_usedtx_on_opus():
    opus = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n"
    assert plays_dtx(opus + "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n")
    assert plays_dtx(opus + "a=fmtp:111 usedtx=1\r\n")
    assert not plays_dtx(opus + "a=fmtp:111 minptime=10;useinbandfec=1\r\n")  # Chromium's own
    assert not plays_dtx(opus + "a=fmtp:111 usedtx=0\r\n")
    assert not plays_dtx(opus + "a=fmtp:0 usedtx=1\r\n"), "on another codec it says nothing"
