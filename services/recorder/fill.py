"""Gap fills: the events the bus did not deliver, fetched from their producers' outboxes.

Every service keeps its last published events (``GetOutbox``, see
``services/runtime/outbox.py``). The recorder asks a producer for what it is missing
when the bookkeeping in ``gaps.py`` says so: a seq beyond a gap arrived, a stream was
first seen past seq 1 (the recorder restarted: where it stopped comes from the store),
or an instance was heard for the first time or with a new start time (its heartbeat
carries its RPC endpoint). Fetched events go through the same writer as live ones;
the store keeps one row per ``(producer, epoch, seq)``, so overlaps cost nothing.

Bounded: at most :data:`FILL_LIMIT` events per call, :data:`FILL_TIMEOUT_S` per call,
one fill in flight per producer, :data:`RETRY_AFTER_S` before trying a failed producer
again. Events evicted from an outbox before they could be fetched are counted
(``voxrelay_recorder_events_lost_total``), logged, and marked in the store so a
restarted recorder does not look for them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
from prometheus_client import Counter

from proto import events, heartbeat, rpc
from services.runtime.heartbeat import Registry
from services.runtime.rpc import RpcClient

from .gaps import Gaps, Stream
from .store import StreamMark
from .writer import BatchWriter

logger = logging.getLogger(__name__)

FILL_LIMIT = 500
FILL_TIMEOUT_S = 2.0
RETRY_AFTER_S = 1.0
"A producer whose fill failed is asked again after this long."
REFILL_AFTER_S = 0.1
"A stream still missing events after a fill is filled again no sooner than this."
SCAN_INTERVAL_S = 0.5

FILLED = Counter("voxrelay_recorder_events_filled_total",
                 "Events the recorder fetched from a producer's outbox, not from the bus")
LOST = Counter("voxrelay_recorder_events_lost_total",
               "Events gone from their producer (evicted from its outbox, or the producer "
               "restarted) before the recorder had them")
FILL_ERRORS = Counter("voxrelay_recorder_fill_errors_total",
                      "GetOutbox calls that failed (retried later)", ["code"])


class Filler:
    """Decides which producers to ask, asks them, and hands what they send to the writer."""

    def __init__(self, ctx: zmq.Context[Any], instance: str, writer: BatchWriter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gaps = Gaps()
        self.registry = Registry(clock)
        self._ctx = ctx
        self._instance = instance
        self._writer = writer
        self._clock = clock
        self._clients: dict[str, RpcClient] = {}
        self._in_flight: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._probed: dict[str, float] = {}
        "Producer → the heartbeat ``started_at`` its outbox was last read for."
        self._wake = asyncio.Event()

    def on_event(self, event: events.AnyEvent) -> bool:
        """Note a live event; True if it was not received before (store it)."""
        observed = self.gaps.observe(event.producer, event.epoch, event.seq)
        if observed.ended is not None:
            self._stream_ended(observed.ended)
        if observed.stream is not None and not observed.stream.complete:
            self._wake.set()
        return observed.new

    def on_heartbeat(self, beat: heartbeat.Heartbeat) -> None:
        self.registry.observe(beat)
        if beat.instance != self._instance and self._probed.get(beat.instance) != beat.started_at:
            self._wake.set()

    async def run(self) -> None:
        """Start fills as they are due, until cancelled (which cancels those in flight)."""
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SCAN_INTERVAL_S):
                            await self._wake.wait()
                    self._wake.clear()
                    for producer, beat in self._due():
                        self._in_flight.add(producer)
                        tg.create_task(self._fill(producer, beat), name=f"fill-{producer}")
        finally:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _due(self) -> list[tuple[str, heartbeat.Heartbeat]]:
        now = self._clock()
        wanted = set(self.gaps.needing_fill())
        wanted.update(beat.instance for beat in self.registry.alive()
                      if self._probed.get(beat.instance) != beat.started_at)
        due = []
        for producer in sorted(wanted - self._in_flight - {self._instance}):
            beat = self.registry.get(producer)
            if beat is not None and beat.rpc and self._retry_at.get(producer, 0.0) <= now:
                due.append((producer, beat))
        return due

    async def _fill(self, producer: str, beat: heartbeat.Heartbeat) -> None:
        try:
            await self._fill_from(self._client(producer, beat.rpc), producer)
            self._probed[producer] = beat.started_at
            self._retry_at[producer] = self._clock() + REFILL_AFTER_S
        except rpc.RpcError as e:
            FILL_ERRORS.labels(e.code).inc()
            self._retry_at[producer] = self._clock() + RETRY_AFTER_S
            logger.info("Filler(%s): GetOutbox to %s failed (%s); retrying in %g s",
                        self._instance, producer, e, RETRY_AFTER_S)
        finally:
            self._in_flight.discard(producer)
            self._wake.set()

    async def _fill_from(self, client: RpcClient, producer: str) -> None:
        bounds = await self._call(client, rpc.GetOutbox(after_seq=0, limit=0))
        if bounds.epoch == 0:
            return
        stream, ended = self.gaps.begin(producer, bounds.epoch)
        if ended is not None:
            self._stream_ended(ended)
        if stream.contiguous is None:
            await self._writer.commit()
            stream.load(await self._writer.read(
                lambda store: store.contiguous(producer, bounds.epoch)))
        while True:
            after = stream.contiguous or 0
            reply = await self._call(client, rpc.GetOutbox(after_seq=after, limit=FILL_LIMIT))
            if reply.epoch != stream.epoch:
                return  # restarted meanwhile: the next fill starts on its new stream
            self._skip_lost(stream, reply.first_seq)
            self._store(stream, max(after + 1, reply.first_seq), reply.events)
            if not reply.events or (stream.contiguous or 0) >= reply.next_seq - 1:
                return

    def _skip_lost(self, stream: Stream, first_seq: int) -> None:
        lost = stream.advance(first_seq - 1)
        if lost:
            LOST.inc(lost)
            logger.warning("Filler(%s): %d events of %s (epoch %d) before seq %d were evicted "
                           "from its outbox before they could be recorded", self._instance,
                           lost, stream.producer, stream.epoch, first_seq)
            self._writer.submit(StreamMark(stream.producer, stream.epoch, first_seq - 1, lost))

    def _store(self, stream: Stream, first_seq: int, bodies: list[bytes]) -> None:
        for seq, body in enumerate(bodies, start=first_seq):
            try:
                event = events.decode(body)
            except events.EventError as e:  # a tag from a newer voxrelay: skip it for good
                logger.warning("Filler(%s): %s seq %d not decodable: %s", self._instance,
                               stream.producer, seq, e)
                stream.receive(seq)
                continue
            if self.gaps.observe(event.producer, event.epoch, event.seq).new:
                FILLED.inc()
                self._writer.submit(event)

    def _stream_ended(self, stream: Stream) -> None:
        lost = stream.missing()
        if stream.contiguous is not None and lost > 0:
            LOST.inc(lost)
            logger.warning("Filler(%s): %s restarted; %d events of its epoch %d after seq %d "
                           "never arrived", self._instance, stream.producer, lost, stream.epoch,
                           stream.contiguous)
            self._writer.submit(StreamMark(stream.producer, stream.epoch, stream.highest, lost))

    def _client(self, producer: str, endpoint: str) -> RpcClient:
        client = self._clients.get(producer)
        if client is None or client.endpoint != endpoint:
            if client is not None:
                client.close()
            client = self._clients[producer] = RpcClient(self._ctx, endpoint,
                                                         f"{self._instance}->{producer}")
        return client

    async def _call(self, client: RpcClient, request: rpc.GetOutbox) -> rpc.Outbox:
        reply = await client.call(request, timeout=FILL_TIMEOUT_S, retries=0)
        if not isinstance(reply, rpc.Outbox):
            raise rpc.RpcError("internal", f"GetOutbox answered {type(reply).__name__}")
        return reply
