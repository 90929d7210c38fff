"""The independent peer: ``veeder-root-tls-socket-library`` reads our gauge simulator.

The client (MIT, PyPI) was written against real TLS consoles from the
manual 576013-635; it sends ``SOH command CR LF`` over TCP, checks the
§6.1 checksum itself, and its ``tls_3xx.function_2xx`` parsers slice the
data at the manual's fixed offsets. If it reads ``python -m hil.atg`` as we
do, the simulator speaks the standard protocol — not just our reading of it.
Its float parser rounds to 5 places (``format._hex_to_float``), so values
are compared as: our decimal → its float32 → rounded to 5 places.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from veeder_root_tls_socket_library import tls_3xx
from veeder_root_tls_socket_library.async_socket import AsyncTlsSocket
from veeder_root_tls_socket_library.socket import TlsSocket

from protocols.tls import (
    Deliveries,
    Inventory,
    LeakTestHistory,
    LeakTestResults,
    SystemStatus,
    TankAlarms,
    TlsDecoder,
    build_command,
    frame_response,
)
from protocols.tls.wire import FLOAT32

REPO = Path(__file__).resolve().parent.parent
START = "2026-03-01T08:00:00"
#: How long the simulator may take to start listening.
START_TIMEOUT_S = 20.0
FIELDS = ("volume", "tc_volume", "ullage", "height", "water", "temperature", "water_volume")


def peer_float(value: Decimal | None) -> float:
    """What the peer's parser makes of the float32 our decimal denotes."""
    assert value is not None
    (exact,) = FLOAT32.unpack(FLOAT32.pack(float(value)))
    return round(exact, 5)


