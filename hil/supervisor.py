"""A systemd stand-in for the OTA tests: runs the release launcher, restarts it on exit.

What systemd/forecourt-collector.service asks of systemd, done by a thread:
``ExecStart=`` the launcher (collector/ota/launcher.py) with the *base*
python and ``-I`` — no venv, no project on sys.path, exactly as
``/usr/bin/python3`` runs it on the gateway — ``Restart=on-failure`` (any
non-zero status, 75 included: ``RestartForceExitStatus=75``) after
``RestartSec``; a clean 0 ends the service. Each start is a
:class:`hil.stack.Proc` named ``run<N>`` whose stderr (the collector's JSON
log) is ``<work>/run<N>.log``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from hil.stack import ROOT, Proc

LAUNCHER = ROOT / "collector" / "ota" / "launcher.py"

#: RestartSec: short in tests (the unit says 2 s).
RESTART_S = 0.3


class Supervisor:
    def __init__(self, work: Path, root: Path, args: Sequence[str]) -> None:
        self.work, self.root, self.args = work, root, list(args)
        self.runs: list[Proc] = []
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def argv(self) -> list[str]:
        python = getattr(sys, "_base_executable", sys.executable)
        return [python, "-I", str(LAUNCHER), "--root", str(self.root), "--", *self.args]

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                proc = Proc(f"run{len(self.runs)}", self.argv(), self.work, cwd=self.work)
                self.runs.append(proc)
            rc = proc.popen.wait()
            self.exits.append(rc)
            if rc == 0 or self._stop.is_set():
                return
            time.sleep(RESTART_S)

    @property
    def current(self) -> Proc:
        with self._lock:
            return self.runs[-1]

    def log_text(self) -> str:
        return "".join(p.log_path.read_text() for p in list(self.runs) if p.log_path.exists())

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            procs = list(self.runs)
        for proc in procs:
            proc.stop()
        self._thread.join(timeout=30)
