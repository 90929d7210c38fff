"""A simulated Furen Haosheng fuelling point (``fangym0335/first src/lischn009.c``).

:class:`FurenResponder` is one RS-422 line with one pump (the protocol has
no address: the simulator's pump must be address 1) of 1..8 nozzles,
silent while powered off (``responder.answering``). Framing unescaped, as
the source. What each request gets (layouts: protocols/furen/messages.py):

- ``30`` status → 5B with the live volume and amount of a fuelling nozzle,
  else 5A with ``[2]`` = 01 and ``[7]`` = 00 for a lifted one, else 5A with
  ``[2]`` = 00. A fuelling point shows one nozzle: the first fuelling, else
  the first lifted. The time it carries is counted in :attr:`writes` as
  ``clock`` (the pump may set its clock from it: the D20 witness counts it).
- ``56`` nozzle n → its newest sale, else a record of volume 0 with the
  nozzle's totals (a pump keeps one record per nozzle). The protocol has no
  acknowledgement, the read is all: a sale is taken (:meth:`PumpModel.take`)
  once sent twice (a poller's two reads) or :data:`READ_HOLD_S` after it
  was first sent (a controller that reads once). A new fill on a nozzle
  whose sale is not taken yet waits (:meth:`FurenResponder.may_start`): a
  real pump would let the customer go on and overwrite the record — its
  fills take far longer than a master's round, the simulator's do not —
  which the ground truth could not follow.
- ``58`` → the nozzle's totals now; ``50`` → its price.
- What a station's controller sends and the collector never may (SPEC
  D20): ``51`` price (applied to the nozzle if idle), ``59`` / ``60``
  presets, ``5D`` mode, ``61`` authorise, ``62`` stop → acknowledged (``[7]``
  = 01) and counted by name in :attr:`writes`. The simulated customers fill
  on their own, authorised or not.
- Anything else (a request for a nozzle the pump does not have, a layout
  that does not fit) → silence, counted in :attr:`refused`.

Replies echo the request's ``[6]`` and, on a pump of several nozzles, its
``ctrl`` ``F0 | n`` in ``[3]`` (the FCC checks the latter, ``:1137``, ``:1195``); a
single-nozzle pump puts 00 there.

Ground truth: Furen carries no transaction number; the collector's
order_no is the volume total after the sale as a raw integer
(``str(sale.totalizer_volume_end)``), see :meth:`FurenResponder.truth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from hil.dispenser.model import NozzleModel, PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.bcd import bcd_decode
from protocols.furen.framer import MAX_NOZZLE, Frame, FrameDecoder, encode_frame
from protocols.furen.messages import (
    CMD_MODE,
    CMD_PRICE,
    CMD_SALE,
    CMD_SET_PRICE,
    CMD_STATUS,
    CMD_TOTALS,
    PRICE_BCD,
    REQUEST_LEN,
    REQUEST_NAMES,
    SaleRecord,
    TotalsReply,
    build_price,
    build_record,
    build_status_reply,
    build_totals,
    parse_time,
)

#: The one pump address a Furen line has.
ADDRESS = 1

#: Seconds after its first send a sale counts as read though sent once: more
#: than a poller's round at the idle pace (two nozzles, one request a second).
READ_HOLD_S = 3.0

#: Accepted: [7] of an acknowledgement (lischn009.c:871).
ACCEPTED = 0x01


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale`` (volume total, raw)."""
    return str(sale.totalizer_volume_end)


