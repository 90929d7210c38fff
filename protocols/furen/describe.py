"""What a Furen Haosheng capture says, frame by frame, for ``forecourt decode``.

:func:`describe` walks the bytes with the decoder the driver uses
(:mod:`protocols.furen.framer`, unescaped as the source), so a technician
sees exactly what the collector would accept or reject, in stream order:

- a frame found: ``{"ok": true, "offset", "protocol": "furen", "message",
  "side", "b1", "b2", "ctrl", "nozzle", "fields", "values"}`` — ``side``
  ``master`` / ``pump`` / None (:func:`~protocols.furen.messages.side`),
  ``nozzle`` the one ``ctrl`` names (``F0 | n``) or None, ``fields`` the
  raw values (BCD as integers, times as text), ``values`` what they mean
  (decimal strings at 2 decimal places, the driver's default);
- a stretch rejected: ``{"ok": false, "offset", "error", "detail"}`` with
  ``error`` one of ``garbage``, ``bad_crc``, ``bad_length``, ``truncated``
  (framing, :mod:`protocols.fa_frame`) or ``bad_message`` (a good frame
  whose data fits no message; its header is in ``detail``).

The message is told by command and length (layouts and sources in
:mod:`protocols.furen.messages`): requests ``status_query`` (30 + time),
``price_query``, ``sale_query``, ``totals_query``, and the ones that change
the pump — ``set_price``, ``prepay``, ``preset``, ``mode``, ``authorise``,
``stop``; answers ``status`` (5A / 5B), ``sale`` (27 bytes), ``totals`` (19),
``price`` (11), ``ack`` (10). A 5D, 61 or 62 frame is described as the
request with ``side`` None: its answer may have the same shape.
Everything is JSON-serialisable.
"""

from __future__ import annotations

from typing import Any

from protocols.describing import Told, decimal_text, told, walk
from protocols.events import ProtocolError
from protocols.furen.framer import UNESCAPED, Frame
from protocols.furen.messages import (
    ACK_LEN,
    ANSWERS,
    CMD_PRICE,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    OUT_LIFTED,
    OUT_STOPPED,
    REQUEST_LEN,
    REQUEST_NAMES,
    parse_price,
    parse_record,
    parse_status,
    parse_time,
    parse_totals,
    side,
)

PROTOCOL = "furen"


def _request(frame: Frame) -> Told | ProtocolError:
    command, data = frame.command, frame.data
    name = REQUEST_NAMES[command]
    if command == CMD_STATUS:
        when = parse_time(data)
        if isinstance(when, ProtocolError):
            return when
        return name, {"time": data[1:].hex().upper()}, {"clock": when.isoformat()}
    if command in (CMD_PRICE, CMD_SALE, CMD_TOTALS):
        return name, {}, {}
    return name, {"data": data[1:].hex().upper()}, {}


def _answer(frame: Frame) -> Told | ProtocolError:
    data = frame.data
    if data[0] in (0x5A, 0x5B):
        reply = parse_status(frame)
        if isinstance(reply, ProtocolError):
            return reply
        fields: dict[str, Any] = {"code": f"{data[0]:02X}", "out": frame.b2}
        if reply.fuelling:
            fields.update(volume=reply.volume, amount=reply.amount)
            assert reply.volume is not None and reply.amount is not None
            values = {"state": "fuelling", "volume": decimal_text(reply.volume)}
            values["amount"] = decimal_text(reply.amount)
            return "status", fields, values
        fields["code7"] = reply.code7
        if not reply.out:
            state = "idle"
        elif reply.code7 == OUT_LIFTED:
            state = "lifted"
        elif reply.code7 == OUT_STOPPED:
            state = "stopped"
        else:
            state = "power-up transient (skipped)"
        return "status", fields, {"state": state}
    command = ANSWERS.get(len(data))
    if command == CMD_SALE:
        record = parse_record(data)
        if isinstance(record, ProtocolError):
            return record
        raw = {
            "volume": record.volume,
            "amount": record.amount,
            "price": record.price,
            "volume_total": record.volume_total,
            "amount_total": record.amount_total,
        }
        values = {name: decimal_text(value) for name, value in raw.items()}
        return "sale", raw, {**values, "order_no": str(record.volume_total)}
    if command == CMD_TOTALS:
        totals = parse_totals(data)
        if isinstance(totals, ProtocolError):
            return totals
        raw = {"volume_total": totals.volume_total, "amount_total": totals.amount_total}
        return "totals", raw, {name: decimal_text(value) for name, value in raw.items()}
    if command == CMD_PRICE:
        price = parse_price(data)
        if isinstance(price, ProtocolError):
            return price
        return "price", {"price": price}, {"price": decimal_text(price)}
    if len(data) == ACK_LEN:
        return "ack", {"result": data[1]}, {"accepted": data[1] == 0x01}
    return ProtocolError("bad_message", f"no message is {len(data)} bytes with [6] {data[0]:02X}")


def _frame(frame: Frame, offset: int) -> dict[str, Any]:
    sender = side(frame)
    is_request = frame.command in REQUEST_LEN and (
        sender == "master" or (sender is None and len(frame.data) == REQUEST_LEN[frame.command])
    )
    result = _request(frame) if is_request else _answer(frame)
    header = {"b1": frame.b1, "b2": frame.b2, "ctrl": frame.ctrl}
    shown = {"side": sender, **header, "nozzle": frame.nozzle_byte}
    return told(offset, PROTOCOL, result, header, frame.data, **shown)


def describe(data: bytes) -> list[dict[str, Any]]:
    """One dict per frame found or stretch rejected in ``data``, in stream order."""
    return walk(data, UNESCAPED.decode_at, Frame, _frame, next_start=UNESCAPED.next_start)
