import numpy as np

from proto.audio import FRAME_MS
from services.media_edge.uplink import MIC_TAIL_FRAMES
from services.openai_link.calls_api import CallSettings, session_config
from services.openai_sim.vad import ServerVad, SpeechStarted, SpeechStopped, VadSettings
from tests.support.speech import silence, speak


def feed(vad: ServerVad, pcm: bytes, chunk: int = 960) -> list:
    events = []
    for i in range(0, len(pcm), chunk):
        events += vad.process(pcm[i : i + chunk])
    return events


def test_speech_between_silences_gives_one_start_and_stop():
    phrase = speak("testing the voice activity detector")
    events = feed(ServerVad(VadSettings()), silence(1000) + phrase + silence(800))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    started, stopped = events
    assert 950 <= started.onset_ms <= 1200
    assert started.audio_start_ms == started.onset_ms - 300
    # audio_end_ms includes the silence duration, as the real service reports it.
    assert stopped.audio_end_ms - stopped.speech_end_ms >= 200
    assert stopped.speech_end_ms <= 1000 + len(phrase) // 48 + 20


def test_silence_and_quiet_noise_never_trigger():
    quiet = bytes(bytearray([1, 0]) * 48_000)  # a constant 1 LSB: about -90 dBFS
    assert feed(ServerVad(VadSettings()), silence(3000) + quiet) == []


def test_prefix_padding_is_clamped_at_the_session_start():
    events = feed(ServerVad(VadSettings(prefix_padding_ms=300)), speak("hello") + silence(500))
    assert isinstance(events[0], SpeechStarted)
    assert events[0].audio_start_ms == 0


def test_longer_silence_duration_keeps_a_paused_sentence_together():
    pcm = silence(300) + speak("one") + silence(400) + speak("two") + silence(1500)
    short = feed(ServerVad(VadSettings(silence_duration_ms=200)), pcm)
    long = feed(ServerVad(VadSettings(silence_duration_ms=800)), pcm)
    assert sum(isinstance(e, SpeechStopped) for e in short) == 2
    assert sum(isinstance(e, SpeechStopped) for e in long) == 1


def test_chunk_size_does_not_change_the_result():
    pcm = silence(500) + speak("chunk sizes should not matter") + silence(600)
    assert feed(ServerVad(VadSettings()), pcm, 960) == feed(ServerVad(VadSettings()), pcm, 1234)


def test_invalid_threshold_is_refused_with_its_value():
    try:
        VadSettings(threshold=1.5)
    except ValueError as e:
        assert "1.5" in str(e)
    else:
        raise AssertionError("threshold 1.5 accepted")


def test_the_link_asks_for_a_turn_end_inside_the_microphone_tail():
    """With silence off the bus, a pause reaches the model (over WebSocket) as the
    microphone's quiet tail and then nothing: the turn detection the link asks for must
    end the turn on that tail alone, whatever the API's own default wait."""
    samples = np.frombuffer(speak("see you tomorrow"), dtype=np.int16)
    last_sound = int(np.flatnonzero(np.abs(samples) > 300)[-1])  # espeak pads with silence
    pause = samples[: last_sound + 1].tobytes() + silence(MIC_TAIL_FRAMES * FRAME_MS)

    detection = session_config(CallSettings())["audio"]["input"]["turn_detection"]
    vad = ServerVad(VadSettings(silence_duration_ms=detection["silence_duration_ms"]))
    assert [type(e) for e in feed(vad, pause)] == [SpeechStarted, SpeechStopped]
    # The documented default (500 ms) would leave that turn open until the next sound.
    late = feed(ServerVad(VadSettings(silence_duration_ms=500)), pause)
    assert [type(e) for e in late] == [SpeechStarted]
