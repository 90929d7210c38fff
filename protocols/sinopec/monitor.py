"""Sinopec link watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station's own POS is the master; the collector only watches. Bytes in →
events out, and nothing ever out: a monitor has no request to build, so it
cannot write to a dispenser at all (SPEC D19, D20).

Directions:

- :meth:`SinopecMonitor.receive_request` — bytes the POS sent (relay: read
  on the POS side). Frames are decoded to count the requests each pump
  left unanswered (the pump's link state), and a 3C becomes a
  :class:`~protocols.events.Confirmation` (the POS's handling of a record,
  reconciled with it by collector/station/reconcile.py); :attr:`master_frames`
  counts every frame the POS sent (is the POS still on the line?).
- :meth:`SinopecMonitor.receive_response` — bytes the pumps sent (relay:
  read on the dispenser side). Each frame is interpreted by its own command,
  exactly as the poll driver does (protocols/sinopec/driver.py): 31 →
  :class:`~protocols.events.NozzleStatus` (an unchanged report is skipped),
  32 → :class:`~protocols.events.Sale` with the same ``key`` the poller
  gives it (so the store deduplicates a record the POS read twice), 38 →
  Totals, 3A → Identity, 3B → DeviceAlarm raised / cleared.
- :meth:`SinopecMonitor.receive_bus` — one half-duplex RS-485 pair carrying
  both directions (``listen`` on a bus). A frame says its direction: the
  POS side uses addresses 0xE0–0xF9 (protocols.md §2, "Addresses"), so a
  frame *from* such an address is a request, any other a response.

Each direction has its own :class:`~protocols.sinopec.framer.FrameDecoder`
(the recovery rules are the framer's: garbage, bad CRC, truncation, hunt).
Link state: a pump is online from its first frame; after
``offline_after`` requests to it in a row with no frame from it, it is
offline (a :class:`~protocols.events.PumpLink`), like a poller's misses.
Only pumps in ``addresses`` are reported; frames of other pumps on the bus
are counted as ``foreign``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocols.events import Event, ProtocolError, PumpLink
from protocols.sinopec.content import AnswerReader
from protocols.sinopec.framer import Frame, FrameDecoder
from protocols.sinopec.messages import CMD_CONFIRM, confirm_event
from protocols.stream import with_decoders

#: The POS / PC side's address range (protocols.md §2, "Addresses").
MASTER_ADDRESSES = range(0xE0, 0xFA)

#: Requests to a pump in a row with no frame from it before it is reported
#: offline: the same default as the poller's ``offline_after``.
OFFLINE_AFTER = 3


class SinopecMonitor:
    """Passive interpreter of one Sinopec line (relay or listen)."""

    name: ClassVar[str] = "sinopec"

    def __init__(self, addresses: Sequence[int], *, offline_after: int = OFFLINE_AFTER) -> None:
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self._addresses = frozenset(addresses)
        self._offline_after = offline_after
        self._requests = FrameDecoder()
        self._responses = FrameDecoder()
        self._bus = FrameDecoder()
        self._unanswered: dict[int, int] = {}
        self._online: dict[int, bool] = {}
        self._reader = AnswerReader()
        self._counts = {"requests": 0, "responses": 0, "foreign": 0, "own_responses": 0}
        #: Frames to or from each pump not in ``addresses`` (at most 256 keys:
        #: an address is one byte): a re-wired line names what it carries.
        self.foreign_addresses: dict[int, int] = {}

    @property
    def master_frames(self) -> int:
        """Frames the POS / FCC side sent, whatever their address (relay: read on
        its side; listen: from a master address). collector/station/books.py watches it."""
        return self._counts["requests"]

    @property
    def counters(self) -> dict[str, int]:
        out = {**self._counts, "unchanged_reports": self._reader.unchanged_reports}
        decoders = (("pos_", self._requests), ("", self._responses), ("bus_", self._bus))
        return with_decoders(out, decoders)

    def receive_request(self, data: bytes) -> list[Event]:
        return self._take(self._requests.receive_data(data), from_master=True)

    def receive_response(self, data: bytes) -> list[Event]:
        return self._take(self._responses.receive_data(data), from_master=False)

    def receive_bus(self, data: bytes) -> list[Event]:
        return self._take(self._bus.receive_data(data), from_master=None)

    # ------------------------------------------------------------ internals

    def _take(self, items: list[Frame | ProtocolError], from_master: bool | None) -> list[Event]:
        events: list[Event] = []
        for item in items:
            if isinstance(item, ProtocolError):
                events.append(item)
                continue
            master = item.src in MASTER_ADDRESSES if from_master is None else from_master
            if master:
                events.extend(self._on_request(item))
            else:
                events.extend(self._on_response(item))
        return events

    def _on_request(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        address = frame.dst
        if address not in self._addresses:
            self._foreign(address)
            return []
        events: list[Event] = []
        if frame.command == CMD_CONFIRM:
            confirmed = confirm_event(frame.data, address)
            if isinstance(confirmed, ProtocolError):
                confirmed = ProtocolError(confirmed.kind, confirmed.detail, address)
            events.append(confirmed)
        misses = self._unanswered.get(address, 0) + 1
        self._unanswered[address] = misses
        if misses > self._offline_after and self._online.get(address) is not False:
            # More than offline_after requests in a row: the last one had its
            # chance to be answered before this one was sent.
            self._online[address] = False
            self._reader.forget_report(address)
            events.append(PumpLink(address, online=False))
        return events

    def _on_response(self, frame: Frame) -> list[Event]:
        self._counts["responses"] += 1
        address = frame.src
        if address not in self._addresses:
            self._foreign(address)
            return []
        self._counts["own_responses"] += 1
        self._unanswered[address] = 0
        events: list[Event] = []
        if self._online.get(address) is not True:
            self._online[address] = True
            events.append(PumpLink(address, online=True))
        events.extend(self._content(frame, address))
        return events

    def _foreign(self, address: int) -> None:
        self._counts["foreign"] += 1
        self.foreign_addresses[address] = self.foreign_addresses.get(address, 0) + 1

    def _content(self, frame: Frame, address: int) -> list[Event]:
        events = self._reader.events(frame, address)
        if events is None:
            detail = f"command {frame.command:02X} ({len(frame.data)} bytes) not interpreted"
            return [ProtocolError("unexpected", detail, address)]
        return events
