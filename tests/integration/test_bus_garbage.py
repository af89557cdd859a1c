"""Hostile bytes on every ZeroMQ socket of a running stack: dropped, counted, never fatal.

``voxrelay up`` runs every service as its own process. The test finds every socket a
peer could reach — the bus forwarder's two sides from the configuration, each service's
RPC and audio endpoints from its heartbeats — and sends each a bounded burst of hostile
messages through a ZeroMQ peer of the fitting type: random bytes, wrong frame counts,
empty frames, 2 MiB blobs, valid msgpack of the wrong shape, truncated real messages.
Raw TCP garbage goes to every port as well, and, by asking the mixer over RPC to take a
client's audio from the test's own publisher, malformed audio frames reach an audio
subscriber. Afterwards no process has died or been restarted, a new conversation gets a
spoken reply and a stored transcript, and every service counted what it rejected.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import zmq

from proto import audio, events, heartbeat, ids, rpc, topics
from services.runtime.rpc import RpcClient
from services.supervisor.status import Metrics, scrape_by_kind
from tests.support.converse import converse, stored_transcript
from tests.support.up import Up, running_up

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

PER_SOCKET = 200
"Hostile messages sent to each socket..."
SEND_WINDOW_S = 5.0
"...within at most this long."
BLOBS = 2
"2 MiB single-frame messages among them (each makes libzmq drop the sender's connection)."
BLOB_BYTES = 2 * 1024 * 1024
RAW_CONNECTIONS = 10
"Plain TCP connections to each port, each writing random bytes."
DISCOVER_TIMEOUT_S = 15.0
FLUSH_LINGER_MS = 2000
SERVICES = {"signaling", "media_edge", "mixer", "openai_link", "recorder"}
REJECTED = "voxrelay_bus_messages_rejected_total"
PHRASE = "what is the weather like today"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path, edges=1) as up:
        yield up


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


# -- what to send ---------------------------------------------------------------------------

def wrong_shapes() -> list[bytes]:
    """Valid msgpack that is no message of the wire contract."""
    values: list[Any] = [
        0, -1, 2**63, 1.5, None, True, "text", b"bytes", [1, 2, 3], [[[[[]]]]], {},
        {"a": 1}, {"type": "no.such.event", "session_id": ids.new_id()},
        {"type": "ai.state", "session_id": 5}, {"op": "start_session"},
        {"op": "add_client", "session_id": [], "client_id": {}},
        {"service": "mixer", "instance": 1, "pid": "x"},
    ]
    return [msgspec.msgpack.encode(value) for value in values]


def real_bodies() -> list[bytes]:
    """Real messages of each kind, to be sent only truncated."""
    sid = ids.new_id()
    return [
        events.encode(events.AiState(session_id=sid, state="listening", producer="hostile",
                                     seq=1, epoch=1)),
        heartbeat.encode(heartbeat.Heartbeat(service="mixer", instance="hostile", pid=1,
                                             rpc="tcp://127.0.0.1:1", started_at=0.0, ts=0.0)),
        rpc.encode(rpc.StartSession(session_id=sid, request_id="r1")),
        rpc.encode(rpc.Ping(request_id="r2")),
    ]


def truncated(rng: random.Random, body: bytes) -> bytes:
    """A strict prefix: never a whole msgpack object, so never a valid message."""
    return body[:rng.randrange(len(body))]


def hostile(rng: random.Random, prefixes: list[list[bytes]]) -> Iterator[list[bytes]]:
    """:data:`PER_SOCKET` hostile multipart messages, each after one of ``prefixes``
    (the frames that get it past a socket's routing: a topic, the RPC protocol, nothing),
    the 2 MiB blobs last."""
    shapes, bodies = wrong_shapes(), real_bodies()
    makers = [
        lambda: [rng.randbytes(rng.randrange(0, 512))],
        lambda: [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 8))],
        lambda: [b""] * rng.randrange(1, 6),
        lambda: [rng.choice(shapes)],
        lambda: [truncated(rng, rng.choice(bodies))],
        lambda: [truncated(rng, rng.choice(bodies)), rng.randbytes(8)],
    ]
    for _ in range(PER_SOCKET - BLOBS):
        yield rng.choice(prefixes) + rng.choice(makers)()
    for _ in range(BLOBS):
        yield [rng.randbytes(1) + bytes(BLOB_BYTES)]


def hostile_audio(rng: random.Random, topic: bytes) -> Iterator[list[bytes]]:
    """Malformed ``aud/in`` frames on a topic a subscriber asked for."""
    pcm = bytes(audio.FRAME_BYTES)

    def header(**fields: int) -> bytes:
        values = {"version": audio.VERSION, "seq": 1, "capture_ns": time.time_ns(),
                  "sample_rate": audio.SAMPLE_RATE, "channels": audio.CHANNELS,
                  "samples": audio.FRAME_SAMPLES, "sent_ns": 0, **fields}
        return msgspec.msgpack.encode(audio.AudioHeader(**values))

    makers = [
        lambda: [topic],
        lambda: [topic, b""],
        lambda: [topic, rng.randbytes(rng.randrange(0, 40)), pcm],
        lambda: [topic, truncated(rng, header()), pcm],
        lambda: [topic, header(), pcm, b"extra"],
        lambda: [topic, header(version=2), pcm],
        lambda: [topic, header(sample_rate=16_000), pcm],
        lambda: [topic, header(), pcm[:rng.randrange(len(pcm))]],
        lambda: [topic, header(samples=100), bytes(200)],
        lambda: [topic + b"/../" + rng.randbytes(8), header(), pcm],
        lambda: [topic, rng.choice(wrong_shapes()), pcm],
    ]
    for _ in range(PER_SOCKET - BLOBS):
        yield rng.choice(makers)()
    for _ in range(BLOBS):  # a subscriber has no size limit: this one is read and refused
        yield [topic, header(), bytes(BLOB_BYTES)]


# -- how to send it ---------------------------------------------------------------------------

def send_all(ctx: zmq.Context[Any], kind: int, endpoint: str,
             messages: Iterator[list[bytes]]) -> int:
    """Connect a ``kind`` socket to ``endpoint`` and send without blocking, within
    :data:`SEND_WINDOW_S`; the number sent. An XPUB first waits for the forwarder's
    subscriptions, as it sends only what someone subscribed to."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, FLUSH_LINGER_MS)
    sock.connect(endpoint)
    sent = 0
    deadline = time.monotonic() + SEND_WINDOW_S
    try:
        if kind == zmq.XPUB:
            assert sock.poll(SEND_WINDOW_S * 1000), f"{endpoint}: no subscription arrived"
        for parts in messages:
            if time.monotonic() > deadline:
                break
            try:
                sock.send_multipart(parts, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.01)
    finally:
        sock.close()
    return sent


def raw_garbage(rng: random.Random, endpoint: str) -> None:
    """Plain TCP writes: random bytes, and a ZMTP greeting followed by random bytes."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    greeting = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + bytes(32)
    for number in range(RAW_CONNECTIONS):
        with socket.create_connection((host, int(port)), timeout=2.0) as conn:
            head = greeting if number % 2 else b""
            try:
                conn.sendall(head + rng.randbytes(rng.randrange(1, 4096)))
            except OSError:
                pass  # refused mid-write: what it is for


def discover(ctx: zmq.Context[Any], bus_subscribe: str) -> dict[str, heartbeat.Heartbeat]:
    """Every service instance's latest heartbeat, as services find each other."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(bus_subscribe)
    sub.subscribe(topics.SYS_HB)
    beats: dict[str, heartbeat.Heartbeat] = {}
    deadline = time.monotonic() + DISCOVER_TIMEOUT_S
    try:
        while {b.service for b in beats.values()} < SERVICES or len(beats) < len(SERVICES):
            assert time.monotonic() < deadline, f"heartbeats heard: {sorted(beats)}"
            if sub.poll(200):
                beat = heartbeat.decode(sub.recv_multipart()[1])
                beats[beat.instance] = beat
    finally:
        sub.close()
    return beats


def children(up: Up) -> dict[str, int]:
    """Every process the supervisor started, by name (a restart would add one)."""
    started = re.findall(r"started (\S+) \(pid (\d+)\)", up.log_text())
    names = [name for name, _ in started]
    assert len(names) == len(set(names)), f"a process was restarted: {names}"
    return {name: int(pid) for name, pid in started}


# -- what the stack must do about it -------------------------------------------------------------

async def feed_a_mixer_client_hostile_audio(ctx: zmq.Context[Any], mixer_rpc: str,
                                            rng: random.Random) -> None:
    """Ask the mixer (over its RPC, as signaling would) to mix a client whose audio comes
    from the test's publisher; then publish malformed frames on that client's topic."""
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, FLUSH_LINGER_MS)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    session_id, client_id = ids.new_id(), ids.new_id()
    client = RpcClient(ctx, mixer_rpc, "hostile->mixer")
    try:
        await client.call(rpc.StartSession(session_id=session_id))
        await client.call(rpc.AddClient(session_id=session_id, client_id=client_id,
                                        edge_audio=endpoint))
        async with asyncio.timeout(10):  # the mixer's subscription: its SUB is listening
            while not pub.poll(0):
                await asyncio.sleep(0.05)
        pub.recv_multipart()
        topic = topics.aud_in(session_id, client_id)
        sent = 0
        for parts in hostile_audio(rng, topic):
            pub.send_multipart(parts)
            sent += 1
        assert sent == PER_SOCKET
        await asyncio.sleep(0.5)
        await client.call(rpc.StopSession(session_id=session_id, reason="test over"))
    finally:
        client.close()
        pub.close()


