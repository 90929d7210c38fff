"""What a simulated underground tank *is*: geometry, contents, temperature.

No I/O and no clock: time spans come in as arguments. Units: litres,
millimetres, °C (what a Chinese station's console is set up for).

Strapping (level ↔ volume): a horizontal cylinder with flat ends — the
usual steel UST — of inner diameter ``D = 2R`` and length ``L``. The liquid
cross-section at level ``h`` is a circular segment::

    A(h) = R² · acos((R − h) / R) − (R − h) · √(2Rh − h²)        (mm²)
    V(h) = A(h) · L / 10⁶                                          (litres)

``h(V)`` is found by bisection (V is strictly increasing in h). Water lies
under the product: water height = h(water volume); the probe's product
level ("height") = h(product + water volume); the product volume is what
lies between them.

Temperature compensation (TC volume): a linear volume correction factor
to the reference temperature :data:`REFERENCE_TEMP_C`::

    VCF = 1 − α · (T − 15 °C),   TC volume = volume · VCF

with α per product (:data:`PRODUCTS`): 0.0012 /°C for petrol, 0.0008 /°C
for diesel — close to the ASTM/ISO 91 tables at 15 °C for these densities
(GB/T 1885 uses 20 °C as reference; the console's setting, a constant here).

Temperature drift: the product relaxes towards the ground temperature with
time constant :data:`THERMAL_TAU_S`; a delivery mixes in its own
temperature in proportion to volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Reference temperature of TC volume, °C (ISO 91-1; TLS metric default).
REFERENCE_TEMP_C = 15.0

#: Product code (i201 ``p``, one character) → (label, expansion coefficient /°C).
PRODUCTS: dict[str, tuple[str, float]] = {
    "1": ("92# petrol", 0.0012),
    "2": ("95# petrol", 0.0012),
    "3": ("0# diesel", 0.0008),
}

#: Thermal time constant of buried product towards ground temperature: a
#: 30 m³ tank under a metre of soil takes most of a day to follow a delivery.
THERMAL_TAU_S = 12 * 3600.0

#: Bisection steps for h(V): halves the 0…D interval 60 times, far below
#: float32 resolution of any height.
BISECTION_STEPS = 60


def segment_volume(diameter_mm: float, length_mm: float, level_mm: float) -> float:
    """V(h) of a horizontal cylinder, litres (module doc)."""
    r = diameter_mm / 2
    h = min(max(level_mm, 0.0), diameter_mm)
    area = r * r * math.acos((r - h) / r) - (r - h) * math.sqrt(max(2 * r * h - h * h, 0.0))
    return area * length_mm / 1e6


def segment_level(diameter_mm: float, length_mm: float, volume_l: float) -> float:
    """h(V): the inverse of :func:`segment_volume` by bisection, mm."""
    lo, hi = 0.0, diameter_mm
    if volume_l <= 0:
        return 0.0
    if volume_l >= segment_volume(diameter_mm, length_mm, hi):
        return hi
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        if segment_volume(diameter_mm, length_mm, mid) < volume_l:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass
class SimTank:
    """One tank's true state. ``declared_capacity_l`` is what the console is
    programmed with (A4: it may differ from the geometry's real capacity)."""

    number: int
    product: str
    diameter_mm: float
    length_mm: float
    volume_l: float  # product, water excluded
    water_l: float
    temperature_c: float
    ground_c: float
    declared_capacity_l: float = 0.0  # 0 → the real capacity
    leak_lph: float = 0.0  # true loss through a hole, litres per hour
    forced_alarms: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.product not in PRODUCTS:
            raise ValueError(f"product code must be one of {sorted(PRODUCTS)}")
        if self.declared_capacity_l <= 0:
            self.declared_capacity_l = self.capacity_l
        if self.volume_l + self.water_l > self.capacity_l:
            raise ValueError(f"tank {self.number}: contents exceed the real capacity")

    @property
    def capacity_l(self) -> float:
        """The real capacity: the full cylinder."""
        return segment_volume(self.diameter_mm, self.length_mm, self.diameter_mm)

    @property
    def expansion(self) -> float:
        return PRODUCTS[self.product][1]

    def level_mm(self) -> float:
        """Product level above the tank bottom (the i201 "height")."""
        return segment_level(self.diameter_mm, self.length_mm, self.volume_l + self.water_l)

    def water_mm(self) -> float:
        return segment_level(self.diameter_mm, self.length_mm, self.water_l)

    def tc_volume_l(self) -> float:
        return self.volume_l * (1 - self.expansion * (self.temperature_c - REFERENCE_TEMP_C))

    def ullage_l(self) -> float:
        """Room left against the console's (declared) capacity; negative when the
        tank holds more than declared — the telltale of a false capacity (A4)."""
        return self.declared_capacity_l - self.volume_l - self.water_l

    def room_l(self) -> float:
        """Room left in the real tank."""
        return self.capacity_l - self.volume_l - self.water_l

    def pour(self, litres: float, temperature_c: float, water_l: float = 0.0) -> float:
        """Add product (and water) at ``temperature_c``, mixing; returns litres added."""
        litres = max(0.0, min(litres, self.room_l() - water_l))
        total = self.volume_l + litres
        if total > 0:
            self.temperature_c = (
                self.volume_l * self.temperature_c + litres * temperature_c
            ) / total
        self.volume_l = total
        self.water_l += max(0.0, water_l)
        return litres

    def drain(self, litres: float) -> float:
        """Take product out (sales, leaks); returns what could be taken."""
        taken = max(0.0, min(litres, self.volume_l))
        self.volume_l -= taken
        return taken

    def relax(self, seconds: float, ground_c: float) -> None:
        """Temperature drift towards the ground over ``seconds``."""
        self.temperature_c = ground_c + (self.temperature_c - ground_c) * math.exp(
            -seconds / THERMAL_TAU_S
        )
