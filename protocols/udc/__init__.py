"""恒山 UDC (UDC Protocol P1 & P2), ``fangym0335/first src/lischn019.c`` /
``lischn020.c``: relay and listen only (docs/protocols/udc.md)."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "udc",
    "恒山 Hengshan UDC (UDC Protocol P1 & P2)",
    bus_monitor=True,
    # 3-wire current loop, 9600 8N1 (lischn019.c:4, 2332-2338).
    line_settings=(LineSetting(9600, "N"),),
    # The fuelling point's number; the wire carries number − 1 in 4 bits
    # (lischn019.c:152, 824).
    address_range=(1, 16),
    poll_refused=(
        "the controller must acknowledge every hang-up (C·A2) before the pump handles "
        "the next lift and authorise every fill (F·A5); both change the pump "
        "(fangym0335/first src/lischn019.c:546-565, 2053-2066, 2093-2122, 1483-1506)"
    ),
    sources=(
        "fangym0335/first src/lischn019.c (恒山 TMC / TH30)",
        "fangym0335/first src/lischn020.c (恒山 TQC / TH22)",
    ),
)
