"""正星 Censtar watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station controller is the master: it alone removes a sale from the
pump's buffer (17), sets the control mode and authorises (docs/protocols/
censtar.md: why poll is refused). The collector only watches: bytes in →
events out, never a byte out (SPEC D19, D20). Layouts:
:mod:`protocols.censtar.messages`; framing: :mod:`protocols.censtar.framer`.

Directions. :meth:`CenstarMonitor.receive_request` reads the controller's
side of a relay, :meth:`~CenstarMonitor.receive_response` the pumps';
:meth:`~CenstarMonitor.receive_bus` one line with both (the framer tells
them apart by the request seen last, the command and the XOR). A reply
names its command and address, so it is read on its own.

What each reply gives: 0D → :class:`NozzleStatus` (low nibble; the FCC's
states, 005:30-38), 18 → the running fill's volume and amount, 0C →
:class:`Totals`, 15 → a :class:`Sale` (the controller reads the oldest
uncleared sale, 005:1255-1303, then removes it with 17, 005:1322-1362).
Every state and sale is reported under the nozzle ``nozzle`` (an option,
1: the FCC treats a fuelling point as one nozzle, 005:1855-1862; the
record's nozzle field, if any, is not known).

Sale identity: the record's sequence number [23..24] (the one 17 echoes)
is ``order_no`` (four hex digits as on the wire) and ``key = f"{seq}:
{volume}:{amount}"`` — a record read again (the ack lost, or the
controller re-reads after its start) is stored once. The XOR lets two
flips of one bit pass; a record that differs from one of the pump's
recent records in nothing but its sequence number (and the state byte [3],
which is the pump's, not the record's) is that record read again with its
number spoilt (a real sale also differs in its own total,
which the record carries, 005:1088-1090), and is not a sale (``rereads``).

Totals. A 0C read after the fill (the FCC reads it before the record,
005:1096-1125) is the sale's end totals only if it moved from the pump's
previous totals by exactly the record's volume and amount: the buffer can
hold several sales (a pump fuels in open mode while its controller is
away, 005:169), and then no single read belongs to the oldest one. The
previous totals are a 0C read while the pump was idle with no uncleared
sale and no fill since, or the last matched totals; each sale without
totals moves them on by its own volume and amount, so the newest of
several queued sales gets them. Otherwise the sale carries none
(``totals_unmatched``); the Totals events still report every read.

The controller's 17 naming a sale is a :class:`Confirmation` of its
sequence number (``Sale.booking``), for the reconciliation with the POS
(collector/station/reconcile.py); :attr:`CenstarMonitor.master_frames` counts the
controller's frames.

Link: a pump is online from its first reply; after ``offline_after``
requests in a row with no reply, offline. Requests and replies of pumps not
in ``addresses`` count as ``foreign``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from protocols.bcd import scaled
from protocols.censtar.framer import FrameDecoder
from protocols.censtar.messages import (
    CMD_CLEAR,
    CMD_RUNNING,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    PUMP_CHANGING,
    ST_AUTHORISED,
    ST_CALLING,
    ST_CLOSED,
    ST_FUELLING,
    ST_IDLE,
    ST_INOPERATIVE,
    ST_STARTED,
    ST_SUSPENDED_FUELLING,
    ST_SUSPENDED_STARTED,
    UNCLEARED,
    Frame,
    Totals,
    parse_record,
    parse_running,
    parse_totals,
)
from protocols.events import Confirmation, Event, NozzleState, NozzleStatus, ProtocolError, Sale
from protocols.passive import ScaledMonitor, Tap, Wire

#: Records remembered per pump to know one read again: the buffer holds a
#: few sales at most while the controller is present (it lets no nozzle
#: fuel while one is uncleared, 005:631).
RECENT_RECORDS = 8

NOZZLE_STATES: dict[int, NozzleState] = {
    ST_INOPERATIVE: NozzleState.ABNORMAL,
    ST_CLOSED: NozzleState.IDLE,
    ST_IDLE: NozzleState.IDLE,
    ST_CALLING: NozzleState.LIFTED,
    ST_AUTHORISED: NozzleState.LIFTED,
    ST_STARTED: NozzleState.LIFTED,
    ST_SUSPENDED_STARTED: NozzleState.LIFTED,
    ST_FUELLING: NozzleState.FUELLING,
    ST_SUSPENDED_FUELLING: NozzleState.LIFTED,
}
#: Where a record's sequence number [23..24] is in its data (frame bytes from [3]).
_SEQ = slice(23 - 3, 25 - 3)
#: A 17's data: the sequence number of the sale it removes (005:1322-1327).
CLEAR_DATA_LEN = 2


@dataclass
class _Pump:
    address: int
    #: Totals including every sale reported so far (see the module doc).
    base: Totals | None = None
    latest: Totals | None = None
    latest_at: int = 0  # the reply count when ``latest`` was read
    active_at: int = 0  # the reply count at the last state of a fill
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT_RECORDS))


class CenstarMonitor(ScaledMonitor, Tap):
    """Passive interpreter of one Censtar line (relay or listen)."""

    name: ClassVar[str] = "censtar"
    _COUNTERS = ("sales", "acks", "controls", "rereads", "totals_unmatched", "unexpected")

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        nozzle: int = 1,
        grades: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(addresses, **options)
        self._pumps = {a: _Pump(a) for a in addresses}
        self._nozzle = nozzle
        self._grades = dict(grades or {})
        self._requests = FrameDecoder("request")
        self._replies = FrameDecoder("reply")
        self._bus = FrameDecoder("bus")
        take = self._on_frame  # a frame says its side: every wire reads it alike
        self._wire(Wire(self._requests, take), Wire(self._replies, take), Wire(self._bus, take))
        self._replies_seen = 0

    @property
    def master_frames(self) -> int:
        """Frames the controller sent (is the POS still on the line?);
        collector/station/books.py watches it."""
        return self._counts["requests"]

    # ------------------------------------------------------------ internals

    def _on_frame(self, frame: Frame) -> list[Event]:
        return self._on_request(frame) if frame.request else self._on_reply(frame)

    def _on_request(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        if frame.command in PUMP_CHANGING:
            self._counts["controls"] += 1
        if frame.command == CMD_CLEAR:
            self._counts["acks"] += 1
        if not self._known(frame.address):
            return []
        events: list[Event] = []
        if frame.command == CMD_CLEAR and len(frame.data) == CLEAR_DATA_LEN:
            # The controller books the sale it names (collector/station/reconcile.py).
            events.append(Confirmation(frame.address, int.from_bytes(frame.data, "big")))
        return events + self._asking(frame.address)

    def _on_reply(self, frame: Frame) -> list[Event]:
        events = self._reply_from(frame.address)
        if events is None:
            return []
        pump = self._pumps[frame.address]
        self._replies_seen += 1
        if frame.command == CMD_STATUS:
            events.extend(self._state(pump, frame.at(3)))
        elif frame.command == CMD_RUNNING:
            running = parse_running(frame)
            if running is None:
                return [*events, ProtocolError("bad_message", "running digits", pump.address)]
            live = (
                scaled(running[0], self._dp.volume),
                scaled(running[1], self._dp.amount),
            )
            events.extend(self._status(pump, NozzleState.FUELLING, *live))
        elif frame.command == CMD_TOTALS:
            latest = parse_totals(frame)
            pump.latest, pump.latest_at = latest, self._replies_seen
            events.append(self._totals(pump.address, self._nozzle, latest.volume, latest.amount))
        elif frame.command == CMD_SALE:
            events.extend(self._record(pump, frame))
        return events

    def _state(self, pump: _Pump, state: int) -> list[Event]:
        low = state & 0x0F
        nozzle_state = NOZZLE_STATES.get(low)
        if nozzle_state is None:
            return [ProtocolError("bad_message", f"state {state:02X}", pump.address)]
        if low not in (ST_IDLE, ST_CLOSED, ST_INOPERATIVE):
            pump.active_at = self._replies_seen
        elif not state & UNCLEARED and pump.latest is not None and pump.latest_at > pump.active_at:
            pump.base = pump.latest  # idle, nothing uncleared, no fill since the read
        return self._status(pump, nozzle_state, None, None)

    def _status(
        self, pump: _Pump, state: NozzleState, volume: Decimal | None, amount: Decimal | None
    ) -> list[Event]:
        return self._report(NozzleStatus(pump.address, self._nozzle, state, volume, amount))

    def _record(self, pump: _Pump, frame: Frame) -> list[Event]:
        record = parse_record(frame)
        if record is None:
            return [ProtocolError("bad_message", "record price is not BCD", pump.address)]
        body = frame.data[1 : _SEQ.start] + frame.data[_SEQ.stop :]  # not the state, not seq
        if body in pump.recent:
            self._counts["rereads"] += 1
            return []
        pump.recent.append(body)
        end = self._end_totals(pump, record.volume, record.amount)
        dp = self._dp
        seq = record.seq.hex().upper()
        self._counts["sales"] += 1
        return [
            Sale(
                address=pump.address,
                nozzle=self._nozzle,
                order_no=seq,
                ended_at=self._clock(),
                grade=self._grades.get(str(pump.address), ""),
                price=scaled(record.price, dp.price),
                volume=scaled(record.volume, dp.volume),
                amount=scaled(record.amount, dp.amount),
                totalizer_volume_end=None if end is None else scaled(end.volume, dp.volume),
                totalizer_amount_end=None if end is None else scaled(end.amount, dp.amount),
                key=f"{seq}:{record.volume}:{record.amount}",
                raw=bytes(frame.data),
                booking=int.from_bytes(record.seq, "big"),
            )
        ]

    def _end_totals(self, pump: _Pump, volume: int, amount: int) -> Totals | None:
        """The totals after this sale when a read proves it (module doc), and
        the pump's previous totals moved past it."""
        base, latest = pump.base, pump.latest
        if base is None:
            return None
        if latest is not None and (latest.volume - base.volume, latest.amount - base.amount) == (
            volume,
            amount,
        ):
            pump.base = latest
            return latest
        self._counts["totals_unmatched"] += 1
        pump.base = Totals(base.amount + amount, base.volume + volume)
        return None
