"""Sinopec card-dispenser link (卡机联动 V1.1) as a read-only poll master, sans-IO.

:class:`SinopecPoller` implements :class:`protocols.base.PollDriver` for one
line with one or more pumps. Each turn it asks one pump, round robin:

- a 3C *confirmation* when a sale from that pump is committed in the store
  and not yet confirmed (store first, SPEC D6), otherwise
- a queued *read* (38 totals, 3A read info, 3B error info; in the order
  queued, each at most once, so none starves), at most one between two
  polls of the same pump so sales keep flowing, otherwise
- a 30 *poll*. The pump answers a poll with its oldest unconfirmed 32
  transaction record, or with a 31 real-time report; it answers a
  confirmation with a 31 or its next 32.

Reads are queued (each at most once) when a pump comes online — 3B, the
pump-wide 3A and, per nozzle seen, 3A and 38 — when a nozzle is first seen
in a 31 (its 3A and 38), and then every ``errors_every`` / ``totals_every``
/ ``info_every`` polls of that pump (3B / 38 per nozzle / all 3A). A pump
that never answered one of these commands since it came online and missed
it :data:`UNSUPPORTED_AFTER` times in a row is not asked it again until it
next comes online: pumps without the vendor extension cost nothing. Only
missed polls and confirmations count towards ``offline_after``.

ctrl byte (protocols.md §2, "ctrl"): bits 0–5 are the frame number, which we
increment per request (0 … 0x3F, then 0 again) and the pump echoes; bit 6
marks the calling side — the sources disagree on its polarity, so
``caller_bit_set`` chooses whether our requests set it. Bit 7 is left 0.

A frame is *the* response only when it comes from the polled address, to our
master address, with our frame number; anything else (another master's
traffic, our own echo on a two-wire line, a late answer to an earlier
request) is reported as ``ProtocolError("unexpected")`` and we keep waiting.
The response is handled by its own command, whatever was asked.
3B answers are diffed per pump into raised / cleared
:class:`~protocols.events.DeviceAlarm` events (SPEC D14).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocols.base import ForbiddenCommand, RequestReply, answered, at_least_one, missed
from protocols.events import Event, NozzleStatus, ProtocolError, Sale
from protocols.sinopec.content import AnswerReader
from protocols.sinopec.extensions import (
    CMD_ERROR_INFO,
    CMD_READ_INFO,
    CMD_TOTALS,
    ERROR_QUERY_LEN,
    PUMP_WIDE,
    QUERY_LEN,
    build_error_query,
    build_info_query,
    build_totals_query,
)
from protocols.sinopec.framer import (
    FRAME_NO_MASK,
    SYNC,
    Frame,
    FrameDecoder,
    encode_frame,
)
from protocols.sinopec.messages import (
    CMD_CONFIRM,
    CMD_POLL,
    CONFIRM_LEN,
    build_confirm,
    build_poll,
)

#: ctrl bit 6 marks the calling side (protocols.md §2; polarity configurable).
CALLER_BIT = 0x40

#: The POS / PC side uses addresses 0xE0–0xF9 (protocols.md §2, "Addresses").
DEFAULT_MASTER_ADDRESS = 0xE0

#: Committed sales waiting for their confirmation, per pump. The pump offers
#: one record per poll and we confirm on the next turn, so more than a few
#: means the pump ignores our confirmations; beyond this many the oldest is
#: forgotten (the pump offers it again and the store deduplicates it).
MAX_UNCONFIRMED = 64

#: POS_TTC is 4 bytes (protocols.md §2, transaction record).
MAX_POS_TTC = 0xFFFFFFFF

#: Polls of a pump between two 3B error reads. Alarms are "real-time"
#: (SPEC D14): at a 100 ms poll interval 20 polls is about 2 s per pump, for
#: about 5 % of the line's time (D20: do not crowd the station's own link).
ERRORS_EVERY = 20

#: Polls of a pump between two 38 reads of each nozzle. Every sale already
#: carries V_TOT; reading totals on their own only catches fuel drawn with
#: no record (SPEC D2, A1), which need not be seen within seconds: ~10 s.
TOTALS_EVERY = 100

#: Polls of a pump between two full 3A reads. Parts change with the power
#: off (and every link-up re-reads them); the periodic read catches a swap
#: the pump survived, within ~2 minutes (SPEC D13, A6).
INFO_EVERY = 1200

#: Consecutive misses after which a read command a pump never answered is
#: not sent to it again until it next comes online: a pump without the
#: vendor extension stays silent. 5 misses in a row on a line so bad that
#: each try fails with p = 0.25 happens 1 in 1000 times, and only costs the
#: reads until the next link-up.
UNSUPPORTED_AFTER = 5

_READS = (CMD_TOTALS, CMD_READ_INFO, CMD_ERROR_INFO)


class SinopecPoller(RequestReply):
    """Read-only master for Sinopec pumps on one line (port mode ``poll``)."""

    name: ClassVar[str] = "sinopec"
    # The only commands that may ever leave this driver (SPEC D20). Each one
    # only asks; none changes a price, a parameter, a list or the pump's
    # state: never a download (33/34), a black/white list (36), an
    # authorisation or anything else that writes.
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {
            CMD_POLL,  # 30: ordinary query; the pump reports states or a record
            CMD_TOTALS,  # 38: read one nozzle's totalizers; reading changes nothing
            CMD_READ_INFO,  # 3A: read part identities; reading changes nothing
            CMD_ERROR_INFO,  # 3B: read the active errors; does not clear them
            # 3C: confirm a record we hold in the store; the pump may then
            # drop it from its journal, its metering and totals are untouched
            CMD_CONFIRM,
        }
    )
    #: Exact data length of each allowed request: anything longer (a
    #: write-shaped frame with an allowed code) is refused as well.
    REQUEST_DATA_LEN: ClassVar[dict[int, int]] = {
        CMD_POLL: 1,
        CMD_TOTALS: QUERY_LEN,
        CMD_READ_INFO: QUERY_LEN,
        CMD_ERROR_INFO: ERROR_QUERY_LEN,
        CMD_CONFIRM: CONFIRM_LEN,
    }

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        master_address: int = DEFAULT_MASTER_ADDRESS,
        caller_bit_set: bool = True,
        offline_after: int = 3,
        totals_every: int = TOTALS_EVERY,
        info_every: int = INFO_EVERY,
        errors_every: int = ERRORS_EVERY,
    ) -> None:
        if not addresses:
            raise ValueError("at least one pump address is needed")
        for address in (*addresses, master_address):
            if not 0 <= address <= 0xFF or address == SYNC:
                raise ValueError(f"address {address} is not a byte other than 0xFA")
        at_least_one(
            offline_after=offline_after,
            totals_every=totals_every,
            info_every=info_every,
            errors_every=errors_every,
        )
        self._addresses = tuple(dict.fromkeys(addresses))
        self._master = master_address
        self._caller_ctrl = CALLER_BIT if caller_bit_set else 0
        self._offline_after = offline_after
        self._every = {CMD_TOTALS: totals_every, CMD_READ_INFO: info_every}
        self._every[CMD_ERROR_INFO] = errors_every
        self._decoder = FrameDecoder()
        self._turn = 0  # index into _addresses of the next pump to ask
        self._frame_no = 0  # frame number of the next request
        self._expect: tuple[int, int, int] | None = None  # (address, frame number, command)
        self._confirming: tuple[int, int] | None = None  # (address, POS_TTC) in flight
        self._unconfirmed: dict[int, dict[int, None]] = {a: {} for a in self._addresses}
        self._misses: dict[int, int] = dict.fromkeys(self._addresses, 0)
        self._online: dict[int, bool | None] = {}  # absent: never answered yet
        self._reader = AnswerReader()  # last 31 and 3B per pump
        self._polls: dict[int, int] = dict.fromkeys(self._addresses, 0)
        self._reads: dict[int, dict[bytes, None]] = {a: {} for a in self._addresses}
        self._read_last: dict[int, bool] = dict.fromkeys(self._addresses, False)
        self._nozzles: dict[int, dict[int, None]] = {a: {} for a in self._addresses}
        self._answered: dict[int, set[int]] = {a: set() for a in self._addresses}
        self._read_misses: dict[int, dict[int, int]] = {a: {} for a in self._addresses}
        self._counts = {
            "timeouts": 0,
            "frames_rx": 0,
            "requests": 0,
            "unexpected": 0,
        }

    # ------------------------------------------------------------ PollDriver

    @property
    def counters(self) -> dict[str, int]:
        return {**super().counters, "unchanged_reports": self._reader.unchanged_reports}

    def next_request(self) -> bytes | None:
        address = self._addresses[self._turn]
        self._turn = (self._turn + 1) % len(self._addresses)
        waiting, reads = self._unconfirmed[address], self._reads[address]
        self._confirming = None
        if waiting:
            pos_ttc = next(iter(waiting))
            data = build_confirm(pos_ttc)
            self._confirming = (address, pos_ttc)
        elif reads and not self._read_last[address]:
            data = next(iter(reads))  # in the order queued: none starves
            del reads[data]
        else:
            data = build_poll()
            self._polls[address] += 1
            self._schedule(address)
        self._read_last[address] = data[0] in _READS
        ctrl = self._frame_no | self._caller_ctrl
        wire = self._emit(Frame(dst=address, src=self._master, ctrl=ctrl, data=data))
        self._expect = (address, self._frame_no, data[0])
        self._frame_no = (self._frame_no + 1) & FRAME_NO_MASK
        self._counts["requests"] += 1
        return wire

    def _no_answer(self, expect: tuple[int, int, int]) -> list[Event]:
        address, _, command = expect
        self._confirming = None  # stays in _unconfirmed: sent again next turn
        events: list[Event] = [ProtocolError("timeout", f"pump {address} did not answer", address)]
        if command in _READS:
            misses = self._read_misses[address]
            misses[command] = misses.get(command, 0) + 1
            if not self._supported(address, command):
                reads = self._reads[address]
                for data in [d for d in reads if d[0] == command]:
                    del reads[data]
            return events  # a read left unanswered says nothing about the link
        down = missed(self._online, self._misses, address, self._offline_after)
        if down:
            self._reads[address].clear()
        return events + down

    def sale_committed(self, sale: Sale) -> None:
        waiting = self._unconfirmed.get(sale.address)
        if waiting is None or not (sale.order_no.isascii() and sale.order_no.isdigit()):
            return  # not a sale of ours: nothing to confirm
        pos_ttc = int(sale.order_no)
        if pos_ttc > MAX_POS_TTC:
            return
        waiting[pos_ttc] = None
        while len(waiting) > MAX_UNCONFIRMED:
            del waiting[next(iter(waiting))]

    # ------------------------------------------------------------ internals

    def _emit(self, frame: Frame) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        command = frame.command
        if command not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"command {command:02X} is not read-only (D20)")
        if len(frame.data) != self.REQUEST_DATA_LEN[command]:
            raise ForbiddenCommand(f"command {command:02X} with {len(frame.data)} data bytes")
        return encode_frame(frame)

    def _supported(self, address: int, command: int) -> bool:
        """False once the pump has shown it does not know this read (module doc)."""
        if command in self._answered[address]:
            return True
        return self._read_misses[address].get(command, 0) < UNSUPPORTED_AFTER

    def _queue(self, address: int, data: bytes) -> None:
        """Queue a read (at most once) unless the pump does not know that command."""
        if self._supported(address, data[0]):
            self._reads[address][data] = None

    def _schedule(self, address: int) -> None:
        """After a poll of ``address``: queue the periodic reads that are due."""
        polls, nozzles = self._polls[address], self._nozzles[address]
        if polls % self._every[CMD_ERROR_INFO] == 0:
            self._queue(address, build_error_query())
        if polls % self._every[CMD_READ_INFO] == 0:
            for nzn in (PUMP_WIDE, *nozzles):
                self._queue(address, build_info_query(nzn))
        if polls % self._every[CMD_TOTALS] == 0:
            for nzn in nozzles:
                self._queue(address, build_totals_query(nzn))

    def _nozzle_seen(self, address: int, nzn: int) -> None:
        if nzn == PUMP_WIDE or nzn in self._nozzles[address]:
            return
        self._nozzles[address][nzn] = None  # at most 255: NZN is one byte
        self._queue(address, build_info_query(nzn))
        self._queue(address, build_totals_query(nzn))

    def _on_frame(self, frame: Frame) -> list[Event]:
        expect = self._expect
        if (
            expect is None
            or frame.src != expect[0]
            or frame.frame_no != expect[1]
            or frame.dst != self._master
        ):
            self._counts["unexpected"] += 1
            waiting = "nothing" if expect is None else f"pump {expect[0]} #{expect[1]}"
            detail = (
                f"frame {frame.src:02X}->{frame.dst:02X} #{frame.frame_no} "
                f"cmd {frame.command:02X} while waiting for {waiting}"
            )
            return [ProtocolError("unexpected", detail, frame.src)]
        address = frame.src
        self._expect = None
        events: list[Event] = self._link_up(address)
        if self._confirming is not None and self._confirming[0] == address:
            # Any valid answer to a confirmation is its acknowledgement.
            self._unconfirmed[address].pop(self._confirming[1], None)
            self._confirming = None
        events.extend(self._content(frame, address))
        return events

    def _content(self, frame: Frame, address: int) -> list[Event]:
        """The events one response carries, by its own command (content.py).

        Most polls of an idle station return the very same 31: the reader
        does not parse it again (the hot path; bench/frames.py).
        """
        command = frame.command
        if command in _READS:
            self._answered[address].add(command)
            self._read_misses[address].pop(command, None)
        events = self._reader.events(frame, address)
        if events is None:
            self._counts["unexpected"] += 1
            detail = f"command {command:02X} ({len(frame.data)} bytes) not handled"
            return [ProtocolError("unexpected", detail, address)]
        for event in events:
            if isinstance(event, NozzleStatus | Sale):
                self._nozzle_seen(address, event.nozzle)
        return events

    def _link_up(self, address: int) -> list[Event]:
        events = answered(self._online, self._misses, address)
        if not events:
            return []
        # Back online: report every nozzle again, even if nothing changed.
        self._reader.forget_report(address)
        # (Back) online: parts may have been changed while it was away.
        self._answered[address].clear()
        self._read_misses[address].clear()
        self._queue(address, build_error_query())
        for nzn in (PUMP_WIDE, *self._nozzles[address]):
            self._queue(address, build_info_query(nzn))
        for nzn in self._nozzles[address]:
            self._queue(address, build_totals_query(nzn))
        return events
