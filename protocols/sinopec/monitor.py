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

from protocols.events import Event, ProtocolError
from protocols.passive import OFFLINE_AFTER, PassiveMonitor, Tap, Wire
from protocols.sinopec.content import AnswerReader
from protocols.sinopec.framer import Frame, FrameDecoder
from protocols.sinopec.messages import CMD_CONFIRM, confirm_event

#: The POS / PC side's address range (protocols.md §2, "Addresses").
MASTER_ADDRESSES = range(0xE0, 0xFA)


class SinopecMonitor(PassiveMonitor, Tap):
    """Passive interpreter of one Sinopec line (relay or listen)."""

    name: ClassVar[str] = "sinopec"

    def __init__(self, addresses: Sequence[int], *, offline_after: int = OFFLINE_AFTER) -> None:
        super().__init__(addresses, offline_after=offline_after)
        self._requests = FrameDecoder()
        self._responses = FrameDecoder()
        self._bus = FrameDecoder()
        pos, pumps = (
            Wire(self._requests, self._on_request),
            Wire(self._responses, self._on_response),
        )
        self._wire(pos, pumps, Wire(self._bus, self._on_bus))
        self._reader = AnswerReader()

    @property
    def master_frames(self) -> int:
        """Frames the POS / FCC side sent, whatever their address (relay: read on
        its side; listen: from a master address). collector/station/books.py watches it."""
        return self._counts["requests"]

    @property
    def counters(self) -> dict[str, int]:
        return {**super().counters, "unchanged_reports": self._reader.unchanged_reports}

    # ------------------------------------------------------------ internals

    def _on_bus(self, frame: Frame) -> list[Event]:
        if frame.src in MASTER_ADDRESSES:
            return self._on_request(frame)
        return self._on_response(frame)

    def _on_request(self, frame: Frame) -> list[Event]:
        self._counts["requests"] += 1
        address = frame.dst
        if not self._known(address):
            return []
        events: list[Event] = []
        if frame.command == CMD_CONFIRM:
            confirmed = confirm_event(frame.data, address)
            if isinstance(confirmed, ProtocolError):
                confirmed = ProtocolError(confirmed.kind, confirmed.detail, address)
            events.append(confirmed)
        return events + self._asking(address)

    def _offline(self, address: int) -> None:
        self._reader.forget_report(address)

    def _on_response(self, frame: Frame) -> list[Event]:
        events = self._reply_from(frame.src)
        if events is None:
            return []
        return events + self._content(frame, frame.src)

    def _content(self, frame: Frame, address: int) -> list[Event]:
        events = self._reader.events(frame, address)
        if events is None:
            detail = f"command {frame.command:02X} ({len(frame.data)} bytes) not interpreted"
            return [ProtocolError("unexpected", detail, address)]
        return events
