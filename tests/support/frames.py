"""Audio frames as a bus receiver sees them: seq continuity and silence kept off the bus.

A publisher may keep silence off the bus (``VOXRELAY_BUS_SKIP_SILENCE``): the frame after a
pause says how many frames it skipped (``AudioHeader.silent_before``), and its seq counts
them. These helpers let a test check a stream and hear it either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from proto.audio import FRAME_BYTES, AudioHeader

Frame = tuple[AudioHeader, bytes]


def assert_one_stream(frames: Sequence[Frame], first_seq: int | None = None) -> None:
    """Each frame's seq follows the one before it and the silence skipped between them
    (nothing lost, nothing repeated); the first is ``first_seq`` plus its own skipped
    silence, when given."""
    said = [header.seq - header.silent_before for header, _ in frames]
    expected = [said[0] if first_seq is None else first_seq]
    expected += [header.seq + 1 for header, _ in frames[:-1]]
    assert said == expected[:len(said)], "one seq per frame, none lost"


def played(frames: Sequence[Frame]) -> bytes:
    """A stream's audio as a receiver plays it: silence where frames were kept off the bus
    (before the first frame too)."""
    return b"".join(bytes(header.silent_before * FRAME_BYTES) + pcm for header, pcm in frames)
