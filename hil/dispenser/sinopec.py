"""Simulated Sinopec pumps (protocols.md §2) over :class:`PumpModel` state.

:class:`SinopecResponder` is one bus: several pumps, each answering only
frames addressed to it, none while powered off (``responder.answering``).
What each request gets (ctrl: the request's frame number, caller bit
flipped, protocols.md §2):

- 30 poll → the oldest pending sale as a 32 record (POS_TTC = the sale's
  transaction number, V_TOT = the totalizer after it), else a 31 real-time
  report from the nozzle states (idle → ST 0, lifted / fuelling → ST 2 with
  the live volume and amount). A record stays pending until confirmed.
- 3C confirmation → the sale with that POS_TTC is taken (``PumpModel.take``),
  answered with a 31 (also when no such sale is pending).
- 38 totals of an existing nozzle → V_TOT and A_TOT of that nozzle.
- 3A read info: NZN 0 → the pump-wide parts (main board, MCU, encoder,
  safety device); NZN n → nozzle n's unique identity.
- 3B error info → every active alarm of the pump, as pump-wide entries.
- anything else (a 32 from the master, a download, a malformed frame, a 38
  / 3A for a nozzle it does not have) → silence, like a pump that does not
  understand.

The 38 / 3A / 3B / 3C layouts are this project's documented ones
(protocols/sinopec/messages.py, protocols/sinopec/extensions.py). Only the
encoders and decoders are shared with the collector; what a record
*contains* comes from the model, so the simulator stays the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from hil.dispenser.model import NozzleModel, PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.events import ProtocolError
from protocols.sinopec.extensions import (
    CMD_ERROR_INFO,
    CMD_READ_INFO,
    CMD_TOTALS,
    PUMP_WIDE,
    InfoReading,
    TotalsReading,
    build_errors,
    build_info,
    build_totals,
    parse_query,
)
from protocols.sinopec.framer import Frame, FrameDecoder, encode_frame
from protocols.sinopec.messages import (
    CMD_CONFIRM,
    CMD_POLL,
    ST_IDLE,
    ST_NOZZLE,
    RealtimeEntry,
    TransactionRecord,
    build_realtime,
    build_record,
    parse_confirm,
)

#: ctrl bit 6 marks the calling side; a responder sets the opposite of the
#: request's (protocols.md §2, "ctrl").
CALLER_BIT = 0x40

#: Nozzles per pump. A 31 entry of a fuelling nozzle is 11 bytes: 16 of them
#: (178 bytes with NUM) stay inside the framer's MAX_DATA_LEN (256).
MAX_NOZZLES = 16

#: Pump addresses: the POS side uses 0xE0–0xF9 (protocols.md §2, "Addresses").
MAX_ADDRESS = 0xDF

#: Pump-wide parts a 3A with NZN 0 reports (the nozzle's own is per nozzle).
PUMP_PARTS = ("mainboard_id", "mcu_id", "encoder_id", "safety_id")


def record_of(sale: SimSale) -> TransactionRecord:
    """The 32 record a pump keeps for ``sale``; TIME is its local wall clock."""
    return TransactionRecord(
        pos_ttc=sale.txn_no,
        time=sale.ended_at.replace(tzinfo=None),
        nzn=sale.nozzle,
        g_code=sale.grade,
        vol=sale.volume,
        prc=sale.price,
        amn=sale.amount,
        v_tot=sale.totalizer_volume_end,
    )


def entry_of(nozzle: NozzleModel, now: float) -> RealtimeEntry:
    if nozzle.state == "idle":
        return RealtimeEntry(ST_IDLE, nozzle.nzn)
    vol, amn = nozzle.live_volume(now), nozzle.live_amount(now)
    return RealtimeEntry(ST_NOZZLE, nozzle.nzn, amn=amn, vol=vol, prc=nozzle.price)


class SinopecResponder:
    """Every simulated Sinopec pump on one bus (see the module doc)."""

    protocol: ClassVar[str] = "sinopec"
    #: The 32 record carries V_TOT only: no amount totalizer in the truth.
    AMOUNT_TOTALIZER: ClassVar[bool] = False

    def __init__(self, pumps: Sequence[PumpModel]) -> None:
        self.pumps: dict[int, PumpModel] = {}
        for pump in pumps:
            if not 0 <= pump.address <= MAX_ADDRESS or pump.address in self.pumps:
                raise ValueError(f"pump address {pump.address}: not 0..223 or used twice")
            if not 1 <= len(pump.nozzles) <= MAX_NOZZLES:
                raise ValueError(f"a Sinopec pump has 1..{MAX_NOZZLES} nozzles")
            self.pumps[pump.address] = pump
        self.decoder = FrameDecoder()
        self.ignored = 0  # frames for one of our pumps that it did not answer

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for item in self.decoder.receive_data(data):
            if isinstance(item, Frame):
                pump = self.pumps.get(item.dst)
                if pump is None or not answering(pump, now):
                    continue
                reply = self.answer(pump, item, now)
                if reply is None:
                    self.ignored += 1
                    continue
                ctrl = item.frame_no | ((item.ctrl & CALLER_BIT) ^ CALLER_BIT)
                out += encode_frame(Frame(dst=item.src, src=pump.address, ctrl=ctrl, data=reply))
        return bytes(out)

    def answer(self, pump: PumpModel, frame: Frame, now: float) -> bytes | None:
        """The data ``pump`` answers ``frame`` with; None: it stays silent."""
        command, data = frame.command, frame.data
        if command == CMD_POLL and len(data) == 1:
            if pump.pending:
                return build_record(record_of(pump.pending[0]))  # the oldest first
            return self.realtime(pump, now)
        if command == CMD_CONFIRM:
            pos_ttc = parse_confirm(data)
            if isinstance(pos_ttc, ProtocolError):
                return None
            pump.take(pos_ttc)
            return self.realtime(pump, now)
        query = parse_query(data)
        if isinstance(query, ProtocolError):
            return None
        command, nzn = query
        if command == CMD_ERROR_INFO:
            return build_errors((PUMP_WIDE, code) for code in sorted(pump.alarms))
        if command == CMD_READ_INFO and nzn == PUMP_WIDE:
            parts = {k: pump.components[k] for k in PUMP_PARTS if k in pump.components}
            return build_info(InfoReading(PUMP_WIDE, parts))
        if not 1 <= nzn <= len(pump.nozzles):
            return None
        nozzle = pump.nozzle(nzn)
        if command == CMD_TOTALS:
            reading = TotalsReading(nzn, nozzle.totalizer_volume, nozzle.totalizer_amount)
            return build_totals(reading)
        return build_info(InfoReading(nzn, {"nozzle_uid": nozzle.uid}))

    @staticmethod
    def realtime(pump: PumpModel, now: float) -> bytes:
        return build_realtime([entry_of(n, now) for n in pump.nozzles])
