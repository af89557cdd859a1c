"""Realtime server events → voxrelay events, for one conversation.

:class:`Translator` is pure: it keeps a little state (who is speaking, when turns began)
and returns the voxrelay events each server event means, unstamped (the publisher
stamps them). Every server event except audio deltas is also returned as a
``realtime.event`` record with its JSON text. Unknown types are recorded and counted,
malformed ones dropped and counted; nothing here raises on server input.

Turns: a user turn runs from ``speech_started`` to ``committed`` (its id is the item
id). Its ``turn.start`` names who is speaking as it begins; its ``transcript.done`` names
who spoke within it (``speaker(start, end)``, from the clients' voice activity). An
assistant turn starts with its audio (``output_audio_buffer.started``) or its first
transcript delta, whichever comes first (so every ``transcript.delta`` belongs to a
started turn; for a reply with neither, at its ``response.done``), and ends with
``response.done``; its id is the reply's item id when known, else the response id.
Every ``turn.end`` has a ``turn.start`` before it. ``ai.state`` is published only when
it changes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, assert_never

from proto import events

from . import realtime_events as rt
from .errors import redact
from .metrics import REALTIME_EVENTS_IGNORED

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

MAX_TRACKED = 64
"User turns and responses remembered at once (the oldest are forgotten first)."


Speaker = Callable[[float, float], str]
"Who spoke between two wall times (unix seconds): client names joined with '+'."


@dataclass
class _UserTurn:
    speaker: str
    "Who was speaking as the turn began (its turn.start)."
    started_at: float
    ended_at: float | None = None
    turn_started: bool = False


@dataclass
class _Reply:
    response_id: str
    item_id: str | None = None
    started_at: float | None = None
    "Wall time of its first transcript delta or audio, whichever came first."
    turn_started: bool = False

    @property
    def turn_id(self) -> str:
        return self.item_id or self.response_id


class Translator:
    def __init__(
        self,
        session_id: str,
        speaker: Speaker = lambda start, end: "user",
        secret: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session_id = session_id
        self._speaker = speaker
        self._secret = secret
        self._clock = clock
        self._state: events.AiStateName = "idle"
        self._speaking: tuple[str, float] | None = None
        "The response whose audio is playing, and since when."
        self._user_turns: OrderedDict[str, _UserTurn] = OrderedDict()
        self._replies: OrderedDict[str, _Reply] = OrderedDict()
        self.ignored: Counter[str] = Counter()
        "Events not translated, by reason ('unknown_type', 'malformed')."

    # -- entry points -----------------------------------------------------------

    def feed(self, text: str | bytes) -> list[events.Event]:
        """Decode one data-channel message and translate it."""
        try:
            event = rt.decode(text)
        except rt.MalformedEvent as e:
            self.count_ignored("malformed", str(e))
            return []
        return self.translate(event, text if isinstance(text, str) else text.decode("utf-8"))

    def translate(self, event: rt.AnyServerEvent | rt.OtherEvent, text: str) -> list[events.Event]:
        out: list[events.Event] = []
        if not isinstance(event, rt.OutputAudioDelta):
            kind = event.type if isinstance(event, rt.OtherEvent) else _tag(event)
            out.append(events.RealtimeEvent(session_id=self.session_id, event_type=kind,
                                            data=redact(text, self._secret)))
        out += self._dispatch(event)
        return out

    def count_ignored(self, reason: str, detail: str) -> None:
        self.ignored[reason] += 1
        REALTIME_EVENTS_IGNORED.labels(reason).inc()
        logger.debug("Translator(%s) ignored a server event (%s): %s", self.session_id, reason,
                     detail)

    @property
    def quiet(self) -> bool:
        """Nobody is speaking and no reply is coming or playing: a moment at which the
        call can be replaced without cutting anything off."""
        return (self._state in ("idle", "listening") and self._speaking is None
                and all(turn.ended_at is not None for turn in self._user_turns.values()))

    def reset(self) -> list[events.Event]:
        """The connection is gone: nobody is speaking and the AI is idle."""
        self._speaking = None
        return self._set_state("idle")

    def resume(self) -> list[events.Event]:
        """A new connection carries the conversation on: the AI listens again."""
        self._speaking = None
        return self._set_state("listening")

    # -- dispatch ---------------------------------------------------------------

    def _dispatch(self, event: rt.AnyServerEvent | rt.OtherEvent) -> list[events.Event]:
        match event:
            case rt.SpeechStarted():
                return self._speech_started(event)
            case rt.InputCommitted():
                return self._committed(event)
            case rt.InputTranscriptionCompleted():
                return self._user_transcript(event)
            case rt.InputTranscriptionFailed():
                self._user_turns.pop(event.item_id, None)
                return []
            case rt.OutputItemAdded():
                if event.item.type == "message" and event.item.id:
                    self._reply(event.response_id).item_id = event.item.id
                return []
            case rt.OutputTranscriptDelta():
                return self._transcript_delta(event)
            case rt.OutputTranscriptDone():
                return self._transcript_done(event)
            case rt.OutputAudioStarted():
                return self._audio_started(event)
            case rt.OutputAudioStopped() | rt.OutputAudioCleared():
                return self._audio_ended(event.response_id)
            case rt.ResponseDone():
                return self._response_done(event)
            case rt.ServerError():
                return [self._error(event.error.code, event.error.message)]
            case rt.OtherEvent(known=False):
                self.count_ignored("unknown_type", event.type)
                return []
            case (rt.OtherEvent() | rt.SessionCreated() | rt.SessionUpdated() | rt.SpeechStopped()
                  | rt.ResponseCreated() | rt.OutputAudioDelta()
                  | rt.FunctionCallArgumentsDone()):  # tool calls: the session's ToolCalls
                return []
            case _:
                assert_never(event)

    # -- user turns -------------------------------------------------------------

    def _speech_started(self, event: rt.SpeechStarted) -> list[events.Event]:
        now = self._clock()
        out: list[events.Event] = []
        if self._speaking is not None:
            response_id, since = self._speaking
            self._speaking = None
            out.append(events.AiInterrupted(session_id=self.session_id, response_id=response_id,
                                            played_ms=max(0, round((now - since) * 1000))))
        turn = self._remember(self._user_turns, event.item_id,
                              _UserTurn(self._speaker(now, now), started_at=now))
        out += self._user_turn_start(event.item_id, turn)
        out += self._set_state("listening")
        return out

    def _committed(self, event: rt.InputCommitted) -> list[events.Event]:
        now = self._clock()
        turn = self._user_turns.get(event.item_id)
        if turn is None:  # committed without speech_started (manual commit, idle timeout)
            turn = self._remember(self._user_turns, event.item_id,
                                  _UserTurn(self._speaker(now, now), started_at=now))
        turn.ended_at = now
        out = self._user_turn_start(event.item_id, turn)
        out.append(events.TurnEnd(session_id=self.session_id, turn_id=event.item_id, role="user"))
        out += self._set_state("thinking")
        return out

    def _user_turn_start(self, item_id: str, turn: _UserTurn) -> list[events.Event]:
        if turn.turn_started:
            return []
        turn.turn_started = True
        return [events.TurnStart(session_id=self.session_id, turn_id=item_id, role="user",
                                 speaker=turn.speaker)]

    def _user_transcript(self, event: rt.InputTranscriptionCompleted) -> list[events.Event]:
        now = self._clock()
        turn = self._user_turns.pop(event.item_id, None)
        started_at = turn.started_at if turn is not None else now
        ended_at = turn.ended_at if turn is not None and turn.ended_at is not None else now
        speaker = self._speaker(started_at, ended_at)
        return [events.TranscriptDone(
            session_id=self.session_id, turn_id=event.item_id, role="user",
            text=redact(event.transcript or "", self._secret), speaker=speaker,
            started_at=started_at, ended_at=ended_at,
        )]

    # -- assistant turns --------------------------------------------------------

    def _reply(self, response_id: str) -> _Reply:
        reply = self._replies.get(response_id)
        if reply is None:
            reply = self._remember(self._replies, response_id, _Reply(response_id))
        return reply

    def _transcript_delta(self, event: rt.OutputTranscriptDelta) -> list[events.Event]:
        reply = self._reply(event.response_id)
        reply.item_id = reply.item_id or event.item_id
        if reply.started_at is None:
            reply.started_at = self._clock()
        out = self._assistant_turn_start(reply)
        out.append(events.TranscriptDelta(session_id=self.session_id, turn_id=event.item_id,
                                          role="assistant",
                                          delta=redact(event.delta, self._secret)))
        return out

    def _transcript_done(self, event: rt.OutputTranscriptDone) -> list[events.Event]:
        now = self._clock()
        reply = self._reply(event.response_id)
        reply.item_id = reply.item_id or event.item_id
        return [events.TranscriptDone(
            session_id=self.session_id, turn_id=event.item_id, role="assistant",
            text=redact(event.transcript or "", self._secret), speaker="assistant",
            started_at=reply.started_at if reply.started_at is not None else now, ended_at=now,
        )]

    def _audio_started(self, event: rt.OutputAudioStarted) -> list[events.Event]:
        now = self._clock()
        reply = self._reply(event.response_id)
        if reply.started_at is None:
            reply.started_at = now
        self._speaking = (event.response_id, now)
        return self._assistant_turn_start(reply) + self._set_state("speaking")

    def _audio_ended(self, response_id: str) -> list[events.Event]:
        if self._speaking is not None and response_id not in ("", self._speaking[0]):
            return []  # the end of an earlier reply's audio: another one is playing
        self._speaking = None
        return self._set_state("listening")

    def _response_done(self, event: rt.ResponseDone) -> list[events.Event]:
        response = event.response
        reply = self._reply(response.id)
        for item in response.output or ():
            if item.type == "message" and item.id:
                reply.item_id = reply.item_id or item.id
                break
        out = self._assistant_turn_start(reply)
        out.append(events.TurnEnd(session_id=self.session_id, turn_id=reply.turn_id,
                                  role="assistant", status=response.status))
        details = response.status_details
        if response.status == "failed" and details is not None and details.error is not None:
            out.append(self._error(details.error.code, details.error.message))
        if self._speaking is None and self._state == "thinking":
            out += self._set_state("listening")  # a reply without audio: nothing will play
        return out

    def _assistant_turn_start(self, reply: _Reply) -> list[events.Event]:
        if reply.turn_started:
            return []
        reply.turn_started = True
        return [events.TurnStart(session_id=self.session_id, turn_id=reply.turn_id,
                                 role="assistant", speaker="assistant")]

    # -- helpers ----------------------------------------------------------------

    def _set_state(self, state: events.AiStateName) -> list[events.Event]:
        if state == self._state:
            return []
        self._state = state
        return [events.AiState(session_id=self.session_id, state=state)]

    def _error(self, code: str | None, message: str | None) -> events.Event:
        return events.ErrorEvent(session_id=self.session_id, code=code or "realtime_error",
                                 message=redact(message or "", self._secret), source="openai")

    @staticmethod
    def _remember(table: OrderedDict[str, _T], key: str, value: _T) -> _T:
        table[key] = value
        while len(table) > MAX_TRACKED:
            table.popitem(last=False)
        return value


def _tag(event: rt.AnyServerEvent) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]
