"""Server voice activity detection over PCM16 24 kHz mono, as ``server_vad`` behaves.

Energy based: each 10 ms window's level maps to a speech probability (−60 dBFS → 0,
−20 dBFS → 1), compared with ``threshold``. Speech starts after ``ONSET_WINDOWS``
consecutive windows above it; ``audio_start_ms`` reaches back ``prefix_padding_ms``.
Speech stops once ``silence_duration_ms`` passed without speech; like the real
service, ``audio_end_ms`` includes that silence. Positions are milliseconds of audio
written since the session began.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 24_000
WINDOW_MS = 10
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_MS // 1000
ONSET_WINDOWS = 3
FLOOR_DBFS = -60.0
CEIL_DBFS = -20.0


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 200

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"'threshold' must be within [0, 1] (got {self.threshold})")
        if self.prefix_padding_ms < 0 or self.silence_duration_ms < 0:
            raise ValueError("'prefix_padding_ms' and 'silence_duration_ms' must be >= 0")


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int
    "Where the committed item will start: onset minus prefix padding."
    onset_ms: int
    "Where speech itself was first heard."


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int
    "The detection point: last speech plus the silence duration."
    speech_end_ms: int
    "The end of the last window that held speech."


VadEvent = SpeechStarted | SpeechStopped


def speech_probability(window: np.ndarray) -> np.ndarray:
    """Per-window speech probability from the RMS level of int16 windows (shape n×W)."""
    power = np.mean(np.square(window, dtype=np.float64), axis=1)
    dbfs = 10.0 * np.log10(np.maximum(power, 1e-9) / (32768.0**2))
    return np.clip((dbfs - FLOOR_DBFS) / (CEIL_DBFS - FLOOR_DBFS), 0.0, 1.0)


class ServerVad:
    """Feed PCM of any length; get speech start/stop events in order."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._pending = np.zeros(0, dtype=np.int16)
        self._windows = 0
        self._run = 0
        self._speaking = False
        self._last_speech_end_ms = 0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def position_ms(self) -> int:
        return self._windows * WINDOW_MS

    def reconfigure(self, settings: VadSettings) -> None:
        self.settings = settings

    def reset(self) -> None:
        """Forget any speech in progress (``input_audio_buffer.clear``); positions go on."""
        self._speaking = False
        self._run = 0

    def process(self, pcm: bytes) -> list[VadEvent]:
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size - samples.size % WINDOW_SAMPLES
        self._pending = samples[whole:].copy()
        if not whole:
            return []
        probs = speech_probability(samples[:whole].reshape(-1, WINDOW_SAMPLES))
        events: list[VadEvent] = []
        threshold = self.settings.threshold
        for p in probs.tolist():
            self._windows += 1
            end_ms = self._windows * WINDOW_MS
            if p >= threshold and p > 0.0:
                self._run += 1
                self._last_speech_end_ms = end_ms
                if not self._speaking and self._run >= ONSET_WINDOWS:
                    self._speaking = True
                    onset = end_ms - ONSET_WINDOWS * WINDOW_MS
                    start = max(0, onset - self.settings.prefix_padding_ms)
                    events.append(SpeechStarted(audio_start_ms=start, onset_ms=onset))
            else:
                self._run = 0
                silent_ms = end_ms - self._last_speech_end_ms
                if self._speaking and silent_ms >= self.settings.silence_duration_ms:
                    self._speaking = False
                    events.append(
                        SpeechStopped(audio_end_ms=end_ms, speech_end_ms=self._last_speech_end_ms)
                    )
        return events
