"""``forecourt decode --protocol gilbarco``: every frame and byte in a capture.

:func:`describe` walks captured bytes in stream order and returns one
JSON-able dict per thing found:

- a data frame (STX FF … ETX F0, see :mod:`protocols.gilbarco.framer`):
  ``message`` ``"transaction"`` (reply to 4) or ``"totals"`` (reply to 5),
  ``fields`` the raw counts and the LRC, ``values`` the scaled decimal
  strings; a frame with a good LRC but neither layout is ``bad_message``;
- a run of words (E0–FE) outside a frame: ``garbage``;
- any other single byte outside a frame: single bytes are ambiguous between
  a master's command ``cmd<<4 | pump`` and a pump's status ``status<<4 |
  pump``, so they are described as status replies unless
  ``direction="master"`` (``"auto"`` and ``"pump"`` read them as status). A
  status nibble outside this subset is ``bad_message``.

Accepted: ``{"ok": true, "offset": n, "protocol": "gilbarco", "message": …,
"fields": {…}, "values": {…}}``. Rejected: ``{"ok": false, "offset": n,
"protocol": "gilbarco", "error": "bad_lrc" | "truncated" | "garbage" |
"bad_message", "detail": "…"}``. Offsets are byte offsets into ``data``.
"""

from __future__ import annotations

from typing import Any

from protocols.events import ProtocolError
from protocols.gilbarco.codes import (
    COMMAND_NAMES,
    NIBBLE,
    STATUS_NAMES,
    STATUS_STATE,
    nibble_pump,
)
from protocols.gilbarco.driver import GilbarcoPoller
from protocols.gilbarco.framer import Frame, decode_at
from protocols.gilbarco.messages import (
    DATA_WORD,
    STX,
    TotalsData,
    TransactionData,
    describe_fields,
    parse_totals,
    parse_transaction,
    scaled,
)

PROTOCOL = "gilbarco"
DIRECTIONS = ("auto", "pump", "master")


def describe(
    data: bytes,
    *,
    direction: str = "auto",
    volume_decimals: int = 2,
    money_decimals: int = 2,
    price_decimals: int = 2,
) -> list[dict[str, Any]]:
    """Every frame, byte run and single byte of ``data``, accepted or rejected."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    dp = (volume_decimals, money_decimals, price_decimals)
    out: list[dict[str, Any]] = []
    pos, n = 0, len(data)
    while pos < n:
        byte = data[pos]
        if byte == STX:
            result, consumed = decode_at(data, pos)
            if result is None:
                out.append(_error(pos, "truncated", f"frame of {n - pos} bytes without its end"))
                break
            if isinstance(result, Frame):
                out.append(_frame(pos, result, dp))
            else:
                out.append(_error(pos, result.kind, result.detail))
            pos += consumed
        elif byte >= DATA_WORD:
            end = pos
            while end < n and DATA_WORD <= data[end] < STX:
                end += 1
            words = data[pos:end].hex(" ").upper()
            out.append(_error(pos, "garbage", f"{end - pos} words outside a frame: {words}"))
            pos = end
        else:
            out.append(_command(pos, byte) if direction == "master" else _status(pos, byte))
            pos += 1
    return out


def _error(offset: int, kind: str, detail: str) -> dict[str, Any]:
    return {"ok": False, "offset": offset, "protocol": PROTOCOL, "error": kind, "detail": detail}


def _ok(
    offset: int, message: str, fields: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    return {
        "ok": True,
        "offset": offset,
        "protocol": PROTOCOL,
        "message": message,
        "fields": fields,
        "values": values,
    }


def _status(offset: int, byte: int) -> dict[str, Any]:
    status, pump = byte >> 4, nibble_pump(byte & NIBBLE)
    if status not in STATUS_NAMES:
        detail = f"{byte:02X}: status {status:X} (pump {pump}) is not one of this subset"
        if status in COMMAND_NAMES:
            detail += f"; as a command: {COMMAND_NAMES[status]} (try direction='master')"
        return _error(offset, "bad_message", detail)
    values = {"status": STATUS_NAMES[status], "nozzle_state": str(STATUS_STATE[status])}
    return _ok(offset, "status", {"status": status, "pump": pump}, values)


def _command(offset: int, byte: int) -> dict[str, Any]:
    command, pump = byte >> 4, nibble_pump(byte & NIBBLE)
    values = {
        "command": COMMAND_NAMES.get(command, f"unknown {command:X}"),
        "read_only": command in GilbarcoPoller.ALLOWED_COMMANDS,
    }
    return _ok(offset, "command", {"command": command, "pump": pump}, values)


def _frame(offset: int, frame: Frame, dp: tuple[int, int, int]) -> dict[str, Any]:
    volume_dp, money_dp, price_dp = dp
    transaction = parse_transaction(frame.body)
    if isinstance(transaction, TransactionData):
        fields = {
            "grade": transaction.grade,
            "price": transaction.price,
            "volume": transaction.volume,
            "money": transaction.money,
            "lrc": frame.lrc,
        }
        values = {
            "grade": str(transaction.grade),
            "price": str(scaled(transaction.price, price_dp)),
            "volume": str(scaled(transaction.volume, volume_dp)),
            "amount": str(scaled(transaction.money, money_dp)),
        }
        return _ok(offset, "transaction", fields, values)
    totals = parse_totals(frame.body)
    if isinstance(totals, TotalsData):
        raw = [{"grade": g.grade, "volume": g.volume, "money": g.money} for g in totals.grades]
        scaled_grades = [
            {
                "grade": str(g.grade),
                "volume": str(scaled(g.volume, volume_dp)),
                "amount": str(scaled(g.money, money_dp)),
            }
            for g in totals.grades
        ]
        return _ok(offset, "totals", {"grades": raw, "lrc": frame.lrc}, {"grades": scaled_grades})
    assert isinstance(totals, ProtocolError)
    detail = totals.detail  # a totals layout that breaks a rule (no / repeated grade)
    if detail.startswith("not a totals layout"):
        detail = f"good LRC, but neither transaction nor totals: {describe_fields(frame.body)}"
    return _error(offset, "bad_message", detail)
