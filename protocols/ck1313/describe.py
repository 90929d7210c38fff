"""``forecourt decode --protocol ck1313``: every frame and byte run in a capture.

:func:`describe` walks captured bytes in stream order with the
self-delimiting framer (:mod:`protocols.ck1313.framer`) and returns one
JSON-able dict per thing found. A frame tells its side by its length and
command (:func:`protocols.ck1313.messages.direction`): ``"master"`` (a
request), ``"pump"`` (a reply) or ``"either"`` (the 4-byte E5 / CA frames,
where the pump's acknowledgement looks like the request).

Accepted: ``{"ok": true, "offset": n, "protocol": "ck1313", "message": …,
"direction": …, "fields": {…}, "values": {…}}`` — ``fields`` raw (pump,
``k``, command, check, counts), ``values`` scaled decimal strings and names;
a request says whether it is ``read_only`` (one the collector may send).
Rejected: ``{"ok": false, "offset": n, "protocol": "ck1313", "error":
"bad_lrc" | "truncated" | "garbage" | "bad_message", "detail": "…"}``. A
frame whose check is good but whose (length, command) is no CK1313 frame is
``bad_message``.
"""

from __future__ import annotations

from typing import Any

from protocols.bcd import bcd_decode, scaled
from protocols.ck1313.framer import Frame, decode_at
from protocols.ck1313.messages import (
    ACK,
    COMMAND_NAMES,
    READ_COMMANDS,
    REPLY_LEN,
    STATE_BITS,
    STATE_NAMES,
    PriceShown,
    SaleShown,
    Status,
    TotalsShown,
    direction,
    parse_reply,
)
from protocols.describing import decimals_describer, rejected
from protocols.events import ProtocolError

PROTOCOL = "ck1313"


def _frame(offset: int, frame: Frame, dp: tuple[int, int, int]) -> dict[str, Any]:
    side = direction(frame)
    command = frame.command
    fields: dict[str, Any] = {
        "pump": frame.address,
        "k": frame.count,
        "command": command,
        "check": frame.raw[-1],
    }
    values: dict[str, Any] = {"command": COMMAND_NAMES.get(command, f"unknown {command:02X}")}
    shape = f"{len(frame.raw)}-byte frame with command {command:02X}"
    if side is None:
        return rejected(
            offset, "bad_message", f"good check, but a {shape} is no CK1313 frame", PROTOCOL
        )
    ok = {"ok": True, "offset": offset, "protocol": PROTOCOL, "direction": side}
    if side in ("master", "either"):
        values["read_only"] = command in READ_COMMANDS and len(frame.raw) == 4
        if frame.payload:
            fields["data"] = frame.payload.hex().upper()
            value = bcd_decode(frame.payload)
            if value is not None:
                fields["value"] = value
        message = "request" if side == "master" else "request or acknowledgement"
        return {**ok, "message": message, "fields": fields, "values": values}
    if command not in READ_COMMANDS or len(frame.raw) != REPLY_LEN[command]:
        fields["data"] = frame.payload.hex().upper()
        values["acknowledged"] = frame.payload[:1] == bytes([ACK]) or not frame.payload
        return {**ok, "message": "acknowledgement", "fields": fields, "values": values}
    reply = parse_reply(frame, command)
    if isinstance(reply, ProtocolError):
        return rejected(offset, reply.kind, reply.detail, PROTOCOL)
    volume_dp, amount_dp, price_dp = dp
    if isinstance(reply, Status):
        fields["status"] = reply.status
        values.update(
            state=STATE_NAMES[reply.status & STATE_BITS],
            nozzle_state=str(reply.state),
            host_control=reply.host_control,
        )
        message = "status"
    elif isinstance(reply, SaleShown):
        _show(fields, values, volume=(reply.volume, volume_dp), amount=(reply.amount, amount_dp))
        message = "sale"
    elif isinstance(reply, TotalsShown):
        volume_total, amount_total = (
            (reply.volume_total, volume_dp),
            (reply.amount_total, amount_dp),
        )
        _show(fields, values, volume_total=volume_total, amount_total=amount_total)
        message = "totals"
    else:
        assert isinstance(reply, PriceShown)
        _show(fields, values, price=(reply.price, price_dp))
        message = "price"
    return {**ok, "message": message, "fields": fields, "values": values}


def _show(fields: dict[str, Any], values: dict[str, Any], **counts: tuple[int, int]) -> None:
    """Each count ``name=(raw, decimals)``: raw in ``fields``, scaled in ``values``."""
    for name, (raw, decimals) in counts.items():
        fields[name] = raw
        values[name] = str(scaled(raw, decimals))


#: Every frame and byte run of a capture, accepted or rejected (module doc).
describe = decimals_describer(PROTOCOL, decode_at, Frame, _frame)
