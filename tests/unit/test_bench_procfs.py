"""``voxrelay bench --harness-nice``: the load generator and the simulator yield the cores.

The kernel here groups processes by session (``sched_autogroup``) and shares the cores
between groups first, so a nice value set on a process in a session of its own changes
nothing unless its group's is set too; the bench sets both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.bench import run_queue_wait
from benchmarks.procfs import lower_priority, tasks

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


def test_a_process_that_is_gone_is_skipped():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    lower_priority([proc.pid], 7)  # no error: it ended between listing and renicing
    assert run_queue_wait([proc.pid]) == 0.0


def test_run_queue_wait_counts_time_spent_ready_but_not_running():
    script = ("import os, time\n"
              "end = time.monotonic() + 0.6\n"
              "while time.monotonic() < end: pass\n")
    # more spinners than cores: each must wait for a core part of the time
    spinners = [subprocess.Popen([sys.executable, "-c", script])
                for _ in range(2 * (os.cpu_count() or 1) + 1)]
    try:
        time.sleep(0.4)
        waits = [run_queue_wait([proc.pid]) for proc in spinners]
    finally:
        for proc in spinners:
            proc.wait(30)
    assert max(waits) > 0.0
