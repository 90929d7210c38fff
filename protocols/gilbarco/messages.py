"""Gilbarco two-wire data replies: words, LRC and the two messages we read.

Facts (protocols.md §4): data replies are a stream of *words*, control words
``0xF_`` and data words ``0xE0|digit``, numbers least significant digit
first, checked by an LRC. Where the facts stop, this module says "our
documented assumption". One-byte commands and status replies:
:mod:`~protocols.gilbarco.codes`.

Control words (protocols.md §4 gives F6, F7, F9, FA, FB; F0 ETX, FF STX)
    F6 grade, F7 price, F9 volume, FA money, FB LRC. F8, FD, FE: our
    documented assumption — they belong to the word family (a real pump may
    send them, their digits count in the LRC, so the framer accepts them),
    but the subset does not say what they carry, so neither message layout
    below contains them: a frame with one is ``bad_message`` rather than a
    guess. F1–F5 and FC are not control words: an unexpected byte.

LRC (exactly which words are summed)
    ``lrc = -(sum of the low nibbles of every word from STX FF through FB
    inclusive) mod 16``: STX, every control and data word of the body, and
    FB itself; not the LRC word, not ETX. The LRC travels as the word
    ``0xE0 | lrc`` right after FB (0xEA–0xEF when above 9). A receiver checks
    ``(sum + lrc) % 16 == 0``.

Transaction data (reply to 4), our documented layout and digit counts::

    FF | F6 g | F7 p p p p | F9 v v v v v v | FA m m m m m m | FB l | F0

    g: 1 digit, the grade = the pump's hose (nozzle) number as it numbers it;
    p: 4 digits price, v: 6 digits volume, m: 6 digits money, each least
    significant digit first. Decimal places are per-site pump settings:
    :class:`~protocols.gilbarco.driver.GilbarcoPoller` takes
    ``price_decimals``, ``volume_decimals``, ``money_decimals`` (default 2:
    99.99 yuan/L, 9999.99 L, 9999.99 yuan).

Totals (reply to 5), our documented layout::

    FF | (F6 g | F9 V×8 | FA M×8) × n | FB l | F0

    one entry per grade (hose), n = 1..10, grades unique; V the volume
    totalizer and M the money totalizer, 8 digits each, same decimal places
    as the transaction's volume and money. A totalizer rolls over at 10^8.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from construct import Bytes, Const, ConstructError, GreedyRange, Struct, Terminated

from protocols.events import ProtocolError, Sale

# ---------------------------------------------------------------- words

STX = 0xFF
ETX = 0xF0
CW_GRADE = 0xF6
CW_PRICE = 0xF7
CW_OTHER_8 = 0xF8  # in the family, content undefined here (module doc)
CW_VOLUME = 0xF9
CW_MONEY = 0xFA
CW_LRC = 0xFB
CW_OTHER_D = 0xFD  # in the family, content undefined here (module doc)
CW_OTHER_E = 0xFE  # in the family, content undefined here (module doc)
#: Control words that open a field of data words (all but FB, which is
#: followed by the LRC word, and STX / ETX).
FIELD_CONTROLS = frozenset(
    {CW_GRADE, CW_PRICE, CW_OTHER_8, CW_VOLUME, CW_MONEY, CW_OTHER_D, CW_OTHER_E}
)
DATA_WORD = 0xE0
WORD_KIND = 0xF0  # the high nibble tells data (E) from control (F)
NIBBLE = 0x0F


def is_digit_word(byte: int) -> bool:
    """A data word carrying a decimal digit, 0xE0..0xE9."""
    return DATA_WORD <= byte <= DATA_WORD + 9


def digit_words(value: int, count: int) -> bytes:
    """``value`` as ``count`` data words, least significant digit first."""
    if not 0 <= value < 10**count:
        raise ValueError(f"{value} does not fit {count} digits")
    return bytes(DATA_WORD | int(d) for d in reversed(f"{value:0{count}d}"))


def words_value(words: bytes) -> int | None:
    """Data words (least significant digit first) → int; None if one is not a digit."""
    value = 0
    for word in reversed(words):
        if not is_digit_word(word):
            return None
        value = value * 10 + (word & NIBBLE)
    return value


def lrc(body: Iterable[int]) -> int:
    """The LRC of a frame whose body (words between STX and FB) is ``body``.

    ``-(STX + body + FB) mod 16`` over low nibbles; see the module doc.
    """
    total = (STX & NIBBLE) + (CW_LRC & NIBBLE) + sum(w & NIBBLE for w in body)
    return -total % 16


def scaled(value: int, decimals: int) -> Decimal:
    """A raw count as a Decimal with exactly ``decimals`` places."""
    return Decimal(value).scaleb(-decimals)


# ---------------------------------------------------------------- layouts

#: Digit counts of our documented layouts (module doc).
GRADE_DIGITS = 1
PRICE_DIGITS = 4
VOLUME_DIGITS = 6
MONEY_DIGITS = 6
TOTAL_DIGITS = 8
#: A grade is one digit, and totals name each grade once.
MAX_GRADES = 10

TRANSACTION = Struct(
    Const(bytes([CW_GRADE])),
    "grade" / Bytes(GRADE_DIGITS),
    Const(bytes([CW_PRICE])),
    "price" / Bytes(PRICE_DIGITS),
    Const(bytes([CW_VOLUME])),
    "volume" / Bytes(VOLUME_DIGITS),
    Const(bytes([CW_MONEY])),
    "money" / Bytes(MONEY_DIGITS),
    Terminated,
).compile()

TOTALS_ENTRY = Struct(
    Const(bytes([CW_GRADE])),
    "grade" / Bytes(GRADE_DIGITS),
    Const(bytes([CW_VOLUME])),
    "volume" / Bytes(TOTAL_DIGITS),
    Const(bytes([CW_MONEY])),
    "money" / Bytes(TOTAL_DIGITS),
)
TOTALS = Struct("entries" / GreedyRange(TOTALS_ENTRY), Terminated).compile()

#: Body lengths of the layouts. Checked before parsing: a compiled ``Bytes(n)``
#: (construct 2.10) reads what is left without checking it got n bytes, so a
#: body one digit short would parse with a short last field (the fuzz test
#: found a dropped money digit accepted that way).
TRANSACTION_LEN = 4 + GRADE_DIGITS + PRICE_DIGITS + VOLUME_DIGITS + MONEY_DIGITS
TOTALS_ENTRY_LEN = 3 + GRADE_DIGITS + 2 * TOTAL_DIGITS


@dataclass(frozen=True)
class TransactionData:
    """Reply to 4, raw counts (decimal places are the driver's settings)."""

    grade: int
    price: int
    volume: int
    money: int


@dataclass(frozen=True)
class GradeTotals:
    """One grade of a reply to 5: its totalizers, raw counts."""

    grade: int
    volume: int
    money: int


@dataclass(frozen=True)
class TotalsData:
    """Reply to 5: one entry per grade, in the pump's order."""

    grades: tuple[GradeTotals, ...]

    def of(self, grade: int) -> GradeTotals | None:
        return next((g for g in self.grades if g.grade == grade), None)


#: Decimal places a pump display may be configured for (0 = whole units).
MAX_DECIMALS = 3


@dataclass(frozen=True)
class Decimals:
    """Decimal places of the pump's volume, money and price (per-site settings)."""

    volume: int = 2
    money: int = 2
    price: int = 2

    def __post_init__(self) -> None:
        for places in (self.volume, self.money, self.price):
            if not 0 <= places <= MAX_DECIMALS:
                raise ValueError(f"decimal places must be 0..{MAX_DECIMALS}")


def sale_key(transaction: TransactionData, totals: GradeTotals) -> str:
    """``grade:volume totalizer digits`` (why: driver module doc)."""
    return f"{transaction.grade}:{totals.volume:0{TOTAL_DIGITS}d}"


def sale_of(
    address: int,
    transaction: TransactionData,
    totals: GradeTotals,
    ended_at: datetime,
    dp: Decimals,
    raw: bytes = b"",
) -> Sale:
    """A read transaction with its grade's totals as a :class:`Sale` (driver module doc)."""
    return Sale(
        address=address,
        nozzle=transaction.grade,
        order_no=f"{totals.volume:0{TOTAL_DIGITS}d}",
        ended_at=ended_at,
        grade=str(transaction.grade),
        price=scaled(transaction.price, dp.price),
        volume=scaled(transaction.volume, dp.volume),
        amount=scaled(transaction.money, dp.money),
        totalizer_volume_end=scaled(totals.volume, dp.volume),
        totalizer_amount_end=scaled(totals.money, dp.money),
        key=sale_key(transaction, totals),
        raw=raw,
    )


def _bad(detail: str) -> ProtocolError:
    return ProtocolError("bad_message", detail)


def _values(container: object, names: tuple[str, ...]) -> dict[str, int] | None:
    out = {}
    for name in names:
        value = words_value(getattr(container, name))
        if value is None:
            return None
        out[name] = value
    return out


def transaction_body(data: TransactionData) -> bytes:
    """The words between STX and FB of a reply to 4 (the pump's side)."""
    return bytes(
        TRANSACTION.build(
            {
                "grade": digit_words(data.grade, GRADE_DIGITS),
                "price": digit_words(data.price, PRICE_DIGITS),
                "volume": digit_words(data.volume, VOLUME_DIGITS),
                "money": digit_words(data.money, MONEY_DIGITS),
            }
        )
    )


def parse_transaction(body: bytes) -> TransactionData | ProtocolError:
    """Body of a reply to 4 → raw transaction data; any other layout → bad_message."""
    try:
        if len(body) != TRANSACTION_LEN:
            raise ConstructError("length")
        msg = TRANSACTION.parse(body)
    except ConstructError:
        return _bad(f"not a transaction layout: {describe_fields(body)}")
    values = _values(msg, ("grade", "price", "volume", "money"))
    if values is None:
        return _bad("transaction digit word above 9")
    return TransactionData(**values)


def totals_body(data: TotalsData) -> bytes:
    """The words between STX and FB of a reply to 5 (the pump's side)."""
    entries = [
        {
            "grade": digit_words(g.grade, GRADE_DIGITS),
            "volume": digit_words(g.volume, TOTAL_DIGITS),
            "money": digit_words(g.money, TOTAL_DIGITS),
        }
        for g in data.grades
    ]
    return bytes(TOTALS.build({"entries": entries}))


def parse_totals(body: bytes) -> TotalsData | ProtocolError:
    """Body of a reply to 5 → totals; other layouts, no or repeated grades → bad_message."""
    try:
        if len(body) % TOTALS_ENTRY_LEN:
            raise ConstructError("length")
        msg = TOTALS.parse(body)
    except ConstructError:
        return _bad(f"not a totals layout: {describe_fields(body)}")
    if not msg.entries:
        return _bad("totals without any grade")
    grades = []
    for entry in msg.entries:
        values = _values(entry, ("grade", "volume", "money"))
        if values is None:
            return _bad("totals digit word above 9")
        grades.append(GradeTotals(**values))
    if len({g.grade for g in grades}) != len(grades):
        return _bad("totals name a grade twice")
    return TotalsData(tuple(grades))


def split_fields(body: bytes) -> list[tuple[int, bytes]]:
    """A body as ``(control word, data words)`` pairs, for diagnostics.

    Words before the first control word are returned under control 0.
    """
    fields: list[tuple[int, bytes]] = []
    control, start = 0, 0
    for i, word in enumerate(body):
        if word & WORD_KIND == WORD_KIND:
            if i or control:
                fields.append((control, body[start:i]))
            control, start = word, i + 1
    if body:
        fields.append((control, body[start:]))
    return fields


def describe_fields(body: bytes) -> str:
    """``F6×1 F7×4 …``: each control word and how many data words follow it."""
    return " ".join(f"{c:02X}×{len(d)}" for c, d in split_fields(body)) or "empty"
