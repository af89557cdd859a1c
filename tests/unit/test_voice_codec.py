"""Voice Opus: what the encoder makes decodes back to the speech; silence costs nothing."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from proto import audio
from services.runtime.media import MonoResampler
from services.runtime.voice_codec import (
    DEFAULT_BITRATE,
    DEFAULT_COMPLEXITY,
    SILENCE_PACKET,
    SILENCE_TAIL_FRAMES,
    PromptJitterBuffer,
    VoiceEncoder,
    _LibopusEncoder,
    _PyAVEncoder,
    voice_packet,
)
from services.runtime.voice_decoder import load_libopus


def tone(frames: int, hz: float = 330.0, amplitude: int = 8000) -> list[bytes]:
    t = np.arange(frames * audio.FRAME_SAMPLES) / audio.SAMPLE_RATE
    pcm = (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
    return [pcm[i:i + audio.FRAME_BYTES] for i in range(0, len(pcm), audio.FRAME_BYTES)]


def decode(packets: list[bytes]) -> np.ndarray:
    """As a browser hears it: aiortc's stock decoder (48 kHz stereo), back to 24 kHz mono."""
    decoder, resample = OpusDecoder(), MonoResampler()
    pcm = b"".join(resample(frame)
                   for n, data in enumerate(packets)
                   for frame in decoder.decode(JitterFrame(data=data, timestamp=n * 960)))
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def test_encoded_speech_decodes_to_the_same_sound():
    frames = tone(50)
    encoder = VoiceEncoder()
    packets = [encoder.encode(f) for f in frames]
    assert encoder.encoded == 50 and SILENCE_PACKET not in packets
    assert all(len(p) < 200 for p in packets), "32 kbit/s: ~80 bytes a frame"
    heard = decode(packets)[audio.FRAME_SAMPLES * 5:]  # past the codec's start-up
    sent = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    rms_heard, rms_sent = np.sqrt(np.mean(heard ** 2)), np.sqrt(np.mean(sent ** 2))
    assert 0.7 < rms_heard / rms_sent < 1.3
    spectrum = np.abs(np.fft.rfft(heard))
    peak_hz = np.argmax(spectrum) * audio.SAMPLE_RATE / len(heard)
    assert abs(peak_hz - 330) < 5


def test_silence_after_a_short_tail_is_the_constant_packet_and_plays_as_zeros():
    encoder = VoiceEncoder()
    quiet = bytes(audio.FRAME_BYTES)
    packets = [encoder.encode(f) for f in tone(3)] + [encoder.encode(quiet) for _ in range(20)]
    assert encoder.encoded == 3 + SILENCE_TAIL_FRAMES
    assert packets[3 + SILENCE_TAIL_FRAMES:] == [SILENCE_PACKET] * (20 - SILENCE_TAIL_FRAMES)
    tail = decode([SILENCE_PACKET] * 10)
    assert len(tail) == 10 * audio.FRAME_SAMPLES and not tail.any()


def test_sound_after_silence_is_encoded_again_at_once():
    encoder = VoiceEncoder()
    for _ in range(20):
        assert encoder.encode(bytes(audio.FRAME_BYTES)) == SILENCE_PACKET
    assert encoder.encode(tone(1)[0]) != SILENCE_PACKET


@pytest.mark.skipif(load_libopus() is None, reason="libopus does not load here")
@pytest.mark.parametrize("bitrate, complexity", [(DEFAULT_BITRATE, DEFAULT_COMPLEXITY),
                                                 (16_000, 9)])
def test_libopus_called_directly_makes_pyavs_packets(bitrate, complexity):
    """The direct encoder takes the settings PyAV's wrapper gives libopus: byte for byte
    the same packets, at the default settings and at others."""
    t = np.arange(40 * audio.FRAME_SAMPLES) / audio.SAMPLE_RATE
    voice = (6000 * np.sin(2 * np.pi * (150 + 60 * t) * t)
             + np.random.default_rng(3).normal(0, 400, t.size)).astype("<i2").tobytes()
    frames = [voice[i:i + audio.FRAME_BYTES] for i in range(0, len(voice), audio.FRAME_BYTES)]
    direct = _LibopusEncoder(load_libopus(), bitrate, complexity)
    pyav = _PyAVEncoder(bitrate, complexity)
    packets = [direct(f) for f in frames]
    assert packets == [pyav(f) for f in frames]
    assert len(set(map(len, packets))) > 5, "VBR: sizes follow the sound"


def test_a_packet_carries_its_pts_at_24_khz():
    packet = voice_packet(SILENCE_PACKET, 960)
    assert packet.pts == 960 and packet.time_base.denominator == audio.SAMPLE_RATE
    assert bytes(packet) == SILENCE_PACKET


def test_bad_frames_and_settings_are_refused():
    with pytest.raises(ValueError, match="960 bytes"):
        VoiceEncoder().encode(bytes(10))
    with pytest.raises(ValueError, match="complexity"):
        VoiceEncoder(complexity=11)


def rtp(seq: int) -> RtpPacket:
    packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
    packet._data = bytes([seq % 256])  # type: ignore[attr-defined]
    return packet


def test_prompt_jitter_hands_on_newer_packets_and_drops_late_ones():
    buffer = PromptJitterBuffer()
    handed = [buffer.add(rtp(seq))[1] for seq in (65534, 65535, 0, 2, 1, 2, 3)]
    assert [f.timestamp // 960 if f else None for f in handed] == \
        [65534, 65535, 0, 2, None, None, 3]  # across the wrap; 1 came late, 2 twice
    assert handed[0].data == bytes([254])


def test_prompt_jitter_restarts_with_a_stream_that_restarted():
    buffer = PromptJitterBuffer()
    buffer.add(rtp(5000))
    _, frame = buffer.add(rtp(17))  # far behind: a new sequence, not a late packet
    assert frame is not None and frame.timestamp == 17 * 960
    assert buffer.add(rtp(18))[1] is not None
