"""A whole simulated station: N dispenser simulators and a collector config for them.

Used by tests/test_ports_32.py and the benches (bench/ports32.py): one
simulator process per port (a real pty each), protocols in turn, and a
TOML config with one ``[[ports]]`` table per simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hil import stack
from hil.stack import Proc

PROTOCOLS = ("sinopec", "dart", "gilbarco")
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"


def protocol_of(number: int, protocols: Sequence[str] = PROTOCOLS) -> str:
    return protocols[(number - 1) % len(protocols)]


def start_dispensers(
    work: Path,
    ports: int,
    *,
    orders: int,
    rate: float,
    nozzles: int = 4,
    fill_seconds: float = 0.3,
    extra: dict[int, list[str]] | None = None,
    common: Sequence[str] = (),
) -> dict[int, Proc]:
    """One simulator per port 1..``ports``; ``extra[n]`` adds flags to port n's."""
    sims: dict[int, Proc] = {}
    for number in range(1, ports + 1):
        sims[number] = stack.dispenser(
            work, work / f"port{number:02d}", orders=orders, nozzles=nozzles, rate=rate,
            seed=number, protocol=protocol_of(number), fill_seconds=fill_seconds,
            port_number=number, extra=[*common, *(extra or {}).get(number, [])],
            name=f"dispenser{number:02d}",
        )  # fmt: skip
    return sims


def write_config(
    path: Path,
    work: Path,
    broker_port: int,
    ports: int,
    *,
    poll_interval_ms: int = 50,
    idle_poll_interval_ms: int = 1000,
) -> Path:
    """The collector's config for ``start_dispensers(work, ports, …)``."""
    text = f"""
[device]
id = "demo-gw-01"
station = "DEMO-0001"
[store]
path = "{work / "store.sqlite"}"
[uplink]
port = {broker_port}
keys_file = "{DEMO_KEYS}"
kid = "demo-k1"
batch_max_records = 100
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[log]
format = "json"
"""
    for number in range(1, ports + 1):
        text += f"""
[[ports]]
number = {number}
device = "{work / f"port{number:02d}"}"
protocol = "{protocol_of(number)}"
addresses = [1]
poll_interval_ms = {poll_interval_ms}
idle_poll_interval_ms = {idle_poll_interval_ms}
"""
        if protocol_of(number) == "dart":  # DART carries no grade code
            text += '[ports.dart]\ngrades = {1 = "1092", 2 = "1095", 3 = "2000", 4 = "1092"}\n'
    path.write_text(text)
    return path
