"""Changkong 长空 "Uninfo" (``fangym0335/first src/lischn011.c``): read-only poll
master, passive monitor, describer; docs/protocols/uninfo.md."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "uninfo",
    "Changkong 长空 Uninfo (two-wire current loop)",
    # One pair carries both directions; a request byte's high nibble is a
    # command (7..D, FE), a status reply's a state (0..6), and every other
    # reply follows the request that fixes its shape (protocols/uninfo/
    # framer.py BusReader, docs/protocols/uninfo.md).
    bus_monitor=True,
    # lischn011.c:4 ("2Line CL,9600,e,8,1") and its board command, :1892-1898.
    line_settings=(LineSetting(9600, "E"),),
    # The FCC waits 80 ms before each command (INTERVAL, :38-39).
    inter_frame_gap_ms=80,
    # Pumps 1..15 and 16 (nibble 0), :113-114.
    address_range=(1, 16),
    sources=("fangym0335/first src/lischn011.c", "fangym0335/first src/lrc.c:58-69"),
)
