"""What a Changkong Uninfo master knows about one fuelling point, and how its replies read.

The poll driver (:class:`~protocols.uninfo.driver.UninfoPoller`) and the
passive monitor (:class:`~protocols.uninfo.monitor.UninfoMonitor`) keep one
:class:`FuellingPoint` per pump and read every reply with it, so both turn
the same words into the same events and the same sale keys.

Nozzle states. A status reply names the fuelling point, not a nozzle
(``state << 4 | pump``, ``fangym0335/first src/lischn011.c:1652``), and so
does the running display (``:1534-1573``); the FCC itself takes every fill
as nozzle 1 (``GetCurrentLNZ``, ``:1706-1712``). The state is therefore
reported on every nozzle the point's last totals named (nozzle 1 before
any): 1 idle and 6 fill ended → ``IDLE``; 2 lifted, 3 authorised, 5 stopped →
``LIFTED``; 4 → ``FUELLING`` (with the running display's volume and amount
when read); 0 → ``ABNORMAL``. Only changes are reported, and after
:meth:`FuellingPoint.forget` every nozzle once.

Sales. The pump keeps one record, its last sale (``C``, 73 words), with no
number, time or nozzle in the words the source reads (``:1191-1210``); the
totals reply (``B``) has every nozzle's volume and amount totals. The FCC
reads the totals when a fill ends and reads the record only when the
nozzle's volume total moved (``DoEot``, ``:1128-1180``). So a record is
paired with a totals reply read while the point was not fuelling (no state
3, 4 or 5 seen between them, :meth:`FuellingPoint.pairable`), and
:func:`attribute` names its nozzle:

1. against the totals accounted before (``before``): the one nozzle whose
   volume total grew by exactly the record's volume; else the one nozzle
   whose volume and amount totals both grew by more than the record's
   (sales between were missed: the pump keeps one record; totals that grew
   by less are no sum of sales, a garbled reply); else, among those, the one
   whose price is the record's;
2. with no totals accounted yet (the first read after start or after the
   link came back): a point with one nozzle; else the one nozzle whose
   price is the record's;
3. otherwise it cannot say, and the record is reported as an error.

The amount total after the sale is reported when the totals moved by
exactly this sale's volume and the amount total by exactly its amount, or
when the totals are not known to have moved by this sale alone; when the
volume total moved by this sale alone and the amount total by another sum,
one reply was garbled past its 4-bit check (or the pump keeps its amount
total otherwise, unverified): the sale carries no amount total then
(``amounts_unmatched``), the :class:`Totals` events still do.

Key: ``"<nozzle>:<that nozzle's volume total>"`` (raw digits), and the order
number is that total: a record read again has the same totals and the same
key; two equal fills never do, the totals only grow. A record of volume 0
is no sale. ``ended_at`` is the station's clock when the reader first saw
the key (the wire has no time), the same on every later reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from protocols.bcd import scaled
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, Sale, Totals

# nozzle_grades: the drivers and monitors of this family import it from here.
from protocols.saleline import SaleMaker, Scale
from protocols.saleline import nozzle_grades as nozzle_grades
from protocols.uninfo.messages import (
    ST_AUTHORISED,
    ST_END,
    ST_ERROR,
    ST_FUELLING,
    ST_IDLE,
    ST_LIFTED,
    ST_STOPPED,
    Display,
    GradeTotals,
    SaleRecord,
)

#: States in which a fill may move the totals: the FCC reads totals only in
#: 1, 2, 5 or 6 (``:1785-1789``) and never pairs a record across a fill.
BUSY_STATES = frozenset({ST_AUTHORISED, ST_FUELLING, ST_STOPPED})

#: States a poller reads totals and the record in: no fill on, no error
#: (the FCC also reads in 5, stopped, ``:1785``; a stopped fill may go on).
READ_STATES = frozenset({ST_IDLE, ST_LIFTED, ST_END})

NOZZLE_STATE = {
    ST_ERROR: NozzleState.ABNORMAL,
    ST_IDLE: NozzleState.IDLE,
    ST_LIFTED: NozzleState.LIFTED,
    ST_AUTHORISED: NozzleState.LIFTED,
    ST_FUELLING: NozzleState.FUELLING,
    ST_STOPPED: NozzleState.LIFTED,
    ST_END: NozzleState.IDLE,
}

#: Sale keys whose first-seen time is remembered: one record per pump, so a
#: few are plenty; bounded all the same.
MAX_REMEMBERED = 16


def attribute(
    record: SaleRecord,
    before: Mapping[int, GradeTotals] | None,
    after: tuple[GradeTotals, ...],
) -> GradeTotals | str:
    """The nozzle's totals ``record`` belongs to, or why none can be named (module doc)."""
    if before is None:
        if len(after) == 1:
            return after[0]
        priced = [g for g in after if g.price == record.price]
        if len(priced) == 1:
            return priced[0]
        return f"{len(after)} nozzles, {len(priced)} at the record's price, none accounted before"
    exact: list[GradeTotals] = []
    grown: list[GradeTotals] = []
    for g in after:
        last = before.get(g.nozzle)
        if last is None:
            grown.append(g)
        elif g.volume_total - last.volume_total == record.volume:
            exact.append(g)
        elif (
            g.volume_total - last.volume_total > record.volume
            and g.amount_total - last.amount_total > record.amount
        ):
            # Sales missed between: both totals moved by more than the last
            # sale (totals that moved by less, or back, are no sum of sales).
            grown.append(g)
    for found in (exact, grown, [g for g in grown if g.price == record.price]):
        if len(found) == 1:
            return found[0]
    return f"{len(grown)} nozzles' totals moved, none by the record's volume alone"


