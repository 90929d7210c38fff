"""Gilbarco two-wire words, LRC, and the replies we read (protocols.md §4).

Citations: ``lischn001.c`` / ``lischn022.c`` are ``fangym0335/first
src/lischn001.c`` (美国长吉) and ``src/lischn022.c`` (北京长吉); every fact with
its source, and where the two differ: docs/protocols/gilbarco.md.

Words
    A data reply is a stream of words: control words ``0xF_`` and data words
    ``0xE_`` whose low nibble is the datum; numbers are digits least
    significant first (§4; lischn001.c:1503-1523 reads them so). A frame
    starts with ``FF`` and ends ``FB``, the LRC word ``E0|lrc``, ``F0``.
    A field is a control word and the data words up to the next control
    word: **any count of them** (§4: digit counts differ between models and
    site settings; a capture shows a 5-digit volume where the FCC reads 6).

LRC
    ``lrc = -(Σ low nibbles of every word from FF through FB) mod 16``
    (§4). The FCC sums whole bytes and compares low nibbles
    (src/lrc.c:58, lischn001.c:1735-1736): the same nibble.

Transaction data (reply to 4), the common model (§4; lischn001.c:1711
wants 33 words and reads the offsets below)::

    FF F1 F8 h p h h h F6 g F4 F7 P… F9 V… FA M… FB lrc F0

    p = pump − 1 (lischn001.c:1742-1746), h the other "pump and error /
    status data" words (any nibble: a capture shows EB first);
    g = grade − 1 (lischn001.c:1750); F4 the price level (§4; F5, the
    second level, accepted by analogy with the totals — unverified);
    P price, V volume, M money: digits, any count (FCC: 4, 6, 6).

Totals (reply to 5), per grade (§4; 30 words each, lischn001.c:1595,
1652-1658, 1689)::

    F6 g F9 V×8 FA M×8 F4 P×4 F5 P×4

    V and M the grade's volume and money totalizers, F4 / F5 its two price
    levels (optional here); F9 and FA required, any digit count; each grade
    once.

Running display (reply to 6): data words only, no frame — the money of the
fill in progress, least significant first (lischn001.c:1884-1916: 6 words).

Decimal places are per-port settings (§4), never in the words: the FCC
builds differ (lischn001.c:1503-1523 vs lischn022.c:1461-1478), see the
doc. Parsing is plain bytes (no construct): a ~33-word frame in a few µs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from protocols.events import ProtocolError, Sale

# ---------------------------------------------------------------- words

STX = 0xFF
ETX = 0xF0
CW_LRC = 0xFB
CW_HEADER = 0xF1  # opens a transaction reply (§4)
CW_LEVEL_1 = 0xF4  # price level 1 (transaction: the level sold at; totals: its price)
CW_LEVEL_2 = 0xF5  # price level 2
CW_GRADE = 0xF6
CW_PRICE = 0xF7
CW_PUMP = 0xF8  # pump and error / status data (five words)
CW_VOLUME = 0xF9
CW_MONEY = 0xFA
DATA_WORD = 0xE0
WORD_KIND = 0xF0  # the high nibble tells data (E) from control (F)
NIBBLE = 0x0F

#: Data word → ASCII digit, anything else → NUL: one ``bytes.translate``
#: turns a field into text ``int()`` reads, and a NUL says "not a digit".
_DIGIT_TEXT = bytes(
    0x30 + (b & NIBBLE) if DATA_WORD <= b <= DATA_WORD + 9 else 0 for b in range(256)
)
_NIBBLES = bytes(b & NIBBLE for b in range(256))

#: Words in the pump-data field: the pump is the second (lischn001.c:1742).
PUMP_WORD = 1
#: The running display's data words (lischn001.c:1886 ``wantLen = 6``).
RUNNING_DIGITS = 6
#: Digit counts our encoder uses by default: the FCC's (module doc).
PRICE_DIGITS, VOLUME_DIGITS, MONEY_DIGITS = 4, 6, 6
TOTAL_DIGITS, LEVEL_PRICE_DIGITS = 8, 4
#: A field longer than this is not a number a pump displays: 12 digits is a
#: trillion units; the limit keeps ``int()`` on a corrupted run cheap.
MAX_DIGITS = 12
#: Grades a pump numbers with one digit (grade − 1 = 0..9).
MAX_GRADES = 10


def is_data_word(byte: int) -> bool:
    return byte & WORD_KIND == DATA_WORD


def digit_words(value: int, count: int) -> bytes:
    """``value`` as ``count`` data words, least significant digit first."""
    if not 0 <= value < 10**count:
        raise ValueError(f"{value} does not fit {count} digits")
    return bytes(DATA_WORD | int(d) for d in reversed(f"{value:0{count}d}"))


def words_value(words: bytes) -> int | None:
    """Data words (least significant first) → int; None unless 1..MAX_DIGITS digits."""
    if not 0 < len(words) <= MAX_DIGITS:
        return None
    text = words.translate(_DIGIT_TEXT)
    if 0 in text:
        return None
    return int(text[::-1])


def nibbles(words: bytes) -> bytes:
    """The low nibble of every word."""
    return words.translate(_NIBBLES)


def lrc(body: bytes) -> int:
    """The LRC of a frame whose words between FF and FB are ``body`` (module doc)."""
    return -((STX & NIBBLE) + (CW_LRC & NIBBLE) + sum(body.translate(_NIBBLES))) % 16


def encode_frame(body: bytes) -> bytes:
    """FF, ``body``, FB, the LRC word, F0. ``body``: data and control words only."""
    for word in body:
        if word < DATA_WORD or word in (STX, ETX, CW_LRC):
            raise ValueError(f"{word:02X} cannot stand inside a frame")
    return bytes([STX, *body, CW_LRC, DATA_WORD | lrc(body), ETX])


def scaled(value: int, decimals: int) -> Decimal:
    """A raw count as a Decimal with exactly ``decimals`` places."""
    return Decimal(value).scaleb(-decimals)


def split_fields(body: bytes) -> list[tuple[int, bytes]]:
    """A frame body as ``(control word, data words)`` pairs, in order.

    Data words before the first control word (a master's price or preset
    frame starts so, lischn001.c:1252-1253) come under control word 0.
    """
    fields: list[tuple[int, bytes]] = []
    control, start = 0, 0
    for i, word in enumerate(body):
        if word >= ETX:
            if i > start or control:
                fields.append((control, body[start:i]))
            control, start = word, i + 1
    if start < len(body) or control:
        fields.append((control, body[start:]))
    return fields


def describe_fields(body: bytes) -> str:
    """``F1×0 F8×5 F6×1 …``: each control word and how many data words follow it."""
    return " ".join(f"{c:02X}×{len(d)}" for c, d in split_fields(body)) or "empty"


def _bad(detail: str) -> ProtocolError:
    return ProtocolError("bad_message", detail)


# ---------------------------------------------------------------- transaction


@dataclass(frozen=True, slots=True)
class TransactionData:
    """Reply to 4, raw counts (decimal places are the port's settings).

    ``header``: the pump-data words but the pump's (first, third …), as
    nibbles; ``digits``: how many digits price, volume and money came in
    (kept so a reading is rebuilt word for word, and two readings compare
    whole).
    """

    pump: int
    grade: int
    price: int
    volume: int
    money: int
    level: int = 1  # price level word: 1 (F4), 2 (F5), 0 none
    header: bytes = b"\x0b\x00\x00\x00"
    digits: tuple[int, int, int] = (PRICE_DIGITS, VOLUME_DIGITS, MONEY_DIGITS)


_LEVEL_WORDS = {CW_LEVEL_1: 1, CW_LEVEL_2: 2}


def transaction_body(data: TransactionData) -> bytes:
    """The words between FF and FB of a reply to 4 (the pump's side)."""
    pump_words = bytes([DATA_WORD | data.header[0], DATA_WORD | (data.pump - 1) & NIBBLE])
    pump_words += bytes(DATA_WORD | n for n in data.header[1:])
    out = bytearray((CW_HEADER, CW_PUMP))
    out += pump_words
    out.append(CW_GRADE)
    out += digit_words(data.grade - 1, 1)
    if data.level:
        out.append(CW_LEVEL_2 if data.level == 2 else CW_LEVEL_1)
    price_digits, volume_digits, money_digits = data.digits
    out.append(CW_PRICE)
    out += digit_words(data.price, price_digits)
    out.append(CW_VOLUME)
    out += digit_words(data.volume, volume_digits)
    out.append(CW_MONEY)
    out += digit_words(data.money, money_digits)
    return bytes(out)


def parse_transaction(body: bytes) -> TransactionData | ProtocolError:
    """Body of a reply to 4 → raw transaction data; any other layout → bad_message.

    Control words in this order: F1, F8, F6, (F4 | F5)?, F7, F9, FA; F8
    with at least two words, F6 / F7 / F9 / FA digits only.
    """
    fields = split_fields(body)
    controls = [c for c, _ in fields]
    level = 0
    if len(controls) == 7 and controls[3] in _LEVEL_WORDS:
        level = _LEVEL_WORDS[controls.pop(3)]
        del fields[3]
    if controls != [CW_HEADER, CW_PUMP, CW_GRADE, CW_PRICE, CW_VOLUME, CW_MONEY]:
        return _bad(f"not a transaction layout: {describe_fields(body)}")
    pump_words = fields[1][1]
    if len(pump_words) <= PUMP_WORD:
        return _bad(f"pump data of {len(pump_words)} words, the pump is the second")
    grade = words_value(fields[2][1])
    price, volume, money = (words_value(words) for _, words in fields[3:])
    if grade is None or price is None or volume is None or money is None:
        return _bad(f"a transaction field is not digits: {describe_fields(body)}")
    pumped = nibbles(pump_words)
    return TransactionData(
        pump=pumped[PUMP_WORD] + 1,
        grade=grade + 1,
        price=price,
        volume=volume,
        money=money,
        level=level,
        header=pumped[:PUMP_WORD] + pumped[PUMP_WORD + 1 :],
        digits=(len(fields[3][1]), len(fields[4][1]), len(fields[5][1])),
    )


# ---------------------------------------------------------------- totals


@dataclass(frozen=True, slots=True)
class GradeTotals:
    """One grade of a reply to 5: totalizers and prices, raw counts.

    ``digits``: the digit counts of volume, money and each price level (kept
    so a reading is rebuilt word for word, and two readings compare whole).
    """

    grade: int
    volume: int
    money: int
    price_1: int | None = None
    price_2: int | None = None
    digits: tuple[int, int, int] = (TOTAL_DIGITS, TOTAL_DIGITS, LEVEL_PRICE_DIGITS)

    @property
    def order_no(self) -> str:
        """The volume totalizer as a number of at least :data:`TOTAL_DIGITS`
        digits: the same for a reading that lost a leading zero word (the LRC
        does not see an E0 dropped, and the value is the same)."""
        return f"{self.volume:0{TOTAL_DIGITS}d}"


@dataclass(frozen=True, slots=True)
class TotalsData:
    """Reply to 5: one entry per grade, in the pump's order."""

    grades: tuple[GradeTotals, ...]

    def of(self, grade: int) -> GradeTotals | None:
        return next((g for g in self.grades if g.grade == grade), None)


#: The fields a totals grade may have besides F6: F9 and FA required.
_GRADE_FIELDS = frozenset({CW_VOLUME, CW_MONEY, CW_LEVEL_1, CW_LEVEL_2})


def totals_body(data: TotalsData) -> bytes:
    """The words between FF and FB of a reply to 5 (the pump's side)."""
    out = bytearray()
    for g in data.grades:
        volume_digits, money_digits, price_digits = g.digits
        out.append(CW_GRADE)
        out += digit_words(g.grade - 1, 1)
        out.append(CW_VOLUME)
        out += digit_words(g.volume, volume_digits)
        out.append(CW_MONEY)
        out += digit_words(g.money, money_digits)
        for control, price in ((CW_LEVEL_1, g.price_1), (CW_LEVEL_2, g.price_2)):
            if price is not None:
                out.append(control)
                out += digit_words(price, price_digits)
    return bytes(out)


def parse_totals(body: bytes) -> TotalsData | ProtocolError:
    """Body of a reply to 5 → totals; other layouts, no or repeated grades → bad_message."""
    fields = split_fields(body)
    if not fields or fields[0][0] != CW_GRADE:
        return _bad(f"not a totals layout: {describe_fields(body)}")
    entries: list[dict[int, bytes]] = []
    for control, words in fields:
        if control == CW_GRADE:
            entries.append({})
        elif control not in _GRADE_FIELDS:
            return _bad(f"not a totals layout: {describe_fields(body)}")
        elif control in entries[-1]:
            return _bad(f"a totals grade names {control:02X} twice")
        entries[-1][control] = words
    grades = []
    for entry in entries:
        if CW_VOLUME not in entry or CW_MONEY not in entry:
            return _bad(f"a totals grade without F9 and FA: {describe_fields(body)}")
        values: dict[int, int] = {}
        for control, words in entry.items():
            value = words_value(words)
            if value is None:
                return _bad(f"a totals field is not digits: {describe_fields(body)}")
            values[control] = value
        price_words = entry.get(CW_LEVEL_1, entry.get(CW_LEVEL_2, b"\0" * LEVEL_PRICE_DIGITS))
        grades.append(
            GradeTotals(
                grade=values[CW_GRADE] + 1,
                volume=values[CW_VOLUME],
                money=values[CW_MONEY],
                price_1=values.get(CW_LEVEL_1),
                price_2=values.get(CW_LEVEL_2),
                digits=(len(entry[CW_VOLUME]), len(entry[CW_MONEY]), len(price_words)),
            )
        )
    if len({g.grade for g in grades}) != len(grades):
        return _bad("totals name a grade twice")
    # A pump writes every grade's totalizers with its one digit count; the
    # LRC sums low nibbles, so an E0 word dropped inside a field passes it
    # and shifts the digits after it: a grade whose count differs from its
    # neighbours' is that loss, not a reading.
    if len({g.digits[:2] for g in grades}) > 1:
        return _bad(f"totals grades differ in digit counts: {describe_fields(body)}")
    return TotalsData(tuple(grades))


# ---------------------------------------------------------------- running display


def running_words(money: int, count: int = RUNNING_DIGITS) -> bytes:
    """The pump's reply to 6: the fill's money as ``count`` data words."""
    return digit_words(money, count)


# ---------------------------------------------------------------- decimals and sales


#: Decimal places a pump display may be configured for (0 = whole units).
MAX_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class Decimals:
    """Decimal places of the pump's fields: per-port settings (§4).

    ``volume_total`` / ``money_total`` are the totals reply's, which the FCC
    builds show can differ from the transaction's (lischn022.c:1401-1441:
    one or two places, by model).
    """

    volume: int = 2
    money: int = 2
    price: int = 2
    volume_total: int = 2
    money_total: int = 2

    def __post_init__(self) -> None:
        for places in (self.volume, self.money, self.price, self.volume_total, self.money_total):
            if not 0 <= places <= MAX_DECIMALS:
                raise ValueError(f"decimal places must be 0..{MAX_DECIMALS}")


def sale_key(transaction: TransactionData, totals: GradeTotals) -> str:
    """``grade:volume totalizer digits``: a totalizer only grows, so unique per
    nozzle and the same on every re-read (driver module doc)."""
    return f"{transaction.grade}:{totals.order_no}"


@dataclass(frozen=True, slots=True)
class SaleParts:
    """What a sale is made of: its transaction and its grade's totals after it."""

    transaction: TransactionData
    totals: GradeTotals
    raw: bytes = field(default=b"", repr=False)


def sale_of(address: int, parts: SaleParts, ended_at: datetime, dp: Decimals) -> Sale:
    """A read transaction with its grade's totals as a :class:`Sale`.

    ``nozzle`` = ``grade`` = the grade number (the hose as the pump numbers
    it); ``order_no`` = the volume totalizer after the sale (no transaction
    number exists on this wire).
    """
    txn, tot = parts.transaction, parts.totals
    return Sale(
        address=address,
        nozzle=txn.grade,
        order_no=tot.order_no,
        ended_at=ended_at,
        grade=str(txn.grade),
        price=scaled(txn.price, dp.price),
        volume=scaled(txn.volume, dp.volume),
        amount=scaled(txn.money, dp.money),
        totalizer_volume_end=scaled(tot.volume, dp.volume_total),
        totalizer_amount_end=scaled(tot.money, dp.money_total),
        key=sale_key(txn, tot),
        raw=parts.raw,
    )
