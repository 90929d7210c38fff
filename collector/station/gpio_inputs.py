"""Pulse and nozzle-switch inputs on GPIO lines (``[[pulses]]``): the I/O.

Each nozzle's encoder pulse line and (optionally) its nozzle switch line are
requested from the kernel's GPIO character device with libgpiod's Python
binding (PyPI ``gpiod`` 2.x, uAPI v2: docs/decisions.md says why), one
request per chip holding all its lines: pulse lines with edge detection on
the configured edge, switch lines on both edges with the kernel's debounce
and ``active_low`` when the switch reads 0 while lifted, so a logical
rising edge is always a lift. ``gpiod`` is imported here, and this module
only when ``[[pulses]]`` names an input: a station without them never
loads the binding.

Reading: the request's file descriptor is watched by the event loop
(``add_reader``); when it is readable, the events there are read (never
blocking: they are there) and handed in order to
:class:`collector.station.pulse_check.NozzleSignals`. Both lines of a nozzle are on
one chip, so one request numbers their events in the order they happened.
Pulses are counted from the kernel's per-line numbers (``line_seqno``), so
events its buffer dropped still count (and are reported as ``lost``).

Before a sale is judged (:meth:`PulseInputs.findings`, the port sink's
second source) the chip's pending events are read first: the hang and the
last pulses that came before the sale are in the count, even when the
serial line's bytes and the GPIO events were ready in the same loop turn.

Errors are data: a chip that cannot be opened or fails while read is
``PULSE_INPUT_OFFLINE`` for each of its nozzles (raised and cleared once
per episode) and is opened again with backoff; while offline, sales are
not judged (counted). An error inside a check is logged with its
traceback and the sale stored without that check's flags — a second
source never stops an order from being stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from collector.retry import Retry, every
from collector.station.alarm_store import store_alarm
from collector.station.edge import Finding
from collector.station.pulse_check import NozzleSignals, PulseSettings
from collector.station.selfcheck import alarm_raised

log = structlog.get_logger("collector.station.gpio_inputs")

OFFLINE_CODE = "PULSE_INPUT_OFFLINE"

#: How often the time rules (a lift whose sale never came) are looked at.
TICK_S = 1.0

#: Reopening a chip that failed: from 1 s doubling to a minute.
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0

#: Events read per read call: libgpiod's default buffer. Reads repeat while
#: the descriptor stays readable, so this only bounds one loop turn.
READ_EVENTS = 64

#: Asked of the kernel per request: its most (16 × 64 lines). At 1 000
#: pulses per litre and 130 L/min that is half a second of one nozzle's
#: pulses if the loop is held up; a drop is still counted (line_seqno).
EVENT_BUFFER = 1024

#: Event reads per chip in one readable callback: the loop gets control
#: back after at most this many reads even if the chip keeps it busy.
READS_PER_WAKE = 16

CONSUMER = "forecourt"


@dataclass(frozen=True, slots=True)
class PulseInput:
    """One ``[[pulses]]`` entry: lines and the rules' settings."""

    settings: PulseSettings
    chip: str
    pulse_line: int
    pulse_edge: str  # "rising" | "falling"
    nozzle_line: int | None
    lifted_level: int
    debounce_ms: int
    bias: str  # "as-is" | "pull-up" | "pull-down" | "disabled"


@dataclass(slots=True)
class _Chip:
    path: str
    inputs: list[PulseInput]
    request: Any = None  # gpiod.LineRequest while open
    retry_at: float = 0.0
    retry: Retry | None = None
    reason: str = ""
    last_seqno: dict[int, int] | None = None  # pulse line → last line_seqno


