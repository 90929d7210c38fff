"""Lanfeng (温州蓝峰 Wenzhou Lanfeng), read-only master and relay monitor, sans-IO."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "lanfeng",
    "Lanfeng 温州蓝峰 Wenzhou Lanfeng (RS-422)",
    # A reply does not say which question it answers: relay only.
    bus_monitor=False,
    # "RS422, 9600,N,8,1" (fangym0335/first src/lischn017.c:4; board command
    # :1731-1737, speed code 03, no parity).
    line_settings=(LineSetting(9600, "N"),),
    # The FCC waits 150 ms before every request (INTERVAL, lischn017.c:29).
    inter_frame_gap_ms=150,
    # The FCC checks the low nibble of a reply's address (lischn017.c:1487).
    address_range=(1, 15),
    sources=("fangym0335/first src/lischn017.c (温州蓝峰)",),
)
