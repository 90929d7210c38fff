"""What a Changkong Uninfo capture says, item by item, for ``forecourt decode``.

:func:`describe` walks the bytes with the reader a ``listen`` port uses
(:class:`protocols.uninfo.framer.BusReader`: a capture of the loop carries
both directions), so a technician sees what the collector would accept or
reject, in stream order:

- a request: ``{"ok": true, "offset", "protocol": "uninfo", "message",
  "side": "master", "pump", "fields", "values"}`` — ``message`` one of
  ``status_query``, ``display_query``, ``totals_query``, ``sale_query``
  (reads) and ``authorise``, ``stop``, ``stop_all``, ``price``, ``preset``,
  ``data`` (what changes a pump: never sent by the collector);
- a reply: the same keys with ``side`` ``pump`` and ``message`` ``status``,
  ``display``, ``totals``, ``sale`` or ``data_reply``; ``fields`` raw digits
  as integers, ``values`` what they mean (decimal strings at 2 places, the
  driver's default);
- a stretch rejected: ``{"ok": false, "offset", "error", "detail"}``,
  ``error`` one of ``garbage``, ``bad_lrc``, ``bad_length``,
  ``bad_message``, ``unexpected``, ``truncated`` (the capture ends inside a
  reply).

Everything is JSON-serialisable.
"""

from __future__ import annotations

from typing import Any

from protocols.describing import decimal_text
from protocols.events import ProtocolError
from protocols.uninfo.framer import BusReader, Reply, Request
from protocols.uninfo.messages import (
    FN_PRESET,
    FN_PRICE,
    READ_COMMANDS,
    REQUEST_NAMES,
    RESULTS,
    STATE_NAMES,
    Display,
    SaleRecord,
)

PROTOCOL = "uninfo"


def _request(request: Request) -> tuple[str, dict[str, Any]]:
    name = REQUEST_NAMES[request.command]
    if request.command in READ_COMMANDS:
        return f"{name}_query", {}
    if request.address is None:
        return "stop_all", {}
    if request.block is not None:
        block = request.block
        names = {FN_PRICE: "price", FN_PRESET: "preset"}
        fields = {"function": block.function, "words": block.raw.hex(" ").upper()}
        return names.get(block.function, "data"), fields
    return name, {}


def _reply(reply: Reply) -> tuple[str, dict[str, Any], dict[str, Any]]:
    value = reply.value
    kind = reply.request.kind
    if kind == "status":
        assert isinstance(value, int)
        return "status", {"state": value}, {"state": STATE_NAMES[value]}
    if kind == "display":
        assert isinstance(value, Display)
        raw = {"amount": value.amount, "volume": value.volume}
        return "display", raw, {k: decimal_text(v) for k, v in raw.items()}
    if kind == "sale":
        assert isinstance(value, SaleRecord)
        raw = {"price": value.price, "volume": value.volume, "amount": value.amount}
        return "sale", raw, {k: decimal_text(v) for k, v in raw.items()}
    if kind == "totals":
        assert isinstance(value, tuple)
        fields = {
            str(g.nozzle): {
                "volume_total": g.volume_total,
                "amount_total": g.amount_total,
                "price": g.price,
            }
            for g in value
        }
        values = {
            nozzle: {k: decimal_text(v) for k, v in raw_totals.items()}
            for nozzle, raw_totals in fields.items()
        }
        return "totals", fields, values
    assert isinstance(value, int)
    return "data_reply", {"result": value}, {"result": RESULTS.get(value, "unknown")}


def _item(item: Request | Reply, offset: int) -> dict[str, Any]:
    if isinstance(item, Request):
        message, fields = _request(item)
        values: dict[str, Any] = {}
        side, pump = "master", item.address
    else:
        message, fields, values = _reply(item)
        side, pump = "pump", item.request.address
    return {
        "ok": True,
        "offset": offset,
        "protocol": PROTOCOL,
        "message": message,
        "side": side,
        "pump": pump,
        "fields": fields,
        "values": values,
    }


def describe(data: bytes) -> list[dict[str, Any]]:
    """One dict per request, reply or stretch rejected in ``data``, in stream order."""
    reader = BusReader()
    buf = bytearray(data)
    out: list[dict[str, Any]] = []
    pos = 0
    while pos < len(buf):
        items, consumed = reader.step(buf, pos)
        for item in items:
            if isinstance(item, ProtocolError):
                error = {"ok": False, "offset": pos, "error": item.kind, "detail": item.detail}
                out.append(error)
            else:
                out.append(_item(item, pos))
        if consumed == 0 and not items:
            detail = f"{len(buf) - pos} words at the end of the capture complete nothing"
            out.append({"ok": False, "offset": pos, "error": "truncated", "detail": detail})
            break
        pos += consumed
    return out
