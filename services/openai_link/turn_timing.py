"""Where one exchange's time goes, as the link sees it: a ``turn.summary`` per reply.

An exchange: the user stops speaking (its capture time comes from the mixer's
``voice.activity``), the Realtime API detects it (``speech_stopped``) and answers; the
reply's first audible frame reaches the link, then every client (each edge reports
``turn.heard`` with that client's voice-to-voice latency). When the assistant's turn
ends (its ``turn.end``) the link publishes one :class:`events.TurnSummary` with what
was measured, so a recorded conversation shows where its time went.

Time to first audio runs from ``speech_stopped`` — or a ``response.create`` the link
sent — to the first audible model frame at the link: the model's share of the latency
(with the Realtime transport's). The model's track carries silence between replies, so
"audible" is what marks a reply's first frame.

:class:`TurnTiming` is pure (fed events, frames and a clock); the session wires it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from proto import events
from services.runtime.media import audible

from .metrics import TIME_TO_FIRST_AUDIO

MAX_AGES = 3000
"Uplink ages kept for one user turn (a minute of frames)."
FIRST_AUDIO_WITHIN_S = 30.0
"A reply whose audio has not begun this long after speech stopped is not waited for."


class TurnTiming:
    def __init__(self, session_id: str, name_of: Callable[[str], str] = lambda cid: cid,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.session_id = session_id
        self._name_of = name_of
        self._clock = clock
        self._wall = wall
        self._speech_ended_at = 0.0
        "Capture time (unix s) of the newest end of speech in the session."
        self._waiting_since: float | None = None
        "Monotonic time of speech_stopped / response.create, until the reply is heard."
        self._time_to_first_audio = 0.0
        self._in_user_turn = False
        self._ages: list[float] = []
        self._user_turn_id = ""
        self._speaker = ""
        self._user_speech_end = 0.0
        self._user_turn_ended = 0.0
        "Unix time the link saw the user's turn end (a speech end captured before it is its)."
        self._uplink_age = 0.0
        self._heard: dict[str, float] = {}
        "Client name → voice-to-voice latency, for the reply to the latest user turn."

    # -- what the link sees --------------------------------------------------------

    def speech_stopped(self) -> None:
        """The Realtime API heard the user stop: the reply's clock starts."""
        self._waiting_since = self._clock()

    def response_requested(self) -> None:
        """The link asked for a reply itself (``response.create``)."""
        self._waiting_since = self._clock()

    def model_frame(self, pcm: bytes) -> None:
        """A frame of the model's voice reached the link."""
        since = self._waiting_since
        if since is None:
            return
        now = self._clock()
        if now - since > FIRST_AUDIO_WITHIN_S:
            self._waiting_since = None
        elif audible(pcm):
            self._waiting_since = None
            self._time_to_first_audio = now - since
            TIME_TO_FIRST_AUDIO.observe(self._time_to_first_audio)

    def uplink_age(self, seconds: float) -> None:
        """How old a microphone frame was when it went to the model."""
        if self._in_user_turn and len(self._ages) < MAX_AGES:
            self._ages.append(seconds)

    def bus_event(self, event: events.AnyEvent) -> None:
        """Events of the session from other services (voice activity, edges' reports)."""
        match event:
            case events.VoiceActivity(active=False, at=at) if at:
                self._speech_ended_at = max(self._speech_ended_at, at)
                if self._user_turn_id and not self._in_user_turn and at <= self._user_turn_ended:
                    # the mixer's hangover can outlast the model's: its report comes late
                    self._user_speech_end = max(self._user_speech_end, at)
            case events.TurnHeard(client_id=client_id, voice_to_voice_s=seconds):
                self._heard.setdefault(self._name_of(client_id), round(seconds, 4))
            case _:
                pass

    def translated(self, event: events.Event) -> events.TurnSummary | None:
        """A voxrelay event the link produced; the summary when an assistant turn ends."""
        match event:
            case events.TurnStart(role="user", turn_id=turn_id, speaker=speaker):
                self._in_user_turn, self._ages = True, []
                self._user_turn_id, self._speaker = turn_id, speaker
            case events.TurnEnd(role="user"):
                self._in_user_turn, self._heard = False, {}
                self._uplink_age = statistics.median(self._ages) if self._ages else 0.0
                self._user_speech_end = self._speech_ended_at
                self._user_turn_ended = self._wall()
            case events.TranscriptDone(role="user", turn_id=turn_id, speaker=speaker) \
                    if turn_id == self._user_turn_id and speaker:
                self._speaker = speaker
            case events.TurnEnd(role="assistant", turn_id=turn_id, status=status):
                return self._summary(turn_id, status)
            case _:
                pass
        return None

    # -- the summary ---------------------------------------------------------------------

    def _summary(self, turn_id: str, status: str) -> events.TurnSummary:
        summary = events.TurnSummary(
            session_id=self.session_id, turn_id=turn_id, status=status,
            user_turn_id=self._user_turn_id, speaker=self._speaker,
            speech_ended_at=self._user_speech_end,
            time_to_first_audio_s=round(self._time_to_first_audio, 4),
            uplink_age_s=round(self._uplink_age, 4), voice_to_voice_s=dict(self._heard))
        self._heard = {}
        self._time_to_first_audio = self._uplink_age = self._user_speech_end = 0.0
        self._user_turn_ended = 0.0
        self._user_turn_id = self._speaker = ""
        return summary
