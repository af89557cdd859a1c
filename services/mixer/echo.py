"""Echo gating: is a client's microphone only hearing the AI's own voice?

A phone on the table plays the AI; its microphone picks that voice up again and, mixed
into the uplink, the model would hear itself and interrupt its own reply. The mixer sees
both signals — the model's voice on ``aud/model`` and every client's microphone — so it
compares them, frame by frame:

- both are decimated to 2 kHz (the mean of every 12 samples: a voice's fundamental and
  first formant, most of its energy, lie below 1 kHz, and the work shrinks 144-fold).
  Against 4 kHz this costs about 0.6× per judged frame (``python -m
  benchmarks.echo_cost``) with the same verdicts on the tests' speech: an echo ducked
  from its first loud frame, another voice correlating at most 0.55 (0.56 at 4 kHz),
  speech over the echo through in 96% of its loud frames (the same);
- :class:`ModelReference` keeps the model's last ``window + max_lag`` of that signal, as
  a stream (frames in the order they came, however bunched their arrival), and, when a
  microphone needs it, its spectrum and running energies;
- :class:`EchoGate` keeps one client's last ``window`` of microphone, also as a stream
  (every frame received, in ``seq`` order, lost ones as silence), and computes the
  normalised cross-correlation with the model's voice at every lag ``0..max_lag`` (one
  FFT product) — the acoustic and network delay is unknown and differs per client.

Streams, not ticks: frames reach the mixer in bunches (a busy peer, a busy loop), and a
waveform comparison needs both signals continuous; the delay between the two streams
may then wander a little, so the lag is searched afresh for every frame.

A frame is echo when the best correlation is high (an echo is a delayed, filtered copy;
another voice, even the same synthetic one, correlates far less) *and* the microphone is
not much louder than the echo explains: the client's echo gain is learned while the
correlation is unambiguous, and real speech over the AI's voice makes the microphone
louder than that at once, so that client still barges in.

Two things keep the echo from slipping through between clear verdicts. When the echo
delay jumps (a playout queue skipped or stretched a frame), the whole window still
matches the old lag while its newest frames do not: so the newest ``short_ms`` are also
searched on their own. And for ``hangover_frames`` after a clear verdict, a frame is
taken for echo unless it is clearly louder than any echo the model's voice could cause
within ``LAG_SPREAD`` of the known lag: an unclear frame (a consonant, a delay that
moved) stays ducked, while real speech over the echo is louder and passes at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from proto.audio import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

DECIMATION = 12
RATE = SAMPLE_RATE // DECIMATION
"Samples per second of the signals compared (2 kHz)."
FRAME = FRAME_SAMPLES // DECIMATION
"Decimated samples per 20 ms frame (40)."
RECENT = 2 * FRAME
"The last 40 ms: where the microphone's level is compared with the echo's."
LAG_SPREAD = RATE // 40
"How far (25 ms: a frame more or less) the echo delay may move between clear verdicts."
SHORT_FROM = 0.35
"""Below this whole-window correlation (and out of a hangover) the newest stretch is not
searched on its own: nothing there looks like an echo whose delay just moved."""
FULL_SCALE_POWER = 32768.0**2


def db_to_power(db: float) -> float:
    return 10 ** (db / 10)


def fft_size(n: int) -> int:
    """The smallest length >= ``n`` made of factors 2, 3 and 5 (fast for numpy's FFT)."""
    return min(2**a * 3**b * 5**c for a in range(n.bit_length() + 1) for b in range(4)
               for c in range(3) if 2**a * 3**b * 5**c >= n)


@dataclass(frozen=True, slots=True)
class Heard:
    """One 20 ms frame as the gate sees it."""

    samples: np.ndarray
    "At 2 kHz: the mean of every 12 samples (40 values)."
    power: float
    "Mean square of the full-band frame."

    @classmethod
    def of(cls, pcm: bytes) -> Heard:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        return cls(samples.reshape(FRAME, DECIMATION).sum(axis=1) * (1 / DECIMATION),
                   float(samples.dot(samples)) / samples.size)


SILENT = Heard(np.zeros(FRAME), 0.0)


@dataclass(frozen=True)
class EchoSettings:
    enabled: bool = True
    duck_db: float = 30.0
    "How much an echo frame is attenuated before it is mixed."
    window_ms: int = 400
    "How much of the microphone is compared with the model's voice."
    max_lag_ms: int = 1000
    "The longest echo delay looked for: playout, the room, both networks, jitter buffers."
    short_ms: int = 120
    "The newest stretch searched on its own when the whole window's lag does not explain it."
    detect: float = 0.6
    "Best correlation at or above which a microphone may be echo."
    detect_short: float = 0.8
    "The same for the newest ``short_ms`` alone (a shorter stretch matches more easily)."
    learn: float = 0.75
    "Best correlation at or above which the client's echo gain is learned."
    excess_db: float = 6.0
    "How much louder than the expected echo a microphone may be and still be echo."
    max_gain_db: float = 6.0
    "An echo is at most this much louder than the model's voice itself."
    floor_dbfs: float = -50.0
    "Quieter microphones (and model audio) are not judged: there is nothing to gate."
    hangover_frames: int = 5
    "Frames after a clear echo verdict during which unclear frames are still echo."

    def __post_init__(self) -> None:
        for name in ("window_ms", "max_lag_ms", "short_ms"):
            value = getattr(self, name)
            if not FRAME_MS <= value <= 2000 or value % FRAME_MS:
                raise ValueError(f"'{name}' must be a multiple of {FRAME_MS} ms within "
                                 f"{FRAME_MS}..2000 ms (got {value})")
        if self.short_ms > self.window_ms:
            raise ValueError(f"'short_ms' must be <= 'window_ms' ({self.window_ms}) "
                             f"(got {self.short_ms})")
        if self.duck_db < 0:
            raise ValueError(f"'duck_db' must be >= 0 (got {self.duck_db})")
        if not 0.0 < self.detect <= self.learn <= 1.0:
            raise ValueError("expected 0 < 'detect' <= 'learn' <= 1 (got "
                             f"{self.detect}, {self.learn})")

    @property
    def window(self) -> int:
        return self.window_ms * RATE // 1000

    @property
    def max_lag(self) -> int:
        return self.max_lag_ms * RATE // 1000

    @property
    def short(self) -> int:
        return self.short_ms * RATE // 1000

    @property
    def duck_gain(self) -> float:
        return 10 ** (-self.duck_db / 20)


@dataclass(frozen=True, slots=True)
class Verdict:
    echo: bool
    correlation: float = 0.0
    "The best normalised cross-correlation with the model's voice."
    lag_ms: float = 0.0
    "Where it was found: how long ago the model said what the microphone hears."
    excess_db: float = 0.0
    "How much louder the microphone is than the echo expected at that lag."


QUIET = Verdict(echo=False)
"Nothing judged: the model is silent, or the microphone is."


class ModelReference:
    """The model's recent voice in one session: a stream of its frames, as they came."""

    def __init__(self, settings: EchoSettings) -> None:
        self.settings = settings
        self.size = settings.window + settings.max_lag
        self.history = np.zeros(self.size)
        "The model's voice at 2 kHz, oldest first."
        self.fft_size = fft_size(self.size)
        self.active = False
        "Whether anything the microphones could echo is audible (after :meth:`prepare`)."
        self._spectrum = np.zeros(self.fft_size // 2 + 1, dtype=np.complex128)
        self._squared_sums = np.zeros(self.size + 1)
        self._sums = np.zeros(self.size + 1)
        self._floor = db_to_power(settings.floor_dbfs) * FULL_SCALE_POWER
        self._dirty = False

    def push(self, heard: Heard) -> None:
        """The model's next frame."""
        history = self.history
        history[:-FRAME] = history[FRAME:]
        history[-FRAME:] = heard.samples
        self._dirty = True

    def reset(self) -> None:
        """The model went quiet (no frames at all): forget what it said."""
        self.history[:] = 0.0
        self._dirty = True

    def prepare(self) -> None:
        """Spectrum and running sums of the history, once per change (for every client)."""
        if not self._dirty:
            return
        self._dirty = False
        history = self.history
        squares = np.square(history)
        self.active = bool(squares.sum() >= self._floor * self.settings.window)
        if self.active:
            self._spectrum = np.fft.rfft(history, self.fft_size)
            self._squared_sums[1:] = np.cumsum(squares)
            self._sums[1:] = np.cumsum(history)

    def correlate(self, window: np.ndarray) -> np.ndarray | None:
        """Normalised cross-correlation of a microphone ``window`` (its newest samples) with
        the model at every lag ``0..max_lag`` (index = lag); None for a flat window."""
        n = window.size
        centred = window - window.sum() / n
        norm = math.sqrt(float(centred.dot(centred)))
        if norm == 0.0:
            return None
        spectrum = np.fft.rfft(centred, self.fft_size)
        products = np.fft.irfft(self._spectrum * np.conj(spectrum), self.fft_size)
        first = self.size - n - self.settings.max_lag  # the model window at the longest lag
        offsets = slice(first, self.size - n + 1)
        energies = self._energies(n)[offsets]
        sums = self._sums[n:][offsets] - self._sums[:-n][offsets]
        variances = energies - np.square(sums) / n
        scores = products[offsets] / (norm * np.sqrt(np.maximum(variances, 1.0)))
        scores[variances < self._floor * n * 1e-2] = 0.0  # a silent model: nothing to match
        return scores[::-1]

    def energy(self, lag: int, n: int) -> float:
        """The model's energy (sum of squares) over ``n`` samples ending ``lag`` ago."""
        end = self.size - lag
        return float(self._squared_sums[end] - self._squared_sums[end - n])

    def recent_power(self, low: int, high: int) -> float:
        """The model's loudest mean power over 40 ms ending between ``low`` and ``high`` ago."""
        ends = self._squared_sums[self.size - high:self.size - low + 1]
        starts = self._squared_sums[self.size - high - RECENT:self.size - low + 1 - RECENT]
        return float((ends - starts).max()) / RECENT

    def _energies(self, n: int) -> np.ndarray:
        return self._squared_sums[n:] - self._squared_sums[:-n]


class EchoGate:
    """One client's microphone against the model's voice: echo or not, frame by frame."""

    def __init__(self, settings: EchoSettings) -> None:
        self.settings = settings
        self.history = np.zeros(settings.window)
        "The microphone at 2 kHz, oldest first."
        self.gain: float | None = None
        "The learned echo power gain (microphone power / model power), once known."
        self.lag: int | None = None
        "The echo delay (decimated samples) at the last clear verdict."
        self.hangover = 0
        "Frames left in which unclear frames are still taken for echo."
        self._floor = db_to_power(settings.floor_dbfs) * FULL_SCALE_POWER
        self._max_gain = db_to_power(settings.max_gain_db)
        self._excess = db_to_power(settings.excess_db)

    def check(self, heard: Heard, model: ModelReference) -> Verdict:
        """Judge the microphone's next frame against ``model``."""
        history = self.history
        history[:-FRAME] = history[FRAME:]
        history[-FRAME:] = heard.samples
        self.hangover = max(0, self.hangover - 1)
        model.prepare()
        if not model.active:
            self.hangover = 0
            return QUIET
        if heard.power < self._floor:
            return QUIET
        newest = history[-RECENT:]
        recent = float(newest.dot(newest)) / RECENT
        scores = model.correlate(history) if recent >= self._floor * 0.1 else None
        if scores is None:  # audible, but not below 1 kHz (a fricative): as it was
            return Verdict(echo=self.hangover > 0)
        return self._judge(scores, recent, model)

    def lost(self, frames: int) -> None:
        """``frames`` never arrived: they count as silence, so the stream stays in step."""
        frames = min(frames, len(self.history) // FRAME)
        self.history[:-frames * FRAME] = self.history[frames * FRAME:]
        self.history[-frames * FRAME:] = 0.0

    def reset(self) -> None:
        """The microphone's stream started over: forget its past (the echo gain stays)."""
        self.history[:] = 0.0
        self.hangover = 0

    def _judge(self, scores: np.ndarray, recent: float, model: ModelReference) -> Verdict:
        settings = self.settings
        lag = int(scores.argmax())
        correlation = float(scores[lag])
        mic_energy = float(self.history.dot(self.history))
        fitted = mic_energy / max(model.energy(lag, settings.window), 1e-9)
        if correlation >= settings.learn and fitted <= self._max_gain:
            self.gain = fitted if self.gain is None else 0.8 * self.gain + 0.2 * fitted
        gain = self.gain if self.gain is not None else min(fitted, self._max_gain)
        excess = recent / max(gain * model.recent_power(lag, lag), 1e-9)
        clear = correlation >= settings.detect and excess <= self._excess
        if not clear and (correlation >= SHORT_FROM or self.hangover > 0):
            moved = self._newest_alone(recent, gain, model)
            if moved is not None:
                clear, (lag, excess) = True, moved
        if clear:
            self.lag, self.hangover = lag, settings.hangover_frames + 1
        elif self.hangover > 0 and self.lag is not None:  # unclear: echo, unless louder
            lag = self.lag
            low, high = max(0, lag - LAG_SPREAD), min(settings.max_lag, lag + LAG_SPREAD)
            excess = recent / max(gain * model.recent_power(low, high), 1e-9)
        echo = excess <= self._excess and self.hangover > 0
        return Verdict(echo, correlation, lag * 1000 / RATE, 10 * math.log10(max(excess, 1e-12)))

    def _newest_alone(self, recent: float, gain: float,
                      model: ModelReference) -> tuple[int, float] | None:
        """The delay may have just moved: (lag, excess) if the newest frames alone are a
        clear echo from somewhere, else None."""
        scores = model.correlate(self.history[-self.settings.short:])
        if scores is None or scores.max() < self.settings.detect_short:
            return None
        lag = int(scores.argmax())
        excess = recent / max(gain * model.recent_power(lag, lag), 1e-9)
        return (lag, excess) if excess <= self._excess else None
