"""Gilbarco two-wire current loop (protocols.md §4): poll, relay, listen, decode.

Layout, sources and where they differ: docs/protocols/gilbarco.md.
"""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "gilbarco",
    "Gilbarco two-wire current loop (美国长吉 / 北京长吉)",
    # The loop is shared: a tap sees command, then reply, on one line
    # (§4), and the line reader tells them apart (protocols/gilbarco/line.py).
    bus_monitor=True,
    # §4 "Physical": 9600 8N1 today, 5787 8E1 on older sites, driven at 5760
    # by the FCC's IO board (fangym0335/first src/lischn001.c:4, 2464-2466).
    line_settings=(LineSetting(9600, "N"), LineSetting(5787, "E"), LineSetting(5760, "E")),
    inter_frame_gap_ms=10,
    # §4: "Replies come 80–130 ms after the command".
    reply_within_ms=130,
    address_range=(1, 16),
    sources=(
        "shared/protocols.md §4",
        "fangym0335/first src/lischn001.c",
        "fangym0335/first src/lischn022.c",
    ),
)
