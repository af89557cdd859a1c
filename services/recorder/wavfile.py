"""WAV files that grow while a conversation goes on, and stay readable if it is cut short.

A :class:`WavWriter` writes the 44-byte header of a PCM16 mono 24 kHz file, then
appends samples; every :meth:`WavWriter.flush` (the recorder's writer does one a second)
puts the sizes written so far into the header and hands everything to the OS. A process
killed between two flushes leaves a file whose header counts a little less than it
holds: every WAV reader plays what the header counts, and :func:`repair` (run on every
file at the recorder's start) makes the header count everything. Writes go straight to
the file (no user-space buffer), so a failed write (a full disk) is seen at once and the
file is cut back to its last whole sample: it never holds half a frame.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path

from proto.audio import CHANNELS, SAMPLE_RATE

logger = logging.getLogger(__name__)

SAMPLE_BYTES = 2
HEADER_BYTES = 44
MAX_DATA_BYTES = 0xFFFF_FFFF - (HEADER_BYTES - 8)
"A RIFF size is 32 bits: a file holds at most this much audio (about 24 hours)."
SILENCE_CHUNK = bytes(SAMPLE_RATE * SAMPLE_BYTES)
"One second of silence, the unit in which gaps are written."
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


class WavFull(OSError):
    """The file already holds as much audio as a WAV file can."""


def header(data_bytes: int, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> bytes:
    """The canonical 44-byte header of a PCM16 file holding ``data_bytes`` of samples."""
    block = channels * SAMPLE_BYTES
    return _HEADER.pack(b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE", b"fmt ", 16, 1,
                        channels, sample_rate, sample_rate * block, block, SAMPLE_BYTES * 8,
                        b"data", data_bytes)


class WavWriter:
    """One PCM16 mono 24 kHz WAV file, appended to; not thread-safe (one writer thread)."""

    def __init__(self, path: Path) -> None:
        """A new, empty file at ``path`` (one already there is replaced)."""
        self.path = path
        self.data_bytes = 0
        self._flushed_bytes = -1
        self._file: io.FileIO | None = io.FileIO(path, "w")
        try:
            self._write_all(header(0))
        except OSError:
            self.close()
            raise

    @classmethod
    def append_to(cls, path: Path) -> WavWriter:
        """Carry on writing a file this module wrote (repaired first), or start it anew if
        there is none or it is not such a file. Raises OSError."""
        try:
            repair(path)
            sizes = read_sizes(path)
        except FileNotFoundError:
            sizes = None
        if sizes is None:
            return cls(path)
        writer = cls.__new__(cls)
        writer.path = path
        writer.data_bytes = sizes[1]
        writer._flushed_bytes = sizes[1]
        writer._file = io.FileIO(path, "r+")
        writer._file.seek(0, os.SEEK_END)
        return writer

    @property
    def samples(self) -> int:
        return self.data_bytes // SAMPLE_BYTES

    def write(self, pcm: bytes, silence_before: int = 0) -> None:
        """Append ``silence_before`` samples of silence, then ``pcm``. On failure (raises
        OSError) the file is as it was before: nothing of the two is kept."""
        start = self.data_bytes
        if start + silence_before * SAMPLE_BYTES + len(pcm) > MAX_DATA_BYTES:
            raise WavFull(f"{self.path} holds the most a WAV file can")
        try:
            remaining = silence_before * SAMPLE_BYTES
            while remaining > 0:
                chunk = min(remaining, len(SILENCE_CHUNK))
                self._write_all(SILENCE_CHUNK[:chunk])
                self.data_bytes += chunk
                remaining -= chunk
            self._write_all(pcm)
            self.data_bytes += len(pcm)
        except OSError:
            self.data_bytes = start
            self._cut_back()
            raise

    def flush(self) -> None:
        """Put the sizes in the header and hand the file to the OS (raises OSError)."""
        file = self._open()
        if self._flushed_bytes == self.data_bytes:
            return
        file.seek(0)
        file.write(header(self.data_bytes))
        file.seek(0, os.SEEK_END)
        self._flushed_bytes = self.data_bytes

    def close(self) -> None:
        """Final header, data to disk, file closed (idempotent; errors are logged)."""
        if self._file is None:
            return
        try:
            self.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            logger.warning("WavWriter(%s): closing: %s", self.path, e)
        finally:
            self._file.close()
            self._file = None

    def _open(self) -> io.FileIO:
        if self._file is None:
            raise ValueError(f"WavWriter({self.path}) is closed")
        return self._file

    def _write_all(self, data: bytes) -> None:
        file = self._open()
        view = memoryview(data)
        while view:
            written = file.write(view)
            if not written:
                raise OSError(f"{self.path}: nothing written")
            view = view[written:]

    def _cut_back(self) -> None:
        """Drop whatever a failed write left past the last whole write."""
        file = self._file
        if file is None:
            return
        try:
            file.truncate(HEADER_BYTES + self.data_bytes)
            file.seek(0, os.SEEK_END)
        except OSError as e:
            logger.debug("WavWriter(%s): cannot cut back: %s", self.path, e)


def read_sizes(path: Path) -> tuple[int, int] | None:
    """(data bytes the header counts, data bytes the file holds) for a file this module
    wrote, or None if it is not one (too short, or not a PCM16 mono 24 kHz WAV)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        return None
    fields = _HEADER.unpack(raw)
    riff, _, wave, fmt, _, pcm, channels, rate, _, _, bits, data, counted = fields
    if (riff, wave, fmt, data, pcm, channels, rate, bits) != (
            b"RIFF", b"WAVE", b"fmt ", b"data", 1, CHANNELS, SAMPLE_RATE, SAMPLE_BYTES * 8):
        return None
    return counted, size - HEADER_BYTES


def repair(path: Path) -> bool:
    """Make the header of a file cut short (a crash) count the samples it holds; a torn
    last sample is cut off. True if the file was changed. Raises OSError if unreadable."""
    sizes = read_sizes(path)
    if sizes is None:
        return False
    counted, held = sizes
    whole = min(held - held % SAMPLE_BYTES, MAX_DATA_BYTES)
    riff_ok = _riff_size(path) == HEADER_BYTES - 8 + counted
    if counted == whole == held and riff_ok:
        return False
    with path.open("r+b") as f:
        if whole != held:
            f.truncate(HEADER_BYTES + whole)
        f.seek(0)
        f.write(header(whole))
        f.flush()
        os.fsync(f.fileno())
    logger.info("repaired %s: its header counted %d bytes of audio, it holds %d", path,
                counted, whole)
    return True


def _riff_size(path: Path) -> int:
    with path.open("rb") as f:
        f.seek(4)
        return int.from_bytes(f.read(4), "little")
