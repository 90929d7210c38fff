"""Wayne DART line watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station's POS (or forecourt controller) is the master; the collector
only watches. Bytes in → events out, nothing ever out: a monitor has no
request to build, so it cannot write to a pump at all (SPEC D19, D20).

Directions:

- :meth:`DartMonitor.receive_request` — bytes the POS sent (relay: read on
  the POS side): POLL, DATA (commands), ACK, NAK.
- :meth:`DartMonitor.receive_response` — bytes the pumps sent (relay: read
  on the dispenser side): DATA (replies), ACK, NAK, EOT.
- :meth:`DartMonitor.receive_bus` — one RS-485 pair carrying both (``listen``).

Telling the directions apart on one pair (docs/protocols/dart.md, with the
sources). A frame alone does not say who sent it: ADR is the pump's address
both ways and DATA, ACK and NAK have the same CTRL both ways (protocols.md
§3), and CD1 / DC1 (TRANS 01, one byte) and CD3 / DC3 (TRANS 03, four
bytes) are the same bytes either way — ``01 01 05`` is "reset" from the
master and "filling completed" from a pump. Only POLL (the master's) and
EOT (a pump's) say it by their CTRL. The conversation says the rest: the
line is half duplex with one master, and a pump speaks only when the
master's last frame asked *it*, so on the bus

- POLL → master; EOT → pump;
- ACK / NAK right after the master's DATA to that ADR → the pump's; right
  after the pump's DATA → the master's; anywhere else the side is unknown
  (the frame is counted in ``unknown_side`` and dropped);
- DATA carrying CD101 (TRANS 65, one byte), a CD5 price list (TRANS 05,
  3 bytes a nozzle) or CD4 → master; carrying DC101 (TRANS 65, 16 bytes) →
  pump, wherever it stands (a frame with both is dropped as ``unknown_side``);
- other DATA right after the master's POLL or NAK to that ADR is the
  pump's answer only once the master acknowledges it (ACK or NAK with its
  seq, or a garbled frame where that ACK would be); any other frame next
  means it was the master's own DATA after a POLL nobody answered (counted
  in ``unconfirmed_answers``); all other DATA → master.

A frame whose side was misjudged is read as the other side's layout. The
sale rule below needs DC101 (which a master never sends) and a DC2 in a
frame whose own DC1 says "completed", so a master's command misread as a
pump's cannot make a sale unless it carries eight allowed nozzles, the
"completed" status code and a totals read of that nozzle follows before the
pump's next status: docs/protocols/dart.md weighs that case. Relay has no
such question (each side has its own wire).

Pump frames are read with the poll driver's interpreter
(:meth:`~protocols.dart.pumpstate.PumpState.read`): the same NozzleStatus,
DeviceAlarm (DC5; cleared only by an answer to a status request, CD1 DCC 00,
as in the driver), Identity (DC9), Totals (DC101) events. Sales: a DART pump
has no transaction record, so a sale is a completed fill read by the
master: a pump DATA frame whose DC1 says filling completed / max reached
with its DC2 (final volume and amount) on the nozzle DC3 names at a known
price, and DC101 of that nozzle in the same frame (as our poller asks it)
or in that pump's next DATA frame (a POS that reads the totals apart),
while the pump still shows that completed fill. The :class:`Sale` is the
poller's — same ``key`` (``"<nozzle>:<volume totalizer>"``), fields and
``ended_at`` rule — so the store deduplicates a fill the master reads again.

POS commands we never send (SPEC D20: authorise, preset, price, stop …)
are only counted, ``pos_cmd_<name>`` (names from the public sources cited
in :data:`CD1_COMMANDS`). A price change (CD5) is counted
(``pos_cmd_price_update``): events have no type for a price the POS asked
for, and the price a pump really applies reaches the NozzleStatus and the
sale through its DC3.

Link state: a pump is online from its first frame; after ``offline_after``
POLL / DATA / NAK to it in a row with no frame from it, it is offline
(:class:`~protocols.events.PumpLink`), like the poller's missed deadlines.
Only pumps in ``addresses`` (numbers 1–32, ADR 0x4F + n) are reported;
frames of other pumps are counted as ``foreign`` (by pump number in
``foreign_addresses``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar, Literal

from protocols.dart.framer import Frame, FrameDecoder, Kind
from protocols.dart.messages import DCC_RETURN_STATUS, TRANS_CD1, TRANS_CD101
from protocols.dart.pumpstate import ADR_OFFSET, Fill, PumpState, Scale, check_pumps
from protocols.events import Event, ProtocolError
from protocols.passive import OFFLINE_AFTER, PassiveMonitor, Wire

#: Master → pump TRANS codes by name, for counting what a POS sends (never
#: sent by us). Wayne, Protocol Specification Dart Pump Interface rev. 2.11,
#: pp. 10–15, as listed by moduslightstech-lgtm/intelipump
#: src/intelipump_fdc/protocol/dart/application/constants.py (TransactionWireId).
POS_TRANSACTIONS: dict[int, str] = {
    0x02: "allowed_nozzles",  # CD2
    0x03: "preset_volume",  # CD3
    0x04: "preset_amount",  # CD4
    0x05: "price_update",  # CD5
    0x0E: "suspend",  # CD14
    0x0F: "resume",  # CD15
    TRANS_CD101: "request_totals",  # CD101 (protocols.md §3)
}

#: CD1 DCC codes by name (same sources, PumpControlCommand; 00 and 04 also
#: protocols.md §3).
CD1_COMMANDS: dict[int, str] = {
    0x00: "return_status",
    0x02: "return_pump_parameters",
    0x03: "return_pump_identity",
    0x04: "return_filling_info",
    0x05: "reset",
    0x06: "authorise",
    0x08: "stop",
    0x0A: "switch_off",
    0x0D: "suspend_fuelling_point",
    0x0E: "resume_fuelling_point",
    0x0F: "return_prices",
}

#: LNG of CD101 (COUN) and of DC101 (COUN + 3 × 5 BCD bytes, protocols.md §3).
CD101_LNG, DC101_LNG = 1, 16
#: A CD5 price is 3 BCD bytes per nozzle (sources of POS_TRANSACTIONS).
CD5_PRICE_BYTES = 3
TRANS_CD4, TRANS_CD5 = 0x04, 0x05

Side = Literal["master", "pump"]


def certain_side(frame: Frame) -> Side | Literal["both"] | None:
    """The side a DATA frame's content proves (module doc), ``"both"`` when it
    contradicts itself, None when its transactions could be either's."""
    master = pump = False
    for trans, data in frame.transactions:
        if trans == TRANS_CD101:
            master |= len(data) == CD101_LNG
            pump |= len(data) == DC101_LNG
        elif trans == TRANS_CD5:
            master |= len(data) > 1 and len(data) % CD5_PRICE_BYTES == 0
        elif trans == TRANS_CD4:
            master = True
    if master and pump:
        return "both"
    return "master" if master else "pump" if pump else None


