"""Seeded tanks and scenario files for the gauge simulator (no I/O but reading the file).

A scenario is a JSON object; every key is optional::

    {
      "start": "2026-03-01T08:00:00",      console clock at start (naive; default now)
      "tanks": [                           overrides of the seeded tanks, by "tank" number
        {"tank": 1, "product": "1", "diameter_mm": 2500, "length_mm": 8000,
         "volume_l": 12000, "water_l": 50, "temperature_c": 17.0, "ground_c": 16.0,
         "declared_capacity_l": 30000, "leak_lph": 0.0}
      ],
      "events": [                          "at_s": simulated seconds after start
        {"at_s": 60, "type": "delivery", "tank": 1, "litres": 8000, "minutes": 20,
         "temperature_c": 19.0, "water_l": 0, "hidden": false},
        {"at_s": 30, "type": "sale", "tank": 1, "litres": 40},
        {"at_s": 90, "type": "leak_test", "tank": 2, "hours": 2, "test_type": 0},
        {"at_s": 0, "type": "leak", "tank": 2, "lph": 1.5},
        {"at_s": 0, "type": "alarm", "tank": 1, "code": 9, "active": true}
      ]
    }

``hidden`` deliveries (A3) pour without the console recording them. Sales
drain a tank; in a shared scenario the dispenser simulator's sales drain
it too: :func:`apply_sale` takes one of its ground-truth JSON lines
(``{"nozzle": "p01.a1.n2", "volume": "30.12", ...}``) and drains the volume
from the tank the nozzle is mapped to (:func:`parse_tank_map`). ``declared_capacity_l`` (A4) is what
the console is programmed with; the geometry gives the real capacity.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hil.atg.console import Console
from hil.atg.tank import PRODUCTS, SimTank, segment_volume

#: Seeded geometry: common Chinese station tanks, 20–60 m³.
DIAMETERS_MM = (2200, 2500, 2800)
LENGTHS_MM = (6000, 8000, 10000)
#: Seeded contents: 30–70 % full, 0–25 mm of water, product 12–22 °C.
FILL_RANGE = (0.30, 0.70)
WATER_RANGE_MM = (0.0, 25.0)
TEMPERATURE_RANGE_C = (12.0, 22.0)
GROUND_RANGE_C = (14.0, 18.0)

TANK_KEYS = {
    "product",
    "diameter_mm",
    "length_mm",
    "volume_l",
    "water_l",
    "temperature_c",
    "ground_c",
    "declared_capacity_l",
    "leak_lph",
}
EVENT_TYPES = {"delivery", "sale", "leak_test", "leak", "alarm"}


def make_tanks(
    count: int, seed: int, overrides: list[dict[str, Any]] | None = None
) -> list[SimTank]:
    """``count`` tanks drawn from ``seed``, products 1, 2, 3 round robin."""
    rng = random.Random(seed)
    by_number = {int(o["tank"]): o for o in overrides or []}
    products = sorted(PRODUCTS)
    tanks = []
    for n in range(1, count + 1):
        d, length = rng.choice(DIAMETERS_MM), rng.choice(LENGTHS_MM)
        capacity = segment_volume(d, length, d)
        spec: dict[str, Any] = {
            "product": products[(n - 1) % len(products)],
            "diameter_mm": d,
            "length_mm": length,
            "volume_l": round(rng.uniform(*FILL_RANGE) * capacity, 1),
            "water_l": round(segment_volume(d, length, rng.uniform(*WATER_RANGE_MM)), 1),
            "temperature_c": round(rng.uniform(*TEMPERATURE_RANGE_C), 2),
            "ground_c": round(rng.uniform(*GROUND_RANGE_C), 2),
        }
        extra = by_number.get(n, {})
        unknown = set(extra) - TANK_KEYS - {"tank"}
        if unknown:
            raise ValueError(f"tank {n}: unknown keys {sorted(unknown)}")
        spec.update({k: v for k, v in extra.items() if k != "tank"})
        tanks.append(SimTank(number=n, **spec))
    return tanks


@dataclass(frozen=True)
class Event:
    at_s: float
    type: str
    args: dict[str, Any]


@dataclass
class Scenario:
    start: datetime | None
    tanks: list[dict[str, Any]]
    events: list[Event]

    @classmethod
    def load(cls, path: Path | None) -> Scenario:
        if path is None:
            return cls(None, [], [])
        raw = json.loads(path.read_text())
        start = datetime.fromisoformat(raw["start"]) if "start" in raw else None
        if start is not None and start.tzinfo is not None:
            raise ValueError("scenario start is the console's naive wall clock")
        events = []
        for e in raw.get("events", []):
            if e.get("type") not in EVENT_TYPES:
                raise ValueError(f"event type must be one of {sorted(EVENT_TYPES)}: {e}")
            args = {k: v for k, v in e.items() if k not in ("at_s", "type")}
            events.append(Event(float(e.get("at_s", 0)), e["type"], args))
        events.sort(key=lambda e: e.at_s)
        return cls(start, list(raw.get("tanks", [])), events)

    def due(self, elapsed_s: float) -> list[Event]:
        """Pop the events whose time has come."""
        ready = [e for e in self.events if e.at_s <= elapsed_s]
        self.events = self.events[len(ready) :]
        return ready


def apply(console: Console, event: Event) -> None:
    """Carry out one scenario event on the console."""
    a = event.args
    tank = int(a["tank"])
    if event.type == "delivery":
        console.start_delivery(
            tank,
            float(a["litres"]),
            float(a.get("minutes", 20)),
            temperature_c=a.get("temperature_c"),
            water_l=float(a.get("water_l", 0.0)),
            hidden=bool(a.get("hidden", False)),
        )
    elif event.type == "sale":
        console.drain(tank, float(a["litres"]))
    elif event.type == "leak_test":
        console.start_leak_test(
            tank,
            float(a.get("hours", 2)),
            int(a.get("test_type", 0)),
            manifolded=bool(a.get("manifolded", False)),
        )
    elif event.type == "leak":
        console.advance(console.clock())
        console.tanks[tank].leak_lph = float(a["lph"])
    elif event.type == "alarm":
        console.set_alarm(tank, int(a["code"]), bool(a.get("active", True)))


def parse_tank_map(items: Iterable[str]) -> dict[str, int]:
    """``["p01.a1.n1=1", "p01.a1.n2=1,p01.a1.n3=2"]`` → nozzle key → tank number."""
    out: dict[str, int] = {}
    for item in items:
        for pair in item.split(","):
            pair = pair.strip()
            if not pair:
                continue
            nozzle, sep, tank = pair.partition("=")
            nozzle, tank = nozzle.strip(), tank.strip()
            if not sep or not nozzle or not tank.isdigit() or int(tank) < 1:
                raise ValueError(f"expected NOZZLE=TANK, got {pair!r}")
            if out.get(nozzle, int(tank)) != int(tank):
                raise ValueError(f"nozzle {nozzle} mapped to two tanks")
            out[nozzle] = int(tank)
    return out


def apply_sale(console: Console, line: str, tank_of: Mapping[str, int]) -> dict[str, Any] | None:
    """Drain one sale (a dispenser ground-truth JSON line) from its nozzle's tank.

    Returns the ground-truth line of the drain (``"event": "sale"``, the
    litres sold and those actually taken), or ``None`` when the nozzle is not
    mapped to a tank. Raises ``ValueError`` for a line that is not a sale, or
    a tank the console does not have.
    """
    try:
        sale = json.loads(line)
        nozzle, volume = str(sale["nozzle"]), float(sale["volume"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a sale line: {line.strip()[:80]!r}") from exc
    if not volume >= 0:  # also refuses NaN
        raise ValueError(f"sale volume {volume} of {nozzle}")
    tank = tank_of.get(nozzle)
    if tank is None:
        return None
    if tank not in console.tanks:
        raise ValueError(f"nozzle {nozzle} is mapped to tank {tank}, which the console lacks")
    taken = console.drain(tank, volume)
    return {
        "event": "sale",
        "nozzle": nozzle,
        "order_no": sale.get("order_no"),
        "tank": tank,
        "litres": volume,
        "taken_l": round(taken, 3),
    }
