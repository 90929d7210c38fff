"""CK1313 watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station's POS (or FCC) is the master; the collector only watches and has
no request to build, so it cannot write to a pump (SPEC D19, D20). Citations
``:N`` are ``fangym0335/first src/lischn006.c:N``.

Directions. A 4-wire current loop has one pair per direction (``:4``).

- :meth:`Ck1313Monitor.receive_request` — the POS's pair (relay): each
  request names the pump and the command, so the reply that follows is read
  as exactly that command's reply (its length as the FCC reads it, framer
  "expect" mode), and unanswered requests count towards ``offline_after``.
- :meth:`Ck1313Monitor.receive_response` — the pumps' pair (relay).
- :meth:`Ck1313Monitor.receive_bus` — ``listen``: a receive-only tap on the
  **pumps' transmit pair**. Every reply names its pump (``A``) and its
  command (the byte before ``X``), and replies have their own lengths, so
  replies alone are enough: status, totals, sale, price. A tap that also
  carries the POS's pair (both directions on one input) works too: frames
  tell their direction by (length, command) (``messages.direction``).
  On the POS's pair alone a tap sees questions only and records nothing.
  Listen relies on the status reply carrying ``D5`` at ``[3]`` (inferred,
  framer doc); without it the tap still reads sales (C5, D9 and B6 replies
  carry their command per the source) but no nozzle states. With replies
  only, a pump is never reported offline (nothing tells a question went
  unanswered); the port's line check reports a silent line.

Reading a sale (:mod:`protocols.totalwatch`, which also owns link state,
the consecutive-exchange rule and the checks): a reading is C5, D9, B6 —
the FCC, at a sale's end, reads C5 totals, then D9 (the sale) if the
totals moved, then B6 (price) (``DoEot``, ``:1092-1173``); it reads D9
alone while fuelling (running display, ``DoBusy``, ``:1010``,
``:1446-1457``) and C5 alone at start-up and reconnection (``:192``,
``:835``); it asks again after a spoilt reply (``:1329-1366``,
``:1145-1156``). Spoilt or unplaceable bytes on either pair between C5
and D9 end the reading (a lost frame may have been that pump's status or
another question), but for a spoilt reply to the D9 the POS just asked.

Only pumps in ``addresses`` are reported; other pumps' frames count as
``foreign`` (:attr:`foreign_addresses`). Commands that change a pump (the
POS may send them) are counted as ``changing``, their replies ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocols.ck1313.driver import READ_STEPS
from protocols.ck1313.framer import Frame, FrameDecoder, pump_of
from protocols.ck1313.messages import (
    CMD_STATUS,
    READ_COMMANDS,
    REPLY_LEN,
    REPLY_SHAPES,
    TOTAL_DIGITS,
    direction,
    parse_reply,
)
from protocols.events import Event, ProtocolError
from protocols.passive import Tap, Wire
from protocols.totalwatch import TotalsMonitor

#: The key of a frame whose address nibble names no pump (0..9).
NO_PUMP = -1


class Ck1313Monitor(TotalsMonitor, Tap):
    """Passive interpreter of one CK1313 loop (relay or listen)."""

    name: ClassVar[str] = "ck1313"
    STEPS: ClassVar[tuple[int, ...]] = READ_STEPS
    TOTAL_DIGITS: ClassVar[int] = TOTAL_DIGITS

    def __init__(self, addresses: Any, **options: Any) -> None:
        super().__init__(addresses, **options)
        self._requests = FrameDecoder()
        self._responses = FrameDecoder()
        self._bus = FrameDecoder()
        pos = Wire(self._requests, self._request, self._request_lost)
        # A spoilt reply is the one asked for: the POS asks again.
        pumps = Wire(self._responses, self._answer, self._reply_lost)
        # A spoilt frame on the tap may have been a status, or a question.
        self._wire(pos, pumps, Wire(self._bus, self._on_bus, self._lost))
        self._asked: tuple[int, int] | None = None  # (unit, command) of the last request

    def _request_lost(self) -> None:
        """Spoilt bytes on the POS's pair: a question to any pump may be in there."""
        self._asked = None
        self._lost()

    def _outstanding(self) -> tuple[int, int | None] | None:
        """(pump, command) of the question the POS asked last and no reply answered."""
        if self._asked is None:
            return None
        return (pump_of(self._asked[0]) or NO_PUMP, self._asked[1])

    def _reply_lost(self) -> None:
        self._lost(self._outstanding())

    # ------------------------------------------------------------ internals

    def _answer(self, frame: Frame) -> list[Event]:
        asked, self._asked = self._asked, None
        if asked is not None and asked[0] == frame.unit and len(frame.raw) == REPLY_LEN[asked[1]]:
            return self._reply(frame, asked[1])  # as the POS asked (framer: expect)
        return self._reply(frame, None)

    def _on_bus(self, frame: Frame) -> list[Event]:
        side = direction(frame)
        if side == "master":
            return self._request(frame)
        if side == "pump":
            return self._reply(frame, None)
        if side == "either":
            self._count("ambiguous")  # an E5 / CA ack and its request look alike
            return []
        self._lost()
        self._count("unexpected")
        detail = f"{frame.raw.hex(' ').upper()} is no CK1313 frame"
        return [ProtocolError("unexpected", detail)]

    # ------------------------------------------------------------ internals

    def _request(self, frame: Frame) -> list[Event]:
        read_only = frame.command in READ_COMMANDS and len(frame.raw) == 4
        self._asked = (frame.unit, frame.command) if read_only else None
        self._responses.expect = REPLY_LEN[frame.command] if read_only else None
        address = pump_of(frame.unit) or NO_PUMP
        return self._on_request(address, frame.command if read_only else None)

    def _reply(self, frame: Frame, asked: int | None) -> list[Event]:
        address = pump_of(frame.unit) or NO_PUMP
        command = asked
        if command is None:
            if (len(frame.raw), frame.command) not in REPLY_SHAPES:
                self._lost()
                self._count("unexpected")
                detail = f"{frame.raw.hex(' ').upper()} is no CK1313 reply"
                return [ProtocolError("unexpected", detail, address)]
            command = frame.command
        if command not in READ_COMMANDS:
            return self._on_reply(address, None, None, frame.raw)  # the POS changed the pump
        if command != CMD_STATUS and frame.command != command:
            detail = f"reply to {command:02X} carries {frame.command:02X}"
            return [ProtocolError("bad_message", detail, address)]
        reply = parse_reply(frame, command)
        if isinstance(reply, ProtocolError):
            return [ProtocolError(reply.kind, reply.detail, address)]
        return self._on_reply(address, command, reply, frame.raw)
