"""Furen Haosheng line watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station's controller (an FCC such as ``fangym0335/first
src/lischn009.c``, or a POS) is the master; the collector only watches.
Bytes in → events out, nothing ever out: a monitor has no request to build,
so it cannot write to a pump at all (SPEC D19, D20).

Directions (RS-422: one pair each way, docs/protocols/furen.md):

- :meth:`FurenMonitor.receive_request` — bytes the controller sent (relay:
  its side). Each request is remembered until the pump answers it, so the
  answer is read as what was asked, about the nozzle asked (``ctrl``
  ``F0 | n``); requests that change the pump are counted by name
  (``pos_cmd_authorise`` …, :data:`~protocols.furen.messages.REQUEST_NAMES`).
  A request also closes the window of the answer before it: bytes of the
  answer side still buffered are flushed then (a garbled answer's bytes
  must not carry a later good frame into the next request's answer).
- :meth:`FurenMonitor.receive_response` — bytes the pump sent.
- :meth:`FurenMonitor.receive_bus` — one line whose frames say their side
  by their command and length (:func:`~protocols.furen.messages.side`): a
  tap on the pump's pair (RS-422; only answers), or a line that carries
  both. A frame of a shape both sides send (5D, 61, 62) is counted in
  ``unknown_side`` and dropped.

An answer whose request was not seen is read by its shape: 5A / 5B status,
27 bytes a sale record, 19 totals, 11 a price, 10 an acknowledgement; its
nozzle from ``[3]`` (:meth:`~protocols.furen.reading.PumpReader.nozzle_of`).
An answer that does not fit the request seen before it is
``ProtocolError("unexpected")``.

Pump replies are read with the poll driver's reader
(:class:`~protocols.furen.reading.PumpReader`): the same NozzleStatus,
Totals and Sale — same ``key`` — so the store keeps a record read by the
controller and by us once. A sale: every sale record the controller reads
(the FCC reads it once, after the fill, ``:547-562``), unless the last
status seen shows that nozzle fuelling with the record's volume (it may be
that fill, read mid-way), and once per key (a controller that reads the record
every round, as our own poller does, gives one sale).

Link state: online from the pump's first frame; offline after
``offline_after`` requests in a row with no answer (seen only where the
requests are: relay, or a tap that hears both sides).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from protocols.events import Event, ProtocolError, PumpLink
from protocols.furen.framer import Frame, FrameDecoder
from protocols.furen.messages import (
    ACK_LEN,
    CMD_PRICE,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    PRICE_LEN,
    READ_REQUESTS,
    REQUEST_NAMES,
    SALE_LEN,
    ST_FUELLING,
    ST_IDLE_OR_LIFTED,
    TOTALS_LEN,
    side,
)
from protocols.furen.reading import PumpReader, Scale, nozzle_grades, one_point, sale_key
from protocols.stream import with_decoders

#: Requests in a row with no answer before the pump is reported offline:
#: the poller's ``offline_after`` default.
OFFLINE_AFTER = 3

#: The one address a Furen line has (protocols/furen/driver.py).
ADDRESS = 1

#: The request each answer shape belongs to, when the request was not seen.
_BY_LENGTH = {SALE_LEN: CMD_SALE, TOTALS_LEN: CMD_TOTALS, PRICE_LEN: CMD_PRICE}


class FurenMonitor:
    """Passive interpreter of one Furen line (relay or listen); see the module doc."""

    name: ClassVar[str] = "furen"

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        nozzles: int = 2,
        escaped: bool = False,
        offline_after: int = OFFLINE_AFTER,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        grades: Mapping[int, str] | Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        one_point(addresses)  # its nozzles: PumpReader checks them
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self._reader = PumpReader(
            ADDRESS,
            nozzles,
            scale=Scale(volume_decimals, amount_decimals, price_decimals),
            grades=nozzle_grades(grades),
            clock=clock,
        )
        self._offline_after = offline_after
        self._requests = FrameDecoder(escaped=escaped)
        self._responses = FrameDecoder(escaped=escaped)
        self._bus = FrameDecoder(escaped=escaped)
        self._asked: tuple[int, int | None] | None = None  # (command, nozzle) not yet answered
        self._unanswered = 0
        self._online: bool | None = None
        self._last_key: dict[int, str] = {}  # nozzle → key of the last sale reported
        self._counts = dict.fromkeys(
            (
                "requests",
                "responses",
                "own_responses",
                "foreign",
                "unknown_side",
                "unexpected",
                "records_while_fuelling",
                "acks",
            ),
            0,
        )
        #: Requests that change the pump, by name (a fixed set: bounded).
        self._commands: dict[str, int] = {}
        #: Frames of pumps not in ``addresses``: none can be, a Furen frame
        #: names no pump (kept for the monitor contract).
        self.foreign_addresses: dict[int, int] = {}

    @property
    def counters(self) -> dict[str, int]:
        out = dict(self._counts)
        out["status_transients"] = self._reader.transients
        out.update((f"pos_cmd_{name}", n) for name, n in self._commands.items())
        decoders = (("pos_", self._requests), ("", self._responses), ("bus_", self._bus))
        return with_decoders(out, decoders)

    def receive_request(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._requests.receive_data(data):
            if isinstance(item, ProtocolError):
                events.append(item)
                continue
            # A new request closes the last answer's window: what the answer
            # side still holds is given up now, and any frame it hid is read
            # as that answer, not as the answer to this request.
            for held in self._responses.flush():
                events += [held] if isinstance(held, ProtocolError) else self._on_response(held)
            events += self._on_request(item)
        return events

    def receive_response(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._responses.receive_data(data):
            events += [item] if isinstance(item, ProtocolError) else self._on_response(item)
        return events

    def receive_bus(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._bus.receive_data(data):
            if isinstance(item, ProtocolError):
                events.append(item)
                continue
            sender = side(item)
            if sender == "master":
                events += self._on_request(item)
            elif sender == "pump":
                events += self._on_response(item)
            else:
                self._counts["unknown_side"] += 1
        return events

    # ------------------------------------------------------------ each side

    def _on_request(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        command = frame.command
        if command not in READ_REQUESTS:
            name = REQUEST_NAMES.get(command, "unknown")
            self._commands[name] = self._commands.get(name, 0) + 1
        self._asked = (command, frame.nozzle_byte)
        self._unanswered += 1
        if self._unanswered > self._offline_after and self._online is not False:
            # More than offline_after in a row: the last one had its chance to
            # be answered before this one was sent.
            self._online = False
            self._reader.forget()
            return [PumpLink(ADDRESS, online=False)]
        return []

    def _on_response(self, frame: Frame) -> list[Event]:
        self._counts["responses"] += 1
        self._counts["own_responses"] += 1
        asked, self._asked = self._asked, None
        self._unanswered = 0
        events: list[Event] = []
        if self._online is not True:
            self._online = True
            events.append(PumpLink(ADDRESS, online=True))
        command, nozzle = self._what(frame, asked)
        if command is None:
            self._counts["unexpected"] += 1
            want = "nothing" if asked is None else f"{asked[0]:02X}"
            detail = f"{len(frame.data)}-byte answer [6] {frame.command:02X} to {want}"
            return [*events, ProtocolError("unexpected", detail, ADDRESS)]
        if command == CMD_STATUS:
            return events + self._reader.status(frame)
        if command in (CMD_PRICE, "ack"):
            self._counts["acks"] += command == "ack"
            return events
        where = self._reader.nozzle_of(frame, nozzle)
        if isinstance(where, ProtocolError):
            return [*events, where]
        if command == CMD_TOTALS:
            return [*events, self._reader.totals(frame, where)]
        return events + self._on_record(frame, where)

    def _what(
        self, frame: Frame, asked: tuple[int, int | None] | None
    ) -> tuple[int | str | None, int | None]:
        """What ``frame`` answers and about which nozzle (None: not known);
        command None when it fits neither the request seen nor any shape."""
        length = len(frame.data)
        if frame.command in (ST_IDLE_OR_LIFTED, ST_FUELLING):
            shape: int | str | None = CMD_STATUS
        elif length in _BY_LENGTH:
            shape = _BY_LENGTH[length]
        else:
            shape = "ack" if length == ACK_LEN else None
        if asked is None:
            return shape, None
        command, nozzle = asked
        if command in READ_REQUESTS:
            return (shape, nozzle) if shape == command else (None, None)
        # The answer to a command (price, preset, authorise …): 10 bytes for
        # most, 11 for 5D, others not laid out in the source (module doc).
        return ("ack", None) if shape not in (CMD_STATUS, CMD_SALE, CMD_TOTALS) else (None, None)

    def _on_record(self, frame: Frame, nozzle: int) -> list[Event]:
        record = self._reader.record(frame)
        if isinstance(record, ProtocolError):
            return [record]
        if self._reader.live_volume(nozzle) == record.volume:
            # The volume the last status showed fuelling: may be that fill.
            self._counts["records_while_fuelling"] += 1
            return []
        key = sale_key(nozzle, record)
        if self._last_key.get(nozzle) == key:
            return []
        sale = self._reader.sale(nozzle, record, frame.data)
        if sale is None:
            return []
        self._last_key[nozzle] = key
        return [sale]
