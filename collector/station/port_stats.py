"""What a port counts: its stats (``forecourt status``, the page) and its
activity, which sets the pace its port polls at.

Counters only: nothing here reads a line, a clock but the monotonic one, or
the store. The sink (collector/station/sink.py) and the parts it hands
events to (port_writer, nozzle_records, port_alarms) count into one
:class:`PortStats` per port.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from protocols.events import NozzleState

#: After a change (a nozzle's state, a sale) the port stays at its busy pace
#: this long: the confirmation, the pump's next queued record and the
#: several reads some protocols need to fetch one sale go at once, not at
#: the idle pace.
ACTIVE_HOLD_S = 3.0

BUSY_STATES = frozenset({NozzleState.LIFTED, NozzleState.FUELLING})


@dataclass(slots=True)
class PortStats:
    online: bool = False
    sales: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)  # edge findings by code

    def error(self, kind: str) -> None:
        """One more error of ``kind`` (a bad frame's kind, ``store``, ``conflict`` …)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def flag(self, code: str) -> None:
        """One more stored order flagged ``code`` by the edge checks."""
        self.flags[code] = self.flags.get(code, 0) + 1


class Activity:
    """Whether a port is busy: a nozzle lifted or fuelling, or a change seen
    in the last :data:`ACTIVE_HOLD_S`; and the count of changes seen."""

    def __init__(self) -> None:
        self._busy: set[str] = set()  # nozzles lifted or fuelling now
        self._last_change = float("-inf")  # monotonic time of the last change seen
        #: Count of changes seen (states, sales, totals, alarms): a port
        #: compares it around a turn to know whether the turn moved anything.
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1
        self._last_change = time.monotonic()

    def nozzle(self, key: str, state: NozzleState) -> None:
        """The nozzle ``key`` reported ``state``: busy while lifted or fuelling."""
        if state in BUSY_STATES:
            self._busy.add(key)
        else:
            self._busy.discard(key)

    def pump_gone(self, prefix: str) -> None:
        """A pump's link changed: none of its nozzles (``prefix``) is busy now."""
        self._busy = {k for k in self._busy if not k.startswith(prefix)}

    @property
    def active(self) -> bool:
        return bool(self._busy) or time.monotonic() - self._last_change < ACTIVE_HOLD_S
