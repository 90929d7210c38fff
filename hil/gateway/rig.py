"""The host side of a gateway run: broker, receiver, simulated dispensers, the VM.

The dispensers' stdout is the ground truth and the receiver's what reached
the platform (hil/torture.py ``check`` compares them). Each line is stamped
with the host's clock as it is read, so a sale's hang-up → platform time is
the receiver's stamp minus the dispenser's.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil import stack
from hil.gateway import image, vm
from hil.stack import Mosquitto, Proc

KEYS = stack.ROOT / "config" / "demo-keys.toml"
#: The nozzles of each simulated pump (four, as the demo dispenser).
NOZZLES = 4


class StampedProc(Proc):
    """A :class:`~hil.stack.Proc` whose JSON lines carry ``_t``: when they were read."""

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            now = time.time()
            raw = raw.strip()
            if not raw:
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"text": raw}
            if isinstance(line, dict):
                line["_t"] = now
            with self._lock:
                self.lines.append(line)


@dataclass
class Rig:
    work: Path
    pumps: int
    orders_per_pump: int
    rate: float
    memory_mb: int = 128
    fill_seconds: float = 0.5
    seed: int = 1
    config_extra: str = ""
    unplugged: tuple[int, ...] = ()
    #: The guest's journal on its disk (measuring runs): a restart's cause is
    #: kept, and :meth:`stop` saves the boot's journal to the work directory.
    persistent_journal: bool = False
    broker: Mosquitto = field(init=False)
    receiver: Proc = field(init=False)
    dispensers: list[Proc] = field(default_factory=list)
    gateway: vm.Gateway = field(init=False)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        staged = image.stage()
        self.stage = staged
        self.broker = Mosquitto(self.work / "broker")
        self.broker.start()
        argv = [
            sys.executable, "-m", "hil.platform", "--broker", f"127.0.0.1:{self.broker.port}",
            "--keys", str(KEYS), "--client-id", f"rx-gw-{self.work.name}",
        ]  # fmt: skip
        self.receiver = StampedProc("receiver", argv, self.work)
        self.receiver.wait_lines(lambda line: line.get("receiver") == "connected", 1, 30)
        links = []
        for n in range(1, self.pumps + 1):
            link = self.work / f"pump{n}"
            argv = [
                sys.executable, "-m", "hil.dispenser", "--protocol", "sinopec",
                "--link", str(link), "--nozzles", str(NOZZLES),
                "--orders", str(self.orders_per_pump), "--rate", str(self.rate),
                "--seed", str(self.seed + n), "--fill-seconds", str(self.fill_seconds),
                "--port-number", str(n),
                # The guest's ports are 8N1 (image.write_config) and qemu's pty
                # chardev passes bytes, not a line setting: the pump at 8N1 too.
                "--parity", "N",
            ]  # fmt: skip
            self.dispensers.append(StampedProc(f"dispenser{n}", argv, self.work))
            stack.wait_until(link.exists, 20, f"the simulator's link {link}")
            links.append(link)
        image.reset_state(staged.root)
        image.journal_policy(staged.root, self.persistent_journal)
        image.write_config(staged.root, vm.port_lines(self.pumps), vm.BROKER_GUEST,
                           self.config_extra)  # fmt: skip
        disk = image.disk(staged.root, self.work / "disk.img")
        kernel, initrd = self.work / "vmlinuz", self.work / "initrd.img"
        shutil.copy(staged.kernel, kernel)
        shutil.copy(staged.initrd, initrd)
        self.gateway = vm.Gateway(
            self.work, kernel, initrd, disk, links, self.broker.port, self.memory_mb,
            self.unplugged,
        )  # fmt: skip

    # --- the ground truth and what arrived ------------------------------------

    def truth(self) -> list[dict[str, Any]]:
        return [x for p in self.dispensers for x in p.snapshot() if "order_no" in x]

    def arrived(self) -> list[dict[str, Any]]:
        return [x for x in self.receiver.snapshot() if x.get("type") == "order"]

    def wait_delivered(self, timeout: float) -> None:
        """Until the receiver holds every sale the simulators made so far."""

        def done() -> bool:
            have = {(x["record"]["nozzle"], x["record"]["order_no"]) for x in self.arrived()}
            return all((t["nozzle"], t["order_no"]) in have for t in self.truth())

        stack.wait_until(done, timeout, "every sale at the receiver")

    def latencies(self, since: float = 0.0) -> list[float]:
        """Hang-up (the simulator printed the sale) → first arrival, seconds; only
        sales hung up at or after ``since`` (a host time: after READY, so the
        boot's backlog is not counted as latency)."""
        first: dict[tuple[str, str], float] = {}
        for x in self.arrived():
            key = (x["record"]["nozzle"], x["record"]["order_no"])
            first.setdefault(key, x["_t"])
        return [first[(t["nozzle"], t["order_no"])] - t["_t"] for t in self.truth()
                if (t["nozzle"], t["order_no"]) in first and t["_t"] >= since]  # fmt: skip

    def stop(self) -> None:
        self.gateway.save_journal()
        self.gateway.kill()
        for proc in [*self.dispensers, self.receiver]:
            proc.stop()
        self.broker.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