async def healthz_pids(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200, await resp.text()
        services = (await resp.json())["services"]
    return {i["instance"]: i["pid"] for instances in services.values() for i in instances}


def rejected(metrics: Metrics, sock: str | None = None) -> float:
    return sum(value for (name, labels), value in metrics.values.items()
               if name == REJECTED and (sock is None or ("socket", sock) in labels))


async def test_hostile_bytes_on_every_socket_are_dropped_and_the_stack_keeps_serving(
        stack: Up, ctx: zmq.Context[Any]):
    rng = random.Random(20240611)
    async with aiohttp.ClientSession() as http:
        pids_before = await healthz_pids(http, stack.url)
    processes = children(stack)
    beats = await asyncio.to_thread(discover, ctx, stack.env["VOXRELAY_BUS_SUBSCRIBE"])

    targets: list[tuple[str, int, str, list[list[bytes]]]] = [
        # bus publishers' side: topics subscribers take (the forwarder takes no others)
        ("bus publish", zmq.XPUB, stack.env["VOXRELAY_BUS_PUBLISH"],
         [[topics.evt("turn.start", ids.new_id())], [topics.sys_hb("hostile")],
          [b"evt/"], [b"sys/hb/"], [b"evt/" + rng.randbytes(12)]]),
        # bus subscribers' side: subscriptions and anything else an XSUB can send up
        ("bus subscribe", zmq.XSUB, stack.env["VOXRELAY_BUS_SUBSCRIBE"],
         [[], [b"\x01" + rng.randbytes(6)], [b"\x00"]]),
    ]
    for beat in beats.values():
        targets.append((f"{beat.instance} rpc", zmq.DEALER, beat.rpc,
                        [[], [rpc.PROTOCOL], [b"voxrelay.rpc/0"]]))
        if beat.audio:
            targets.append((f"{beat.instance} audio", zmq.XSUB, beat.audio,
                            [[], [b"\x01" + rng.randbytes(6)]]))
    for what, kind, endpoint, prefixes in targets:
        sent = await asyncio.to_thread(send_all, ctx, kind, endpoint, hostile(rng, prefixes))
        assert sent > PER_SOCKET // 2, f"{what}: only {sent} sent"
        await asyncio.to_thread(raw_garbage, rng, endpoint)
    mixer = next(beat for beat in beats.values() if beat.service == "mixer")
    await feed_a_mixer_client_hostile_audio(ctx, mixer.rpc, rng)

    # Every process is the one that was there before.
    assert stack.proc.poll() is None
    assert children(stack) == processes
    for pid in processes.values():
        os.kill(pid, 0)  # alive: a dead child would have been reaped and restarted
    async with aiohttp.ClientSession() as http:
        assert await healthz_pids(http, stack.url) == pids_before

    # A conversation still works end to end: a spoken turn, a reply, a stored transcript.
    session = await converse(stack.url, [("kitchen", PHRASE)], "after the garbage")
    entries = await stored_transcript(stack.url, session["session_id"])
    assert any(e["speaker"] == "assistant" and e["text"] for e in entries), entries
    assert any(e["speaker"] != "assistant" for e in entries), entries
    assert children(stack) == processes

    # Each service counted what it refused, by the socket it came on.
    kinds = await scrape_by_kind(stack.url)
    assert SERVICES <= set(kinds)
    for kind in SERVICES:
        assert rejected(kinds[kind], "rpc_server") > 0, f"{kind}: no RPC message rejected"
    for kind in ("signaling", "media_edge", "recorder"):
        assert rejected(kinds[kind], "events") > 0, f"{kind}: no bus message rejected"
    assert rejected(kinds["mixer"], "aud_in") > 0, "mixer: no audio frame rejected"
