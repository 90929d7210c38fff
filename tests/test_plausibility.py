"""Plausibility flags at the edge (collector/station/edge.py ``check_plausible``, the
sink's unknown nozzles; docs/alarms.md): well-formed frames with absurd
contents are stored as read, flagged, alarmed in the order's own commit, and
never make a nozzle. Through the port's sink into a real store file."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from buffer.commits import NewOrder
from buffer.store import OrderStore
from collector.station.edge import EdgeSettings, SaleTimes, check_plausible
from collector.station.nozzles import NozzleTable
from collector.station.sink import PortSink
from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.sinopec import SinopecResponder
from protocols.events import DeviceAlarm, NozzleState, NozzleStatus, PumpLink, Sale, Totals
from protocols.sinopec.driver import SinopecPoller

CST = timezone(timedelta(hours=8))
GRADES = frozenset({"1092", "1095"})


def pump_now(offset: timedelta = timedelta(0)) -> datetime:
    """The station's wall clock as a pump reports it (naive, whole seconds)."""
    return (datetime.now(CST) + offset).replace(tzinfo=None, microsecond=0)


def sale(n: int, *, nozzle: int = 1, **kw: Any) -> Sale:
    price, volume = Decimal(kw.pop("price", "7.85")), Decimal(kw.pop("volume", "30.00"))
    fields: dict[str, Any] = {
        "address": 1,
        "nozzle": nozzle,
        "order_no": str(n),
        "ended_at": pump_now(timedelta(seconds=-2)),
        "grade": "1092",
        "price": price,
        "volume": volume,
        "amount": (price * volume).quantize(Decimal("0.01")),
        "totalizer_volume_end": None,
        "totalizer_amount_end": None,
        "key": f"{nozzle}:{n}",
    }
    fields.update(kw)
    return Sale(**fields)


def make_sink(tmp_path: Path, **edge: Any) -> tuple[PortSink, OrderStore]:
    store = OrderStore(tmp_path / "s.sqlite")
    sink = PortSink(
        number=1,
        store=store,
        nozzles=NozzleTable(),
        station="S",
        tz=CST,
        on_commit=lambda: None,
        edge=EdgeSettings(grades=GRADES, **edge),
        protocol="sinopec",
        nozzles_per_pump=2,
    )
    return sink, store


def stored(store: OrderStore, kind: str) -> list[dict[str, Any]]:
    assert store.writer.flush()
    return list(store.records(kind))


def fill(sink: PortSink, nozzle: int = 1) -> None:
    """The gateway sees the nozzle idle, a lift, fuel flowing and the hang-up."""
    for state in (NozzleState.IDLE, NozzleState.LIFTED, NozzleState.FUELLING, NozzleState.IDLE):
        sink.handle([NozzleStatus(1, nozzle, state)])


