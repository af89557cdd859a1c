"""What the benchmarks do to processes (``benchmarks.procfs``): ``voxrelay bench
--harness-nice`` has the load generator and the simulator yield the cores;
``benchmarks.hop_contention --slice-us`` asks for a scheduler slice.

The kernel here groups processes by session (``sched_autogroup``) and shares the cores
between groups first, so a nice value set on a process in a session of its own changes
nothing unless its group's is set too; the bench sets both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.procfs import lower_priority, tasks

CHECKOUT = Path(__file__).resolve().parents[2]
THREADED_SLEEPER = """
import threading, time
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("ready", flush=True)
time.sleep(30)
"""


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", THREADED_SLEEPER], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def test_every_thread_and_the_session_group_get_the_nice_value(sleeper):
    threads = [int(t.name) for t in tasks([sleeper])]
    assert len(threads) == 2

    lower_priority([sleeper], 7)

    assert [os.getpriority(os.PRIO_PROCESS, tid) for tid in threads] == [7, 7]
    autogroup = Path(f"/proc/{sleeper}/autogroup")
    if autogroup.exists():
        assert autogroup.read_text().split()[-2:] == ["nice", "7"]


def test_a_process_that_is_gone_is_skipped_and_the_rest_still_reniced(sleeper):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    lower_priority([gone.pid, sleeper], 5)  # the first ended between listing and renicing
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 5


SLICES = """
import json, threading
from pathlib import Path
from benchmarks.procfs import request_slice

def slices():
    found = []
    for task in Path("/proc/self/task").iterdir():
        for line in (task / "sched").read_text().splitlines():
            if line.startswith("se.slice"):
                found.append(int(line.split(":")[1]))
    return sorted(found)

stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()   # a thread from before
default = slices()
took = request_slice(250)
threading.Thread(target=stop.wait, daemon=True).start()   # and one from after
asked = slices()
request_slice(0)
print(json.dumps({"default": default, "took": took, "asked": asked, "reset": slices()}))
stop.set()
"""


@pytest.mark.skipif("se.slice" not in Path("/proc/self/sched").read_text(),
                    reason="this kernel has no per-thread scheduler slice")
def test_every_thread_takes_the_slice_and_zero_gives_back_the_kernels():
    done = subprocess.run([sys.executable, "-c", SLICES], cwd=CHECKOUT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["took"] == 2  # the main thread and the one started before
    assert seen["asked"] == [250_000] * 3
    assert len(seen["reset"]) == 3 and set(seen["reset"]) == set(seen["default"])
    assert 250_000 not in seen["default"]
