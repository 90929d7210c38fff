"""The station's nozzles as the collector last saw them (SPEC D2).

In-memory and derived: everything here can be rebuilt from the next poll,
so none of it needs to survive a restart. It feeds the heartbeat and the
``nozzle`` records (collector/station/nozzle_records.py), and gives each order its
``started_at`` (the moment the nozzle was seen lifted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from protocols.events import NozzleState, NozzleStatus, PumpLink

#: How much later than a sale's end (the dispenser's clock, whole seconds,
#: truncated) the lift the collector saw may be and still be that sale's
#: start: the truncation. A lift later than that began another fill (seen in
#: the torture runs: a sale the dispenser kept through a restart, read after
#: the next lift, took that lift as its start, up to 18 s after its end).
#: Unverified against real dispensers' clocks: one running behind the
#: gateway's by more than a fill's length gets no ``started_at`` (null, never
#: a wrong one) until both clocks agree (``time.sync`` sets only the gateway's).
LIFT_AFTER_END_SLACK = timedelta(seconds=1)

#: The first sale received this soon after the gateway saw a nozzle hung up
#: is that fill's sale: a poller reads it at its next polls, a relay or tap
#: when the POS asks (at once). A sale later than that, or a second one, is
#: not compared with the hang-up (it may be one the pump kept from before).
HANG_UP_TO_SALE = timedelta(seconds=60)


@dataclass(slots=True)
class Nozzle:
    key: str
    state: NozzleState = NozzleState.IDLE
    lifted_at: datetime | None = None  # start of the current (or last) fill, UTC
    hung_up_at: datetime | None = None  # end of the last fill as seen, UTC
    #: The nozzle's last state is one the pump reported idle (not the table's
    #: default, nor set by the link coming back): a fill begun from it was
    #: seen from its start. The lift seen after a restart, a cut link or a
    #: relay joined mid-fill is the middle of the fill.
    idle_reported: bool = False
    #: The current (or last) fill's lift was seen from a reported idle state.
    lift_from_idle: bool = False
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
            nozzle.lift_from_idle = nozzle.idle_reported
        elif status.state == NozzleState.IDLE and nozzle.state in busy:
            nozzle.hung_up_at = now or datetime.now(UTC)
        changed = nozzle.state != status.state
        nozzle.state = status.state
        nozzle.idle_reported = status.state == NozzleState.IDLE
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
                    nozzle.state, nozzle.idle_reported = NozzleState.OFFLINE, False
                    changed.append(key)
                elif event.online and nozzle.state == NozzleState.OFFLINE:
                    nozzle.state, nozzle.idle_reported = NozzleState.IDLE, False
                    changed.append(key)
        return changed

    def keys_under(self, prefix: str) -> list[str]:
        return sorted(k for k in self._nozzles if k.startswith(prefix))

    def take_started_at(self, key: str, ended_at: datetime | None = None) -> datetime | None:
        """When the fill that just ended began, if we saw it begin.

        ``ended_at`` (aware: the dispenser's end of the sale): a lift seen
        later than that (beyond :data:`LIFT_AFTER_END_SLACK`) began another
        fill — the sale is one the dispenser kept while the collector was
        down or the link was cut, offered after the next lift. It gets no
        start, and the lift stays for the fill it belongs to.
        """
        nozzle = self._nozzles.get(key)
        if nozzle is None or nozzle.lifted_at is None:
            return None
        if ended_at is not None and nozzle.lifted_at > ended_at + LIFT_AFTER_END_SLACK:
            return None
        started, nozzle.lifted_at = nozzle.lifted_at, None
        return started

    def lift_from_idle(self, key: str) -> bool:
        """The last lift of the nozzle was seen from a reported idle state:
        its fill's whole duration was seen (the flow check's basis)."""
        nozzle = self._nozzles.get(key)
        return nozzle is not None and nozzle.lift_from_idle

    def take_hung_up_at(self, key: str, received_at: datetime) -> datetime | None:
        """When the gateway saw the nozzle hung up, for the first sale received
        within :data:`HANG_UP_TO_SALE` of it (that fill's sale); else None."""
        nozzle = self._nozzles.get(key)
        if nozzle is None or nozzle.hung_up_at is None:
            return None
        hung_up, nozzle.hung_up_at = nozzle.hung_up_at, None
        if not hung_up <= received_at <= hung_up + HANG_UP_TO_SALE:
            return None
        return hung_up

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
