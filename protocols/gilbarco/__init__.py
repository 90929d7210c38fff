"""Gilbarco two-wire current loop (protocols.md §4), read-only master, sans-IO."""

from protocols.descriptor import LineSetting, ProtocolDescriptor

DESCRIPTOR = ProtocolDescriptor(
    name="gilbarco",
    title="Gilbarco two-wire current loop",
    driver="protocols.gilbarco.driver:GilbarcoPoller",
    describer="protocols.gilbarco.describe:describe",
    options="protocols.gilbarco.options:GilbarcoOptions",
    responder="hil.dispenser.gilbarco:GilbarcoResponder",
    # protocols.md §4, "Physical": 9600 8N1 today, 5787 (5760) 8E1 on older sites.
    line_settings=(LineSetting(9600, "N"), LineSetting(5787, "E"), LineSetting(5760, "E")),
    inter_frame_gap_ms=10,
    address_range=(1, 16),
    sources=("shared/protocols.md §4",),
)
