"""How a Realtime connection becomes usable, whatever carries it (WebRTC or WebSocket).

Once the transport is up the link sends ``session.update`` and waits for
``session.updated`` (an ``error`` naming the update refuses it); then, on a reconnect,
it replays the conversation so far — one ``conversation.item.create`` each — and waits,
bounded, until the API has added them (``conversation.item.done``, the oldest
outstanding first as events are ordered, or an ``error`` naming one). Then the
connection is ready. :class:`Handshake` keeps that state for one connection; the
transport gives it a ``send`` and shows it every server event (:meth:`observe`).
:class:`Connection` is what both transports offer the session on top of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import calls_api
from . import realtime_events as rt
from .calls_api import CallSettings
from .errors import RealtimeUnavailable
from .metrics import CONNECT_SECONDS, CONNECTS

logger = logging.getLogger(__name__)

SESSION_UPDATED_TIMEOUT_S = 5.0
REPLAY_TIMEOUT_S = 3.0
"How long the replayed conversation's items may take to be added before the call is used."


def event_id() -> str:
    return f"event_link_{uuid.uuid4().hex[:20]}"


class Handshake:
    def __init__(self, name: str, settings: CallSettings, send: Callable[[dict[str, Any]], None],
                 context: Sequence[dict[str, Any]] = ()) -> None:
        self.name = name
        self.settings = settings
        self.context = tuple(context)
        "Client events that give the new session the conversation so far (sent in order)."
        self._send = send
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = loop.create_future()
        self._ready.add_done_callback(_retrieve)
        self._updated: asyncio.Future[None] = loop.create_future()
        self._updated.add_done_callback(_retrieve)
        self._update_id = ""
        self._replay_ids: dict[str, None] = {}
        "Replayed events not yet answered, in the order sent."
        self._replay_refused = 0
        self._replayed = asyncio.Event()

    def __repr__(self) -> str:
        return f"Handshake({self.name})"

    @property
    def became_ready(self) -> bool:
        """The connection was usable at some point (it may have ended since)."""
        return (self._ready.done() and not self._ready.cancelled()
                and self._ready.exception() is None)

    async def wait_ready(self) -> None:
        """Returns once usable; raises RealtimeUnavailable if it never became so."""
        await asyncio.shield(self._ready)

    def succeed(self) -> None:
        self._ready.set_result(None)

    def fail(self, error: RealtimeUnavailable) -> None:
        for future in (self._ready, self._updated):
            if not future.done():
                future.set_exception(error)

    async def configure(self, guard: Callable[[Awaitable[Any], str], Awaitable[Any]]) -> None:
        """``session.update``, then the replay; ``guard`` wraps each wait (it may raise
        RealtimeUnavailable if the transport goes first). Raises TimeoutError if stuck."""
        self._update_id = event_id()
        self._send({"type": "session.update", "event_id": self._update_id,
                    "session": calls_api.session_config(self.settings)})
        async with asyncio.timeout(SESSION_UPDATED_TIMEOUT_S):
            await guard(asyncio.shield(self._updated), "waiting for session.updated")
        if not self.context:
            return
        for event in self.context:
            replay_id = event_id()
            self._replay_ids[replay_id] = None
            self._send({**event, "event_id": replay_id})
        try:
            async with asyncio.timeout(REPLAY_TIMEOUT_S):
                await guard(self._replayed.wait(), "replaying the conversation")
        except TimeoutError:
            logger.warning("%s: %d of %d replayed items not acknowledged within %s s; "
                           "using the connection anyway", self.name, len(self._replay_ids),
                           len(self.context), REPLAY_TIMEOUT_S)
            return
        logger.info("%s: replayed %d conversation items (%d refused)", self.name,
                    len(self.context), self._replay_refused)

    def observe(self, event: rt.AnyServerEvent | rt.OtherEvent) -> None:
        """A server event: the ones that answer the handshake move it on."""
        match event:
            case rt.SessionUpdated() if not self._updated.done():
                self._updated.set_result(None)
            case rt.ServerError(error=error) if (
                    error.event_id == self._update_id and not self._updated.done()):
                self._updated.set_exception(RealtimeUnavailable(
                    f"session.update refused: {error.code}: {error.message}"))
            case rt.ServerError(error=error) if error.event_id in self._replay_ids:
                logger.warning("%s: a replayed item was refused: %s: %s", self.name, error.code,
                               error.message)
                self._replay_answered(error.event_id, refused=True)
            case rt.OtherEvent(type="conversation.item.done"):
                self._replay_answered(None, refused=False)
            case _:
                pass

    def _replay_answered(self, replay_id: str | None, refused: bool) -> None:
        if not self._replay_ids or self._replayed.is_set():
            return
        if refused:
            self._replay_ids.pop(replay_id or "", None)
            self._replay_refused += 1
        else:
            del self._replay_ids[next(iter(self._replay_ids))]
        if not self._replay_ids:
            self._replayed.set()


class Connection:
    """What a Realtime connection offers its session, whichever transport carries it."""

    handshake: Handshake
    _gone: asyncio.Event
    "Set once the transport has ended (or failed)."

    @property
    def context(self) -> tuple[dict[str, Any], ...]:
        return self.handshake.context

    @property
    def became_ready(self) -> bool:
        """It was usable at some point (it may have ended since)."""
        return self.handshake.became_ready

    @property
    def ready(self) -> bool:
        """Connected and configured (and not yet ended)."""
        return self.became_ready and not self._gone.is_set()

    async def wait_ready(self) -> None:
        """Returns once usable; raises RealtimeUnavailable if it never became so."""
        await self.handshake.wait_ready()

    def send(self, event: dict[str, Any]) -> bool:
        """Send a client event on a usable connection; False (not sent) otherwise."""
        if not self.ready:
            return False
        self._send(event)
        return True

    def _send(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def _connected(self, began: float) -> None:
        """The transport is up and the session configured (``began``: time.monotonic())."""
        took = time.monotonic() - began
        CONNECTS.labels("ok").inc()
        CONNECT_SECONDS.observe(took)
        logger.info("%r connected in %.2f s", self, took)
        self.handshake.succeed()

    def _unavailable(self, error: RealtimeUnavailable) -> None:
        CONNECTS.labels("unavailable").inc()
        logger.warning("%r could not connect: %s", self, error)
        self.handshake.fail(error)

    def _fail(self, error: RealtimeUnavailable) -> None:
        self.handshake.fail(error)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a failure as seen (nobody may be waiting for it any more)."""
    if not future.cancelled():
        future.exception()
