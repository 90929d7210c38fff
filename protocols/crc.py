"""CRC-16/ARC, the checksum of the Sinopec card-dispenser link (protocols.md §2).

Parameters (protocols.md §2, "CRC"): reflected polynomial 0xA001 (0x8005
bit-reversed), initial value 0x0000, input and output reflected, no final
XOR. The catalogue check value — the CRC of the ASCII bytes ``123456789`` —
is 0xBB3D; ``tests/test_sinopec_framer.py`` pins it.

Table-driven, one byte per step: 256 pre-computed entries replace the eight
shift/XOR rounds of the bitwise form. A dispenser frame is at most a few
hundred bytes, so this is plenty fast in pure Python.
"""

from __future__ import annotations

#: The reflected CRC-16 polynomial x^16 + x^15 + x^2 + 1 (protocols.md §2).
POLY_REFLECTED = 0xA001

#: CRC-16/ARC starts from zero and applies no final XOR (protocols.md §2).
INIT = 0x0000


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC of ``data`` as an integer 0..0xFFFF (``crc16_arc(b"123456789") == 0xBB3D``)."""
    crc = INIT
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc
