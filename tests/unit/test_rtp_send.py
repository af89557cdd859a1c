"""The lean RTP loop sends what aiortc's own loop would: the same bytes, heard, counted."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, clock
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from services.client.rtc import PcmTrack
from services.runtime.rtp_send import PairSend, RtpHeaders, install_lean_rtp_send, ntp_now
from tests.support.tone_peers import hear_a_tone

WAIT_S = 10.0
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def extensions(*uris: str) -> HeaderExtensionsMap:
    xmap = HeaderExtensionsMap()
    xmap.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in enumerate(uris, 1)]))
    return xmap


@pytest.mark.parametrize("uris, mid", [((MID, ABS_SEND_TIME), "0"),
                                       ((ABS_SEND_TIME, MID), "audio-12"),
                                       ((MID,), "1"),
                                       ((), None)])
def test_headers_are_the_bytes_aiortc_serializes(uris, mid):
    xmap = extensions(*uris)
    headers = RtpHeaders(xmap, mid, 111, 0x12345678)
    payload = bytes(range(80))
    for seq, ts, ntp in ((0, 0, 0), (65535, 0xFFFFFFFF, clock.current_ntp_time()),
                         (1234, 987654321, (1 << 64) - 1)):
        stock = RtpPacket(payload_type=111, sequence_number=seq, timestamp=ts)
        stock.ssrc, stock.payload, stock.marker = 0x12345678, payload, 1
        stock.extensions.abs_send_time = (ntp >> 14) & 0xFFFFFF
        stock.extensions.mid = mid
        assert headers.packet(seq, ts, ntp, payload) == stock.serialize(xmap)


def test_ntp_now_is_aiortcs_clock():
    assert abs(ntp_now() - clock.current_ntp_time()) < (1 << 32) // 100  # 10 ms


async def test_a_voice_track_sent_by_the_lean_loop_is_heard_and_counted(monkeypatch):
    assert install_lean_rtp_send()
    built: list[int] = []
    packet = RtpHeaders.packet

    def counted(self, *args):  # the lean loop's, not aiortc's, makes the packets
        built.append(1)
        return packet(self, *args)

    monkeypatch.setattr(RtpHeaders, "packet", counted)
    direct: list[bool] = []
    send = PairSend.__call__

    def sent_at_once(self, data):  # straight to the pair's socket, not aioice's way
        direct.append(send(self, data))
        return direct[-1]

    monkeypatch.setattr(PairSend, "__call__", sent_at_once)
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    heard: list[bytes] = []
    try:
        await hear_a_tone(sender, receiver, PcmTrack(), heard)
        await asyncio.sleep(0.3)
        # stopped, the sender's counts are final; what it sent has time to be heard
        await sender.getSenders()[0].stop()
        await asyncio.sleep(0.2)
        stats = (await sender.getStats()).values()
        sent = [s for s in stats if s.type == "outbound-rtp"]
        transport = [s for s in stats if s.type == "transport"]
        received = [s for s in (await receiver.getStats()).values()
                    if s.type == "inbound-rtp"]
    finally:
        await sender.close()
        await receiver.close()
    assert sent and sent[0].packetsSent >= len(heard) > 10
    assert len(built) == sent[0].packetsSent
    assert len(direct) == len(built) and all(direct)
    assert transport[0].packetsSent >= len(built)  # counted as the transport counts
    assert received and received[0].packetsReceived >= len(heard)
    assert sent[0].bytesSent > 0
