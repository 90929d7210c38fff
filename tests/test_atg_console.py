"""The simulated gauge console, read back through our own parser."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from hil.atg.commands import ABORT, CommandReader
from hil.atg.console import Console, snapshot
from hil.atg.scenario import Event, Scenario, apply, make_tanks
from hil.atg.tank import SimTank, segment_level, segment_volume
from protocols.tls import (
    Deliveries,
    Inventory,
    LeakTestHistory,
    LeakTestResults,
    RawResponse,
    SystemAlarm,
    SystemStatus,
    TankAlarmCode,
    TankAlarms,
    TlsDecoder,
    TlsError,
    build_command,
)
from protocols.tls.reports import AlarmHistory
from protocols.tls.wire import FLOAT32

START = datetime(2026, 3, 1, 8, 0)
FIELDS = ("volume", "tc_volume", "ullage", "height", "water", "temperature", "water_volume")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def forward(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def console(clock: Clock) -> Console:
    return Console(make_tanks(3, seed=7), clock)


def ask(console: Console, code: str, tank: int = 0, **kw: str) -> object:
    [item] = TlsDecoder().receive_data(console.handle(build_command(code, tank, **kw)))
    return item


def same_f32(parsed: Decimal | None, value: float) -> bool:
    """``parsed`` denotes exactly the float32 the console sent for ``value``."""
    return parsed is not None and FLOAT32.pack(float(parsed)) == FLOAT32.pack(value)


def test_i201_reads_back_exactly_the_simulated_state(console: Console) -> None:
    report = ask(console, "i201")
    assert isinstance(report, Inventory)
    assert (report.at, report.function, report.query) == (START, "i201", 0)
    assert [(t.tank, t.product, t.status) for t in report.tanks] == [
        (1, "1", 0),
        (2, "2", 0),
        (3, "3", 0),
    ]
    for parsed in report.tanks:
        truth = snapshot(console.tanks[parsed.tank])
        for name in FIELDS:
            assert same_f32(getattr(parsed, name), truth[name]), (parsed.tank, name)
    single = ask(console, "i201", 2)
    assert isinstance(single, Inventory) and single.tanks == [report.tanks[1]]


def test_tank_physics_is_consistent(console: Console) -> None:
    t = console.tanks[1]
    r = t.diameter_mm / 2
    assert t.capacity_l == pytest.approx(math.pi * r * r * t.length_mm / 1e6)
    assert segment_volume(t.diameter_mm, t.length_mm, r) == pytest.approx(t.capacity_l / 2)
    assert segment_level(t.diameter_mm, t.length_mm, t.capacity_l / 2) == pytest.approx(r)
    assert t.tc_volume_l() == pytest.approx(t.volume_l * (1 - 0.0012 * (t.temperature_c - 15)))
    # A4: the console's capacity is volume + water volume + ullage in every i201
    report = ask(console, "i201", 1)
    assert isinstance(report, Inventory)
    tank = report.tanks[0]
    assert tank.volume is not None and tank.water_volume is not None and tank.ullage is not None
    total = tank.volume + tank.water_volume + tank.ullage
    assert float(total) == pytest.approx(t.declared_capacity_l, abs=0.01)


def test_delivery_rises_then_is_reported(console: Console, clock: Clock) -> None:
    before = console.tanks[1].volume_l
    console.start_delivery(1, 5000, 20, temperature_c=19.0)
    clock.forward(minutes=5)
    report = ask(console, "i201", 1)
    assert isinstance(report, Inventory)
    assert report.tanks[0].delivery_in_progress
    assert console.tanks[1].volume_l == pytest.approx(before + 1250)
    deliveries = ask(console, "i202", 1)
    assert isinstance(deliveries, Deliveries) and deliveries.tanks[0].deliveries == []
    clock.forward(minutes=20)
    deliveries = ask(console, "i202", 1)
    assert isinstance(deliveries, Deliveries)
    [d] = deliveries.tanks[0].deliveries
    assert (d.start, d.end) == (START, START + timedelta(minutes=20))
    assert d.volume is not None and float(d.volume) == pytest.approx(5000, abs=0.01)
    [truth] = console.pop_truth()
    assert truth == {
        "event": "delivery",
        "tank": 1,
        "product": "1",
        "start": "2026-03-01T08:00:00",
        "end": "2026-03-01T08:20:00",
        "litres": 5000.0,
        "start_volume_l": truth["start_volume_l"],
        "end_volume_l": truth["end_volume_l"],
        "hidden": False,
    }
    assert same_f32(d.start_volume, truth["start_volume_l"])
    assert float(d.end_volume or 0) == pytest.approx(truth["end_volume_l"], abs=0.001)
    last = ask(console, "i20C", 1)
    assert isinstance(last, Deliveries) and last.tanks[0].deliveries == [d]
    assert last.function == "i20C"
    report = ask(console, "i201", 1)
    assert isinstance(report, Inventory) and not report.tanks[0].delivery_in_progress


def test_hidden_delivery_is_only_in_the_ground_truth(console: Console, clock: Clock) -> None:
    before = console.tanks[2].volume_l
    console.start_delivery(2, 3000, 10, hidden=True)
    clock.forward(minutes=5)
    report = ask(console, "i201", 2)
    assert isinstance(report, Inventory) and not report.tanks[0].delivery_in_progress
    clock.forward(minutes=10)
    for code in ("i202", "i20C"):
        deliveries = ask(console, code)
        assert isinstance(deliveries, Deliveries)
        assert all(td.deliveries == [] for td in deliveries.tanks)
    [truth] = console.pop_truth()
    assert (truth["tank"], truth["litres"], truth["hidden"]) == (2, 3000.0, True)
    assert console.tanks[2].volume_l == pytest.approx(before + 3000)


def test_unknown_and_forbidden_commands_get_9999(console: Console) -> None:
    for command in (
        b"\x01i99900",  # unknown function
        b"\x01s05101",  # clear delivery reports: a set command
        b"\x01S20100",
        b"\x01I20100",  # display format is not simulated
        b"\x01i20C17",  # TT above 16
        b"\x01i201AB",
        b"\x01i10101",  # i101 takes no device
        b"\x01i2",
    ):
        assert console.handle(command) == b"\x019999FF1B\x03", command
    [item] = TlsDecoder().receive_data(console.handle(b"\x01i99900"))
    assert isinstance(item, TlsError) and item.kind == "unknown_command"
    assert console.handle(b"\x01i20100\r\n") == console.handle(b"\x01i20100")


def test_security_code(clock: Clock) -> None:
    console = Console(make_tanks(2, seed=1), clock, security_code="ABC123")
    assert console.handle(b"\x01i20100") == b""  # §5: no answer without the code
    assert console.handle(b"\x01XYZ789i20100") == b""
    response = console.handle(build_command("i201", security_code="ABC123"))
    assert response.startswith(b"\x01i20100")  # the echo is the function code only
    [report] = TlsDecoder().receive_data(response)
    assert isinstance(report, Inventory) and len(report.tanks) == 2
    assert console.handle(b"\x01ABC123i99900") == b"\x019999FF1B\x03"


def test_command_reader_splits_the_stream() -> None:
    reader = CommandReader()
    assert reader.feed(b"\x01i20") == []
    assert reader.feed(b"100\r\n\x01i205") == [b"\x01i20100"]
    assert reader.feed(b"01noise\x01i2\r\n\x01i20") == [b"\x01i20501", b"\x01i2"]
    assert reader.feed(b"\x1b\x01i10100") == [ABORT, b"\x01i10100"]
    secure = CommandReader(security=True)
    assert secure.feed(b"\x01ABC123i20100\x01i20100\r\n") == [b"\x01ABC123i20100", b"\x01i20100"]


def test_inactive_device_is_question_marks(console: Console) -> None:
    report = ask(console, "i201", 5)
    assert isinstance(report, Inventory)
    [tank] = report.tanks
    assert (tank.tank, tank.inactive) == (5, True)
    alarms = ask(console, "i205", 5)
    assert isinstance(alarms, TankAlarms) and alarms.tanks == {5: []}
    deliveries = ask(console, "i202", 5)
    assert isinstance(deliveries, Deliveries) and deliveries.tanks[0].deliveries == []


def test_leak_tests_pass_and_fail(console: Console, clock: Clock) -> None:
    console.start_leak_test(2, hours=2)
    report = ask(console, "i201", 2)
    assert isinstance(report, Inventory) and report.tanks[0].leak_test_in_progress
    alarms = ask(console, "i205", 2)
    assert isinstance(alarms, TankAlarms)
    assert alarms.tanks == {2: [TankAlarmCode.LEAK_TEST_ACTIVE]}
    clock.forward(hours=2, minutes=1)
    results = ask(console, "i208", 2)
    volume = console.results[2][0][4]  # (start, result, rate, hours, volume, manifold)
    assert isinstance(results, LeakTestResults)
    [passed] = results.tanks[2]
    assert (passed.test_type, passed.manifolded, passed.start, passed.result) == (
        0,
        False,
        START,
        1,
    )
    assert (passed.rate, passed.hours) == (Decimal(0), Decimal(2))
    assert same_f32(passed.volume, float(volume))
    history = ask(console, "i207", 2)
    assert isinstance(history, LeakTestHistory)
    assert [(e.report_type, e.history_number, e.test_type) for e in history.tanks[2]] == [
        (0, 1, 0),
        (1, 1, 0),
        (2, 3, 0),  # fullest periodic of month 3
    ]
    console.tanks[2].leak_lph = 1.5  # above the 0.2 gal/h = 0.757 L/h limit
    console.start_leak_test(2, hours=2)
    clock.forward(hours=3)
    results = ask(console, "i208", 2)
    assert isinstance(results, LeakTestResults)
    [failed] = results.tanks[2]
    assert failed.result == 2 and same_f32(failed.rate, -1.5)
    status = ask(console, "i101")
    assert isinstance(status, SystemStatus)
    assert SystemAlarm(2, TankAlarmCode.PERIODIC_LEAK_TEST_FAIL_ALARM, 2) in status.alarms


def test_a_sale_during_a_leak_test_invalidates_it(console: Console, clock: Clock) -> None:
    console.start_leak_test(1, hours=1, test_type=2)
    clock.forward(minutes=10)
    assert console.drain(1, 40) == 40
    clock.forward(hours=1)
    results = ask(console, "i208", 1)
    assert isinstance(results, LeakTestResults) and results.tanks[1][0].result == 0


def test_threshold_alarms_and_history(clock: Clock) -> None:
    tanks = make_tanks(2, seed=3, overrides=[{"tank": 2, "declared_capacity_l": 20000}])
    console = Console(tanks, clock)
    t1, t2 = console.tanks[1], console.tanks[2]
    assert t2.declared_capacity_l == 20000 and t2.capacity_l > 20000
    clock.forward(minutes=1)
    console.drain(1, t1.volume_l - 0.04 * t1.declared_capacity_l)
    room = t2.capacity_l * 0.98 - t2.volume_l - t2.water_l
    console.start_delivery(2, room, 10)
    t1.water_l += segment_volume(t1.diameter_mm, t1.length_mm, 60) - t1.water_l
    clock.forward(minutes=30)
    alarms = ask(console, "i205")
    assert isinstance(alarms, TankAlarms)
    assert alarms.tanks == {
        1: [TankAlarmCode.HIGH_WATER_ALARM, TankAlarmCode.LOW_PRODUCT_ALARM],
        2: [
            TankAlarmCode.OVERFILL_ALARM,
            TankAlarmCode.HIGH_PRODUCT_ALARM,
            TankAlarmCode.MAXIMUM_PRODUCT_ALARM,
        ],
    }
    inventory = ask(console, "i201", 2)
    assert isinstance(inventory, Inventory)
    assert inventory.tanks[0].ullage is not None and inventory.tanks[0].ullage < 0  # A4 telltale
    history = ask(console, "i206", 1)
    assert isinstance(history, AlarmHistory)
    assert [(e.at, e.code) for e in history.tanks[1]] == [
        (START + timedelta(minutes=31), TankAlarmCode.HIGH_WATER_ALARM),
        (START + timedelta(minutes=1), TankAlarmCode.LOW_PRODUCT_ALARM),
    ]
    capacity = console.handle(b"\x01i60402")
    [raw] = TlsDecoder().receive_data(capacity)
    assert isinstance(raw, RawResponse) and raw.data == "2603010831" + "02469C4000"


def test_scenario_events(console: Console, clock: Clock) -> None:
    scenario = Scenario(
        None,
        [],
        [
            Event(0, "sale", {"tank": 1, "litres": 25}),
            Event(0, "alarm", {"tank": 3, "code": 9}),
            Event(0, "leak", {"tank": 2, "lph": 2.0}),
            Event(60, "delivery", {"tank": 3, "litres": 1000, "minutes": 5, "hidden": True}),
            Event(120, "leak_test", {"tank": 1, "hours": 1}),
        ],
    )
    volume = console.tanks[1].volume_l
    for event in scenario.due(0):
        apply(console, event)
    assert console.tanks[1].volume_l == pytest.approx(volume - 25)
    alarms = ask(console, "i205", 3)
    assert isinstance(alarms, TankAlarms) and alarms.tanks == {3: [TankAlarmCode.PROBE_OUT_ALARM]}
    clock.forward(seconds=120)
    due = scenario.due(120)
    assert [e.type for e in due] == ["delivery", "leak_test"] and scenario.events == []
    for event in due:
        apply(console, event)
    assert 1 in console.tests and console.active[0].hidden


def test_bad_tanks_are_refused(clock: Clock) -> None:
    with pytest.raises(ValueError):
        SimTank(1, "9", 2500, 8000, 1000, 0, 15, 15)  # unknown product code
    with pytest.raises(ValueError):
        SimTank(1, "1", 2500, 8000, 1e9, 0, 15, 15)  # more than fits
    with pytest.raises(ValueError):
        Console([], clock)
    console = Console(make_tanks(1, seed=1), clock)
    with pytest.raises(ValueError):
        console.start_delivery(1, 1e9, 10)
