"""Sinopec card-dispenser link (卡机联动 V1.1) as a read-only poll master, sans-IO.

:class:`SinopecPoller` implements :class:`protocols.base.PollDriver` for one
line with one or more pumps. Each turn it asks one pump, round robin:

- a 32 *confirmation* when a sale from that pump is committed in the store
  and not yet confirmed (store first, SPEC D6), otherwise
- a 30 *poll*. The pump answers a poll with its oldest unconfirmed 32
  transaction record, or with a 31 real-time report; it answers a
  confirmation with a 31 or its next 32.

ctrl byte (protocols.md §2, "ctrl"): bits 0–5 are the frame number, which we
increment per request (0 … 0x3F, then 0 again) and the pump echoes; bit 6
marks the calling side — the sources disagree on its polarity, so
``caller_bit_set`` chooses whether our requests set it. Bit 7 is left 0.

A frame is *the* response only when it comes from the polled address, to our
master address, with our frame number; anything else (another master's
traffic, our own echo on a two-wire line, a late answer to an earlier
request) is reported as ``ProtocolError("unexpected")`` and we keep waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocols.base import ForbiddenCommand
from protocols.events import Event, ProtocolError, PumpLink, Sale
from protocols.sinopec.framer import (
    FRAME_NO_MASK,
    SYNC,
    Frame,
    FrameDecoder,
    encode_frame,
)
from protocols.sinopec.messages import (
    CMD_POLL,
    CMD_REALTIME,
    CMD_RECORD,
    CONFIRM_LEN,
    build_confirm,
    build_poll,
    is_record,
    realtime_events,
    sale_event,
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


class SinopecPoller:
    """Read-only master for Sinopec pumps on one line (port mode ``poll``)."""

    name: ClassVar[str] = "sinopec"
    # The only commands that may ever leave this driver (SPEC D20): 30 = ordinary
    # query (poll); 32 = confirmation of a transaction record we received and
    # committed, nothing else. Never a price or parameter download (33/34),
    # authorisation, black/white lists (36) or any other write.
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset({CMD_POLL, CMD_RECORD})
    #: Exact data length of each allowed request: a 32 that is not our 5-byte
    #: confirmation (e.g. a record-shaped write) is refused as well.
    REQUEST_DATA_LEN: ClassVar[dict[int, int]] = {CMD_POLL: 1, CMD_RECORD: CONFIRM_LEN}

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        master_address: int = DEFAULT_MASTER_ADDRESS,
        caller_bit_set: bool = True,
        offline_after: int = 3,
    ) -> None:
        if not addresses:
            raise ValueError("at least one pump address is needed")
        for address in (*addresses, master_address):
            if not 0 <= address <= 0xFF or address == SYNC:
                raise ValueError(f"address {address} is not a byte other than 0xFA")
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self._addresses = tuple(addresses)
        self._master = master_address
        self._caller_ctrl = CALLER_BIT if caller_bit_set else 0
        self._offline_after = offline_after
        self._decoder = FrameDecoder()
        self._turn = 0  # index into _addresses of the next pump to ask
        self._frame_no = 0  # frame number of the next request
        self._expect: tuple[int, int] | None = None  # (address, frame number)
        self._confirming: tuple[int, int] | None = None  # (address, POS_TTC) in flight
        self._unconfirmed: dict[int, dict[int, None]] = {a: {} for a in self._addresses}
        self._misses: dict[int, int] = dict.fromkeys(self._addresses, 0)
        self._online: dict[int, bool] = {}  # absent: never answered yet
        self._counts = {"timeouts": 0, "frames_rx": 0, "requests": 0, "unexpected": 0}

    # ------------------------------------------------------------ PollDriver

    @property
    def awaiting_response(self) -> bool:
        return self._expect is not None

    @property
    def counters(self) -> dict[str, int]:
        return {**self._decoder.counters, **self._counts}

    def next_request(self) -> bytes | None:
        address = self._addresses[self._turn]
        self._turn = (self._turn + 1) % len(self._addresses)
        waiting = self._unconfirmed[address]
        if waiting:
            pos_ttc = next(iter(waiting))
            data = build_confirm(pos_ttc)
            self._confirming = (address, pos_ttc)
        else:
            data = build_poll()
            self._confirming = None
        ctrl = self._frame_no | self._caller_ctrl
        wire = self._emit(Frame(dst=address, src=self._master, ctrl=ctrl, data=data))
        self._expect = (address, self._frame_no)
        self._frame_no = (self._frame_no + 1) & FRAME_NO_MASK
        self._counts["requests"] += 1
        return wire

    def receive_data(self, data: bytes) -> list[Event]:
        return self._take(self._decoder.receive_data(data))

    def response_timeout(self) -> list[Event]:
        if self._expect is None:
            return []
        # Bytes of an incomplete frame will not be completed now; a good frame
        # they hid may even be the response (see FrameDecoder.flush).
        events = self._take(self._decoder.flush())
        if self._expect is None:
            return events
        address, _ = self._expect
        self._expect = None
        self._confirming = None  # stays in _unconfirmed: sent again next turn
        self._counts["timeouts"] += 1
        events.append(ProtocolError("timeout", f"pump {address} did not answer", address))
        self._misses[address] += 1
        if self._misses[address] >= self._offline_after and self._online.get(address) is not False:
            self._online[address] = False
            events.append(PumpLink(address, online=False))
        return events

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

    def _take(self, items: list[Frame | ProtocolError]) -> list[Event]:
        events: list[Event] = []
        for item in items:
            if isinstance(item, ProtocolError):
                events.append(item)
            else:
                self._counts["frames_rx"] += 1
                events.extend(self._on_frame(item))
        return events

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
        if frame.command == CMD_REALTIME:
            statuses = realtime_events(frame.data, address)
            events.extend([statuses] if isinstance(statuses, ProtocolError) else statuses)
        elif is_record(frame.data):
            events.append(sale_event(frame.data, address))
        else:
            self._counts["unexpected"] += 1
            detail = f"command {frame.command:02X} ({len(frame.data)} bytes) not handled"
            events.append(ProtocolError("unexpected", detail, address))
        return events

    def _link_up(self, address: int) -> list[Event]:
        self._misses[address] = 0
        if self._online.get(address) is True:
            return []
        self._online[address] = True
        return [PumpLink(address, online=True)]
