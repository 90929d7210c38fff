"""Line faults injected into a simulated dispenser's byte stream (sans-IO).

The simulator core passes every byte it writes (and, when asked, every byte
it reads) through :meth:`LineFaults.apply`. Tests use the same object
in-process to put a driver behind a noisy line without a pty.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class LineFaults:
    """Bit errors and dropped bytes at given rates, from a seeded generator.

    ``bit_error_rate`` is per bit (1e-3 ≈ 1 % of bytes hit), ``drop_rate`` per
    byte. ``cut`` makes the line silent (a cut signal line: nothing passes).
    """

    rng: random.Random = field(default_factory=random.Random)
    bit_error_rate: float = 0.0
    drop_rate: float = 0.0
    cut: bool = False
    flipped_bits: int = 0
    dropped_bytes: int = 0

    def apply(self, data: bytes) -> bytes:
        if self.cut:
            self.dropped_bytes += len(data)
            return b""
        if not self.bit_error_rate and not self.drop_rate:
            return data
        out = bytearray()
        for byte in data:
            if self.drop_rate and self.rng.random() < self.drop_rate:
                self.dropped_bytes += 1
                continue
            if self.bit_error_rate:
                for bit in range(8):
                    if self.rng.random() < self.bit_error_rate:
                        byte ^= 1 << bit
                        self.flipped_bits += 1
            out.append(byte)
        return bytes(out)
