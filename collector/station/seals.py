"""Smart lead seals (SPEC F3): seal loops read as digital inputs, alarmed.

A smart lead seal is a wire loop through the dispenser's meter / encoder
housing, wired to one digital input of the gateway: closed while the seal is
intact, open once it is cut. The board exposes each input as a sysfs value
file (the kernel's legacy GPIO interface ``/sys/class/gpio/gpioN/value``,
exported at boot, or any driver attribute that reads ``0`` / ``1``); which
input guards which dispenser comes from ``[[seals]]`` in the config.

Three states per seal: ``intact`` (the input reads the configured
``intact_level``), ``opened`` (the other level) and ``offline`` (the value
file is missing, unreadable or holds anything but ``0`` / ``1``: the input
or its driver is gone). A state changes only after :data:`DEBOUNCE_READS`
consistent reads, so a bouncing contact or one odd read is not an alarm.

Alarms are per dispenser (source ``pNN.aA``), states raised and cleared once
per episode like every other (docs/alarms.md): ``SEAL_OPENED`` while any of
its seals is opened, ``SEAL_OFFLINE`` while any is offline. Tamper-safe
rules: a seal that goes offline while opened stays counted as opened (pulling
the input must not clear the alarm); only a seal read intact again leaves
``SEAL_OPENED``. After a restart the last stored state of each alarm is the
starting point, so an opened seal is not raised twice and a seal closed
while the collector was off is cleared once every seal of the dispenser
has been read.

The GPIO character device (``/dev/gpiochipN``, the v2 line ioctls) is not
read: no test here could exercise it honestly (it needs the gpio-sim kernel
module, absent from this build and test machine), and an untested ioctl path
for a tamper alarm is worse than none. The sysfs value file covers the same
inputs on the boards we target; docs/decisions.md says so.

:class:`SealWatch` is pure (reads and times come in); :class:`SealTask` reads
the files and stores the alarms (store first, then ``on_commit``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import structlog

from collector.station.alarm_store import store_alarm
from collector.station.selfcheck import alarm_raised

log = structlog.get_logger("collector.station.seals")

#: Consistent reads before a seal's state changes. At the default 500 ms
#: period a real cut shows within 1.5 s, and a contact that bounces for a
#: read or two (vibration of a running pump) is never an alarm.
DEBOUNCE_READS = 3

#: Bytes read from a value file: "0\n" / "1\n"; more means it is not one.
VALUE_READ_MAX = 16

OPENED_CODE = "SEAL_OPENED"
OFFLINE_CODE = "SEAL_OFFLINE"


class SealState(enum.StrEnum):
    INTACT = "intact"
    OPENED = "opened"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class SealSpec:
    name: str
    dispenser: str  # the pump's source key, ``p01.a1``
    value: Path  # the sysfs value file
    intact_level: int  # 0 or 1: what the input reads while the loop is closed
    period_s: float


@dataclass(frozen=True, slots=True)
class Reading:
    state: SealState
    reason: str = ""  # why offline


def read_seal(spec: SealSpec) -> Reading:
    """One read of the seal's value file (one open, one read, one close)."""
    try:
        with open(spec.value, "rb") as f:
            raw = f.read(VALUE_READ_MAX)
    except FileNotFoundError:
        return Reading(SealState.OFFLINE, "value file missing")
    except OSError as exc:
        return Reading(SealState.OFFLINE, exc.strerror or str(exc))
    text = raw.strip()
    if text not in (b"0", b"1"):
        return Reading(SealState.OFFLINE, f"invalid value {raw[:8]!r}")
    opened = int(text) != spec.intact_level
    return Reading(SealState.OPENED if opened else SealState.INTACT)


@dataclass(slots=True)
class _Seal:
    spec: SealSpec
    state: SealState | None = None  # debounced; None until DEBOUNCE_READS agree
    candidate: SealState | None = None
    count: int = 0
    reason: str = ""


#: (code, source, raised, detail) of one alarm transition.
Transition = tuple[str, str, bool, dict[str, Any]]


@dataclass(slots=True)
class _Book:
    """Which seals of one dispenser hold each alarm, and whether it is raised."""

    members: dict[str, set[str]] = field(default_factory=dict)  # code → seal names
    raised: dict[str, bool] = field(default_factory=dict)


