"""The gauge task against the real gauge simulator (hil.atg), over TCP and a pty.

The task runs in this process on a real SQLite store; the simulator is its
own process on a real socket or pty pair, its clock compressed by
``--speed``. Waits are bounded (a deadline to give up), never asserted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from buffer.store import OrderStore
from collector.station.gauge import GaugeSettings, GaugeTask
from collector.station.gauge_records import GaugeState
from collector.station.wetstock import Wetstock, WetstockSettings
from hil import stack

TZ = UTC
START = "2026-03-01T08:00:00"
#: Simulated seconds per real second: a 5-minute delivery takes 5 s.
SPEED = 60
#: Longest wait for what the simulator is scripted to do (a bound, not a goal).
WAIT_S = 40.0

SCENARIO = {
    "tanks": [
        {"tank": 1, "product": "1", "diameter_mm": 2500, "length_mm": 8000, "volume_l": 12000},
        {"tank": 2, "product": "3", "diameter_mm": 2500, "length_mm": 8000, "volume_l": 15000},
    ],
    "events": [
        {"at_s": 0, "type": "delivery", "tank": 1, "litres": 3000, "minutes": 4},
        {"at_s": 0, "type": "alarm", "tank": 2, "code": 9, "active": True},
        {"at_s": 0, "type": "leak_test", "tank": 2, "hours": 0.05},
        {"at_s": 420, "type": "alarm", "tank": 2, "code": 9, "active": False},
    ],
}


def settings(**overrides: Any) -> GaugeSettings:
    base: dict[str, Any] = {
        "link": "tcp",
        "device": None,
        "baudrate": 9600,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "host": "127.0.0.1",
        "port": 10001,
        "security_code": None,
        "periods": {"i201": 0.2, "i202": 0.5, "i205": 0.3, "i101": 0.3, "i208": 0.5},
        "response_timeout_s": 1.0,
        "offline_after": 2,
    }
    return GaugeSettings(**{**base, **overrides})


def make_task(store: OrderStore, gs: GaugeSettings) -> GaugeTask:
    analytics = WetstockSettings(
        min_rise_l=Decimal(200),
        noise_l=Decimal(20),
        settle_s=60,
        period_s=3600,
        variance_l=Decimal(100),
        variance_pct=None,
        capacity_tolerance_pct=Decimal(2),
    )
    wetstock = Wetstock(analytics, {1: Decimal("39269.91"), 2: Decimal("39269.91")})
    state = GaugeState(wetstock, {1: "92", 2: "0"}, TZ)
    return GaugeTask(gs, state, store, {}, TZ, on_commit=lambda: None)


def records(store: OrderStore, kind: str) -> list[dict[str, Any]]:
    return list(store.records(kind))


async def run_until(task: GaugeTask, done: Callable[[], bool]) -> None:
    """The task and the store's writer (the daemon runs both) until ``done()``."""
    runner = asyncio.create_task(task.run())
    writer = asyncio.create_task(task.store.writer.run())
    try:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("the gauge task did not store what the simulator did")
            await asyncio.sleep(0.1)
    finally:
        for running in (runner, writer):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        task.close()


def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(SCENARIO))
    return path


def everything_stored(store: OrderStore) -> bool:
    alarms = {(a["source"], a["code"], a["state"]) for a in records(store, "alarm")}
    return (
        any(d["source"] == "gauge" for d in records(store, "delivery"))
        and any(r["result"] == "PASSED" for r in records(store, "leak"))
        and ("tank:2", "PROBE_OUT_ALARM", "cleared") in alarms
    )


def test_tank_delivery_leak_and_alarms_over_tcp(tmp_path: Path) -> None:
    port = stack.free_port()
    atg = stack.atg(
        tmp_path, tanks=2, tcp=port, speed=SPEED, start=START, scenario=scenario_file(tmp_path)
    )
    store = OrderStore(tmp_path / "store.sqlite")
    try:
        task = make_task(store, settings(port=port))
        asyncio.run(run_until(task, lambda: everything_stored(store)))
        truth = atg.wait_lines(lambda line: line.get("event") == "delivery", 1, 10)
    finally:
        atg.stop()
    tanks = records(store, "tank")
    first = tanks[0]
    assert set(first) == {
        "rid", "tank", "grade", "at", "height_mm", "water_mm", "volume_l", "tc_volume_l",
        "ullage_l", "water_volume_l", "temp_c", "status",
    }  # fmt: skip
    minute = datetime.fromisoformat(first["at"]).strftime("%Y%m%d%H%M")
    assert first["rid"] == f"{first['tank']}:{minute}"
    assert {t["grade"] for t in tanks} == {"92", "0"}
    assert len({t["rid"] for t in tanks}) == len(tanks), "one snapshot per tank per minute"
    [delivery] = records(store, "delivery")
    assert delivery["source"] == "gauge" and delivery["flags"] == []
    assert delivery["rid"] == "1:g:202603010800"
    # The console's float32 volumes resolve ~0.001 L at this level; truth is rounded to 0.001.
    assert abs(Decimal(delivery["volume_l"]) - Decimal(str(truth[0]["litres"]))) <= Decimal("0.01")
    [leak] = [r for r in records(store, "leak") if r["result"] == "PASSED"]
    assert leak["rid"] == "2:202603010800" and leak["tank"] == 2
    assert leak["duration_s"] == 180 and leak["rate_lph"] == "0.000"
    alarms = [(a["source"], a["code"], a["state"]) for a in records(store, "alarm")]
    assert alarms.count(("tank:2", "PROBE_OUT_ALARM", "raised")) == 1
    assert alarms.count(("tank:2", "PROBE_OUT_ALARM", "cleared")) == 1
    assert ("tank:2", "LEAK_TEST_ACTIVE", "raised") in alarms
    assert not any(a[1] == "ATG_OFFLINE" for a in alarms)
    store.close()


