"""One read-only poll master for the families keyed by totals (CK1313, Lanfeng), sans-IO.

A family subclasses :class:`TotalsPoller` with its framing and commands
(the hooks at the end); everything else is shared and described here.

Polling. Each turn asks one pump its status (:attr:`TotalsPoller.STATUS`),
round robin. A pump has one nozzle (:data:`protocols.totalsale.NOZZLE`);
its state is a :class:`NozzleStatus` when it changes (with the running
volume, amount and price where the status reply carries them).

A sale (:mod:`protocols.totalsale`). The pump shows its last sale next to
its totals and numbers nothing. The driver reads :attr:`TotalsPoller.STEPS`
again and again until complete readings in a row agree (two when the
totals before the sale are known and the difference is the sale, else
three) — when a pump goes idle after lifted or fuelling; on every link-up
(a sale that ended while we were away, or was not yet committed when we
stopped, is the one the pump shows); at the first idle status after its
last sale was committed (the simulators queue several); and every
``totals_every`` idle polls (a fill between two polls, a refused sale
offered again). The first reading ends the read when its totals are
already known (those of the last committed sale). A pump is only read when
its last status was idle; a reading whose status step shows it busy is
abandoned (the next end starts a new one).

The result: a :class:`Sale` keyed by the totals after it, ``ended_at`` =
``clock()`` when the driver first saw the pump idle after the fill (else
when read), ``grade`` "" (no grade on these wires). Totals that moved with
no sale shown are ``unexpected``. Agreed totals are a :class:`Totals` event.

Store first. The pump shows its sale until the next fill; the driver offers
it (the same object) on every read that finds it until
:meth:`TotalsPoller.sale_committed` names its key; only then are its totals
"known".

Link. ``PumpLink(online=False)`` after ``offline_after`` requests in a row
got no byte at all; ``online=True`` at the first reply, even a spoilt one.
A spoilt reply (bad check, wrong layout) starts the reading under way
again from its first step (so a reading is always consecutive good
replies), up to :data:`protocols.totalsale.MAX_STEP_TRIES` in a row; then
the read is parked — the
other pumps have their turns and it goes on at this pump's next turn,
before any status poll, up to :data:`protocols.totalsale.MAX_PARKS` times.
A silent pump ends a read at once (and a parked one, when it goes offline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol

from protocols.base import ForbiddenCommand, OneInFlight, at_least_one, link_down
from protocols.bcd import scaled
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale, Totals
from protocols.totalsale import NOZZLE, Decimals, Finished, SaleRead, sale_of

#: Idle status polls of a pump between two totals checks: catches a fill
#: that began and ended between two polls (no end seen) and re-offers a
#: sale the store refused. At the default 1 s idle poll ≈ 30 s per pump,
#: one or two short exchanges each (D20: do not crowd the line).
TOTALS_EVERY = 30

#: After a read that failed, idle polls before the next try: other pumps
#: and this pump's state first, a noisy line a moment to settle.
RETRY_AFTER = 5

BUSY = (NozzleState.LIFTED, NozzleState.FUELLING)

#: The driver's own counters (the decoder adds frames, bad checks, garbage …).
_COUNTERS = (
    *("requests", "timeouts", "unexpected", "echo", "frames_rx", "sales", "stale_bytes"),
    "reads",  # reads started (the steps until readings agree)
    "reads_parked",  # spoilt replies in a row: other pumps first, then the read goes on
    "reads_failed",  # given up: parked too often, a silent pump, no readings alike, busy again
    "rereads",  # reads that found the uncommitted sale again
    "bad_readings",  # replies that do not count: layout, command, BCD, state
    "no_sale_shown",  # totals moved, the pump shows no sale
)


class Reply(Protocol):
    """A parsed reply: ``part()`` for a reading; ``state`` when it reports one."""

    @property
    def state(self) -> NozzleState | None: ...

    def part(self) -> dict[str, int]: ...


class Decoder(Protocol):
    counters: dict[str, int]

    def receive_data(self, data: bytes) -> list[Any]: ...

    def flush(self) -> list[Any]: ...

    def reset(self) -> int: ...


#: What a family makes of a frame while a reply is awaited.
Taken = (
    tuple[Literal["reply"], Reply]
    | tuple[Literal["echo", "unexpected"], str]
    | tuple[Literal["spoilt"], ProtocolError]
)


@dataclass
class _Pump:
    address: int
    online: bool | None = None  # None: never answered yet
    misses: int = 0
    state: NozzleState | None = None
    reported: NozzleStatus | None = None
    read_due: bool = False
    recheck: bool = False  # a sale was committed: check totals at the next idle status
    idle_polls: int = 0  # idle status polls since the last totals check
    end_seen_at: datetime | None = None
    baseline: tuple[int, int] | None = None  # totals with nothing left to report
    pending: Sale | None = None  # offered, not yet committed
    pending_totals: tuple[int, int] | None = None
    totals: tuple[int, int] | None = None  # last Totals reported
    parked: SaleRead | None = None  # a read spoilt by noise, resumed at the next turn

    def known(self) -> set[tuple[int, int]]:
        return {t for t in (self.baseline, self.pending_totals) if t is not None}


@dataclass
class _Await:
    pump: _Pump
    command: int
    request: bytes
    received: bool = False  # any byte: the pump is there, even if the reply is spoilt


class TotalsPoller(OneInFlight):
    """Read-only master for one line of a family keyed by totals (module doc)."""

    name: ClassVar[str]
    ALLOWED_COMMANDS: ClassVar[frozenset[int]]
    #: The status query, and the queries of one reading, in order.
    STATUS: ClassVar[int]
    STEPS: ClassVar[tuple[int, ...]]
    #: Digits of a totalizer on the wire (``order_no`` and the key).
    TOTAL_DIGITS: ClassVar[int]

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
        at_least_one(offline_after=offline_after, totals_every=totals_every)
        for address in addresses:
            self._check_address(address)
        self._pumps = {a: _Pump(a) for a in addresses}
        self._order = tuple(self._pumps.values())
        self._offline_after = offline_after
        self._totals_every = totals_every
        self._dp = Decimals(volume_decimals, amount_decimals, price_decimals)
        self._clock = clock
        self._decoder = self._new_decoder()
        self._turn = 0
        self._read: SaleRead | None = None
        self._expect: _Await | None = None
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    # ------------------------------------------------------------ PollDriver

    @property
    def counters(self) -> dict[str, int]:
        return {**self._decoder.counters, **self._counts}

    @property
    def mid_exchange(self) -> bool:
        """A sale is being read: the next step follows after the inter-frame gap."""
        return self._read is not None

    def next_request(self) -> bytes | None:
        if self._expect is not None:  # the port moved on without telling us
            self._expect = None
            self._spoilt()
        if self._read is None:
            pump = self._order[self._turn]
            self._turn = (self._turn + 1) % len(self._order)
            self._read, pump.parked = pump.parked, None
            if self._read is None and pump.read_due and pump.online and pump.state not in BUSY:
                pump.read_due, pump.idle_polls = False, 0
                self._read = SaleRead(pump.address, self.STEPS, pump.known(), pump.baseline)
                self._counts["reads"] += 1
        if self._read is not None:
            pump, command = self._pumps[self._read.address], self._read.step
        else:
            command = self.STATUS
        wire = self._emit(command, pump.address)
        self._counts["stale_bytes"] += self._decoder.reset()  # an earlier reply's rest
        self._prepare(command)
        self._expect = _Await(pump, command, wire)
        self._counts["requests"] += 1
        return wire

    def receive_data(self, data: bytes) -> list[Event]:
        if self._expect is not None and data:
            self._expect.received = True
        events: list[Event] = []
        for item in self._decoder.receive_data(data):
            aw = self._expect
            address = None if aw is None else aw.pump.address
            if isinstance(item, ProtocolError):
                events.append(ProtocolError(item.kind, item.detail, address))
                if aw is not None and self._spoils(item):  # the reply came, spoilt
                    events += self._spoilt_reply(aw)
                continue
            self._counts["frames_rx"] += 1
            events += self._on_frame(item)
        return events

    def response_timeout(self) -> list[Event]:
        aw = self._expect
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
        self._expect = None
        pump = aw.pump
        if aw.received:
            self._spoilt()
            return events
        if self._read is not None and self._read.address == address:
            self._give_up()  # a silent pump is not helped by asking again
        down = link_down(pump, address, self._offline_after)
        if down:
            pump.state, pump.reported, pump.parked = None, None, None
        return events + down

    def sale_committed(self, sale: Sale) -> None:
        pump = self._pumps.get(sale.address)
        if pump is None or pump.pending is None or pump.pending.key != sale.key:
            return  # not a sale of ours, or one already settled
        pump.baseline, pump.pending, pump.pending_totals = pump.pending_totals, None, None
        pump.recheck = True  # another behind it? (one exchange when there is none)

    # ------------------------------------------------------------ hooks

    def _check_address(self, address: int) -> None:
        """Raise ValueError for an address this family cannot carry."""
        raise NotImplementedError

    def _new_decoder(self) -> Decoder:
        raise NotImplementedError

    def _request(self, command: int, address: int) -> bytes:
        """The bytes of the read-only query ``command`` to ``address`` (already allowed)."""
        raise NotImplementedError

    def _prepare(self, command: int) -> None:
        """A request of ``command`` is about to leave: prepare the decoder for its reply."""

    def _spoils(self, error: ProtocolError) -> bool:
        """Whether a framing error while a reply is awaited is that reply, spoilt."""
        return False

    def _take(self, frame: Any, address: int, command: int, request: bytes) -> Taken:
        """What ``frame`` is while pump ``address``'s reply to ``command`` is awaited."""
        raise NotImplementedError

    # ------------------------------------------------------------ internals

    def _emit(self, command: int, address: int) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        if command not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"command {command:02X} is not read-only (D20)")
        if address not in self._pumps:
            raise ForbiddenCommand(f"pump {address} is not polled on this line")
        return self._request(command, address)

    def _on_frame(self, frame: Any) -> list[Event]:
        aw = self._expect
        if aw is None:
            self._counts["unexpected"] += 1
            return [ProtocolError("unexpected", f"{_show(frame)} while no reply is awaited")]
        address = aw.pump.address
        taken = self._take(frame, address, aw.command, aw.request)
        if taken[0] == "echo":
            self._counts["echo"] += 1  # our own request heard back
            return []
        if taken[0] == "unexpected":
            self._counts["unexpected"] += 1
            return [ProtocolError("unexpected", taken[1], address)]
        if taken[0] == "spoilt":
            error = taken[1]
            return [ProtocolError(error.kind, error.detail, address), *self._spoilt_reply(aw)]
        reply = taken[1]
        self._expect = None
        events = self._link_up(aw.pump)
        read = self._read
        if read is None:
            return events + self._on_status(aw.pump, reply)
        assert read.address == address  # steps are asked only for the pump read
        if reply.state is not None:
            events += self._on_status(aw.pump, reply)
            if reply.state is not NozzleState.IDLE:  # busy again: the sale shown is gone
                self._read = None
                self._counts["reads_failed"] += 1
                return events
        outcome = read.on_part(reply.part(), getattr(frame, "raw", b""))
        if outcome is not None:
            self._read = None
            events += self._finish(aw.pump, outcome)
        return events

    def _spoilt_reply(self, aw: _Await) -> list[Event]:
        """A reply came but does not count: the pump is there; ask the step again."""
        self._counts["bad_readings"] += 1
        self._expect = None
        events = self._link_up(aw.pump)
        self._spoilt()
        return events

    def _spoilt(self) -> None:
        """A spoilt reply: ask the step again, park the read, or give it up."""
        read = self._read
        if read is None or read.spoilt():
            return
        if read.park():
            self._read, self._pumps[read.address].parked = None, read
            self._counts["reads_parked"] += 1
        else:
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

    def _on_status(self, pump: _Pump, reply: Reply) -> list[Event]:
        state = reply.state
        if state is None:
            return []
        if state is NozzleState.IDLE and self._read is None:
            if pump.state in BUSY:
                pump.read_due, pump.end_seen_at = True, self._clock()
            elif pump.recheck:
                pump.read_due, pump.recheck = True, False
            else:
                pump.idle_polls += 1
                if pump.idle_polls >= self._totals_every:
                    pump.read_due = True
        pump.state = state
        status = self._nozzle_status(pump.address, state, reply)
        if status == pump.reported:
            return []
        pump.reported = status
        return [status]

    def _nozzle_status(self, address: int, state: NozzleState, reply: Reply) -> NozzleStatus:
        """The state as reported; the running fill's values where the reply has them."""
        return NozzleStatus(address, NOZZLE, state)

    def _finish(self, pump: _Pump, outcome: Finished) -> list[Event]:
        if outcome.verdict == "disagreed":
            self._counts["reads_failed"] += 1
            pump.idle_polls = max(0, self._totals_every - RETRY_AFTER)
            detail = f"pump {pump.address}: no readings of its last sale agree"
            return [ProtocolError("bad_message", detail, pump.address)]
        ended_at, pump.end_seen_at = pump.end_seen_at, None
        if outcome.verdict == "known":
            return self._known(pump, outcome.totals)
        reading = outcome.reading
        assert reading is not None
        events: list[Event] = []
        if reading.totals != pump.totals:
            pump.totals = reading.totals
            events.append(self._totals_event(pump.address, reading.totals))
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
            total_digits=self.TOTAL_DIGITS,
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

    def _totals_event(self, address: int, totals: tuple[int, int]) -> Totals:
        volume: Decimal = scaled(totals[0], self._dp.volume)
        return Totals(address, NOZZLE, volume, scaled(totals[1], self._dp.amount))


def _show(frame: Any) -> str:
    raw: bytes = getattr(frame, "raw", b"")
    return raw.hex(" ").upper()