def test_implausible_frames_flagged_with_no_new_nozzle_created(tmp_path: Path) -> None:
    """The reviewer's frames: each order stored as read, with its flag and an
    alarm naming it; nozzles 0 and 255 of a 2-nozzle pump make no nozzle, no
    chain of their own and no NOZZLE_OFFLINE."""
    sink, store = make_sink(tmp_path)
    sink.handle([NozzleStatus(1, 1, NozzleState.IDLE), NozzleStatus(1, 2, NozzleState.IDLE)])
    expected: dict[str, list[str]] = {}

    def offer(s: Sale, flags: list[str]) -> None:
        sink.handle([s])
        expected[s.order_no] = flags

    offer(sale(1, volume="167772.15"), ["VOLUME_BEYOND_FLOW"])
    offer(sale(2, price="0", volume="10.00"), ["PRICE_ZERO"])
    offer(sale(3, volume="0"), ["ZERO_SALE"])
    offer(sale(4, ended_at=datetime(2099, 1, 1, 8)), ["PUMP_CLOCK_SKEW"])
    offer(sale(5, ended_at=datetime(1970, 1, 1, 8)), ["PUMP_CLOCK_SKEW"])
    offer(sale(6, ended_at=datetime(1000, 1, 1)), ["PUMP_CLOCK_SKEW"])
    fill(sink, nozzle=2)  # a pump whose clock is 8 h behind: its own fill, seen
    offer(sale(7, nozzle=2, ended_at=pump_now(timedelta(hours=-8))), ["PUMP_CLOCK_SKEW"])
    offer(sale(8, grade="9999"), ["GRADE_UNKNOWN"])
    offer(sale(9, price="150.00", volume="1.00"), ["PRICE_ABOVE_CEILING"])
    for number in (0, 255):
        sink.handle(
            [NozzleStatus(1, number, NozzleState.LIFTED), Totals(1, number, Decimal(1), None)]
        )
        offer(sale(10 + number, nozzle=number), ["NOZZLE_UNKNOWN"])
    sink.handle([PumpLink(1, online=False)])

    orders = {o["order_no"]: o for o in stored(store, "order")}
    assert {n: o["flags"] for n, o in orders.items()} == expected, "every order stored, flagged"
    assert orders["1"]["volume"] == "167772.15" and orders["2"]["price"] == "0"
    assert orders["6"]["ended_at"] == "1000-01-01T00:00:00.000+08:00", "the pump's time, kept"
    assert {o["nozzle"] for o in orders.values()} == {"p01.a1.n1", "p01.a1.n2", "p01.a1"}
    assert [o["nseq"] for o in orders.values() if o["nozzle"] == "p01.a1"] == [1, 2]
    assert sink.nozzles.keys_under("p01.a1.") == ["p01.a1.n1", "p01.a1.n2"], "no nozzle made"

    alarms = stored(store, "alarm")
    findings = {a["detail"].get("order"): a for a in alarms if "order" in a["detail"]}
    for o in orders.values():
        (code,) = o["flags"]
        alarm = findings[o["rid"]]
        assert (alarm["rid"], alarm["code"], alarm["source"]) == (
            f"{o['rid']}:{code}",
            code,
            o["nozzle"],
        )
    skew = findings[orders["7"]["rid"]]["detail"]
    assert skew["against"] == "hung_up_at" and skew["offset_ms"] < -7 * 3600 * 1000
    assert skew["received_at"] > skew["ended_at"], "the gateway's receive time beside it"
    unknown = findings[orders["265"]["rid"]]["detail"]
    assert unknown["nozzle"] == 255 and unknown["nozzles"] == 2
    reported = [a for a in alarms if a["code"] == "NOZZLE_UNKNOWN" and "order" not in a["detail"]]
    assert sorted((a["source"], a["detail"]["nozzle"]) for a in reported) == [
        ("p01.a1", 0),
        ("p01.a1", 255),
    ], "once per number, on the pump"
    offline = sorted(a["source"] for a in alarms if a["code"] == "NOZZLE_OFFLINE")
    assert offline == ["p01.a1.n1", "p01.a1.n2"]
    assert sink.stats.flags["PUMP_CLOCK_SKEW"] == 4


def test_a_dispensers_alarm_on_an_unknown_nozzle_is_kept_on_the_pump(tmp_path: Path) -> None:
    sink, store = make_sink(tmp_path)
    sink.handle([DeviceAlarm(1, 7, "METERING_OUT_OF_TOLERANCE", 64, True, "E64")])
    sink.handle([DeviceAlarm(1, 7, "METERING_OUT_OF_TOLERANCE", 64, False, "E64")])
    alarms = stored(store, "alarm")
    assert [(a["code"], a["state"], a["source"], a["detail"].get("nozzle")) for a in alarms] == [
        ("NOZZLE_UNKNOWN", "raised", "p01.a1", 7),
        ("METERING_OUT_OF_TOLERANCE", "raised", "p01.a1", 7),
        ("METERING_OUT_OF_TOLERANCE", "cleared", "p01.a1", 7),
    ]
    assert sink.nozzles.keys_under("p01.a1.") == []
    assert sink.stats.errors["nozzle_unknown"] == 2


def test_honest_sales_are_not_flagged(tmp_path: Path) -> None:
    """A live fill at a car nozzle's pace, a sale kept by the pump through a
    ten-minute outage (no hang-up seen), a sale offered twice: no flag, one alarm."""
    sink, store = make_sink(tmp_path, max_flow_l_per_min=Decimal(60))
    now = datetime.now(UTC)
    key = "p01.a1.n1"
    sink.nozzles.update(key, NozzleStatus(1, 1, NozzleState.IDLE), now - timedelta(seconds=60))
    sink.nozzles.update(key, NozzleStatus(1, 1, NozzleState.FUELLING), now - timedelta(seconds=50))
    sink.nozzles.update(key, NozzleStatus(1, 1, NozzleState.IDLE), now - timedelta(seconds=2))
    sink.handle([sale(1, volume="48.00")])  # 48 L in 48 s seen (+ slack) at 60 L/min
    sink.handle([sale(2, ended_at=pump_now(timedelta(minutes=-10)))])
    sink.handle([sale(3, volume="0.01")])
    twice = sale(4, price="7.85", volume="1.00")
    sink.handle([twice, twice])
    orders = stored(store, "order")
    assert [(o["order_no"], o["flags"]) for o in orders] == [(str(n), []) for n in (1, 2, 3, 4)]
    assert orders[0]["started_at"] is not None
    assert stored(store, "alarm") == []


