"""Where a process spends its time, from py-spy's collapsed stacks (``--format raw``).

``.venv/bin/python -m benchmarks.hotspots FILE [--top 25]`` prints the functions with
the most samples on top of the stack (self) and anywhere on it (total), as a share of
all samples. ``voxrelay bench --profile DIR`` writes such files, one per process.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    """``compute_audio_level_dbov (aiortc/rtp.py:324)`` → without the line number."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def hotspots(stacks: list[tuple[list[str], int]]) -> tuple[int, Counter[str], Counter[str]]:
    total = sum(count for _, count in stacks)
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, count in stacks:
        names = [_short(f) for f in frames]
        if names:
            own[names[-1]] += count
        for name in set(names):
            anywhere[name] += count
    return total, own, anywhere


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotspots", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.files:
        total, own, anywhere = hotspots(load(path))
        print(f"== {path.name}: {total} samples")
        if not total:
            continue
        print("  self%  total%  function")
        for name, count in own.most_common(args.top):
            print(f"  {100 * count / total:5.1f}  {100 * anywhere[name] / total:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