def sale_key(nozzle: int, volume_total: int) -> str:
    """What identifies a sale record (module doc)."""
    return f"{nozzle}:{volume_total}"


class FuellingPoint:
    """One pump's replies, read into events (module doc)."""

    def __init__(
        self,
        address: int,
        *,
        scale: Scale,
        grades: Mapping[int, str],
        clock: Callable[[], datetime],
    ) -> None:
        self.address = address
        self._scale = scale
        self._grades = dict(grades)
        self.state: int | None = None
        #: The latest totals, and whether a fill may have moved them since.
        self.after: tuple[GradeTotals, ...] | None = None
        self.busy_since_totals = True
        #: The totals every sale up to now is accounted against (None: not yet).
        self.before: dict[int, GradeTotals] | None = None
        self._shown: dict[int, tuple[NozzleState, int | None, int | None]] = {}
        self._sales = SaleMaker(
            address, scale=scale, grades=self._grades, clock=clock, remembered=MAX_REMEMBERED
        )
        #: Sales whose amount total did not move by their amount (not reported).
        self.amounts_unmatched = 0

    @property
    def nozzles(self) -> tuple[int, ...]:
        return tuple(g.nozzle for g in self.after) if self.after else (1,)

    def forget(self) -> None:
        """The link went down: states and totals are unknown until read again."""
        self._shown.clear()
        self.state = None
        self.after, self.before, self.busy_since_totals = None, None, True

    # ------------------------------------------------------------ states

    def status(self, state: int) -> list[Event]:
        self.state = state
        if state in BUSY_STATES:
            self.busy_since_totals = True
        shown = (NOZZLE_STATE[state], None, None)
        return self._show({n: shown for n in self.nozzles})

    def display(self, display: Display) -> list[Event]:
        """The running fill: the point is fuelling (module doc)."""
        self.busy_since_totals = True
        shown = (NozzleState.FUELLING, display.volume, display.amount)
        return self._show({n: shown for n in self.nozzles})

    def _show(self, now: dict[int, tuple[NozzleState, int | None, int | None]]) -> list[Event]:
        events: list[Event] = []
        prices = {g.nozzle: g.price for g in self.after or ()}
        scale = self._scale
        for nozzle, shown in now.items():
            if self._shown.get(nozzle) == shown:
                continue
            self._shown[nozzle] = shown
            state, volume, amount = shown
            price = prices.get(nozzle)
            events.append(
                NozzleStatus(
                    self.address,
                    nozzle,
                    state,
                    volume=None if volume is None else scaled(volume, scale.volume),
                    amount=None if amount is None else scaled(amount, scale.amount),
                    price=None if price is None else scaled(price, scale.price),
                )
            )
        return events

    # ------------------------------------------------------------ totals and sales

    def totals(self, grades: tuple[GradeTotals, ...]) -> list[Event]:
        """A totals reply read while the point was not fuelling."""
        self.after = grades
        self.busy_since_totals = False
        scale = self._scale
        return [
            Totals(
                self.address,
                g.nozzle,
                scaled(g.volume_total, scale.volume),
                scaled(g.amount_total, scale.amount),
            )
            for g in grades
        ]

    @property
    def pairable(self) -> bool:
        """A record read now pairs with the latest totals (no fill since them)."""
        return self.after is not None and not self.busy_since_totals

    @property
    def moved(self) -> bool:
        """Totals moved since the last accounting (or none was made yet)."""
        if self.after is None:
            return False
        if self.before is None:
            return True
        return any(
            g.nozzle not in self.before or g.volume_total != self.before[g.nozzle].volume_total
            for g in self.after
        )

    def account(self) -> None:
        """Every sale up to the latest totals is stored (or was none)."""
        if self.after is not None:
            self.before = {g.nozzle: g for g in self.after}

    def sale(self, record: SaleRecord, raw: bytes) -> Sale | ProtocolError | None:
        """The sale ``record`` is against the latest totals; None for volume 0."""
        assert self.after is not None
        if record.volume == 0:
            return None
        found = attribute(record, self.before, self.after)
        if isinstance(found, str):
            return ProtocolError(
                "bad_message", f"sale record of no known nozzle: {found}", self.address
            )
        amount_total: int | None = found.amount_total
        last = None if self.before is None else self.before.get(found.nozzle)
        if (
            last is not None
            and found.volume_total - last.volume_total == record.volume
            and found.amount_total - last.amount_total != record.amount
        ):
            # The one sale since, yet the amount total did not move by its
            # amount: one of the two replies is garbled past its 4-bit check,
            # or the pump keeps that total otherwise. Not reported (module doc).
            amount_total = None
            self.amounts_unmatched += 1
        key = sale_key(found.nozzle, found.volume_total)
        totals = (found.volume_total, amount_total)
        counts = (record.price, record.volume, record.amount)
        return self._sales.sale(found.nozzle, counts, totals, key, raw)