def test_flow_beyond_the_seen_fill_and_the_alarm_in_the_orders_commit(tmp_path: Path) -> None:
    sink, store = make_sink(tmp_path, max_flow_l_per_min=Decimal(60))
    fill(sink)  # lift to hang-up in milliseconds: at most 60 L/min × 5 s slack
    offered = sale(1, volume="12.00", ended_at=pump_now())
    sink.handle([offered])
    (order,) = stored(store, "order")
    (alarm,) = stored(store, "alarm")
    assert order["flags"] == ["VOLUME_BEYOND_FLOW"]
    assert alarm["detail"]["basis"] == "seen" and Decimal(alarm["detail"]["limit"]) < 12
    # Offered again (the confirmation was lost): a duplicate adds no alarm.
    sink.handle([offered])
    assert len(stored(store, "alarm")) == 1 and len(stored(store, "order")) == 1


def test_a_fill_first_seen_mid_way_is_not_measured_from_there(tmp_path: Path) -> None:
    """A restart (or a cut link, a tap joined late) during a fill: the gateway's
    first report is fuel flowing, so the lift it notes is no start. The flow
    check allows the longest fill; the order's started_at is still noted."""
    sink, store = make_sink(tmp_path, max_flow_l_per_min=Decimal(60))
    for state in (NozzleState.FUELLING, NozzleState.IDLE):
        sink.handle([NozzleStatus(1, 1, state)])
    sink.handle([sale(1, volume="40.00", ended_at=pump_now())])
    fill(sink)
    sink.handle([PumpLink(1, online=False), PumpLink(1, online=True)])
    for state in (NozzleState.FUELLING, NozzleState.IDLE):  # back online mid-fill
        sink.handle([NozzleStatus(1, 1, state)])
    sink.handle([sale(2, volume="40.00", ended_at=pump_now())])
    orders = stored(store, "order")
    assert [o["flags"] for o in orders] == [[], []]
    assert all(o["started_at"] is not None for o in orders)


