"""CK1313 (宝德尔, 老长空 non-card) as a read-only poll master, sans-IO.

:class:`Ck1313Poller` implements :class:`protocols.base.PollDriver` for one
4-wire current loop, fuelling points 1..6 (framing:
:mod:`~protocols.ck1313.framer`; commands and layouts:
:mod:`~protocols.ck1313.messages`). Citations ``:N`` are
``fangym0335/first src/lischn006.c:N``.

Polling. Each turn asks one pump its status (``D5``), round robin. A pump
has one nozzle (:data:`protocols.totalsale.NOZZLE`); its state is reported
as a :class:`NozzleStatus` when it changes (80 idle, 00 lifted, 20
fuelling, A0 authorised = idle; messages doc).

A sale. The pump numbers nothing and shows its last sale until the next
fill (``D9``), next to its totals (``C5``); the FCC reads totals when the
nozzle is hung up after a fill and reads the sale only if they moved
(``:1092-1200``). This driver reads (:class:`~protocols.totalsale.SaleRead`)
``C5``, ``D9``, ``B6`` (price) again and again until complete readings in
a row agree (two when the totals before the sale are known and the
difference is the sale, else three: the XOR ignores bit 7, so a value is
believed only when repeated) — when a pump goes back to idle after lifted
or fuelling;
on every link-up (a sale that ended while we were away, or was not yet
committed when we stopped, is the one the pump shows); at the first idle
status after its last sale was committed (the simulator queues several);
and every ``totals_every`` idle polls (a fill between two polls, fuel
drawn without a visible end). The first ``C5`` ends the read when it shows
totals already known (those of the last committed sale). A pump is only
read when idle: D9 shows the fill in progress otherwise.

The result: ``Sale`` with ``key`` and ``order_no`` from the totals after it
(:mod:`protocols.totalsale`: why that key stores a sale read twice once and
keeps two equal sales apart), ``ended_at`` = ``clock()`` when the driver
first saw the pump idle after the fill (at start-up or for a fill between
two polls: when it was read), ``grade`` "" (the wire carries none). Totals
moved with no sale shown (D9 all zero) is reported as ``unexpected``; the
edge checks see the gap at the next sale. Agreed totals are a
:class:`Totals` event.

Store first. A sale is shown until the next fill; the driver offers it
(the same object, same key) on every read that finds it until
:meth:`sale_committed` names its key; only then are its totals "known".

Line errors. The XOR check ignores bit 7 (framer doc): a status byte
flipped into a wrong state costs at most one extra read; a sale value
flipped is not believed, because the reading with it differs from the
others. A reply from another address is ``unexpected`` (we keep waiting);
our own request heard back (4 bytes) is skipped; D9, C5 and B6 replies
must carry their command before ``X`` (as the FCC checks, ``:1069``,
``:1354``, ``:1793``), the D5 reply need not (``:1551``).

Link. ``PumpLink(online=False)`` after ``offline_after`` requests in a row
got no byte at all (the FCC's ``MAX_FAIL_CNT`` is 3,
``fangym0335/first src/pub.h:99``); ``online=True`` at the first reply,
even a spoilt one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from protocols.base import ForbiddenCommand
from protocols.bcd import scaled
from protocols.ck1313.framer import MIN_FRAME_LEN, Frame, FrameDecoder, unit_of
from protocols.ck1313.messages import (
    CMD_PRICE,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    COMMAND_NAMES,
    REPLY_LEN,
    TOTAL_DIGITS,
    Status,
    build_request,
    parse_reply,
)
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale, Totals
from protocols.totalsale import NOZZLE, Decimals, Finished, SaleRead, sale_of

#: Idle status polls of a pump between two totals checks: catches a fill
#: that began and ended between two polls (no end seen) and re-offers a
#: sale the store refused. At the default 1 s idle poll ≈ 30 s per pump,
#: one 14-byte reply each (D20: do not crowd the line).
TOTALS_EVERY = 30

#: After a read that failed, idle polls before the next try: other pumps
#: and this pump's state first, a noisy line a moment to settle.
RETRY_AFTER = 5

#: The three steps of one reading (module doc).
READ_STEPS = (CMD_TOTALS, CMD_SALE, CMD_PRICE)

_BUSY = (NozzleState.LIFTED, NozzleState.FUELLING)

#: The driver's own counters (the decoder adds frames, bad_lrc, garbage_bytes …).
_COUNTERS = (
    *("requests", "timeouts", "unexpected", "echo", "frames_rx", "sales", "stale_bytes"),
    "reads",  # readings started (C5, D9, B6 until two agree)
    "reads_failed",  # given up: spoilt replies, a silent pump or no two alike
    "rereads",  # reads that found the uncommitted sale again
    "bad_readings",  # replies that do not count: layout, command, BCD
    "no_sale_shown",  # totals moved, the pump shows no sale
)


@dataclass
class _Pump:
    address: int
    unit: int
    online: bool | None = None  # None: never answered yet
    misses: int = 0
    state: NozzleState | None = None
    reported: NozzleState | None = None
    read_due: bool = False
    recheck: bool = False  # a sale was committed: check totals at the next idle status
    idle_polls: int = 0  # idle status polls since the last totals check
    end_seen_at: datetime | None = None
    baseline: tuple[int, int] | None = None  # totals with nothing left to report
    pending: Sale | None = None  # offered, not yet committed
    pending_totals: tuple[int, int] | None = None
    totals: tuple[int, int] | None = None  # last Totals reported

    def known(self) -> set[tuple[int, int]]:
        return {t for t in (self.baseline, self.pending_totals) if t is not None}


@dataclass
class _Await:
    pump: _Pump
    command: int
    request: bytes
    received: bool = False  # any byte: the pump is there, even if the reply is spoilt


class Ck1313Poller:
    """Read-only master for CK1313 pumps on one loop (port mode ``poll``)."""

    name: ClassVar[str] = "ck1313"
    # The only commands that may ever leave this driver (SPEC D20), each a
    # bare 4-byte query. Never E5 host control, C3 authorise, CA stop, B2
    # price or B9/B5 preset (messages doc).
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {CMD_STATUS, CMD_SALE, CMD_TOTALS, CMD_PRICE}
    )

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = 3,
        totals_every: int = TOTALS_EVERY,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if not addresses or len(set(addresses)) != len(addresses):
            raise ValueError("pump addresses: at least one, each once")
        if offline_after < 1 or totals_every < 1:
            raise ValueError("offline_after and totals_every must be at least 1")
        self._pumps = {a: _Pump(a, unit_of(a)) for a in addresses}  # unit_of checks 1..6
        self._order = tuple(self._pumps.values())
        self._offline_after = offline_after
        self._totals_every = totals_every
        self._dp = Decimals(volume_decimals, amount_decimals, price_decimals)
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
        """A sale is being read: the next step follows after the inter-frame gap."""
        return self._read is not None

    def next_request(self) -> bytes | None:
        if self._await is not None:  # the port moved on without telling us
            self._await = None
            self._spoilt()
        if self._read is None:
            pump = self._order[self._turn]
            self._turn = (self._turn + 1) % len(self._order)
            if pump.read_due and pump.online and pump.state not in _BUSY:
                pump.read_due, pump.idle_polls = False, 0
                self._read = SaleRead(pump.address, READ_STEPS, pump.known(), pump.baseline)
                self._counts["reads"] += 1
        if self._read is not None:
            pump, command = self._pumps[self._read.address], self._read.step
        else:
            command = CMD_STATUS
        wire = self._emit(command, pump.address)
        self._counts["stale_bytes"] += self._decoder.reset()  # an earlier reply's rest
        self._decoder.expect = REPLY_LEN[command]
        self._await = _Await(pump, command, wire)
        self._counts["requests"] += 1
        return wire

    def receive_data(self, data: bytes) -> list[Event]:
        if self._await is not None and data:
            self._await.received = True
        events: list[Event] = []
        for item in self._decoder.receive_data(data):
            aw = self._await
            address = None if aw is None else aw.pump.address
            if isinstance(item, ProtocolError):
                events.append(ProtocolError(item.kind, item.detail, address))
                if aw is not None and item.kind == "bad_lrc":  # the reply came, spoilt
                    events += self._spoilt_reply(aw)
                continue
            self._counts["frames_rx"] += 1
            events += self._on_frame(item)
        return events

    def response_timeout(self) -> list[Event]:
        aw = self._await
        if aw is None:
            return []
        address = aw.pump.address
        events: list[Event] = [
            ProtocolError(item.kind, item.detail, address)
            for item in self._decoder.flush()
            if isinstance(item, ProtocolError)
        ]
        self._counts["timeouts"] += 1
        detail = "no complete reply" if aw.received else "no reply"
        events.append(ProtocolError("timeout", f"pump {address}: {detail}", address))
        self._await = None
        pump = aw.pump
        if aw.received:
            self._spoilt()
            return events
        pump.misses += 1
        if self._read is not None and self._read.address == address:
            self._give_up()  # a silent pump is not helped by asking again
        if pump.misses >= self._offline_after and pump.online is not False:
            pump.online, pump.state, pump.reported = False, None, None
            events.append(PumpLink(address, online=False))
        return events

    def sale_committed(self, sale: Sale) -> None:
        pump = self._pumps.get(sale.address)
        if pump is None or pump.pending is None or pump.pending.key != sale.key:
            return  # not a sale of ours, or one already settled
        pump.baseline, pump.pending, pump.pending_totals = pump.pending_totals, None, None
        pump.recheck = True  # another behind it? (one C5 when there is none)

    # ------------------------------------------------------------ internals

    def _emit(self, command: int, address: int) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        if command not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"command {command:02X} is not read-only (D20)")
        if address not in self._pumps:
            raise ForbiddenCommand(f"pump {address} is not polled on this line")
        return build_request(address, command)

    def _on_frame(self, frame: Frame) -> list[Event]:
        aw = self._await
        if aw is None:
            self._counts["unexpected"] += 1
            return [ProtocolError("unexpected", f"{_show(frame)} while no reply is awaited")]
        address = aw.pump.address
        if len(frame.raw) == MIN_FRAME_LEN and frame.raw == aw.request:
            self._counts["echo"] += 1  # our own request heard back
            return []
        if frame.unit != aw.pump.unit or len(frame.raw) != REPLY_LEN[aw.command]:
            self._counts["unexpected"] += 1
            detail = f"{_show(frame)} while waiting for pump {address}'s reply"
            return [ProtocolError("unexpected", detail, address)]
        if aw.command != CMD_STATUS and frame.command != aw.command:
            detail = f"{COMMAND_NAMES[aw.command]} reply carries {frame.command:02X}"
            return [ProtocolError("bad_message", detail, address), *self._spoilt_reply(aw)]
        reply = parse_reply(frame, aw.command)
        if isinstance(reply, ProtocolError):
            error = ProtocolError(reply.kind, reply.detail, address)
            return [error, *self._spoilt_reply(aw)]
        self._await = None
        events = self._link_up(aw.pump)
        if isinstance(reply, Status):
            return events + self._on_status(aw.pump, reply)
        read = self._read
        assert read is not None and read.address == address  # reads only during a read
        outcome = read.on_part(reply.part(), frame.raw)
        if outcome is not None:
            self._read = None
            events += self._finish(aw.pump, outcome)
        return events

    def _spoilt_reply(self, aw: _Await) -> list[Event]:
        """A reply came but does not count: the pump is there; ask the step again."""
        self._counts["bad_readings"] += 1
        self._await = None
        events = self._link_up(aw.pump)
        self._spoilt()
        return events

    def _spoilt(self) -> None:
        read = self._read
        if read is not None and not read.spoilt():
            self._give_up()

    def _give_up(self) -> None:
        read = self._read
        assert read is not None
        self._read = None
        self._counts["reads_failed"] += 1
        pump = self._pumps[read.address]
        pump.idle_polls = max(0, self._totals_every - RETRY_AFTER)

    def _link_up(self, pump: _Pump) -> list[Event]:
        pump.misses = 0
        if pump.online is True:
            return []
        pump.online, pump.read_due, pump.reported = True, True, None
        return [PumpLink(pump.address, online=True)]

    def _on_status(self, pump: _Pump, status: Status) -> list[Event]:
        state = status.state
        if state is NozzleState.IDLE:
            if pump.state in _BUSY:
                pump.read_due, pump.end_seen_at = True, self._clock()
            elif pump.recheck:
                pump.read_due, pump.recheck = True, False
            else:
                pump.idle_polls += 1
                if pump.idle_polls >= self._totals_every:
                    pump.read_due = True
        pump.state = state
        if state is pump.reported:
            return []
        pump.reported = state
        return [NozzleStatus(pump.address, NOZZLE, state)]

    def _finish(self, pump: _Pump, outcome: Finished) -> list[Event]:
        if outcome.verdict == "disagreed":
            self._counts["reads_failed"] += 1
            pump.idle_polls = max(0, self._totals_every - RETRY_AFTER)
            detail = f"pump {pump.address}: no two readings of its last sale agree"
            return [ProtocolError("bad_message", detail, pump.address)]
        ended_at, pump.end_seen_at = pump.end_seen_at, None
        if outcome.verdict == "known":
            return self._known(pump, outcome.totals)
        reading = outcome.reading
        assert reading is not None
        events: list[Event] = []
        if reading.totals != pump.totals:
            pump.totals = reading.totals
            events.append(self._totals_event(pump, reading.totals))
        if reading.totals in pump.known():
            return events + self._known(pump, reading.totals)
        if reading.volume == 0 and reading.amount == 0:
            moved = pump.baseline is not None
            pump.baseline = reading.totals  # nothing to store: these totals are settled
            if moved:
                self._counts["no_sale_shown"] += 1
                detail = f"pump {pump.address}: totals moved, no sale shown"
                events.append(ProtocolError("unexpected", detail, pump.address))
            return events
        sale = sale_of(
            pump.address,
            reading,
            ended_at=ended_at or self._clock(),
            dp=self._dp,
            total_digits=TOTAL_DIGITS,
        )
        pump.pending, pump.pending_totals = sale, reading.totals
        self._counts["sales"] += 1
        return [*events, sale]

    def _known(self, pump: _Pump, totals: tuple[int, int] | None) -> list[Event]:
        """Totals already known: nothing new, or the uncommitted sale again."""
        if pump.pending is not None and totals == pump.pending_totals:
            self._counts["rereads"] += 1
            return [pump.pending]  # the store refused it before: offer it again
        return []

    def _totals_event(self, pump: _Pump, totals: tuple[int, int]) -> Totals:
        return Totals(
            pump.address,
            NOZZLE,
            scaled(totals[0], self._dp.volume),
            scaled(totals[1], self._dp.amount),
        )


def _show(frame: Frame) -> str:
    return frame.raw.hex(" ").upper()
