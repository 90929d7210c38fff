"""What a Sinopec capture says, frame by frame, for ``forecourt decode``.

:func:`describe` walks the bytes with the same decoder the driver uses
(:mod:`protocols.sinopec.framer`), so a technician sees exactly what the
collector would accept or reject, in stream order:

- a frame found: ``{"ok": true, "offset", "protocol": "sinopec", "message",
  "dst", "src", "ctrl", "frame_no", "fields", "values"}`` — ``fields`` the raw
  integers of the message (byte strings and BCD as upper-case hex),
  ``values`` what they mean (decimal strings in yuan / litres, text);
- a stretch rejected: ``{"ok": false, "offset", "error", "detail"}`` with
  ``error`` one of ``garbage``, ``bad_crc``, ``bad_length``, ``truncated``
  (framing, see the framer's recovery cases) or ``bad_message`` (a good frame
  whose data is no message we know; its header is in ``detail``).

The message is told by its command and length: both directions of every
command we use have different lengths (30 poll; 31 realtime; 32 record;
3C confirm; 38 totals_query / totals; 3A info_query / info; 3B errors_query /
errors; layouts in :mod:`protocols.sinopec.messages` and
:mod:`protocols.sinopec.extensions`). Everything is JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from protocols.describing import Told, told, walk
from protocols.events import NozzleState, ProtocolError
from protocols.sinopec.extensions import (
    CMD_ERROR_INFO,
    CMD_READ_INFO,
    CMD_TOTALS,
    ERROR_QUERY_LEN,
    PUMP_WIDE,
    QUERY_LEN,
    InfoReading,
    TotalsReading,
    alarm_code,
    parse_errors,
    parse_info,
    parse_totals,
)
from protocols.sinopec.framer import Frame, _next_start, decode_at
from protocols.sinopec.messages import (
    CMD_CONFIRM,
    CMD_POLL,
    CMD_REALTIME,
    CMD_RECORD,
    RECORD,
    ST_CARD,
    ST_NOZZLE,
    TransactionRecord,
    entry_status,
    hundredths,
    parse_confirm,
    parse_realtime,
    parse_record,
)

PROTOCOL = "sinopec"

_Reading = TypeVar("_Reading")


def _money(value: int) -> str:
    return str(hundredths(value))


def _poll(data: bytes) -> Told | ProtocolError:
    if len(data) != 1:
        return ProtocolError("bad_message", f"30 poll must be 1 byte, got {len(data)}")
    return "poll", {}, {}


def _realtime(data: bytes) -> Told | ProtocolError:
    entries = parse_realtime(data)
    if isinstance(entries, ProtocolError):
        return entries
    fields, nozzles = [], []
    for e in entries:
        raw: dict[str, Any] = {"st": e.st, "nzn": e.nzn}
        value: dict[str, Any] = {"nozzle": e.nzn}
        if e.st == ST_CARD:
            raw.update(asn=e.asn.hex().upper(), card_st=e.card_st, bal=e.bal)
            value.update(state=str(NozzleState.IDLE), card=e.asn.hex().upper())
            value["balance"] = _money(e.bal)
        elif e.st == ST_NOZZLE:
            raw.update(unit=e.unit, amn=e.amn, vol=e.vol, prc=e.prc)
            value["state"] = str(entry_status(e, 0).state)
            value.update(volume=_money(e.vol), amount=_money(e.amn), price=_money(e.prc))
        else:
            value["state"] = str(NozzleState.IDLE)
        fields.append(raw)
        nozzles.append(value)
    return "realtime", {"num": len(entries), "entries": fields}, {"nozzles": nozzles}


def _record(data: bytes) -> Told | ProtocolError:
    record = parse_record(data)
    if isinstance(record, ProtocolError):
        return record
    fields: dict[str, Any] = {}
    for name, value in RECORD.parse(data).items():  # wire order, raw values
        if name != "command" and not name.startswith("_"):
            fields[name] = value.hex().upper() if isinstance(value, bytes) else value
    return "record", fields, _record_values(record)


def _record_values(record: TransactionRecord) -> dict[str, Any]:
    return {
        "order_no": str(record.pos_ttc),
        "ended_at": record.time.isoformat(),
        "nozzle": record.nzn,
        "grade": record.g_code,
        "price": _money(record.prc),
        "volume": _money(record.vol),
        "amount": _money(record.amn),
        "totalizer_volume_end": _money(record.v_tot),
        "balance": _money(record.bal),
    }


def _confirm(data: bytes) -> Told | ProtocolError:
    pos_ttc = parse_confirm(data)
    if isinstance(pos_ttc, ProtocolError):
        return pos_ttc
    return "confirm", {"pos_ttc": pos_ttc}, {"order_no": str(pos_ttc)}


def _query_or_answer(
    name: str,
    parse: Callable[[bytes], _Reading | ProtocolError],
    tell: Callable[[bytes, _Reading], Told],
) -> Callable[[bytes], Told | ProtocolError]:
    """A 38 / 3A frame: the query (``<name>_query``, by its length) or the
    answer ``parse`` reads and ``tell`` tells."""

    def message(data: bytes) -> Told | ProtocolError:
        if len(data) == QUERY_LEN:
            nozzle = None if data[1] == PUMP_WIDE and name == "info" else data[1]
            return f"{name}_query", {"nzn": data[1]}, {"nozzle": nozzle}
        reading = parse(data)
        if isinstance(reading, ProtocolError):
            return reading
        return tell(data, reading)

    return message


def _totals_answer(data: bytes, reading: TotalsReading) -> Told:
    fields = {"nzn": reading.nzn, "v_tot": reading.v_tot, "a_tot": reading.a_tot}
    values = {"nozzle": reading.nzn, "volume": _money(reading.v_tot)}
    return "totals", fields, {**values, "amount": _money(reading.a_tot)}


def _info_answer(data: bytes, reading: InfoReading) -> Told:
    items, pos = [], 3  # command, NZN, COUNT: the items follow (extensions layout)
    for _ in range(data[2]):
        length = data[pos + 1]
        items.append({"tag": data[pos], "value": data[pos + 2 : pos + 2 + length].hex().upper()})
        pos += 2 + length
    fields = {"nzn": reading.nzn, "count": data[2], "items": items}
    nozzle = None if reading.nzn == PUMP_WIDE else reading.nzn
    return "info", fields, {"nozzle": nozzle, "components": dict(reading.components)}


_totals = _query_or_answer("totals", parse_totals, _totals_answer)
_info = _query_or_answer("info", parse_info, _info_answer)


def _errors(data: bytes) -> Told | ProtocolError:
    if len(data) == ERROR_QUERY_LEN:
        return "errors_query", {}, {}
    active = parse_errors(data)
    if isinstance(active, ProtocolError):
        return active
    entries = [{"nzn": nzn, "code": f"{code:02d}"} for nzn, code in active]
    alarms = [
        {"nozzle": None if nzn == PUMP_WIDE else nzn, "code": code, "alarm": alarm_code(code)}
        for nzn, code in active
    ]
    return "errors", {"count": len(active), "entries": entries}, {"alarms": alarms}


_MESSAGES: dict[int, Callable[[bytes], Told | ProtocolError]] = {
    CMD_POLL: _poll,
    CMD_REALTIME: _realtime,
    CMD_RECORD: _record,
    CMD_CONFIRM: _confirm,
    CMD_TOTALS: _totals,
    CMD_READ_INFO: _info,
    CMD_ERROR_INFO: _errors,
}


def _frame(frame: Frame, offset: int) -> dict[str, Any]:
    header = {"dst": frame.dst, "src": frame.src, "ctrl": frame.ctrl, "frame_no": frame.frame_no}
    parse = _MESSAGES.get(frame.command)
    result = (
        ProtocolError("bad_message", f"command {frame.command:02X} is not decoded")
        if parse is None
        else parse(frame.data)
    )
    return told(offset, PROTOCOL, result, header, frame.data, **header)


def describe(data: bytes) -> list[dict[str, Any]]:
    """One dict per frame found or stretch rejected in ``data``, in stream order."""
    return walk(data, decode_at, Frame, _frame, next_start=_next_start)
