"""Faults injected into a simulated dispenser (sans-IO).

:class:`LineFaults`: the simulator core passes every byte it writes through
:meth:`LineFaults.apply` (and drops what it reads while the line is cut).
Tests use the same object in-process to put a driver behind a noisy line
without a pty.

:class:`Fault` / :func:`parse_fault`: the ``--fault`` options, scheduled by
the simulator core and applied to the line or to a ``PumpModel``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from protocols.events import COMPONENT_NAMES


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


# ---------------------------------------------------------------- scheduled faults

#: Fault kinds of ``--fault`` and the type of their value.
FAULT_KINDS: dict[str, type] = {
    "line-cut": float,  # seconds the line passes nothing, either way
    "power-cycle": float,  # seconds the pump is off and silent
    "totalizer-jump": int,  # 0.01 L added to a nozzle's totalizer (negative: back)
    "component": str,  # a part name of COMPONENT_NAMES gets a new identity
    "alarm": int,  # display code raised (protocols.md §5)
    "alarm-clear": int,  # display code cleared
    "unplug": float,  # seconds the pty is gone (closed, link removed), then back
    "skip-order": int,  # the pump's transaction counter skips N (sales never offered)
    "amount-off": int,  # 0.01 yuan added to the next sale's amount (wrong rounding)
    "price": int,  # a nozzle's unit price from now on, 0.01 yuan/L
}

#: Faults that hit the whole line; the others concern one pump (``pump=``).
LINE_FAULTS = frozenset({"line-cut", "unplug"})
PUMP_FAULTS = frozenset(FAULT_KINDS) - LINE_FAULTS

#: Display codes are two digits on the pump (61–65 in protocols.md §5).
MAX_ALARM_CODE = 99

#: GB/T 9081-2023 part names a ``component`` fault may change.
PART_NAMES = COMPONENT_NAMES


@dataclass(frozen=True)
class Fault:
    """One ``--fault`` option: at ``at`` s after start, ``kind`` with ``value``."""

    at: float
    kind: str
    value: float | int | str
    pump: int | None = None  # bus address; None: the first pump
    nozzle: int = 1


def parse_fault(spec: str) -> Fault:
    """``at=5:line-cut=3``, ``at=10:totalizer-jump=500:pump=1:nozzle=2`` … → Fault.

    Raises ValueError saying what is wrong.
    """
    fields: dict[str, str] = {}
    for part in spec.split(":"):
        key, sep, value = part.partition("=")
        if not sep or not value or key in fields:
            raise ValueError(f"fault {spec!r}: {part!r} is not a single key=value")
        fields[key] = value
    kinds = [k for k in fields if k in FAULT_KINDS]
    unknown = set(fields) - {"at", "pump", "nozzle", *FAULT_KINDS}
    if len(kinds) != 1 or unknown or "at" not in fields:
        raise ValueError(f"fault {spec!r}: needs at= and one of {', '.join(FAULT_KINDS)}")
    kind = kinds[0]
    at = float(fields["at"])
    value = FAULT_KINDS[kind](fields[kind])
    if at < 0 or (kind in ("line-cut", "power-cycle", "unplug") and not 0 < float(value) < 1e6):
        raise ValueError(f"fault {spec!r}: times must be positive")
    if kind in ("skip-order", "price") and int(value) < 1:
        raise ValueError(f"fault {spec!r}: {kind} must be at least 1")
    if kind == "component" and value not in PART_NAMES:
        raise ValueError(f"fault {spec!r}: component must be one of {', '.join(PART_NAMES)}")
    if kind.startswith("alarm") and not 0 <= int(value) <= MAX_ALARM_CODE:
        raise ValueError(f"fault {spec!r}: alarm codes are 0..{MAX_ALARM_CODE}")
    if kind not in PUMP_FAULTS and ("pump" in fields or "nozzle" in fields):
        raise ValueError(f"fault {spec!r}: {kind} hits the line, not a pump")
    pump = int(fields["pump"]) if "pump" in fields else None
    return Fault(at, kind, value, pump, int(fields.get("nozzle", "1")))