class PulseInputs:
    """Every ``[[pulses]]`` input: its chips, their events, its alarms."""

    def __init__(
        self,
        inputs: Sequence[PulseInput],
        store: Any,  # buffer.store.OrderStore
        tz: timezone,
        on_commit: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        binding: Any = None,
    ) -> None:
        self.store = store
        self.tz = tz
        self.on_commit = on_commit
        self.clock = clock
        self.signals = {i.settings.nozzle: NozzleSignals(i.settings) for i in inputs}
        self.chips: dict[str, _Chip] = {}
        for i in inputs:
            self.chips.setdefault(i.chip, _Chip(i.chip, [])).inputs.append(i)
        self._chip_of = {i.settings.nozzle: self.chips[i.chip] for i in inputs}
        self._by_line: dict[tuple[str, int], tuple[NozzleSignals, bool]] = {}
        for i in inputs:
            signals = self.signals[i.settings.nozzle]
            self._by_line[i.chip, i.pulse_line] = (signals, True)
            if i.nozzle_line is not None:
                self._by_line[i.chip, i.nozzle_line] = (signals, False)
        #: PULSE_INPUT_OFFLINE as stored, per nozzle (the store's after a restart).
        self._offline = {n: alarm_raised(store, n, OFFLINE_CODE) for n in self.signals}
        #: Alarms to store (again, after a refusal): (source, code, raised, detail, rid).
        self._unstored: list[tuple[str, str, bool, dict[str, Any], str | None]] = []
        self.store_errors = 0
        self.check_errors = 0
        #: The ``gpiod`` module; None: imported at the first open. Tests give
        #: hil/gpio_double, which has the binding's API (docs/decisions.md).
        self._gpiod: Any = binding

    # -- the sink's second source ------------------------------------------------

    def findings(self, nozzle: str, order: Mapping[str, Any]) -> list[Finding]:
        signals = self.signals.get(nozzle)
        if signals is None:
            return []
        try:
            chip = self._chip_of[nozzle]
            if chip.request is not None:
                self._read(chip, until_empty=True)
            return signals.findings(order, self.clock())
        except Exception:
            self.check_errors += 1
            log.exception("pulse_check_failed", nozzle=nozzle, order_no=order.get("order_no"))
            return []

    # -- the chips ---------------------------------------------------------------

    def _binding(self) -> Any:
        if self._gpiod is None:
            import gpiod

            self._gpiod = gpiod
        return self._gpiod

    def _config(self, chip: _Chip) -> dict[int, Any]:
        gpiod = self._binding()
        line = gpiod.line
        bias = {
            "as-is": line.Bias.AS_IS,
            "pull-up": line.Bias.PULL_UP,
            "pull-down": line.Bias.PULL_DOWN,
            "disabled": line.Bias.DISABLED,
        }
        config: dict[int, Any] = {}
        for i in chip.inputs:
            edge = line.Edge.RISING if i.pulse_edge == "rising" else line.Edge.FALLING
            config[i.pulse_line] = gpiod.LineSettings(
                direction=line.Direction.INPUT,
                edge_detection=edge,
                bias=bias[i.bias],
                event_clock=line.Clock.MONOTONIC,
            )
            if i.nozzle_line is not None:
                config[i.nozzle_line] = gpiod.LineSettings(
                    direction=line.Direction.INPUT,
                    edge_detection=line.Edge.BOTH,
                    bias=bias[i.bias],
                    active_low=i.lifted_level == 0,
                    debounce_period=timedelta(milliseconds=i.debounce_ms),
                    event_clock=line.Clock.MONOTONIC,
                )
        return config

    def open(self, chip: _Chip) -> bool:
        """Request the chip's lines and start reading them; False: offline."""
        try:
            gpiod = self._binding()
            request = gpiod.request_lines(
                chip.path, self._config(chip), consumer=CONSUMER, event_buffer_size=EVENT_BUFFER
            )
        except (OSError, ValueError, ImportError) as exc:  # ImportError: no binding installed
            self._failed(chip, f"{chip.path}: {exc}")
            return False
        try:
            switches = [i.nozzle_line for i in chip.inputs if i.nozzle_line is not None]
            levels = request.get_values(switches) if switches else []
            values = dict(zip(switches, levels, strict=True))
            asyncio.get_running_loop().add_reader(request.fd, self._readable, chip)
        except (OSError, ValueError) as exc:
            request.release()
            self._failed(chip, f"{chip.path}: {exc}")
            return False
        chip.request, chip.last_seqno, chip.reason = request, {}, ""
        if chip.retry is not None:
            chip.retry.reset()
        now = self.clock()
        for i in chip.inputs:
            lifted = None if i.nozzle_line is None else bool(values[i.nozzle_line])
            self.signals[i.settings.nozzle].online(now, lifted)
            self._set_offline(i.settings.nozzle, False, {"chip": chip.path})
        log.info("gpio_chip_open", chip=chip.path, lines=sorted(self._config(chip)))
        return True

    def _failed(self, chip: _Chip, reason: str) -> None:
        if chip.request is not None:
            try:
                asyncio.get_running_loop().remove_reader(chip.request.fd)
            except Exception:  # a request the binding already tore down
                log.debug("gpio_remove_reader_failed", chip=chip.path)
            chip.request.release()
            chip.request = None
        if chip.retry is None:
            chip.retry = Retry(RETRY_MIN_S, RETRY_MAX_S)
        chip.retry_at = self.clock() + chip.retry.next_delay()
        if reason != chip.reason:
            log.error("gpio_chip_offline", chip=chip.path, reason=reason)
        chip.reason = reason
        for i in chip.inputs:
            self.signals[i.settings.nozzle].offline()
            self._set_offline(i.settings.nozzle, True, {"chip": chip.path, "reason": reason})

    def _readable(self, chip: _Chip) -> None:
        self._read(chip, until_empty=False)

    def _read(self, chip: _Chip, *, until_empty: bool) -> None:
        """Read the events waiting on ``chip`` (none block: they are there)."""
        request = chip.request
        reads = 0
        try:
            while request is not None and request.wait_edge_events(0):
                self._events(chip, request.read_edge_events(READ_EVENTS))
                reads += 1
                if not until_empty and reads >= READS_PER_WAKE:
                    break
        except OSError as exc:
            self._failed(chip, f"{chip.path}: read failed: {exc}")

    def _events(self, chip: _Chip, events: list[Any]) -> None:
        rising = self._binding().EdgeEvent.Type.RISING_EDGE
        mono_now, wall_now = time.monotonic_ns(), datetime.now(self.tz)
        assert chip.last_seqno is not None
        for event in events:
            found = self._by_line.get((chip.path, event.line_offset))
            if found is None:
                continue
            signals, is_pulse = found
            mono = event.timestamp_ns / 1e9
            if is_pulse:
                last = chip.last_seqno.get(event.line_offset, 0)
                step = max(0, event.line_seqno - last)
                chip.last_seqno[event.line_offset] = event.line_seqno
                signals.pulse(step, max(0, step - 1), mono)
                continue
            at = wall_now - timedelta(microseconds=(mono_now - event.timestamp_ns) / 1000)
            for source, code, detail in (
                (signals.settings.nozzle, c, d)
                for c, d in signals.switch(event.event_type == rising, mono, at)
            ):
                self._alarm(source, code, detail)

    # -- alarms ------------------------------------------------------------------

    def _set_offline(self, nozzle: str, offline: bool, detail: dict[str, Any]) -> None:
        if self._offline[nozzle] == offline:
            return
        self._offline[nozzle] = offline
        self._unstored.append((nozzle, OFFLINE_CODE, offline, detail, None))
        self._store_pending()

    def _alarm(self, source: str, code: str, detail: dict[str, Any]) -> None:
        """An event alarm (raised, never cleared), its rid fixed when it is
        first due so a retry after a refusal stores it once."""
        rid = f"{source}:{code}:{int(time.time() * 1000)}"
        self._unstored.append((source, code, True, detail, rid))
        self._store_pending()

    def _store_pending(self) -> None:
        waiting, self._unstored = self._unstored, []
        for item in waiting:
            source, code, raised, detail, rid = item
            ok = store_alarm(
                self.store, source, code, raised, self.tz, detail, rid=rid, wake=self.on_commit
            )
            if not ok:
                self.store_errors += 1
                self._unstored.append(item)
                continue
            log.warning("alarm", code=code, source=source, raised=raised, **detail)

    def tick(self) -> None:
        """Time's rules, alarms a refused store owes, chips due to be reopened."""
        now = self.clock()
        for chip in self.chips.values():
            if chip.request is None and chip.retry_at <= now:
                self.open(chip)
        for nozzle, signals in self.signals.items():
            for code, detail in signals.due(now):
                self._alarm(nozzle, code, detail)
        if self._unstored:
            self._store_pending()

    def states(self) -> dict[str, Any]:
        """For ``forecourt status``."""
        return {nozzle: s.state() for nozzle, s in sorted(self.signals.items())}

    async def run(self) -> None:
        try:
            await every(TICK_S, self.tick)
        finally:
            for chip in self.chips.values():
                if chip.request is not None:
                    asyncio.get_running_loop().remove_reader(chip.request.fd)
                    chip.request.release()
                    chip.request = None
