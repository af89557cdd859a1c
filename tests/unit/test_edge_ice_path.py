"""Reading the ICE path aiortc selected, from its private state, without ever crashing.

If an aiortc or aioice upgrade moves that state, the first test fails here rather than
the edge's relay count going quietly to zero.
"""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration, RTCPeerConnection

from services.media_edge.ice_path import relayed, selected_candidate_types


async def connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    offerer.addTransceiver("audio")
    offerer.createDataChannel("events")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    async with asyncio.timeout(15):
        while not offerer.connectionState == answerer.connectionState == "connected":
            await asyncio.sleep(0.02)
    return offerer, answerer


async def test_a_direct_loopback_connection_is_read_as_host_to_host_not_relayed():
    offerer, answerer = await connected_pair()
    try:
        for pc in (offerer, answerer):
            assert selected_candidate_types(pc) == {"host"}
            assert not relayed(pc)
    finally:
        await offerer.close()
        await answerer.close()


async def test_a_peer_that_never_connected_or_closed_has_no_path():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    assert selected_candidate_types(pc) == set()
    await pc.setLocalDescription(await pc.createOffer())
    assert selected_candidate_types(pc) == set() and not relayed(pc)
    await pc.close()
    assert selected_candidate_types(pc) == set()
