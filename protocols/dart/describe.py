"""What a Wayne DART capture says, frame by frame, for ``forecourt decode``.

:func:`describe` walks the bytes with the decoder the driver uses
(:mod:`protocols.dart.framer`), so a technician sees exactly what the
collector would accept or reject, in stream order:

- a frame found: ``{"ok": true, "offset", "protocol": "dart", "message",
  "adr", "pump", "ctrl", "seq", "transactions"}`` — ``message`` is ``poll``,
  ``ack``, ``nak``, ``eot`` or ``data``; ``pump`` the pump number (ADR − 0x4F);
  ``seq`` None for a poll; ``transactions`` (DATA only) one dict each:
  ``{"trans": "DC2", "code": 2, "fields": {raw integers}, "values": {scaled
  decimal strings, names}}``, ``{"trans", "code", "error"}`` when its data
  does not fit its layout, ``{"trans": "0x07", "code", "data": hex}`` for a
  TRANS we do not decode;
- a stretch rejected: ``{"ok": false, "offset", "error", "detail"}`` with
  ``error`` one of ``garbage``, ``bad_crc``, ``bad_escape``, ``truncated``,
  ``bad_message`` (the framer's recovery cases).

CD1 / DC1 and CD101 / DC101 share their TRANS codes and the bytes do not
tell the direction: DATA frames are read as sent by the pump (what a poll
port receives) unless ``sender="master"``. Decimal places default to 2 as in
the driver. Everything is JSON-serialisable.
"""

from __future__ import annotations

from typing import Any, Literal

from protocols.bcd import scaled
from protocols.dart.framer import ADR_MIN, Frame, decode_at, next_start
from protocols.dart.messages import (
    DCC_NAMES,
    STATUS_NAMES,
    Cd1,
    Cd101,
    Dc1,
    Dc2,
    Dc3,
    Dc5,
    Dc9,
    Dc101,
    alarm_code,
    parse_reply,
    parse_request,
)
from protocols.describing import walk
from protocols.events import ProtocolError

PROTOCOL = "dart"

_NAMES = {1: "DC1", 2: "DC2", 3: "DC3", 5: "DC5", 9: "DC9", 0x65: "DC101"}
_REQUEST_NAMES = {1: "CD1", 0x65: "CD101"}

Decimals = tuple[int, int, int]  # volume, amount, price


def _fields(message: object, decimals: Decimals) -> tuple[dict[str, Any], dict[str, Any]]:
    vd, ad, pd = decimals
    fields: dict[str, Any]
    values: dict[str, Any]
    match message:
        case Cd1(dcc):
            return {"dcc": dcc}, {"dcc": DCC_NAMES.get(dcc, f"forbidden_{dcc:02X}")}
        case Cd101(counter):
            return {"counter": counter}, {"nozzle": counter}
        case Dc1(status):
            return {"status": status}, {"status": STATUS_NAMES[status]}
        case Dc2(volume, amount):
            values = {"volume": str(scaled(volume, vd)), "amount": str(scaled(amount, ad))}
            return {"volume": volume, "amount": amount}, values
        case Dc3(price, nozzle, out):
            fields = {"price": price, "nozzle": nozzle, "nozzle_out": int(out)}
            return fields, {"price": str(scaled(price, pd)), "nozzle": nozzle, "nozzle_out": out}
        case Dc5(code):
            return {"alarm": code}, {"alarm": alarm_code(code)}
        case Dc9(pump_id):
            return {"pump_id": int(pump_id)}, {"pump_id": pump_id}
        case Dc101(counter, volume, amount, fillings):
            fields = {"counter": counter, "volume": volume, "amount": amount, "fillings": fillings}
            values = {
                "nozzle": counter,
                "volume_total": str(scaled(volume, vd)),
                "amount_total": str(scaled(amount, ad)),
                "fillings": fillings,
            }
            return fields, values
    raise TypeError(message)


def _transaction(trans: int, data: bytes, master: bool, decimals: Decimals) -> dict[str, Any]:
    names = _REQUEST_NAMES if master else _NAMES
    message = parse_request(trans, data) if master else parse_reply(trans, data)
    name = names.get(trans, f"0x{trans:02X}")
    if message is None:
        return {"trans": name, "code": trans, "data": data.hex(" ").upper()}
    if isinstance(message, ProtocolError):
        return {"trans": name, "code": trans, "error": message.detail}
    fields, values = _fields(message, decimals)
    return {"trans": name, "code": trans, "fields": fields, "values": values}


def _frame(frame: Frame, offset: int, master: bool, decimals: Decimals) -> dict[str, Any]:
    return {
        "ok": True,
        "offset": offset,
        "protocol": PROTOCOL,
        "message": frame.kind,
        "adr": frame.adr,
        "pump": frame.adr - ADR_MIN + 1,
        "ctrl": frame.ctrl,
        "seq": None if frame.kind == "poll" else frame.seq,
        "transactions": [_transaction(t, d, master, decimals) for t, d in frame.transactions],
    }


def describe(
    data: bytes,
    *,
    sender: Literal["pump", "master"] = "pump",
    volume_decimals: int = 2,
    amount_decimals: int = 2,
    price_decimals: int = 2,
) -> list[dict[str, Any]]:
    """One dict per frame found or stretch rejected in ``data``, in stream order."""
    decimals = (volume_decimals, amount_decimals, price_decimals)
    master = sender == "master"

    def tell(frame: Frame, offset: int) -> dict[str, Any]:
        return _frame(frame, offset, master, decimals)

    return walk(data, decode_at, Frame, tell, next_start=next_start)
