"""Gilbarco two-wire current loop as a read-only poll master, sans-IO.

:class:`GilbarcoPoller` implements :class:`protocols.base.PollDriver` for one
loop, pumps 1..16 (protocols.md §4; docs/protocols/gilbarco.md has every
fact with its source). Words and layouts: :mod:`~protocols.gilbarco.messages`;
the line's conversation (echo, replies, recovery):
:mod:`~protocols.gilbarco.line`, which this driver tells what it sent.

Polling. Each turn asks one pump its status (``0p``), round robin; a pump
that answers 9 (busy) is asked its running display (``6p``) right after,
which gives the fill's money so far. Only 0, 4, 5 and 6 ever leave
(:attr:`GilbarcoPoller.ALLOWED_COMMANDS`, SPEC D20). Every command comes
back as an echo before the reply (§4); the reader skips it (and works
without one, as behind the FCC's IO board).

Nozzle state. Status is per pump and does not name the hose, so
:class:`NozzleStatus` goes to nozzle :data:`PUMP_NOZZLE` = 0, the pump as a
whole: 6 / A / B idle, 7 / 8 lifted, 9 fuelling (with the running display's
amount), C abnormal (codes.py says why); 0 (data error) and D change nothing.

Reading a sale. A finished transaction shows as A / B (end of
transaction), and on some pumps as 6 or 7 straight after 9 (the FCC reads
after 6, lischn001.c:676-686, and marks a 9 → 7 for it, lischn001.c:181).
A status byte has no check, so the pump must show one of those
:data:`END_POLLS` times in a row; then the driver reads at once, before the
next pump: ``4p`` transaction, then ``5p`` totals, each until two readings
agree (:class:`~protocols.gilbarco.reading.SaleRead`: why, and how spoilt
replies are retried, parked, or given up). It reads on every A (a simulated
pump may queue several sales behind it), on B when the end is new, its read
failed or its sale is not committed, and on 6 / 7 once after a fill (9) was
seen. A silent pump ends the read at once.

Sale. No transaction number exists. ``nozzle`` = the grade number (the
hose as the pump numbers it), ``grade = str(nozzle)``; ``order_no`` = that
grade's volume totalizer after the sale, its digits as sent, most
significant first; ``key = f"{nozzle}:{order_no}"`` — a totalizer only
grows, so the key is unique per nozzle and stable across re-reads.
``ended_at`` = ``clock()`` at the first of the end statuses in a row
(naive local time).

Store first. The pump shows its finished transaction until the next one
starts; each re-read re-emits the very same :class:`Sale` until
:meth:`sale_committed` names its key, then nothing (a crash before the
commit loses nothing; the store deduplicates by key).

Line errors. A corrupted status shows a wrong state for one poll; it takes
:data:`END_POLLS` of them in a row to start an extra read, which returns the
last sale again (known by key). A sale needs a transaction frame of this
pump and a totals frame holding its grade, each LRC-checked, of the exact
layout and read twice alike.

Residual risk: a read started as a fill ends takes ~0.5 s; a new fill on
the same pump that starts within it moves the totals between readings —
they disagree and are read again until they agree, after that fill. The
edge checks (totalizer continuity, SPEC A1) flag such a sale.

Link. ``PumpLink(online=False)`` after ``offline_after`` consecutive
requests got nothing but their echo; ``online=True`` on the first reply of
the pump (a status byte, a complete frame even with a bad LRC, a running
display).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from protocols.base import ForbiddenCommand, OneInFlight, at_least_one, link_down, link_up
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, Sale
from protocols.gilbarco.codes import (
    CMD_RUNNING,
    CMD_STATUS,
    CMD_TOTALS,
    CMD_TRANSACTION,
    MAX_PUMP,
    MIN_PUMP,
    STATUS_BUSY,
    STATUS_CALL,
    STATUS_DATA_ERROR,
    STATUS_FEOT,
    STATUS_OFF,
    STATUS_PEOT,
    STATUS_STATE,
    command_byte,
)
from protocols.gilbarco.line import (
    DataReply,
    Echo,
    LineReader,
    Rejected,
    RunningReply,
    StatusReply,
)
from protocols.gilbarco.messages import (
    Decimals,
    GradeTotals,
    SaleParts,
    sale_key,
    sale_of,
    scaled,
    words_value,
)
from protocols.gilbarco.reading import SaleRead

#: Status is per pump; NozzleStatus for the pump as a whole uses nozzle 0.
PUMP_NOZZLE = 0

#: Statuses in a row before a read: a status byte has no check, so one
#: corrupted byte must not start a read (a real end shows for seconds, until
#: the next customer lifts a nozzle; two polls are well inside).
END_POLLS = 2

#: Statuses after which a finished fill can be read: no fuel flows.
QUIET_STATUSES = frozenset({STATUS_OFF, STATUS_CALL, STATUS_PEOT, STATUS_FEOT})

#: Committed keys remembered per pump: the pump shows only its last sale, so
#: a few cover every re-read; bounded so memory per line stays fixed.
MAX_COMMITTED_KEYS = 8

#: The driver's own counters; ``frames``, ``bad_lrc``, ``bad_message``,
#: ``truncated``, ``garbage_bytes`` follow the framers' convention
#: (collector/station/linecheck.py reads ``frames`` and ``status_rx``).
_COUNTERS = (
    *("requests", "timeouts", "unexpected", "echo", "status_rx", "frames", "running_rx"),
    *("bad_lrc", "bad_message", "truncated", "garbage_bytes"),
    "sales",
    "stale_bytes",  # bytes of an earlier reply still buffered at the next request
    "data_errors",  # status 0: the pump did not understand a command
    "bad_readings",  # good frames that do not count: layout, pump, grade, disagreeing
    "reads",  # reads started (4 then 5)
    "reads_parked",  # MAX_READ_ATTEMPTS spoilt replies in a row: other pumps first
    "reads_failed",  # given up (MAX_PARKS, or a silent pump)
    "rereads",  # reads of a sale whose key was already committed
)


@dataclass
class _Pump:
    address: int
    quiet_polls: int = 0  # QUIET_STATUSES in a row
    fuelled: bool = False  # a 9 was seen since the last read
    end_seen_at: datetime | None = None  # the first of the quiet statuses in a row
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
    request: int  # the request byte
    received: bool = False  # any reply byte (not the echo): not a miss
    answered: bool = False  # a complete reply came, good or spoilt


class GilbarcoPoller(OneInFlight):
    """Read-only master for Gilbarco pumps on one two-wire loop (port mode ``poll``)."""

    name: ClassVar[str] = "gilbarco"
    # The only commands that may ever leave this driver (SPEC D20): 0 status,
    # 4 transaction data, 5 totals, 6 running display. Never 1 authorise,
    # 2 data next (price, preset), 3 stop, FC all stop or anything else.
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {CMD_STATUS, CMD_TRANSACTION, CMD_TOTALS, CMD_RUNNING}
    )

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = 3,
        volume_decimals: int = 2,
        money_decimals: int = 2,
        price_decimals: int = 2,
        volume_total_decimals: int = 2,
        money_total_decimals: int = 2,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if not addresses or len(set(addresses)) != len(addresses):
            raise ValueError("pump addresses: at least one, each once")
        if any(not MIN_PUMP <= a <= MAX_PUMP for a in addresses):
            raise ValueError(f"pump addresses must be {MIN_PUMP}..{MAX_PUMP}")
        at_least_one(offline_after=offline_after)
        self._pumps = {a: _Pump(a) for a in addresses}
        self._order = tuple(self._pumps.values())
        self._offline_after = offline_after
        self._dp = Decimals(
            volume=volume_decimals,
            money=money_decimals,
            price=price_decimals,
            volume_total=volume_total_decimals,
            money_total=money_total_decimals,
        )
        self._clock = clock
        self._reader = LineReader()
        self._turn = 0
        self._read: SaleRead | None = None
        self._live: _Pump | None = None  # its running display is asked next
        self._expect: _Await | None = None
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    # ------------------------------------------------------------ PollDriver

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def mid_exchange(self) -> bool:
        """A sale is being read or a running display is due: the port sends the
        next request after the inter-frame gap, not a poll interval later."""
        return self._read is not None or self._live is not None

    def next_request(self) -> bytes | None:
        if self._expect is not None:  # the port task moved on without telling us
            self._expect = None
            self._fail_step()
        if self._live is not None:
            pump, command, self._live = self._live, CMD_RUNNING, None
        else:
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
        self._counts["stale_bytes"] += self._reader.reset()  # an earlier reply's rest
        self._reader.sent(wire[0])
        self._expect = _Await(pump, command, wire[0])
        self._counts["requests"] += 1
        return wire

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._reader.receive(data, "pump"):
            if isinstance(item, Echo):
                self._counts["echo"] += 1
                continue
            aw = self._expect
            if aw is None or getattr(item, "request", None) != aw.request:
                events += self._unexpected(item)
                continue
            aw.received = True
            if isinstance(item, Rejected):
                events += self._rejected(aw, item)
                continue
            events += link_up(aw.pump, aw.pump.address)
            self._expect = None
            if isinstance(item, StatusReply):
                events += self._on_status(aw.pump, item.status)
            elif isinstance(item, DataReply):
                self._counts["frames"] += 1
                events += self._on_frame(aw.pump, item)
            elif isinstance(item, RunningReply):
                self._counts["running_rx"] += 1
                events += self._on_running(aw.pump, item.words)
        aw = self._expect
        if aw is not None and self._reader.buffered:
            aw.received = True  # part of a reply: the pump is there
        if aw is not None and self._reader.pending is None and not self._reader.buffered:
            self._expect = None  # the exchange ended without a good reply: spoilt
            if aw.answered:
                events += link_up(aw.pump, aw.pump.address)
            self._fail_step()
        return events

    def response_timeout(self) -> list[Event]:
        aw = self._expect
        if aw is None:
            return []
        events: list[Event] = []
        for item in self._reader.flush():
            if isinstance(item, Rejected):
                events += self._rejected(aw, item)
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

    def _unexpected(self, item: object) -> list[Event]:
        self._counts["unexpected"] += 1
        if isinstance(item, Rejected):
            self._count_error(item)
        address = self._expect.pump.address if self._expect is not None else None
        detail = f"{type(item).__name__} while no reply of ours is awaited"
        return [ProtocolError("unexpected", detail, address)]

    def _count_error(self, item: Rejected) -> None:
        kind = item.error.kind
        if kind == "garbage":
            self._counts["garbage_bytes"] += item.size
        elif kind in self._counts:
            self._counts[kind] += 1

    def _rejected(self, aw: _Await, item: Rejected) -> list[Event]:
        self._count_error(item)
        if item.error.kind == "bad_lrc":
            aw.answered = True  # a whole frame came: the pump is there
        return [ProtocolError(item.error.kind, item.error.detail, aw.pump.address)]

    def _end_without_reply(self) -> list[Event]:
        """The awaited reply will not come: count a miss, fail the read step.

        Nothing but the echo is a miss, and a read then stops at once (a
        silent pump is not helped by asking again); a spoilt reply is retried.
        """
        aw = self._expect
        assert aw is not None
        self._expect = None
        events: list[Event] = []
        pump = aw.pump
        if not aw.received:
            events += link_down(pump, pump.address, self._offline_after)
        if self._read is not None and self._read.address == pump.address:
            if not aw.received:
                self._give_up()
            else:
                self._fail_step()
        return events

    def _on_status(self, pump: _Pump, status: int) -> list[Event]:
        self._counts["status_rx"] += 1
        state = STATUS_STATE.get(status)
        if state is None:  # 0 data error or D: says nothing of the nozzle
            if status == STATUS_DATA_ERROR:
                self._counts["data_errors"] += 1
            return []
        if status == STATUS_BUSY:
            pump.fuelled = True
            self._live = pump
        if status not in QUIET_STATUSES or (status == STATUS_CALL and not pump.fuelled):
            # A lift with no fill to read: the next transaction begins; the end
            # shown so far is over (a later end gets its own time).
            pump.quiet_polls, pump.end_seen_at, pump.settled = 0, None, False
            return [NozzleStatus(pump.address, PUMP_NOZZLE, state)]
        pump.quiet_polls += 1
        if pump.end_seen_at is None:
            pump.end_seen_at = self._clock()
        if pump.quiet_polls >= END_POLLS and self._read is None:
            new_end = pump.quiet_polls == END_POLLS
            if (
                status == STATUS_PEOT
                or (status == STATUS_FEOT and (new_end or not pump.settled))
                or pump.fuelled
            ):
                self._read = SaleRead(pump.address)
                self._counts["reads"] += 1
        return [NozzleStatus(pump.address, PUMP_NOZZLE, state)]

    def _on_running(self, pump: _Pump, words: bytes) -> list[Event]:
        money = words_value(words)
        if money is None:
            self._counts["bad_message"] += 1
            detail = f"running display {words.hex(' ').upper()} is not digits"
            return [ProtocolError("bad_message", detail, pump.address)]
        amount = scaled(money, self._dp.money)
        return [NozzleStatus(pump.address, PUMP_NOZZLE, NozzleState.FUELLING, amount=amount)]

    def _on_frame(self, pump: _Pump, item: DataReply) -> list[Event]:
        read = self._read
        if read is None or read.address != pump.address:  # 4 and 5 are only sent while reading
            self._counts["bad_readings"] += 1
            return [ProtocolError("unexpected", "a data frame outside a read", pump.address)]
        result = read.on_frame(item.frame)
        if isinstance(result, ProtocolError):
            self._counts["bad_readings"] += 1
            self._fail_step()
            return [ProtocolError(result.kind, result.detail, pump.address)]
        if result is None:
            return []
        self._read = None
        return self._complete(read, result)

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
        pump = self._pumps[read.address]
        pump.settled = pump.fuelled = False
        self._counts["reads_failed"] += 1

    def _complete(self, read: SaleRead, grade: GradeTotals) -> list[Event]:
        """The read is complete: the Sale, unless its key is already committed."""
        pump, txn = self._pumps[read.address], read.transaction
        assert txn is not None
        pump.fuelled = False
        key = sale_key(txn, grade)
        ended_at, pump.end_seen_at = pump.end_seen_at, None
        if key in pump.committed:
            pump.settled = True
            self._counts["rereads"] += 1
            return []
        pump.settled = False
        if pump.last_sale is None or pump.last_sale.key != key:
            when = ended_at or self._clock()
            parts = SaleParts(txn, grade, read.raw)
            pump.last_sale = sale_of(pump.address, parts, when, self._dp)
        self._counts["sales"] += 1
        return [pump.last_sale]
