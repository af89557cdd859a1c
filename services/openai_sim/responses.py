"""Model responses: the GA event order for one response, produced in real time.

A response runs as its own task. It speaks (audio or text), or makes a function
call, emitting ``response.created`` … ``response.done`` in the order the real
service uses. Cancellation (``response.cancel`` or barge-in) sets a flag and wakes
the task, which then emits the ``.done`` group for what it produced so far and
``response.done`` with status ``cancelled`` — never a bare stop.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ids
from .replies import CallReply, SpeakReply

if TYPE_CHECKING:
    from .realtime_session import RealtimeSession

logger = logging.getLogger(__name__)

BYTES_PER_MS = 48
WS_CHUNK_MS = 100
RTC_FRAME_BYTES = 960
INPUT_AUDIO_TOKENS_PER_S = 10
OUTPUT_AUDIO_TOKENS_PER_S = 20
RATE_LIMIT_TOKENS = 40_000


@dataclass
class Response:
    """One response's state, shared between its task and the session."""

    id: str
    params: dict[str, Any]
    out_of_band: bool
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    item_id: str | None = None
    heard_ms: int | None = None
    "Set when playout was cleared: the item is truncated to what was heard."
    after: Response | None = None
    "A cancelled response still winding down; this one starts once it is done."
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.wake.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep, or return early (False) when cancelled."""
        if self.cancel_reason is not None:
            return False
        if seconds > 0:
            try:
                await asyncio.wait_for(self.wake.wait(), seconds)
            except TimeoutError:
                pass
        return self.cancel_reason is None


def split_words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or ([text] if text else [])


def cut_transcript(text: str, fraction: float) -> str:
    words = split_words(text)
    keep = round(len(words) * max(0.0, min(1.0, fraction)))
    return "".join(words[:keep]).rstrip()


class ResponseRun:
    """Produces one response's events; ``run()`` is the task body."""

    def __init__(self, session: RealtimeSession, response: Response) -> None:
        self.s = session
        self.r = response
        params = response.params
        config = session.config_dict
        out = params.get("audio", {}).get("output", {})
        self.voice = out.get("voice") or config["audio"]["output"]["voice"]
        self.speed = config["audio"]["output"].get("speed", 1.0)
        self.modalities = params.get("output_modalities") or config["output_modalities"]
        self.max_tokens = params.get("max_output_tokens", config.get("max_output_tokens", "inf"))
        self.delivered: list[str] = []
        self.audio = bytearray()
        self.full_ms = 0

    @property
    def emit(self) -> Callable[[dict[str, Any]], None]:
        return self.s.emit

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:
            # A bug here must cost one response, not the session: fail it the way the API does.
            logger.exception("response %s failed", self.r.id)
            if not self.r.finished.is_set():
                self.s.response_finished(self.r)
                failed = self._object("failed", [], None)
                failed["status_details"] = {"type": "failed", "error": {
                    "type": "server_error", "code": "server_error",
                    "message": "The server had an error while processing your request."}}
                self.emit(self._event("response.done", response=failed))
                self.r.finished.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.r.after is not None:
            await self.r.after.finished.wait()
        self.emit(self._event("response.created", response=self._object("in_progress", [])))
        reply = self.s.next_reply()
        match reply:
            case CallReply():
                if await self.r.pause(self.s.sim.response_latency_s - (loop.time() - started)):
                    await self._function_call(reply)
                    return
            case SpeakReply():
                pcm = reply.audio
                if pcm is None and "audio" in self.modalities:
                    pcm = await self.s.voice.speak(reply.text, _voice_name(self.voice), self.speed)
                if await self.r.pause(self.s.sim.response_latency_s - (loop.time() - started)):
                    await self._message(reply.text, pcm or b"")
                    return
        self._finish([], "")

    # -- message --------------------------------------------------------------------

    async def _message(self, text: str, pcm: bytes) -> None:
        r, audio_out = self.r, "audio" in self.modalities
        item = {"id": ids.item_id(), "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        r.item_id = item["id"]
        self.emit(self._event("response.output_item.added", response_id=r.id, output_index=0,
                              item=copy.deepcopy(item)))
        previous = self.s.add_item(item, r.out_of_band)
        part = {"type": "audio", "transcript": ""} if audio_out else {"type": "text", "text": ""}
        self.emit(self._part_event("response.content_part.added", item["id"], part=part))
        if audio_out:
            await self._stream_audio(item["id"], text, pcm)
        else:
            await self._stream_text(item["id"], text)
        said = "".join(self.delivered)
        status = "completed" if r.cancel_reason is None else "incomplete"
        if audio_out:
            self.emit(self._part_event("response.output_audio.done", item["id"]))
            self.emit(self._part_event("response.output_audio_transcript.done", item["id"],
                                       transcript=said))
            part, content = ({"type": "audio", "transcript": said},
                             [{"type": "output_audio", "transcript": said}])
        else:
            self.emit(self._part_event("response.output_text.done", item["id"], text=said))
            part, content = {"type": "text", "text": said}, [{"type": "output_text", "text": said}]
        self.emit(self._part_event("response.content_part.done", item["id"], part=part))
        final = {**item, "status": status, "content": content}
        self.emit(self._event("response.output_item.done", response_id=r.id, output_index=0,
                              item=copy.deepcopy(final)))
        self.s.complete_item(final, bytes(self.audio), previous, r)
        self._finish([final], said)

    async def _stream_audio(self, item_id: str, text: str, pcm: bytes) -> None:
        track = self.s.track
        words = split_words(text)
        self.full_ms = len(pcm) // BYTES_PER_MS
        marks = _word_marks(words, self.full_ms)
        chunk = RTC_FRAME_BYTES if track is not None else WS_CHUNK_MS * BYTES_PER_MS
        for offset in range(0, len(pcm), chunk):
            if self.r.cancel_reason is not None:
                return
            piece = pcm[offset : offset + chunk]
            self._deliver_words(item_id, words, marks, (offset + len(piece)) // BYTES_PER_MS)
            self.audio += piece
            if track is not None:
                await track.write(self.r.id, piece)
                continue
            self.emit(self._part_event("response.output_audio.delta", item_id,
                                       delta=base64.b64encode(piece).decode("ascii")))
            if not await self.r.pause(len(piece) / BYTES_PER_MS / 1000 / self.s.sim.ws_pace):
                return
        self._deliver_words(item_id, words, marks, self.full_ms + 1)

    async def _stream_text(self, item_id: str, text: str) -> None:
        for word in split_words(text):
            if not await self.r.pause(0.01 / self.s.sim.ws_pace):
                return
            self.delivered.append(word)
            self.emit(self._part_event("response.output_text.delta", item_id, delta=word))

    def _deliver_words(self, item_id: str, words: list[str], marks: list[int], upto_ms: int) -> None:
        kind = "response.output_audio_transcript.delta"
        while len(self.delivered) < len(words) and marks[len(self.delivered)] <= upto_ms:
            word = words[len(self.delivered)]
            self.delivered.append(word)
            self.emit(self._part_event(kind, item_id, delta=word))

    # -- function call --------------------------------------------------------------

    async def _function_call(self, reply: CallReply) -> None:
        r = self.r
        call_id = ids.function_call_id()
        self.s.replier.call_made(call_id)
        item = {"id": ids.item_id(), "type": "function_call", "status": "in_progress",
                "name": reply.name, "call_id": call_id, "arguments": ""}
        r.item_id = item["id"]
        self.emit(self._event("response.output_item.added", response_id=r.id, output_index=0,
                              item=copy.deepcopy(item)))
        previous = self.s.add_item(item, r.out_of_band)
        args = reply.arguments
        step = max(1, len(args) // 3)
        for i in range(0, len(args), step):
            self.emit(self._event("response.function_call_arguments.delta", response_id=r.id,
                                  item_id=item["id"], output_index=0, call_id=call_id,
                                  delta=args[i : i + step]))
        self.emit(self._event("response.function_call_arguments.done", response_id=r.id,
                              item_id=item["id"], output_index=0, call_id=call_id,
                              name=reply.name, arguments=args))
        final = {**item, "status": "completed", "arguments": args}
        self.emit(self._event("response.output_item.done", response_id=r.id, output_index=0,
                              item=copy.deepcopy(final)))
        self.s.complete_item(final, b"", previous, r)
        self._finish([final], args)

    # -- shapes ---------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": ids.event_id(), **fields}

    def _part_event(self, kind: str, item_id: str, **fields: Any) -> dict[str, Any]:
        return self._event(kind, response_id=self.r.id, item_id=item_id, output_index=0,
                           content_index=0, **fields)

    def _object(self, status: str, output: list[dict[str, Any]],
                usage: dict[str, Any] | None = None) -> dict[str, Any]:
        details = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": self.r.cancel_reason}
        return {
            "object": "realtime.response",
            "id": self.r.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": None if self.r.out_of_band else self.s.conversation.id,
            "output_modalities": list(self.modalities),
            "max_output_tokens": self.max_tokens,
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000},
                                 "voice": self.voice}},
            "usage": usage,
            "metadata": self.r.params.get("metadata"),
        }

    def _finish(self, output: list[dict[str, Any]], said: str) -> None:
        """``response.done`` (and ``rate_limits.updated``): the response is over."""
        status = "completed" if self.r.cancel_reason is None else "cancelled"
        usage = self._usage(said)
        self.s.response_finished(self.r)
        self.emit(self._event("response.done", response=self._object(status, output, usage)))
        self.r.finished.set()
        remaining = max(0, RATE_LIMIT_TOKENS - usage["total_tokens"])
        self.emit(self._event("rate_limits.updated", rate_limits=[
            {"name": "tokens", "limit": RATE_LIMIT_TOKENS, "remaining": remaining,
             "reset_seconds": round(usage["total_tokens"] / RATE_LIMIT_TOKENS * 60, 3)}]))

    def _usage(self, said: str) -> dict[str, Any]:
        text_in = sum(len(item.get("content", [{}])[0].get("text") or "") // 4 + 4
                      for item in self.s.conversation.items if item.get("type") == "message"
                      and item.get("content"))
        audio_in = self.s.input_audio_ms // 1000 * INPUT_AUDIO_TOKENS_PER_S
        text_out = max(1, len(said) // 4) if said else 0
        audio_out = len(self.audio) // BYTES_PER_MS * OUTPUT_AUDIO_TOKENS_PER_S // 1000
        total_in, total_out = text_in + audio_in, text_out + audio_out
        return {
            "total_tokens": total_in + total_out,
            "input_tokens": total_in,
            "output_tokens": total_out,
            "input_token_details": {
                "text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }


def _word_marks(words: list[str], total_ms: int) -> list[int]:
    """When (ms into the audio) each word's transcript delta is due: by character share."""
    total = sum(len(w) for w in words) or 1
    marks, seen = [], 0
    for word in words:
        marks.append(seen * total_ms // total)
        seen += len(word)
    return marks


def _voice_name(voice: str | dict[str, Any]) -> str:
    return voice if isinstance(voice, str) else "alloy"