def test_a_stored_order_commits_its_alarms_with_it(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    body = {"code": "ZERO_SALE", "state": "raised", "source": "p01.a1.n1", "at": "x", "detail": {}}
    item = NewOrder(
        "p01.a1.n1", {"order_no": "1", "flags": ["ZERO_SALE"]}, "k1", (("ZERO_SALE", body),)
    )
    (out,) = store.commit([item])
    (alarm,) = store.records("alarm")
    assert out.record is not None
    assert alarm["rid"] == f"{out.record.rid}:ZERO_SALE"
    assert alarm["detail"] == {"order": out.record.rid}
    (again,) = store.commit([item])
    assert again.record is None and len(list(store.records("alarm"))) == 1
    store.close()


def test_clock_rules_and_the_zero_sale_protocols() -> None:
    now = datetime.now(CST)
    settings = EdgeSettings(pump_clock_skew_s=300, zero_sale_protocols=frozenset({"dart"}))
    order = {"price": "7.85", "volume": "0", "amount": "0", "grade": "1092"}

    def codes(ended: timedelta, hung_up: timedelta | None, protocol: str = "dart") -> list[str]:
        seen = None if hung_up is None else now + hung_up
        times = SaleTimes(now + ended, now, None, seen)
        return [f.code for f in check_plausible(order, times, settings, protocol)]

    assert codes(timedelta(minutes=4), None) == [], "ahead within the skew"
    assert codes(timedelta(minutes=6), None) == ["PUMP_CLOCK_SKEW"]
    assert codes(timedelta(days=-29), None) == [], "a sale the pump kept"
    assert codes(timedelta(days=-31), None) == ["PUMP_CLOCK_SKEW"]
    assert codes(timedelta(hours=8), timedelta(seconds=-1)) == ["PUMP_CLOCK_SKEW"]
    assert codes(timedelta(seconds=-2), timedelta(seconds=-1)) == []
    assert codes(timedelta(0), None, "sinopec") == ["ZERO_SALE"]


def test_config_keys_reach_the_checks_with_the_same_defaults() -> None:
    from pydantic import ValidationError

    from config.models import EdgeConfig

    class Cfg:
        edge = EdgeConfig()

    assert EdgeSettings.from_config(Cfg()) == EdgeSettings(), (
        "the model's defaults are the checks' defaults"
    )
    with pytest.raises(ValidationError, match=r"price_floors\.1092"):
        EdgeConfig(price_floors={"1092": 9.0}, price_ceilings={"1092": 8.0})
    with pytest.raises(ValidationError, match="unknown protocol"):
        EdgeConfig(zero_sale_protocols=["nope"])


def test_absurd_sinopec_records_on_the_wire_are_stored_flagged_and_make_no_nozzle(
    tmp_path: Path,
) -> None:
    """The reviewer's frames as a Sinopec pump sends them (32 records, encoded
    by the simulator's pump, read by the production poller, confirmed only
    once committed): every one stored and flagged, nozzles 0 and 255 of a
    2-nozzle pump on the pump's own chain, no nozzle of theirs anywhere."""
    pump = PumpModel.create(1, 2, random.Random(5))
    responder = SinopecResponder([pump])
    poller = SinopecPoller((1,))
    sink, store = make_sink(tmp_path)
    now = datetime.now(CST).replace(microsecond=0)
    totals: dict[int, int] = {}
    cases = [  # (nozzle, grade, price, volume, amount, ended_at) -> the flag
        ((1, "1092", 100, 16_777_215, 16_777_215, now), "VOLUME_BEYOND_FLOW"),
        ((1, "1092", 0, 1000, 0, now), "PRICE_ZERO"),
        ((2, "1092", 785, 0, 0, now), "ZERO_SALE"),
        ((1, "1092", 785, 1000, 7850, datetime(2099, 1, 1, 8, tzinfo=CST)), "PUMP_CLOCK_SKEW"),
        ((1, "1092", 785, 1000, 7850, datetime(1970, 1, 1, 8, tzinfo=CST)), "PUMP_CLOCK_SKEW"),
        ((1, "1092", 785, 1000, 7850, datetime(1000, 1, 1, tzinfo=CST)), "PUMP_CLOCK_SKEW"),
        ((2, "1092", 785, 1000, 7850, now + timedelta(hours=8)), "PUMP_CLOCK_SKEW"),
        ((2, "9999", 785, 1000, 7850, now), "GRADE_UNKNOWN"),
        ((0, "1092", 785, 1000, 7850, now), "NOZZLE_UNKNOWN"),
        ((255, "1092", 785, 1000, 7850, now), "NOZZLE_UNKNOWN"),
    ]
    for n, ((nozzle, grade, price, volume, amount, ended_at), _) in enumerate(cases):
        start = totals.get(nozzle, 100_000)
        totals[nozzle] = start + volume
        pump.pending.append(
            SimSale(1, nozzle, 500 + n, ended_at, grade, price, volume, amount, start,
                    start + volume, 0, 0)
        )  # fmt: skip
    for _ in range(400):
        request = poller.next_request()
        assert request is not None
        answer = responder.receive_data(request, 0.0)
        events = poller.receive_data(answer) if answer else poller.response_timeout()
        sink.handle(events, confirm=poller.sale_committed)
        assert store.writer.flush()
        if not pump.pending:
            break
    assert not pump.pending, "every record confirmed once committed"

    orders = stored(store, "order")
    assert [(o["order_no"], o["flags"]) for o in orders] == [
        (str(500 + n), [flag]) for n, (_, flag) in enumerate(cases)
    ]
    assert orders[0]["volume"] == "167772.15" and orders[5]["ended_at"].startswith("1000-")
    assert [o["nozzle"] for o in orders[-2:]] == ["p01.a1", "p01.a1"]
    keys = {o["nozzle"] for o in orders} | {a["source"] for a in stored(store, "alarm")}
    keys |= {r["nozzle"] for r in stored(store, "nozzle")}
    assert keys <= {"p01.a1", "p01.a1.n1", "p01.a1.n2"}, "no nozzle 0 or 255 anywhere"
    assert sink.nozzles.keys_under("p01.a1.") == ["p01.a1.n1", "p01.a1.n2"]
