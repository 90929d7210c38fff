"""Changkong 长空 "Uninfo" words and layouts (``fangym0335/first src/lischn011.c``).

A bare ``:N`` below is a line of ``src/lischn011.c``; ``lrc.c:N`` is
``src/lrc.c`` of the same repository. Everything a layout says beyond what
the FCC reads is not in the source and not assumed here: the parsers read
the words the FCC reads and check what it checks, nothing else.

Requests are ONE byte, ``command << 4 | pump``, pump = the fuelling point's
number mod 16 ("1 -- Pump ID 1, …, 0 -- Pump ID 16", ``:113-114``):

- ``A`` status (``:1626``, ``:1669``) → one byte ``state << 4 | pump``
  (``:1647-1652``); states ``:28-34``;
- ``8`` running display (``:1534-1536``) → 25 words: amount digits
  ``[0..7]`` (``:1570-1573``), volume ``[9..16]`` (``:1555-1558``); the FCC
  checks neither a check word nor an end word;
- ``B`` totals (``:1276-1278``, also read for the price, ``:829-831``) →
  ``4 + 40 × grades`` words, ending ``LRC F0`` (``:1302-1311``); records
  from ``[1]``, 40 words apart (``:1345``, ``:1799``, ``:1814``, ``:1848``;
  a comment at ``:1336`` says 30, copied from the Gilbarco driver
  ``src/lischn001.c:1652`` where it is true — the code's stride is 40);
  in a record ``p``: ``p[1] & 0F`` = nozzle − 1 (``:1340``, ``:1805``),
  volume total 9 digits from ``p[3]``, amount total 9 digits from
  ``p[14]`` (``:1341-1342``, ``:1804``, ``:1835``; 9 = ``GUN_EXTEND_LEN``,
  ``:25``), price 4 digits from ``p[25]`` (the first record's, read as
  ``cmd[26..29]``, ``:1049-1050``, ``:1960-1961``);
- ``C`` last sale (``:1364-1366``) → 73 words ending ``LRC F0``
  (``:1385-1392``); ``[2] & 0F`` = pump (``:1398``); price 6 digits from
  ``[19]``, volume 8 from ``[27]``, amount 8 from ``[37]``
  (``:1191-1210``);
- ``9`` authorise (``:1475``), ``7`` stop (``:1425``; ``FE`` stops every
  pump, ``:1423``): no reply (``wantLen = 0``, ``:1477``, ``:1428``);
- ``D`` data block (preset ``:749-791``, price ``:953-991``): the request
  byte, then ``FF``, a length, ``FD``, the function, fields, ``FC``,
  ``E0 | LRC_CK``, ``F0``; answered by 12 words whose ``[0]`` is the
  request byte again and ``[8] & 0F`` the result (``:808``, ``:1014-1042``).

Digits: one per word, least significant first, the low nibble significant
(``(cmd[k+1] << 4) | (cmd[k] & 0x0f)`` throughout, e.g. ``:1192``); a low
nibble above 9 is no digit and the reply is refused. High nibbles of digit
words are not checked (the FCC does not); the words the FCC itself sends
are ``E0 | digit`` (``:739-746``, ``:944-949``).

Check word (``:1308-1309``, ``lrc.c:58-69``): the low nibble of the word
before the final ``F0`` equals the low nibble of ``−(8-bit sum of every
word before it)``. The block a controller sends uses ``LRC_CK``
(``lrc.c:104-116``): the same value, over ``FF`` … ``FC``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocols.events import ProtocolError

# ---------------------------------------------------------------- requests

CMD_STATUS = 0xA  # :1626
CMD_DISPLAY = 0x8  # :1534
CMD_TOTALS = 0xB  # :1276
CMD_SALE = 0xC  # :1364
CMD_AUTHORISE = 0x9  # :1475
CMD_STOP = 0x7  # :1425
CMD_DATA = 0xD  # :749, :953

#: Stop every pump of the line (``:1421-1423``): a request byte of its own.
STOP_ALL = 0xFE

#: Requests that read and change nothing (docs/protocols/uninfo.md).
READ_COMMANDS = frozenset({CMD_STATUS, CMD_DISPLAY, CMD_TOTALS, CMD_SALE})

#: Every command nibble the source sends.
COMMANDS = frozenset({*READ_COMMANDS, CMD_AUTHORISE, CMD_STOP, CMD_DATA})

REQUEST_NAMES: dict[int, str] = {
    CMD_STATUS: "status",
    CMD_DISPLAY: "display",
    CMD_TOTALS: "totals",
    CMD_SALE: "sale",
    CMD_AUTHORISE: "authorise",
    CMD_STOP: "stop",
    CMD_DATA: "data",
}

#: Fuelling points one line addresses: nibbles 1..15 and 0 for 16 (``:113-114``).
MIN_ADDRESS, MAX_ADDRESS = 1, 16


def pump_nibble(address: int) -> int:
    """The low nibble naming ``address`` (1..16) on the wire: 16 is 0."""
    if not MIN_ADDRESS <= address <= MAX_ADDRESS:
        raise ValueError(f"pump {address} is not {MIN_ADDRESS}..{MAX_ADDRESS}")
    return address % 16


def nibble_address(nibble: int) -> int:
    """The pump a low nibble names (0 is 16)."""
    return nibble or 16


def request_byte(command: int, address: int) -> int:
    """The one-byte request ``command << 4 | pump``."""
    if command not in COMMANDS:
        raise ValueError(f"{command:X} is no Uninfo command")
    return command << 4 | pump_nibble(address)


def is_request(byte: int) -> bool:
    """A byte the controller sends as a request: a command nibble, or FE."""
    return byte >> 4 in COMMANDS or byte == STOP_ALL


# ---------------------------------------------------------------- status

ST_ERROR, ST_IDLE, ST_LIFTED, ST_AUTHORISED, ST_FUELLING, ST_STOPPED, ST_END = range(7)

STATE_NAMES = ("error", "idle", "lifted", "authorised", "fuelling", "stopped", "end")


def status_state(byte: int) -> int | None:
    """The state of a status reply byte, or None when its high nibble is no state."""
    state = byte >> 4
    return state if state <= ST_END else None


# ---------------------------------------------------------------- words

ETX = 0xF0
DIGIT_WORD = 0xE0
MAX_DIGIT = 9


def lrc_nibble(words: Iterable[int]) -> int:
    """``−(8-bit sum) & 0F`` (``lrc.c:58-69``, ``lrc.c:104-116``)."""
    return -sum(words) & 0x0F


def check_end(words: Sequence[int] | bytes) -> str | None:
    """Why ``words`` do not end ``LRC F0`` with a good check (None: they do)."""
    if len(words) < 2 or words[-1] != ETX:
        return f"last word {words[-1]:02X} is not F0" if words else "no words"
    if words[-2] & 0x0F != lrc_nibble(words[:-2]):
        want = lrc_nibble(words[:-2])
        return f"check word {words[-2]:02X}, the sum wants low nibble {want:X}"
    return None


def read_digits(words: bytes, start: int, count: int) -> int | None:
    """``count`` digits from ``start``, least significant first; None if a low
    nibble is above 9."""
    value = 0
    for word in reversed(words[start : start + count]):
        digit = word & 0x0F
        if digit > MAX_DIGIT:
            return None
        value = value * 10 + digit
    return value


def digit_words(value: int, count: int) -> bytes:
    """``value`` as ``count`` words ``E0 | digit``, least significant first."""
    if not 0 <= value < 10**count:
        raise ValueError(f"{value} does not fit {count} digits")
    out = bytearray()
    for _ in range(count):
        value, digit = divmod(value, 10)
        out.append(DIGIT_WORD | digit)
    return bytes(out)


def with_check(body: bytes) -> bytes:
    """``body`` + its check word + F0, as a pump ends a data reply."""
    return body + bytes([DIGIT_WORD | lrc_nibble(body), ETX])


def _digits(words: bytes, start: int, count: int, name: str) -> int | ProtocolError:
    value = read_digits(words, start, count)
    if value is None:
        found = words[start : start + count].hex(" ").upper()
        return ProtocolError("bad_message", f"{name} words {found} hold a non-digit")
    return value


# ---------------------------------------------------------------- running display

DISPLAY_LEN = 25  # :1536
DISPLAY_AMOUNT, DISPLAY_VOLUME, DISPLAY_DIGITS = 0, 9, 8  # :1570-1573, :1555-1558


@dataclass(frozen=True, slots=True)
class Display:
    """The running fill (answer to 8): amount and volume so far, raw digits."""

    amount: int
    volume: int


def parse_display(words: bytes) -> Display | ProtocolError:
    if len(words) != DISPLAY_LEN:
        return ProtocolError("bad_length", f"display of {len(words)} words, not {DISPLAY_LEN}")
    amount = _digits(words, DISPLAY_AMOUNT, DISPLAY_DIGITS, "amount")
    volume = _digits(words, DISPLAY_VOLUME, DISPLAY_DIGITS, "volume")
    for value in (amount, volume):
        if isinstance(value, ProtocolError):
            return value
    assert isinstance(amount, int) and isinstance(volume, int)
    return Display(amount, volume)


# ---------------------------------------------------------------- last sale

SALE_LEN = 73  # :1366
SALE_PUMP = 2  # :1398
SALE_PRICE, PRICE_DIGITS = 19, 6  # :1207-1210
SALE_VOLUME, SALE_AMOUNT, SALE_DIGITS = 27, 37, 8  # :1191-1195, :1199-1203


@dataclass(frozen=True, slots=True)
class SaleRecord:
    """The answer to C: a fuelling point's last sale, raw digits."""

    address: int
    price: int
    volume: int
    amount: int


def parse_sale(words: bytes) -> SaleRecord | ProtocolError:
    if len(words) != SALE_LEN:
        return ProtocolError("bad_length", f"sale of {len(words)} words, not {SALE_LEN}")
    wrong = check_end(words)
    if wrong is not None:
        return ProtocolError("bad_lrc", f"sale record: {wrong}")
    fields = []
    for start, count, name in (
        (SALE_PRICE, PRICE_DIGITS, "price"),
        (SALE_VOLUME, SALE_DIGITS, "volume"),
        (SALE_AMOUNT, SALE_DIGITS, "amount"),
    ):
        value = _digits(words, start, count, name)
        if isinstance(value, ProtocolError):
            return value
        fields.append(value)
    price, volume, amount = fields
    return SaleRecord(nibble_address(words[SALE_PUMP] & 0x0F), price, volume, amount)


# ---------------------------------------------------------------- totals

TOTALS_HEAD, TOTALS_TAIL, TOTALS_RECORD = 1, 3, 40  # :1278, :1345, :1799
#: Nozzles (grades) a fuelling point has, the FCC's bound (``MAX_FP_LN_CNT``,
#: ``src/ifsf_dsp.h:35``); the nozzle nibble could name 16.
MAX_GRADES = 4
REC_NOZZLE, REC_VOLUME, REC_AMOUNT, TOTAL_DIGITS = 1, 3, 14, 9  # :1340-1342
REC_PRICE, REC_PRICE_DIGITS = 25, 4  # :1049-1050


