"""Computer-format rendering for the simulated console, straight from the manual.

Deliberately independent of :mod:`protocols.tls` (which parses what this
writes): a misreading shared by both would otherwise go unnoticed. The
independent peer (``veeder-root-tls-socket-library``) checks this side too.

References are to the 3xx manual 576013-635 Rev U: §6.1 envelope and
checksum, §6.3 floats, §7.0 ``?`` for inactive devices, §7.2.1 i101,
§7.2.2 i201/i202/i205/i206/i207/i208/i20C, §7.3.4 i604.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import datetime

#: §5: the whole reply to a function code the console does not recognise.
UNKNOWN = b"\x019999FF1B\x03"


def f32(value: float | None) -> str:
    """§6.3: big-endian IEEE-754 single as 8 upper-case hex digits; None → ``?``."""
    if value is None:
        return "?" * 8
    return struct.pack(">f", value).hex().upper()


def f32_round(value: float) -> float:
    """``value`` as the console sends it: rounded to float32."""
    result: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return result


def stamp(at: datetime) -> str:
    """``YYMMDDHHmm`` (every date in §7)."""
    return at.strftime("%y%m%d%H%M")


def frame(function: str, data: str) -> bytes:
    """§6.1: ``SOH function data && CCCC ETX``; CCCC = −(byte sum SOH…&&) mod 2¹⁶."""
    body = b"\x01" + function.encode("ascii") + data.encode("ascii") + b"&&"
    total = 0
    for byte in body:
        total += byte
    return body + f"{(0x10000 - total % 0x10000) % 0x10000:04X}".encode() + b"\x03"


Leak = tuple[int, int, int, datetime, float, float, float]
Result = tuple[int, int, datetime, int, float, float, float]


def inventory(tank: int, product: str, status: int, values: Iterable[float]) -> str:
    """i201 record: ``TT p ssss NN`` + NN floats (NN hex)."""
    fields = [f32(v) for v in values]
    return f"{tank:02d}{product}{status:04X}{len(fields):02X}" + "".join(fields)


def deliveries(
    tank: int, product: str, records: list[tuple[datetime, datetime, list[float]]]
) -> str:
    """i202 / i20C: ``TT p dd`` (dd decimal) + per delivery ``start end NN floats``."""
    out = f"{tank:02d}{product}{len(records):02d}"
    for start, end, values in records:
        out += stamp(start) + stamp(end) + f"{len(values):02X}" + "".join(map(f32, values))
    return out


def tank_status(tank: int, codes: list[int]) -> str:
    """i205: ``TT nn`` (hex) + two-digit alarm codes (the i101 AA=02 numbers)."""
    return f"{tank:02d}{len(codes):02X}" + "".join(f"{c:02d}" for c in codes)


def alarm_history(tank: int, events: list[tuple[datetime, int]]) -> str:
    """i206: ``TT nn`` (decimal) + per alarm ``YYMMDDHHmm aaaa`` (hex)."""
    return f"{tank:02d}{len(events):02d}" + "".join(f"{stamp(at)}{c:04X}" for at, c in events)


def leak_history(tank: int, entries: list[Leak]) -> str:
    """i207: ``TT NN`` (hex) + per report ``RR nn tt YYMMDDHHmm hours volume percent``."""
    out = f"{tank:02d}{len(entries):02X}"
    for rr, nn, tt, start, hours, volume, percent in entries:
        out += f"{rr:02d}{nn:02d}{tt:02d}{stamp(start)}{f32(hours)}{f32(volume)}{f32(percent)}"
    return out


def leak_results(tank: int, results: list[Result]) -> str:
    """i208: ``TT NN`` (hex) + per result ``tt mm YYMMDDHHmm RR rate hours volume``."""
    out = f"{tank:02d}{len(results):02X}"
    for tt, mm, start, rr, rate, hours, volume in results:
        out += f"{tt:02d}{mm:02d}{stamp(start)}{rr:02d}{f32(rate)}{f32(hours)}{f32(volume)}"
    return out


def inactive(tank: int, function: str) -> str:
    """§7.0: an inactive device's record with ``?`` in the place of every number.

    Our reading of how far the ``?`` go: i201 fills product code, status, NN
    and the 7 floats; the reports with a count fill only the count (nothing
    follows a count of nothing), i202/i20C also the product code; i604 the float.
    """
    if function == "i201":
        return f"{tank:02d}" + "?" * (1 + 4 + 2 + 7 * 8)
    if function in ("i202", "i20C"):
        return f"{tank:02d}???"  # product code and dd
    if function == "i604":
        return f"{tank:02d}" + "?" * 8
    return f"{tank:02d}??"
