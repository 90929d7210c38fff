"""ota-state.json changed by two hands at once (SPEC D8).

The health gate marks a trial good in a worker thread while an
``ota.rollback`` arrives, each reading the state, changing it and writing it
back across awaits. Real files: a release root in a temporary directory, the
real launcher state functions (the gate's read held until the rollback
waits, so the two overlap every time), a
real OrderStore for the replies. Before the lock, the later writer won: here
the rollback's write put the trial back over the mark, or the mark dropped
the rollback.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from buffer.store import OrderStore
from collector.ota import launcher
from collector.ota.upgrade import Ota
from tests.waits import WatchedLock
from uplink.commands import current_command_id


class Uplink:
    def wake(self) -> None:
        pass


def _release(root: Path, version: str) -> None:
    path = root / launcher.RELEASES / version
    path.mkdir(parents=True)
    (path / launcher.INSTALLED).write_text(version)


def test_a_rollback_asked_while_the_gate_marks_good_keeps_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ota"
    _release(root, "1.0.0")
    _release(root, "1.1.0")
    trial = {"version": "1.1.0", "from": "1.0.0", "starts": 1, "deadline_ms": 0}
    launcher.write_state(root, {"good": "1.0.0", "trial": trial})
    monkeypatch.setenv("FORECOURT_RELEASE", "1.1.0")

    read = launcher.read_state
    readers: list[str] = []
    gate_read, go_on = threading.Event(), threading.Event()

    def held_read(where: Path) -> dict[str, Any]:
        state = read(where)
        readers.append(threading.current_thread().name)
        if len(readers) == 1:  # the gate's: held between its read and its write
            gate_read.set()
            go_on.wait(5)
        return state

    monkeypatch.setattr(launcher, "read_state", held_read)
    config = SimpleNamespace(
        ota=SimpleNamespace(root=root, health_window_s=600, health_hold_s=0),
        device=SimpleNamespace(tzinfo=None),
        ports=[],
    )
    store = OrderStore(tmp_path / "store.sqlite")
    ota = Ota(config, store, Uplink(), lambda: None, list, "0" * 128)  # type: ignore[arg-type]

    async def no_restart() -> None:
        pass

    ota._restart_after_reply = no_restart  # type: ignore[method-assign]
    ota._state_lock = lock = WatchedLock()

    async def both() -> dict[str, Any]:
        current_command_id.set("cmd-rollback")
        writer = asyncio.create_task(store.writer.run())  # the daemon's: replies are committed
        gate = asyncio.create_task(ota._commit_trial())
        await asyncio.to_thread(gate_read.wait, 5)  # read the state, not yet written it
        rollback = asyncio.create_task(ota.rollback({}))
        await asyncio.wait_for(lock.contended.wait(), 5)  # asked inside the gate's window
        go_on.set()
        answer = await rollback
        await gate
        writer.cancel()
        return answer

    try:
        answer = asyncio.run(both())
    finally:
        store.close()
    assert len(readers) == 2, "both read the state"
    assert answer == {"stage": "rolling_back", "from": "1.1.0", "to": "1.0.0"}
    state = read(root)
    assert state["good"] == "1.1.0" and state["trial"] is None, "the mark is kept"
    assert state["last"]["result"] == "good"
    assert state["rollback"] == {"to": "1.0.0", "from": "1.1.0", "command_id": "cmd-rollback"}
