"""Pulse and nozzle-switch inputs: the rules (collector/station/pulse_check.py), the
lines read through the GPIO test double (hil/gpio_double: the kernel here has
no gpio-sim, docs/decisions.md) by collector/station/gpio_inputs.py, and the port
sink flagging the orders in a real store; the double against the real binding."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gpiod
import pytest

import hil.gpio_double as double
from buffer.store import OrderStore
from collector.assembly import make_pulses
from collector.station.gpio_inputs import OFFLINE_CODE, PulseInput, PulseInputs
from collector.station.nozzles import NozzleTable
from collector.station.pulse_check import (
    LIFT_WITHOUT_SALE,
    PULSE_MISMATCH,
    PULSES_WITHOUT_SALE,
    SALE_TIME_MISMATCH,
    SALE_WITHOUT_LIFT,
    NozzleSignals,
    PulseSettings,
)
from collector.station.sink import PortSink
from config.models import Config
from hil.gpio_double.chip import ChipServer
from protocols.events import Sale

CST = timezone(timedelta(hours=8))
NOZZLE = "p01.a1.n1"
LPP = Decimal("0.01")  # litres per pulse: a 100 pulses / L encoder
PULSE_LINE, SWITCH_LINE = 0, 1
WAIT_S = 30.0


# -- the rules, pure -------------------------------------------------------------


def signals(*, switch: bool = True, tolerance: str = "0.6") -> NozzleSignals:
    settings = PulseSettings(
        NOZZLE, LPP, has_switch=switch, tolerance_pct=Decimal(tolerance), sale_wait_s=WAIT_S
    )
    s = NozzleSignals(settings)
    s.online(0.0, lifted=False if switch else None)
    return s


T0 = datetime(2026, 12, 7, 8, 0, tzinfo=CST)


def fill(s: NozzleSignals, pulses: int, at: float, *, minutes: float = 1.0) -> None:
    """A lift at ``at`` s, ``pulses`` pulses, a hang ``minutes`` later."""
    s.switch(True, at, T0 + timedelta(seconds=at))
    s.pulse(pulses, 0, at + 1)
    hang = at + minutes * 60
    s.switch(False, hang, T0 + timedelta(seconds=hang))


def order(volume: str, end_s: float, start_s: float | None = None, no: str = "1") -> dict:
    return {
        "order_no": no,
        "volume": volume,
        "ended_at": (T0 + timedelta(seconds=end_s)).isoformat(),
        "started_at": None if start_s is None else (T0 + timedelta(seconds=start_s)).isoformat(),
    }


def codes(findings: list[Any]) -> list[str]:
    return [f.code for f in findings]


def test_pulses_against_the_volume_at_the_tolerance_and_a_configured_one() -> None:
    # 1 000 pulses = 10.00 L; ±0.6 % of the reported volume is allowed.
    for volume, flagged in (("10.00", False), ("10.06", False), ("10.07", True), ("9.94", True)):
        s = signals()
        fill(s, 1000, 100)
        assert codes(s.findings(order(volume, 160, 100), 200)) == (
            [PULSE_MISMATCH] if flagged else []
        ), volume
    s = signals()
    fill(s, 1000, 100)
    (found,) = s.findings(order("10.10", 160, 100), 200)
    assert found.detail["pulse_volume"] == "10.00" and found.detail["difference_pct"] == "-0.99"
    loose = signals(tolerance="1.5")
    fill(loose, 1000, 100)
    assert loose.findings(order("10.10", 160, 100), 200) == [], "1 % is within a 1.5 % tolerance"


def test_lift_and_hang_against_the_sale_times() -> None:
    s = signals()
    fill(s, 500, 100)  # lifted at 100 s, hung at 160 s
    assert s.findings(order("5.00", 160 + 59, 100 - 59, no="1"), 300) == []
    s = signals()
    fill(s, 500, 100)
    (late,) = s.findings(order("5.00", 160 + 61, 100, no="1"), 300)
    assert late.code == SALE_TIME_MISMATCH and late.detail["tolerance_s"] == "60"


def test_a_sale_with_no_lift_and_a_lift_with_no_sale() -> None:
    s = signals()
    # Just online: a sale the pump held while the collector was down is not judged.
    assert s.findings(order("5.00", 10), WAIT_S - 1) == []
    assert s.unjudged == {"just_online": 1}
    (no_lift,) = s.findings(order("5.00", 100, no="2"), WAIT_S + 100)
    assert no_lift.code == SALE_WITHOUT_LIFT
    fill(s, 700, 200, minutes=0.5)  # hung at 230 s; no sale comes
    assert s.due(230 + WAIT_S - 1) == []
    ((code, detail),) = s.due(230 + WAIT_S)
    assert code == LIFT_WITHOUT_SALE and detail["pulse_volume"] == "7.00"
    assert s.due(10_000) == [], "said once"
    fill(s, 2, 400, minutes=0.1)  # lifted and hung, 0.02 L of jitter: no alarm
    assert s.due(10_000) == []


def test_without_a_switch_pulses_count_between_sales() -> None:
    s = signals(switch=False)
    s.pulse(300, 0, 1)
    assert s.findings(order("3.00", 10, no="1"), 20) == [], "the first sale sets the baseline"
    assert s.unjudged == {"first_sale": 1}
    s.pulse(1000, 0, 30)
    assert codes(s.findings(order("10.10", 40, no="2"), 50)) == [PULSE_MISMATCH]
    assert s.findings(order("10.10", 40, no="2"), 51) != [], "asked again: the same answer"
    s.pulse(400, 0, 60)
    ((code, detail),) = s.due(60 + WAIT_S)
    assert code == PULSES_WITHOUT_SALE and detail["pulses"] == 400


# -- the lines through the double, the sink, a real store ------------------------


async def until(done: Callable[[], bool], what: str) -> None:
    """Turn the event loop (the collector's fd watches) until ``done()``: the
    chip sends from its own thread. The tests' one wait, bounded."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0)


async def drained(chip: ChipServer) -> None:
    """Until the chip has sent every event it queued (the double's socket)."""
    await until(lambda: not chip.pending(), "the chip's events were not taken")


def sale(no: int, volume: Decimal, totalizer: Decimal) -> Sale:
    price = Decimal("7.85")
    return Sale(
        address=1,
        nozzle=1,
        order_no=str(no),
        ended_at=datetime.now(CST).replace(tzinfo=None),
        grade="1092",
        price=price,
        volume=volume,
        amount=(price * volume).quantize(Decimal("0.01"), ROUND_HALF_UP),
        totalizer_volume_end=totalizer,
        totalizer_amount_end=None,
        key=str(no),
    )


def wired(tmp_path: Path, chip: ChipServer, clock: Callable[[], float]) -> tuple[Any, ...]:
    store = OrderStore(tmp_path / "s.sqlite")
    sink = PortSink(
        number=1, store=store, nozzles=NozzleTable(), station="S", tz=CST, on_commit=lambda: None
    )
    settings = PulseSettings(NOZZLE, LPP, has_switch=True, sale_wait_s=WAIT_S)
    line = PulseInput(settings, str(chip.path), PULSE_LINE, "rising", SWITCH_LINE, 1, 20, "as-is")
    inputs = PulseInputs([line], store, CST, lambda: None, clock=clock, binding=double)
    sink.second_source = inputs
    return store, sink, inputs


def test_a_pump_reporting_one_percent_more_is_flagged_on_those_sales_only(
    tmp_path: Path,
) -> None:
    """Every third sale reports 1 % more than its pulses, every third 0.5 %
    more (within ±0.6 %), the rest exactly its pulses: the flag and its alarm
    on each 1 % sale, nothing on any other."""

    async def run() -> tuple[list[dict], list[dict], set[str]]:
        chip = ChipServer(tmp_path / "gpiochip0", lines=4)
        skew = 0.0
        store, sink, inputs = wired(tmp_path, chip, lambda: time.monotonic() + skew)
        inputs.tick()  # opens the chip
        assert chip.requested(PULSE_LINE) and chip.requested(SWITCH_LINE)
        skew = WAIT_S  # online long enough for every rule to judge
        totalizer, over = Decimal("1000.00"), set()
        for i in range(1, 31):
            pulses = 800 + 7 * i
            metered = pulses * LPP
            factor = (Decimal("1.01"), Decimal("1.005"), Decimal(1))[i % 3]
            volume = (metered * factor).quantize(Decimal("0.01"), ROUND_HALF_UP)
            if i % 3 == 0:
                over.add(str(i))
            chip.set_level(SWITCH_LINE, 1)
            chip.pulse(PULSE_LINE, pulses)
            chip.set_level(SWITCH_LINE, 0)
            await drained(chip)
            totalizer += volume
            sink.handle([sale(i, volume, totalizer)])
        assert store.writer.flush()
        inputs.tick()
        assert chip.dropped() == 0
        chip.close()
        return list(store.records("order")), list(store.records("alarm")), over

    orders, alarms, over = asyncio.run(run())
    assert len(orders) == 30
    flagged = {o["order_no"] for o in orders if o["flags"]}
    assert flagged == over
    assert all(o["flags"] == [PULSE_MISMATCH] for o in orders if o["order_no"] in over)
    mismatches = [a for a in alarms if a["code"] == PULSE_MISMATCH]
    rids = {o["rid"] for o in orders if o["order_no"] in over}
    assert sorted(a["detail"]["order"] for a in mismatches) == sorted(rids), "one alarm per flag"
    assert {a["code"] for a in alarms} == {PULSE_MISMATCH}, "no other alarm"


async def taken(inputs: PulseInputs) -> None:
    """Until the collector has read every event waiting on its requests."""
    requests = [c.request for c in inputs.chips.values() if c.request is not None]
    await until(
        lambda: not any(r.wait_edge_events(0) for r in requests), "the events were not read"
    )


def test_lost_edges_count_a_lift_with_no_sale_and_a_chip_that_goes_away(
    tmp_path: Path,
) -> None:
    async def run() -> tuple[list[dict], list[dict], dict[str, Any]]:
        chip = ChipServer(tmp_path / "gpiochip0", lines=4)
        skew = 0.0
        store, sink, inputs = wired(tmp_path, chip, lambda: time.monotonic() + skew)
        inputs.tick()
        # More edges at once than the request's buffer holds: the oldest are
        # dropped, numbered all the same, and the sale matches its pulses.
        chip.set_level(SWITCH_LINE, 1)
        chip.pulse(PULSE_LINE, 1234)
        chip.set_level(SWITCH_LINE, 0)
        await drained(chip)
        sink.handle([sale(1, Decimal("12.34"), Decimal("100.00"))])
        # A second fill whose sale never comes.
        chip.set_level(SWITCH_LINE, 1)
        chip.pulse(PULSE_LINE, 500)
        chip.set_level(SWITCH_LINE, 0)
        await drained(chip)
        await taken(inputs)
        skew = 3 * WAIT_S
        inputs.tick()
        state = inputs.states()[NOZZLE]
        chip.close()  # the chip is gone: its request reads the end
        lost = inputs.chips[str(chip.path)]
        await until(lambda: lost.request is None, "the lost chip was not noticed")
        chip = ChipServer(tmp_path / "gpiochip0", lines=4)
        skew = 10 * WAIT_S
        inputs.tick()  # opened again
        assert chip.requested(PULSE_LINE)
        assert store.writer.flush()
        chip.close()
        return list(store.records("order")), list(store.records("alarm")), state

    orders, alarms, state = asyncio.run(run())
    assert [o["flags"] for o in orders] == [[]], "1 234 pulses = 12.34 L, 210 of them only numbered"
    assert state["pulses"] == 1734 and state["lost"] == 1234 - 1024
    assert [(a["code"], a["state"]) for a in alarms] == [
        (LIFT_WITHOUT_SALE, "raised"),
        (OFFLINE_CODE, "raised"),
        (OFFLINE_CODE, "cleared"),
    ]
    assert alarms[0]["source"] == NOZZLE and alarms[0]["detail"]["pulse_volume"] == "5.00"
    assert "read failed" in alarms[1]["detail"]["reason"]


def test_a_missing_chip_is_offline_and_opened_once_it_is_there(tmp_path: Path) -> None:
    async def run() -> list[dict]:
        path = tmp_path / "gpiochip0"
        skew = 0.0
        store = OrderStore(tmp_path / "s.sqlite")
        settings = PulseSettings(NOZZLE, LPP, has_switch=False)
        line = PulseInput(settings, str(path), PULSE_LINE, "rising", None, 1, 20, "as-is")
        inputs = PulseInputs(
            [line], store, CST, lambda: None, clock=lambda: time.monotonic() + skew, binding=double
        )
        inputs.tick()
        chip = ChipServer(path, lines=2)
        inputs.tick()  # not yet: its retry is due in a second
        assert not chip.requested(PULSE_LINE)
        skew = 2.0
        inputs.tick()
        assert chip.requested(PULSE_LINE)
        assert store.writer.flush()
        chip.close()
        return list(store.records("alarm"))

    alarms = asyncio.run(run())
    assert [(a["code"], a["state"]) for a in alarms] == [
        (OFFLINE_CODE, "raised"),
        (OFFLINE_CODE, "cleared"),
    ]
    assert "No such file" in alarms[0]["detail"]["reason"]


# -- the double is the binding ---------------------------------------------------


def test_the_double_has_the_real_bindings_api(tmp_path: Path) -> None:
    for name in ("Bias", "Clock", "Direction", "Drive", "Edge", "Value"):
        real, ours = getattr(gpiod.line, name), getattr(double.line, name)
        assert [(m.name, m.value) for m in real] == [(m.name, m.value) for m in ours], name
    assert [(m.name, m.value) for m in gpiod.EdgeEvent.Type] == [
        (m.name, m.value) for m in double.EdgeEvent.Type
    ]
    real_fields = [(f.name, f.default) for f in dataclasses.fields(gpiod.LineSettings)]
    ours_fields = [(f.name, f.default) for f in dataclasses.fields(double.LineSettings)]
    assert [n for n, _ in real_fields] == [n for n, _ in ours_fields]
    assert [str(d) for _, d in real_fields] == [str(d) for _, d in ours_fields]
    assert list(inspect.signature(gpiod.request_lines).parameters) == list(
        inspect.signature(double.request_lines).parameters
    )
    assert [f.name for f in dataclasses.fields(gpiod.EdgeEvent)] == [
        f.name for f in dataclasses.fields(double.EdgeEvent)
    ]
    used = ("fd", "get_values", "read_edge_events", "wait_edge_events", "release")
    assert all(hasattr(gpiod.LineRequest, n) and hasattr(double.LineRequest, n) for n in used)
    not_a_chip = tmp_path / "file"
    not_a_chip.write_bytes(b"")
    for binding in (gpiod, double):
        with pytest.raises(FileNotFoundError):
            binding.request_lines(str(tmp_path / "none"), {0: binding.LineSettings()})
        with pytest.raises(OSError) as raised:
            binding.request_lines(str(not_a_chip), {0: binding.LineSettings()})
        assert raised.value.errno == 25, binding  # ENOTTY


# -- the config ------------------------------------------------------------------

PORT = {"number": 1, "device": "/dev/ttyS1", "protocol": "sinopec", "addresses": [1]}


def config(*pulses: dict) -> dict:
    base = {
        "device": {"id": "D1", "station": "S"},
        "uplink": {"host": "h", "keys_file": "/k", "kid": "k1"},
        "store": {"path": "/tmp/s.sqlite"},
    }
    return {**base, "ports": [PORT], "pulses": list(pulses)}


def test_config_takes_pulses_and_refuses_what_the_kernel_would() -> None:
    entry = {"nozzle": NOZZLE, "chip": "/dev/gpiochip0", "pulse_line": 3, "litres_per_pulse": 0.01}
    (p,) = Config.model_validate(config({**entry, "nozzle_line": 4})).pulses
    assert p.tolerance_pct == 0.6 and p.pulse_edge == "rising" and p.lifted_level == 1
    with pytest.raises(ValueError, match=r"no port polls pump p02\.a1"):
        Config.model_validate(config({**entry, "nozzle": "p02.a1.n1"}))
    with pytest.raises(ValueError, match="line 3 of /dev/gpiochip0 is already an input"):
        Config.model_validate(config(entry, {**entry, "nozzle": "p01.a1.n2"}))
    with pytest.raises(ValueError, match="litres_per_pulse"):
        Config.model_validate(config({k: v for k, v in entry.items() if k != "litres_per_pulse"}))
    with pytest.raises(ValueError, match="two lines"):
        Config.model_validate(config({**entry, "nozzle_line": 3}))


def test_a_sale_stamp_is_the_dispensers_wall_clock() -> None:
    """The switch times are aware; a sale's ``ended_at`` is the station's
    local time with its offset (records.py): both compare as instants."""
    hung = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    s = signals()
    s.switch(True, 0.0, hung - timedelta(minutes=1))
    s.pulse(100, 0, 1.0)
    s.switch(False, 60.0, hung)
    local_end = hung.astimezone(CST).isoformat()
    assert s.findings({"order_no": "1", "volume": "1.00", "ended_at": local_end}, 100) == []


def test_the_daemon_gives_the_inputs_to_the_ports_of_their_nozzles(tmp_path: Path) -> None:
    """``make_pulses``: each port with a ``[[pulses]]`` nozzle asks them about
    its sales, any other port does not; the settings are the config's."""
    second = {**PORT, "number": 2, "device": "/dev/ttyS2"}
    raw = config(
        {
            "nozzle": "p02.a1.n2",
            "chip": "/dev/gpiochip1",
            "pulse_line": 5,
            "nozzle_line": 6,
            "litres_per_pulse": 0.001,
            "tolerance_pct": 0.3,
            "lifted_level": 0,
        }
    )
    cfg = Config.model_validate({**raw, "ports": [PORT, second]})
    ports = [SimpleNamespace(number=n, sink=SimpleNamespace(second_source=None)) for n in (1, 2)]
    store = OrderStore(tmp_path / "s.sqlite")
    pulses = make_pulses(cfg, store, SimpleNamespace(wake=lambda: None), ports)  # type: ignore[arg-type]
    assert ports[0].sink.second_source is None and ports[1].sink.second_source is pulses
    (chip,) = pulses.chips.values()
    (line,) = chip.inputs
    assert (chip.path, line.pulse_line, line.nozzle_line, line.lifted_level) == (
        "/dev/gpiochip1",
        5,
        6,
        0,
    )
    assert line.settings.tolerance_pct == Decimal("0.3")
    assert line.settings.litres_per_pulse == Decimal("0.001")
    assert pulses.states()["p02.a1.n2"]["online"] is False


def test_without_the_binding_the_inputs_are_offline_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod: ImportError

    async def run() -> list[dict]:
        store = OrderStore(tmp_path / "s.sqlite")
        line = PulseInput(PulseSettings(NOZZLE, LPP, has_switch=False), "/dev/gpiochip0", 0,
                          "rising", None, 1, 20, "as-is")  # fmt: skip
        inputs = PulseInputs([line], store, CST, lambda: None)
        inputs.tick()
        assert inputs.states()[NOZZLE]["online"] is False
        assert inputs.findings(NOZZLE, order("1.00", 10)) == []
        assert store.writer.flush()
        return list(store.records("alarm"))

    ((code, state, reason),) = [
        (a["code"], a["state"], a["detail"]["reason"]) for a in asyncio.run(run())
    ]
    assert (code, state) == (OFFLINE_CODE, "raised") and "gpiod" in reason
