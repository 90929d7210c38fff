"""Wayne DART transactions (protocols.md §3), declared with ``construct`` (compiled).

A DATA frame carries transactions ``TRANS | LNG | data`` (framer). Only the
read-only subset a collector needs is here (SPEC D20). Packed BCD is most
significant digit first (protocols.md §3); where the decimal point sits is
configuration (``volume_decimals`` … of the driver), see :func:`protocols.bcd.scaled`.

Master → pump (the only transactions we ever send):

CD1 command to pump, ``TRANS 01 LNG 1 | DCC``
    DCC ``00`` return status, ``04`` return filling information
    (protocols.md §3). Never authorise, stop, price or preset (D20).
CD101 request total counters, ``TRANS 65 LNG 1 | COUN``
    OUR CHOICE: COUN is the logical nozzle number 1–15 (the nozzle nibble of
    NOZIO); the pump answers with a DC101 carrying the same COUN.

Pump → master:

DC1 pump status, ``01 | STATUS`` — 0 not programmed, 1 reset, 2 authorised,
    4 filling, 5 filling completed, 6 max reached, 7 switched off,
    8 suspended (protocols.md §3). Any other value is ``bad_message``.
DC2 filled volume and amount, ``02 | VOL 4 B BCD | AMO 4 B BCD``.
DC3 nozzle status and price, ``03 | PRI 3 B BCD | NOZIO`` — NOZIO bits 0–3
    the nozzle number, bit 4 set when the nozzle is out; bits 5–7 ignored.
DC5 alarm, ``05 | ALARM`` — OUR READING: one binary byte, the pump's alarm
    code (protocols.md only says "DC5 alarm"); normalised by
    :func:`alarm_code` through :data:`~protocols.events.METERING_ALARMS`.
DC9 pump identity, ``09 | 5 B BCD`` — ten digits, kept as text.
DC101 total counters, ``65 | COUN | TOTVAL 5 B | TOTM1 5 B | TOTM2 5 B`` (BCD)
    OUR CHOICE of the three totals: TOTVAL the nozzle's volume totalizer,
    TOTM1 its amount totalizer, TOTM2 its number of fillings (an integer,
    informational only).

The TRANS codes of CD1 / DC1 (01) and CD101 / DC101 (65) are the same, so a
transaction is parsed for a direction: :func:`parse_request` (master → pump)
or :func:`parse_reply` (pump → master).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from construct import Bytes, Int8ub, Struct

from protocols.bcd import bcd_decode, bcd_encode
from protocols.dart.framer import Transaction
from protocols.events import METERING_ALARMS, ProtocolError

#: TRANS codes (protocols.md §3).
TRANS_CD1 = 0x01
TRANS_CD101 = 0x65
TRANS_DC1 = 0x01
TRANS_DC2 = 0x02
TRANS_DC3 = 0x03
TRANS_DC5 = 0x05
TRANS_DC9 = 0x09
TRANS_DC101 = 0x65

#: CD1 DCC codes we may send (protocols.md §3).
DCC_RETURN_STATUS = 0x00
DCC_RETURN_FILLING_INFO = 0x04
DCC_NAMES = {DCC_RETURN_STATUS: "return_status", DCC_RETURN_FILLING_INFO: "return_filling_info"}

#: DC1 status codes (protocols.md §3).
ST_NOT_PROGRAMMED = 0
ST_RESET = 1
ST_AUTHORISED = 2
ST_FILLING = 4
ST_FILLING_COMPLETED = 5
ST_MAX_REACHED = 6
ST_SWITCHED_OFF = 7
ST_SUSPENDED = 8
STATUS_NAMES = {
    ST_NOT_PROGRAMMED: "not_programmed",
    ST_RESET: "reset",
    ST_AUTHORISED: "authorised",
    ST_FILLING: "filling",
    ST_FILLING_COMPLETED: "filling_completed",
    ST_MAX_REACHED: "max_reached",
    ST_SWITCHED_OFF: "switched_off",
    ST_SUSPENDED: "suspended",
}

#: NOZIO: bits 0–3 nozzle number, bit 4 nozzle out (protocols.md §3).
NOZZLE_MASK = 0x0F
NOZZLE_OUT = 0x10
MAX_NOZZLE = NOZZLE_MASK

#: Results remembered by build / parse_request / parse_reply (pure functions):
#: a line repeats the same few transactions, and each construct call costs
#: ~3–8 µs. Shared by every DART port. A fill's DC2 / DC101 values are new
#: each time, so a cache fills to its size within hours of selling and stays:
#: at 4096 entries the caches held 3.7 MB after a long in-process run of
#: bench/frames.py (driver and simulator together), at 512 1.1 MB, for the
#: same hit rate (91 % vs 92 %) and cost per frame (8–9 µs). Found as the
#: soak's slow RSS growth with ``bench/footprint.py station --trace --baseline``.
MESSAGE_CACHE = 512

#: BCD widths in bytes (protocols.md §3).
VOLUME_BCD = 4
AMOUNT_BCD = 4
PRICE_BCD = 3
IDENTITY_BCD = 5
TOTAL_BCD = 5

CD1 = Struct("dcc" / Int8ub).compile()
CD101 = Struct("coun" / Int8ub).compile()
DC1 = Struct("status" / Int8ub).compile()
DC2 = Struct("vol" / Bytes(VOLUME_BCD), "amo" / Bytes(AMOUNT_BCD)).compile()
DC3 = Struct("pri" / Bytes(PRICE_BCD), "nozio" / Int8ub).compile()
DC5 = Struct("alarm" / Int8ub).compile()
DC9 = Struct("pid" / Bytes(IDENTITY_BCD)).compile()
DC101 = Struct(
    "coun" / Int8ub,
    "totval" / Bytes(TOTAL_BCD),  # volume totalizer (our choice, module doc)
    "totm1" / Bytes(TOTAL_BCD),  # amount totalizer
    "totm2" / Bytes(TOTAL_BCD),  # number of fillings
).compile()

#: LNG of every transaction we read or send: exactly its declaration's size
#: (a compiled struct does not check that input is long enough, so we do).
REQUEST_STRUCTS = {TRANS_CD1: CD1, TRANS_CD101: CD101}
REPLY_STRUCTS = {
    TRANS_DC1: DC1,
    TRANS_DC2: DC2,
    TRANS_DC3: DC3,
    TRANS_DC5: DC5,
    TRANS_DC9: DC9,
    TRANS_DC101: DC101,
}
REQUEST_LNG = {trans: s.sizeof() for trans, s in REQUEST_STRUCTS.items()}
REPLY_LNG = {trans: s.sizeof() for trans, s in REPLY_STRUCTS.items()}


def alarm_code(code: int) -> str:
    """A DC5 code, normalised (``METERING_OUT_OF_TOLERANCE``) or ``DISPENSER_ERROR_<n>``."""
    return METERING_ALARMS.get(code, f"DISPENSER_ERROR_{code}")


@dataclass(frozen=True)
class Cd1:
    dcc: int


@dataclass(frozen=True)
class Cd101:
    counter: int  # logical nozzle number (our choice, module doc)


@dataclass(frozen=True)
class Dc1:
    status: int


@dataclass(frozen=True)
class Dc2:
    volume: int  # raw, volume_decimals implied
    amount: int  # raw, amount_decimals implied


@dataclass(frozen=True)
class Dc3:
    price: int  # raw, price_decimals implied
    nozzle: int
    nozzle_out: bool


@dataclass(frozen=True)
class Dc5:
    code: int


@dataclass(frozen=True)
class Dc9:
    pump_id: str  # ten digits


@dataclass(frozen=True)
class Dc101:
    counter: int
    volume: int  # raw volume totalizer
    amount: int  # raw amount totalizer
    fillings: int


Request = Cd1 | Cd101
Reply = Dc1 | Dc2 | Dc3 | Dc5 | Dc9 | Dc101


def _byte(value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{value} does not fit one byte")
    return value


@lru_cache(maxsize=MESSAGE_CACHE)
def build(message: Request | Reply) -> Transaction:
    """``(TRANS, data)`` of ``message``; ValueError when a value does not fit."""
    match message:
        case Cd1(dcc):
            return TRANS_CD1, CD1.build({"dcc": _byte(dcc)})
        case Cd101(counter):
            return TRANS_CD101, CD101.build({"coun": _byte(counter)})
        case Dc1(status):
            return TRANS_DC1, DC1.build({"status": _byte(status)})
        case Dc2(volume, amount):
            vol, amo = bcd_encode(volume, VOLUME_BCD), bcd_encode(amount, AMOUNT_BCD)
            return TRANS_DC2, DC2.build({"vol": vol, "amo": amo})
        case Dc3(price, nozzle, out):
            if not 0 <= nozzle <= MAX_NOZZLE:
                raise ValueError(f"nozzle {nozzle} does not fit NOZIO")
            nozio = nozzle | (NOZZLE_OUT if out else 0)
            return TRANS_DC3, DC3.build({"pri": bcd_encode(price, PRICE_BCD), "nozio": nozio})
        case Dc5(code):
            return TRANS_DC5, DC5.build({"alarm": _byte(code)})
        case Dc9(pump_id):
            if not (len(pump_id) == 2 * IDENTITY_BCD and pump_id.isascii() and pump_id.isdigit()):
                raise ValueError(f"pump identity {pump_id!r} is not ten digits")
            return TRANS_DC9, DC9.build({"pid": bytes.fromhex(pump_id)})
        case Dc101(counter, volume, amount, fillings):
            totals = {
                "totval": bcd_encode(volume, TOTAL_BCD),
                "totm1": bcd_encode(amount, TOTAL_BCD),
                "totm2": bcd_encode(fillings, TOTAL_BCD),
            }
            return TRANS_DC101, DC101.build({"coun": _byte(counter), **totals})
    raise TypeError(f"not a DART message: {message!r}")


def _bad(name: str, detail: str) -> ProtocolError:
    return ProtocolError("bad_message", f"{name}: {detail}")


class _NotBcd(ValueError):
    pass


def _bcd(field: str, raw: bytes) -> int:
    value = bcd_decode(raw)
    if value is None:
        raise _NotBcd(f"{field} {raw.hex().upper()} is not BCD")
    return value


@lru_cache(maxsize=MESSAGE_CACHE)
def parse_request(trans: int, data: bytes) -> Request | ProtocolError | None:
    """A master → pump transaction; None for a TRANS we never send."""
    if trans not in REQUEST_LNG:
        return None
    if len(data) != REQUEST_LNG[trans]:
        return _bad(f"CD{trans}", f"{len(data)} data bytes, LNG must be {REQUEST_LNG[trans]}")
    if trans == TRANS_CD1:
        return Cd1(CD1.parse(data).dcc)
    return Cd101(CD101.parse(data).coun)


@lru_cache(maxsize=MESSAGE_CACHE)
def parse_reply(trans: int, data: bytes) -> Reply | ProtocolError | None:
    """A pump → master transaction; None for a TRANS this driver does not read."""
    name = f"DC{trans}"
    if trans not in REPLY_LNG:
        return None
    if len(data) != REPLY_LNG[trans]:
        return _bad(name, f"{len(data)} data bytes, LNG must be {REPLY_LNG[trans]}")
    try:
        if trans == TRANS_DC1:
            status = DC1.parse(data).status
            if status not in STATUS_NAMES:
                return _bad(name, f"unknown status {status}")
            return Dc1(status)
        if trans == TRANS_DC2:
            msg = DC2.parse(data)
            return Dc2(_bcd("VOL", msg.vol), _bcd("AMO", msg.amo))
        if trans == TRANS_DC3:
            msg = DC3.parse(data)
            nozio = msg.nozio
            price = _bcd("PRI", msg.pri)
            return Dc3(price, nozio & NOZZLE_MASK, bool(nozio & NOZZLE_OUT))
        if trans == TRANS_DC5:
            return Dc5(DC5.parse(data).alarm)
        if trans == TRANS_DC9:
            pid = DC9.parse(data).pid
            _bcd("identity", pid)
            return Dc9(pid.hex())
        if trans == TRANS_DC101:
            msg = DC101.parse(data)
            return Dc101(
                msg.coun,
                _bcd("TOTVAL", msg.totval),
                _bcd("TOTM1", msg.totm1),
                _bcd("TOTM2", msg.totm2),
            )
    except _NotBcd as exc:
        return _bad(name, str(exc))
    return None