class SealWatch:
    """Debounce every seal and derive the per-dispenser alarm transitions (pure)."""

    def __init__(self, specs: Sequence[SealSpec], raised: Callable[[str, str], bool]) -> None:
        """``raised(source, code)``: whether that alarm's last stored state is
        raised (the store after a restart); such an alarm starts held by every
        seal of the dispenser, so it clears only once each has been read."""
        self.seals = {s.name: _Seal(s) for s in specs}
        self.books: dict[str, _Book] = {}
        for spec in specs:
            book = self.books.setdefault(spec.dispenser, _Book())
            for code in (OPENED_CODE, OFFLINE_CODE):
                members = book.members.setdefault(code, set())
                if code not in book.raised:
                    book.raised[code] = raised(spec.dispenser, code)
                if book.raised[code]:
                    members.add(spec.name)

    def feed(self, name: str, reading: Reading) -> list[Transition]:
        """One read of seal ``name``; the alarm transitions it causes."""
        seal = self.seals[name]
        if reading.state == seal.candidate:
            seal.count += 1
        else:
            seal.candidate, seal.count = reading.state, 1
        if seal.count < DEBOUNCE_READS or seal.state == reading.state:
            return []
        before, seal.state, seal.reason = seal.state, reading.state, reading.reason
        log.info("seal_state", seal=name, before=before, state=seal.state, reason=seal.reason)
        book = self.books[seal.spec.dispenser]
        opened, offline = book.members[OPENED_CODE], book.members[OFFLINE_CODE]
        if seal.state == SealState.OPENED:
            opened.add(name)
        elif seal.state == SealState.INTACT:
            opened.discard(name)  # only an intact read ends an opening
        if seal.state == SealState.OFFLINE:
            offline.add(name)
        else:
            offline.discard(name)
        return self._transitions(seal)

    def _transitions(self, seal: _Seal) -> list[Transition]:
        source = seal.spec.dispenser
        book = self.books[source]
        settled = all(
            s.state is not None for s in self.seals.values() if s.spec.dispenser == source
        )
        out: list[Transition] = []
        for code in (OPENED_CODE, OFFLINE_CODE):
            members = book.members[code]
            want = bool(members)
            if want == book.raised[code] or (not want and not settled):
                continue  # a restored alarm clears only once every seal was read
            book.raised[code] = want
            detail: dict[str, Any] = {
                "seal": seal.spec.name,
                "state": str(seal.state),
                "seals": sorted(members),
                "path": str(seal.spec.value),
            }
            if seal.reason:
                detail["reason"] = seal.reason
            out.append((code, source, want, detail))
        return out

    def undo(self, source: str, code: str, raised: bool) -> None:
        """A transition the store refused: the book goes back to before it."""
        self.books[source].raised[code] = not raised

    def pending(self, source: str) -> list[Transition]:
        """The transitions the dispenser's seals still call for (after an undo):
        the debounced states stand, only the stored alarm lags behind them."""
        last = [s for s in self.seals.values() if s.spec.dispenser == source and s.state]
        return self._transitions(last[-1]) if last else []

    def states(self) -> dict[str, dict[str, str | None]]:
        """Each seal's debounced state, for ``forecourt status`` (collector/tools/control.py)."""
        return {
            name: {
                "dispenser": s.spec.dispenser,
                "state": None if s.state is None else str(s.state),
            }
            for name, s in sorted(self.seals.items())
        }


class SealTask:
    """Read every seal at its period; store each alarm transition (store first)."""

    def __init__(
        self,
        specs: Sequence[SealSpec],
        store: Any,  # buffer.store.OrderStore
        tz: timezone,
        on_commit: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = list(specs)
        self.store = store
        self.tz = tz
        self.on_commit = on_commit
        self.clock = clock
        self.watch = SealWatch(self.specs, lambda source, code: alarm_raised(store, source, code))
        #: Alarm records the store refused (disk full, locked): each is retried.
        self.store_errors = 0
        self._unstored: set[str] = set()  # dispensers with a transition to store again

    def poll(self, spec: SealSpec) -> None:
        """Read one seal and store what its reading changes; a transition the
        store refused (counted in :attr:`store_errors`) is tried again at the
        dispenser's next read — a tamper alarm is never dropped."""
        transitions = self.watch.feed(spec.name, read_seal(spec))
        if spec.dispenser in self._unstored:
            self._unstored.discard(spec.dispenser)
            transitions += self.watch.pending(spec.dispenser)
        for code, source, raised, detail in transitions:
            if not self._store(code, source, raised, detail):
                self.watch.undo(source, code, raised)
                self._unstored.add(source)

    def _store(self, code: str, source: str, raised: bool, detail: dict[str, Any]) -> bool:
        if not store_alarm(self.store, source, code, raised, self.tz, detail, wake=self.on_commit):
            self.store_errors += 1
            return False
        log.warning("alarm", code=code, source=source, raised=raised, **detail)
        return True

    async def run(self) -> None:
        due = dict.fromkeys(range(len(self.specs)), self.clock())
        while True:
            now = self.clock()
            for index, at in due.items():
                if at <= now:
                    spec = self.specs[index]
                    self.poll(spec)
                    nxt = at + spec.period_s
                    due[index] = nxt if nxt > now else now + spec.period_s
            await asyncio.sleep(max(0.0, min(due.values()) - self.clock()))
