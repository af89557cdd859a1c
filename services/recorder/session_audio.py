"""One session's recorded audio: its folder, a WAV file per stream, and its ``index.json``.

Streams are the session's mix (``mix.wav``), the model's voice (``model.wav``) and each
client's microphone (``client-<id>.wav``); each is created when its first frame arrives
(a session that sent no audio has no folder) and placed on its :class:`.timeline.Timeline`,
which holds a stream's last seconds until what follows them places them (or the stream has
been quiet for :data:`IDLE_PLACE_S`, or ends).
``index.json`` says, per file, when its sample 0 was captured, so the audio lines up with
the events; it is replaced atomically (written beside, then renamed) whenever the writer
asks (every few seconds) and when the session ends. A folder that already holds a stream
(the session was recorded by a recorder that has since restarted) is carried on: the file
is appended to from its recorded start, never replaced.

Not thread-safe: the recorder's audio writer thread owns every :class:`SessionAudio`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from proto.audio import CHANNELS, SAMPLE_RATE
from services.runtime.recordings import (
    FILE_NAME,
    INDEX_FILE,
    MIX_FILE,
    MODEL_FILE,
    client_file,
)

from .audio_metrics import AUDIO_BYTES, AUDIO_STREAMS, DROPPED
from .timeline import Placed, Timeline
from .wavfile import SAMPLE_BYTES, WavFull, WavWriter, read_sizes, repair

logger = logging.getLogger(__name__)

Kind = Literal["client", "mix", "model"]
ERRORS_LOGGED_PER_STREAM = 5
"Write errors logged per stream (all are counted); a full disk fails every frame."
IDLE_PLACE_S = 3.0
"""A stream that sent nothing for this long (a client that left, the model between
replies) has the frames its timeline still holds placed and written."""


@dataclass(frozen=True)
class StreamKey:
    kind: Kind
    client_id: str = ""

    @property
    def file(self) -> str:
        match self.kind:
            case "client":
                return client_file(self.client_id)
            case "mix":
                return MIX_FILE
            case "model":
                return MODEL_FILE


class RecordedStream:
    """One stream's file, timeline and counts."""

    def __init__(self, key: StreamKey, writer: WavWriter, timeline: Timeline) -> None:
        self.key = key
        self.writer = writer
        self.timeline = timeline
        self.silence = 0
        "Samples of silence written to fill gaps (by earlier recorders too, for a carried-on file)."
        self.dropped = 0
        self.errors = 0
        self.heard_at = time.monotonic()

    def add(self, seq: int, capture_ns: int, pcm: bytes) -> None:
        """Place one frame and write what is placed; what cannot be is dropped and counted."""
        self.heard_at = time.monotonic()
        drop, placed = self.timeline.offer(seq, capture_ns, pcm)
        if drop is not None:
            self.drop(drop)
        self._write(placed)

    def drop(self, reason: str) -> None:
        self.dropped += 1
        DROPPED[reason].inc()

    def settle(self, now: float) -> bool:
        """Write what the timeline holds if the stream has gone quiet; True if it did."""
        placed = self.timeline.flush() if now - self.heard_at >= IDLE_PLACE_S else []
        self._write(placed)
        return bool(placed)

    def finish(self) -> None:
        """Write what the timeline still holds and close the file (idempotent)."""
        self._write(self.timeline.flush())
        self.writer.close()

    def _write(self, placed: list[Placed]) -> None:
        for frame in placed:
            silence = frame.position - self.writer.samples
            if silence < 0:  # the file ran past the frame's place: not expected, not written
                self.drop("backwards")
                continue
            failure = self._append(frame.pcm, silence)
            if failure is not None:
                self.drop(failure)

    def _append(self, pcm: bytes, silence: int) -> str | None:
        """Write silence, then the frame; why not, if it could not be."""
        try:
            self.writer.write(pcm, silence_before=silence)
        except WavFull:
            return "file_full"
        except OSError as e:
            self.errors += 1
            if self.errors <= ERRORS_LOGGED_PER_STREAM:
                logger.warning("%s: cannot write (%s); frames are dropped and counted",
                               self.writer.path, e)
            return "write_error"
        self.silence += silence
        AUDIO_BYTES.inc(silence * SAMPLE_BYTES + len(pcm))
        return None

    def entry(self, client_name: str) -> dict[str, Any]:
        frames = self.writer.samples
        entry: dict[str, Any] = {"file": self.key.file, "kind": self.key.kind}
        if self.key.kind == "client":
            entry["client_id"] = self.key.client_id
            entry["client_name"] = client_name
        entry.update({
            "started_at": (self.timeline.started_ns or 0) / 1e9,
            "sample_rate": SAMPLE_RATE,
            "channels": CHANNELS,
            "frames": frames,
            "duration_s": round(frames / SAMPLE_RATE, 3),
            "gaps_filled_ms": round(self.silence * 1000 / SAMPLE_RATE),
            "frames_dropped": self.dropped,
        })
        return entry