def test_over_a_pty(tmp_path: Path) -> None:
    link = tmp_path / "atg"
    atg = stack.atg(
        tmp_path, tanks=2, link=link, speed=SPEED, start=START, scenario=scenario_file(tmp_path)
    )
    store = OrderStore(tmp_path / "store.sqlite")
    try:
        task = make_task(store, settings(link="serial", device=str(link)))
        asyncio.run(run_until(task, lambda: everything_stored(store)))
    finally:
        atg.stop()
    assert [d["rid"] for d in records(store, "delivery")] == ["1:g:202603010800"]
    assert {t["tank"] for t in records(store, "tank")} == {1, 2}
    store.close()


def test_atg_offline_raised_while_absent_and_cleared_when_it_answers(tmp_path: Path) -> None:
    port = stack.free_port()
    store = OrderStore(tmp_path / "store.sqlite")
    task = make_task(store, settings(port=port))
    procs: list[stack.Proc] = []

    def offline_then_start() -> bool:
        states = [a["state"] for a in records(store, "alarm") if a["code"] == "ATG_OFFLINE"]
        if states == ["raised"] and not procs:
            procs.append(stack.atg(tmp_path, tanks=1, tcp=port, speed=0, start=START))
        return states == ["raised", "cleared"]

    try:
        asyncio.run(run_until(task, offline_then_start))
    finally:
        for proc in procs:
            proc.stop()
    raised, cleared = [a for a in records(store, "alarm") if a["code"] == "ATG_OFFLINE"]
    assert raised["source"] == "gauge" and raised["detail"] == {"missed": 2}
    assert raised["rid"].startswith("gauge:ATG_OFFLINE:raised:")
    assert cleared["rid"].startswith("gauge:ATG_OFFLINE:cleared:")
    assert records(store, "tank"), "it reads the console once it is there"
    store.close()


def test_a_detected_delivery_is_decided_after_a_restart(tmp_path: Path) -> None:
    """A3 across a restart: the edge detects two deliveries, the collector stops
    before any i202 read decides them, and the next run decides both — the
    one the console never recorded is an unreported edge delivery, the one it
    recorded is matched — from what the first run stored."""
    scenario = {
        "tanks": [
            {"tank": 1, "product": "1", "diameter_mm": 2500, "length_mm": 8000, "volume_l": 12000},
            {"tank": 2, "product": "3", "diameter_mm": 2500, "length_mm": 8000, "volume_l": 12000},
        ],
        "events": [
            {"at_s": 60, "type": "delivery", "tank": 1, "litres": 3000, "minutes": 4,
             "hidden": True},
            {"at_s": 60, "type": "delivery", "tank": 2, "litres": 3000, "minutes": 4},
        ],
    }  # fmt: skip
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    port = stack.free_port()
    atg = stack.atg(tmp_path, tanks=2, tcp=port, speed=SPEED, start=START, scenario=path)
    quiet_gauge = {"i201": 0.2, "i202": 3600.0, "i205": 0.3, "i101": 0.3, "i208": 0.5}
    try:
        store = OrderStore(tmp_path / "store.sqlite")
        first = make_task(store, settings(port=port, periods=quiet_gauge))
        asyncio.run(run_until(first, lambda: len(records(store, "detected")) == 2))
        assert [d for d in records(store, "delivery") if d["source"] == "edge"] == []
        store.close()  # the collector stops: what waits is on flash only

        store = OrderStore(tmp_path / "store.sqlite")
        second = make_task(store, settings(port=port))
        asyncio.run(run_until(second, lambda: records(store, "detected") == []))
    finally:
        atg.stop()
    [edge] = [d for d in records(store, "delivery") if d["source"] == "edge"]
    assert edge["tank"] == 1 and edge["flags"] == ["UNREPORTED_DELIVERY"]
    assert abs(Decimal(edge["volume_l"]) - 3000) < 60
    unreported = [a for a in records(store, "alarm") if a["code"] == "UNREPORTED_DELIVERY"]
    assert [a["source"] for a in unreported] == ["tank:1"]
    assert [d["tank"] for d in records(store, "delivery") if d["source"] == "gauge"] == [2]
    store.close()
