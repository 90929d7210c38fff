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

from protocols.events import Event, ProtocolError
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
from protocols.passive import OFFLINE_AFTER, PassiveMonitor, Tap, Wire, walk

#: The one address a Furen line has (protocols/furen/driver.py).
ADDRESS = 1

#: The request each answer shape belongs to, when the request was not seen.
_BY_LENGTH = {SALE_LEN: CMD_SALE, TOTALS_LEN: CMD_TOTALS, PRICE_LEN: CMD_PRICE}


class FurenMonitor(PassiveMonitor, Tap):
    """Passive interpreter of one Furen line (relay or listen); see the module doc."""

    name: ClassVar[str] = "furen"
    _COUNTERS = ("unknown_side", "unexpected", "records_while_fuelling", "acks")

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
        super().__init__(addresses, offline_after=offline_after, clock=clock)
        self._reader = PumpReader(
            ADDRESS,
            nozzles,
            scale=Scale(volume_decimals, amount_decimals, price_decimals),
            grades=nozzle_grades(grades),
            clock=clock,
        )
        self._requests = FrameDecoder(escaped=escaped)
        self._responses = FrameDecoder(escaped=escaped)
        self._bus = FrameDecoder(escaped=escaped)
        pos, pumps = (
            Wire(self._requests, self._on_relayed),
            Wire(self._responses, self._on_response),
        )
        self._wire(pos, pumps, Wire(self._bus, self._on_bus))
        self._asked: tuple[int, int | None] | None = None  # (command, nozzle) not yet answered
        self._last_key: dict[int, str] = {}  # nozzle → key of the last sale reported

    @property
    def counters(self) -> dict[str, int]:
        return {**super().counters, "status_transients": self._reader.transients}

    # ------------------------------------------------------------ each side

    def _on_relayed(self, frame: Frame) -> list[Event]:
        # A new request closes the last answer's window: what the answer
        # side still holds is given up now, and any frame it hid is read
        # as that answer, not as the answer to this request.
        events = walk(self._responses.flush(), self._on_response)
        return events + self._on_request(frame)

    def _on_bus(self, frame: Frame) -> list[Event]:
        sender = side(frame)
        if sender == "master":
            return self._on_request(frame)
        if sender == "pump":
            return self._on_response(frame)
        self._counts["unknown_side"] += 1
        return []

    def _on_request(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        command = frame.command
        if command not in READ_REQUESTS:
            self._command(REQUEST_NAMES.get(command, "unknown"))
        self._asked = (command, frame.nozzle_byte)
        return self._asking(ADDRESS)

    def _offline(self, address: int) -> None:
        self._reader.forget()

    def _on_response(self, frame: Frame) -> list[Event]:
        events = self._reply_from(ADDRESS) or []  # the one pump: always ours
        asked, self._asked = self._asked, None
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
