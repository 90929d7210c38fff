"""CK1313 (宝德尔, 老长空 non-card) as a read-only poll master, sans-IO.

:class:`Ck1313Poller` is a :class:`protocols.totalpoll.TotalsPoller` (the
polling, the sale reading and keying, store first and link state are
described there) for one 4-wire current loop, fuelling points 1..6
(framing: :mod:`~protocols.ck1313.framer`; commands and layouts:
:mod:`~protocols.ck1313.messages`). Citations ``:N`` are
``fangym0335/first src/lischn006.c:N``.

Status ``D5`` each turn (80 idle, 00 lifted, 20 fuelling, A0 authorised =
idle; messages doc); a reading is ``C5`` (totals), ``D9`` (the sale shown),
``B6`` (price) — the FCC reads the same three at a sale's end, D9 and B6
only when the totals moved (``:1092-1200``). Two readings alike suffice
when the totals difference checks them, else three: the XOR ignores bit 7
(framer doc), so a value is believed only when repeated.

Replies. One from another address is ``unexpected`` (we keep waiting); our
own request heard back (4 bytes) is skipped; D9, C5 and B6 replies must
carry their command before ``X`` (as the FCC checks, ``:1069``, ``:1354``,
``:1793``), the D5 reply need not (``:1551``); each is read with the length
the FCC expects. Offline after ``offline_after`` silent requests (the
FCC's ``MAX_FAIL_CNT`` is 3, ``fangym0335/first src/pub.h:99``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocols.ck1313.framer import MIN_FRAME_LEN, Frame, FrameDecoder, unit_of
from protocols.ck1313.messages import (
    CMD_PRICE,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    COMMAND_NAMES,
    REPLY_LEN,
    TOTAL_DIGITS,
    build_request,
    parse_reply,
)
from protocols.events import ProtocolError
from protocols.totalpoll import TOTALS_EVERY, Taken, TotalsPoller

__all__ = ["READ_STEPS", "TOTALS_EVERY", "Ck1313Poller"]

#: The three steps of one reading (module doc).
READ_STEPS = (CMD_TOTALS, CMD_SALE, CMD_PRICE)


class Ck1313Poller(TotalsPoller):
    """Read-only master for CK1313 pumps on one loop (port mode ``poll``)."""

    name: ClassVar[str] = "ck1313"
    # The only commands that may ever leave this driver (SPEC D20), each a
    # bare 4-byte query. Never E5 host control, C3 authorise, CA stop, B2
    # price or B9/B5 preset (messages doc).
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {CMD_STATUS, CMD_SALE, CMD_TOTALS, CMD_PRICE}
    )
    STATUS: ClassVar[int] = CMD_STATUS
    STEPS: ClassVar[tuple[int, ...]] = READ_STEPS
    TOTAL_DIGITS: ClassVar[int] = TOTAL_DIGITS

    def _check_address(self, address: int) -> None:
        unit_of(address)  # 1..6

    def _new_decoder(self) -> FrameDecoder:
        self._frames = FrameDecoder()
        return self._frames

    def _request(self, command: int, address: int) -> bytes:
        return build_request(address, command)

    def _prepare(self, command: int) -> None:
        self._frames.expect = REPLY_LEN[command]  # read as the FCC reads it

    def _spoils(self, error: ProtocolError) -> bool:
        return error.kind == "bad_lrc"  # a complete reply with a bad check

    def _take(self, frame: Any, address: int, command: int, request: bytes) -> Taken:
        assert isinstance(frame, Frame)
        if len(frame.raw) == MIN_FRAME_LEN and frame.raw == request:
            return ("echo", "")
        if frame.unit != unit_of(address) or len(frame.raw) != REPLY_LEN[command]:
            shown = frame.raw.hex(" ").upper()
            return ("unexpected", f"{shown} while waiting for pump {address}'s reply")
        if command != CMD_STATUS and frame.command != command:
            detail = f"{COMMAND_NAMES[command]} reply carries {frame.command:02X}"
            return ("spoilt", ProtocolError("bad_message", detail))
        reply = parse_reply(frame, command)
        if isinstance(reply, ProtocolError):
            return ("spoilt", reply)
        return ("reply", reply)
