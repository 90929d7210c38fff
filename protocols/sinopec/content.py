"""What a Sinopec answer says, by its own command: shared by the poller and the
passive monitor (relay, listen), so both report a frame the same way.

31 → :class:`~protocols.events.NozzleStatus` per entry (a report identical to
the pump's previous one is not parsed again: the hot path of an idle
station), 32 → :class:`~protocols.events.Sale`, 38 →
:class:`~protocols.events.Totals`, 3A → :class:`~protocols.events.Identity`,
3B → :class:`~protocols.events.DeviceAlarm` raised / cleared against the
pump's previous answer.
"""

from __future__ import annotations

from protocols.events import Event, ProtocolError
from protocols.sinopec.extensions import (
    CMD_ERROR_INFO,
    CMD_READ_INFO,
    CMD_TOTALS,
    ActiveError,
    diff_alarms,
    identity_event,
    parse_errors,
    totals_event,
)
from protocols.sinopec.framer import Frame
from protocols.sinopec.messages import (
    CMD_REALTIME,
    entry_status,
    is_record,
    parse_realtime,
    parse_record,
    record_sale,
)


class AnswerReader:
    """Per-pump memory of the last 31 report and the last 3B error set."""

    def __init__(self) -> None:
        self._last_report: dict[int, bytes] = {}
        self._alarms: dict[int, frozenset[ActiveError]] = {}
        self.unchanged_reports = 0

    def forget_report(self, address: int) -> None:
        """The next 31 of this pump is reported even if unchanged (link back up)."""
        self._last_report.pop(address, None)

    def events(self, frame: Frame, address: int) -> list[Event] | None:
        """The events ``frame`` from ``address`` carries; None: not an answer we read."""
        command, data = frame.command, frame.data
        if command == CMD_REALTIME:
            if data == self._last_report.get(address):
                self.unchanged_reports += 1
                return []
            entries = parse_realtime(data)
            if isinstance(entries, ProtocolError):
                return [ProtocolError(entries.kind, entries.detail, address)]
            self._last_report[address] = data
            return [entry_status(e, address) for e in entries]
        if is_record(data):
            record = parse_record(data)
            if isinstance(record, ProtocolError):
                return [ProtocolError(record.kind, record.detail, address)]
            return [record_sale(record, address)]
        if command == CMD_TOTALS:
            return [totals_event(data, address)]
        if command == CMD_READ_INFO:
            return [identity_event(data, address)]
        if command == CMD_ERROR_INFO:
            active = parse_errors(data)
            if isinstance(active, ProtocolError):
                return [ProtocolError(active.kind, active.detail, address)]
            now = frozenset(active)
            before = self._alarms.get(address, frozenset())
            self._alarms[address] = now
            return list(diff_alarms(address, before, now))
        return None
