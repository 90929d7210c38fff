"""Changkong Uninfo frames as ``fangym0335/first src/lischn011.c`` builds and reads
them, for the tests — written from the C, independent of ``protocols/uninfo``.

``c_lrc`` / ``c_lrc_ck`` transliterate ``src/lrc.c:58-69`` and ``:104-116``;
``fcc_*`` lay words out at the positions the FCC reads (filler ``E0``
elsewhere: the source does not say what stands there) and ``fcc_value``
reads digits back the FCC's way, ``(cmd[k+1] << 4) | (cmd[k] & 0x0f)`` into
BCD bytes (e.g. ``:1192-1195``).
"""

from __future__ import annotations


def c_lrc(buf: bytes | list[int]) -> int:
    """``LRC`` (``lrc.c:58-69``): ``(unsigned char)(-((char)sum))``."""
    lrc = 0
    for byte in buf:
        lrc = (lrc + byte) & 0xFF
    signed = lrc - 256 if lrc >= 128 else lrc
    return (-signed) & 0xFF


def c_lrc_ck(buf: bytes | list[int]) -> int:
    """``LRC_CK`` (``lrc.c:104-116``): ``(~sum + 1) & 0x0f``."""
    lrc = 0
    for byte in buf:
        lrc = (lrc + byte) & 0xFF
    return ((~lrc + 1) & 0xFF) & 0x0F


def fcc_value(words: bytes | list[int], start: int, count: int) -> int:
    """Digits ``[start, start + count)`` read as the FCC does: byte pairs from the
    top, ``(cmd[k+1] << 4) | (cmd[k] & 0x0f)``, as BCD."""
    pairs = [
        ((words[k + 1] << 4) | (words[k] & 0x0F)) & 0xFF
        for k in range(start + count - 2, start - 2, -2)
    ]
    return int(bytes(pairs).hex())


def _put(words: list[int], start: int, value: int, count: int) -> None:
    for i, digit in enumerate(reversed(f"{value:0{count}d}")):
        words[start + i] = 0xE0 | int(digit)


def _end(words: list[int]) -> bytes:
    """The check word and F0 as the FCC checks them (``:1385-1392``)."""
    words[-1] = 0xF0
    words[-2] = 0xE0 | (c_lrc(words[:-2]) & 0x0F)
    return bytes(words)


def fcc_sale(pump_nibble: int, price: int, volume: int, amount: int) -> bytes:
    """73 words (``:1366``): pump ``[2]`` (``:1398``), price from ``[19]``
    (``:1207-1210``), volume from ``[27]`` (``:1191-1195``), amount from ``[37]``
    (``:1199-1203``)."""
    words = [0xE0] * 73
    words[2] = 0xE0 | pump_nibble
    _put(words, 19, price, 6)
    _put(words, 27, volume, 8)
    _put(words, 37, amount, 8)
    return _end(words)


def fcc_totals(grades: list[tuple[int, int, int, int]]) -> bytes:
    """``4 + 40·g`` words (``:1278``): records from ``[1]``, 40 apart (``:1345``);
    in one, ``p[1]`` = nozzle − 1 (``:1340``), volume total from ``p[3]``,
    amount total from ``p[14]`` (``:1341-1342``), price from ``p[25]``
    (``:1049-1050``). ``grades``: (nozzle, volume total, amount total, price)."""
    words = [0xE0] * (4 + 40 * len(grades))
    for k, (nozzle, volume_total, amount_total, price) in enumerate(grades):
        p = 1 + 40 * k
        words[p + 1] = 0xE0 | (nozzle - 1)
        _put(words, p + 3, volume_total, 9)
        _put(words, p + 14, amount_total, 9)
        _put(words, p + 25, price, 4)
    return _end(words)


def fcc_display(amount: int, volume: int) -> bytes:
    """25 words (``:1536``): amount from ``[0]`` (``:1570-1573``), volume from
    ``[9]`` (``:1555-1558``); the FCC checks no end word."""
    words = [0xE0] * 25
    _put(words, 0, amount, 8)
    _put(words, 9, volume, 8)
    return bytes(words)


def fcc_price_block(pump_nibble: int, price_bcd: int) -> bytes:
    """``ChangePrice`` (``:944-991``): the block for a 2-byte BCD price
    (``newPrice[pr_no][2..3]``), byte by byte."""
    hi, lo = price_bcd >> 8, price_bcd & 0xFF
    price = [0xE0 | (lo & 0x0F), 0xE0 | (lo >> 4), 0xE0 | (hi & 0x0F), 0xE0 | (hi >> 4), 0xE0, 0xE0]
    cmd = [0xD0 | pump_nibble, 0xFF, 0xE1, 0xE6, 0xFD, 0xE0, 0xE0, 0xE1, 0xF5, 0xE0, 0xF3]
    cmd += [*price, 0xE2, 0xF4, *price, 0xE2, 0xFC]
    cmd += [0xE0 | c_lrc_ck(cmd[1:27]), 0xF0]
    assert len(cmd) == 29  # pump.cmdlen = 29, :991
    return bytes(cmd)


def fcc_preset_block(pump_nibble: int, preset_bcd: bytes, by_amount: bool) -> bytes:
    """``DoRation`` (``:716-791``): a 3-byte BCD preset (``pre_volume``), nozzle 1."""
    v = preset_bcd
    value = [0xE0 | (v[2] & 0x0F), 0xE0 | (v[2] >> 4), 0xE0 | (v[1] & 0x0F)]
    value += [0xE0 | (v[1] >> 4), 0xE0 | (v[0] & 0x0F), 0xE0 | (v[0] >> 4), 0xE0, 0xE0]
    cmd = [0xD0 | pump_nibble, 0xFF, 0xE1, 0xE1, 0xFD, 0xE0, 0xE0, 0xE2, 0xF5, 0xE0]
    cmd += [0xF2 if by_amount else 0xF1, *value, 0xE2, 0xF3, 0xFC]
    cmd += [0xE0 | c_lrc_ck(cmd[1:22]), 0xF0]
    assert len(cmd) == 24  # pump.cmdlen = 24, :791
    return bytes(cmd)