class Gauge:
    def __init__(self, tmp: Path, *args: str, scenario: dict[str, object] | None = None) -> None:
        argv = [sys.executable, "-m", "hil.atg", "--tcp", "0", "--start", START, *args]
        if scenario is not None:
            path = tmp / "scenario.json"
            path.write_text(json.dumps(scenario))
            argv += ["--scenario", str(path)]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"gauge exited with {self.proc.wait()}")
            if "tcp" in (fields := json.loads(line)):
                self.port = int(fields["tcp"])
                return
        raise AssertionError("gauge did not start listening")

    def ours(self, code: str, tank: int = 0, security_code: str | None = None) -> object:
        """Ask with our own command builder and decoder."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(build_command(code, tank, security_code=security_code))
            data = b""
            while not data.endswith(b"\x03"):
                chunk = sock.recv(4096)
                assert chunk, "connection closed"
                data += chunk
        [item] = TlsDecoder().receive_data(data)
        return item

    def close(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[Gauge]:
    """A frozen clock (--speed 0): both readers see one and the same state."""
    gauge = Gauge(
        tmp_path,
        *("--tanks", "4", "--seed", "11", "--speed", "0"),
        scenario={"events": [{"at_s": 0, "type": "alarm", "tank": 2, "code": 9}]},
    )
    yield gauge
    gauge.close()


async def peer_execute(port: int, *commands: str) -> list[str]:
    async with AsyncTlsSocket("127.0.0.1", port, timeout=5.0) as tls:
        return [await tls.execute(command) for command in commands]


def test_peer_reads_i201_as_we_do(frozen: Gauge) -> None:
    [raw] = asyncio.run(peer_execute(frozen.port, "i20100"))
    peer = tls_3xx.function_201(raw)
    ours = frozen.ours("i201")
    assert isinstance(ours, Inventory) and len(ours.tanks) == 4
    assert (peer["year"], peer["month"], peer["day"], peer["hour"], peer["minute"]) == (
        26,
        3,
        1,
        8,
        0,
    )
    assert len(peer["tanks"]) == 4
    for p, o in zip(peer["tanks"], ours.tanks, strict=True):
        assert (p["tank_number"], p["product_code"], p["tank_status_bits"]) == (
            f"{o.tank:02d}",
            o.product,
            o.status,
        )
        for name in FIELDS:
            assert p[name] == peer_float(getattr(o, name)), (o.tank, name)
    # the very bytes the peer received, decoded by us, are what we read ourselves
    [again] = TlsDecoder().receive_data(frame_response("i20100", raw))
    assert again == ours


def test_peer_sync_socket_single_tank(frozen: Gauge) -> None:
    with TlsSocket("127.0.0.1", frozen.port) as tls:
        raw = tls.execute("i20103", timeout=0.2)  # sends SOH i20103 CR LF
    peer = tls_3xx.function_201(raw)
    ours = frozen.ours("i201", 3)
    assert isinstance(ours, Inventory)
    [p] = peer["tanks"]
    [o] = ours.tanks
    assert p["tank_number"] == "03"
    assert [p[name] for name in FIELDS] == [peer_float(getattr(o, name)) for name in FIELDS]


def test_peer_reads_alarms_and_status(frozen: Gauge) -> None:
    raw205, raw101 = asyncio.run(peer_execute(frozen.port, "i20502", "i10100"))
    assert tls_3xx.function_205(raw205)["alarms"] == [
        {"tank_number": "02", "number_of_alarms": 1, "alarm_type": "09"}
    ]
    ours = frozen.ours("i205", 2)
    assert isinstance(ours, TankAlarms) and ours.tanks == {2: [9]}
    assert tls_3xx.function_101(raw101)["alarms"] == [
        {"alarm_category": 2, "alarm_type": 9, "tank_number": "02"}
    ]
    status = frozen.ours("i101")
    assert isinstance(status, SystemStatus)
    assert [(a.category, a.type, a.device) for a in status.alarms] == [(2, 9, 2)]


def test_peer_gets_unknown_command(frozen: Gauge) -> None:
    with pytest.raises(ValueError, match="Unsupported command for this server"):
        asyncio.run(peer_execute(frozen.port, "i99900"))


def test_peer_with_security_code(tmp_path: Path) -> None:
    gauge = Gauge(tmp_path, "--tanks", "2", "--speed", "0", "--security-code", "123456")
    try:
        [raw] = asyncio.run(peer_execute(gauge.port, "123456i20100"))
        ours = gauge.ours("i201", security_code="123456")
        assert isinstance(ours, Inventory)
        assert [t["volume"] for t in tls_3xx.function_201(raw)["tanks"]] == [
            peer_float(t.volume) for t in ours.tanks
        ]
        with pytest.raises(TimeoutError):  # §5: no answer without the code
            asyncio.run(asyncio.wait_for(peer_execute(gauge.port, "i20100"), timeout=1.0))
    finally:
        gauge.close()


def test_peer_reads_deliveries_and_leak_tests(tmp_path: Path) -> None:
    scenario = {
        "events": [
            {"at_s": 0, "type": "delivery", "tank": 1, "litres": 4000, "minutes": 10},
            {"at_s": 0, "type": "leak_test", "tank": 2, "hours": 1},
        ]
    }
    # 3600 simulated seconds per real second: the delivery ends after ~0.2 s
    gauge = Gauge(tmp_path, "--tanks", "2", "--speed", "3600", scenario=scenario)
    try:
        deadline = time.monotonic() + 10
        while True:
            results = gauge.ours("i208", 2)
            assert isinstance(results, LeakTestResults)
            if results.tanks[2] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        raw202, raw207, raw208 = asyncio.run(peer_execute(gauge.port, "i20201", "i20702", "i20802"))
        deliveries = gauge.ours("i202", 1)
        assert isinstance(deliveries, Deliveries)
        [d] = deliveries.tanks[0].deliveries
        [tank] = tls_3xx.function_202(raw202)["tanks"]
        [p] = tank["deliveries"]
        assert (p["start_hour"], p["start_minute"], p["end_hour"], p["end_minute"]) == (
            d.start.hour,
            d.start.minute,
            d.end.hour,
            d.end.minute,
        )
        for name in ("volume", "tc_volume", "water", "temp"):
            assert p[f"starting_{name}"] == peer_float(getattr(d, f"start_{name}"))
            assert p[f"ending_{name}"] == peer_float(getattr(d, f"end_{name}"))
        assert p["ending_height"] == peer_float(d.end_height)
        history = gauge.ours("i207", 2)
        assert isinstance(history, LeakTestHistory)
        peer207 = tls_3xx.function_207(raw207)["tanks"]["02"]
        assert [(e["report_type"], e["volume"]) for e in peer207] == [
            (f"{e.report_type:02d}", peer_float(e.volume)) for e in history.tanks[2]
        ]
        [r] = tls_3xx.function_208(raw208)["tanks"]["02"]
        [o] = results.tanks[2]
        assert (r["test_result"], r["test_rate"], r["duration"], r["volume"]) == (
            "01",
            peer_float(o.rate),
            peer_float(o.hours),
            peer_float(o.volume),
        )
    finally:
        gauge.close()
