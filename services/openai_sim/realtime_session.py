"""One Realtime session: client events in, server events out, whatever the transport.

The session validates and applies client events, keeps the input audio buffer and
runs server VAD over it, holds the conversation, and starts responses. It emits
events to every attached sink (the WebRTC ``oai-events`` channel, a WebSocket,
sideband WebSockets); transports own the sockets, the session owns the logic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import enum
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from . import errors, ids
from .config import SimConfig
from .conversation import ROOT, Conversation
from .errors import RealtimeError
from .replies import Replier, ReplyContext
from .responses import BYTES_PER_MS, Response, ResponseRun, cut_transcript
from .rtc_audio import ModelAudioTrack
from .session_config import RESPONSE_SCHEMA, default_session, merge, validate, validate_session_update
from .vad import ServerVad, SpeechStarted, SpeechStopped, VadSettings
from .voice import Voice

logger = logging.getLogger(__name__)

MAX_APPEND_BYTES = 15 * 1024 * 1024
MIN_COMMIT_MS = 100
PREFIX_KEEP_MS = 2000
"While nobody speaks under server VAD, keep this much buffered audio (for prefix padding)."
MAX_BUFFER_MS = 10 * 60 * 1000
"Without turn detection the buffer grows until commit; beyond this the oldest audio goes."
FINISHED_KEPT = 16
SEMANTIC_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 300}
BETA_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
SERVER_ERROR_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! "
    "You can retry your request."
)


class Transport(enum.StrEnum):
    WEBSOCKET = "websocket"
    WEBRTC = "webrtc"


class EventSink(Protocol):
    def send(self, event: dict[str, Any]) -> None: ...


# Client event type → the fields it may carry (besides ``type`` and ``event_id``).
CLIENT_EVENTS: dict[str, tuple[str, ...]] = {
    "session.update": ("session",),
    "input_audio_buffer.append": ("audio",),
    "input_audio_buffer.commit": (),
    "input_audio_buffer.clear": (),
    "output_audio_buffer.clear": (),
    "conversation.item.create": ("item", "previous_item_id"),
    "conversation.item.retrieve": ("item_id",),
    "conversation.item.truncate": ("item_id", "content_index", "audio_end_ms"),
    "conversation.item.delete": ("item_id",),
    "response.create": ("response",),
    "response.cancel": ("response_id",),
}
BETA_EVENTS = ("transcription_session.update",)


def beta_disabled() -> RealtimeError:
    return RealtimeError("beta_api_shape_disabled", BETA_MESSAGE)


class RealtimeSession:
    def __init__(
        self,
        sim: SimConfig,
        voice: Voice,
        transport: Transport,
        *,
        session: dict[str, Any] | None = None,
        track: ModelAudioTrack | None = None,
    ) -> None:
        self.sim = sim
        self.voice = voice
        self.transport = transport
        self.track = track
        self.id = ids.session_id()
        self.config_dict = session or default_session()
        self.created_at = time.time()
        self.expires_at = int(self.created_at + sim.session_cap_s)
        self.conversation = Conversation()
        self.replier = Replier(sim.reply_mode, list(sim.script))
        self.input_audio_ms = 0
        self._sinks: list[EventSink] = []
        self._on_close: list[Callable[[int, str], None]] = []
        self._vad = ServerVad(self._vad_settings())
        self._buffer = bytearray()
        self._buffer_start_ms = 0
        self._speech: SpeechStarted | None = None
        self._speech_item_id: str | None = None
        self._last_user_speech: bytes | None = None
        self._active: Response | None = None
        self._responses: dict[str, Response] = {}
        self._finished_items: dict[str, str] = {}
        "Response id → its item, for responses whose audio may still be playing."
        self._assistant_audio = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    # -- lifetime -------------------------------------------------------------------

    async def run(self) -> None:
        """Live until closed or the session cap; owns every response task."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            cap = tg.create_task(self._expire_at_cap())
            await self._closed.wait()
            cap.cancel()
            for task in list(self._tasks):
                task.cancel()

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def on_close(self, callback: Callable[[int, str], None]) -> None:
        """Called with (close code, reason) when the session ends itself (the cap)."""
        self._on_close.append(callback)

    async def _expire_at_cap(self) -> None:
        await asyncio.sleep(self.sim.session_cap_s)
        reason = f"Your session hit the maximum duration of {_duration(self.sim.session_cap_s)}."
        self.emit(RealtimeError("session_expired", reason).to_event())
        self.end(1001, reason)

    def end(self, code: int, reason: str) -> None:
        """End the session from the server side: transports close with ``code``."""
        if self.closed:
            return
        for callback in self._on_close:
            callback(code, reason)
        self.close()

    def _spawn(self, coro: Any) -> None:
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- output ---------------------------------------------------------------------

    def attach(self, sink: EventSink) -> None:
        """Add an event sink; it gets ``session.created`` first."""
        self._sinks.append(sink)
        sink.send({"type": "session.created", "event_id": ids.event_id(), "session": self.render()})

    def detach(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def emit(self, event: dict[str, Any]) -> None:
        for sink in self._sinks:
            sink.send(event)

    def render(self) -> dict[str, Any]:
        """The session object of ``session.created`` / ``session.updated``."""
        config = copy.deepcopy(self.config_dict)
        return {"type": config.pop("type"), "object": "realtime.session", "id": self.id,
                **config, "expires_at": self.expires_at}

    def notify(self, kind: str, **fields: Any) -> None:
        self.emit({"type": kind, "event_id": ids.event_id(), **fields})

    # -- input: client events ------------------------------------------------------

    def handle_message(self, raw: str | bytes) -> None:
        """Decode and apply one client event; every failure becomes an ``error`` event."""
        client_event_id = None
        try:
            try:
                event = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise RealtimeError("invalid_json", f"Invalid JSON in client event: {e}") from e
            if not isinstance(event, dict):
                raise RealtimeError("invalid_event", "Client events must be JSON objects.")
            if isinstance(event.get("event_id"), str):
                client_event_id = event["event_id"]
            self._dispatch(event)
        except RealtimeError as e:
            self.emit(e.to_event(client_event_id))
        except Exception:
            logger.exception("RealtimeSession(%s) failed on a client event", self.id)
            self.emit(RealtimeError(None, SERVER_ERROR_MESSAGE, type="server_error")
                      .to_event(client_event_id))

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind is None:
            raise RealtimeError("invalid_event", "The 'type' field is missing.", param="type")
        if kind in BETA_EVENTS:
            raise beta_disabled()
        if kind not in CLIENT_EVENTS:
            raise errors.invalid_value("type", kind, list(CLIENT_EVENTS))
        allowed = CLIENT_EVENTS[kind]
        for key in event:
            if key not in allowed and key not in ("type", "event_id"):
                raise errors.unknown_parameter(key)
        handler = getattr(self, "_on_" + kind.replace(".", "_"))
        handler(event)

    def _on_session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise errors.missing_parameter("session")
        update = validate_session_update(event["session"])
        if update["type"] != self.config_dict["type"]:
            raise errors.invalid_value("session.type", update["type"], [self.config_dict["type"]])
        new_voice = update.get("audio", {}).get("output", {}).get("voice")
        if new_voice is not None and new_voice != self.config_dict["audio"]["output"]["voice"]:
            if self._assistant_audio:
                raise RealtimeError(
                    "cannot_update_voice",
                    "Cannot update a conversation's voice if assistant audio is present.",
                    param="session.audio.output.voice",
                )
        self.config_dict = merge(self.config_dict, update)
        self._vad.reconfigure(self._vad_settings())
        if self._turn_detection() is None:
            self._vad.reset()
            self._speech = None
        self.notify("session.updated", session=self.render())

    def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if audio is None:
            raise errors.missing_parameter("audio")
        if not isinstance(audio, str):
            raise errors.invalid_type("audio", "a string", audio)
        if len(audio) > MAX_APPEND_BYTES * 4 // 3 + 4:
            raise RealtimeError(
                "invalid_value",
                f"Audio chunk too large: at most {MAX_APPEND_BYTES} bytes per append.",
                param="audio",
            )
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as e:
            raise RealtimeError(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.", param="audio"
            ) from e
        self.feed_audio(pcm[: len(pcm) - len(pcm) % 2])

    def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        ms = len(self._buffer) / BYTES_PER_MS
        if ms < MIN_COMMIT_MS:
            raise RealtimeError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
            )
        audio = bytes(self._buffer)
        item_id = self._speech_item_id or ids.item_id()
        self._reset_input()
        self._commit(item_id, audio, audio)

    def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._reset_input()
        self.notify("input_audio_buffer.cleared")

    def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        if self.track is None:
            raise RealtimeError(
                "invalid_value",
                "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
                param="type",
            )
        self._clear_output("client_cancelled")

    def _on_conversation_item_create(self, event: dict[str, Any]) -> None:
        item = _checked_item(event.get("item"))
        previous = event.get("previous_item_id")
        if previous is not None and previous != ROOT and previous not in self.conversation:
            raise RealtimeError(
                "invalid_value",
                f"Invalid 'previous_item_id': no item with id '{previous}' in the conversation.",
                param="previous_item_id",
            )
        if item["id"] in self.conversation:
            raise RealtimeError("invalid_value", f"Item with id '{item['id']}' already exists.",
                                param="item.id")
        audio = _input_audio(item)
        previous_id = self.conversation.add(item, previous)
        if audio:
            self.conversation.audio[item["id"]] = audio
        self.notify("conversation.item.added", previous_item_id=previous_id, item=copy.deepcopy(item))
        self.notify("conversation.item.done", previous_item_id=previous_id, item=copy.deepcopy(item))
        if item["type"] == "message" and item["role"] == "user":
            if audio:
                self._last_user_speech = audio
                self.replier.user_turn(len(audio) // BYTES_PER_MS)
            else:
                texts = [p.get("text", "") for p in item["content"] if p.get("type") == "input_text"]
                self.replier.user_text(" ".join(texts))

    def _on_conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        item_id = _item_id_param(event)
        if item_id not in self.conversation:
            raise RealtimeError("item_retrieve_invalid_item_id",
                                f"Item with item_id not found: {item_id}", param="item_id")
        self.notify("conversation.item.retrieved", item=self.conversation.snapshot(item_id))

    def _on_conversation_item_delete(self, event: dict[str, Any]) -> None:
        item_id = _item_id_param(event)
        if item_id not in self.conversation:
            raise RealtimeError("item_delete_invalid_item_id",
                                f"Item with item_id not found: {item_id}", param="item_id")
        self.conversation.delete(item_id)
        self.notify("conversation.item.deleted", item_id=item_id)

    def _on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item_id = _item_id_param(event)
        for name in ("content_index", "audio_end_ms"):
            value = event.get(name)
            if value is None:
                raise errors.missing_parameter(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise errors.invalid_type(name, "a non-negative integer", value)
        if item_id not in self.conversation:
            raise RealtimeError("item_truncate_invalid_item_id",
                                f"Item with item_id not found: {item_id}", param="item_id")
        item = self.conversation.get(item_id)
        content = item.get("content") or [{}]
        if item.get("role") != "assistant" or content[0].get("type") != "output_audio":
            raise RealtimeError("unsupported_content_type",
                                "Only model output audio messages can be truncated", param="item_id")
        length = len(self.conversation.audio.get(item_id, b"")) // BYTES_PER_MS
        if event["audio_end_ms"] > length:
            raise RealtimeError(
                "invalid_value",
                f"Audio content of {length}ms is already shorter than {event['audio_end_ms']}ms",
                param="audio_end_ms",
            )
        self._truncate_item(item_id, event["audio_end_ms"])
        self.notify("conversation.item.truncated", item_id=item_id,
                    content_index=event["content_index"], audio_end_ms=event["audio_end_ms"])

    def _on_response_create(self, event: dict[str, Any]) -> None:
        params = event.get("response")
        params = {} if params is None else validate("response", params, RESPONSE_SCHEMA)
        out_of_band = params.get("conversation") == "none"
        if not out_of_band and self._active is not None:
            raise RealtimeError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(params)

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        target = self._active if wanted is None else self._responses.get(wanted)
        if target is None or target.cancel_reason is not None:
            raise RealtimeError("response_cancel_not_active",
                                "Cancellation failed: no active response found")
        target.cancel("client_cancelled")

    # -- input: audio ---------------------------------------------------------------

    def feed_audio(self, pcm: bytes) -> None:
        """Input audio (from RTP or ``append``): buffer it and run VAD."""
        if self.closed:
            return
        self._buffer += pcm
        self.input_audio_ms += len(pcm) // BYTES_PER_MS
        if self._turn_detection() is None:
            if len(self._buffer) > MAX_BUFFER_MS * BYTES_PER_MS:
                self._drop_buffered(len(self._buffer) - MAX_BUFFER_MS * BYTES_PER_MS)
            return
        for vad_event in self._vad.process(pcm):
            match vad_event:
                case SpeechStarted():
                    self._speech_started(vad_event)
                case SpeechStopped():
                    self._speech_stopped(vad_event)
        if self._speech is None and len(self._buffer) > 2 * PREFIX_KEEP_MS * BYTES_PER_MS:
            self._drop_buffered(len(self._buffer) - PREFIX_KEEP_MS * BYTES_PER_MS)

    def _drop_buffered(self, nbytes: int) -> None:
        nbytes -= nbytes % BYTES_PER_MS
        del self._buffer[:nbytes]
        self._buffer_start_ms += nbytes // BYTES_PER_MS

    def _speech_started(self, started: SpeechStarted) -> None:
        if started.audio_start_ms < self._buffer_start_ms:
            # Prefix padding never reaches back into audio that was already committed.
            started = SpeechStarted(self._buffer_start_ms, max(started.onset_ms, self._buffer_start_ms))
        self._speech = started
        self._speech_item_id = ids.item_id()
        self.notify("input_audio_buffer.speech_started", audio_start_ms=started.audio_start_ms,
                    item_id=self._speech_item_id)
        detection = self._turn_detection() or {}
        if detection.get("interrupt_response", True):
            if self._active is not None:
                self._active.cancel("turn_detected")
            if self.track is not None:
                self._clear_output("turn_detected")

    def _speech_stopped(self, stopped: SpeechStopped) -> None:
        started, item_id = self._speech, self._speech_item_id
        assert started is not None and item_id is not None
        self.notify("input_audio_buffer.speech_stopped", audio_end_ms=stopped.audio_end_ms,
                    item_id=item_id)
        audio = self._slice(started.audio_start_ms, stopped.audio_end_ms)
        speech = self._slice(started.onset_ms, stopped.speech_end_ms)
        self._drop_buffered(max(0, stopped.audio_end_ms - self._buffer_start_ms) * BYTES_PER_MS)
        self._speech = None
        self._speech_item_id = None
        self._commit(item_id, audio, speech)
        detection = self._turn_detection() or {}
        active = self._active
        if detection.get("create_response", True):
            if active is None:
                self._start_response({})
            elif active.cancel_reason is not None:
                # Barge-in: the interrupted reply is still winding down; answer after it.
                self._start_response({}, after=active)

    def _slice(self, start_ms: int, end_ms: int) -> bytes:
        lo = max(0, start_ms - self._buffer_start_ms) * BYTES_PER_MS
        hi = max(0, end_ms - self._buffer_start_ms) * BYTES_PER_MS
        return bytes(self._buffer[lo:hi])

    def _commit(self, item_id: str, audio: bytes, speech: bytes) -> None:
        item = {"id": item_id, "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        previous = self.conversation.add(item)
        self.conversation.audio[item_id] = audio
        self._last_user_speech = speech
        self.notify("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        self.notify("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item))
        self.notify("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item))
        duration_ms = len(audio) // BYTES_PER_MS
        transcript = self.replier.user_turn(duration_ms)
        if self.config_dict["audio"]["input"].get("transcription") is not None:
            item["content"][0]["transcript"] = transcript
            self.notify("conversation.item.input_audio_transcription.delta", item_id=item_id,
                        content_index=0, delta=transcript)
            audio_tokens = duration_ms // 100
            text_tokens = max(1, len(transcript) // 4)
            self.notify(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id, content_index=0, transcript=transcript,
                usage={"type": "tokens", "total_tokens": audio_tokens + text_tokens,
                       "input_tokens": audio_tokens,
                       "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                       "output_tokens": text_tokens},
            )

    def _reset_input(self) -> None:
        self._buffer_start_ms += len(self._buffer) // BYTES_PER_MS
        self._buffer.clear()
        self._vad.reset()
        self._speech = None
        self._speech_item_id = None

    # -- responses ------------------------------------------------------------------

    def _start_response(self, params: dict[str, Any], after: Response | None = None) -> None:
        response = Response(ids.response_id(), params, params.get("conversation") == "none",
                            after=after)
        if not response.out_of_band:
            self._active = response
        self._responses[response.id] = response
        self._spawn(ResponseRun(self, response).run())

    def next_reply(self) -> Any:
        function_outputs = {
            item.get("call_id"): item.get("output")
            for item in self.conversation.items if item.get("type") == "function_call_output"
        }
        return self.replier.next_reply(ReplyContext(
            tools=self.config_dict.get("tools", []),
            tool_choice=self.config_dict.get("tool_choice", "auto"),
            last_user_speech=self._last_user_speech,
            function_output=function_outputs.get,
        ))

    def add_item(self, item: dict[str, Any], out_of_band: bool) -> str | None:
        """A response's output item appears in the conversation (not for out-of-band)."""
        if out_of_band:
            return None
        previous = self.conversation.add(copy.deepcopy(item))
        self.notify("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item))
        return previous

    def complete_item(self, item: dict[str, Any], audio: bytes, previous: str | None,
                      response: Response) -> None:
        if audio:
            self._assistant_audio = True
        if response.out_of_band or item["id"] not in self.conversation:
            return
        self.conversation.get(item["id"]).update(copy.deepcopy(item))
        if audio:
            self.conversation.audio[item["id"]] = audio
        if response.heard_ms is not None:
            self._truncate_item(item["id"], response.heard_ms)
        self.notify("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item))

    def response_finished(self, response: Response) -> None:
        if self._active is response:
            self._active = None
        self._responses.pop(response.id, None)
        if response.item_id is not None and not response.out_of_band:
            self._finished_items[response.id] = response.item_id
            while len(self._finished_items) > FINISHED_KEPT:
                del self._finished_items[next(iter(self._finished_items))]
        if self.track is not None:
            self.track.finish(response.id)

    def _clear_output(self, reason: str) -> None:
        """Drop unplayed model audio; the item keeps only what was heard."""
        assert self.track is not None
        cleared = self.track.clear()
        if cleared is None:
            return
        response_id, played_ms = cleared
        running = self._responses.get(response_id)
        if running is not None:
            running.heard_ms = played_ms
            running.cancel(reason)
        else:
            item_id = self._finished_items.get(response_id)
            if item_id is not None and item_id in self.conversation:
                self._truncate_item(item_id, played_ms)
        self.notify("output_audio_buffer.cleared", response_id=response_id)

    def _truncate_item(self, item_id: str, audio_end_ms: int) -> None:
        item = self.conversation.get(item_id)
        audio = self.conversation.audio.get(item_id, b"")
        total_ms = len(audio) // BYTES_PER_MS
        if total_ms == 0 or audio_end_ms >= total_ms:
            return
        self.conversation.audio[item_id] = audio[: audio_end_ms * BYTES_PER_MS]
        part = item["content"][0]
        part["transcript"] = cut_transcript(part.get("transcript") or "", audio_end_ms / total_ms)

    # -- settings -------------------------------------------------------------------

    def _turn_detection(self) -> dict[str, Any] | None:
        return self.config_dict["audio"]["input"].get("turn_detection")

    def _vad_settings(self) -> VadSettings:
        detection = self._turn_detection() or {}
        if detection.get("type") == "semantic_vad":
            silence = SEMANTIC_SILENCE_MS[detection.get("eagerness", "auto")]
            return VadSettings(silence_duration_ms=silence)
        return VadSettings(
            threshold=detection.get("threshold", 0.5),
            prefix_padding_ms=detection.get("prefix_padding_ms") or 0,
            silence_duration_ms=detection.get("silence_duration_ms") or 0,
        )


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds:g} seconds"


def _item_id_param(event: dict[str, Any]) -> str:
    item_id = event.get("item_id")
    if item_id is None:
        raise errors.missing_parameter("item_id")
    if not isinstance(item_id, str):
        raise errors.invalid_type("item_id", "a string", item_id)
    return item_id


ITEM_FIELDS = {
    "message": ("id", "type", "object", "status", "role", "content"),
    "function_call": ("id", "type", "object", "status", "name", "arguments", "call_id"),
    "function_call_output": ("id", "type", "object", "status", "call_id", "output"),
}
CONTENT_TYPES = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


def _checked_item(item: Any) -> dict[str, Any]:
    """Validate a ``conversation.item.create`` item; returns a copy with id and status set."""
    if item is None:
        raise errors.missing_parameter("item")
    if not isinstance(item, dict):
        raise errors.invalid_type("item", "an object", item)
    kind = item.get("type")
    if kind not in ITEM_FIELDS:
        raise errors.invalid_value("item.type", kind, list(ITEM_FIELDS))
    for key in item:
        if key not in ITEM_FIELDS[kind]:
            raise errors.unknown_parameter(f"item.{key}")
    checked = copy.deepcopy(item)
    checked.setdefault("id", ids.item_id())
    checked.setdefault("status", "completed")
    checked.pop("object", None)
    if kind == "message":
        _check_message(checked)
    else:
        required = ("name", "arguments", "call_id") if kind == "function_call" else ("call_id", "output")
        for name in required:
            if not isinstance(checked.get(name), str):
                raise errors.missing_parameter(f"item.{name}")
    return checked


def _check_message(item: dict[str, Any]) -> None:
    role = item.get("role")
    if role not in CONTENT_TYPES:
        raise errors.invalid_value("item.role", role, list(CONTENT_TYPES))
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise errors.missing_parameter("item.content")
    for i, part in enumerate(content):
        where = f"item.content[{i}]"
        if not isinstance(part, dict):
            raise errors.invalid_type(where, "an object", part)
        if part.get("type") not in CONTENT_TYPES[role]:
            raise errors.invalid_value(f"{where}.type", part.get("type"), list(CONTENT_TYPES[role]))
        if part["type"] in ("input_text", "output_text") and not isinstance(part.get("text"), str):
            raise errors.missing_parameter(f"{where}.text")
        if part["type"] == "output_audio":
            # Assistant audio cannot be injected; the API asks for text instead.
            raise errors.missing_parameter(f"{where}.text")
        if part["type"] == "input_audio" and not isinstance(part.get("audio"), str):
            raise errors.missing_parameter(f"{where}.audio")


def _input_audio(item: dict[str, Any]) -> bytes:
    """Decoded PCM of a user item's ``input_audio`` parts (the base64 is not kept on the item)."""
    pcm = bytearray()
    for i, part in enumerate(item.get("content") or []):
        if part.get("type") == "input_audio":
            try:
                pcm += base64.b64decode(part.pop("audio"), validate=True)
            except (binascii.Error, ValueError) as e:
                raise RealtimeError("invalid_value", "Invalid 'audio'. Expected base64 audio.",
                                    param=f"item.content[{i}].audio") from e
            part.setdefault("transcript", None)
    return bytes(pcm)
