"""config/testpoints.py: off unless asked; a trace a SIGKILL cannot lose; a stop
exactly at the N-th arrival of a point (what hil/torture.py's aimed kills use)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from config import testpoints
from hil.torture import stopped

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
from config import testpoints as t
t.reached("batch_acked", "nozzle"); t.passed("batch_acked")
t.reached("order_committed"); t.passed("order_committed")
t.reached("batch_acked", "order"); t.passed("batch_acked")
t.reached("batch_acked", "order")
print("went past the stop", flush=True)
"""


def test_off_without_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != testpoints.ENV}
    code = "from config import testpoints; print(testpoints.active)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert done.stdout.strip() == b"False"


def test_a_stop_at_the_nth_arrival_and_a_trace_that_survives_the_kill(tmp_path: Path) -> None:
    trace = tmp_path / "trace.bin"
    env = {**os.environ, testpoints.ENV: f"trace={trace};stop=batch_acked:order@2"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not stopped(child.pid):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.01)
    finally:
        child.kill()
        out, err = child.communicate()
    assert child.returncode == -signal.SIGKILL and out == ""
    assert '"testpoint_stop"' in err and '"kind": "order"' in err
    # Inside the batch_acked window (reached 3, passed 2), not the other.
    assert testpoints.read_trace(trace) == {"order_committed": (1, 1), "batch_acked": (3, 2)}
    assert testpoints.read_trace(tmp_path / "never-written.bin")["batch_acked"] == (0, 0)
