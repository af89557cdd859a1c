"""``voxrelay replay SID --events-only``: a recorded event stream, paced as it happened.

For tools and dashboards that consume events: every recorded event goes out again,
spaced as the originals were (divided by ``speed``; ``speed`` 0 means no pauses).

- ``--to stdout``: one JSON line per event, exactly as recorded.
- ``--to bus``: published on the event bus (``VOXRELAY_BUS_PUBLISH``) as a *new*
  session — a fresh session id, producer ``replay``, its own epoch and seq — so the
  recorder keeps it as a session of its own and nothing is mistaken for the original
  (whose events it already holds once each). With ``VOXRELAY_BUS_CURVE_SECRET_KEY`` it
  connects as a CURVE client of the bus, like every service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import zmq

from proto import events, ids
from services.runtime import ConfigError
from services.runtime.bus import EventPublisher
from services.runtime.bus_config import bus_from_env
from services.runtime.curve import cluster_key_from_env, secure

from .api import InspectError

PRODUCER = "replay"
SETTLE_S = 0.5
"Before the first and after the last event on the bus: subscriptions settle, sends flush."
MAX_PAUSE_S = 60.0
"A pause in the recording longer than this is shortened to it."


async def paced(log: Iterable[events.AnyEvent], speed: float,
                send: Callable[[events.AnyEvent], None]) -> int:
    """Send every event, waiting between two as long as between the originals / speed
    (a pause longer than :data:`MAX_PAUSE_S` is cut to it)."""
    due, last_ts, sent = time.monotonic(), None, 0
    for event in log:
        if speed > 0 and event.ts:
            if last_ts is not None:
                due += min(max(0.0, event.ts - last_ts) / speed, MAX_PAUSE_S)
            last_ts = event.ts
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        send(event)
        sent += 1
    return sent


def to_stdout(write: Callable[[str], Any]) -> Callable[[events.AnyEvent], None]:
    return lambda event: write(events.to_json(event) + "\n")


async def to_bus(log: list[events.AnyEvent], speed: float) -> tuple[str, int]:
    """Publish the log as a new session; (its id, events sent)."""
    session_id = ids.new_id()
    try:
        key = cluster_key_from_env({})
    except ConfigError as e:
        raise InspectError(str(e)) from e
    ctx: zmq.Context[Any] = zmq.Context()
    curve = secure(ctx, key)
    publisher = EventPublisher(ctx, bus_from_env(), PRODUCER)
    try:
        await asyncio.sleep(SETTLE_S)
        count = await paced(
            log, speed,
            lambda e: publisher.publish(msgspec.structs.replace(e, session_id=session_id)))
        await asyncio.sleep(SETTLE_S)
        return session_id, count
    finally:
        publisher.close()
        if curve is not None:
            curve.close()
        ctx.term()
