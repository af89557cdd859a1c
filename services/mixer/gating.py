"""One session's echo gating: the model's voice and each microphone, as streams.

The detector (:mod:`.echo`) compares waveforms, so it needs both signals continuous,
whatever the mixer's clock and jitter buffers do: the model's frames go into its
:class:`.echo.ModelReference` in the order they arrive, and every frame a client sends
goes, in ``seq`` order, through that client's :class:`.echo.EchoGate` (a lost frame
counts as silence). Frames are judged once per tick, before mixing; the mix then asks
for the verdict of the frame it plays (``verdict(client, seq)``), which was received
at least a tick earlier or in this one.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

from .echo import FRAME, QUIET, EchoGate, EchoSettings, Heard, ModelReference, Verdict
from .metrics import MODEL_FRAMES_DROPPED
from .mix import SILENCE

logger = logging.getLogger(__name__)

RESTART_SEQS = 50
"A seq this far behind the newest means the client's stream started over."
KEPT_VERDICTS = 64
"Verdicts kept per client for frames not played yet (over a second of audio)."


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
        self._model: collections.deque[bytes] = collections.deque()
        self._model_backlog = len(self.reference.history) // FRAME
        self._idle_limit = self._model_backlog
        "Ticks without any model frame after which the model counts as silent."
        self._idle = 0
        self._mics: dict[str, _Microphone] = {}

    def add_client(self, client_id: str) -> None:
        self._mics.setdefault(client_id, _Microphone(EchoGate(self.settings)))

    def remove_client(self, client_id: str) -> None:
        self._mics.pop(client_id, None)

    def hear_model(self, pcm: bytes, silent_before: int = 0) -> None:
        """A frame of the model's voice (``aud/model``), after ``silent_before`` frames of
        silence the link kept off the bus: a pause shorter than the reference's history
        goes into it as silence, so the reference stays in step with the microphones (a
        longer one has emptied it already)."""
        if silent_before < self._model_backlog:
            for _ in range(silent_before):
                self._hear_model(SILENCE)
        self._hear_model(pcm)

    def _hear_model(self, pcm: bytes) -> None:
        if len(self._model) >= self._model_backlog:
            self._model.popleft()  # older than anything the history keeps
            MODEL_FRAMES_DROPPED.labels("overflow").inc()
        self._model.append(pcm)

    def hear(self, client_id: str, seq: int, pcm: bytes) -> None:
        """A frame of a client's microphone, as received (before its jitter buffer)."""
        mic = self._mics.get(client_id)
        if mic is not None:
            mic.unheard.append((seq, pcm))

    def update(self) -> None:
        """Once per tick: take in the model's new frames, judge every microphone's."""
        if self._model:
            self._idle = 0
            while self._model:
                self.reference.push(Heard.of(self._model.popleft()))
        else:
            self._idle += 1
            if self._idle == self._idle_limit:
                self.reference.reset()
        for client_id, mic in self._mics.items():
            while mic.unheard:
                seq, pcm = mic.unheard.popleft()
                self._judge(client_id, mic, seq, pcm)
            while len(mic.verdicts) > KEPT_VERDICTS:
                del mic.verdicts[next(iter(mic.verdicts))]

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
