"""systemd's watchdog, fed only while the collector is healthy (SPEC D7, D17).

``WatchdogSec=`` in the unit makes systemd kill and restart a service that
stops sending ``WATCHDOG=1``. Sending it from a timer alone would prove only
that a timer fires; so each beat first checks what collection depends on:

- the event loop turns: the beat's own sleep did not overrun by more than
  :data:`MAX_LOOP_LAG_S` (a callback blocking the loop starves every port);
- the store answers: :meth:`buffer.store.OrderStore.ping` (a wedged or
  vanished database means orders cannot be committed).

An unhealthy beat is skipped (and logged); if the condition lasts a whole
``WatchdogSec``, systemd restarts the collector. Outside systemd
(``WATCHDOG_USEC`` unset) the task does nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import structlog

from collector.device import sdnotify

log = structlog.get_logger("collector.device.watchdog")

#: A beat's sleep may overrun by this much before the loop counts as stuck:
#: far above any honest callback (a commit is milliseconds), far below a
#: typical WatchdogSec (30 s), so a loop blocked for seconds is caught.
MAX_LOOP_LAG_S = 5.0


def interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half the watchdog period systemd asked for (sd_watchdog_enabled), or None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def run(
    every_s: float,
    store_ok: Callable[[], bool],
    send: Callable[[str], bool] = sdnotify.notify,
) -> None:
    """Beat every ``every_s`` while the loop turns and ``store_ok()`` holds."""
    while True:
        began = time.monotonic()
        await asyncio.sleep(every_s)
        lag = time.monotonic() - began - every_s
        healthy = lag <= MAX_LOOP_LAG_S
        try:
            healthy = healthy and store_ok()
        except Exception:  # a store that raises is not healthy
            log.exception("store_check_failed")
            healthy = False
        if healthy:
            send("WATCHDOG=1")
        else:
            log.error("watchdog_skipped", loop_lag_s=round(lag, 3))
