"""Closed WebRTC peers freed a moment after they close, not at some full collection later.

An aiortc ``RTCPeerConnection`` lives in reference cycles (about 800 objects for a
connected pair, with its transports, tracks and codecs), so closing one frees nothing
until Python's cycle collector runs a full collection. A voxrelay service allocates few
containers per frame and so collects rarely: in a minute of four conversations the edge
ran seven young collections and no full one. Forty closed peers held 40 MB that way in an
isolated run; in the stack the edge and the link grew 1.2–1.9 MB with each round of four
conversations started and ended.

So every service freezes what it built while starting (:func:`freeze_startup`: the
imported modules, its sockets and settings, about 50 000 objects that a full collection
would walk for 18 ms), and a service that closes peers asks for a collection
(:func:`collect_soon`) once they are closed: one, ``DELAY_S`` after the last request,
walking only what was made since start (3 ms with five live peer pairs). Each pause is in
``voxrelay_reclaim_seconds``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from prometheus_client import Histogram

logger = logging.getLogger(__name__)

DELAY_S = 1.0
"How long after the last closed peer the collection runs (one for a burst of closes)."

RECLAIM_SECONDS = Histogram(
    "voxrelay_reclaim_seconds",
    "Full garbage collections run after WebRTC peers closed: how long each held the loop",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5))

_due_on: asyncio.AbstractEventLoop | None = None
"The loop a collection is due on (a service has one; tests start many)."


def freeze_startup() -> None:
    """Collect once, then move every object alive now out of the collector's reach (for
    good: what a service builds at start lives as long as it does)."""
    gc.collect()
    gc.freeze()


def collect_soon(delay_s: float = DELAY_S) -> None:
    """Run a full collection ``delay_s`` from now on the running loop, unless one is due
    already (a burst of closes costs one)."""
    global _due_on
    loop = asyncio.get_running_loop()
    if _due_on is not loop:
        _due_on = loop
        loop.call_later(delay_s, _collect)


def _collect() -> None:
    global _due_on
    _due_on = None
    began = time.perf_counter()
    found = gc.collect()
    took = time.perf_counter() - began
    RECLAIM_SECONDS.observe(took)
    logger.debug("collected %d objects in %.1f ms", found, took * 1000)
