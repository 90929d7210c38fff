"""Synthetic orders and heartbeats of one simulated station (hil.fleet).

The fields are those a port stores (collector/station/records.py, bench/store.py's
realistic order), so a batch compresses like a real one; values vary per
order so deflate does not see identical texts.
"""

from __future__ import annotations

import random
import time
from typing import Any

from buffer.store import OrderStore

#: Nozzles per simulated station: 4 dispensers x 2 nozzles, a common forecourt
#: (the 32-port figure in bench/ports32.py is the gateway's ceiling, not the norm).
NOZZLES_PER_STATION = 8

GRADES = (("92", "7.89"), ("95", "8.42"), ("0", "7.53"))


def nozzle_ids() -> list[str]:
    return [f"p{p:02d}.a1.n{n}" for p in range(1, NOZZLES_PER_STATION // 2 + 1) for n in (1, 2)]


class OrderMaker:
    """The next order of a station: a random nozzle, plausible decimal strings."""

    def __init__(self, station: str, rng: random.Random) -> None:
        self.station = station
        self.rng = rng
        self.nozzles = nozzle_ids()
        self.order_no = {n: 100_000 for n in self.nozzles}
        self.totalizer = {n: rng.randrange(100_000, 900_000) * 100 for n in self.nozzles}

    def pick(self) -> str:
        return self.rng.choice(self.nozzles)

    def next(self, nozzle: str) -> tuple[str, dict[str, Any], str]:
        self.order_no[nozzle] += 1
        grade, price = GRADES[self.nozzles.index(nozzle) % len(GRADES)]
        centilitres = self.rng.randrange(500, 6000)  # 5 … 60 L
        start = self.totalizer[nozzle]
        self.totalizer[nozzle] = start + centilitres
        amount_fen = round(centilitres * int(price.replace(".", "")) / 100)
        end = start + centilitres
        fields: dict[str, Any] = {
            "station": self.station,
            "order_no": str(self.order_no[nozzle]),
            "grade": grade,
            "price": price,
            "volume": f"{centilitres // 100}.{centilitres % 100:02d}",
            "amount": f"{amount_fen // 100}.{amount_fen % 100:02d}",
            "totalizer_volume_start": f"{start // 100}.{start % 100:02d}",
            "totalizer_volume_end": f"{end // 100}.{end % 100:02d}",
            "totalizer_amount_start": None,
            "totalizer_amount_end": None,
            "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S.000+08:00", time.localtime()),
            "flags": [],
        }
        return nozzle, fields, f"{self.order_no[nozzle]}:1"


def nozzle_body(nozzle: str, state: str, totalizer_centilitres: int) -> dict[str, Any]:
    """A state-change ``nozzle`` record as collector/station/nozzle_records.py writes one."""
    return {
        "nozzle": nozzle,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S.000+08:00", time.localtime()),
        "state": state,
        "totalizer_volume": f"{totalizer_centilitres // 100}.{totalizer_centilitres % 100:02d}",
        "totalizer_amount": None,
        "components": None,
    }


def heartbeat_body(store: OrderStore, started: float, nozzles: list[str]) -> dict[str, Any]:
    """The daemon's heartbeat shape (collector/daemon.py ``heartbeat``), with the
    store's real unsent counts (a query, as on the gateway)."""
    return {
        "uptime_s": int(time.monotonic() - started),
        "version": "fleet",
        "slot": "a",
        "ports_online": len(nozzles) // 2,
        "ports_total": len(nozzles) // 2,
        "nozzles": dict.fromkeys(nozzles, "idle"),
        "unsent": store.unsent_counts(),
        "clock_offset_ms": 0,
        "link": {"endpoint": "fleet", "interface": None},
        "mem_kb": None,
        "disk_free_kb": None,
    }
