"""``forecourt decode --protocol lanfeng``: every frame and byte run in a capture.

:func:`describe` walks captured bytes with the check-synchronised framer
(:mod:`protocols.lanfeng.framer`) and returns one JSON-able dict per thing
found. A frame laid out as a request (``00 | known command | its data``) is
a ``"request"`` (``direction`` ``"master"``; ``read_only`` says whether the
collector may send it); any other is a ``"reply"`` (``"pump"``). A reply
does not say which question it answers (messages doc), so it is described
both ways where its layout allows: ``values.status`` (as a B8 reply: state,
price, amount, volume) and ``values.total`` (as an AD / AC reply), each
None when that reading is impossible.

Accepted: ``{"ok": true, "offset": n, "protocol": "lanfeng", "message":
"request" | "reply", "direction": …, "fields": {…}, "values": {…}}``.
Rejected: ``{"ok": false, "offset": n, "protocol": "lanfeng", "error":
"garbage" | "truncated" | "bad_message", "detail": "…"}`` — a frame whose
check holds but that fits no layout is ``bad_message``.
"""

from __future__ import annotations

from typing import Any

from protocols.bcd import bcd_decode, scaled
from protocols.describing import decimals_describer, rejected
from protocols.events import ProtocolError
from protocols.lanfeng.framer import Frame, decode_at
from protocols.lanfeng.messages import (
    CMD_STATUS,
    CMD_VOLUME_TOTAL,
    COMMAND_NAMES,
    READ_COMMANDS,
    REQUEST_DATA,
    STATE_NAMES,
    StatusShown,
    TotalShown,
    parse_reply,
    request_command,
)

PROTOCOL = "lanfeng"


def _frame(offset: int, frame: Frame, dp: tuple[int, int, int]) -> dict[str, Any]:
    raw = frame.raw
    ok = {"ok": True, "offset": offset, "protocol": PROTOCOL}
    fields: dict[str, Any] = {"pump": frame.address, "head": raw[0], "check": raw[11]}
    command = request_command(frame)
    if command is not None:
        fields["command"] = command
        width = REQUEST_DATA.get(command, 0)
        if width:
            fields["value"] = bcd_decode(raw[3 : 3 + width])
        values = {"command": COMMAND_NAMES[command], "read_only": command in READ_COMMANDS}
        return {**ok, "message": "request", "direction": "master", **_body(fields, values)}
    volume_dp, amount_dp, price_dp = dp
    status = parse_reply(frame, CMD_STATUS)
    total = parse_reply(frame, CMD_VOLUME_TOTAL)
    if isinstance(status, ProtocolError) and isinstance(total, ProtocolError):
        detail = f"good check, but neither a request nor a reply layout: {raw.hex(' ').upper()}"
        return rejected(offset, "bad_message", detail, PROTOCOL)
    as_status = None
    if isinstance(status, StatusShown):
        as_status = {
            "state": STATE_NAMES[status.status & 0xBF],
            "nozzle_state": str(status.state),
            "host_control": status.host_control,
            "price": str(scaled(status.price, price_dp)),
            "amount": str(scaled(status.amount, amount_dp)),
            "volume": str(scaled(status.volume, volume_dp)),
        }
    as_total = None
    if isinstance(total, TotalShown):
        as_total = {
            "as_volume": str(scaled(total.total, volume_dp)),
            "as_amount": str(scaled(total.total, amount_dp)),
        }
    values = {"status": as_status, "total": as_total}
    return {**ok, "message": "reply", "direction": "pump", **_body(fields, values)}


def _body(fields: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {"fields": fields, "values": values}


#: Every frame and byte run of a capture, accepted or rejected (module doc).
describe = decimals_describer(PROTOCOL, decode_at, Frame, _frame)
