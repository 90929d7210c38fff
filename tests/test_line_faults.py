"""hil.dispenser.faults: the noise the simulators inject is what it says."""

from __future__ import annotations

import random

from hil.dispenser.faults import LineFaults


def test_clean_line_passes_bytes_unchanged() -> None:
    assert LineFaults().apply(b"\xfa\x00\x01") == b"\xfa\x00\x01"


def test_bit_errors_flip_about_the_asked_rate() -> None:
    faults = LineFaults(random.Random(1), bit_error_rate=0.01)
    data = bytes(10_000)
    out = faults.apply(data)
    flipped = sum(bin(b).count("1") for b in out)
    assert flipped == faults.flipped_bits
    assert 600 < flipped < 1000  # 80 000 bits × 1 %


def test_drops_and_cut() -> None:
    faults = LineFaults(random.Random(2), drop_rate=0.1)
    out = faults.apply(bytes(range(256)) * 10)
    assert len(out) + faults.dropped_bytes == 2560
    assert 180 < faults.dropped_bytes < 340
    faults.cut = True
    assert faults.apply(b"abc") == b""
