"""Furen Haosheng 富仁豪升 (``fangym0335/first src/lischn009.c``): read-only poll
master, passive monitor, describer; docs/protocols/furen.md."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "furen",
    "Furen Haosheng 富仁豪升 (RS-422)",
    # A frame says its side by its command and length (protocols/furen/
    # messages.py side()): a tap on the pumps' RS-422 pair, or on a line
    # carrying both directions, reads it (docs/protocols/furen.md).
    bus_monitor=True,
    # lischn009.c:4 ("RS422, 9600,N,8,1") and its board command, :2058-2064.
    line_settings=(LineSetting(9600, "N"),),
    inter_frame_gap_ms=10,
    # No pump address on the wire: one fuelling point per line.
    address_range=(1, 1),
    sources=("fangym0335/first src/lischn009.c", "fangym0335/first src/spec.c:185-191"),
)
