"""Sinopec card-dispenser link protocol (卡机联动 V1.1), protocols.md §2."""

from protocols.descriptor import LineSetting, family

DESCRIPTOR = family(
    "sinopec",
    "Sinopec card-dispenser link 卡机联动 V1.1",
    bus_monitor=True,
    # protocols.md §2, "Line settings seen in Chinese dispenser drivers".
    line_settings=(
        LineSetting(9600, "E"),
        LineSetting(5760, "E"),
        LineSetting(9600, "O"),
        LineSetting(9600, "N"),
        LineSetting(4800, "E"),
    ),
    inter_frame_gap_ms=5,
    address_range=(1, 99),
    sources=("shared/protocols.md §2",),
)
