"""StallDump: every thread's stack reaches stderr when a loop turn overruns, and never
while the loop keeps turning."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import time
from soundscape.stall_dump import StallDump
dump = StallDump(0.3)
for _ in range({turns}):
    dump.turn()
    time.sleep({turn_s})
dump.stop()
time.sleep(0.5)
print("finished")
"""


def run(turns: int, turn_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(turns=turns, turn_s=turn_s)],
                          capture_output=True, text=True, timeout=60)


def test_an_overrunning_turn_logs_every_threads_stack_and_goes_on() -> None:
    done = run(turns=1, turn_s=0.8)
    assert done.returncode == 0 and done.stdout.strip() == "finished"
    assert "Timeout" in done.stderr and "most recent call first" in done.stderr
    assert done.stderr.count("most recent call first") == 1  # once, not repeated


def test_a_loop_that_keeps_turning_logs_nothing() -> None:
    done = run(turns=10, turn_s=0.1)
    assert done.returncode == 0 and done.stdout.strip() == "finished"
    assert done.stderr == ""
