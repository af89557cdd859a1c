"""What one audio frame on the bus costs in CPU, sender and receiver, by how it is sent.

``.venv/bin/python -m benchmarks.bus_cost [--rate 400] [--seconds 8]`` paces frames
(topic, a msgpack header and 960 bytes of PCM, as ``proto.audio.pack`` makes them) at
``rate`` a second from one process to a subscriber in another, as the edge, the mixer and
the link do, and prints the CPU each process spent per frame (``os.times``: the ZeroMQ
I/O thread included). Ways: ZeroMQ PUB→SUB over tcp and ipc, one frame per message and
eight per message, and, as the floor, a Unix datagram socket. The publisher's figure
includes pacing itself (one sleep per message), printed on its own first.

``--calls`` instead times the Python calls alone, in one process: sending and reading a
frame with pyzmq's ``send_multipart``/``recv_multipart`` against voxrelay's
``send_nowait``/``recv_parts`` (:mod:`services.runtime.zmq_loop`), alternating rounds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import select
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from proto import audio, ids, topics
from services.runtime.zmq_loop import recv_parts, send_nowait

WAIT_S = 0.5
"Time the subscriber gets to connect before the first frame."


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def frame() -> list[bytes]:
    return audio.pack(topics.aud_mix(ids.new_id()), 1, time.time_ns(), bytes(audio.FRAME_BYTES))


def paced(count: int, rate: float, send: Any) -> float:
    """Call ``send()`` ``count`` times at ``rate`` a second; CPU seconds spent."""
    began, start = cpu_s(), time.monotonic()
    for i in range(count):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        send()
    return cpu_s() - began


def receive(wait: Any, read: Any, empty: type[Exception], frames: int, seconds: float,
            out: Any) -> None:
    """Until ``frames`` arrived or ``seconds`` passed: ``wait(ms)`` for input, then
    ``read()`` (frames in one message) until it raises ``empty``; puts (frames, CPU
    seconds) on ``out``."""
    got, began, deadline = 0, cpu_s(), time.monotonic() + seconds
    while got < frames and time.monotonic() < deadline:
        if wait(100):
            try:
                while True:
                    got += read()
            except empty:
                pass
    out.put((got, cpu_s() - began))


def zmq_receiver(endpoint: str, frames: int, seconds: float, out: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    receive(poller.poll, lambda: len(sock.recv_multipart(zmq.NOBLOCK)) // 3, zmq.Again,
            frames, seconds, out)
    sock.close(0)
    ctx.term()


def datagram_receiver(path: str, frames: int, seconds: float, out: Any) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    receive(poll.poll, lambda: len(sock.recv(4096)) and 1, BlockingIOError, frames, seconds,
            out)
    sock.close()


def run_zmq(endpoint: str, batch: int, frames: int, rate: float, seconds: float
            ) -> tuple[int, float, float]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.bind(endpoint)
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    receiver = mp.Process(target=zmq_receiver, args=(endpoint, frames, seconds + 5, out))
    receiver.start()
    time.sleep(WAIT_S + 1.0)  # a spawned interpreter starts, then connects
    parts = frame() * batch
    sent = paced(frames // batch, rate / batch, lambda: sock.send_multipart(parts))
    got, received = out.get(timeout=seconds + 10)
    receiver.join()
    sock.close(0)
    ctx.term()
    return got, sent, received


def run_datagram(folder: Path, frames: int, rate: float, seconds: float
                 ) -> tuple[int, float, float]:
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    path = str(folder / "frames.sock")
    receiver = mp.Process(target=datagram_receiver, args=(path, frames, seconds + 5, out))
    receiver.start()
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(path)
    message = b"".join(frame())
    sent = paced(frames, rate, lambda: sock.send(message))
    got, received = out.get(timeout=seconds + 10)
    receiver.join()
    sock.close()
    return got, sent, received


CALLS = 5000
"Frames per round of ``--calls``: fewer than either socket's high-water mark."
CALL_ROUNDS = 5


def call_costs() -> dict[str, list[float]]:
    """µs a frame for each way of sending and reading one, per round (see the module)."""
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for sock in (pub, sub):
        sock.setsockopt(zmq.SNDHWM if sock is pub else zmq.RCVHWM, 2 * CALLS)
        sock.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    pub.bind("tcp://127.0.0.1:*")
    sub.connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    time.sleep(WAIT_S)
    parts = frame()
    ways = {"send_multipart": lambda: pub.send_multipart(parts, zmq.NOBLOCK),
            "send_nowait": lambda: send_nowait(pub, parts),
            "recv_multipart": lambda: sub.recv_multipart(zmq.NOBLOCK),
            "recv_parts": lambda: recv_parts(sub)}
    costs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(CALL_ROUNDS):
        for send, read in (("send_multipart", "recv_multipart"),
                           ("send_nowait", "recv_parts")):
            began = time.perf_counter()
            for _ in range(CALLS):
                ways[send]()
            costs[send].append((time.perf_counter() - began) * 1e6 / CALLS)
            time.sleep(WAIT_S)  # every frame reaches the subscriber's queue
            began = time.perf_counter()
            for _ in range(CALLS):
                ways[read]()
            costs[read].append((time.perf_counter() - began) * 1e6 / CALLS)
    pub.close()
    sub.close()
    ctx.term()
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bus_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0,
                        help="frames a second (400: eight conversations' aud/in)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--calls", action="store_true",
                        help="time only the Python calls that send and read a frame")
    args = parser.parse_args(argv)
    if args.calls:
        print("| call | µs a frame, by round |")
        print("|---|---|")
        for name, costs in call_costs().items():
            print(f"| {name} | {' '.join(f'{c:.2f}' for c in costs)} |")
        return 0
    frames = int(args.rate * args.seconds)
    frames -= frames % 8
    pacing = paced(frames, args.rate, lambda: None)
    print(f"{frames} frames at {args.rate:.0f}/s; pacing alone costs the publisher "
          f"{pacing * 1e6 / frames:.1f} µs a frame")
    print("| way | frames received | publisher µs/frame | subscriber µs/frame | both |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        runs = [(f"zmq {name}, {batch} per message",
                 lambda e=endpoint, b=batch: run_zmq(e, b, frames, args.rate, args.seconds))
                for name, endpoint in (("tcp", "tcp://127.0.0.1:*"),
                                       ("ipc", f"ipc://{folder}/bus.sock"))
                for batch in (1, 8)]
        runs.append(("unix datagram, 1 per message",
                     lambda: run_datagram(Path(folder), frames, args.rate, args.seconds)))
        for name, run in runs:
            got, sent, received = run()
            print(f"| {name} | {got} | {sent * 1e6 / frames:.1f} | "
                  f"{received * 1e6 / frames:.1f} | {(sent + received) * 1e6 / frames:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
