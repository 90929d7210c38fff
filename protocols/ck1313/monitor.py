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

Reading a sale. The FCC, at a sale's end, reads C5 totals, then D9 (the
sale) if the totals moved, then B6 (price) (``DoEot``, ``:1092-1173``); it
reads D9 alone while fuelling (running display, ``DoBusy``, ``:1010``,
``:1446-1457``) and C5 alone at start-up and reconnection (``:192``,
``:835``). So per pump a reading is three consecutive
exchanges: a C5 reply starts it, the D9 reply of the very next exchange
with that pump adds the sale, the B6 reply of the one after completes it.
Consecutive means: in relay, the POS asked that pump nothing else in
between (a retry of the same question is fine: the FCC asks again after a
spoilt reply, ``:1329-1366``, ``:1145-1156``); with replies only, that pump replied nothing else
and the tap saw no spoilt bytes in between (a lost frame might have been
that pump's status). Otherwise a C5 read at start-up could be paired with
a sale much later. A POS that skips B6: the last price seen completes the
reading at that pump's next exchange. Complete readings go through
:class:`protocols.totalsale.SaleCheck` (reported when checked by the totals
difference, a repeated reading, or — first sale seen — the price relation
when the monitor saw the pump go idle after the fill right before; else
held for the next sale's check) and become :class:`Sale` events with
the poll driver's key, so the store keeps one record whoever read it.
``ended_at`` is when the monitor saw the pump idle after a fill, else when
the reading completed.

Only pumps in ``addresses`` are reported; other pumps' frames count as
``foreign`` (:attr:`foreign_addresses`). Commands that change a pump (the
POS may send them) are counted as ``changing``, their replies ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from protocols.bcd import scaled
from protocols.ck1313.framer import Frame, FrameDecoder, pump_of, unit_of
from protocols.ck1313.messages import (
    CMD_PRICE,
    CMD_SALE,
    CMD_STATUS,
    READ_COMMANDS,
    REPLY_LEN,
    REPLY_SHAPES,
    TOTAL_DIGITS,
    SaleShown,
    Status,
    TotalsShown,
    direction,
    parse_reply,
)
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Totals
from protocols.totalsale import NOZZLE, Decimals, Reading, SaleCheck, sale_of

#: Requests to a pump in a row with no reply before it is reported offline:
#: the poll driver's default (``fangym0335/first src/pub.h:99``).
OFFLINE_AFTER = 3

_BUSY = (NozzleState.LIFTED, NozzleState.FUELLING)

_COUNTERS = (
    *("requests", "responses", "foreign", "own_responses", "changing", "ambiguous"),
    *("unexpected", "sales", "held", "rejected", "rereads", "no_price"),
)


@dataclass
class _Watch:
    unanswered: int = 0
    online: bool | None = None
    state: NozzleState | None = None
    reported: NozzleState | None = None
    totals: tuple[int, int] | None = None  # last Totals reported
    price: int | None = None  # last price seen
    parts: dict[str, int] | None = None  # the reading under way (C5, then D9, then B6)
    raw: bytearray = field(default_factory=bytearray)
    end_seen_at: datetime | None = None
    held_at: datetime | None = None  # when the held reading (SaleCheck) completed


class Ck1313Monitor:
    """Passive interpreter of one CK1313 loop (relay or listen)."""

    name: ClassVar[str] = "ck1313"

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = OFFLINE_AFTER,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self._units = {unit_of(a): a for a in addresses}
        self._offline_after = offline_after
        self._dp = Decimals(volume_decimals, amount_decimals, price_decimals)
        self._clock = clock
        self._requests = FrameDecoder()
        self._responses = FrameDecoder()
        self._bus = FrameDecoder()
        self._check = SaleCheck(self._dp)
        self._watch = {a: _Watch() for a in addresses}
        self._asked: tuple[int, int] | None = None  # (unit, command) of the last request
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        #: Frames to or from each pump not in ``addresses`` (at most 16 keys:
        #: an address is a nibble; -1 stands for the nibbles no pump has).
        self.foreign_addresses: dict[int, int] = {}

    @property
    def counters(self) -> dict[str, int]:
        out = dict(self._counts)
        decoders = (("pos_", self._requests), ("", self._responses), ("bus_", self._bus))
        for prefix, decoder in decoders:
            for key, value in decoder.counters.items():
                out[prefix + key] = value
        return out

    def receive_request(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._requests.receive_data(data):
            if isinstance(item, ProtocolError):
                events.append(item)
            else:
                events += self._on_request(item)
        return events

    def receive_response(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._responses.receive_data(data):
            if isinstance(item, ProtocolError):
                events.append(item)
                continue
            asked = self._asked
            if asked is not None and asked[0] == item.unit and len(item.raw) == REPLY_LEN[asked[1]]:
                events += self._on_reply(item, asked[1])  # as the POS asked (framer: expect)
            else:
                events += self._on_reply(item, None)
            self._asked = None
        return events

    def receive_bus(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._bus.receive_data(data):
            if isinstance(item, ProtocolError):
                events.append(item)
                if not self._counts["requests"]:  # replies only: it may have been a status
                    for watch in self._watch.values():
                        if watch.parts is not None and "volume" not in watch.parts:
                            watch.parts = None
                continue
            side = direction(item)
            if side == "master":
                events += self._on_request(item)
            elif side == "pump":
                events += self._on_reply(item, None)
            elif side == "either":
                self._counts["ambiguous"] += 1  # an E5 / CA ack and its request look alike
            else:
                self._counts["unexpected"] += 1
                detail = f"{item.raw.hex(' ').upper()} is no CK1313 frame"
                events.append(ProtocolError("unexpected", detail))
        return events

    # ------------------------------------------------------------ internals

    def _address(self, frame: Frame) -> int | None:
        address = self._units.get(frame.unit)
        if address is None:
            self._counts["foreign"] += 1
            key = pump_of(frame.unit) or -1
            self.foreign_addresses[key] = self.foreign_addresses.get(key, 0) + 1
        return address

    def _on_request(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        read_only = frame.command in READ_COMMANDS and len(frame.raw) == 4
        if not read_only:
            self._counts["changing"] += 1
        self._asked = (frame.unit, frame.command) if read_only else None
        self._responses.expect = REPLY_LEN[frame.command] if read_only else None
        address = self._address(frame)
        if address is None:
            return []
        watch = self._watch[address]
        events = self._next_step(address, watch, frame.command if read_only else None)
        watch.unanswered += 1
        if watch.unanswered > self._offline_after and watch.online is not False:
            # More than offline_after requests in a row: the one before this
            # had its chance to be answered.
            watch.online, watch.state, watch.reported, watch.parts = False, None, None, None
            events.append(PumpLink(address, online=False))
        return events

    def _on_reply(self, frame: Frame, asked: int | None) -> list[Event]:
        self._counts["responses"] += 1
        address = self._address(frame)
        if address is None:
            return []
        command = asked
        if command is None:
            if (len(frame.raw), frame.command) not in REPLY_SHAPES:
                self._counts["unexpected"] += 1
                detail = f"{frame.raw.hex(' ').upper()} is no CK1313 reply"
                return [ProtocolError("unexpected", detail, address)]
            command = frame.command
        watch = self._watch[address]
        self._counts["own_responses"] += 1
        watch.unanswered = 0
        events: list[Event] = []
        if watch.online is not True:
            watch.online = True
            events.append(PumpLink(address, online=True))
        if command not in READ_COMMANDS:
            self._counts["changing"] += 1
            return events  # the POS changed the pump: nothing to read in its ack
        if command != CMD_STATUS and frame.command != command:
            detail = f"reply to {command:02X} carries {frame.command:02X}"
            return [*events, ProtocolError("bad_message", detail, address)]
        reply = parse_reply(frame, command)
        if isinstance(reply, ProtocolError):
            return [*events, ProtocolError(reply.kind, reply.detail, address)]
        events += self._next_step(address, watch, command)
        if isinstance(reply, Status):
            return events + self._on_status(address, watch, reply)
        if isinstance(reply, TotalsShown):
            self._check.totals_seen(address, (reply.volume_total, reply.amount_total))
            watch.parts, watch.raw = reply.part(), bytearray(frame.raw)
            if (reply.volume_total, reply.amount_total) != watch.totals:
                watch.totals = (reply.volume_total, reply.amount_total)
                events.append(self._totals_event(address, watch.totals))
            return events
        if isinstance(reply, SaleShown):
            if watch.parts is not None:  # the step after C5 (else: the running display)
                watch.parts.update(reply.part())
                watch.raw += frame.raw
            return events
        witness, watch.price = watch.price == reply.price, reply.price
        return events + self._complete(address, watch, frame.raw, witness)

    def _next_step(self, address: int, watch: _Watch, command: int | None) -> list[Event]:
        """A reading under way ends unless ``command`` (None: a changing one) is its next step.

        Ending, a reading with a sale is completed with the last price seen
        (a POS that skipped B6); one with totals only is dropped.
        """
        parts = watch.parts
        if parts is None or command == (CMD_PRICE if "volume" in parts else CMD_SALE):
            return []
        events = self._complete(address, watch, None)
        watch.parts = None
        return events

    def _on_status(self, address: int, watch: _Watch, status: Status) -> list[Event]:
        state = status.state
        events: list[Event] = []
        if state in _BUSY:
            watch.end_seen_at = None  # a new fill: an earlier end is not this reading's
        elif watch.state in _BUSY:
            watch.end_seen_at = self._clock()
        watch.state = state
        if state is not watch.reported:
            watch.reported = state
            events.append(NozzleStatus(address, NOZZLE, state))
        return events

    def _complete(
        self, address: int, watch: _Watch, price_raw: bytes | None, witness: bool = False
    ) -> list[Event]:
        """The reading under way, if it has totals and a sale, completed with the price.

        ``price_raw``: the B6 reply that completes it (None: the last price
        seen, unwitnessed); ``witness``: an earlier, separate B6 reply of this
        pump said the same price (:class:`~protocols.totalsale.SaleCheck`).
        """
        parts = watch.parts
        if parts is None or "volume" not in parts:
            return []
        watch.parts = None
        if watch.price is None:
            self._counts["no_price"] += 1
            return []
        raw = bytes(watch.raw) + (price_raw or b"")
        reading = Reading(
            parts["volume_total"],
            parts["amount_total"],
            parts["volume"],
            parts["amount"],
            watch.price,
            raw,
        )
        if reading.volume == 0 and reading.amount == 0:
            return []  # totals read, no sale shown: nothing to report
        now = self._clock()
        end_seen = watch.end_seen_at is not None
        verdict, trusted = self._check.reading(address, reading, witness, end_seen)
        if verdict in ("held", "rejected", "reported"):
            self._counts["rereads" if verdict == "reported" else verdict] += 1
            if verdict == "held":
                watch.held_at = watch.end_seen_at or now
                watch.end_seen_at = None
            return []
        events: list[Event] = []
        for item in trusted:
            if item is reading:
                ended_at, watch.end_seen_at = watch.end_seen_at or now, None
            else:
                ended_at = watch.held_at or now
            self._counts["sales"] += 1
            events.append(
                sale_of(address, item, ended_at=ended_at, dp=self._dp, total_digits=TOTAL_DIGITS)
            )
        return events

    def _totals_event(self, address: int, totals: tuple[int, int]) -> Totals:
        volume, amount = scaled(totals[0], self._dp.volume), scaled(totals[1], self._dp.amount)
        return Totals(address, NOZZLE, volume, amount)
