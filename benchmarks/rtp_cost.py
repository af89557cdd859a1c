"""What aiortc costs per audio packet sent and received, against a bare UDP socket.

``.venv/bin/python -m benchmarks.rtp_cost [--seconds 15] [--rounds 2]`` sends voice
Opus packets (:class:`~services.runtime.voice_codec.VoiceEncoder`'s, of a voice-like
signal) at 50 a second from one process to another, three ways, alternating:

- ``aiortc``: a peer connection whose track hands stock aiortc ready packets (it only
  packetizes and encrypts them), received by a peer connection with voxrelay's inline
  decoding and prompt jitter, its track read with ``recv()`` in a task, as aiortc's
  own consumers read it;
- ``lean``: as the edge and the link send and receive: the sender with voxrelay's lean
  RTP loop (:func:`~services.runtime.rtp_send.install_lean_rtp_send`), the receiver with
  its lean receive path (:func:`~services.runtime.rtp_receive.install_lean_rtp_receive`)
  and its track read by :func:`~services.runtime.media.drain_track`, each frame
  consumed in the socket's callback;
- ``bare``: the same packets as plain datagrams, paced the same way, decoded with
  :class:`~services.runtime.voice_decoder.VoiceDecoder` and handed to the same
  :class:`~services.runtime.media.MonoResampler` as ``drain_track`` hands them on.

Both sides run on uvloop in processes of their own, as the services do, and each
prints the CPU its whole process spent per packet over the window (``os.times``). What
aiortc adds on each side, over the bare socket, is the most a leaner RTP path could
save; all ways pay the same wake-ups and the same decode.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError

from benchmarks.bus_cost import cpu_s
from benchmarks.decode_cost import voice_like
from services.runtime.lifecycle import new_event_loop
from services.runtime.media import MonoResampler, Pacer, drain_track
from services.runtime.procstat import ThreadTotals
from services.runtime.rtp_receive import install_lean_rtp_receive
from services.runtime.rtp_send import install_lean_rtp_send
from services.runtime.voice_codec import (
    VoiceEncoder,
    install_inline_decoding,
    install_prompt_jitter,
    voice_packet,
)
from services.runtime.voice_decoder import VoiceDecoder

WARM_UP_S = 1.0
"Time after the first packet before the window opens."


def packets() -> list[bytes]:
    encoder = VoiceEncoder()
    return [encoder.encode(frame) for frame in voice_like(4.0)]


async def _measure(seconds: float, count: Any) -> tuple[float, int, int]:
    """After the warm-up, over ``seconds``: CPU seconds, wake-ups and ``count()``."""
    await asyncio.sleep(WARM_UP_S)
    totals = ThreadTotals()
    cpu, (_, woken), counted = cpu_s(), totals.read(), count()
    await asyncio.sleep(seconds)
    return cpu_s() - cpu, totals.read()[1] - woken, count() - counted


def _lean_sender(conn: Any, out: Any, seconds: float) -> None:
    install_lean_rtp_send()
    _aiortc_sender(conn, out, seconds)


def _aiortc_sender(conn: Any, out: Any, seconds: float) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack

    data = packets()

    class Packets(MediaStreamTrack):
        kind = "audio"
        voice_packets = True  # the lean loop takes it where installed

        def __init__(self) -> None:
            super().__init__()
            self.pacer, self.sent = Pacer(), 0

        async def recv(self) -> Any:
            pts = await self.pacer.next()
            self.sent += 1
            return voice_packet(data[self.sent % len(data)], pts)

    async def main() -> tuple[float, int, int]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = Packets()
        pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        conn.send((pc.localDescription.sdp, pc.localDescription.type))
        sdp, kind = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        try:
            return await _measure(seconds, lambda: track.sent)
        finally:
            await pc.close()

    out.send(new_event_loop().run_until_complete(main()))


def _lean_receiver(conn: Any, out: Any, seconds: float) -> None:
    install_lean_rtp_receive()
    _aiortc_receiver(conn, out, seconds, read=drain_track)


async def _recv_loop(track: Any, on_pcm: Callable[[bytes], None]) -> None:
    """A track read as aiortc's own consumers read it: ``recv()`` in a task."""
    resample = MonoResampler()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        pcm = resample(frame)
        if pcm:
            on_pcm(pcm)


