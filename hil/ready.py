"""``forecourt run`` to READY=1 and back: a real start judged as systemd would.

The daemon is started with ``NOTIFY_SOCKET`` on a datagram socket of ours
(``Type=notify``), its control socket asked for ``status`` (its tasks run),
then stopped with SIGTERM, which must end it with 0. Used by
hil/config_mutations.py for every config the check accepts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hil.stack import wait_until

#: Seconds a start may take to READY=1 on a loaded 2-core machine (≈ 2 s idle).
READY_TIMEOUT_S = 60.0
#: A SIGTERM stops the daemon at once (cancelled tasks); systemd's own
#: TimeoutStopSec is longer, so this is generous.
STOP_TIMEOUT_S = 30.0


def start_to_ready(config: Path, example: Path, socket_path: str | None) -> str | None:
    """Run ``forecourt run`` on ``config`` until READY=1, ask its control socket
    for ``status`` when it is ``socket_path``, stop it: None if it started,
    answered and stopped with 0, else what happened (with its stderr)."""
    notify = example / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(READY_TIMEOUT_S)
    log = example / "daemon.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "run", "--config", str(config)],
            cwd=example,
            env={**os.environ, "NOTIFY_SOCKET": str(notify)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        ready = _ready(listener, proc)  # open until the end: STOPPING=1 comes too
        if ready is not None:
            return f"{ready}: {log.read_text(errors='replace')[-3000:]}"
        if socket_path is not None and not _answers(socket_path, proc):
            return f"the control socket never answered: {log.read_text(errors='replace')[-3000:]}"
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            tail = log.read_text(errors="replace")[-3000:]
            return f"still running {STOP_TIMEOUT_S:g} s after SIGTERM: {tail}"
        if status != 0:
            return f"stopped with {status}: {log.read_text(errors='replace')[-3000:]}"
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


def _ready(listener: socket.socket, proc: subprocess.Popen[bytes]) -> str | None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    listener.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            message = listener.recv(256)
        except TimeoutError:
            if proc.poll() is not None:
                return f"exited with {proc.returncode} before READY=1"
            continue
        if b"READY=1" in message:
            return None
    return f"no READY=1 within {READY_TIMEOUT_S:g} s"


def _answers(path: str, proc: subprocess.Popen[bytes]) -> bool:
    """The control socket answers ``status`` (the daemon's tasks run)."""
    from collector.tools.techcli import Down, ask

    def answered() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} after READY=1")
        try:
            return bool(ask(path, {"query": "status"}, timeout=10).get("ok"))
        except Down:
            return False  # served right after READY=1

    try:
        wait_until(answered, READY_TIMEOUT_S, f"the control socket {path}")
    except (RuntimeError, TimeoutError):
        return False
    return True
