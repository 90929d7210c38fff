"""Lanfeng (温州蓝峰) as a read-only poll master, sans-IO.

:class:`LanfengPoller` is a :class:`protocols.totalpoll.TotalsPoller` (the
polling, the sale reading and keying, store first and link state are
described there) for one RS-422 line, pumps 1..15 (framing:
:mod:`~protocols.lanfeng.framer`; commands and layouts:
:mod:`~protocols.lanfeng.messages`). Citations ``:N`` are
``fangym0335/first src/lischn017.c:N``.

Status ``B8`` each turn: the state (41 idle, C1 lifted, C2 fuelling, bit
40 masked) and the sale shown — the fill in progress while fuelling,
reported as the nozzle's running volume, amount and price. A reading is
``AD`` (volume totals), ``AC`` (amount totals), ``B8`` (the sale shown and
its price, with the pump still idle) — the FCC reads the same at a sale's
end, B8 only when the volume totals moved (``DoEot``, ``:897-1023``). The
sum check catches every single-bit error but not two errors that cancel;
readings repeat until they agree (two when the totals difference checks
them, else three).

Replies. A frame equal to our request is our own request heard back
(skipped); one whose address nibble is not the pump's is ``unexpected``
(``:1487``: the FCC checks that nibble); one whose layout does not fit the
question is spoilt and asked again. The FCC sends A0 (host control)
whenever the state lacks bit 40 (``:1428-1434``); this driver never does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocols.bcd import scaled
from protocols.events import NozzleState, NozzleStatus, ProtocolError
from protocols.lanfeng.framer import MAX_PUMP, MIN_PUMP, Frame, FrameDecoder
from protocols.lanfeng.messages import (
    CMD_AMOUNT_TOTAL,
    CMD_STATUS,
    CMD_VOLUME_TOTAL,
    TOTAL_DIGITS,
    StatusShown,
    build_request,
    parse_reply,
)
from protocols.totalpoll import TOTALS_EVERY, Reply, Taken, TotalsPoller
from protocols.totalsale import NOZZLE, Decimals

__all__ = ["READ_STEPS", "TOTALS_EVERY", "LanfengPoller", "running_status"]

#: The three steps of one reading (module doc).
READ_STEPS = (CMD_VOLUME_TOTAL, CMD_AMOUNT_TOTAL, CMD_STATUS)


def running_status(address: int, state: NozzleState, reply: Reply, dp: Decimals) -> NozzleStatus:
    """A B8 state; while fuelling with the fill's volume, amount and price."""
    if state is not NozzleState.FUELLING or not isinstance(reply, StatusShown):
        return NozzleStatus(address, NOZZLE, state)
    return NozzleStatus(
        address,
        NOZZLE,
        state,
        volume=scaled(reply.volume, dp.volume),
        amount=scaled(reply.amount, dp.amount),
        price=scaled(reply.price, dp.price),
    )


class LanfengPoller(TotalsPoller):
    """Read-only master for Lanfeng pumps on one RS-422 line (port mode ``poll``)."""

    name: ClassVar[str] = "lanfeng"
    # The only commands that may ever leave this driver (SPEC D20), each with
    # eight zero data bytes. Never A0 host control, A1 authorise, A2/A3
    # preset, A4 price or B1 stop (messages doc).
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {CMD_STATUS, CMD_VOLUME_TOTAL, CMD_AMOUNT_TOTAL}
    )
    STATUS: ClassVar[int] = CMD_STATUS
    STEPS: ClassVar[tuple[int, ...]] = READ_STEPS
    TOTAL_DIGITS: ClassVar[int] = TOTAL_DIGITS

    def _check_address(self, address: int) -> None:
        if not MIN_PUMP <= address <= MAX_PUMP:
            raise ValueError(f"Lanfeng pump addresses are {MIN_PUMP}..{MAX_PUMP}, not {address}")

    def _new_decoder(self) -> FrameDecoder:
        return FrameDecoder()

    def _request(self, command: int, address: int) -> bytes:
        return build_request(address, command)

    def _take(self, frame: Any, address: int, command: int, request: bytes) -> Taken:
        assert isinstance(frame, Frame)
        if frame.raw == request:
            return ("echo", "")
        if frame.address != address:
            shown = frame.raw.hex(" ").upper()
            return ("unexpected", f"{shown} while waiting for pump {address}'s reply")
        reply = parse_reply(frame, command)
        if isinstance(reply, ProtocolError):
            return ("spoilt", reply)
        return ("reply", reply)

    def _nozzle_status(self, address: int, state: NozzleState, reply: Reply) -> NozzleStatus:
        return running_status(address, state, reply, self._dp)
