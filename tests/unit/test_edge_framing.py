"""The edge's uplink: decoded browser audio becomes exact 20 ms aud/in frames."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from proto import audio, ids, topics
from services.media_edge.uplink import MIC_TAIL_FRAMES, Uplink
from services.runtime.media import Framer
from tests.support.speech import rms_dbfs

BROWSER_RATE = 48_000
BROWSER_SAMPLES = 960
"What aiortc's Opus decoder hands out: 48 kHz stereo s16, 960 samples a frame."


class DecodedOpus(MediaStreamTrack):
    """A remote track as aiortc presents one: ``count`` frames of a 440 Hz tone, then ends."""

    kind = "audio"

    def __init__(self, count: int, dbfs: float = -12.0) -> None:
        super().__init__()
        self.count = count
        self.sent = 0
        self.amplitude = 32767 * 10 ** (dbfs / 20)

    async def recv(self) -> AudioFrame:
        if self.sent == self.count:
            raise MediaStreamError
        frame = self.frame(self.sent, self.amplitude)
        self.sent += 1
        return frame

    @staticmethod
    def frame(slot: int, amplitude: float, first_pts: int = 0) -> AudioFrame:
        """The decoded frame of RTP slot ``slot`` (20 ms each, from ``first_pts``)."""
        t = (np.arange(BROWSER_SAMPLES) + slot * BROWSER_SAMPLES) / BROWSER_RATE
        mono = (amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2")
        stereo = np.repeat(mono, 2).reshape(1, -1)
        frame = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = BROWSER_RATE
        frame.pts = (first_pts + slot * BROWSER_SAMPLES) % (1 << 32)  # RTP timestamps wrap
        frame.time_base = fractions.Fraction(1, BROWSER_RATE)
        return frame


class DtxMicrophone(MediaStreamTrack):
    """A browser with Opus DTX: only the given RTP slots arrive, (slot, loud) each."""

    kind = "audio"

    def __init__(self, slots: list[tuple[int, bool]], first_pts: int) -> None:
        super().__init__()
        self.slots = list(slots)
        self.first_pts = first_pts

    async def recv(self) -> AudioFrame:
        if not self.slots:
            raise MediaStreamError
        slot, loud = self.slots.pop(0)
        return DecodedOpus.frame(slot, 8000 if loud else 3, self.first_pts)


def test_framer_cuts_exact_frames_and_carries_the_rest():
    framer = Framer()
    assert framer.push(bytes(500)) == []
    chunk = bytes(range(256)) * 8
    frames = framer.push(chunk)  # 500 + 2048 bytes: two frames and 628 left over
    assert [len(f) for f in frames] == [audio.FRAME_BYTES] * 2
    assert framer.pending_bytes == 500 + 2048 - 2 * audio.FRAME_BYTES
    assert frames[0] == bytes(500) + chunk[:460] and frames[1] == chunk[460:1420]


def test_framer_keeps_the_byte_stream_intact():
    stream = np.random.default_rng(1).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    framer = Framer()
    out = b"".join(f for i in range(0, len(stream), 333) for f in framer.push(stream[i:i + 333]))
    assert out == stream[:len(out)] and len(out) == len(stream) // audio.FRAME_BYTES * 960


async def test_uplink_publishes_24k_mono_frames_with_consecutive_seq():
    session_id, client_id = ids.new_id(), ids.new_id()
    sent: list[list[bytes]] = []
    uplink = Uplink(session_id, client_id, lambda parts: sent.append(parts) or True, first_seq=7)
    await uplink.run(DecodedOpus(50))

    decoded = [audio.unpack(parts) for parts in sent]
    assert len(decoded) == 50, "20 ms in, 20 ms out"
    assert {topic for topic, _, _ in decoded} == {topics.aud_in(session_id, client_id)}
    assert [h.seq for _, h, _ in decoded] == list(range(7, 7 + len(decoded)))
    assert all(len(pcm) == audio.FRAME_BYTES and h.samples == 480 for _, h, pcm in decoded)
    assert uplink.next_seq == 7 + len(decoded)
    level = rms_dbfs(b"".join(pcm for _, _, pcm in decoded[5:]))
    assert level == pytest.approx(-15.0, abs=1.0), "a -12 dBFS peak sine is -15 dBFS RMS"


async def test_each_decoded_frame_is_published_before_the_next_is_read():
    """The resampler's filter delay must not make the framer wait a frame: every frame
    leaves as soon as its decoded frame came in, not 20 ms later with the next."""
    track = DecodedOpus(30)
    read_when_published: list[int] = []
    published: list[bytes] = []

    def publish(parts: list[bytes]) -> bool:
        read_when_published.append(track.sent)
        published.append(audio.unpack(parts)[2])
        return True

    await Uplink(ids.new_id(), ids.new_id(), publish).run(track)
    assert read_when_published == list(range(1, 31))
    heard = np.frombuffer(b"".join(published), dtype="<i2").astype(np.float64)
    t = np.arange(heard.size) / audio.SAMPLE_RATE
    lags = [float(np.dot(heard[100:-100], np.sin(2 * np.pi * 440 * (t[100:-100] - lag / audio.SAMPLE_RATE))))
            for lag in range(48)]
    assert int(np.argmax(lags)) < 24, "the audio itself is delayed by the filter only (< 1 ms)"


async def test_listener_uplink_drains_its_track_and_publishes_nothing():
    sent: list[list[bytes]] = []
    track = DecodedOpus(20)
    uplink = Uplink(ids.new_id(), ids.new_id(), lambda parts: sent.append(parts) or True,
                    enabled=False)
    await uplink.run(track)
    assert track.sent == 20 and sent == []


async def test_a_refused_send_skips_its_seq():
    accepted: list[int] = []

    def publish(parts: list[bytes]) -> bool:
        seq = audio.unpack(parts)[1].seq
        if seq % 2:
            return False
        accepted.append(seq)
        return True

    uplink = Uplink(ids.new_id(), ids.new_id(), publish)
    for _ in range(6):
        uplink.publish(TONE)
    assert accepted == [0, 2, 4] and uplink.next_seq == 6


TONE = (np.sin(np.arange(audio.FRAME_SAMPLES) / 5) * 8000).astype("<i2").tobytes()
QUIET = np.full(audio.FRAME_SAMPLES, 40, dtype="<i2").tobytes()
"Below the audible peak (-50 dBFS): a microphone between turns."


@pytest.mark.parametrize("skip", [True, False])
def test_silence_between_turns_stays_off_the_bus_and_the_next_frame_says_how_much(skip):
    sent: list[tuple[int, int, bytes]] = []

    def publish(parts: list[bytes]) -> bool:
        _, header, pcm = audio.unpack(parts)
        sent.append((header.seq, header.silent_before, pcm))
        return True

    uplink = Uplink(ids.new_id(), ids.new_id(), publish, skip_silence=skip)
    tail = MIC_TAIL_FRAMES
    stream = [QUIET] * 3 + [TONE] * 2 + [QUIET] * (tail + 4) + [TONE]
    for pcm in stream:
        uplink.publish(pcm)
    if not skip:
        assert [(seq, before) for seq, before, _ in sent] == [(n, 0) for n in range(len(stream))]
        return
    # the quiet start is never sent; after speech, the microphone's tail of quiet frames
    # (long enough for the model's turn detection) goes, then nothing until the next
    # speech, which counts the four frames skipped
    assert [(seq, before) for seq, before, _ in sent] == (
        [(3, 3), (4, 0)] + [(5 + n, 0) for n in range(tail)] + [(len(stream) - 1, 4)])
    assert [pcm for _, _, pcm in sent] == [TONE, TONE] + [QUIET] * tail + [TONE]
    assert uplink.next_seq == len(stream)


# Speech, ten quiet frames (libopus's hangover before DTX), then a comfort-noise packet
# every 400 ms until speech resumes; the RTP clock wraps in the middle.
DTX_STREAM = ([(n, True) for n in range(5)] + [(n, False) for n in range(5, 16)]
              + [(35, False), (55, False), (60, True), (61, True)])


@pytest.mark.parametrize("skip", [True, False])
async def test_slots_a_dtx_browser_left_out_are_silence_kept_off_the_bus(skip):
    sent: list[tuple[int, int]] = []

    def publish(parts: list[bytes]) -> bool:
        header = audio.unpack(parts)[1]
        sent.append((header.seq, header.silent_before))
        return True

    uplink = Uplink(ids.new_id(), ids.new_id(), publish, skip_silence=skip)
    await uplink.run(DtxMicrophone(DTX_STREAM, first_pts=(1 << 32) - 30 * BROWSER_SAMPLES))
    # Either way the seq follows the browser's clock: 20 ms a step, sent or not.
    assert uplink.left_out == 62 - len(DTX_STREAM)
    assert uplink.next_seq == 62
    if not skip:  # every frame that came goes; the slots left out are seq gaps
        assert sent == [(slot, 0) for slot, _ in DTX_STREAM]
        return
    # The tail after speech goes (its eleven frames, all that came before DTX began);
    # the gaps count toward it, so the comfort-noise packets after them stay off the bus,
    # and the next speech says how much silence came before it: slots 16..59.
    assert sent == [(n, 0) for n in range(16)] + [(60, 44), (61, 0)]


async def test_a_stream_that_jumps_back_or_far_ahead_is_not_counted_as_left_out():
    sent: list[int] = []
    uplink = Uplink(ids.new_id(), ids.new_id(),
                    lambda parts: sent.append(audio.unpack(parts)[1].seq) or True)
    far = 10 * 60 * 50  # ten minutes of slots: a restarted sender, not DTX
    await uplink.run(DtxMicrophone([(0, True), (1, True), (far, True), (far - 5, True)],
                                   first_pts=0))
    assert sent == [0, 1, 2, 3] and uplink.left_out == 0
