"""What a UDC capture says, frame by frame, for ``forecourt decode``.

:func:`describe` walks the bytes as a tap on the line sees them (both
directions in line order) with the decoder the monitor uses in ``listen``
(:class:`protocols.udc.framer.BusDecoder`, its recovery rules included), so
a technician sees what the collector would accept or reject:

- a request: ``{"ok": true, "offset", "protocol": "udc", "direction":
  "request", "message", "address", "pump", "read_only", "fields",
  "values"}`` — ``pump`` the wire number (address − 1), ``read_only`` false
  for the commands that change the pump (authorise, stop, the hang-up
  acknowledgement, writes);
- a reply: the same with ``"direction": "reply"`` and the message of the
  request it answers (a reply carries no header of its own);
- a stretch rejected: ``{"ok": false, "offset", "error", "detail"}``
  (``garbage``, ``bad_pair``, ``bad_length``, ``truncated``, or
  ``bad_message`` for a well-framed reply whose digits are not BCD).

``fields`` are the raw values (digit fields as their integer digits),
``values`` what they mean at two decimal places (the common setting; a
port's own decimals are options). A reply pasted without its request
cannot be framed: UDC replies have no header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocols.describing import Described, decimal_text, shown
from protocols.events import ProtocolError
from protocols.udc.framer import BusDecoder, Item, Reply, Request
from protocols.udc.messages import (
    ACCEPTED,
    ACK_HANGUP,
    AUTHORISE,
    PUMP_CHANGING,
    READ_DISPLAY,
    READ_ID,
    READ_NOZZLE,
    READ_PRICES,
    READ_STATUS,
    READ_TOTALS,
    STATE_NAMES,
    STOP,
    WRITE_DISPLAY,
    WRITE_PRICES,
    lifted_nozzle,
    masked,
    nozzle_of_selector,
    parse_authorisation,
    parse_display,
    parse_price_write,
    parse_prices,
    parse_totals,
)

PROTOCOL = "udc"


def _state(data: bytes) -> Described:
    state = data[0]
    name = STATE_NAMES.get(masked(state), f"unknown {state:02X}")
    return {"state": state}, {"state": name}


def _display(data: bytes) -> Described | str:
    display = parse_display(data)
    if display is None:
        return "display digits are not BCD"
    fields = {
        "price": display.price,
        "amount": display.amount,
        "volume": display.volume,
        "state": display.state,
    }
    values = {"price": decimal_text(display.price), "amount": decimal_text(display.amount)}
    values.update(volume=decimal_text(display.volume), state=_state(data[8:])[1]["state"])
    return fields, values


def _totals(data: bytes) -> Described | str:
    totals = parse_totals(data)
    if totals is None:
        return "totals digits are not BCD"
    fields = {"volume": totals.volume, "amount": totals.amount}
    return fields, {"volume": decimal_text(totals.volume), "amount": decimal_text(totals.amount)}


def _prices(data: bytes) -> Described | str:
    found = parse_prices(data)
    if found is None:
        return "price digits are not BCD"
    prices, grades = found
    return {"prices": prices, "grades": grades}, {"prices": [decimal_text(p) for p in prices]}


def _nozzle(data: bytes) -> Described:
    return {"nozzle": data[0]}, {"nozzle": lifted_nozzle(data)}


def _answer(data: bytes) -> Described:
    return {"answer": data[0]}, {"accepted": data[0] == ACCEPTED}


def _id(data: bytes) -> Described:
    return {"id": data[0]}, {}


#: Reply data → (fields, values), or a reason it is not understood.
_REPLIES: dict[tuple[int, int], Callable[[bytes], Described | str]] = {
    READ_STATUS: _state,
    READ_DISPLAY: _display,
    READ_TOTALS: _totals,
    READ_PRICES: _prices,
    READ_NOZZLE: _nozzle,
    READ_ID: _id,
    ACK_HANGUP: _answer,
    WRITE_PRICES: _answer,
    STOP: _state,
    AUTHORISE: _state,
    WRITE_DISPLAY: _state,
}


def _request_fields(request: Request) -> Described | str:
    data, command = request.data, request.command
    if command == READ_TOTALS:
        return {"selector": data[0]}, {"nozzle": nozzle_of_selector(data[0])}
    if command == AUTHORISE:
        auth = parse_authorisation(data)
        if auth is None:
            return "authorisation digits are not BCD"
        fields = {"slow_flow": auth.slow_flow, "price": auth.price}
        fields.update(amount=auth.amount, volume=auth.volume)
        values = {
            "price": decimal_text(auth.price),
            "amount": decimal_text(auth.amount),
            "volume": decimal_text(auth.volume),
        }
        return fields, values
    if command == WRITE_PRICES:
        prices = parse_price_write(data)
        if prices is None:
            return "price digits are not BCD"
        return {"prices": [list(p) for p in prices]}, {"cash": [decimal_text(c) for c, _ in prices]}
    if command == WRITE_DISPLAY:
        return _display(data + b"\x00")
    return {}, {}


def _frame(item: Request | Reply, offset: int) -> dict[str, Any]:
    request = item if isinstance(item, Request) else item.request
    if isinstance(item, Request):
        direction, described = "request", _request_fields(item)
    else:
        direction, described = "reply", _REPLIES[request.command](item.data)
    where = f"{direction} {request.name} of pump {request.address}"
    header: dict[str, Any] = {
        "direction": direction,
        "message": request.name,
        "address": request.address,
    }
    header.update(pump=request.pump, read_only=request.command not in PUMP_CHANGING)
    return shown(offset, PROTOCOL, described, where, header)


def _entry(item: Item, offset: int) -> dict[str, Any]:
    if isinstance(item, ProtocolError):
        return {"ok": False, "offset": offset, "error": item.kind, "detail": item.detail}
    return _frame(item, offset)


def walk(data: bytes) -> list[tuple[int, Item]]:
    """(offset, item) for every request, reply and rejected stretch, in line
    order, with the last reply taken as it stands at the end (census, describe)."""
    decoder = BusDecoder()
    buf = bytearray(data)
    out: list[tuple[int, Item]] = []
    pos = 0
    while True:
        item, consumed = decoder._decode_at(buf, pos)
        if consumed == 0:
            break
        if item is not None:
            out.append((pos, item))
        pos += consumed
    for item in decoder.end_of_capture(bytes(buf[pos:])):
        out.append((pos, item))
        if isinstance(item, Reply):
            pos += 2 * len(item.data)
    return out


def describe(data: bytes) -> list[dict[str, Any]]:
    """One dict per request, reply or stretch rejected in ``data``, in line order."""
    return [_entry(item, offset) for offset, item in walk(data)]