def _aiortc_receiver(conn: Any, out: Any, seconds: float, read: Any = _recv_loop) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    install_inline_decoding()
    install_prompt_jitter()
    frames = [0]

    def hear(pcm: bytes) -> None:
        frames[0] += 1

    async def main() -> tuple[float, int, int]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", lambda track: asyncio.ensure_future(read(track, hear)))
        sdp, kind = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await pc.setLocalDescription(await pc.createAnswer())
        conn.send((pc.localDescription.sdp, pc.localDescription.type))
        while not frames[0]:
            await asyncio.sleep(0.01)
        try:
            return await _measure(seconds, lambda: frames[0])
        finally:
            await pc.close()

    out.send(new_event_loop().run_until_complete(main()))


def _bare_sender(conn: Any, out: Any, seconds: float) -> None:
    data = packets()
    address = conn.recv()

    async def main() -> tuple[float, int, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        pacer, sent = Pacer(), [0]

        async def send() -> None:
            while True:
                await pacer.next()
                sent[0] += 1
                sock.sendto(data[sent[0] % len(data)], address)

        task = asyncio.ensure_future(send())
        try:
            return await _measure(seconds, lambda: sent[0])
        finally:
            task.cancel()
            sock.close()

    out.send(new_event_loop().run_until_complete(main()))


def _bare_receiver(conn: Any, out: Any, seconds: float) -> None:
    decoder, resample = VoiceDecoder(), MonoResampler()

    class Frame:
        timestamp = 0

        def __init__(self, data: bytes) -> None:
            self.data = data

    class Receiver(asyncio.DatagramProtocol):
        frames = 0

        def datagram_received(self, data: bytes, addr: Any) -> None:
            for frame in decoder.decode(Frame(data)):
                if resample(frame):  # as drain_track hands on a frame's PCM
                    Receiver.frames += 1

    async def main() -> tuple[float, int, int]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Receiver,
                                                           local_addr=("127.0.0.1", 0))
        conn.send(transport.get_extra_info("sockname"))
        while not Receiver.frames:
            await asyncio.sleep(0.01)
        try:
            return await _measure(seconds, lambda: Receiver.frames)
        finally:
            transport.close()

    out.send(new_event_loop().run_until_complete(main()))


WAYS = {"aiortc": (_aiortc_sender, _aiortc_receiver),
        "lean": (_lean_sender, _lean_receiver),
        "bare": (_bare_sender, _bare_receiver)}


def run(way: str, seconds: float) -> tuple[float, float, float, float]:
    """One pair of processes sending ``way``: CPU µs per packet, sender and receiver,
    then wake-ups per packet, sender and receiver."""
    ctx = multiprocessing.get_context("spawn")
    sender_peer, receiver_peer = ctx.Pipe()
    figures = []
    children = []
    for target, peer in zip(WAYS[way], (sender_peer, receiver_peer)):
        mine, theirs = ctx.Pipe()
        children.append(ctx.Process(target=target, args=(peer, theirs, seconds)))
        figures.append(mine)
    for child in children:
        child.start()
    try:
        results = []
        for mine in figures:
            if not mine.poll(seconds + 30):
                raise TimeoutError(f"{way}: a side did not report")
            results.append(mine.recv())
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    (sender_cpu, sender_woken, sent), (receiver_cpu, receiver_woken, received) = results
    if not sent or not received:
        raise RuntimeError(f"{way}: nothing went through ({sent} sent, {received} received)")
    return (sender_cpu / sent * 1e6, receiver_cpu / received * 1e6,
            sender_woken / sent, receiver_woken / received)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtp_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    print("| round | way | sender µs / packet | receiver µs / packet | wake-ups / packet "
          "(sender, receiver) |")
    print("|---|---|---|---|---|")
    spent: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    for round_ in range(1, args.rounds + 1):
        for way in WAYS:
            sender, receiver, sender_woken, receiver_woken = run(way, args.seconds)
            spent[way].append((sender, receiver))
            print(f"| {round_} | {way} | {sender:.0f} | {receiver:.0f} | "
                  f"{sender_woken:.2f}, {receiver_woken:.2f} |", flush=True)
    mean = {way: [sum(side) / len(side) for side in zip(*rows)] for way, rows in spent.items()}
    added = [a - b for a, b in zip(mean["aiortc"], mean["bare"])]
    lean = [a - b for a, b in zip(mean["lean"], mean["bare"])]
    print(f"aiortc adds {added[0]:.0f} µs a packet sending and {added[1]:.0f} receiving "
          f"(means over {args.rounds} rounds); the lean path {lean[0]:.0f} and "
          f"{lean[1]:.0f} ({mean['lean'][0] / mean['aiortc'][0]:.2f}× and "
          f"{mean['lean'][1] / mean['aiortc'][1]:.2f}× stock's)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
