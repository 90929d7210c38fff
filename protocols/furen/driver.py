"""Furen Haosheng (富仁豪升) as a read-only poll master, sans-IO.

:class:`FurenPoller` implements :class:`protocols.base.PollDriver` for one
RS-422 line with one fuelling point: the protocol has no pump address (every
request the FCC builds has ``[1] = [2] = 00``,
``fangym0335/first src/lischn009.c:1506-1507``), so a port lists exactly one
address (1) and its nozzles (``nozzles``, 1..8) come from the config.

Commands (SPEC D20), each through one choke point, :meth:`_emit`:

- ``56`` read a nozzle's sale record and ``58`` its totals — reads that
  change nothing (docs/protocols/furen.md);
- ``30`` status, only with ``status_with_clock``: it carries the station's
  clock, and what the pump does with it is not in the source. Off by
  default (docs/protocols/furen.md, "The clock in the status request").

Turns, one request each: every nozzle's ``56`` in turn, with a ``30``
before each when ``status_with_clock``; every nozzle's ``58`` when the
pump comes online and then every ``totals_every`` rounds. A reply is the
answer to the request in flight when its length fits (sale 27 bytes, totals
19, status 5A / 5B) and, on a pump with several nozzles, its ``[3]`` echoes
the request's ``F0 | n`` (as the FCC checks, ``:1137``, ``:1195``); any other frame is
``ProtocolError("unexpected")`` and we keep waiting.

Sales (docs/protocols/furen.md, "Sales"). A pump keeps each nozzle's last
record and needs no acknowledgement: the read is all. A record becomes a
:class:`Sale` once ``sale_reads`` reads of that nozzle in a row, a round
apart, returned the same bytes — a record that still moves is a fill in
progress, should a pump show one (a missed read between two does not
matter: a fill's record only grows). With the status on, a read whose
volume is the volume the last status showed fuelling on that nozzle (5B
``[7..9]``) does not count: it may be that fill, paused. A record read
during a fill with another volume is not that fill, so it counts. The FCC
itself reads the record once, after the nozzle is back (``:547-562``) or
after its own stop (``:596-619``). Key, order number and time:
:mod:`protocols.furen.reading`. Store first: a sale not yet committed is
emitted again at its next stable reading (same key, same ``ended_at``);
one :meth:`sale_committed` reported is not.

Events: :class:`Sale`; :class:`Totals` from 58; :class:`NozzleStatus`
from 30 when on (without it the nozzle states are not known and none is
reported); :class:`PumpLink` online at the first reply, offline after
``offline_after`` requests in a row without one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import ClassVar, Unpack

from protocols.base import (
    ForbiddenCommand,
    Link,
    RequestReply,
    at_least_one,
    link_down,
    link_up,
)
from protocols.events import Event, ProtocolError, Sale
from protocols.furen.framer import Frame, FrameDecoder, encode_frame
from protocols.furen.messages import (
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    REQUEST_LEN,
    SALE_LEN,
    ST_FUELLING,
    ST_IDLE_OR_LIFTED,
    TOTALS_LEN,
    build_read,
    build_status,
)
from protocols.furen.reading import ADDRESS, PumpReader, one_point, sale_key
from protocols.saleline import SaleLine, SaleOptions

#: Rounds (every nozzle's 56 once) between two 58 reads of every nozzle.
#: Each sale already carries its totals; reading them apart only catches fuel
#: drawn with no record (SPEC D2, A1), which need not be seen within seconds.
TOTALS_EVERY = 50

#: Identical reads of a record before it is a sale: two, a round apart.
SALE_READS = 2

#: Committed sale keys remembered, so a record is not emitted again after
#: its commit: the last few per nozzle is all a pump can show.
MAX_COMMITTED = 32


class FurenPoller(SaleLine, RequestReply):
    """Read-only master of one Furen fuelling point (port mode ``poll``)."""

    name: ClassVar[str] = "furen"
    # The only commands that may ever leave this driver (SPEC D20): reads.
    # 30 also carries the station's clock and is sent only when the port's
    # status_with_clock says so (module doc); never 50's siblings that write
    # (51 price, 59 / 60 presets, 5D mode, 61 authorise, 62 stop).
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset({CMD_SALE, CMD_TOTALS, CMD_STATUS})

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        nozzles: int = 2,
        status_with_clock: bool = False,
        escaped: bool = False,
        sale_reads: int = SALE_READS,
        totals_every: int = TOTALS_EVERY,
        **options: Unpack[SaleOptions],
    ) -> None:
        """``options``: :class:`~protocols.saleline.SaleLine`'s."""
        one_point(addresses)  # its nozzles: PumpReader checks them
        at_least_one(sale_reads=sale_reads, totals_every=totals_every)
        super().__init__(**options)
        self._nozzles = nozzles
        self._status = status_with_clock
        self._escaped = escaped
        self._sale_reads = sale_reads
        self._totals_every = totals_every
        self._reader = PumpReader(
            ADDRESS, nozzles, scale=self._scale, grades=self._grades, clock=self._clock
        )
        self._decoder = FrameDecoder(escaped=escaped)
        self._plan: deque[tuple[int, int]] = deque()  # (command, nozzle) still to send
        self._rounds = 0
        self._expect: tuple[int, int] | None = None  # (command, nozzle) in flight
        self._link = Link()
        #: Nozzle → (the record's bytes, identical reads in a row so far).
        self._seen: dict[int, tuple[bytes, int]] = {}
        self._committed: dict[str, None] = {}
        self._counts = dict.fromkeys(("timeouts", "frames_rx", "requests", "unexpected"), 0)

    # ------------------------------------------------------------ PollDriver

    @property
    def mid_exchange(self) -> bool:
        """Never: each request is a whole exchange (its pace is the port's)."""
        return False

    @property
    def counters(self) -> dict[str, int]:
        return {**super().counters, "status_transients": self._reader.transients}

    def next_request(self) -> bytes | None:
        if not self._plan:
            self._plan_round()
        command, nozzle = self._plan.popleft()
        if command == CMD_STATUS:
            frame = build_status(self._clock())
        else:
            frame = build_read(command, nozzle)
        wire = self._emit(frame)
        self._expect = (command, nozzle)
        self._counts["requests"] += 1
        return wire

    def _no_answer(self, expect: tuple[int, int]) -> list[Event]:
        command, nozzle = expect
        what = "status" if command == CMD_STATUS else f"nozzle {nozzle} {command:02X}"
        events: list[Event] = [ProtocolError("timeout", f"no answer to {what}", ADDRESS)]
        down = link_down(self._link, ADDRESS, self._offline_after)
        if down:
            self._reader.forget()
            self._seen.clear()
        return events + down

    def sale_committed(self, sale: Sale) -> None:
        if sale.address != ADDRESS:
            return
        self._committed[sale.key] = None
        while len(self._committed) > MAX_COMMITTED:
            del self._committed[next(iter(self._committed))]

    # ------------------------------------------------------------ requests

    def _emit(self, frame: Frame) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        command = frame.command
        if command not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"command {command:02X} is not read-only (D20)")
        if command == CMD_STATUS and not self._status:
            raise ForbiddenCommand("30 carries the station's clock: status_with_clock is off")
        if len(frame.data) != REQUEST_LEN[command]:
            raise ForbiddenCommand(f"command {command:02X} with {len(frame.data)} data bytes")
        return encode_frame(frame, escaped=self._escaped)

    def _plan_round(self) -> None:
        """One round: every nozzle's 56 (each after a 30 when on), plus the 58s when due."""
        if self._rounds % self._totals_every == 0:
            self._plan.extend((CMD_TOTALS, n) for n in range(1, self._nozzles + 1))
        self._rounds += 1
        for nozzle in range(1, self._nozzles + 1):
            if self._status:
                self._plan.append((CMD_STATUS, 0))
            self._plan.append((CMD_SALE, nozzle))

    # ------------------------------------------------------------ replies

    def _answers(self, frame: Frame) -> bool:
        """Is ``frame`` the answer to the request in flight (module doc)?"""
        assert self._expect is not None
        command, nozzle = self._expect
        if command == CMD_STATUS:
            return frame.command in (ST_IDLE_OR_LIFTED, ST_FUELLING)
        want = SALE_LEN if command == CMD_SALE else TOTALS_LEN
        if len(frame.data) != want:
            return False
        return self._nozzles == 1 or frame.nozzle_byte == nozzle

    def _on_frame(self, frame: Frame) -> list[Event]:
        if self._expect is None or not self._answers(frame):
            self._counts["unexpected"] += 1
            waiting = "nothing" if self._expect is None else f"{self._expect[0]:02X}"
            detail = (
                f"{len(frame.data)}-byte frame [3] {frame.ctrl:02X} [6] {frame.command:02X}"
                f" while waiting for {waiting}"
            )
            return [ProtocolError("unexpected", detail, ADDRESS)]
        command, nozzle = self._expect
        self._expect = None
        events = link_up(self._link, ADDRESS)
        if events:
            # (Back) online: every nozzle's totals next, unless this answer or
            # the plan already has them.
            due = [(CMD_TOTALS, n) for n in range(1, self._nozzles + 1)]
            skip = {*self._plan, (command, nozzle)}
            self._plan.extendleft(reversed([t for t in due if t not in skip]))
        if command == CMD_STATUS:
            events += self._reader.status(frame)
        elif command == CMD_TOTALS:
            events.append(self._reader.totals(frame, nozzle))
        else:
            events += self._on_record(frame, nozzle)
        return events

    def _on_record(self, frame: Frame, nozzle: int) -> list[Event]:
        record = self._reader.record(frame)
        if isinstance(record, ProtocolError):
            self._seen.pop(nozzle, None)
            return [record]
        if self._reader.live_volume(nozzle) == record.volume:
            return []  # what the status shows fuelling: it may be that fill
        data = frame.data
        last, reads = self._seen.get(nozzle, (b"", 0))
        reads = reads + 1 if data == last else 1
        self._seen[nozzle] = (data, reads)
        if reads < self._sale_reads or sale_key(nozzle, record) in self._committed:
            return []
        sale = self._reader.sale(nozzle, record, data)
        return [] if sale is None else [sale]
