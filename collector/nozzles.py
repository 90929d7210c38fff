"""The station's nozzles as the collector last saw them (SPEC D2).

In-memory and derived: everything here can be rebuilt from the next poll,
so none of it needs to survive a restart. It feeds the heartbeat and the
``nozzle`` records (collector/sink.py), and gives each order its
``started_at`` (the moment the nozzle was seen lifted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from protocols.events import NozzleState, NozzleStatus, PumpLink


@dataclass(slots=True)
class Nozzle:
    key: str
    state: NozzleState = NozzleState.IDLE
    lifted_at: datetime | None = None  # start of the current (or last) fill, UTC
    volume: Decimal | None = None  # live volume of the current fill
    amount: Decimal | None = None  # live amount of the current fill
    price: Decimal | None = None
    grade: str | None = None
    totalizer_volume: Decimal | None = None
    totalizer_amount: Decimal | None = None

    def snapshot(self) -> dict[str, str | None]:
        def s(value: Decimal | None) -> str | None:
            return None if value is None else format(value, "f")

        return {
            "state": str(self.state),
            "volume": s(self.volume),
            "amount": s(self.amount),
            "price": s(self.price),
            "grade": self.grade,
            "totalizer_volume": s(self.totalizer_volume),
            "totalizer_amount": s(self.totalizer_amount),
        }


class NozzleTable:
    """Live state of every nozzle on every port, keyed by nozzle key."""

    def __init__(self) -> None:
        self._nozzles: dict[str, Nozzle] = {}

    def get(self, key: str) -> Nozzle:
        nozzle = self._nozzles.get(key)
        if nozzle is None:
            nozzle = self._nozzles[key] = Nozzle(key)
        return nozzle

    def update(self, key: str, status: NozzleStatus, now: datetime | None = None) -> bool:
        """Apply a status report; return True when the state changed."""
        nozzle = self.get(key)
        busy = (NozzleState.LIFTED, NozzleState.FUELLING)
        if status.state in busy and nozzle.state not in busy:
            nozzle.lifted_at = now or datetime.now(UTC)
        changed = nozzle.state != status.state
        nozzle.state = status.state
        nozzle.volume, nozzle.amount = status.volume, status.amount
        if status.price is not None:
            nozzle.price = status.price
        return changed

    def link(self, prefix: str, event: PumpLink) -> list[str]:
        """A pump went offline (its nozzles too) or came back; return the keys
        whose state changed."""
        changed = []
        for key, nozzle in self._nozzles.items():
            if key.startswith(prefix):
                if not event.online and nozzle.state != NozzleState.OFFLINE:
                    nozzle.state = NozzleState.OFFLINE
                    changed.append(key)
                elif event.online and nozzle.state == NozzleState.OFFLINE:
                    nozzle.state = NozzleState.IDLE
                    changed.append(key)
        return changed

    def keys_under(self, prefix: str) -> list[str]:
        return sorted(k for k in self._nozzles if k.startswith(prefix))

    def take_started_at(self, key: str) -> datetime | None:
        """When the fill that just ended began, if we saw it begin."""
        nozzle = self._nozzles.get(key)
        if nozzle is None:
            return None
        started, nozzle.lifted_at = nozzle.lifted_at, None
        return started

    def put_back_started_at(self, key: str, started: datetime | None) -> None:
        """A sale not stored (the pump offers it again): its fill keeps its start,
        unless a new fill began meanwhile."""
        nozzle = self._nozzles.get(key)
        if nozzle is not None and started is not None and nozzle.lifted_at is None:
            nozzle.lifted_at = started

    def states(self) -> dict[str, str]:
        return {key: str(n.state) for key, n in sorted(self._nozzles.items())}

    def snapshots(self) -> dict[str, dict[str, str | None]]:
        return {key: n.snapshot() for key, n in sorted(self._nozzles.items())}