def command_names(frame: Frame) -> list[str]:
    """What a master's DATA frame asks, one name per transaction."""
    names = []
    for trans, data in frame.transactions:
        if trans == TRANS_CD1 and len(data) == 1:
            names.append(CD1_COMMANDS.get(data[0], "cd1_unknown"))
        else:
            names.append(POS_TRANSACTIONS.get(trans, "unknown"))
    return names


class DartMonitor(PassiveMonitor):
    """Passive interpreter of one DART line (relay or listen); see the module doc."""

    name: ClassVar[str] = "dart"
    _COUNTERS = ("unknown_trans", "unknown_side", "unconfirmed_answers")

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = OFFLINE_AFTER,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        grades: Mapping[int, str] | Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        check_pumps(addresses)  # the decimals: Scale checks them
        super().__init__(addresses, offline_after=offline_after, clock=clock)
        self._pumps = {ADR_OFFSET + n: PumpState(n) for n in addresses}
        self._scale = Scale(volume_decimals, amount_decimals, price_decimals)
        # TOML keys are text: nozzle numbers as the driver reads them.
        self._grades = {int(nozzle): grade for nozzle, grade in (grades or {}).items()}
        self._requests = FrameDecoder()
        self._responses = FrameDecoder()
        self._bus = FrameDecoder()
        self._wire(
            Wire(self._requests, self._on_master), Wire(self._responses, self._on_pump), self._bus
        )
        #: ADR → its master's last DATA asked for the status (CD1 DCC 00).
        self._asked_status: dict[int, bool] = {}
        #: ADR → a completed fill read in that pump's last DATA frame, not yet
        #: closed by its DC101 (the next frame may bring it).
        self._fills: dict[int, Fill] = {}
        #: Bus only: the side, kind and ADR of the last frame whose side is
        #: known (None after an error), and a DATA awaiting the master's ACK.
        self._last: tuple[Side, Kind, int] | None = None
        self._pending: Frame | None = None

    def receive_bus(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._bus.receive_data(data):
            events += self._on_bus(item)
        return events

    # ------------------------------------------------------------ the bus

    def _on_bus(self, item: Frame | ProtocolError) -> list[Event]:
        pending, self._pending = self._pending, None
        if isinstance(item, ProtocolError):
            # The frame lost may be the master's ACK of the pending answer.
            events = self._on_pump(pending) if pending is not None else []
            self._last = None
            return [*events, item]
        events = []
        if pending is not None:
            kind = item.kind
            if kind in ("ack", "nak") and item.adr == pending.adr and item.seq == pending.seq:
                events += self._on_pump(pending)
                self._last = ("pump", "data", pending.adr)
            else:
                self._counts["unconfirmed_answers"] += 1
                events += self._on_master(pending)
                self._last = ("master", "data", pending.adr)
        side = self._side(item)
        if side == "pending":
            self._pending = item
        elif side is None:
            self._counts["unknown_side"] += 1
            self._last = None
        else:
            events += self._on_master(item) if side == "master" else self._on_pump(item)
            self._last = (side, item.kind, item.adr)
        return events

    def _side(self, frame: Frame) -> Side | Literal["pending"] | None:
        """Who sent ``frame`` on the bus, by the rules of the module doc."""
        kind, last = frame.kind, self._last
        if kind == "poll":
            return "master"
        if kind == "eot":
            return "pump"
        same = last is not None and last[2] == frame.adr
        if kind == "data":
            proven = certain_side(frame)
            if proven is not None:
                return None if proven == "both" else proven
            if same and last is not None and last[0] == "master" and last[1] in ("poll", "nak"):
                return "pending"
            return "master"
        if same and last is not None and last[1] == "data":
            return "pump" if last[0] == "master" else "master"
        return None

    # ------------------------------------------------------------ each side

    def _pump(self, adr: int) -> PumpState | None:
        """The pump at ``adr`` if it is ours (others are counted by number)."""
        return self._pumps[adr] if self._known(adr - ADR_OFFSET) else None

    def _on_master(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        pump = self._pump(frame.adr)
        if pump is None:
            return []
        if frame.kind == "data":
            names = command_names(frame)
            for name in names:
                self._command(name)
            self._asked_status[frame.adr] = CD1_COMMANDS[DCC_RETURN_STATUS] in names
        if frame.kind == "ack":
            return []  # asks for no answer
        return self._asking(pump.number)

    def _on_pump(self, frame: Frame) -> list[Event]:
        events = self._reply_from(frame.adr - ADR_OFFSET)
        if events is None:
            return []
        if frame.kind == "data":
            events += self._on_data(self._pumps[frame.adr], frame)
        return events

    def _on_data(self, pump: PumpState, frame: Frame) -> list[Event]:
        held = self._fills.pop(pump.adr, None)
        events, reading = pump.read(
            frame.transactions,
            status_answer=self._asked_status.get(pump.adr, False),
            scale=self._scale,
            clock=self._clock,
        )
        self._counts["unknown_trans"] += reading.unknown
        # A completed fill: a DC2 in a frame whose own DC1 says completed ...
        fresh = pump.fill(reading) if reading.dc1 is not None else None
        fill = fresh
        if fill is None and held is not None and pump.completed and pump.nozzle == held.nozzle:
            fill = held  # ... read in the pump's previous frame, still shown
        closed = False
        for dc101, wire in reading.totals:
            closed |= fill is not None and dc101.counter == fill.nozzle
            events += pump.sale_or_totals(dc101, wire, fill, self._scale, self._grades, self._clock)
        if fresh is not None and not closed:
            self._fills[pump.adr] = fresh
        return events
