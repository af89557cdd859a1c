"""One session's echo gating: the model's voice and each microphone, as streams.

The detector (:mod:`.echo`) compares waveforms, so it needs both signals continuous,
whatever the mixer's clock and jitter buffers do: the model's frames go into its
:class:`.echo.ModelReference` in the order they arrive, and every frame a client sends
goes, in ``seq`` order, through that client's :class:`.echo.EchoGate` (a lost frame
counts as silence). Frames are judged once per tick, before mixing; the mix then asks
for the verdict of the frame it plays (``verdict(client, seq)``), which was received
at least a tick earlier or in this one.

The link may keep the model's silence off the bus (``VOXRELAY_BUS_SKIP_SILENCE``): after a
reply it sends two quiet frames, then nothing until the model speaks again, whose first
frame says how many it skipped (``silent_before``). Those come into the reference as
silence; and while the pause lasts, the reference goes on in step with the clock: once
the last model frame was quiet and :data:`PAUSE_TICKS` ticks brought none, each tick adds
a frame of silence (the first ones at once), as the frames kept off the bus would have.
Otherwise the model's last words would stay the newest thing the reference holds, and a
microphone speaking after the reply would be compared with them as if they had just been
played (a false echo verdict ducks real speech). A stall after a quiet frame is taken
for a pause too: the late frames then come with fewer skipped than were put in, and that
many quiet ones are left out to bring the reference back in step (were they not quiet, it
stays ahead by the stall, which the lag search absorbs up to ``max_lag_ms``).
Ticks the mixer's clock sleeps through while nothing is heard are made up when it wakes
(:meth:`EchoGating.rested`), so the reference is what ticking all along would have made.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

from services.runtime.media import audible

from .echo import FRAME, QUIET, EchoGate, EchoSettings, Heard, ModelReference, Verdict
from .metrics import MODEL_FRAMES_DROPPED
from .mix import SILENCE

logger = logging.getLogger(__name__)

RESTART_SEQS = 50
"A seq this far behind the newest means the client's stream started over."
KEPT_VERDICTS = 64
"Verdicts kept per client for frames not played yet (over a second of audio)."
PAUSE_TICKS = 5
"""Ticks without a model frame, after a quiet one, that make a pause (100 ms): longer than
arrivals bunched by a busy loop (a few ticks)."""
SILENT = Heard.of(SILENCE)


@dataclass
class _Microphone:
    gate: EchoGate
    unheard: collections.deque[tuple[int, bytes]] = field(default_factory=collections.deque)
    "Frames received since the last tick: (seq, pcm)."
    last_seq: int | None = None
    verdicts: dict[int, Verdict] = field(default_factory=dict)


class EchoGating:
    def __init__(self, settings: EchoSettings, name: str = "") -> None:
        self.settings = settings
        self.name = name
        self.reference = ModelReference(settings)
        self._model: collections.deque[tuple[bytes, int]] = collections.deque()
        "Model frames received since the last tick: (pcm, silent_before)."
        self._model_backlog = len(self.reference.history) // FRAME
        self._idle_limit = self._model_backlog
        "Ticks without any model frame after which the model counts as silent."
        self._idle = 0
        self._model_quiet = True
        "Whether the last model frame was quiet (a pause may follow)."
        self._filled = 0
        "Frames of silence put into the reference for the pause under way."
        self._ahead = 0
        "Silence put in for a pause that turned out a stall: quiet frames to leave out."
        self._mics: dict[str, _Microphone] = {}

    def add_client(self, client_id: str) -> None:
        self._mics.setdefault(client_id, _Microphone(EchoGate(self.settings)))

    def remove_client(self, client_id: str) -> None:
        self._mics.pop(client_id, None)

    def hear_model(self, pcm: bytes, silent_before: int = 0) -> None:
        """A frame of the model's voice (``aud/model``), after ``silent_before`` frames of
        silence the link kept off the bus."""
        if len(self._model) >= self._model_backlog:
            self._model.popleft()  # older than anything the history keeps
            MODEL_FRAMES_DROPPED.labels("overflow").inc()
        self._model.append((pcm, silent_before))

    def _push_silence(self, frames: int) -> None:
        for _ in range(frames):
            self.reference.push(SILENT)

    def hear(self, client_id: str, seq: int, pcm: bytes) -> None:
        """A frame of a client's microphone, as received (before its jitter buffer)."""
        mic = self._mics.get(client_id)
        if mic is not None:
            mic.unheard.append((seq, pcm))

    def update(self) -> None:
        """Once per tick: take in the model's new frames, judge every microphone's."""
        if self._model:
            self.take_model()
        else:
            self._idle_tick()
        for client_id, mic in self._mics.items():
            while mic.unheard:
                seq, pcm = mic.unheard.popleft()
                self._judge(client_id, mic, seq, pcm)
            while len(mic.verdicts) > KEPT_VERDICTS:
                del mic.verdicts[next(iter(mic.verdicts))]

    def take_model(self) -> None:
        """Take the model's new frames into the reference (what a tick does first)."""
        if self._model:
            self._idle = 0
        while self._model:
            pcm, silent_before = self._model.popleft()
            quiet = not audible(pcm)
            # the pause's silence not put in yet (a longer one than the history: all),
            # or what was put in beyond it
            self._push_silence(min(silent_before - self._filled, self._model_backlog))
            if self._filled:
                self._ahead, self._filled = max(0, self._filled - silent_before), 0
            if self._ahead and quiet:
                self._ahead -= 1
                continue
            self._ahead = 0
            self.reference.push(Heard.of(pcm))
            self._model_quiet = quiet

    def _idle_tick(self) -> None:
        """A tick without a model frame."""
        self._idle += 1
        if self._model_quiet and self._idle >= PAUSE_TICKS \
                and self._filled < self._model_backlog:
            self._push_silence(self._idle - self._filled)
            self._filled = self._idle
        if self._idle == self._idle_limit:
            self.reference.reset()

    @property
    def resting(self) -> bool:
        """Nothing heard since the last tick: ticks may pause and be made up later
        (:meth:`rested`)."""
        return not self._model and not any(mic.unheard for mic in self._mics.values())

    def rested(self, ticks: int) -> None:
        """``ticks`` ticks passed with nothing heard (the mixer's clock slept through them):
        what they would have done to the reference, done now. Past the idle limit an idle
        tick changes nothing but the count."""
        replay = max(0, min(ticks, self._idle_limit + 1 - self._idle))
        for _ in range(replay):
            self._idle_tick()
        self._idle += ticks - replay

    def verdict(self, client_id: str, seq: int) -> Verdict:
        """The verdict on a client's frame (QUIET if it was never judged)."""
        mic = self._mics.get(client_id)
        if mic is None:
            return QUIET
        verdict = mic.verdicts.pop(seq, QUIET)
        while mic.verdicts and next(iter(mic.verdicts)) < seq:  # skipped: never played
            del mic.verdicts[next(iter(mic.verdicts))]
        return verdict

    def _judge(self, client_id: str, mic: _Microphone, seq: int, pcm: bytes) -> None:
        last = mic.last_seq
        if last is not None:
            if seq <= last and last - seq < RESTART_SEQS:
                return  # late or duplicate: the stream went past it
            if seq <= last:
                mic.gate.reset()
                mic.verdicts.clear()
            elif seq > last + 1:
                mic.gate.lost(seq - last - 1)
        mic.last_seq = seq
        verdict = mic.gate.check(Heard.of(pcm), self.reference)
        if verdict is not QUIET:
            logger.debug("EchoGating(%s): client %s frame %d %s", self.name, client_id, seq,
                         verdict)
        mic.verdicts[seq] = verdict
