"""Wayne DART (protocols.md §3): a read-only poll master, sans-IO."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "dart",
    "Wayne DART (RS-485)",
    # One RS-485 pair carries both directions; the conversation tells them
    # apart (protocols/dart/monitor.py, docs/protocols/dart.md).
    bus_monitor=True,
    # protocols.md §3, "Physical": 9600 or 19200 baud, 8O1 seen.
    line_settings=(LineSetting(9600, "O"), LineSetting(19200, "O")),
    inter_frame_gap_ms=5,
    address_range=(1, 32),
    sources=("shared/protocols.md §3",),
)
