"""The dispenser simulator as a process on a real pty, read by SinopecPoller.

The simulator's stdout is the ground truth; what a master reads over the
line must match it field by field. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import serial

from collector.device.serialfd import LineSettings, configure
from hil.dispenser.faults import Fault, parse_fault
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)
from protocols.sinopec.driver import SinopecPoller

ROOT = Path(__file__).resolve().parent.parent
TZ = timezone(timedelta(hours=8))
RESPONSE_TIMEOUT_S = 0.5  # the simulator answers in well under a millisecond
TRUTH_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end", "ended_at",
)  # fmt: skip


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Sim:
    """``python -m hil.dispenser`` as a child process; stdout lines collected."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        self.link = tmp / name
        self.stderr_path = tmp / f"{name}.stderr"
        self.lines: list[dict[str, Any]] = []
        argv = [sys.executable, "-m", "hil.dispenser", "--protocol", "sinopec"]
        argv += ["--link", str(self.link), *args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: self.link.is_symlink() and self.link.exists(), 10, f"{self.link}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(json.loads(raw))

    def truth(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.lines) >= count, timeout, f"{count} orders on stdout")
        return self.lines[:count]

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(2)


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    started: list[Sim] = []

    def start(name: str, *args: str) -> Sim:
        sim = Sim(tmp_path, name, *args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.wait()


def open_line(link: Path) -> serial.Serial:
    """The simulator's line at its setting (Sinopec's first, 9600 8E1), set as the
    collector sets it: pyserial alone cannot mark a pty's parity, and the
    simulator garbles what a line at another setting would read."""
    line = serial.Serial(str(link), timeout=0.02)
    configure(line.fileno(), LineSettings(str(link), 9600, 8, "E", 1))
    return line


def transact(line: serial.Serial, driver: SinopecPoller) -> list[Event]:
    """One turn of a port task: request, then feed until answered or the deadline."""
    request = driver.next_request()
    assert request is not None
    line.write(request)
    deadline = time.monotonic() + RESPONSE_TIMEOUT_S
    events: list[Event] = []
    while driver.awaiting_response:
        if time.monotonic() > deadline:
            return events + driver.response_timeout()
        chunk = line.read(max(1, line.in_waiting))
        if chunk:
            events += driver.receive_data(chunk)
    return events


def as_truth(sale: Sale, port: int) -> dict[str, Any]:
    """What a Sale says, in the simulator's ground-truth shape."""
    return {
        "nozzle": f"p{port:02d}.a{sale.address}.n{sale.nozzle}",
        "order_no": sale.order_no,
        "grade": sale.grade,
        "price": str(sale.price),
        "volume": str(sale.volume),
        "amount": str(sale.amount),
        "totalizer_volume_start": str(sale.totalizer_volume_end - sale.volume),
        "totalizer_volume_end": str(sale.totalizer_volume_end),
        "ended_at": sale.ended_at.replace(tzinfo=TZ).isoformat(timespec="milliseconds"),
    }


def test_sales_read_over_the_pty_equal_the_ground_truth(
    tmp_path: Path, sims: Callable[..., Sim]
) -> None:
    (tmp_path / "pump").symlink_to("/nonexistent")  # a stale link is replaced
    sim = sims("pump", "--nozzles", "3", "--orders", "5", "--rate", "20", "--fill-seconds", "0.1")
    assert os.readlink(sim.link).startswith("/dev/")
    driver = SinopecPoller([1])
    sales: list[Sale] = []
    statuses: list[NozzleStatus] = []
    deadline = time.monotonic() + 15
    with open_line(sim.link) as line:
        while len(sales) < 5:
            assert time.monotonic() < deadline, f"only {len(sales)} sales; {sim.stderr()}"
            for event in transact(line, driver):
                if isinstance(event, Sale):
                    sales.append(event)
                    driver.sale_committed(event)  # committed at once: confirm next turn
                elif isinstance(event, NozzleStatus):
                    statuses.append(event)
        # Everything is confirmed: the pump now only reports idle nozzles (the
        # driver reports a 31 once, then only when it changes).
        for _ in range(5):
            events = transact(line, driver)
            assert not [e for e in events if isinstance(e, Sale | ProtocolError)], events
            statuses.extend(e for e in events if isinstance(e, NozzleStatus))
        assert events == []
        last = {s.nozzle: s.state for s in statuses}
        assert last == {1: NozzleState.IDLE, 2: NozzleState.IDLE, 3: NozzleState.IDLE}
    truth = sim.truth(5)
    assert [as_truth(s, port=1) for s in sales] == truth
    assert all(list(line) == list(TRUTH_FIELDS) for line in truth)
    assert len({s.key for s in sales}) == 5
    fuelling = [s for s in statuses if s.state == NozzleState.FUELLING]
    assert fuelling and all(s.volume and s.volume > 0 for s in fuelling)
    assert driver.counters["timeouts"] == 0 and driver.counters["bad_crc"] == 0
    assert sim.stop() == 0, sim.stderr()
    assert not sim.link.is_symlink(), "the link is removed on exit"
    assert '"done": 5' in sim.stderr()


def test_unconfirmed_record_is_offered_again_across_reopen(sims: Callable[..., Sim]) -> None:
    sim = sims(
        "pump", "--nozzles", "2", "--orders", "2", "--rate", "50", "--fill-seconds", "0.05",
        "--address", "3", "--port-number", "2", "--seed", "5",
    )  # fmt: skip
    truth = sim.truth(2)

    def next_sale(line: serial.Serial, driver: SinopecPoller) -> Sale:
        for _ in range(50):
            sales = [e for e in transact(line, driver) if isinstance(e, Sale)]
            if sales:
                return sales[0]
        raise AssertionError("no sale offered")

    with open_line(sim.link) as line:
        first = next_sale(line, SinopecPoller([3]))  # never committed
    # The collector restarts: new line, new driver; the pump offers it again.
    driver = SinopecPoller([3])
    with open_line(sim.link) as line:
        again = next_sale(line, driver)
        assert again == first
        driver.sale_committed(again)
        second = next_sale(line, driver)  # the confirm's answer, then the next record
        driver.sale_committed(second)
        for _ in range(3):
            assert not [e for e in transact(line, driver) if isinstance(e, Sale)]
        # Frames for another address are not answered.
        other = SinopecPoller([4])
        events = transact(line, other)
        assert [e.kind for e in events if isinstance(e, ProtocolError)] == ["timeout"]
    assert [as_truth(first, port=2), as_truth(second, port=2)] == truth
    assert truth[0]["nozzle"] == "p02.a3.n1"
    assert sim.stop() == 0


def test_same_seed_same_orders(sims: Callable[..., Sim]) -> None:
    args = ("--nozzles", "2", "--orders", "6", "--rate", "100", "--fill-seconds", "0.05")
    a = sims("a", *args, "--seed", "9")
    b = sims("b", *args, "--seed", "9")
    ta, tb = a.truth(6), b.truth(6)

    def strip(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in x.items() if k != "ended_at"} for x in lines]

    assert strip(ta) == strip(tb)
    last_end: dict[str, str] = {}
    for line in ta:
        price, volume = Decimal(line["price"]), Decimal(line["volume"])
        amount = (price * volume).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert Decimal(line["amount"]) == amount
        assert Decimal("2.00") <= volume <= Decimal("80.00")
        start, end = Decimal(line["totalizer_volume_start"]), line["totalizer_volume_end"]
        assert start + volume == Decimal(end)
        if line["nozzle"] in last_end:  # totalizer continuity per nozzle (A1)
            assert line["totalizer_volume_start"] == last_end[line["nozzle"]]
        last_end[line["nozzle"]] = end
        assert line["ended_at"].endswith("+08:00") and ".000" in line["ended_at"]
    assert [int(x["order_no"]) for x in ta] == list(
        range(int(ta[0]["order_no"]), 6 + int(ta[0]["order_no"]))
    )
    assert a.stop() == 0 and b.stop() == 0


