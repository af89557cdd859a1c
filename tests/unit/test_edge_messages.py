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
    decode,
    pong,
)
from services.media_edge.config import from_env
from services.media_edge.peer import ClientInfo, InvalidOffer, check_offer
from services.runtime import ConfigError


def test_a_latency_ping_is_answered_with_its_ping_id_and_client_time():
    ping = decode('{"type": "latency.ping", "ts": 1700000000123, "payload": {"ping_id": 7}}')
    assert isinstance(ping, LatencyPing)
    assert json.loads(pong(ping, 1700000000.5)) == {
        "type": "latency.pong", "ts": 1700000000.5,
        "payload": {"ping_id": 7, "client_ts": 1700000000123.0}}


def test_a_mute_request_says_whether_to_mute():
    muted = decode('{"type": "client.mute", "ts": 1700000000123, "payload": {"muted": true}}')
    assert isinstance(muted, ClientMute) and muted.payload.muted is True
    assert decode('{"type": "client.mute", "payload": {"muted": false}}').payload.muted is False


@pytest.mark.parametrize(("message", "reason"), [
    ('{"type": "client.mute", "payload": {}}', "malformed"),
    ('{"type": "client.mute", "payload": {"muted": "yes"}}', "malformed"),
    ('{"type": "client.mute"}', "malformed"),
    ("not json", "malformed"),
    (b"\xff\xfe", "malformed"),
    ('{"type": "latency.ping"}', "malformed"),
    ('{"type": "latency.ping", "payload": {}}', "malformed"),
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
