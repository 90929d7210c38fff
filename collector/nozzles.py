"""The station's nozzles as the collector last saw them (SPEC D2).

In-memory and derived: everything here can be rebuilt from the next poll,
so none of it needs to survive a restart. It feeds the heartbeat and gives
each order its ``started_at`` (the moment the nozzle was seen lifted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from protocols.events import NozzleState, NozzleStatus, PumpLink


@dataclass(slots=True)
class Nozzle:
    key: str
    state: NozzleState = NozzleState.IDLE
    lifted_at: datetime | None = None  # start of the current (or last) fill, UTC


class NozzleTable:
    """Live state of every nozzle on every port, keyed by nozzle key."""

    def __init__(self) -> None:
        self._nozzles: dict[str, Nozzle] = {}

    def update(self, key: str, status: NozzleStatus, now: datetime | None = None) -> bool:
        """Apply a status report; return True when the state changed."""
        nozzle = self._nozzles.setdefault(key, Nozzle(key))
        busy = (NozzleState.LIFTED, NozzleState.FUELLING)
        if status.state in busy and nozzle.state not in busy:
            nozzle.lifted_at = now or datetime.now(UTC)
        changed = nozzle.state != status.state
        nozzle.state = status.state
        return changed

    def link(self, prefix: str, event: PumpLink) -> None:
        """A pump went offline (its nozzles too) or came back."""
        for key, nozzle in self._nozzles.items():
            if key.startswith(prefix):
                if not event.online:
                    nozzle.state = NozzleState.OFFLINE
                elif nozzle.state == NozzleState.OFFLINE:
                    nozzle.state = NozzleState.IDLE

    def take_started_at(self, key: str) -> datetime | None:
        """When the fill that just ended began, if we saw it begin."""
        nozzle = self._nozzles.get(key)
        if nozzle is None:
            return None
        started, nozzle.lifted_at = nozzle.lifted_at, None
        return started

    def states(self) -> dict[str, str]:
        return {key: str(n.state) for key, n in sorted(self._nozzles.items())}
