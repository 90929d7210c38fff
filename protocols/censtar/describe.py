"""What a Censtar capture says, frame by frame, for ``forecourt decode``.

:func:`describe` walks the bytes as a tap sees them (both directions in
line order) with the decoder the monitor uses in ``listen``
(:class:`protocols.censtar.framer.FrameDecoder`, its recovery included):

- a frame: ``{"ok": true, "offset", "protocol": "censtar", "direction"
  ("request" / "reply"), "message", "address", "read_only", "fields",
  "values"}`` — ``read_only`` false for the commands that change the pump
  (17 clear, 08 mode, 06 authorise, 05 stop, 03 price, 01 / 02 preset);
- a stretch rejected: ``{"ok": false, "offset", "error", "detail"}``
  (``garbage``, ``bad_xor``, ``truncated``, ``bad_message``).

``fields`` are raw values, ``values`` their meaning at two decimal places
(the common setting; a port's own decimals are options).
"""

from __future__ import annotations

from typing import Any

from protocols.censtar.framer import FrameDecoder, Item, decode_at
from protocols.censtar.messages import (
    CMD_CLEAR,
    CMD_MODE,
    CMD_PRICE,
    CMD_PRICE_READ,
    CMD_RUNNING,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    NOZZLE_OUT,
    PUMP_CHANGING,
    STATE_NAMES,
    UNCLEARED,
    Frame,
    parse_price,
    parse_record,
    parse_running,
    parse_totals,
)
from protocols.describing import Described, decimal_text, shown
from protocols.events import ProtocolError

PROTOCOL = "censtar"

#: Replies whose byte [3] is the pump's state (005:1773, 1362, 1522, 1577).
_STATE_REPLIES = frozenset({CMD_STATUS, CMD_CLEAR, 0x05, 0x06, CMD_MODE})


def _state(state: int) -> dict[str, Any]:
    return {
        "state": STATE_NAMES.get(state & 0x0F, f"unknown {state & 0x0F:X}"),
        "uncleared_sale": bool(state & UNCLEARED),
        "nozzle_out": bool(state & NOZZLE_OUT),
    }


def _reply(frame: Frame) -> Described | str:
    command = frame.command
    if command in _STATE_REPLIES:
        return {"state": frame.at(3)}, _state(frame.at(3))
    if command == CMD_RUNNING:
        running = parse_running(frame)
        if running is None:
            return "running digits are not BCD"
        return {"volume": running[0], "amount": running[1]}, {
            "volume": decimal_text(running[0]),
            "amount": decimal_text(running[1]),
        }
    if command == CMD_TOTALS:
        totals = parse_totals(frame)
        fields = {"amount": totals.amount, "volume": totals.volume}
        return fields, {
            "amount": decimal_text(totals.amount),
            "volume": decimal_text(totals.volume),
        }
    if command == CMD_PRICE_READ:
        price = parse_price(frame)
        if price is None:
            return "price digits are not BCD"
        return {"price": price}, {"price": decimal_text(price)}
    if command == CMD_SALE:
        record = parse_record(frame)
        if record is None:
            return "record price is not BCD"
        seq = record.seq.hex().upper()
        raw = {"amount": record.amount, "volume": record.volume, "price": record.price, "seq": seq}
        values = {"amount": decimal_text(record.amount), "volume": decimal_text(record.volume)}
        values.update(price=decimal_text(record.price), order_no=seq)
        return raw, values
    return {"data": frame.data.hex().upper()}, {}


def _request(frame: Frame) -> Described:
    if frame.command == CMD_CLEAR:
        seq = frame.data.hex().upper()
        return {"seq": seq}, {"order_no": seq}
    if frame.command == CMD_MODE:
        return {"mode": frame.data[0]}, {"open": frame.data[0] == 0xAA}
    if frame.command == CMD_PRICE:
        return {"price": frame.data.hex().upper()}, {}
    return ({"data": frame.data.hex().upper()} if frame.data else {}), {}


def _entry(item: Item, offset: int) -> dict[str, Any]:
    if isinstance(item, ProtocolError):
        return {"ok": False, "offset": offset, "error": item.kind, "detail": item.detail}
    described = _request(item) if item.request else _reply(item)
    header: dict[str, Any] = {
        "direction": "request" if item.request else "reply",
        "message": item.name,
    }
    header.update(address=item.address, read_only=item.command not in PUMP_CHANGING)
    where = f"{item.name} of pump {item.address}"
    return shown(offset, PROTOCOL, described, where, header)


def walk(data: bytes) -> list[tuple[int, Item]]:
    """(offset, item) for every frame and rejected stretch, in line order; a
    frame cut by the end of ``data`` is ``truncated``."""
    decoder = FrameDecoder("bus")
    out: list[tuple[int, Item]] = []
    pos = 0
    while pos < len(data):
        item, consumed = decode_at(data, pos, "bus", decoder)
        if consumed == 0:
            detail = f"{len(data) - pos} bytes of a frame cut by the end"
            out.append((pos, ProtocolError("truncated", detail)))
            break
        if item is not None:
            out.append((pos, item))
        pos += consumed
    return out


def describe(data: bytes) -> list[dict[str, Any]]:
    """One dict per frame or stretch rejected in ``data``, in line order."""
    return [_entry(item, offset) for offset, item in walk(data)]
