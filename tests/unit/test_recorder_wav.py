"""Recorded audio files: sample N at ``started_at + N / 24000`` whatever arrives, and
readable after a crash or a full disk. Real files in a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from proto.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from proto.ids import new_id
from services.recorder.audio_writer import AudioWriter, Frame
from services.recorder.session_audio import SessionAudio, StreamKey
from services.recorder.timeline import Timeline
from services.recorder.wavfile import HEADER_BYTES, WavWriter, read_sizes, repair

ROOT = Path(__file__).resolve().parents[2]
T0_NS = 1_760_000_000_000_000_000
FRAME_NS = 20_000_000
MIX = StreamKey("mix")


def tone(n: int) -> bytes:
    """A 20 ms frame, every sample ``n`` (1..): recognisable wherever it lands."""
    return np.full(FRAME_SAMPLES, n, dtype="<i2").tobytes()


def samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def index_of(session: SessionAudio) -> dict:
    return json.loads((session.folder / "index.json").read_text())


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("voxrelay_recorder_audio_frames_dropped_total",
                                     {"reason": reason}) or 0.0


def record(tmp_path: Path, frames: list[tuple[int, int]], key: StreamKey = MIX
           ) -> tuple[SessionAudio, np.ndarray]:
    """Record ``(seq, capture_ns)`` frames (frame i carries the value i + 1), close, read."""
    session = SessionAudio(tmp_path, new_id())
    for i, (seq, capture_ns) in enumerate(frames):
        session.frame(key, seq, capture_ns, tone(i + 1))
    session.close()
    return session, samples(session.folder / key.file)


def first_sample_of(values: np.ndarray, n: int) -> int:
    return int(np.flatnonzero(values == n)[0])


def test_frames_in_order_start_the_file_at_the_first_capture_time(tmp_path):
    session, values = record(tmp_path, [(s, T0_NS + s * FRAME_NS + 3_000_000 * (s % 2))
                                        for s in range(50)])
    assert len(values) == 50 * FRAME_SAMPLES  # a few ms of jitter is not a gap
    assert [first_sample_of(values, i + 1) for i in range(50)] == [
        i * FRAME_SAMPLES for i in range(50)]
    [stream] = index_of(session)["streams"]
    assert stream == {"file": "mix.wav", "kind": "mix", "started_at": T0_NS / 1e9,
                      "sample_rate": 24000, "channels": 1, "frames": 24000, "duration_s": 1.0,
                      "gaps_filled_ms": 0, "frames_dropped": 0}


def test_a_gap_in_seq_is_silence_so_later_frames_keep_their_time(tmp_path):
    seqs = [*range(10), *range(15, 20)]  # 5 frames lost on the way
    session, values = record(tmp_path, [(s, T0_NS + s * FRAME_NS) for s in seqs])
    assert len(values) == 20 * FRAME_SAMPLES
    assert not values[10 * FRAME_SAMPLES:15 * FRAME_SAMPLES].any()
    assert first_sample_of(values, 11) == 15 * FRAME_SAMPLES  # the frame of seq 15
    assert index_of(session)["streams"][0]["gaps_filled_ms"] == 100


def test_the_model_between_replies_is_silence_by_capture_time(tmp_path):
    """Model frames come paced, seq unbroken, but stop between replies: the capture time
    says how long the pause was."""
    first = [(s, T0_NS + s * FRAME_NS) for s in range(25)]
    pause_ns = 2_345_000_000
    second = [(s, T0_NS + pause_ns + s * FRAME_NS) for s in range(25, 50)]
    session, values = record(tmp_path, first + second, StreamKey("model"))
    assert first_sample_of(values, 26) == round(pause_ns / 1e9 * SAMPLE_RATE) + 25 * FRAME_SAMPLES
    assert not values[25 * FRAME_SAMPLES:first_sample_of(values, 26)].any()
    [stream] = index_of(session)["streams"]
    assert stream["file"] == "model.wav" and stream["kind"] == "model"
    assert stream["gaps_filled_ms"] == round(pause_ns / 1e6)


def test_a_seq_jump_the_clock_does_not_confirm_is_not_believed(tmp_path):
    """A publisher whose count leaps ahead fills no more than its capture time allows."""
    frames = [(0, T0_NS), (1, T0_NS + FRAME_NS), (1_000_000, T0_NS + 2 * FRAME_NS)]
    _, values = record(tmp_path, frames)
    assert first_sample_of(values, 3) <= 2 * FRAME_SAMPLES + round(0.06 * SAMPLE_RATE)


def test_frames_going_backwards_are_dropped_and_counted(tmp_path):
    before = dropped("backwards")
    frames = [(s, T0_NS + s * FRAME_NS) for s in range(10)]
    frames.insert(5, (2, T0_NS + 2 * FRAME_NS))  # a repeat
    frames.insert(8, (6, T0_NS + 6 * FRAME_NS))  # 6 again
    session, values = record(tmp_path, frames)
    assert len(values) == 10 * FRAME_SAMPLES
    assert 6 not in values and 9 not in values  # the two dropped frames' values
    assert index_of(session)["streams"][0]["frames_dropped"] == 2
    assert dropped("backwards") - before == 2


def test_a_publisher_counting_afresh_is_placed_by_its_capture_time(tmp_path):
    """A mixer replaced after a crash starts its seq again; its audio still lines up."""
    old = [(1000 + s, T0_NS + s * FRAME_NS) for s in range(10)]
    new = [(s, T0_NS + (30 + s) * FRAME_NS) for s in range(10)]
    _, values = record(tmp_path, old + new)
    assert first_sample_of(values, 11) == 30 * FRAME_SAMPLES
    assert len(values) == 40 * FRAME_SAMPLES


def test_a_file_ahead_of_the_clock_drops_late_frames_to_catch_up(tmp_path):
    """A publisher that sent 1.2 s of audio too many, at once, and went on with the clock:
    the file would run ahead of the clock for good; frames far behind their place in it
    are dropped instead, until it is back within MAX_LATE_S."""
    before = dropped("late")
    frames = [(s, T0_NS + s * FRAME_NS) for s in range(200)]
    frames += [(s, T0_NS + 200 * FRAME_NS) for s in range(200, 260)]  # 60 frames at once
    frames += [(s, T0_NS + (s - 60) * FRAME_NS) for s in range(260, 360)]
    session, values = record(tmp_path, frames)
    ahead_s = first_sample_of(values, 360) / SAMPLE_RATE - (359 - 60) * 0.02
    assert 0 < ahead_s <= 0.5 + 0.02
    assert dropped("late") - before == index_of(session)["streams"][0]["frames_dropped"] > 0


@pytest.mark.parametrize("catch_up_ms", [0, 10], ids=["at once", "at twice the pace"])
def test_frames_read_in_a_burst_after_a_stall_follow_on_without_silence(tmp_path, catch_up_ms):
    """An edge whose loop stalled 500 ms stamps the frames it then reads with their
    arrival times, bunched: they were captured during the stall, so they fill it, in order
    (read at once, or by a loaded process at twice the real pace)."""
    resumed_ns = T0_NS + 35 * FRAME_NS
    frames = [(s, T0_NS + s * FRAME_NS) for s in range(10)]
    frames += [(s, max(T0_NS + s * FRAME_NS, resumed_ns + (s - 10) * catch_up_ms * 1_000_000))
               for s in range(10, 80)]
    session, values = record(tmp_path, frames)
    assert len(values) == 80 * FRAME_SAMPLES
    assert [first_sample_of(values, s + 1) for s in range(80)] == [
        s * FRAME_SAMPLES for s in range(80)]
    [stream] = index_of(session)["streams"]
    assert (stream["gaps_filled_ms"], stream["frames_dropped"]) == (0, 0)


def test_a_stream_that_starts_with_a_burst_starts_before_its_first_arrival(tmp_path):
    """A microphone's first 400 ms reach the edge at once as its connection comes up:
    they were captured before, one after the other, and the file says so."""
    frames = [(s, T0_NS + 20 * FRAME_NS) for s in range(20)]
    frames += [(s, T0_NS + s * FRAME_NS + 2_000_000) for s in range(20, 60)]
    session, values = record(tmp_path, frames, StreamKey("client", "c" * 32))
    [stream] = index_of(session)["streams"]
    assert stream["started_at"] == pytest.approx(T0_NS / 1e9, abs=0.003)  # not 0.4 s later
    assert (stream["client_id"], stream["client_name"]) == ("c" * 32, "")
    assert [first_sample_of(values, s + 1) for s in range(60)] == [
        s * FRAME_SAMPLES for s in range(60)]


def test_a_frames_place_is_decided_once_three_seconds_of_audio_follow_it():
    """Until then it cannot tell a pause (silence first) from a stall its publisher is
    catching up on (no silence)."""
    timeline = Timeline()
    pcm = tone(1)
    pause_ns = 1_000_000_000
    frames = [(s, T0_NS + s * FRAME_NS) for s in range(200)]
    frames += [(s, T0_NS + pause_ns + s * FRAME_NS) for s in range(200, 400)]
    placed = []
    for seq, capture_ns in frames:
        drop, now = timeline.offer(seq, capture_ns, pcm)
        assert drop is None
        if seq < 150:
            assert now == []  # 3 s must follow the first frame before anything is placed
        placed += now
    assert len(placed) == 250 and timeline.started_ns == T0_NS
    placed += timeline.flush()
    assert [p.position for p in placed] == [
        round((capture_ns - T0_NS) / 1e9 * SAMPLE_RATE) for _, capture_ns in frames]


def test_a_stream_gone_quiet_has_its_last_frames_written_before_the_session_ends(tmp_path):
    session = SessionAudio(tmp_path, new_id())
    key = StreamKey("client", new_id())  # a client that left after 2 s
    for s in range(100):
        session.frame(key, s, T0_NS + s * FRAME_NS, tone(1))
    stream = session.streams[key]
    assert stream.writer.samples == 0  # the last 3 s wait for what follows them...
    assert not stream.settle(time.monotonic())
    assert stream.settle(time.monotonic() + 3.0)  # ...unless nothing more comes
    assert stream.writer.samples == 100 * FRAME_SAMPLES
    session.close()


def test_a_file_cut_short_by_a_crash_is_repaired(tmp_path):
    path = tmp_path / "mix.wav"
    writer = WavWriter(path)
    writer.write(tone(1) * 10)
    writer.flush()
    writer.write(tone(2) * 5)  # not flushed: the header still counts 10 frames
    with path.open("ab") as f:
        f.write(b"\x01")  # half a sample, torn by the crash
    assert read_sizes(path) == (10 * FRAME_BYTES, 15 * FRAME_BYTES + 1)
    assert len(samples(path)) == 10 * FRAME_SAMPLES  # readable even before the repair
    assert repair(path)
    assert read_sizes(path) == (15 * FRAME_BYTES, 15 * FRAME_BYTES)
    values = samples(path)
    assert len(values) == 15 * FRAME_SAMPLES and values[-1] == 2
    assert not repair(path)  # whole now: left alone
    riff_size = int.from_bytes(path.read_bytes()[4:8], "little")
    assert riff_size == path.stat().st_size - 8


async def test_the_writer_repairs_every_folder_at_start_and_its_index_counts_it(tmp_path):
    session = SessionAudio(tmp_path, new_id())
    for s in range(250):  # the first 100 placed and written (3 s of audio follow them)
        session.frame(MIX, s, T0_NS + s * FRAME_NS, tone(s + 1))
    session.flush()
    session.write_index()
    for s in range(250, 300):  # 50 more written, then the process dies: no flush, no index
        session.frame(MIX, s, T0_NS + s * FRAME_NS, tone(s + 1))
    assert index_of(session)["streams"][0]["frames"] == 100 * FRAME_SAMPLES

    writer = AudioWriter(tmp_path, name="test")
    writer.start()
    await writer.close()
    assert read_sizes(session.folder / "mix.wav") == (150 * FRAME_BYTES, 150 * FRAME_BYTES)
    stream = index_of(session)["streams"][0]
    assert (stream["frames"], stream["duration_s"]) == (150 * FRAME_SAMPLES, 3.0)
    session.close()


async def test_a_restarted_recorder_carries_a_session_on_in_the_same_files(tmp_path):
    sid = new_id()
    writer = AudioWriter(tmp_path, name="first")
    writer.start()
    for s in range(10):
        assert writer.frame(Frame(sid, MIX, s, T0_NS + s * FRAME_NS, tone(1)))
    await writer.close()

    writer = AudioWriter(tmp_path, name="second")
    writer.start()
    for s in range(5):  # 1 s later, counting afresh
        assert writer.frame(Frame(sid, MIX, s, T0_NS + (60 + s) * FRAME_NS, tone(2),
                                  dropped_before=3 if s == 0 else 0))
    writer.end_session(sid)
    await writer.close()
    values = samples(tmp_path / sid / "mix.wav")
    assert first_sample_of(values, 2) == 60 * FRAME_SAMPLES
    assert (values[:10 * FRAME_SAMPLES] == 1).all()
    [stream] = json.loads((tmp_path / sid / "index.json").read_text())["streams"]
    assert stream["started_at"] == T0_NS / 1e9
    assert stream["frames"] == 65 * FRAME_SAMPLES and stream["frames_dropped"] == 3
    assert stream["gaps_filled_ms"] == 1000


async def test_names_from_client_joined_go_in_the_index(tmp_path):
    sid, client = new_id(), new_id()
    writer = AudioWriter(tmp_path, name="test")
    writer.start()
    writer.name_client(sid, client, "kitchen")
    writer.frame(Frame(sid, StreamKey("client", client), 7, T0_NS, tone(1)))
    writer.end_session(sid)
    await writer.close()
    [stream] = json.loads((tmp_path / sid / "index.json").read_text())["streams"]
    assert stream["file"] == f"client-{client}.wav"
    assert (stream["kind"], stream["client_id"], stream["client_name"]) == (
        "client", client, "kitchen")


def test_a_full_disk_drops_frames_and_keeps_the_file_whole_and_in_time(tmp_path):
    """A real write failure (the file size limit, as a full disk fails a write): the
    frames that could not be written are dropped and counted, the file never holds part
    of one, and once writes succeed again the audio lands at its time."""
    limit = HEADER_BYTES + 10 * FRAME_BYTES + 100
    script = textwrap.dedent(f"""
        import json, resource, signal, sys
        from pathlib import Path
        import numpy as np
        from services.recorder.session_audio import SessionAudio, StreamKey
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))
        session = SessionAudio(Path(sys.argv[1]), "{'a' * 32}")
        key = StreamKey("mix")
        def frame(s, n):
            pcm = np.full({FRAME_SAMPLES}, n, dtype="<i2").tobytes()
            session.frame(key, s, {T0_NS} + s * {FRAME_NS}, pcm)
        for s in range(180):  # frames 0-29 are placed: 10 fit
            frame(s, s + 1)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
        for s in range(180, 360):
            frame(s, s + 1)
        session.close()
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    folder = tmp_path / ("a" * 32)
    values = samples(folder / "mix.wav")
    assert len(values) == 360 * FRAME_SAMPLES
    assert [first_sample_of(values, n) for n in (1, 10, 31, 360)] == [
        0, 9 * FRAME_SAMPLES, 30 * FRAME_SAMPLES, 359 * FRAME_SAMPLES]
    assert not values[10 * FRAME_SAMPLES:30 * FRAME_SAMPLES].any()  # 20 could not be written
    [stream] = json.loads((folder / "index.json").read_text())["streams"]
    assert stream["frames_dropped"] == 20 and stream["gaps_filled_ms"] == 400
    assert "cannot write" in done.stderr
