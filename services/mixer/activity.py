"""Per-client voice activity, as the mixer hears each microphone (after echo gating).

Energy based, like a simple VAD with hangover: a frame is voiced when its level reaches
``threshold_dbfs`` and it was not ducked as echo. A client becomes active after
``onset_frames`` voiced frames in a row and inactive after ``hangover_frames`` frames
without one. Only the transitions are reported, each with the capture time where it
happened: the start of the first voiced frame, or the end of the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proto.audio import FRAME_MS

FRAME_NS = FRAME_MS * 1_000_000
FULL_SCALE_POWER = 32768.0**2


def power(pcm: bytes) -> float:
    """The mean square of an s16le frame."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(samples.dot(samples)) / samples.size


@dataclass(frozen=True)
class ActivitySettings:
    threshold_dbfs: float = -45.0
    onset_frames: int = 2
    "Voiced frames in a row (40 ms) that make a client active."
    hangover_frames: int = 15
    "Frames without voice (300 ms) after which an active client is inactive."

    def __post_init__(self) -> None:
        if not -90.0 <= self.threshold_dbfs <= 0.0:
            raise ValueError(f"'threshold_dbfs' must be within -90..0 (got {self.threshold_dbfs})")
        if self.onset_frames < 1 or self.hangover_frames < 1:
            raise ValueError("'onset_frames' and 'hangover_frames' must be >= 1 (got "
                             f"{self.onset_frames}, {self.hangover_frames})")

    @property
    def threshold_power(self) -> float:
        return FULL_SCALE_POWER * 10 ** (self.threshold_dbfs / 10)


@dataclass(frozen=True, slots=True)
class Transition:
    active: bool
    at_ns: int
    "Capture time: where the voice began (active) or ended (inactive)."


class VoiceActivity:
    """One client's speaking state, fed one frame per mixer tick."""

    def __init__(self, settings: ActivitySettings) -> None:
        self.settings = settings
        self.active = False
        self._run = 0
        self._run_start_ns = 0
        self._silent = 0
        self._last_voiced_end_ns = 0

    def update(self, power: float | None, capture_ns: int,
               ducked: bool = False) -> Transition | None:
        """This tick's frame: its mean square (None if the client sent none), capture time."""
        voiced = power is not None and not ducked and power >= self.settings.threshold_power
        if voiced:
            if self._run == 0:
                self._run_start_ns = capture_ns
            self._run += 1
            self._silent = 0
            self._last_voiced_end_ns = capture_ns + FRAME_NS
            if not self.active and self._run >= self.settings.onset_frames:
                self.active = True
                return Transition(True, self._run_start_ns)
            return None
        self._run = 0
        self._silent += 1
        if self.active and self._silent >= self.settings.hangover_frames:
            return self.end()
        return None

    @property
    def idle(self) -> bool:
        """Not speaking, and no voiced frame counted toward starting: a tick without a
        frame changes nothing that matters."""
        return not self.active and self._run == 0

    def end(self) -> Transition | None:
        """Stop being active now (the client left); None if it was not."""
        if not self.active:
            return None
        self.active = False
        self._run = 0
        return Transition(False, self._last_voiced_end_ns)
