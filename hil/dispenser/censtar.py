"""Simulated 正星 Censtar pumps (protocols/censtar/messages.py) over :class:`PumpModel` state.

:class:`CenstarResponder` is one loop: several pumps (fuelling points of
one nozzle each, as the source treats them), each answering only frames
with its address, none while powered off. Every reply repeats ``FC CMD
ADDR`` and ends with the XOR. State byte: 3 idle, 4 a nozzle lifted, 5 once
the controller authorised it (06), 8 fuelling; bit 0x10 while a sale is in
the buffer, bit 0x80 while the nozzle is out.

- 0D state; 18 the running fill (zeros when none); 0C the amount and
  volume totals; 12 the price.
- 15: the oldest sale in the buffer, or a 16 reply when there is none. The
  sale stays in the buffer — bit 0x10 set — until a 17 names its sequence
  number (the sale's transaction number, low 16 bits): then it is taken
  (:meth:`PumpModel.take`). A 17 for a number not in the buffer removes
  nothing; the reply's bit 0x10 says whether any sale is left.
- 08, 06, 05: the state (06 authorises a lifted nozzle: fuel flows only
  then, :attr:`PumpModel.authorisation_required`); 03, 01, 02: the state
  and ``BB`` (accepted).
- No fill starts while a sale is in the buffer
  (:attr:`PumpModel.one_fill_at_a_time`): the controller never authorises
  one while a sale is uncleared (lischn005.c:630-645); sales queue up only
  in the unit tests (a controller away).
  13 (history) and anything else: silence.

The record's bytes the source does not read are zero, except [25..28]: the
volume total after the sale, 4-byte binary — the source says a record
carries its own total (lischn005.c:1088-1090) without saying where; the
collector does not read it, but records of two sales differ in it as real
ones do.

The sale the collector can report: ``order_no`` is the sequence number as
four hex digits; the grade is configured per fuelling point; ``ended_at``
is when the record was read, not the pump's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.bcd import bcd_encode
from protocols.censtar.framer import FrameDecoder
from protocols.censtar.messages import (
    CMD_AUTHORISE,
    CMD_CLEAR,
    CMD_MODE,
    CMD_NO_SALE,
    CMD_PRESET_AMOUNT,
    CMD_PRESET_VOLUME,
    CMD_PRICE,
    CMD_PRICE_READ,
    CMD_RUNNING,
    CMD_SALE,
    CMD_STATUS,
    CMD_STOP,
    CMD_TOTALS,
    NOZZLE_OUT,
    ST_AUTHORISED,
    ST_CALLING,
    ST_FUELLING,
    ST_IDLE,
    UNCLEARED,
    Frame,
    Record,
    Totals,
    encode,
    record_data,
    running_data,
    totals_data,
)

#: Fuelling point addresses (``FC`` is never one: it starts a frame).
MAX_ADDRESS = 99

#: "Accepted" in the replies to 03 and the presets (lischn005.c:839, 977).
ACCEPTED = 0xBB


def seq_of(sale: SimSale) -> bytes:
    """The record's sequence number [23..24]: the transaction number's low 16 bits."""
    return (sale.txn_no & 0xFFFF).to_bytes(2, "big")


def order_no_of(sale: SimSale) -> str:
    return seq_of(sale).hex().upper()


class CenstarResponder:
    """Every simulated Censtar pump on one loop (see the module doc)."""

    protocol: ClassVar[str] = "censtar"
    #: 0C carries the amount total too.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def __init__(self, pumps: Sequence[PumpModel]) -> None:
        self.pumps: dict[int, PumpModel] = {}
        for pump in pumps:
            if not 1 <= pump.address <= MAX_ADDRESS or pump.address in self.pumps:
                raise ValueError(f"pump address {pump.address}: not 1..99 or used twice")
            if len(pump.nozzles) != 1:
                raise ValueError("a Censtar fuelling point has one nozzle")
            pump.one_fill_at_a_time = pump.authorisation_required = True  # module doc
            self.pumps[pump.address] = pump
        self.decoder = FrameDecoder("request")
        self.ignored = 0

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        return {
            **sale.truth(port_number, amount_totalizer=True),
            "order_no": order_no_of(sale),
        }

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for item in self.decoder.receive_data(data):
            if not isinstance(item, Frame):
                continue
            pump = self.pumps.get(item.address)
            if pump is None or not answering(pump, now):
                continue
            reply = self.answer(pump, item, now)
            if reply is None:
                self.ignored += 1
                continue
            out += encode(reply[0], pump.address, reply[1])
        return bytes(out)

    def state(self, pump: PumpModel, now: float) -> int:
        nozzle = pump.nozzle(1)
        if nozzle.state == "idle":
            state = ST_IDLE
        elif nozzle.state == "lifted":
            state = ST_AUTHORISED if nozzle.nzn in pump.authorised else ST_CALLING
        else:
            state = ST_FUELLING
        return state | (UNCLEARED if pump.pending else 0) | (NOZZLE_OUT if nozzle.busy else 0)

    def answer(self, pump: PumpModel, frame: Frame, now: float) -> tuple[int, bytes] | None:
        """(reply command, data) for ``frame``; None: silence."""
        command, nozzle = frame.command, pump.nozzle(1)
        if command == CMD_AUTHORISE:
            pump.authorise(nozzle)
        if command == CMD_CLEAR:
            match = next((s for s in pump.pending if seq_of(s) == frame.data), None)
            if match is not None:
                pump.take(match.txn_no)
        state = self.state(pump, now)
        if command in (CMD_STATUS, CMD_CLEAR, CMD_MODE, CMD_AUTHORISE, CMD_STOP):
            return command, bytes((state,))
        if command in (CMD_PRICE, CMD_PRESET_VOLUME, CMD_PRESET_AMOUNT):
            return command, bytes((state, ACCEPTED))
        if command == CMD_RUNNING:
            return command, running_data(nozzle.live_volume(now), nozzle.live_amount(now), state)
        if command == CMD_TOTALS:
            totals = Totals(nozzle.totalizer_amount, nozzle.totalizer_volume)
            return command, totals_data(totals, state)
        if command == CMD_PRICE_READ:
            return command, bytes((state,)) + bcd_encode(nozzle.price, 2) + bytes(11)
        if command == CMD_SALE:
            if not pump.pending:
                return CMD_NO_SALE, bytes((state,))
            sale = pump.pending[0]
            record = Record(sale.amount, sale.volume, sale.price, seq_of(sale))
            total = sale.totalizer_volume_end.to_bytes(4, "big") + bytes(6)
            return command, record_data(record, state, total)
        return None
