"""Wayne DART (protocols.md §3) as a read-only poll master, sans-IO.

:class:`DartPoller` implements :class:`protocols.base.PollDriver` for one
RS-485 line. Configured addresses are pump numbers 1–32; pump n is ADR
``0x4F + n`` on the wire (0x50–0x6F) and ``n`` in every event.

Commands (SPEC D20). Every request passes one choke point, :meth:`_emit`.
DATA frames may carry only CD1 with DCC 00 (return status) or 04 (return
filling information) and CD101 (request total counters, COUN = nozzle
1–15); anything else raises :class:`~protocols.base.ForbiddenCommand`.
POLL, ACK, NAK and EOT are link control, not commands: they carry nothing.
We send POLL and ACK; never NAK (a POLL already makes a pump repeat a frame
we did not acknowledge, without naming a sequence number we could not read)
and never EOT.

Conversation. One pump at a time, round robin; a *cycle* reads one pump in
one or two *goals*, each one command exchange::

    DATA(s) [commands]  →  pump ACK(s)
    POLL                →  pump DATA(t) [DC…]   (or EOT: nothing to say yet)
    ACK(t)                 (no answer expected)

- *status*: ``[CD1 00]`` always. Then, when the pump is filling, *fill*:
  ``[CD1 04]`` for the live volume and amount; when it shows a completed
  fill on nozzle n, *final*: ``[CD1 04, CD101 n]`` in ONE frame, so the pump
  answers DC1, DC2, DC3 and DC101 from one state (OUR CHOICE: DART allows
  several transactions per frame; it makes the sale one snapshot).
- Each line above is one ``next_request``; after an ACK
  ``awaiting_response`` is False at once.
- A pump may answer our DATA with its DATA directly (no ACK): taken as both.
- A DATA frame that does not answer the goal (unsolicited) is processed,
  acknowledged, and we poll again for the answer.
- Retries: a timeout, NAK, EOT or unsolicited frame costs one attempt;
  after :data:`MAX_RETRIES` more the cycle ends and the next pump is read.
  A pump that is offline gets one attempt per cycle.

Sequencing (protocols.md §3: "sequence cycles, restarts after NAK"):

- Our DATA frames carry our own nibble per pump: 0, 1, … 15, 0 …; it moves
  on when the pump acknowledges (ACK, or a DATA answer). A retransmission
  after a timeout keeps its number; after a NAK we restart: the refused
  frame goes again as seq 0.
- Every DATA frame from the pump is acknowledged with its own seq, repeats
  included; its content is processed each time (statuses are idempotent and
  sales carry a stable key).
- Frames from another ADR, link frames we did not wait for, and an echo of
  our own request are ``ProtocolError("unexpected")``; we keep waiting.

Events:

- DC1 + DC3 → :class:`NozzleStatus` (rules in :mod:`protocols.dart.pumpstate`);
  with DC2 while filling, with the live volume and amount.
- A completed fill → :class:`Sale`: a status read shows DC1 5 (or 6, max
  reached) on nozzle n, then the *final* goal brings DC2 (final volume and
  amount, the price from DC3) and DC101 of n, with DC1 still 5 / 6 and DC3
  still n. DART carries no transaction number and no time: ``order_no`` is
  the volume totalizer after the fill as its raw BCD integer (a fill on a
  nozzle always moves it) and ``key`` is ``"<nozzle>:<order_no>"``;
  ``ended_at`` is the naive local time (our ``clock``) when a status read
  first showed the completed fill; ``grade`` is ``grades[nozzle]`` or ``""``
  (DART has no grade code); both totalizers come from DC101. A zero-volume
  fill repeats the previous key and is therefore never a second sale.
- No confirmation: the read is the handshake. A pump keeps its completed
  fill readable until the next one, so a fill is read again every cycle
  while the pump shows it; a sale not yet committed is emitted again with
  the same key and ``ended_at`` (a crash loses nothing), one that
  :meth:`sale_committed` reported is not.
- DC101 outside a sale → :class:`Totals`; DC5 → :class:`DeviceAlarm`;
  DC9 → :class:`Identity` with ``{"pump_id": …}``.
- :class:`PumpLink` online on the first frame from a pump, offline after
  ``offline_after`` consecutive timeouts (as :class:`SinopecPoller`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal, Unpack

from protocols.base import ForbiddenCommand, RequestReply, link_down, link_up
from protocols.dart.framer import (
    SEQ_MASK,
    Frame,
    FrameDecoder,
    encode_frame,
)
from protocols.dart.messages import (
    DCC_RETURN_FILLING_INFO,
    DCC_RETURN_STATUS,
    MAX_NOZZLE,
    TRANS_CD1,
    TRANS_CD101,
    Cd1,
    Cd101,
    build,
    parse_request,
)
from protocols.dart.pumpstate import (
    FUELLING_STATUSES,
    Cycle,
    PumpState,
    check_pumps,
    remember,
)
from protocols.events import Event, ProtocolError, Sale
from protocols.saleline import SaleLine, SaleOptions

#: Extra attempts per goal after a timeout, NAK, EOT or unsolicited frame. A
#: 1 % byte-error line garbles ~1 frame in 4; three attempts lose a goal ~1.6 %
#: of the time and the next cycle reads it again, while a dead pump costs
#: only three deadlines before the next pump is read.
MAX_RETRIES = 2


class DartPoller(SaleLine, RequestReply):
    """Read-only master for Wayne DART pumps on one line (port mode ``poll``)."""

    name: ClassVar[str] = "dart"
    # The only transactions that may ever leave this driver (SPEC D20): CD1
    # (with a DCC of ALLOWED_DCC only) and CD101 (read the total counters).
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset({TRANS_CD1, TRANS_CD101})
    #: CD1 command codes allowed: 00 return status, 04 return filling information.
    ALLOWED_DCC: ClassVar[frozenset[int]] = frozenset({DCC_RETURN_STATUS, DCC_RETURN_FILLING_INFO})

    def __init__(self, addresses: Sequence[int], **options: Unpack[SaleOptions]) -> None:
        """``options``: :class:`~protocols.saleline.SaleLine`'s."""
        if not addresses or len(set(addresses)) != len(addresses):
            raise ValueError("pump addresses: at least one, each once")
        check_pumps(addresses)
        super().__init__(**options)
        self._pumps = [PumpState(number) for number in addresses]
        self._by_adr = {pump.adr: pump for pump in self._pumps}
        self._by_number = {pump.number: pump for pump in self._pumps}
        self._decoder = FrameDecoder()
        self._turn = 0  # index of the pump whose cycle starts next
        self._cycle: Cycle | None = None
        self._expect: Literal["ack", "data"] | None = None
        self._sent: Frame | None = None  # our request in flight (to spot its echo)
        self._counts = dict.fromkeys(
            ("timeouts", "frames_rx", "requests", "unexpected", "naks", "eots", "unknown_trans"),
            0,
        )

    # ------------------------------------------------------------ PollDriver

    @property
    def mid_exchange(self) -> bool:
        """A cycle has steps left (ACK, POLL, the final goal): the port sends
        the next one after the inter-frame gap, not a poll interval later."""
        return self._cycle is not None and self._cycle.step != "done"

    def next_request(self) -> bytes | None:
        cycle = self._cycle
        if cycle is None or cycle.step == "done":
            pump = self._pumps[self._turn]
            self._turn = (self._turn + 1) % len(self._pumps)
            cycle = self._cycle = Cycle(pump, seq=pump.tx_seq)
        adr = cycle.pump.adr
        expect: Literal["ack", "data"] | None
        if cycle.step == "ack":
            frame, expect = Frame.ack(adr, cycle.ack_seq), None
            self._after_ack(cycle)
        elif cycle.step == "poll":
            frame, expect = Frame.poll(adr), "data"
        else:
            frame, expect = Frame.data(adr, cycle.seq, self._commands(cycle)), "ack"
        wire = self._emit(frame)
        self._sent, self._expect = frame, expect
        self._counts["requests"] += 1
        return wire

    def _no_answer(self, expect: Literal["ack", "data"]) -> list[Event]:
        cycle = self._cycle
        assert cycle is not None  # a request is always a step of a cycle
        pump = cycle.pump
        events: list[Event] = [
            ProtocolError("timeout", f"pump {pump.number} did not answer", pump.number)
        ]
        events += link_down(pump, pump.number, self._offline_after)
        self._retry(cycle)  # the same step again: a DATA keeps its seq, a POLL repeats
        return events

    def sale_committed(self, sale: Sale) -> None:
        pump = self._by_number.get(sale.address)
        if pump is not None:
            remember(pump.committed, sale.key, None)

    # ------------------------------------------------------------ requests

    def _emit(self, frame: Frame) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        if frame.adr not in self._by_adr:
            raise ForbiddenCommand(f"ADR {frame.adr:02X} is not a configured pump")
        for trans, data in frame.transactions:  # none in POLL / ACK / NAK / EOT
            if trans not in self.ALLOWED_COMMANDS:
                raise ForbiddenCommand(f"transaction {trans:02X} is not read-only (D20)")
            request = parse_request(trans, data)
            if isinstance(request, Cd1) and request.dcc in self.ALLOWED_DCC:
                continue
            if isinstance(request, Cd101) and 1 <= request.counter <= MAX_NOZZLE:
                continue
            raise ForbiddenCommand(f"transaction {trans:02X} {data.hex().upper()} (D20)")
        return encode_frame(frame)

    def _commands(self, cycle: Cycle) -> list[tuple[int, bytes]]:
        if cycle.goal == "status":
            return [build(Cd1(DCC_RETURN_STATUS))]
        if cycle.goal == "fill":
            return [build(Cd1(DCC_RETURN_FILLING_INFO))]
        return [build(Cd1(DCC_RETURN_FILLING_INFO)), build(Cd101(cycle.nozzle))]

    def _retry(self, cycle: Cycle) -> None:
        cycle.attempts += 1
        if cycle.attempts > (MAX_RETRIES if cycle.pump.online is not False else 0):
            cycle.step = "done"

    def _after_ack(self, cycle: Cycle) -> None:
        """The ACK is on its way: what the cycle does next."""
        if not cycle.answered:
            cycle.step = "poll"  # that frame was unsolicited: ask for the answer
            self._retry(cycle)
            return
        pump = cycle.pump
        if cycle.goal != "status":
            cycle.step = "done"
            return
        if pump.status in FUELLING_STATUSES:
            cycle.goal = "fill"
        elif cycle.completed and pump.nozzle is not None:
            cycle.goal, cycle.nozzle = "final", pump.nozzle
        else:
            cycle.step = "done"
            return
        cycle.step, cycle.seq = "cmd", pump.tx_seq
        cycle.answered, cycle.attempts = False, 0

    # ------------------------------------------------------------ responses

    def _unexpected(self, frame: Frame, why: str) -> list[Event]:
        self._counts["unexpected"] += 1
        detail = f"{frame.kind} frame from ADR {frame.adr:02X} (CTRL {frame.ctrl:02X}): {why}"
        pump = self._by_adr.get(frame.adr)
        return [ProtocolError("unexpected", detail, pump.number if pump else None)]

    def _on_frame(self, frame: Frame) -> list[Event]:
        cycle, expect = self._cycle, self._expect
        if expect is None or cycle is None:
            return self._unexpected(frame, "no request outstanding")
        pump = cycle.pump
        if frame.adr != pump.adr:
            return self._unexpected(frame, f"waiting for pump {pump.number}")
        if frame == self._sent:
            return self._unexpected(frame, "echo of our own request")
        kind = frame.kind
        if expect == "ack" and kind == "nak":
            self._counts["naks"] += 1
            pump.tx_seq = cycle.seq = 0  # restart after NAK: the frame goes again as seq 0
        elif expect == "data" and kind == "eot":
            self._counts["eots"] += 1  # nothing to say yet: poll again
        elif expect == "ack" and kind == "ack" and frame.seq == cycle.seq:
            pump.tx_seq = (cycle.seq + 1) & SEQ_MASK
            cycle.step = "poll"
            self._expect = None
            return self._link_up(pump)
        elif kind != "data":
            return self._unexpected(frame, f"waiting for {expect}")
        events = self._link_up(pump)
        self._expect = None
        if kind != "data":
            self._retry(cycle)
            return events
        if expect == "ack":  # a DATA answer acknowledges our DATA too
            pump.tx_seq = (cycle.seq + 1) & SEQ_MASK
        cycle.ack_seq, cycle.step = frame.seq, "ack"
        return events + self._on_data(cycle, frame)

    def _link_up(self, pump: PumpState) -> list[Event]:
        return link_up(pump, pump.number)

    def _on_data(self, cycle: Cycle, frame: Frame) -> list[Event]:
        pump = cycle.pump
        events, reading = pump.read(
            frame.transactions,
            status_answer=cycle.goal == "status",
            scale=self._scale,
            clock=self._clock,
        )
        self._counts["unknown_trans"] += reading.unknown
        if reading.dc1 is not None:
            cycle.completed = pump.completed
            if not cycle.completed:
                cycle.fill = None
        final = cycle.goal == "final" and cycle.completed
        if final and pump.nozzle == cycle.nozzle:
            cycle.fill = pump.fill(reading) or cycle.fill
        for dc101, wire in reading.totals:
            fill = cycle.fill if final else None
            events += pump.sale_or_totals(dc101, wire, fill, self._scale, self._grades, self._clock)
        cycle.answered = cycle.answered or cycle.answered_by(reading.messages)
        return events