def totals_len(grades: int) -> int:
    return TOTALS_HEAD + TOTALS_RECORD * grades + TOTALS_TAIL


@dataclass(frozen=True, slots=True)
class GradeTotals:
    """One record of a totals reply: a nozzle's totals and price, raw digits."""

    nozzle: int
    volume_total: int
    amount_total: int
    price: int


def parse_totals(words: bytes) -> tuple[GradeTotals, ...] | ProtocolError:
    grades, rest = divmod(len(words) - TOTALS_HEAD - TOTALS_TAIL, TOTALS_RECORD)
    if rest or not 1 <= grades <= MAX_GRADES:
        return ProtocolError("bad_length", f"totals of {len(words)} words: not 4 + 40 × 1..4")
    wrong = check_end(words)
    if wrong is not None:
        return ProtocolError("bad_lrc", f"totals: {wrong}")
    out: list[GradeTotals] = []
    for k in range(grades):
        p = TOTALS_HEAD + k * TOTALS_RECORD
        nozzle = (words[p + REC_NOZZLE] & 0x0F) + 1
        fields = []
        for start, count, name in (
            (REC_VOLUME, TOTAL_DIGITS, "volume total"),
            (REC_AMOUNT, TOTAL_DIGITS, "amount total"),
            (REC_PRICE, REC_PRICE_DIGITS, "price"),
        ):
            value = _digits(words, p + start, count, f"nozzle {nozzle} {name}")
            if isinstance(value, ProtocolError):
                return value
            fields.append(value)
        if any(g.nozzle == nozzle for g in out):
            return ProtocolError("bad_message", f"totals name nozzle {nozzle} twice")
        out.append(GradeTotals(nozzle, *fields))
    return tuple(out)


