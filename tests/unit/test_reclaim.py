"""A closed WebRTC peer is freed soon after it closes (services/runtime/reclaim.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from services.runtime.reclaim import RECLAIM_SECONDS, collect_soon

WAIT_S = 10.0


async def connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    offerer.addTrack(AudioStreamTrack())
    answerer.addTrack(AudioStreamTrack())
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    async with asyncio.timeout(WAIT_S):
        while offerer.connectionState != "connected":
            await asyncio.sleep(0.02)
    return offerer, answerer


def collections_run() -> float:
    return sum(s.value for m in RECLAIM_SECONDS.collect() for s in m.samples
               if s.name.endswith("_count"))


async def test_a_closed_peer_is_freed_by_the_collection_it_asks_for():
    gc.disable()  # as in a service that allocates too little to collect on its own
    try:
        offerer, answerer = await connected_pair()
        peers = [weakref.ref(offerer), weakref.ref(answerer)]
        await offerer.close()
        await answerer.close()
        del offerer, answerer
        await asyncio.sleep(0.1)
        assert any(peer() is not None for peer in peers)  # held by their own cycles
        before = collections_run()
        collect_soon(0.05)
        collect_soon(0.05)  # a burst of closes: one collection
        async with asyncio.timeout(WAIT_S):
            while any(peer() is not None for peer in peers):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert collections_run() == before + 1
    finally:
        gc.enable()