class SessionAudio:
    """Every recorded stream of one session, in ``<root>/<session_id>/``."""

    def __init__(self, root: Path, session_id: str) -> None:
        self.session_id = session_id
        self.folder = root / session_id
        self.streams: dict[StreamKey, RecordedStream] = {}
        self.names: dict[str, str] = {}
        "Client id → name (from client.joined), for the index."
        self.changed = False
        "Something happened that the index on disk does not say yet."
        self._earlier: dict[str, dict[str, Any]] | None = None
        self._open_errors = 0

    def frame(self, key: StreamKey, seq: int, capture_ns: int, pcm: bytes,
              dropped_before: int = 0) -> None:
        """Record one frame (``dropped_before``: frames of the stream dropped before it
        reached the writer). Never raises for a disk problem: drops and counts."""
        stream = self.streams.get(key)
        if stream is None:
            stream = self._open(key)
            if stream is None:
                DROPPED["write_error"].inc()
                return
        stream.dropped += dropped_before  # counted in the metrics where they were dropped
        stream.add(seq, capture_ns, pcm)
        self.changed = True

    def name_client(self, client_id: str, name: str) -> None:
        if self.names.get(client_id) != name:
            self.names[client_id] = name
            self.changed = True

    def flush(self) -> None:
        """Quiet streams' frames written, headers up to date; errors are logged (the data
        stays in the file)."""
        now = time.monotonic()
        for stream in self.streams.values():
            if stream.settle(now):
                self.changed = True
            try:
                stream.writer.flush()
            except OSError as e:
                logger.debug("%s: flush failed: %s", stream.writer.path, e)

    def write_index(self) -> None:
        """Replace ``index.json`` atomically (nothing before the first stream)."""
        started = [s for s in self.streams.values() if s.timeline.started_ns is not None]
        if not started:
            return
        index = {"session_id": self.session_id,
                 "streams": [s.entry(self.names.get(s.key.client_id, "")) for s in started]}
        try:
            write_json_atomically(self.folder / INDEX_FILE, index)
            self.changed = False
        except OSError as e:
            logger.warning("SessionAudio(%s): cannot write %s: %s", self.session_id,
                           INDEX_FILE, e)

    def close(self) -> None:
        """Every file finished, and the index written (idempotent)."""
        for stream in self.streams.values():
            stream.finish()
        self.write_index()
        AUDIO_STREAMS.dec(len(self.streams))
        self.streams.clear()

    def _open(self, key: StreamKey) -> RecordedStream | None:
        path = self.folder / key.file
        earlier = self._earlier_streams().get(key.file)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if earlier is None:
                writer = WavWriter(path)
            else:
                writer = WavWriter.append_to(path)
        except OSError as e:
            self._open_errors += 1
            if self._open_errors <= ERRORS_LOGGED_PER_STREAM:
                logger.warning("SessionAudio(%s): cannot create %s: %s", self.session_id,
                               path, e)
            return None
        timeline = Timeline()
        stream = RecordedStream(key, writer, timeline)
        if earlier is not None and writer.samples:
            timeline.resume(round(earlier["started_at"] * 1e9), writer.samples)
            stream.silence = round(_number(earlier.get("gaps_filled_ms")) * SAMPLE_RATE / 1000)
            stream.dropped = int(_number(earlier.get("frames_dropped")))
            logger.info("SessionAudio(%s): carrying on %s from %.1f s", self.session_id,
                        key.file, writer.samples / SAMPLE_RATE)
        if key.kind == "client" and earlier is not None and earlier.get("client_name"):
            self.names.setdefault(key.client_id, str(earlier["client_name"]))
        self.streams[key] = stream
        AUDIO_STREAMS.inc()
        logger.info("SessionAudio(%s): recording %s", self.session_id, key.file)
        return stream

    def _earlier_streams(self) -> dict[str, dict[str, Any]]:
        """The streams an earlier recorder listed for this session, by file name."""
        if self._earlier is None:
            self._earlier = {}
            index = read_index(self.folder)
            for entry in (index or {}).get("streams", []):
                if isinstance(entry, dict) and isinstance(entry.get("file"), str) \
                        and isinstance(entry.get("started_at"), int | float):
                    self._earlier[entry["file"]] = entry
        return self._earlier


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def read_index(folder: Path) -> dict[str, Any] | None:
    """A session folder's ``index.json``, or None if it has none that can be read."""
    try:
        with (folder / INDEX_FILE).open(encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def write_json_atomically(path: Path, value: Any) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(value, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def repair_folder(folder: Path) -> int:
    """Repair the WAV files of one session folder cut short by a crash, and make its
    index count what they hold; returns how many files were repaired."""
    repaired = 0
    for path in sorted(folder.glob("*.wav")):
        try:
            repaired += repair(path)
        except OSError as e:
            logger.warning("cannot repair %s: %s", path, e)
    index = read_index(folder)
    if index is None or not isinstance(index.get("streams"), list):
        return repaired
    stale = False
    for entry in index["streams"]:
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not FILE_NAME.match(name):
            continue
        try:
            sizes = read_sizes(folder / name)
        except OSError:
            continue
        if sizes is not None and entry.get("frames") != sizes[1] // SAMPLE_BYTES:
            entry["frames"] = sizes[1] // SAMPLE_BYTES
            entry["duration_s"] = round(entry["frames"] / SAMPLE_RATE, 3)
            stale = True
    if stale:
        try:
            write_json_atomically(folder / INDEX_FILE, index)
        except OSError as e:
            logger.warning("cannot update %s: %s", folder / INDEX_FILE, e)
    return repaired
