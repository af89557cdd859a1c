"""Received Opus decoded straight to 24 kHz mono: the same sound as aiortc's decoder
and resampler make of it, stamped as aiortc stamps frames, and bad packets refused."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.jitterbuffer import JitterFrame

from proto import audio
from services.runtime.media import MonoResampler
from services.runtime.voice_codec import SILENCE_PACKET, VoiceEncoder
from services.runtime.voice_decoder import OpusError, VoiceDecoder, load_libopus

from .test_voice_codec import decode as decode_as_aiortc
from .test_voice_codec import tone

pytestmark = pytest.mark.skipif(load_libopus() is None, reason="no libopus to load")


def decode(packets: list[bytes]) -> tuple[np.ndarray, list]:
    decoder, resample = VoiceDecoder(), MonoResampler()
    frames = [frame for n, data in enumerate(packets)
              for frame in decoder.decode(JitterFrame(data=data, timestamp=n * 960))]
    pcm = b"".join(resample(frame) for frame in frames)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64), frames


def test_a_frame_is_20_ms_of_24_khz_mono_on_the_rtp_clock():
    encoder = VoiceEncoder()
    _, frames = decode([encoder.encode(f) for f in tone(4)])
    assert [f.samples for f in frames] == [audio.FRAME_SAMPLES] * 4
    assert {(f.sample_rate, f.layout.name, f.format.name) for f in frames} == \
        {(audio.SAMPLE_RATE, "mono", "s16")}
    assert [f.pts for f in frames] == [0, 960, 1920, 2880]  # the 48 kHz RTP timestamps
    assert all(f.time_base == pytest.approx(1 / 48_000) for f in frames)


def test_speech_decodes_as_aiortc_decodes_it():
    encoder = VoiceEncoder()
    packets = [encoder.encode(f) for f in tone(50, hz=330)]
    ours, _ = decode(packets)
    theirs = decode_as_aiortc(packets)
    assert len(ours) == len(theirs) == 50 * audio.FRAME_SAMPLES
    ours, theirs = ours[audio.FRAME_SAMPLES * 5:], theirs[audio.FRAME_SAMPLES * 5:]
    assert np.sqrt(np.mean(ours ** 2)) / np.sqrt(np.mean(theirs ** 2)) == pytest.approx(1, abs=0.1)
    spectrum = np.abs(np.fft.rfft(ours))
    assert abs(np.argmax(spectrum) * audio.SAMPLE_RATE / len(ours) - 330) < 5


def test_the_silence_packet_plays_as_zeros():
    heard, _ = decode([SILENCE_PACKET] * 10)
    assert len(heard) == 10 * audio.FRAME_SAMPLES and not heard.any()


def test_an_empty_payload_is_concealed_as_one_frame():
    encoder = VoiceEncoder()
    packets = [encoder.encode(f) for f in tone(3)] + [b""]
    _, frames = decode(packets)
    assert frames[-1].samples == audio.FRAME_SAMPLES


def test_a_packet_libopus_refuses_raises_and_the_stream_goes_on():
    decoder, encoder = VoiceDecoder(), VoiceEncoder()
    with pytest.raises(OpusError):
        decoder.decode(JitterFrame(data=b"\x03\x00", timestamp=0))  # code 3 with no frames
    frame, = decoder.decode(JitterFrame(data=encoder.encode(tone(1)[0]), timestamp=960))
    assert frame.samples == audio.FRAME_SAMPLES
