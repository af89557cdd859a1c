"""The link's WebSocket connection to the Realtime API: the fallback when WebRTC is not usable.

``GET {base}/realtime?model=…`` (``ws``/``wss`` for ``http``/``https``) with the standard
API key in ``Authorization: Bearer``; every event, both ways, is a JSON text message.
It offers what :class:`~.realtime_rtc.RealtimeConnection` offers :class:`~.session.LinkSession`
(``ready``, ``wait_ready``, ``run``, ``uplink.push`` with ``on_sent``, ``on_event``,
``on_audio``, the context replay, closing by cancelling ``run``), so the session does not
care which one it holds. What differs is the audio and who tracks playout:

- uplink: the mix goes as ``input_audio_buffer.append`` batches (:mod:`.ws_uplink`);
- downlink: ``response.output_audio.delta`` audio is decoded, framed and paced out at real
  time (:mod:`.ws_playout`); deltas are not passed to ``on_event`` (they are not recorded
  over WebRTC either, where the audio is on the track);
- playout events: the WebSocket transport has no ``output_audio_buffer.*`` events, so when
  a reply's local playout begins, ends, or is cut by a barge-in, the connection passes
  ``on_event`` an ``output_audio_buffer.started`` / ``stopped`` / ``cleared`` of its own,
  as the WebRTC transport would have had from the API. Their ``event_id`` begins with
  ``LOCAL_EVENT_PREFIX``, so a recording shows which ones the link made;
- barge-in: on ``input_audio_buffer.speech_started`` the unplayed model audio is dropped
  and the reply's item truncated at the position played (``conversation.item.truncate``;
  over WebRTC the API does it), once its response has ended (the API cancels it first);
  a refusal of that truncate is logged, not published.

Control events (``session.update``, the replay, truncation) are written before any
queued audio: an interrupt never waits behind the microphone.

Sideband (``call_id``): the same connection attached to a WebRTC call a browser holds
(direct mode): ``GET {base}/realtime?call_id=…`` with the standard key. The API sends it
every event of the call and takes client events (``session.update``, tool outputs);
the audio is on the browser's own tracks, so nothing is appended or played here. A 404
(the call is over) is a :class:`~.errors.CallRefused`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import msgspec

from . import realtime_events as rt
from .calls_api import CallSettings
from .config import LinkConfig
from .errors import CallRefused, RealtimeUnavailable, redact
from .handshake import Connection, Handshake, event_id
from .metrics import REALTIME_EVENTS_IGNORED
from .ws_playout import Interrupted, ModelPlayout
from .ws_uplink import WsUplink, append_event

logger = logging.getLogger(__name__)

TEARDOWN_TIMEOUT_S = 2.0
HEARTBEAT_S = 10.0
"WebSocket ping interval: a silent network failure is seen within about this."
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
LOCAL_EVENT_PREFIX = "event_link_local_"
"The event_id of the output_audio_buffer.* events the link makes for itself."
MAX_PENDING_TRUNCATES = 16

EventHandler = Callable[[rt.AnyServerEvent | rt.OtherEvent, str], None]
_T = TypeVar("_T")


class _AudioDelta(msgspec.Struct):
    response_id: str = ""
    item_id: str = ""
    delta: str = ""


_delta_decoder = msgspec.json.Decoder(_AudioDelta)


def realtime_url(base_url: str, model: str = "", call_id: str = "") -> str:
    """The WebSocket URL of a Realtime session for ``model`` under the API base, or of
    the sideband of the WebRTC call ``call_id`` (which takes no model)."""
    url = urlsplit(base_url)
    scheme = "wss" if url.scheme == "https" else "ws"
    query = urlencode({"call_id": call_id} if call_id else {"model": model})
    return f"{scheme}://{url.netloc}{url.path}/realtime?{query}"


class RealtimeWsConnection(Connection):
    def __init__(self, config: LinkConfig, http: aiohttp.ClientSession, settings: CallSettings,
                 *, name: str, on_event: EventHandler, on_audio: Callable[[bytes], None],
                 context: Sequence[dict[str, Any]] = (), call_id: str = "") -> None:
        self.config = config
        self.http = http
        self.settings = settings
        self.name = name
        self.call_id = call_id
        "Set: the sideband of a WebRTC call someone else holds (direct mode; no audio here)."
        self.url = realtime_url(config.base_url, config.model, call_id)
        self._on_event = on_event
        self._wake = asyncio.Event()
        self.uplink = WsUplink(self._wake.set)
        self.playout = ModelPlayout(on_audio, self._playout_started, self._playout_stopped)
        self._control: deque[str] = deque()
        "Control events to write, ahead of any audio."
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.handshake = Handshake(name, settings, self._send, context)
        self._gone = asyncio.Event()
        self._responding: set[str] = set()
        "Responses created and not yet done."
        self._truncates: OrderedDict[str, Interrupted] = OrderedDict()
        "Truncations waiting for their response to end, by response id."
        self._truncate_ids: set[str] = set()

    def __repr__(self) -> str:
        if self.call_id:
            return f"RealtimeWsConnection({self.name}, sideband of {self.call_id})"
        return f"RealtimeWsConnection({self.name})"

    async def run(self) -> None:
        began = time.monotonic()
        workers: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as tg:
                try:
                    await self._open(tg, workers)
                except RealtimeUnavailable as e:
                    self._unavailable(e)
                    for worker in workers:
                        worker.cancel()
                    return
                self._connected(began)
                workers.append(tg.create_task(self.playout.run()))
                await self._gone.wait()
                for worker in workers:
                    worker.cancel()
                logger.info("%r ended by the peer (close code %s)", self,
                            self._ws.close_code if self._ws is not None else None)
        finally:
            for worker in workers:
                worker.cancel()
            self._gone.set()
            self._fail(RealtimeUnavailable("the connection closed before it was ready"))
            await self._teardown()

    # -- connecting -------------------------------------------------------------

    async def _open(self, tg: asyncio.TaskGroup, workers: list[asyncio.Task[None]]) -> None:
        timeout = self.config.connect_timeout_s
        step = "opening the WebSocket"
        try:
            async with asyncio.timeout(timeout):
                self._ws = await self._connect()
                workers.append(tg.create_task(self._read(self._ws)))
                workers.append(tg.create_task(self._write(self._ws)))
                step = "configuring the session"
                await self.handshake.configure(self._unless_gone)
        except TimeoutError as e:
            raise RealtimeUnavailable(
                f"no usable Realtime WebSocket within {timeout:g} s (stuck {step})") from e

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {self.config.api_key.reveal()}"}
        try:
            return await self.http.ws_connect(self.url, headers=headers, heartbeat=HEARTBEAT_S,
                                              max_msg_size=MAX_MESSAGE_BYTES, compress=0)
        except aiohttp.WSServerHandshakeError as e:
            message = redact(e.message or "", self.config.api_key.reveal())
            if self.call_id and e.status == 404:  # the call has ended
                raise CallRefused(e.status, "call_id_not_found", message) from e
            raise RealtimeUnavailable(
                f"the Realtime API refused the WebSocket at {self.url}: HTTP {e.status} "
                f"{message}") from e
        except aiohttp.ClientError as e:
            raise RealtimeUnavailable(
                f"cannot reach the Realtime API at {self.url}: {e}") from e

    async def _unless_gone(self, awaitable: Awaitable[_T], step: str) -> _T:
        """``awaitable``'s result; RealtimeUnavailable if the socket closes first."""
        task = asyncio.ensure_future(awaitable)
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise RealtimeUnavailable(f"the Realtime API closed the WebSocket ({step})")
        return task.result()

    # -- the socket -------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> None:
        self._control.append(json.dumps(event))
        self._wake.set()

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The socket's only writer: control events first, then the microphone."""
        try:
            while not self._gone.is_set():
                if self._control:
                    await ws.send_str(self._control.popleft())
                    continue
                batch = self.uplink.take() if self.ready else None
                if batch is not None:
                    await ws.send_str(append_event(batch))
                    self.uplink.sent(batch)
                    continue
                self._wake.clear()
                await self._wake.wait()
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as e:
            logger.info("%r: writing failed: %s", self, e or type(e).__name__)
            self._gone.set()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                match message.type:
                    case aiohttp.WSMsgType.TEXT:
                        self._on_message(message.data)
                    case aiohttp.WSMsgType.BINARY:
                        self._on_message(message.data.decode("utf-8", "replace"))
                    case aiohttp.WSMsgType.ERROR:
                        logger.info("%r: WebSocket error: %s", self, ws.exception())
                        break
                    case _:
                        break
        except (aiohttp.ClientError, ConnectionError) as e:
            logger.info("%r: reading failed: %s", self, e or type(e).__name__)
        finally:
            self._gone.set()
            self._wake.set()

    def _on_message(self, text: str) -> None:
        try:
            event = rt.decode(text)
        except rt.MalformedEvent as e:
            REALTIME_EVENTS_IGNORED.labels("malformed").inc()
            logger.info("%r dropped a malformed server event: %s", self, e)
            return
        try:
            self._handle(event, text)
        except Exception:  # a bug here must cost one event, not the connection
            logger.exception("%r: handling a %s event failed", self, type(event).__name__)

    def _handle(self, event: rt.AnyServerEvent | rt.OtherEvent, text: str) -> None:
        if isinstance(event, rt.OutputAudioDelta):
            self._audio_delta(text)
            return
        self.handshake.observe(event)
        match event:
            case rt.ServerError(error=error) if error.event_id in self._truncate_ids:
                self._truncate_ids.discard(error.event_id or "")
                logger.info("%r: truncating an interrupted reply was refused: %s: %s", self,
                            error.code, error.message)
                return
            case rt.ResponseCreated(response=response):
                self._responding.add(response.id)
            case _:
                pass
        self._forward(event, text)
        match event:
            case rt.SpeechStarted():
                self._barge_in()
            case rt.ResponseDone(response=response):
                self._responding.discard(response.id)
                self.playout.response_done(response.id)
                cut = self._truncates.pop(response.id, None)
                if cut is not None:
                    self._truncate(cut)
            case _:
                pass

    def _forward(self, event: rt.AnyServerEvent | rt.OtherEvent, text: str) -> None:
        try:
            self._on_event(event, text)
        except Exception:
            logger.exception("%r: handling a %s event failed", self, type(event).__name__)

    # -- model audio and playout ------------------------------------------------

    def _audio_delta(self, text: str) -> None:
        try:
            delta = _delta_decoder.decode(text)
            pcm = base64.b64decode(delta.delta, validate=True)
        except (msgspec.DecodeError, binascii.Error, ValueError) as e:
            REALTIME_EVENTS_IGNORED.labels("malformed").inc()
            logger.info("%r dropped an unusable audio delta: %s", self, e)
            return
        if pcm:
            self.playout.add(delta.response_id, delta.item_id, pcm[: len(pcm) - len(pcm) % 2])

    def _barge_in(self) -> None:
        """The user spoke: drop the unplayed reply, and truncate its item where it was cut."""
        cut = self.playout.interrupt()
        if cut is None:
            return
        self._local_event("output_audio_buffer.cleared", cut.response_id)
        logger.info("%r: barge-in cut response %s at %d ms", self, cut.response_id,
                    cut.played_ms)
        if cut.response_id in self._responding:  # the API is cancelling it: truncate after
            self._truncates[cut.response_id] = cut
            while len(self._truncates) > MAX_PENDING_TRUNCATES:
                self._truncates.popitem(last=False)
        else:
            self._truncate(cut)

    def _truncate(self, cut: Interrupted) -> None:
        if not cut.item_id:
            return
        truncate_id = event_id()
        self._truncate_ids.add(truncate_id)
        self._send({"type": "conversation.item.truncate", "event_id": truncate_id,
                    "item_id": cut.item_id, "content_index": 0, "audio_end_ms": cut.played_ms})

    def _playout_started(self, response_id: str) -> None:
        self._local_event("output_audio_buffer.started", response_id)

    def _playout_stopped(self, response_id: str) -> None:
        self._local_event("output_audio_buffer.stopped", response_id)

    def _local_event(self, kind: str, response_id: str) -> None:
        """Tell ``on_event`` what the API would have said over WebRTC."""
        local_id = LOCAL_EVENT_PREFIX + event_id().removeprefix("event_link_")
        text = json.dumps({"type": kind, "event_id": local_id, "response_id": response_id})
        self._forward(rt.decode(text), text)

    # -- closing ----------------------------------------------------------------

    async def _teardown(self) -> None:
        self.uplink.stop()
        ws, self._ws = self._ws, None
        if ws is None or ws.closed:
            return
        try:
            async with asyncio.timeout(TEARDOWN_TIMEOUT_S):
                await ws.close()
        except TimeoutError:
            logger.warning("%r did not close within %s s", self, TEARDOWN_TIMEOUT_S)

