"""The gauge simulator drains the dispenser simulator's sales (a shared scenario).

Sans-IO: :func:`hil.atg.scenario.apply_sale` and ``parse_tank_map``; the
file tail :class:`hil.atg.sim.SalesTail`; and the process end to end over
TCP: a sale line appended to ``--sales`` lowers the i201 volume of its tank.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from hil.atg.console import Console
from hil.atg.scenario import apply_sale, parse_tank_map
from hil.atg.sim import SalesTail
from hil.atg.tank import SimTank
from protocols.tls import Inventory, TlsDecoder, build_command

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 8, 0, 0)
TIMEOUT_S = 10


def sale(nozzle: str, volume: str) -> str:
    return json.dumps({"nozzle": nozzle, "order_no": "7", "volume": volume, "amount": "1.00"})


def console() -> Console:
    tanks = [
        SimTank(n, "1", 2500, 8000, volume_l=10000, water_l=0, temperature_c=15, ground_c=15)
        for n in (1, 2)
    ]
    return Console(tanks, lambda: T0)


def test_tank_map_from_pairs_and_lists() -> None:
    assert parse_tank_map(["p01.a1.n1=1", "p01.a1.n2=1, p01.a1.n3=2,"]) == {
        "p01.a1.n1": 1,
        "p01.a1.n2": 1,
        "p01.a1.n3": 2,
    }
    assert parse_tank_map([]) == {}
    for bad in (["p01.a1.n1"], ["p01.a1.n1=x"], ["=1"], ["p01.a1.n1=0"], ["n=1", "n=2"]):
        with pytest.raises(ValueError):
            parse_tank_map(bad)


def test_a_sale_drains_its_mapped_tank_only() -> None:
    c = console()
    truth = apply_sale(c, sale("p01.a1.n2", "30.12"), {"p01.a1.n2": 2})
    assert truth == {
        "event": "sale",
        "nozzle": "p01.a1.n2",
        "order_no": "7",
        "tank": 2,
        "litres": 30.12,
        "taken_l": 30.12,
    }
    assert c.tanks[2].volume_l == pytest.approx(10000 - 30.12)
    assert c.tanks[1].volume_l == 10000


def test_an_unmapped_nozzle_is_ignored() -> None:
    c = console()
    assert apply_sale(c, sale("p01.a1.n9", "30.00"), {"p01.a1.n1": 1}) is None
    assert [t.volume_l for t in c.tanks.values()] == [10000, 10000]


def test_a_sale_during_a_leak_test_invalidates_it() -> None:
    c = console()
    c.start_leak_test(1, 1.0)
    apply_sale(c, sale("p01.a1.n1", "5.00"), {"p01.a1.n1": 1})
    assert c.tests[1].disturbed


@pytest.mark.parametrize(
    "line", ["not json", "[]", '{"nozzle": "p01.a1.n1"}', sale("p01.a1.n1", "-1"), sale("x", "NaN")]
)
def test_lines_that_are_not_sales_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        apply_sale(console(), line, {"p01.a1.n1": 1, "x": 1})


def test_a_sale_on_a_tank_the_console_lacks_is_refused() -> None:
    with pytest.raises(ValueError):
        apply_sale(console(), sale("p01.a1.n1", "1.00"), {"p01.a1.n1": 3})


def test_the_tail_reads_whole_lines_from_the_start_as_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "sales.jsonl"
    tail = SalesTail(path)
    assert tail.lines() == []  # not there yet
    path.write_text('{"a": 1}\n{"b"')
    assert tail.lines() == ['{"a": 1}']
    assert tail.lines() == []  # the partial line waits for its end
    with path.open("a") as f:
        f.write(': 2}\n\n{"c": 3}\n')
    assert tail.lines() == ['{"b": 2}', '{"c": 3}']
    assert tail.lines() == []


def volumes(port: int) -> dict[int, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as s:
        s.sendall(build_command("i201"))
        decoder = TlsDecoder()
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for item in decoder.receive_data(s.recv(4096)):
                assert isinstance(item, Inventory)
                return {t.tank: float(t.volume or 0) for t in item.tanks}
    raise TimeoutError("no i201 answer")


def test_the_simulator_follows_the_sales_file(tmp_path: Path) -> None:
    sales = tmp_path / "sales.jsonl"
    sales.write_text(sale("p01.a1.n1", "100.00") + "\n")
    argv = [sys.executable, "-m", "hil.atg", "--tcp", "0", "--tanks", "2", "--speed", "0"]
    argv += ["--sales", str(sales), "--tank-of", "p01.a1.n1=1", "--tank-map", "p01.a1.n3=2"]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = proc.stderr.readline()
            assert line, "the simulator exited"
            port = json.loads(line).get("tcp")
        deadline = time.monotonic() + TIMEOUT_S
        start = volumes(port)  # the first sale may or may not be drained yet
        with sales.open("a") as f:  # a sale of tank 2, unmapped twice, a partial line
            f.write(sale("p01.a1.n3", "250.00") + "\n")
            f.write(sale("p01.a1.n9", "1.00") + "\n" + sale("p01.a1.n9", "1.00") + "\n")
            f.write(sale("p01.a1.n1", "50.00")[:20])
        while (after := volumes(port))[2] == start[2]:
            assert time.monotonic() < deadline, "tank 2 never drained"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    drained = [(d["nozzle"], d["tank"], d["litres"]) for d in lines if d["event"] == "sale"]
    assert drained == [("p01.a1.n1", 1, 100.0), ("p01.a1.n3", 2, 250.0)]  # not the partial one
    tanks = {t["tank"]: t["volume_l"] for t in lines if t["event"] == "tank"}
    assert after[1] == pytest.approx(tanks[1] - 100.0, abs=0.01)
    assert after[2] == pytest.approx(tanks[2] - 250.0, abs=0.01)
    assert err.count("mapped to no tank") == 1


def test_sales_need_a_tank_map_and_known_tanks(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "hil.atg", "--tcp", "0", "--tanks", "2"]
    for extra in (
        ["--sales", str(tmp_path / "s")],
        ["--tank-of", "p01.a1.n1=1"],
        ["--sales", str(tmp_path / "s"), "--tank-of", "p01.a1.n1=3"],
        ["--sales", str(tmp_path / "s"), "--tank-map", "p01.a1.n1"],
    ):
        done = subprocess.run(base + extra, cwd=REPO, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, (extra, done.stderr)
