"""Run and network LEDs (SPEC D12) through the kernel's LED class in sysfs.

A technician reads the box from across the forecourt:

| LED | pattern | means |
|---|---|---|
| run | on 1 s, off 1 s | collecting; every port is open |
| run | on 0.1 s, off 0.1 s | a fault: a port is offline or the store does not answer |
| network | steady on | the platform is reached (MQTT connected) |
| network | on 0.5 s, off 0.5 s | no platform: records are being kept in the store |
| both | off | the collector is not running |

Each LED is a directory of ``/sys/class/leds`` (its ``brightness`` file is
written ``1`` / ``0``); which LED is which comes from ``[leds]`` in the
config. The pattern logic is pure (:func:`patterns`, :func:`level_at`);
:class:`LedTask` only writes, and only when a level changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from collector.retry import every

log = structlog.get_logger("collector.device.leds")

#: (on, off) seconds; off == 0 means steady on.
Pattern = tuple[float, float]
RUNNING: Pattern = (1.0, 1.0)
FAULT: Pattern = (0.1, 0.1)
CONNECTED: Pattern = (1.0, 0.0)
NO_PLATFORM: Pattern = (0.5, 0.5)

#: How often the health is looked at: a state change shows within this.
TICK_S = 0.1


@dataclass(frozen=True, slots=True)
class Health:
    ports_ok: bool  # every port's line is open
    store_ok: bool  # the store answers
    platform_ok: bool  # the MQTT session is up


def patterns(health: Health) -> tuple[Pattern, Pattern]:
    """(run LED, network LED) for ``health``."""
    run = RUNNING if health.ports_ok and health.store_ok else FAULT
    network = CONNECTED if health.platform_ok else NO_PLATFORM
    return run, network


def level_at(pattern: Pattern, t: float) -> bool:
    """Whether an LED showing ``pattern`` is lit ``t`` seconds into the pattern."""
    on, off = pattern
    if off <= 0:
        return True
    return (t % (on + off)) < on


class SysfsLed:
    """One LED of the kernel's LED class; writes only when the level changes."""

    def __init__(self, directory: Path) -> None:
        self.brightness = directory / "brightness"
        self._level: bool | None = None

    def set(self, level: bool) -> None:
        if level == self._level:
            return
        try:
            self.brightness.write_text("1" if level else "0")
        except OSError as exc:  # an LED is never worth stopping the collector
            log.warning("led_write_failed", path=str(self.brightness), exc_info=exc)
            return
        self._level = level


class LedTask:
    """Drive the run and network LEDs from :data:`Health` every :data:`TICK_S`."""

    def __init__(
        self,
        run: SysfsLed | None,
        network: SysfsLed | None,
        health: Callable[[], Health],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_led, self.network_led = run, network
        self.health = health
        self.clock = clock

    def show(self) -> None:
        """Set both LEDs for the health and the time now."""
        run, network = patterns(self.health())
        now = self.clock()
        if self.run_led is not None:
            self.run_led.set(level_at(run, now))
        if self.network_led is not None:
            self.network_led.set(level_at(network, now))

    def off(self) -> None:
        for led in (self.run_led, self.network_led):
            if led is not None:
                led.set(False)

    async def run(self) -> None:
        try:
            await every(TICK_S, self.show)
        finally:
            self.off()  # a stopped collector shows both LEDs dark
