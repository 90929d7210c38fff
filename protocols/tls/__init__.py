"""Veeder-Root TLS tank gauge ("VR protocol", protocols.md §1), sans-IO.

Requests → bytes: :func:`build_command` (read-only inquiries only, D20).
Bytes → reports: :class:`TlsDecoder` / :func:`decode` (framing, checksum and
every recovery case: :mod:`protocols.tls.decoder`), data layouts and the
manual readings in :mod:`protocols.tls.parse`, report types in
:mod:`protocols.tls.reports`, decimal strings for the platform:
:func:`decimal_string`. Nothing here imports asyncio or serial.
"""

from protocols.base import ForbiddenCommand
from protocols.tls.decoder import MAX_RESPONSE, TlsDecoder, TlsError, decode, parse_frame
from protocols.tls.encode import encode_response
from protocols.tls.reports import (
    FIELD_QUANTITIES,
    AlarmEvent,
    AlarmHistory,
    Deliveries,
    Delivery,
    Inventory,
    LeakTestHistory,
    LeakTestHistoryEntry,
    LeakTestResult,
    LeakTestResults,
    LeakTests,
    RawResponse,
    Report,
    SystemAlarm,
    SystemStatus,
    TankAlarmCode,
    TankAlarms,
    TankDeliveries,
    TankInventory,
    decimal_strings,
)
from protocols.tls.wire import (
    QUANTITY_PLACES,
    READ_ONLY_FUNCTIONS,
    build_command,
    checksum,
    decimal_string,
    encode_float,
    frame_response,
    parse_float_hex,
)

__all__ = [
    "FIELD_QUANTITIES",
    "MAX_RESPONSE",
    "QUANTITY_PLACES",
    "READ_ONLY_FUNCTIONS",
    "AlarmEvent",
    "AlarmHistory",
    "Deliveries",
    "Delivery",
    "ForbiddenCommand",
    "Inventory",
    "LeakTestHistory",
    "LeakTestHistoryEntry",
    "LeakTestResult",
    "LeakTestResults",
    "LeakTests",
    "RawResponse",
    "Report",
    "SystemAlarm",
    "SystemStatus",
    "TankAlarmCode",
    "TankAlarms",
    "TankDeliveries",
    "TankInventory",
    "TlsDecoder",
    "TlsError",
    "build_command",
    "checksum",
    "decimal_string",
    "decimal_strings",
    "decode",
    "encode_float",
    "encode_response",
    "frame_response",
    "parse_float_hex",
    "parse_frame",
]