@pytest.mark.parametrize(
    "bad",
    [
        ["--nozzles", "0"], ["--rate", "0"], ["--tz", "CET"], ["--address", "250"],
        ["--pumps", "2", "--address", "1"], ["--addresses", "1,1"], ["--addresses", "1,x"],
        ["--fault", "at=1"], ["--fault", "at=1:line-cut=1:pump=1"],
        ["--fault", "at=1:alarm=64:pump=3"], ["--fault", "at=1:component=colour"],
        ["--fault", "at=1:alarm=100"], ["--fault", "at=1:power-cycle=0"],
        ["--bit-error-rate", "1.5"],
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(tmp_path: Path, bad: list[str]) -> None:
    argv = [sys.executable, "-m", "hil.dispenser", "--protocol", "sinopec"]
    argv += ["--link", str(tmp_path / "x"), "--nozzles", "2", "--orders", "1", "--rate", "1"]
    result = subprocess.run(argv + bad, cwd=ROOT, capture_output=True, timeout=10)
    assert result.returncode == 2 and result.stdout == b""
    assert not (tmp_path / "x").exists()


def test_parse_fault() -> None:
    assert parse_fault("at=5:line-cut=3") == Fault(5.0, "line-cut", 3.0)
    assert parse_fault("at=8:power-cycle=2:pump=1") == Fault(8.0, "power-cycle", 2.0, 1)
    assert parse_fault("at=10:totalizer-jump=-500:pump=1:nozzle=2") == Fault(
        10.0, "totalizer-jump", -500, 1, 2
    )
    assert parse_fault("at=12:component=encoder_id:pump=1") == Fault(
        12.0, "component", "encoder_id", 1
    )
    assert parse_fault("at=15:alarm-clear=64") == Fault(15.0, "alarm-clear", 64)
    for bad in ("line-cut=3", "at=1:at=2:alarm=1", "at=1:alarm=1:line-cut=2", "at=x:alarm=1"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def faults_logged(sim: Sim) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in sim.stderr().splitlines()]
    return [line for line in lines if "fault" in line]


def drive(
    line: serial.Serial, driver: SinopecPoller, until: Callable[[list[Event]], bool]
) -> list[Event]:
    """Turns of a port task (sales committed at once) until ``until(events)``; ≤ 20 s."""
    events: list[Event] = []
    deadline = time.monotonic() + 20
    while not until(events):
        assert time.monotonic() < deadline, events[-20:]
        got = transact(line, driver)
        for event in got:
            if isinstance(event, Sale):
                driver.sale_committed(event)
        events += got
    return events


def sales_in(events: list[Event]) -> dict[str, Sale]:
    return {e.key: e for e in events if isinstance(e, Sale)}


def test_fault_flags_line_cut_and_component_change(sims: Callable[..., Sim]) -> None:
    sim = sims(
        "pump", "--pumps", "2", "--nozzles", "2", "--orders", "4", "--rate", "20",
        "--fill-seconds", "0.1", "--fault", "at=1.2:line-cut=0.6",
        "--fault", "at=0.3:component=encoder_id:pump=2",
    )  # fmt: skip
    started = time.monotonic()  # a little after the simulator's own start
    driver = SinopecPoller([1, 2], info_every=4)
    with open_line(sim.link) as line:
        events = drive(
            line,
            driver,
            lambda events: time.monotonic() - started > 2.2 and len(sales_in(events)) == 4,
        )
    truth = sim.truth(4)
    component, cut = faults_logged(sim)
    assert component == {
        "fault": "component", "at": 0.3, "pump": 2, "component": "encoder_id",
        "value": component["value"],
    }  # fmt: skip
    assert cut == {"fault": "line-cut", "at": 1.2, "seconds": 0.6}
    assert driver.counters["timeouts"] >= 1, "nothing passed while the line was cut"
    assert sorted(as_truth(s, port=1)["order_no"] for s in sales_in(events).values()) == sorted(
        t["order_no"] for t in truth
    )
    encoders = [
        e.components["encoder_id"]
        for e in events
        if isinstance(e, Identity) and e.address == 2 and e.nozzle is None
    ]
    assert encoders[-1] == component["value"]
    assert sim.stop() == 0
    assert len(sim.lines) == 4 and all("order_no" in x for x in sim.lines), "stdout: sales only"


def test_fault_flags_power_cycle_alarm_and_totalizer_jump(sims: Callable[..., Sim]) -> None:
    sim = sims(
        "pump", "--addresses", "3", "--nozzles", "1", "--orders", "1", "--rate", "100",
        "--fill-seconds", "0.8", "--seed", "4",
        "--fault", "at=0.5:power-cycle=1.5:pump=3",
        "--fault", "at=0.2:alarm=64", "--fault", "at=2.5:alarm-clear=64",
        "--fault", "at=2.7:totalizer-jump=-250:pump=3:nozzle=1",
    )  # fmt: skip
    started = time.monotonic()
    driver = SinopecPoller([3], errors_every=2, totals_every=2, offline_after=1)
    with open_line(sim.link) as line:
        events = drive(line, driver, lambda _: time.monotonic() - started > 3.5)
    alarm, power, clear, jump = faults_logged(sim)
    assert alarm == {"fault": "alarm", "at": 0.2, "pump": 3, "code": 64}
    # The fill in progress became a sale, cut short (fuel flowed ~0.4 of 0.8 s).
    assert power == {"fault": "power-cycle", "at": 0.5, "pump": 3, "sales_ended": 1, "seconds": 1.5}
    assert clear == {"fault": "alarm-clear", "at": 2.5, "pump": 3, "code": 64}
    (sale,) = sim.truth(1)
    end = Decimal(sale["totalizer_volume_end"])
    assert Decimal(sale["totalizer_volume_start"]) + Decimal(sale["volume"]) == end
    assert jump == {
        "fault": "totalizer-jump", "at": 2.7, "pump": 3, "nozzle": 1, "delta": -250,
        "totalizer": int(end * 100) - 250,
    }  # fmt: skip
    assert [as_truth(s, port=1) for s in sales_in(events).values()] == [sale]
    assert [e.online for e in events if isinstance(e, PumpLink)] == [True, False, True]
    alarms = [(e.code, e.active) for e in events if isinstance(e, DeviceAlarm)]
    assert alarms == [("METERING_OUT_OF_TOLERANCE", True), ("METERING_OUT_OF_TOLERANCE", False)]
    totals = [e for e in events if isinstance(e, Totals)]
    assert totals[-1].volume == end - Decimal("2.50")
    assert sim.stop() == 0
    (done,) = [x for x in map(json.loads, sim.stderr().splitlines()) if "done" in x]
    assert (done["done"], done["sales"]) == (1, 1)