class FurenResponder:
    """The simulated fuelling point on one line (see the module doc)."""

    protocol: ClassVar[str] = "furen"
    #: The sale record carries the amount total: the truth lines include it.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        """Furen carries no transaction number: the order number the collector
        reports is the volume total (the grade comes from the port's config)."""
        line = sale.truth(port_number, amount_totalizer=self.AMOUNT_TOTALIZER)
        line["order_no"] = order_no_of(sale)
        return line

    def __init__(self, pumps: Sequence[PumpModel]) -> None:
        if len(pumps) != 1 or pumps[0].address != ADDRESS:
            raise ValueError(f"a Furen line has one pump, at address {ADDRESS}")
        self.pump = pumps[0]
        if not 1 <= len(self.pump.nozzles) <= MAX_NOZZLE:
            raise ValueError(f"a Furen pump has 1..{MAX_NOZZLE} nozzles")
        self.decoder = FrameDecoder()
        self.last: dict[int, SimSale] = {}  # nozzle → its newest sale sent
        self.sent: dict[int, tuple[int, float]] = {}  # txn_no → (sends, first at)
        self.refused = 0
        #: Requests that change the pump, by name (the D20 witness: a poll
        #: driver with the status off must leave it empty).
        self.writes: dict[str, int] = {}

    def receive_data(self, data: bytes, now: float) -> bytes:
        for sale in list(self.pump.pending):
            sends, first = self.sent.get(sale.txn_no, (0, now))
            if sends and now - first >= READ_HOLD_S:
                self._take(sale)
        out = bytearray()
        for item in self.decoder.receive_data(data):
            if not isinstance(item, Frame) or not answering(self.pump, now):
                continue
            reply = self.answer(item, now)
            if reply is None:
                self.refused += 1
            else:
                out += encode_frame(reply)
        return bytes(out)

    @property
    def multi(self) -> bool:
        return len(self.pump.nozzles) > 1

    def answer(self, frame: Frame, now: float) -> Frame | None:
        """The frame the pump answers ``frame`` with; None: silence."""
        command, data = frame.command, frame.data
        if REQUEST_LEN.get(command) != len(data):
            return None
        if command == CMD_STATUS:
            return self._status(now) if self._clock_sent(data) else None
        nozzle = self._nozzle(frame)
        if command in (CMD_SALE, CMD_TOTALS, CMD_PRICE):
            if nozzle is None:
                return None
            ctrl = frame.ctrl if self.multi else 0x00
            return self._read(command, self.pump.nozzle(nozzle), ctrl, now)
        name = REQUEST_NAMES.get(command)
        if name is None:
            return None
        if command == CMD_SET_PRICE:
            price = bcd_decode(data[1 : 1 + PRICE_BCD])
            if nozzle is None or not price:
                return None
            target = self.pump.nozzle(nozzle)
            if not target.busy:
                target.price = price
        self.writes[name] = self.writes.get(name, 0) + 1
        ack = bytes([command, ACCEPTED]) + (b"\x00" if command == CMD_MODE else b"")
        return Frame(0x00, 0x00, frame.ctrl, ack)

    def _clock_sent(self, data: bytes) -> bool:
        """Count the time a 30 carries (module doc); False when it is no time."""
        if not isinstance(parse_time(data), datetime):
            return False
        self.writes["clock"] = self.writes.get("clock", 0) + 1
        return True

    def _nozzle(self, frame: Frame) -> int | None:
        n = frame.nozzle_byte
        return n if n is not None and n <= len(self.pump.nozzles) else None

    def _status(self, now: float) -> Frame:
        fuelling = [n for n in self.pump.nozzles if n.state == "fuelling"]
        lifted = [n for n in self.pump.nozzles if n.state == "lifted"]
        busy = fuelling or lifted
        if not busy:
            return build_status_reply(nozzle_byte=0x00, out=False, fuelling=False)
        shown = busy[0]
        byte = (0xF0 | (shown.nzn - 1)) if self.multi else 0x00
        return build_status_reply(
            nozzle_byte=byte,
            out=True,
            fuelling=shown.state == "fuelling",
            volume=shown.live_volume(now),
            amount=shown.live_amount(now),
        )

    def _read(self, command: int, nozzle: NozzleModel, ctrl: int, now: float) -> Frame:
        if command == CMD_TOTALS:
            totals = TotalsReply(nozzle.totalizer_volume, nozzle.totalizer_amount)
            return build_totals(totals, ctrl=ctrl)
        if command == CMD_PRICE:
            return build_price(nozzle.price, ctrl=ctrl)
        return build_record(self._record(nozzle, now), ctrl=ctrl)

    def may_start(self, pump: PumpModel, nozzle: NozzleModel) -> bool:
        """False while ``nozzle`` holds a sale not yet taken (module doc)."""
        return not any(s.nozzle == nozzle.nzn for s in pump.pending)

    def _take(self, sale: SimSale) -> None:
        self.sent.pop(sale.txn_no, None)
        self.pump.take(sale.txn_no)

    def _record(self, nozzle: NozzleModel, now: float) -> SaleRecord:
        """The nozzle's newest sale; each send of a pending one counts (module doc)."""
        for pending in [s for s in self.pump.pending if s.nozzle == nozzle.nzn]:
            sends, first = self.sent.get(pending.txn_no, (0, now))
            self.sent[pending.txn_no] = (sends + 1, first)
            self.last[nozzle.nzn] = pending
            if sends + 1 >= 2:
                self._take(pending)
        sale = self.last.get(nozzle.nzn)
        if sale is None:
            return SaleRecord(0, 0, nozzle.price, nozzle.totalizer_volume, nozzle.totalizer_amount)
        return SaleRecord(
            sale.volume,
            sale.amount,
            sale.price,
            sale.totalizer_volume_end,
            sale.totalizer_amount_end,
        )
