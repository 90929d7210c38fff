"""Sinopec card-dispenser link (卡机联动 V1.1) messages: the frame's data bytes.

Declared with ``construct`` (compiled) and converted to the normalised
events of :mod:`protocols.events`. Only the messages a read-only master
needs are here (SPEC D20): the poll (30), the real-time report (31), the
transaction record (32) and our confirmation of a record (3C). Multi-byte
integers are big-endian; money is in 0.01 yuan, volume in 0.01 L, price in
0.01 yuan/L (protocols.md §2).

30 poll (master → pump)
    ``30`` alone (protocols.md §2, "Commands": 30 ordinary query).

31 real-time information (pump → master)
    ``31 | NUM (1 B) | NUM × entry``, entry = ``ST (1 B) | NZN (1 B) | body``
    where the body depends on ST (protocols.md §2, "Real-time nozzle
    states"): ST 0 idle → nothing; ST 1 card inserted → ASN 10 B BCD,
    CARD_ST 2 B, BAL 4 B; ST 2 lifted / fuelling → UNIT 1 B, AMN 3 B, VOL 3 B,
    PRC 2 B. ASSUMPTION: protocols.md gives the state bodies but not how
    several nozzles are packed into one 31; the ``NUM | ST | NZN`` layout is
    ours, kept in one place (``REALTIME``) so a captured frame that says
    otherwise changes one declaration.

32 transaction record (pump → master)
    ``32`` + exactly 95 bytes (protocols.md §2, "Transaction record"; field
    list in ``RECORD``). TIME is BCD ``YYYYMMDDhhmmss``, the pump's local
    wall clock; G_CODE is 2 BCD bytes, the grade code as 4 digits; V_TOT is
    the nozzle's volume totalizer in 0.01 L.

3C transaction confirmation (master → pump)
    ``3C | POS_TTC (4 B)``. OUR DOCUMENTED LAYOUT, NOT FROM A PUBLIC SOURCE:
    protocols.md §2 lists 3C "confirm" without its layout, and the public
    sources give the pump's record but not the POS's answer to it
    (docs/decisions.md, "Sinopec transaction confirmation"). We confirm a
    record with 3C carrying the record's own transaction number; 32 is
    therefore only ever sent by the pump (a master never sends a 32, which
    keeps the read-only allow-list free of record-shaped frames, SPEC D20).
    A pump that does not understand it offers the record again, which the
    store deduplicates on ``Sale.key``.

    A POS may confirm with the values it booked: ``3C | POS_TTC (4 B) |
    AMN (3 B) | VOL (3 B)`` (0.01 yuan, 0.01 L, as in the 32 record).
    UNVERIFIED as well (docs/brands.md): a monitor reads either length, and
    compares the values with the record's only when they are there
    (collector/station/reconcile.py); the poll driver always sends the short form.

38 totals, 3A read info, 3B error info: see :mod:`protocols.sinopec.extensions`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from construct import (
    Bytes,
    BytesInteger,
    ConstructError,
    Error,
    ExplicitError,
    Int8ub,
    Int16ub,
    Int32ub,
    Pass,
    Struct,
    Switch,
    Terminated,
    this,
)

from protocols.events import Confirmation, NozzleState, NozzleStatus, ProtocolError, Sale

#: Command codes (protocols.md §2, "Commands").
CMD_POLL = 0x30
CMD_REALTIME = 0x31
CMD_RECORD = 0x32  # the pump's transaction record (pump → master only)
CMD_CONFIRM = 0x3C  # our confirmation of a record (our documented layout)

#: Real-time nozzle states, the ST byte of a 31 entry (protocols.md §2).
ST_IDLE = 0
ST_CARD = 1
ST_NOZZLE = 2  # lifted or fuelling

#: Bytes of a transaction record after the command byte (protocols.md §2).
RECORD_LEN = 95

#: Our confirmation: command + POS_TTC (our documented choice, see module doc).
CONFIRM_LEN = 5
#: A confirmation with the booked amount and volume (unverified, module doc).
CONFIRM_VALUES_LEN = 11

CARD_BODY = Struct("asn" / Bytes(10), "card_st" / Int16ub, "bal" / Int32ub)
NOZZLE_BODY = Struct(
    "unit" / Int8ub,
    "amn" / BytesInteger(3),
    "vol" / BytesInteger(3),
    "prc" / Int16ub,
)
REALTIME_ENTRY = Struct(
    "st" / Int8ub,
    "nzn" / Int8ub,
    "body" / Switch(this.st, {ST_IDLE: Pass, ST_CARD: CARD_BODY, ST_NOZZLE: NOZZLE_BODY}, Error),
)
#: 31: NUM | NUM × entry — the NUM/entry packing is our assumption (module doc).
REALTIME = Struct(
    "command" / Int8ub,
    "num" / Int8ub,
    "entries" / REALTIME_ENTRY[this.num],
    Terminated,
).compile()

#: 32 record, the 95 bytes of protocols.md §2 in order, behind the command byte.
RECORD = Struct(
    "command" / Int8ub,
    "pos_ttc" / Int32ub,  # the pump's transaction counter
    "t_type" / Int8ub,
    "time" / Bytes(7),  # BCD YYYYMMDDhhmmss
    "asn" / Bytes(10),  # card number, BCD
    "bal" / Int32ub,  # card balance, 0.01 yuan
    "amn" / BytesInteger(3),  # amount, 0.01 yuan
    "ctc" / Int16ub,
    "tac" / Bytes(4),
    "gmac" / Bytes(4),
    "psam_tac" / Bytes(4),
    "psam_asn" / Bytes(10),
    "psam_tid" / Bytes(6),
    "psam_ttc" / Int32ub,
    "ds" / Int8ub,
    "unit" / Int8ub,
    "c_type" / Int8ub,
    "ver" / Int8ub,
    "nzn" / Int8ub,  # nozzle number
    "g_code" / Bytes(2),  # grade code, BCD
    "vol" / BytesInteger(3),  # volume, 0.01 L
    "prc" / Int16ub,  # unit price, 0.01 yuan/L
    "emp" / Int8ub,
    "v_tot" / Int32ub,  # volume totalizer after the sale, 0.01 L
    "rfu" / Bytes(11),
    "t_mac" / Bytes(4),
    Terminated,
).compile()

#: 3C confirmation (our documented layout, see module doc).
CONFIRM = Struct("command" / Int8ub, "pos_ttc" / Int32ub, Terminated).compile()
#: 3C with the booked values (unverified, see module doc).
CONFIRM_VALUES = Struct(
    "command" / Int8ub,
    "pos_ttc" / Int32ub,
    "amn" / BytesInteger(3),  # 0.01 yuan
    "vol" / BytesInteger(3),  # 0.01 L
    Terminated,
).compile()


def hundredths(value: int) -> Decimal:
    """An integer count of 0.01 units as a Decimal with exactly two places."""
    return Decimal(value).scaleb(-2)


def _bcd_time(raw: bytes) -> datetime:
    digits = raw.hex()
    if not digits.isdigit():
        raise ValueError(f"TIME {digits.upper()} is not BCD")
    year, month, day, hour, minute, second = (
        int(digits[i : i + w]) for i, w in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2))
    )
    return datetime(year, month, day, hour, minute, second)  # ValueError if not a date


def _bad(detail: str) -> ProtocolError:
    return ProtocolError("bad_message", detail)


# ---------------------------------------------------------------- 30 poll


def build_poll() -> bytes:
    return bytes([CMD_POLL])


# ---------------------------------------------------------------- 31 real-time


@dataclass(frozen=True)
class RealtimeEntry:
    """One nozzle of a 31 report, raw units (0.01 yuan, 0.01 L, 0.01 yuan/L)."""

    st: int
    nzn: int
    asn: bytes = bytes(10)  # ST 1 only
    card_st: int = 0  # ST 1 only
    bal: int = 0  # ST 1 only
    unit: int = 0  # ST 2 only
    amn: int = 0  # ST 2 only
    vol: int = 0  # ST 2 only
    prc: int = 0  # ST 2 only


def build_realtime(entries: Sequence[RealtimeEntry]) -> bytes:
    """31 data for ``entries`` (the simulator's side)."""
    items = []
    for e in entries:
        body: dict[str, object] | None = None
        if e.st == ST_CARD:
            body = {"asn": e.asn, "card_st": e.card_st, "bal": e.bal}
        elif e.st == ST_NOZZLE:
            body = {"unit": e.unit, "amn": e.amn, "vol": e.vol, "prc": e.prc}
        items.append({"st": e.st, "nzn": e.nzn, "body": body})
    return bytes(REALTIME.build({"command": CMD_REALTIME, "num": len(items), "entries": items}))


def parse_realtime(data: bytes) -> list[RealtimeEntry] | ProtocolError:
    """31 data → entries; unknown ST or wrong length → ``bad_message``."""
    try:
        msg = REALTIME.parse(data)
    except ExplicitError:
        return _bad("31 report with an unknown nozzle state ST")
    except (ConstructError, struct.error, ValueError):  # compiled: struct.error too
        num = data[1] if len(data) > 1 else "no"
        return _bad(f"31 report malformed: {len(data)} bytes do not hold NUM {num} entries")
    if msg.command != CMD_REALTIME:
        return _bad(f"command {msg.command:02X} is not a 31 report")
    out = []
    for e in msg.entries:
        b = e.body
        if e.st == ST_CARD:
            out.append(RealtimeEntry(e.st, e.nzn, asn=b.asn, card_st=b.card_st, bal=b.bal))
        elif e.st == ST_NOZZLE:
            out.append(RealtimeEntry(e.st, e.nzn, unit=b.unit, amn=b.amn, vol=b.vol, prc=b.prc))
        else:
            out.append(RealtimeEntry(e.st, e.nzn))
    return out


def entry_status(entry: RealtimeEntry, address: int) -> NozzleStatus:
    """A 31 entry as a nozzle state: ST 0 and ST 1 idle (a card in the reader is
    not a nozzle state); ST 2 lifted while VOL is 0, fuelling once it rises."""
    if entry.st != ST_NOZZLE:
        return NozzleStatus(address, entry.nzn, NozzleState.IDLE)
    state = NozzleState.FUELLING if entry.vol > 0 else NozzleState.LIFTED
    return NozzleStatus(
        address,
        entry.nzn,
        state,
        volume=hundredths(entry.vol),
        amount=hundredths(entry.amn),
        price=hundredths(entry.prc),
    )


def realtime_events(data: bytes, address: int) -> list[NozzleStatus] | ProtocolError:
    """31 data from the pump at ``address`` → one :class:`NozzleStatus` per entry."""
    entries = parse_realtime(data)
    if isinstance(entries, ProtocolError):
        return ProtocolError(entries.kind, entries.detail, address)
    return [entry_status(e, address) for e in entries]


# ---------------------------------------------------------------- 32 record


@dataclass(frozen=True)
class TransactionRecord:
    """The 95-byte record, raw units; ``raw`` is the 95 bytes when parsed."""

    pos_ttc: int
    time: datetime  # the pump's local wall clock, naive, whole seconds
    nzn: int
    g_code: str  # 4 digits
    vol: int  # 0.01 L
    prc: int  # 0.01 yuan/L
    amn: int  # 0.01 yuan
    v_tot: int  # 0.01 L, after this sale
    t_type: int = 0
    asn: bytes = bytes(10)
    bal: int = 0
    ctc: int = 0
    tac: bytes = bytes(4)
    gmac: bytes = bytes(4)
    psam_tac: bytes = bytes(4)
    psam_asn: bytes = bytes(10)
    psam_tid: bytes = bytes(6)
    psam_ttc: int = 0
    ds: int = 0
    unit: int = 0
    c_type: int = 0
    ver: int = 0
    emp: int = 0
    rfu: bytes = bytes(11)
    t_mac: bytes = bytes(4)
    raw: bytes = field(default=b"", compare=False, repr=False)


#: Every RECORD field but command, time and g_code (those are converted apart).
_RECORD_FIELDS = (
    "pos_ttc", "t_type", "asn", "bal", "amn", "ctc", "tac", "gmac", "psam_tac", "psam_asn",
    "psam_tid", "psam_ttc", "ds", "unit", "c_type", "ver", "nzn", "vol", "prc", "emp", "v_tot",
    "rfu", "t_mac",
)  # fmt: skip


def build_record(record: TransactionRecord) -> bytes:
    """32 data (command + 95 bytes) for ``record`` (the simulator's side)."""
    values: dict[str, object] = {name: getattr(record, name) for name in _RECORD_FIELDS}
    values["command"] = CMD_RECORD
    values["time"] = bytes.fromhex(record.time.strftime("%Y%m%d%H%M%S"))
    g_code = bytes.fromhex(record.g_code)
    if len(g_code) != 2:
        raise ValueError(f"grade code {record.g_code!r} is not 4 digits")
    values["g_code"] = g_code
    return bytes(RECORD.build(values))


def is_record(data: bytes) -> bool:
    return len(data) == 1 + RECORD_LEN and data[0] == CMD_RECORD


def parse_record(data: bytes) -> TransactionRecord | ProtocolError:
    """32 data (command + 95 bytes) → record; bad length or TIME → ``bad_message``."""
    if not is_record(data):
        return _bad(f"32 record must be 1 + {RECORD_LEN} bytes, got {len(data)}")
    try:
        msg = RECORD.parse(data)
        time = _bcd_time(msg.time)
    except (ConstructError, struct.error, ValueError) as exc:
        return _bad(f"32 record malformed: {exc}")
    values = {name: msg[name] for name in _RECORD_FIELDS}
    # G_CODE is BCD (protocols.md §2); a non-BCD code is kept as its hex digits
    # rather than refused, so the record is still stored and confirmed.
    return TransactionRecord(time=time, g_code=msg.g_code.hex().upper(), raw=data[1:], **values)


def record_sale(record: TransactionRecord, address: int) -> Sale:
    """The record as a :class:`Sale` from the pump at ``address``.

    ``key`` = ``POS_TTC:V_TOT``: the transaction counter alone can repeat after
    a pump's memory reset; together with the totalizer it cannot.
    """
    return Sale(
        address=address,
        nozzle=record.nzn,
        order_no=str(record.pos_ttc),
        ended_at=record.time,
        grade=record.g_code,
        price=hundredths(record.prc),
        volume=hundredths(record.vol),
        amount=hundredths(record.amn),
        totalizer_volume_end=hundredths(record.v_tot),
        totalizer_amount_end=None,  # the 32 record carries no amount totalizer
        key=f"{record.pos_ttc}:{record.v_tot}",
        raw=record.raw,
        counter=record.pos_ttc,
    )


def sale_event(data: bytes, address: int) -> Sale | ProtocolError:
    """32 record data from the pump at ``address`` → :class:`Sale`."""
    record = parse_record(data)
    if isinstance(record, ProtocolError):
        return ProtocolError(record.kind, record.detail, address)
    return record_sale(record, address)


# ---------------------------------------------------------------- 3C confirmation


def build_confirm(pos_ttc: int) -> bytes:
    """Our 3C confirmation of the record ``pos_ttc`` (documented layout, module doc)."""
    return bytes(CONFIRM.build({"command": CMD_CONFIRM, "pos_ttc": pos_ttc}))


def parse_confirm(data: bytes) -> int | ProtocolError:
    """3C confirmation data (either form) → the POS_TTC it confirms (the simulator's side)."""
    confirmed = confirm_event(data, 0)
    return confirmed if isinstance(confirmed, ProtocolError) else confirmed.counter


def build_confirm_values(pos_ttc: int, amn: int, vol: int) -> bytes:
    """A POS's 3C with the values it booked (0.01 yuan, 0.01 L; unverified, module doc)."""
    values = {"command": CMD_CONFIRM, "pos_ttc": pos_ttc, "amn": amn, "vol": vol}
    return bytes(CONFIRM_VALUES.build(values))


def confirm_event(data: bytes, address: int) -> Confirmation | ProtocolError:
    """3C data the master sent to the pump at ``address`` → :class:`Confirmation`
    (amount and volume only in the long form)."""
    if data[:1] != bytes([CMD_CONFIRM]) or len(data) not in (CONFIRM_LEN, CONFIRM_VALUES_LEN):
        return _bad(
            f"3C confirmation must be {CONFIRM_LEN} or {CONFIRM_VALUES_LEN} bytes, got {len(data)}"
        )
    if len(data) == CONFIRM_LEN:
        return Confirmation(address, int(CONFIRM.parse(data).pos_ttc))
    msg = CONFIRM_VALUES.parse(data)
    return Confirmation(address, int(msg.pos_ttc), hundredths(msg.amn), hundredths(msg.vol))
