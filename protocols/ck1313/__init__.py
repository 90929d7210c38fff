"""CK1313 (宝德尔 Baodeer, 老长空 Changkong non-card), read-only master and monitor, sans-IO."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "ck1313",
    "CK1313 宝德尔 Baodeer / 老长空 Changkong non-card (4-wire current loop)",
    # Replies name their pump and command: a tap on the pumps' pair reads them.
    bus_monitor=True,
    # "4 Line CL, 4800,8,e,1" (fangym0335/first src/lischn006.c:4, board
    # command :1669-1675; lischn010.c:4 the same).
    line_settings=(LineSetting(4800, "E"),),
    # The FCC waits 150 ms before every request (INTERVAL, lischn006.c:37).
    inter_frame_gap_ms=150,
    # 0x90 + 16·phyfp fits a nibble for pumps 1..6 (lischn006.c:116-117).
    address_range=(1, 6),
    sources=(
        "fangym0335/first src/lischn006.c (宝德尔)",
        "fangym0335/first src/lischn010.c (老长空 non-card, same protocol)",
        "fangym0335/first src/lrc.c:91-101 (Check_xor_bdr)",
    ),
)
