"""Reports → computer-format responses: the inverse of :mod:`protocols.tls.parse`.

For tests (round trips, captured-frame fixtures) and tools. The gauge
simulator in ``hil/atg`` renders its responses on its own, straight from the
manual, so that it stays an independent check of this package.

``None`` values are written as ``?`` fields (§7.0). A record's float count
``NN`` is the number of values written: all of the record's fields (7 for
i201, 10 for a delivery, plus ``extra``) unless ``count`` asks for fewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from protocols.tls.reports import (
    AlarmHistory,
    Deliveries,
    Delivery,
    Inventory,
    LeakTestHistory,
    LeakTestResults,
    RawResponse,
    Report,
    SystemStatus,
    TankAlarms,
    TankInventory,
)
from protocols.tls.wire import encode_float, frame_response

INVENTORY_ORDER = ("volume", "tc_volume", "ullage", "height", "water", "temperature")
DELIVERY_ORDER = (
    "start_volume",
    "start_tc_volume",
    "start_water",
    "start_temp",
    "end_volume",
    "end_tc_volume",
    "end_water",
    "end_temp",
    "start_height",
    "end_height",
)


def stamp(at: datetime) -> str:
    """``YYMMDDHHmm``."""
    return at.strftime("%y%m%d%H%M")


def floats(values: Sequence[Decimal | float | None]) -> str:
    """``NN`` (hex) followed by the values as §6.3 floats."""
    return f"{len(values):02X}" + "".join(encode_float(v) for v in values)


def inventory_values(t: TankInventory) -> list[Decimal | None]:
    values = [getattr(t, name) for name in INVENTORY_ORDER]
    return [*values, t.water_volume, *t.extra]


def inventory_record(t: TankInventory, count: int | None = None) -> str:
    """One i201 record; ``count`` limits the floats sent (NN honoured by parsers)."""
    values = inventory_values(t)[: count if count is not None else None]
    status = "????" if t.status is None else f"{t.status:04X}"
    return f"{t.tank:02d}{t.product}{status}{floats(values)}"


def delivery_record(d: Delivery, count: int | None = None) -> str:
    values = [getattr(d, name) for name in DELIVERY_ORDER] + list(d.extra)
    return stamp(d.start) + stamp(d.end) + floats(values[: count if count is not None else None])


def encode_data(report: Report) -> str:
    """The data field of ``report`` (after the function code, before ``&&``)."""
    if isinstance(report, RawResponse):
        return report.data
    out = [stamp(report.at)]
    if isinstance(report, Inventory):
        out += [inventory_record(t) for t in report.tanks]
    elif isinstance(report, Deliveries):
        for td in report.tanks:
            out.append(f"{td.tank:02d}{td.product}{len(td.deliveries):02d}")
            out += [delivery_record(d) for d in td.deliveries]
    elif isinstance(report, TankAlarms):
        for tank, codes in report.tanks.items():
            out.append(f"{tank:02d}{len(codes):02X}" + "".join(f"{c:02d}" for c in codes))
    elif isinstance(report, AlarmHistory):
        for tank, events in report.tanks.items():
            out.append(f"{tank:02d}{len(events):02d}")
            out += [stamp(e.at) + f"{e.code:04X}" for e in events]
    elif isinstance(report, LeakTestHistory):
        for tank, entries in report.tanks.items():
            out.append(f"{tank:02d}{len(entries):02X}")
            for e in entries:
                head = f"{e.report_type:02d}{e.history_number:02d}{e.test_type:02d}"
                tail = "".join(encode_float(v) for v in (e.hours, e.volume, e.percent_full))
                out.append(head + stamp(e.start) + tail)
    elif isinstance(report, LeakTestResults):
        for tank, results in report.tanks.items():
            out.append(f"{tank:02d}{len(results):02X}")
            for r in results:
                head = f"{r.test_type:02d}{int(r.manifolded):02d}{stamp(r.start)}{r.result:02d}"
                out.append(head + "".join(encode_float(v) for v in (r.rate, r.hours, r.volume)))
    elif isinstance(report, SystemStatus):
        out += [f"{a.category:02d}{a.type:02d}{a.device:02d}" for a in report.alarms]
    return "".join(out)


def encode_response(report: Report) -> bytes:
    """``report`` as the console would send it, checksum and all."""
    if isinstance(report, RawResponse):
        return frame_response(report.function, report.data)
    return frame_response(f"{report.function}{report.query:02d}", encode_data(report))
