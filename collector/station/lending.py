"""A poll port's line lent out for a while (the web page's detect), then taken back.

``forecourt detect`` never runs on a line the daemon holds (SPEC D20: it
would write between the port's own requests). The web page's detect action
asks for the line instead: :meth:`Lending.lend` stops the port's run (as a
failed line stops it: the driver keeps its state, a sale not yet stored is
offered again by the pump, SPEC D6), closes the line, raises PORT_OFFLINE
with the reason, and while it is lent the port's supervisor
(collector/daemon.py) waits instead of reopening it; at the end the
supervisor opens it again at once and clears the alarm. The control
socket's ``devices`` query leaves a lent line out, so the detect child does
not refuse it.

Only a ``poll`` port is lent: on a relay or listen line the station's own
controller is the master, and a detect finding its line quiet for a few
seconds would probe it. One line at a time (:data:`MAX_LENT`): a detect
costs CPU the other 31 ports share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

log = structlog.get_logger("collector.station.lending")

#: Lines lent at once.
MAX_LENT = 1
#: How long the port's run gets to end after it is cancelled (it ends at its
#: next await: at once in practice).
STOP_WAIT_S = 5.0


class LendRefused(Exception):
    """The line cannot be lent; ``str()`` says why, for the page."""


class Lending:
    """The daemon's lent lines, by port number, and each port's running turn."""

    def __init__(self) -> None:
        self._lent: dict[int, asyncio.Event] = {}
        self._running: dict[int, asyncio.Task[None]] = {}

    def lent(self, number: int) -> bool:
        return number in self._lent

    async def returned(self, number: int) -> None:
        """Wait while port ``number`` is lent (its supervisor, before reopening)."""
        back = self._lent.get(number)
        if back is not None:
            await back.wait()

    async def run(self, number: int, turn: Any) -> bool:
        """Run the port's ``turn`` coroutine; False when it was stopped because the
        line was lent (the supervisor closes it and waits), True if it ended.
        A cancel of the supervisor itself (the daemon stopping) propagates."""
        task: asyncio.Task[None] = asyncio.ensure_future(turn)
        self._running[number] = task
        try:
            await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if (me is not None and me.cancelling()) or number not in self._lent:
                raise
            return False
        finally:
            self._running.pop(number, None)
        return True

    @contextlib.asynccontextmanager
    async def lend(self, port: Any, mode: str) -> AsyncIterator[str]:
        """Port ``port`` stopped and closed for the block; yields its device."""
        number = port.number
        if mode != "poll":
            raise LendRefused(
                f"port {number} is a {mode} port: the station's controller is the master "
                "on its line; run `forecourt detect --passive` on a tap of it"
            )
        if number in self._lent:
            raise LendRefused(f"port {number} is already lent")
        if len(self._lent) >= MAX_LENT:
            raise LendRefused("another port's detect is running; try after it")
        back = self._lent[number] = asyncio.Event()
        try:
            task = self._running.get(number)
            if task is not None:
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_WAIT_S)
            port.close()
            port.stats.online = False
            port.sink.port_link(False, "lent to detect (web page)")
            log.warning("port_lent", port=number, device=port.line.device)
            yield str(port.line.device)
        finally:
            del self._lent[number]
            back.set()
            log.info("port_returned", port=number)
