"""Lanfeng watched passively in port mode ``relay``, sans-IO.

The station's POS (or FCC) is the master; the collector only watches and has
no request to build (SPEC D19, D20). Citations ``:N`` are
``fangym0335/first src/lischn017.c:N``.

RS-422 has one pair per direction (``:4``). A reply does not say which
question it answers: the B8 reply starts its price where a command echo
would be, and the totals replies may or may not echo theirs (messages doc).
So replies are read only in **relay**, each as the reply to the question
the POS asked just before (:meth:`LanfengMonitor.receive_request`, then
:meth:`LanfengMonitor.receive_response`); ``listen`` is refused (the
descriptor has no bus monitor): a tap on the pumps' pair alone cannot tell
a B8 reply from a totals reply.

A request is a frame laid out as one (``00 | known command | its data``);
anything else on the POS's pair is ``unexpected``. A reply is read when it
comes from the pump asked (its address nibble, ``:1487``); its layout must
fit the question (else ``bad_message``). Spoilt bytes on either pair, a
frame laid out as no request, a reply to no question seen: any of them may
hide another exchange, so readings still missing their sale end there (but
for a spoilt reply to the step asked). Reading a sale, link state, the
checks: :mod:`protocols.totalwatch` — a reading is AD, AC, B8, the FCC's
order at a sale's end (``DoEot``, ``:897-1023``); at start-up it reads AD
and AC alone (``InitPumpTotal``, ``:169``, ``:1575-1620``). B8 replies are
nozzle states, with the running fill's values while fuelling.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError
from protocols.lanfeng.driver import READ_STEPS, running_status
from protocols.lanfeng.framer import Frame, FrameDecoder
from protocols.lanfeng.messages import READ_COMMANDS, TOTAL_DIGITS, parse_reply, request_command
from protocols.passive import Wire
from protocols.totalpoll import Reply
from protocols.totalwatch import TotalsMonitor


class LanfengMonitor(TotalsMonitor):
    """Passive interpreter of one Lanfeng line (relay)."""

    name: ClassVar[str] = "lanfeng"
    STEPS: ClassVar[tuple[int, ...]] = READ_STEPS
    TOTAL_DIGITS: ClassVar[int] = TOTAL_DIGITS

    def __init__(self, addresses: Any, **options: Any) -> None:
        super().__init__(addresses, **options)
        self._requests = FrameDecoder()
        self._responses = FrameDecoder()
        self._asked: tuple[int, int | None] | None = None  # (address, command) asked last
        pos = Wire(self._requests, self._request, self._request_lost)
        # A spoilt reply is the one asked for: the POS asks again.
        self._wire(pos, Wire(self._responses, self._reply, self._reply_lost))
        self._stale = 0  # reply bytes dropped when the POS asked again

    @property
    def counters(self) -> dict[str, int]:
        return {**super().counters, "stale_bytes": self._stale}

    # ------------------------------------------------------------ internals

    def _request_lost(self) -> None:
        """Spoilt bytes on the POS's pair: a question to any pump may be in there."""
        self._asked = None
        self._lost()

    def _reply_lost(self) -> None:
        self._lost(self._asked)

    def _request(self, frame: Frame) -> list[Event]:
        command = request_command(frame)
        if command is None:
            self._request_lost()
            self._count("unexpected")
            detail = f"{frame.raw.hex(' ').upper()} is no Lanfeng request"
            return [ProtocolError("unexpected", detail)]
        read_only = command in READ_COMMANDS
        # Bytes of an earlier reply still held are stale now: left in, a
        # window one byte early checks whenever a reply's address equals
        # its check byte (framer doc), and the misframing would repeat.
        self._stale += self._responses.reset()
        self._asked = (frame.address, command if read_only else None)
        return self._on_request(frame.address, command if read_only else None)

    def _reply(self, frame: Frame) -> list[Event]:
        asked, self._asked = self._asked, None
        if asked is None or asked[0] != frame.address:
            self._lost()
            self._count("unexpected")
            detail = f"{frame.raw.hex(' ').upper()}: a reply to no question seen"
            return [ProtocolError("unexpected", detail, frame.address)]
        address, command = asked
        if command is None:
            return self._on_reply(address, None, None, frame.raw)  # the POS changed the pump
        reply = parse_reply(frame, command)
        if isinstance(reply, ProtocolError):
            return [ProtocolError(reply.kind, reply.detail, address)]
        return self._on_reply(address, command, reply, frame.raw)

    def _nozzle_status(self, address: int, state: NozzleState, reply: Reply) -> NozzleStatus:
        return running_status(address, state, reply, self._dp)