# ---------------------------------------------------------------- D blocks (never sent)

BLOCK_START, BLOCK_DATA, BLOCK_END = 0xFF, 0xFD, 0xFC  # :750-756, :786-789
#: Words of a block besides those its length counts: request byte, FF, two
#: length words; FC, check word, F0 (``:749-791``: length 17, 24 words).
BLOCK_OVERHEAD = 7
FN_PRICE, FN_PRESET = 1, 2  # "001 更改单价" :960-963, "002 送預置量" :759-762
DATA_REPLY_LEN, DATA_RESULT = 12, 8  # :792, :808, :1020
RESULTS = {0: "ok", 1: "check or length error", 2: "bad data item", 3: "not now", 4: "executing"}


@dataclass(frozen=True, slots=True)
class DataBlock:
    """A controller's D request (price or preset): never sent by the collector."""

    address: int
    function: int
    raw: bytes


def block_len(words: bytes) -> int | None:
    """The length a D block announces (``E1 E6`` = 0x16 = 22 words from FD to
    before FC, ``:956-958``, ``:751-753``), whole block; None if unreadable."""
    if len(words) < 4 or words[1] != BLOCK_START:
        return None
    high, low = words[2] & 0x0F, words[3] & 0x0F
    return (high << 4 | low) + BLOCK_OVERHEAD


def parse_block(words: bytes) -> DataBlock | ProtocolError:
    if len(words) < 8 or words[0] >> 4 != CMD_DATA or block_len(words) != len(words):
        return ProtocolError("bad_length", f"data block of {len(words)} words")
    if words[4] != BLOCK_DATA or words[-3] != BLOCK_END or words[-1] != ETX:
        return ProtocolError("bad_message", "data block without FD … FC … F0")
    if words[-2] & 0x0F != lrc_nibble(words[1:-2]):
        return ProtocolError("bad_lrc", "data block check word")
    # The function's three digits stand most significant first (E0 E0 E1 = 001).
    digits = [w & 0x0F for w in words[5:8]]
    if max(digits) > MAX_DIGIT:
        return ProtocolError("bad_message", "data block function is no number")
    function = digits[0] * 100 + digits[1] * 10 + digits[2]
    return DataBlock(nibble_address(words[0] & 0x0F), function, bytes(words))


def build_block(address: int, function: int, fields: bytes) -> bytes:
    """A D block as a controller sends it (``:749-791``): for the simulator's
    POS and the tests, never for the product."""
    body = bytes([BLOCK_DATA]) + bytes(DIGIT_WORD | int(d) for d in f"{function:03d}") + fields
    if len(body) > 0xFF:
        raise ValueError("data block too long")
    head = bytes([BLOCK_START, DIGIT_WORD | len(body) >> 4, DIGIT_WORD | len(body) & 0x0F])
    inner = head + body + bytes([BLOCK_END])
    return (
        bytes([request_byte(CMD_DATA, address)])
        + inner
        + bytes([DIGIT_WORD | lrc_nibble(inner), ETX])
    )


def parse_data_reply(words: bytes, address: int | None = None) -> int | ProtocolError:
    """The result code of the 12-word answer to a D block."""
    if len(words) != DATA_REPLY_LEN:
        return ProtocolError("bad_length", f"data reply of {len(words)} words")
    if words[0] >> 4 != CMD_DATA or (
        address is not None and words[0] & 0x0F != pump_nibble(address)
    ):
        return ProtocolError("bad_message", f"data reply starts {words[0]:02X}")
    return words[DATA_RESULT] & 0x0F
