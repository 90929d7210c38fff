"""Gilbarco two-wire current loop as a read-only poll master, sans-IO.

:class:`GilbarcoPoller` implements :class:`protocols.base.PollDriver` for one
loop, pumps 1..16, 5787 baud 8E1 (protocols.md §4). Words, layouts and our
documented assumptions: :mod:`~protocols.gilbarco.messages`; framing and
recovery: :mod:`~protocols.gilbarco.framer`.

Polling. Each turn asks one pump its status (``0p``), round robin. The reply
to 0 is ONE byte ``status<<4 | pump``; replies to 4 and 5 end at ETX F0: the
driver knows which it awaits. A status byte with another pump's nibble is
``unexpected`` (we keep waiting); the first byte after a request equal to
it is our echo on the loop (status 0 does not exist) and is skipped.

Nozzle state. Status is per pump and does not name the hose, so
:class:`NozzleStatus` goes to nozzle :data:`PUMP_NOZZLE` = 0, the pump as a
whole (our documented choice): 7 lifted, 9 fuelling, 6 / 8 / A / B idle, C
abnormal; no live volume in this subset.

Reading a sale. An end of transaction (A/B) must be seen on two status
polls in a row — one corrupted status byte cannot start a read — then the
driver reads at once, before the next pump: ``4p`` transaction, then ``5p``
totals, each until two good readings agree; the Sale is emitted with the
totals (:class:`~protocols.gilbarco.reading.SaleRead`: why, and how spoilt
replies are retried, parked while the other pumps have their turn, or given
up). It reads on every A; on B only when the end is new to it (the second
end status in a row), its last read failed or its sale is not committed. A
silent pump ends the read at once.

Sale. No transaction number exists. ``nozzle`` = the grade digit (the hose
as the pump numbers it), ``grade = str(digit)``; ``order_no`` = that
grade's volume totalizer after the sale, 8 raw digits, most significant
first; ``key = f"{nozzle}:{order_no}"`` — a totalizer only grows, so it is
unique per nozzle and stable across re-reads. ``ended_at`` = ``clock()`` at
the first of the end statuses in a row (naive local time; a status corrupted
into an end right before the real one makes it one poll cycle early).

Store first. The pump shows its finished transaction until the next one
starts; each re-read re-emits the very same :class:`Sale` until
:meth:`sale_committed` names its key, then nothing (a crash before the
commit loses nothing; the store deduplicates by key).

Line errors. A status byte has no check: a corrupted one shows a wrong
state for one poll; it takes two in a row, both into A/B, to start an extra
read, which returns the last sale again (known by key). A status outside this
subset changes nothing (bad_message). A sale needs a transaction frame and
a totals frame holding its grade, each LRC-checked, of the exact layout and
read twice alike.

Link. ``PumpLink(online=False)`` after ``offline_after`` consecutive
requests got no byte at all (a silent pump also ends a read at once);
``online=True`` on the first recognisable reply: a status byte with the
pump's nibble or a complete frame, even with a bad LRC.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from protocols.base import ForbiddenCommand
from protocols.events import Event, NozzleStatus, ProtocolError, PumpLink, Sale
from protocols.gilbarco.codes import (
    CMD_STATUS,
    CMD_TOTALS,
    CMD_TRANSACTION,
    END_STATUSES,
    MAX_PUMP,
    MIN_PUMP,
    NIBBLE,
    STATUS_END,
    STATUS_STATE,
    command_byte,
    pump_nibble,
)
from protocols.gilbarco.framer import Frame, FrameDecoder
from protocols.gilbarco.messages import Decimals, GradeTotals, sale_key, sale_of
from protocols.gilbarco.reading import SaleRead

#: Status is per pump; NozzleStatus for the pump as a whole uses nozzle 0.
PUMP_NOZZLE = 0

#: End-of-transaction statuses in a row before a read: a status byte has no
#: check, so one corrupted byte must not start a read (a real end shows for
#: seconds, until the next customer lifts a nozzle; two polls are well inside).
END_POLLS = 2

#: Committed keys remembered per pump: the pump shows only its last sale, so
#: a few cover every re-read; bounded so memory per line stays fixed.
MAX_COMMITTED_KEYS = 8

#: The driver's own counters (the decoder adds frames, bad_lrc, garbage_bytes …).
_COUNTERS = (
    *("requests", "timeouts", "unexpected", "echo", "status_rx", "frames_rx", "sales"),
    "stale_bytes",  # bytes of an earlier reply still buffered at the next request
    "bad_status",  # status nibbles outside this subset
    "bad_readings",  # good frames that do not count: layout, grade, disagreeing
    "reads",  # reads started (4 then 5)
    "reads_parked",  # MAX_READ_ATTEMPTS spoilt replies in a row: other pumps first
    "reads_failed",  # given up (MAX_PARKS, or a silent pump)
    "rereads",  # reads of a sale whose key was already committed
)


@dataclass
class _Pump:
    address: int
    end_polls: int = 0  # end-of-transaction statuses seen in a row
    end_seen_at: datetime | None = None  # when the current end was first seen
    settled: bool = False  # the shown end was read and its sale committed
    misses: int = 0
    online: bool | None = None  # None: never answered yet
    last_sale: Sale | None = None
    parked: SaleRead | None = None  # a read resumed at this pump's next turn
    committed: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_COMMITTED_KEYS))


@dataclass
class _Await:
    pump: _Pump
    command: int
    request: int  # the request byte, to recognise our echo
    echo_possible: bool = True
    received: bool = False  # any byte but our echo: not a miss


class GilbarcoPoller:
    """Read-only master for Gilbarco pumps on one two-wire loop (port mode ``poll``)."""

    name: ClassVar[str] = "gilbarco"
    # The only commands that may ever leave this driver (SPEC D20): 0 status,
    # 4 transaction data, 5 totals. Never 1 authorise, 2 data next / price,
    # 3 stop or anything else.
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {CMD_STATUS, CMD_TRANSACTION, CMD_TOTALS}
    )

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = 3,
        volume_decimals: int = 2,
        money_decimals: int = 2,
        price_decimals: int = 2,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if not addresses or len(set(addresses)) != len(addresses):
            raise ValueError("pump addresses: at least one, each once")
        if any(not MIN_PUMP <= a <= MAX_PUMP for a in addresses):
            raise ValueError(f"pump addresses must be {MIN_PUMP}..{MAX_PUMP}")
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self._pumps = {a: _Pump(a) for a in addresses}
        self._order = tuple(self._pumps.values())
        self._offline_after = offline_after
        self._dp = Decimals(volume=volume_decimals, money=money_decimals, price=price_decimals)
        self._clock = clock
        self._decoder = FrameDecoder()
        self._turn = 0
        self._read: SaleRead | None = None
        self._await: _Await | None = None
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    # ------------------------------------------------------------ PollDriver

    @property
    def awaiting_response(self) -> bool:
        return self._await is not None

    @property
    def counters(self) -> dict[str, int]:
        return {**self._decoder.counters, **self._counts}

    @property
    def mid_exchange(self) -> bool:
        """A sale is being read (4p / 5p until two readings agree): the port
        sends the next step after the inter-frame gap, not a poll interval later."""
        return self._read is not None

    def next_request(self) -> bytes | None:
        if self._await is not None:  # the port task moved on without telling us
            self._await = None
            self._fail_step()
        if self._read is None:  # the next pump's turn: its parked read, or a status poll
            pump = self._order[self._turn]
            self._turn = (self._turn + 1) % len(self._order)
            self._read, pump.parked = pump.parked, None
        read = self._read
        if read is not None:
            pump, command = self._pumps[read.address], read.step
        else:
            command = CMD_STATUS
        wire = self._emit(command, pump.address)
        self._counts["stale_bytes"] += self._decoder.reset()  # an earlier reply's rest
        self._await = _Await(pump, command, wire[0])
        self._counts["requests"] += 1
        return wire

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        aw, pos = self._await, 0
        if aw is not None and data and aw.echo_possible:
            aw.echo_possible = False
            if data[0] == aw.request:  # our own byte heard back on the loop
                self._counts["echo"] += 1
                pos = 1
        if aw is not None and pos < len(data):
            aw.received = True
            if aw.command != CMD_STATUS:
                return self._on_items(aw, self._decoder.receive_data(data[pos:]))
            events, pos = self._on_status_bytes(aw, data, pos)
        if pos < len(data):
            self._counts["unexpected"] += 1
            detail = f"{len(data) - pos} bytes while no reply is awaited"
            events.append(ProtocolError("unexpected", detail))
        return events

    def response_timeout(self) -> list[Event]:
        aw = self._await
        if aw is None:
            return []
        events: list[Event] = []
        for item in self._decoder.flush():
            assert isinstance(item, ProtocolError)  # flush reports only truncation
            events.append(ProtocolError(item.kind, item.detail, aw.pump.address))
        self._counts["timeouts"] += 1
        detail = "no complete reply" if aw.received else "no reply"
        events.append(
            ProtocolError("timeout", f"pump {aw.pump.address}: {detail}", aw.pump.address)
        )
        return events + self._end_without_reply()

    def sale_committed(self, sale: Sale) -> None:
        pump = self._pumps.get(sale.address)
        if pump is None:
            return  # not a pump of ours
        if sale.key not in pump.committed:
            pump.committed.append(sale.key)
        if pump.last_sale is not None and pump.last_sale.key == sale.key:
            pump.settled = True

    # ------------------------------------------------------------ internals

    def _emit(self, command: int, pump: int) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        if command not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"command {command:X} is not read-only (D20)")
        if pump not in self._pumps:
            raise ForbiddenCommand(f"pump {pump} is not polled on this line")
        return bytes([command_byte(command, pump)])

    def _end_without_reply(self) -> list[Event]:
        """The awaited reply will not come: count a miss, fail the read step.

        No byte at all is a miss, and a read then stops at once (a silent pump
        is not helped by asking again); a spoilt reply is retried.
        """
        aw = self._await
        assert aw is not None
        self._await = None
        events: list[Event] = []
        pump = aw.pump
        if not aw.received:
            pump.misses += 1
            if pump.misses >= self._offline_after and pump.online is not False:
                pump.online = False
                events.append(PumpLink(pump.address, online=False))
        if self._read is not None and self._read.address == pump.address:
            if not aw.received:
                self._give_up()
            else:
                self._fail_step()
        return events

    def _link_up(self, aw: _Await) -> list[Event]:
        pump = aw.pump
        pump.misses = 0
        if pump.online is True:
            return []
        pump.online = True
        return [PumpLink(pump.address, online=True)]

    def _on_status_bytes(self, aw: _Await, data: bytes, pos: int) -> tuple[list[Event], int]:
        """The first byte from the polled pump in ``data[pos:]`` is its reply."""
        address, nibble = aw.pump.address, pump_nibble(aw.pump.address)
        end = next((j for j in range(pos, len(data)) if data[j] & NIBBLE == nibble), len(data))
        events: list[Event] = []
        if end > pos:
            self._counts["unexpected"] += 1
            detail = f"{data[pos:end].hex(' ').upper()} not from pump {address}, its status awaited"
            events.append(ProtocolError("unexpected", detail, address))
        if end == len(data):
            return events, end
        events += self._link_up(aw)
        self._await = None
        self._counts["status_rx"] += 1
        return events + self._on_status(aw.pump, data[end] >> 4), end + 1

    def _on_status(self, pump: _Pump, status: int) -> list[Event]:
        state = STATUS_STATE.get(status)
        if state is None:  # says nothing about the pump (a corrupted byte?): state kept
            self._counts["bad_status"] += 1
            detail = f"status {status:X} is not one of this subset"
            return [ProtocolError("bad_message", detail, pump.address)]
        if status not in END_STATUSES:
            pump.end_polls, pump.end_seen_at, pump.settled = 0, None, False
        else:
            pump.end_polls += 1
            if pump.end_seen_at is None:
                pump.end_seen_at = self._clock()
            new_end = pump.end_polls == END_POLLS
            if pump.end_polls >= END_POLLS and (
                status == STATUS_END or new_end or not pump.settled
            ):
                self._read = SaleRead(pump.address)
                self._counts["reads"] += 1
        return [NozzleStatus(pump.address, PUMP_NOZZLE, state)]

    def _on_items(self, aw: _Await, items: list[Frame | ProtocolError]) -> list[Event]:
        events: list[Event] = []
        address, rest = aw.pump.address, 0
        for item in items:
            if self._await is None:
                rest += 1
            elif isinstance(item, ProtocolError):
                events.append(ProtocolError(item.kind, item.detail, address))
                if item.kind == "bad_lrc":  # a complete frame arrived: the reply, spoilt
                    events += self._link_up(aw)
                    self._await = None
                    self._fail_step()
            else:
                self._counts["frames_rx"] += 1
                events += self._link_up(aw)
                self._await = None
                read = self._read
                assert read is not None  # 4 and 5 are only sent while reading
                result = read.on_frame(item)
                if isinstance(result, ProtocolError):
                    self._counts["bad_readings"] += 1
                    events.append(ProtocolError(result.kind, result.detail, address))
                    self._fail_step()
                elif result is not None:
                    self._read = None
                    events += self._complete(read, result)
        if self._await is None and (rest or self._decoder.buffered):
            self._counts["unexpected"] += 1
            self._counts["stale_bytes"] += self._decoder.reset()
            events.append(ProtocolError("unexpected", "bytes after the reply", address))
        return events

    def _fail_step(self) -> None:
        """A spoilt reply: ask again, park the read or give it up (SaleRead.spoilt)."""
        read = self._read
        if read is None:
            return
        verdict = read.spoilt()
        if verdict == "park":  # the other pumps' turns first, then this read goes on
            self._read, self._pumps[read.address].parked = None, read
            self._counts["reads_parked"] += 1
        elif verdict == "give_up":
            self._give_up()

    def _give_up(self) -> None:
        read = self._read
        assert read is not None
        self._read = None
        self._pumps[read.address].settled = False
        self._counts["reads_failed"] += 1

    def _complete(self, read: SaleRead, grade: GradeTotals) -> list[Event]:
        """The read is complete: the Sale, unless its key is already committed."""
        pump, txn = self._pumps[read.address], read.transaction
        assert txn is not None
        key = sale_key(txn, grade)
        ended_at, pump.end_seen_at = pump.end_seen_at, None
        if key in pump.committed:
            pump.settled = True
            self._counts["rereads"] += 1
            return []
        pump.settled = False
        if pump.last_sale is None or pump.last_sale.key != key:
            when = ended_at or self._clock()
            pump.last_sale = sale_of(pump.address, txn, grade, when, self._dp, read.raw)
        self._counts["sales"] += 1
        return [pump.last_sale]
