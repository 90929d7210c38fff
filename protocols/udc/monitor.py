"""恒山 UDC watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station controller is the master; it alone authorises fills and
acknowledges hang-ups (docs/protocols/udc.md: why poll is refused). The
collector only watches: bytes in → events out, never a byte out (SPEC D19,
D20). Layouts: :mod:`protocols.udc.messages`; framing and recovery:
:mod:`protocols.udc.framer`.

Directions. :meth:`UdcMonitor.receive_request` reads the controller's side
of a relay, :meth:`~UdcMonitor.receive_response` the pumps' side (each reply
answers the request seen last); :meth:`~UdcMonitor.receive_bus` one line
with both, told apart by the layout (the framer's module doc).

A fill cycle per pump. The pump shows one sale at a time: the F·A1 display
holds the last fill until the next one starts (019:1744-1749, 1268-1294).
A cycle opens at the first state of a nozzle out of its holster (lifted,
authorised, fuelling, suspended) and ends at the first idle state after it
(``ended_at``: the monitor's clock then; the wire carries no time). The
sale is the idle display the controller reads after the end: both FCCs
read it before and again after their hang-up acknowledgement (C·A2,
019:546-575), so the Sale is emitted at the second read alike — one
corrupted read that still passes its complements (the same bit flipped in
a byte and in its complement) cannot make a sale. The cycle closes at the
first state poll after the pump accepted the acknowledgement (``B0``,
019:2093-2122), or at the next fill; a sale read only once by then is
emitted from that read (``unconfirmed_sales``); of reads that disagree
(a ``display_disagrees`` error) the first whose amount is price × volume
is taken, else the last. Its totals are the last F·A9 of the
sale's nozzle read after the end; the nozzle is the C·A1 reply of the cycle
(019:1867-1896), else the one nozzle whose totals moved, else 0.

Sale identity (no transaction number on the wire). A cycle yields at most
one Sale, however often the display is read (019 reads it before and after
the acknowledgement, 019:546-565). With totals read after the end, the
volume total identifies the sale: ``order_no`` = its ten digits and ``key
= f"{nozzle}:{order_no}"`` — a nozzle's total grows with every litre, so no
two real sales share it, and a re-read gives the same. A total equal to the
one read before the cycle while the display shows fuel is stale (020 notes
totals that lag the hang-up, 020:1290): it is not used. Without totals
(020 reads none, 020:14) ``order_no`` is "" and the key is the end time to
the second with volume and amount: two real fills of one nozzle cannot end
within one second (each needs a lift, an authorisation and an
acknowledgement). A display of zero is no sale; when the nozzle's totals
moved anyway (the known defect of a hang-up in state D0, 019:13), a
``zero_sale`` error says so.

Link: a pump is online from its first reply; after ``offline_after``
requests to it in a row with no reply, offline. Requests to pumps not in
``addresses`` count as ``foreign``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from protocols.bcd import scaled
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, Sale
from protocols.passive import ScaledMonitor, Tap, Wire
from protocols.udc.framer import (
    BusDecoder,
    Reply,
    ReplyDecoder,
    Request,
    RequestDecoder,
)
from protocols.udc.messages import (
    ACCEPTED,
    ACK_HANGUP,
    ACTIVE_STATES,
    FUELLING_STATES,
    PRICE_NOZZLES,
    PUMP_CHANGING,
    READ_DISPLAY,
    READ_NOZZLE,
    READ_STATUS,
    READ_TOTALS,
    ST_IDLE,
    ST_UNINITIALISED,
    Display,
    NozzleTotals,
    lifted_nozzle,
    masked,
    nozzle_of_selector,
    parse_display,
    parse_totals,
)

#: Platform state of each masked pump state (docs/protocols/udc.md).
NOZZLE_STATES: dict[int, NozzleState] = {
    ST_IDLE: NozzleState.IDLE,
    ST_UNINITIALISED: NozzleState.ABNORMAL,
    **{s: NozzleState.LIFTED for s in ACTIVE_STATES - FUELLING_STATES},
    **{s: NozzleState.FUELLING for s in FUELLING_STATES},
}


@dataclass
class _Cycle:
    #: Totals per nozzle when the cycle opened (raw counts).
    before: dict[int, NozzleTotals]
    nozzle: int = 0
    ended_at: datetime | None = None
    #: Idle display data read after the end, while no two were alike.
    reads: list[bytes] = field(default_factory=list)
    after: dict[int, NozzleTotals] = field(default_factory=dict)
    acked: bool = False  # the pump accepted the hang-up acknowledgement
    emitted: bool = False


@dataclass
class _Pump:
    address: int
    cycle: _Cycle | None = None
    readings: dict[int, NozzleTotals] = field(default_factory=dict)
    nozzle: int = 0  # the nozzle of the last cycle, for its state reports
    state: NozzleState = NozzleState.IDLE  # as last reported by the pump


class UdcMonitor(ScaledMonitor, Tap):
    """Passive interpreter of one UDC line (relay or listen)."""

    name: ClassVar[str] = "udc"
    _COUNTERS = (
        *("sales", "acks", "acks_refused", "controls", "stale_totals", "zero_sales"),
        *("ends_unread", "unconfirmed_sales"),
    )

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        price_nozzles: int = PRICE_NOZZLES,
        grades: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(addresses, **options)
        self._pumps = {a: _Pump(a) for a in addresses}
        self._grades = dict(grades or {})
        self._requests = RequestDecoder(price_nozzles)
        self._replies = ReplyDecoder(price_nozzles)
        self._bus = BusDecoder(price_nozzles)
        pos, pumps = Wire(self._requests, self._on_relayed), Wire(self._replies, self._on_reply)
        self._wire(pos, pumps, Wire[Request | Reply](self._bus, self._on_item))

    # ------------------------------------------------------------ internals

    def _on_item(self, item: Request | Reply) -> list[Event]:
        return self._on_request(item) if isinstance(item, Request) else self._on_reply(item)

    def _on_relayed(self, request: Request) -> list[Event]:
        """A request on the controller's side of a relay: the pumps' next reply answers it."""
        events: list[Event] = [*self._replies.expect(request)]
        return events + self._on_request(request)

    def _on_request(self, request: Request) -> list[Event]:
        self._counts["requests"] += 1
        if request.command in PUMP_CHANGING:
            self._counts["controls"] += 1
        return self._asking(request.address) if self._known(request.address) else []

    def _on_reply(self, reply: Reply) -> list[Event]:
        # A reply names no pump: its request's (counted foreign there).
        events = self._reply_from(reply.request.address, foreign=False)
        if events is None:
            return []
        pump = self._pumps[reply.request.address]
        command, data = reply.request.command, reply.data
        if command == READ_STATUS:
            events.extend(self._state(pump, data[0], polled=True))
        elif command == READ_DISPLAY:
            events.extend(self._display(pump, reply))
        elif command == READ_TOTALS:
            events.extend(self._totals_read(pump, reply))
        elif command == READ_NOZZLE:
            nozzle = lifted_nozzle(data)
            if nozzle:
                pump.nozzle = nozzle
                if pump.cycle is not None:
                    pump.cycle.nozzle = nozzle
                    events.extend(self._status(pump, pump.state, None))
        elif command == ACK_HANGUP:
            events.extend(self._ack(pump, data[0]))
        return events

    def _state(
        self, pump: _Pump, state: int, display: Display | None = None, polled: bool = False
    ) -> list[Event]:
        """A state the pump reported (``polled``: by F·A2, else in a display)."""
        events: list[Event] = []
        state = masked(state)
        cycle = pump.cycle
        if state in ACTIVE_STATES:
            if cycle is not None and cycle.ended_at is not None:
                events.extend(self._close(pump, cycle))  # the next fill: closed anyway
                cycle = None
            if cycle is None:
                pump.cycle = _Cycle(before=dict(pump.readings))
        elif state == ST_IDLE:
            if cycle is not None and cycle.ended_at is None:
                cycle.ended_at = self._clock()
            elif cycle is not None and cycle.acked and polled:
                events.extend(self._close(pump, cycle))  # the controller moved on
        elif state != ST_UNINITIALISED:
            return [ProtocolError("bad_message", f"state {state:02X}", pump.address)]
        pump.state = NOZZLE_STATES[state]
        events.extend(self._status(pump, pump.state, display))
        return events

    def _status(self, pump: _Pump, state: NozzleState, display: Display | None) -> list[Event]:
        """A NozzleStatus for the cycle's nozzle once it is known (idle: the
        last cycle's), when it changed."""
        nozzle = pump.cycle.nozzle if pump.cycle is not None else 0
        if state in (NozzleState.IDLE, NozzleState.ABNORMAL):
            nozzle = nozzle or pump.nozzle
        if not nozzle:
            return []
        volume = amount = price = None
        if display is not None and state == NozzleState.FUELLING:
            volume, amount, price = self._values(display)
        return self._report(NozzleStatus(pump.address, nozzle, state, volume, amount, price))

    def _display(self, pump: _Pump, reply: Reply) -> list[Event]:
        display = parse_display(reply.data)
        if display is None:
            return [ProtocolError("bad_message", "display digits are not BCD", pump.address)]
        events = self._state(pump, display.state, display)
        cycle = pump.cycle
        if (
            cycle is None
            or cycle.ended_at is None
            or cycle.emitted
            or masked(display.state) != ST_IDLE
        ):
            return events
        if reply.data in cycle.reads:  # read twice alike: the sale
            return events + self._emit(pump, cycle, reply.data)
        cycle.reads.append(reply.data)
        return events

    def _totals_read(self, pump: _Pump, reply: Reply) -> list[Event]:
        nozzle = nozzle_of_selector(reply.request.data[0])
        totals = parse_totals(reply.data)
        if totals is None or nozzle is None:
            detail = f"totals selector {reply.request.data[0]:02X} or digits not understood"
            return [ProtocolError("bad_message", detail, pump.address)]
        pump.readings[nozzle] = totals
        cycle = pump.cycle
        if cycle is not None and cycle.ended_at is not None:
            cycle.after[nozzle] = totals
        return [self._totals(pump.address, nozzle, totals.volume, totals.amount)]

    def _ack(self, pump: _Pump, answer: int) -> list[Event]:
        if answer != ACCEPTED:
            self._counts["acks_refused"] += 1
            return []
        self._counts["acks"] += 1
        cycle = pump.cycle
        if cycle is not None and cycle.ended_at is not None:
            cycle.acked = True  # closed at the next state poll (the re-read comes first)
        return []  # else nothing ended (the controller's start-up acknowledgement)

    def _close(self, pump: _Pump, cycle: _Cycle) -> list[Event]:
        """The cycle is over: a sale not yet confirmed by two alike reads is the
        last display read (``unconfirmed_sales``), if any."""
        pump.cycle = None
        if cycle.emitted:
            return []
        if not cycle.reads:
            return self._emit(pump, cycle, None)
        events: list[Event] = []
        self._counts["unconfirmed_sales"] += 1
        chosen = cycle.reads[-1]
        if len(set(cycle.reads)) > 1:
            chosen = next((r for r in cycle.reads if self._consistent(r)), chosen)
            shown = ", ".join(r.hex(" ") for r in cycle.reads)
            detail = f"the display reads disagree ({shown}); {chosen.hex(' ')} is taken"
            events.append(ProtocolError("display_disagrees", detail, pump.address))
        return events + self._emit(pump, cycle, chosen)

    def _consistent(self, raw: bytes) -> bool:
        """Amount = price × volume within one unit of the amount's last place:
        what a read corrupted past its complements rarely keeps."""
        display = parse_display(raw)
        if display is None:
            return False
        volume, amount, price = self._values(display)
        return abs(price * volume - amount) <= Decimal(1).scaleb(-self._dp.amount)

    def _emit(self, pump: _Pump, cycle: _Cycle, raw: bytes | None) -> list[Event]:
        """The cycle's sale from display data ``raw`` (None: none was read)."""
        cycle.emitted = True
        assert cycle.ended_at is not None
        nozzle = cycle.nozzle or self._moved_nozzle(cycle)
        pump.nozzle = nozzle or pump.nozzle
        after = cycle.after.get(nozzle)
        display = None if raw is None else parse_display(raw)
        if display is None or display.empty:
            if after is not None and cycle.before.get(nozzle) not in (None, after):
                self._counts["zero_sales"] += 1
                detail = f"nozzle {nozzle}: no sale on the display, but its totals moved"
                return [ProtocolError("zero_sale", detail, pump.address)]
            if display is None:
                self._counts["ends_unread"] += 1
            return []
        if after is not None and cycle.before.get(nozzle) == after:
            self._counts["stale_totals"] += 1
            after = None
        volume, amount, price = self._values(display)
        if after is None:
            order_no = ""
            key = f"{nozzle}:{cycle.ended_at:%Y%m%d%H%M%S}:{display.volume}:{display.amount}"
            totals: tuple[Decimal | None, Decimal | None] = (None, None)
        else:
            order_no = after.digits
            key = f"{nozzle}:{order_no}"
            totals = (
                scaled(after.volume, self._dp.volume),
                scaled(after.amount, self._dp.amount),
            )
        self._counts["sales"] += 1
        return [
            Sale(
                address=pump.address,
                nozzle=nozzle,
                order_no=order_no,
                ended_at=cycle.ended_at,
                grade=self._grades.get(str(nozzle), ""),
                price=price,
                volume=volume,
                amount=amount,
                totalizer_volume_end=totals[0],
                totalizer_amount_end=totals[1],
                key=key,
                raw=raw or b"",
            )
        ]

    @staticmethod
    def _moved_nozzle(cycle: _Cycle) -> int:
        """The one nozzle whose totals moved in ``cycle``, else 0 (unknown)."""
        moved = [n for n, t in cycle.after.items() if cycle.before.get(n) not in (None, t)]
        return moved[0] if len(moved) == 1 else 0

    def _values(self, display: Display) -> tuple[Decimal, Decimal, Decimal]:
        dp = self._dp
        return (
            scaled(display.volume, dp.volume),
            scaled(display.amount, dp.amount),
            scaled(display.price, dp.price),
        )
