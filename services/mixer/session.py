"""One session's uplink mix: its clients' jitter buffers and its own 20 ms clock.

Every tick takes at most one frame per client, sums them (:func:`.mix.mix`) and hands
the result on, whether or not anyone spoke: a stalled client contributes silence, a
session without clients publishes silence, and late frames never hold the mix back.
The mix frame's ``capture_ns`` is the newest capture time among the frames it contains
(or the wall clock for pure silence); its ``seq`` advances once per tick, skipped ticks
included, so a consumer sees a skip as a gap. (The mixer keeps frames that mixed no
client's frame off the bus by default, and counts them, and the slots a lone client's
late frame left empty, in the next frame's ``silent_before``.)

While the model speaks (its voice comes from ``aud/model``), :class:`.gating.EchoGating`
judges every client frame first; a frame that carries only the AI's own voice is ducked
(attenuated by ``duck_db``) before mixing. Each client's :class:`.activity.VoiceActivity`
then hears what is left, and its transitions go to ``on_activity``.

Prompt mix of a lone client (``prompt_lone``, on by default): a session with one client
mixes each of its frames the moment it arrives, if it is the next in sequence and playout
has started, instead of holding it for the clock (0-20 ms) behind a buffered frame
(20 ms more). The client's arrivals then pace the mix, not the clock: a tick mixes
nothing while the last frame mixed on arrival is under :data:`LATE_AFTER_S` (a frame
and a half) old, so a client whose frames arrive near the clock's phase, a little early
one time and a little late the next, is never cut in by a tick's silence. Once its frames
stop (a pause its edge keeps off the bus, a stall) the ticks take over, silence first and
a buffered frame when there is one. A frame that arrives under :data:`EARLY_S` after the
last one mixed on arrival (two arriving together) waits in the buffer rather than
speed the mix up; the buffer drops such a backlog's quiet frames (``catch_up``), so that
frame of delay goes in the next pause. With a second client the session ticks on the
clock again: mixing must wait for everyone's frame. Between a lone client's frames the
session tells the clock it needs no tick until the next one would be late, so the clock
does not wake the process for ticks that would do nothing.

A quiet session (``rest_when_quiet``: the mixer keeps silence off the bus) needs no tick
at all: nothing buffered, nobody speaking, nothing heard from the model since the last
tick. It tells the clock so, and the clock sleeps if no other session needs it. What
arrives next (a client's frame, a client joining or leaving) wakes the clock, and the
ticks slept through are made up at once: their seqs, kept off the bus as the silence
they stand for (the next frame's ``empty_before``), and what they would have put in the
echo reference. The model's voice does not wake it: the tick that would take a model
frame into the echo reference is run as the frame arrives (it mixes only silence), so
a reply to a silent room wakes the mixer once a frame, not twice. On the bus the stream
is the same as if every tick had run.

:meth:`MixerSession.tick` does one tick at a time given the wall clock, so tests drive
it without real time; :meth:`MixerSession.start` runs it on a :class:`.clock.SharedClock`
(the mixer's one clock for all of its sessions, or a clock of its own).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proto import topics
from proto.ids import check_id

from .activity import ActivitySettings, Transition, VoiceActivity, power
from .clock import PERIOD_S, SharedClock
from .echo import QUIET, EchoSettings
from .gating import EchoGating
from .jitter import DropReason, Frame, JitterBuffer, JitterSettings
from .metrics import DROPPED, FRAMES_DUCKED, TICK_SECONDS
from .mix import attenuate, mix

logger = logging.getLogger(__name__)

EARLY_S = PERIOD_S / 2
"A lone client's frame this soon after the last one mixed on arrival waits in its buffer."
LATE_AFTER_S = PERIOD_S * 3 / 2
"A lone client's frame this long after the last one mixed on arrival is late: ticks mix."

OnActivity = Callable[[str, Transition], None]
"Called with (client id, transition) when a client starts or stops speaking."


@dataclass(frozen=True, slots=True)
class MixFrame:
    seq: int
    capture_ns: int
    pcm: bytes
    speakers: int
    "How many clients' frames it contains."
    ducked: int = 0
    "How many of them were ducked as echo."
    empty_before: int = 0
    "Slots just before it that the session left empty (a lone client's late frame's own)."


@dataclass
class _Client:
    buffer: JitterBuffer
    activity: VoiceActivity


@dataclass(frozen=True)
class SessionSettings:
    jitter: JitterSettings = field(default_factory=JitterSettings)
    echo: EchoSettings = field(default_factory=EchoSettings)
    activity: ActivitySettings = field(default_factory=ActivitySettings)
    prompt_lone: bool = True
    "Mix a lone client's frames as they arrive (see :class:`MixerSession`)."
    rest_when_quiet: bool = False
    """Let the clock sleep while the session is quiet, publishing nothing (the mixer's
    ``VOXRELAY_BUS_SKIP_SILENCE``: frames that mix no client's frame stay off the bus)."""


class MixerSession:
    def __init__(self, session_id: str, settings: SessionSettings | None = None,
                 wall_clock: Callable[[], int] = time.time_ns,
                 on_activity: OnActivity | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.session_id = check_id(session_id, "session_id")
        self.topic = topics.aud_mix(session_id)
        self.settings = settings or SessionSettings()
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        "Paces the prompt mix (seconds); the clock's ticks run on the event loop's time."
        self.on_activity = on_activity
        self.frames = 0
        self.ducked = 0
        "Client frames ducked as echo."
        self.dropped: collections.Counter[DropReason] = collections.Counter()
        self._clients: dict[str, _Client] = {}
        self._gating = EchoGating(self.settings.echo, self.session_id)
        self._seq = 0
        self._clock: SharedClock | None = None
        self._publish: Callable[[MixFrame], None] | None = None
        self._ticking = asyncio.Event()
        self._arrived_at: float | None = None
        "When the last frame was mixed on arrival (None: the last mix was a tick's)."
        self._empty = 0
        "Slots left empty since the last frame mixed (see :attr:`MixFrame.empty_before`)."
        self.prompt_frames = 0
        "Frames mixed as they arrived (prompt mix of a lone client)."
        self._last_tick: int | None = None
        "The clock's index of the last tick this session ran."
        self._resting = False
        "It told the clock it needs no tick until something arrives."
        self.rested = 0
        "Ticks the clock slept through while the session was quiet."

    def __repr__(self) -> str:
        return f"MixerSession({self.session_id})"

    @property
    def clients(self) -> frozenset[str]:
        return frozenset(self._clients)

    def add_client(self, client_id: str) -> bool:
        """Start mixing ``client_id``; False if it was already mixed."""
        if client_id in self._clients:
            return False
        self._clients[client_id] = _Client(JitterBuffer(self.settings.jitter),
                                           VoiceActivity(self.settings.activity))
        self._gating.add_client(client_id)
        self._mix_on_arrival()
        logger.info("MixerSession(%s): client %s added (%d clients)", self.session_id,
                    client_id, len(self._clients), extra={"session_id": self.session_id})
        return True

    def remove_client(self, client_id: str) -> bool:
        """Stop mixing ``client_id`` (it stops speaking, if it was); False if it was not mixed."""
        client = self._clients.pop(client_id, None)
        if client is None:
            return False
        self._gating.remove_client(client_id)
        self._mix_on_arrival()
        self._report(client_id, client.activity.end())
        logger.info("MixerSession(%s): client %s removed (%d clients)", self.session_id,
                    client_id, len(self._clients), extra={"session_id": self.session_id})
        return True

    def receive(self, client_id: str, seq: int, capture_ns: int, pcm: bytes,
                silent_before: int = 0) -> None:
        """A client's frame from the bus (already checked for format and size), after
        ``silent_before`` frames of silence its edge kept off the bus."""
        client = self._clients.get(client_id)
        if client is None:
            self._count([DropReason.UNKNOWN])
            return
        if self._resting:
            self._wake()
        dropped = client.buffer.push(Frame(seq, capture_ns, pcm), silent_before)
        if dropped:
            self._count(dropped)
        if self.settings.echo.enabled:
            self._gating.hear(client_id, seq, pcm)
        if self._prompt and self._clock is not None and client.buffer.ready():
            now = self.monotonic()
            if self._arrived_at is None or now - self._arrived_at >= PERIOD_S - EARLY_S:
                self._arrived_at = now
                self.prompt_frames += 1
                self._emit()
                # the ticks before the next frame is late would only wait for it
                self._clock.postpone(self, LATE_AFTER_S)

    @property
    def _prompt(self) -> bool:
        return self.settings.prompt_lone and len(self._clients) == 1

    def _mix_on_arrival(self) -> None:
        self._arrived_at = None
        for client in self._clients.values():
            client.buffer.mix_on_arrival(self._prompt)
        if self._clock is not None:  # the clients changed: tick again from the next slot
            self._wake()

    def receive_model(self, pcm: bytes, silent_before: int = 0) -> None:
        """A frame of the model's voice (the echo reference), after ``silent_before``
        frames of silence its link kept off the bus."""
        if self.settings.echo.enabled:
            self._gating.hear_model(pcm, silent_before)
            if self._resting:
                self._tick_quietly()

    def tick(self, now_ns: int) -> MixFrame:
        """Mix this tick's frame; ``now_ns`` (wall clock) stamps a frame of pure silence."""
        if self.settings.echo.enabled:
            self._gating.update()
        parts: list[bytes] = []
        newest = 0
        ducked = 0
        for client_id, client in self._clients.items():
            frame = self._next_frame(client.buffer)
            if frame is None:
                self._report(client_id, client.activity.update(None, now_ns))
                continue
            pcm, echo = self._gated(client_id, frame)
            parts.append(pcm)
            ducked += echo
            newest = max(newest, frame.capture_ns)
            self._report(client_id, client.activity.update(power(frame.pcm), frame.capture_ns,
                                                           ducked=echo))
        if ducked:
            self.ducked += ducked
            FRAMES_DUCKED.inc(ducked)
        result = MixFrame(self._seq, newest if parts else now_ns, mix(parts), len(parts), ducked,
                          self._empty)
        self._seq += 1
        self._empty = 0
        self.frames += 1
        return result

    def _next_frame(self, buffer: JitterBuffer) -> Frame | None:
        shed = buffer.shed
        frame = buffer.pop()
        if buffer.shed != shed:
            self._count([DropReason.CATCH_UP] * (buffer.shed - shed))
        return frame

    def _gated(self, client_id: str, frame: Frame) -> tuple[bytes, bool]:
        """The frame as it is mixed (ducked if it is echo), and whether it was ducked."""
        echo = self.settings.echo
        verdict = self._gating.verdict(client_id, frame.seq) if echo.enabled else QUIET
        if verdict.echo:
            return attenuate(frame.pcm, echo.duck_gain), True
        return frame.pcm, False

    def skip(self, ticks: int) -> None:
        """The clock skipped ``ticks``: leave a gap in ``seq``, drop what is now too late."""
        self._seq += ticks
        for client in self._clients.values():
            dropped = client.buffer.trim()
            if dropped:
                self._count(dropped)

    def start(self, publish: Callable[[MixFrame], None],
              clock: SharedClock | None = None) -> None:
        """Tick in real time on ``clock`` (default: one of its own), handing each frame to
        ``publish``; see :meth:`wait_ticking`."""
        if self._clock is not None:
            return
        self._publish = publish
        self._clock = clock if clock is not None else SharedClock(self.session_id)
        self._clock.add(self, self._on_clock)

    async def wait_ticking(self) -> None:
        """Return once the first frame was published (or the session stopped)."""
        await self._ticking.wait()

    def stop(self, reason: str = "") -> None:
        """Stop the clock (idempotent) and let go of ``publish``, which usually holds the
        session itself: a stopped session is then freed at once rather than at the next
        full cycle collection (with its echo state, ~180 KB, heaped up until then)."""
        self._ticking.set()
        self._resting = False  # what still arrives wakes no clock
        if self._clock is not None:
            self._clock.remove(self)
            self._clock = None
            self._publish = None
            logger.info("MixerSession(%s): stopped (%s) after %d frames; dropped %s; "
                        "%d ducked as echo", self.session_id, reason or "no reason given",
                        self.frames, dict(self.dropped) or "none", self.ducked,
                        extra={"session_id": self.session_id})

    def _on_clock(self, skipped: int) -> float | None:
        """One tick of the clock; returns how long the session needs no tick (see
        :data:`.clock.OnTick`)."""
        assert self._clock is not None
        tick = self._clock.tick
        if self._last_tick is not None and tick <= self._last_tick:
            return math.inf if self._resting else None  # run already (_tick_quietly)
        if self._resting and self._last_tick is not None:
            self._rest(tick - self._last_tick - 1 - skipped)
        self._resting = False
        self._last_tick = tick
        if skipped:
            self.skip(skipped)
        if self._arrived_at is not None:
            since = self.monotonic() - self._arrived_at
            if since < LATE_AFTER_S:  # the lone client's next frame mixes when it comes
                return LATE_AFTER_S - since
            self._arrived_at = None
            self._empty = int(since / PERIOD_S) - 1  # the slot its late frame left empty
            self._seq += self._empty
        self._emit()
        if self.settings.rest_when_quiet and self._quiet():
            self._resting = True
            return math.inf
        return None

    def _quiet(self) -> bool:
        """Nothing buffered, nobody speaking, nothing heard: until something arrives,
        every tick would mix silence and change nothing else (:meth:`_rest`)."""
        return (self._arrived_at is None and self._gating.resting
                and all(c.buffer.idle and c.activity.idle for c in self._clients.values()))

    def _wake(self) -> None:
        """Something arrived: tick again from the clock's next slot, the slots slept
        through made up first."""
        assert self._clock is not None
        resting, self._resting = self._resting, False
        next_tick = self._clock.wake(self)
        if resting and self._last_tick is not None:
            self._rest(next_tick - self._last_tick - 1)
            self._last_tick = max(self._last_tick, next_tick - 1)

    def _tick_quietly(self) -> None:
        """The model's voice came while the session rests: run now, without waking the
        clock, the tick that would have taken it in (the slots before it made up first);
        it only feeds the echo reference and mixes silence kept off the bus. More frames
        before that tick's slot join it. During a reply to a silent room the clock then
        sleeps, and the process wakes once per model frame rather than twice."""
        assert self._clock is not None and self._last_tick is not None
        slot = self._clock.next_slot()
        if slot <= self._last_tick:
            self._gating.take_model()
            return
        self._rest(slot - self._last_tick - 1)
        self._seq += 1
        self._empty += 1
        self._gating.update()
        self._last_tick = slot

    def _rest(self, ticks: int) -> None:
        """``ticks`` the clock slept through while the session was quiet: each would have
        mixed silence (a seq, kept off the bus: counted in the next frame's
        ``empty_before``) and passed in the echo reference."""
        if ticks <= 0:
            return
        self.rested += ticks
        self._seq += ticks
        self._empty += ticks
        if self.settings.echo.enabled:
            self._gating.rested(ticks)

    def _emit(self) -> None:
        assert self._publish is not None
        began = time.perf_counter()
        frame = self.tick(self.wall_clock())
        TICK_SECONDS.observe(time.perf_counter() - began)
        self._publish(frame)
        self._ticking.set()

    def _report(self, client_id: str, transition: Transition | None) -> None:
        if transition is not None and self.on_activity is not None:
            self.on_activity(client_id, transition)

    def _count(self, reasons: list[DropReason]) -> None:
        for reason in reasons:
            self.dropped[reason] += 1
            DROPPED[reason].inc()
