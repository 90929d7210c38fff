"""``forecourt decode --protocol gilbarco``: every byte of a capture, in line order.

A capture is read as the loop carries it (protocols/gilbarco/line.py):
commands, the echo of the master's bytes (a capture from the master's
receive line has it, a tap's has not — both are read), status replies,
data frames, running displays, a master's data frames after a D. A frame
whose command is not in the capture (a frame pasted alone) is read by its
layout: a transaction, totals, or just its fields.

``direction``: ``"auto"`` (both sides on one line), ``"pump"`` (replies
only: every single byte is a status) or ``"master"`` (commands only).

Accepted: ``{"ok": true, "offset": n, "protocol": "gilbarco", "message": …,
"fields": {…}, "values": {…}}``. Rejected: ``{"ok": false, "offset": n,
"protocol": "gilbarco", "error": "bad_lrc" | "truncated" | "garbage" |
"bad_message" | "unexpected", "detail": "…"}``. Offsets are byte offsets
into ``data``; every byte is in exactly one line.
"""

from __future__ import annotations

from typing import Any

from protocols.describing import accepted, rejected
from protocols.events import ProtocolError
from protocols.gilbarco.codes import (
    ALL_STOP,
    CMD_TRANSACTION,
    COMMAND_NAMES,
    STATUS_NAMES,
    STATUS_STATE,
)
from protocols.gilbarco.driver import GilbarcoPoller
from protocols.gilbarco.line import (
    Command,
    DataReply,
    Echo,
    Item,
    LineReader,
    MasterData,
    Rejected,
    RunningReply,
    Source,
    StatusReply,
)
from protocols.gilbarco.messages import (
    Decimals,
    TotalsData,
    TransactionData,
    describe_fields,
    parse_totals,
    parse_transaction,
    scaled,
    words_value,
)

PROTOCOL = "gilbarco"
DIRECTIONS: dict[str, Source] = {"auto": None, "pump": "pump", "master": "master"}


def describe(
    data: bytes,
    *,
    direction: str = "auto",
    volume_decimals: int = 2,
    money_decimals: int = 2,
    price_decimals: int = 2,
    volume_total_decimals: int = 2,
    money_total_decimals: int = 2,
) -> list[dict[str, Any]]:
    """Every item of ``data``, accepted or rejected (module doc)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    dp = Decimals(
        volume_decimals, money_decimals, price_decimals, volume_total_decimals, money_total_decimals
    )
    reader = LineReader()
    items = reader.receive(data, DIRECTIONS[direction]) + reader.flush()
    return [describe_item(item, dp) for item in items]


def describe_item(item: Item, dp: Decimals) -> dict[str, Any]:
    """One :data:`~protocols.gilbarco.line.Item` as a ``forecourt decode`` line."""
    if isinstance(item, Command):
        return _command(item)
    if isinstance(item, Echo):
        return _ok(item.offset, "echo", {"bytes": item.size}, {})
    if isinstance(item, StatusReply):
        values = {"status": STATUS_NAMES[item.status]}
        if item.status in STATUS_STATE:
            values["nozzle_state"] = str(STATUS_STATE[item.status])
        return _ok(item.offset, "status", {"status": item.status, "pump": item.pump}, values)
    if isinstance(item, RunningReply):
        money = words_value(item.words)
        if money is None:
            return _error(item.offset, "bad_message", "running display words are not digits")
        fields = {"pump": item.request & 0x0F or 16, "money": money}
        return _ok(item.offset, "running display", fields, {"amount": str(scaled(money, dp.money))})
    if isinstance(item, MasterData):
        return _ok(item.offset, "master data", {"fields": describe_fields(item.frame.body)}, {})
    if isinstance(item, Rejected):
        return _error(item.offset, item.error.kind, item.error.detail)
    return _frame(item, dp)


def _ok(
    offset: int, message: str, fields: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    return accepted(offset, PROTOCOL, message, fields, values)


def _error(offset: int, kind: str, detail: str) -> dict[str, Any]:
    return rejected(offset, kind, detail, PROTOCOL)


def _command(item: Command) -> dict[str, Any]:
    if item.byte == ALL_STOP:
        return _ok(
            item.offset, "command", {"command": 0xF}, {"command": "all stop", "read_only": False}
        )
    values = {
        "command": COMMAND_NAMES.get(item.command, f"unknown {item.command:X}"),
        "read_only": item.command in GilbarcoPoller.ALLOWED_COMMANDS,
    }
    return _ok(item.offset, "command", {"command": item.command, "pump": item.pump}, values)


def _frame(item: DataReply, dp: Decimals) -> dict[str, Any]:
    body, offset = item.frame.body, item.offset
    kind = None if item.request is None else item.request >> 4
    if kind in (CMD_TRANSACTION, None):
        txn = parse_transaction(body)
        if isinstance(txn, TransactionData):
            return _transaction(offset, txn, item.frame.lrc, dp)
        if kind is not None:
            return _error(offset, txn.kind, txn.detail)
    totals = parse_totals(body)
    if isinstance(totals, TotalsData):
        return _totals(offset, totals, item.frame.lrc, dp)
    assert isinstance(totals, ProtocolError)
    if kind is not None:
        return _error(offset, totals.kind, totals.detail)
    return _ok(offset, "frame", {"fields": describe_fields(body), "lrc": item.frame.lrc}, {})


def _transaction(offset: int, txn: TransactionData, lrc: int, dp: Decimals) -> dict[str, Any]:
    fields = {
        "pump": txn.pump,
        "grade": txn.grade,
        "price": txn.price,
        "volume": txn.volume,
        "money": txn.money,
        "level": txn.level,
        "header": txn.header.hex(" ").upper(),
        "digits": list(txn.digits),
        "lrc": lrc,
    }
    values = {
        "pump": txn.pump,
        "grade": str(txn.grade),
        "price": str(scaled(txn.price, dp.price)),
        "volume": str(scaled(txn.volume, dp.volume)),
        "amount": str(scaled(txn.money, dp.money)),
    }
    return _ok(offset, "transaction", fields, values)


def _totals(offset: int, totals: TotalsData, lrc: int, dp: Decimals) -> dict[str, Any]:
    raw = []
    scaled_grades = []
    for g in totals.grades:
        raw.append(
            {
                "grade": g.grade,
                "volume": g.volume,
                "money": g.money,
                "price_1": g.price_1,
                "price_2": g.price_2,
            }
        )
        line = {
            "grade": str(g.grade),
            "volume": str(scaled(g.volume, dp.volume_total)),
            "amount": str(scaled(g.money, dp.money_total)),
        }
        for name, price in (("price_1", g.price_1), ("price_2", g.price_2)):
            if price is not None:
                line[name] = str(scaled(price, dp.price))
        scaled_grades.append(line)
    return _ok(offset, "totals", {"grades": raw, "lrc": lrc}, {"grades": scaled_grades})
