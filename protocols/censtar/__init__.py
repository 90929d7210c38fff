"""正星 Censtar protocol 5.0, ``fangym0335/first src/lischn005.c``: relay and
listen only (docs/protocols/censtar.md)."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "censtar",
    "正星 Censtar 5.0",
    bus_monitor=True,
    # Current loop, 9600 8E1 (lischn005.c:4, 2031-2044).
    line_settings=(LineSetting(9600, "E"),),
    # The fuelling point's configured number (lischn005.c:115); no range in
    # the source: 1..99 as for the other protocols.
    address_range=(1, 99),
    poll_refused=(
        "the pump keeps each sale (state bit 0x10) until the controller removes it with "
        "17 + its sequence number, and the controller lets no nozzle fuel while one is "
        "uncleared; 17 changes the pump "
        "(fangym0335/first src/lischn005.c:585, 631, 1322-1362, 2007-2024)"
    ),
    sources=("fangym0335/first src/lischn005.c (河南正星)",),
)
