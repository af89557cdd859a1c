"""``voxrelay bench`` finds ``benchmarks/`` in the checkout it runs from (it is not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
VOXRELAY = Path(sys.executable).with_name("voxrelay")
"The installed command, whose sys.path starts at its own folder, not the checkout."


def bench_help(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VOXRELAY), "bench", "--help"], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_bench_runs_from_a_checkout():
    done = bench_help(CHECKOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: voxrelay bench")


def test_bench_elsewhere_says_where_to_run_it(tmp_path):
    done = bench_help(tmp_path)
    assert done.returncode == 2
    assert "run it from a voxrelay checkout" in done.stderr
