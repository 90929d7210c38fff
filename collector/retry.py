"""The pause before trying again: a serial port, the tank gauge's link, a
bundle download, a config revert the flash refused; and the steady pace of a
task that looks again every tick (:func:`every`).

Each pause is drawn in [½, 1] of a step that starts at ``minimum`` and
doubles up to ``maximum`` ("equal jitter"): never a tight loop, never a
wait far longer than the cap, and 32 ports (or a province of stations) that
failed together do not come back together. The uplink's reconnect has its
own formula (uplink/failover.py ``Backoff``: the platform side sizes its
broker for it, docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import NoReturn


class Retry:
    """Pauses from ``minimum`` doubling to ``maximum`` seconds, jittered."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"need 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum, self.maximum = minimum, maximum
        self._step = minimum
        self._rng = rng or random.Random()

    def reset(self) -> None:
        """Start over from the minimum (the thing worked for a while)."""
        self._step = self.minimum

    def next_delay(self) -> float:
        """This pause (seconds); the next one's step doubles."""
        delay = self._step * self._rng.uniform(0.5, 1.0)
        self._step = min(self._step * 2, self.maximum)
        return delay


async def every(period_s: float, step: Callable[[], object]) -> NoReturn:
    """``step()`` now and every ``period_s`` after, until cancelled."""
    while True:
        step()
        await asyncio.sleep(period_s)
