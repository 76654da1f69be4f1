"""The benches' CPU accounting: a process that ends between two snapshots keeps its CPU in the difference."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.engine.sampling import cpu_seconds

# A parent that, half a second in, runs a child burning about half a CPU second, then waits to be stopped.
PARENT = """
import subprocess, sys, time
time.sleep(0.5)
subprocess.run([sys.executable, "-c", "total = sum(range(20_000_000))"], check=True)
print("child done", flush=True)
time.sleep(60)
"""


def test_the_cpu_of_a_child_that_exited_between_two_snapshots_is_counted() -> None:
    """Like a PostgreSQL backend whose connection closed during a burst: before, its CPU vanished from the
    postmaster's tree, and the database's CPU for a run could come out negative."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        before = cpu_seconds(parent.pid)
        assert parent.stdout is not None and parent.stdout.readline().strip() == "child done"
        used = cpu_seconds(parent.pid) - before
    finally:
        parent.kill()
        parent.wait()
    assert used >= 0.2, f"the exited child's CPU was lost: {used:.2f} s counted"
