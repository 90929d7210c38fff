"""Edge checks (collector/station/edge.py, SPEC A1 A2 A7 A10) and the nozzle model in
the port sink (D2, D14): pure functions and a real store file."""

from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from buffer.store import OrderStore
from collector.station.edge import EdgeSettings, check_counter, check_order
from collector.station.nozzles import NozzleTable
from collector.station.sink import STATE_RECORD_BURST, PortSink
from protocols.events import Identity, NozzleState, NozzleStatus, PumpLink

CST = timezone(timedelta(hours=8))


def order(start: str, end: str, *, price: str = "7.85", volume: str = "10.00", **kw: Any) -> dict:
    amount = kw.pop("amount", str((Decimal(price) * Decimal(volume)).quantize(Decimal("0.01"))))
    return {
        "grade": "1092",
        "price": price,
        "volume": volume,
        "amount": amount,
        "totalizer_volume_start": start,
        "totalizer_volume_end": end,
        "rid": "p01.a1.n1:1",
        **kw,
    }


def codes(findings: list[Any]) -> list[str]:
    return [f.code for f in findings]


def test_continuous_honest_order_has_no_finding() -> None:
    first = order("100.00", "110.00")
    second = order("110.00", "120.00")
    assert check_order(second, first, EdgeSettings()) == []
    assert check_order(first, None, EdgeSettings()) == [], "the first order has no reference"


def test_gap_and_step_back() -> None:
    last = order("100.00", "110.00")
    (gap,) = check_order(order("115.00", "125.00"), last, EdgeSettings())
    assert gap.code == "TOTALIZER_GAP" and gap.detail["difference"] == "5.00"
    (back,) = check_order(order("108.00", "118.00"), last, EdgeSettings())
    assert back.code == "TOTALIZER_BACK" and back.detail["difference"] == "-2.00"


@given(
    st.integers(0, 10**9),
    st.integers(1, 10**6),
    st.integers(-(10**6), 10**6),
)
def test_continuity_finding_iff_start_differs(end: int, volume: int, jump: int) -> None:
    def hundredths(n: int) -> str:
        return format(Decimal(n).scaleb(-2), "f")

    last = order(hundredths(end - 100), hundredths(end), volume="1.00")
    start = end + jump
    this = order(hundredths(start), hundredths(start + volume), volume=hundredths(volume))
    got = codes(check_order(this, last, EdgeSettings()))
    assert got == ([] if jump == 0 else ["TOTALIZER_GAP" if jump > 0 else "TOTALIZER_BACK"])


def test_amount_within_rounding_only() -> None:
    settings = EdgeSettings()
    # 7.85 × 10.01 = 78.5785: the pump may show 78.57 or 78.58.
    for amount in ("78.57", "78.58"):
        assert check_order(order("0", "10.01", volume="10.01", amount=amount), None, settings) == []
    (mismatch,) = check_order(order("0", "10.01", volume="10.01", amount="78.61"), None, settings)
    assert mismatch.code == "AMOUNT_MISMATCH" and mismatch.detail["expected"] == "78.58"


def test_price_floor_per_grade() -> None:
    settings = EdgeSettings(price_floors={"1092": Decimal("6.50")})
    assert check_order(order("0", "10.00", price="6.50"), None, settings) == []
    assert codes(check_order(order("0", "10.00", price="4.50"), None, settings)) == [
        "PRICE_BELOW_FLOOR"
    ]
    other = order("0", "10.00", price="1.00", grade="2000")
    assert check_order(other, None, settings) == [], "no floor for that grade"


def test_counter() -> None:
    assert check_counter(8, 7) == []
    assert check_counter(8, None) == [] and check_counter(None, 7) == []
    (gap,) = check_counter(10, 7)
    assert gap.code == "ORDER_GAP" and gap.detail["missing"] == 2
    assert codes(check_counter(3, 7)) == ["ORDER_COUNTER_BACK"]
    assert codes(check_counter(7, 7)) == ["ORDER_COUNTER_BACK"]


def committed(store: OrderStore, kind: str) -> list[dict[str, Any]]:
    """What the store holds of ``kind`` once its writer committed what the sink handed it."""
    assert store.writer.flush()
    return list(store.records(kind))


def make_sink(tmp_path: Path) -> tuple[PortSink, OrderStore]:
    store = OrderStore(tmp_path / "s.sqlite")
    sink = PortSink(
        number=1, store=store, nozzles=NozzleTable(), station="S", tz=CST, on_commit=lambda: None
    )
    return sink, store


def test_state_records_are_bounded_for_a_flapping_nozzle(tmp_path: Path) -> None:
    sink, store = make_sink(tmp_path)
    for i in range(500):
        state = NozzleState.LIFTED if i % 2 == 0 else NozzleState.IDLE
        sink.handle([NozzleStatus(1, 1, state)])
    records = committed(store, "nozzle")
    assert len(records) == STATE_RECORD_BURST
    assert sink.stats.errors["state_suppressed"] == 500 - STATE_RECORD_BURST
    assert len({r["rid"] for r in records}) == len(records), "rids unique"
    assert records[0]["state"] == "lifted" and records[0]["nozzle"] == "p01.a1.n1"


def test_nozzle_offline_raised_and_cleared_once_per_episode(tmp_path: Path) -> None:
    sink, store = make_sink(tmp_path)
    sink.handle([NozzleStatus(1, 1, NozzleState.IDLE), NozzleStatus(1, 2, NozzleState.IDLE)])
    for _ in range(2):  # the second episode gets its own raise and clear
        sink.handle([PumpLink(1, online=False), PumpLink(1, online=False)])
        sink.handle([PumpLink(1, online=True), PumpLink(1, online=True)])
    alarms = [(a["code"], a["state"], a["source"]) for a in committed(store, "alarm")]
    one_episode = [
        ("NOZZLE_OFFLINE", "raised", "p01.a1.n1"),
        ("NOZZLE_OFFLINE", "raised", "p01.a1.n2"),
        ("NOZZLE_OFFLINE", "cleared", "p01.a1.n1"),
        ("NOZZLE_OFFLINE", "cleared", "p01.a1.n2"),
    ]
    assert alarms == one_episode * 2
    states = [r["state"] for r in committed(store, "nozzle") if r["nozzle"] == "p01.a1.n1"]
    assert states == ["offline", "idle", "offline", "idle"]


def test_pump_offline_before_any_nozzle_is_known(tmp_path: Path) -> None:
    sink, store = make_sink(tmp_path)
    sink.handle([PumpLink(2, online=False)])
    sink.handle([NozzleStatus(2, 1, NozzleState.IDLE), PumpLink(2, online=True)])
    alarms = [(a["state"], a["source"]) for a in committed(store, "alarm")]
    assert alarms == [("raised", "p01.a2"), ("cleared", "p01.a2")]


def test_port_offline_once_per_episode(tmp_path: Path) -> None:
    sink, store = make_sink(tmp_path)
    sink.port_link(True)  # already online: nothing
    sink.port_link(False, "EIO")
    sink.port_link(False, "still gone")
    sink.port_link(True)
    alarms = [(a["code"], a["state"], a["detail"]) for a in committed(store, "alarm")]
    assert alarms == [
        ("PORT_OFFLINE", "raised", {"reason": "EIO"}),
        ("PORT_OFFLINE", "cleared", {}),
    ]


def test_rs485_ioctl_layout() -> None:
    """struct serial_rs485 (linux/serial.h): flags, two delays, five words of padding."""
    import struct

    from collector.device.serialfd import RS485

    raw = RS485(rts_on_send=True, delay_before_ms=2, delay_after_ms=3).ioctl_bytes()
    assert len(raw) == 32 and struct.unpack("=8I", raw) == (0b011, 2, 3, 0, 0, 0, 0, 0)
    raw = RS485(rts_on_send=False).ioctl_bytes()
    assert struct.unpack("=8I", raw)[0] == 0b101


def test_a_part_swapped_while_the_collector_was_off_is_found(tmp_path: Path) -> None:
    """A6 across a restart: the first identity read is compared with the stored one."""
    sink, store = make_sink(tmp_path)
    sink.handle([Identity(1, 1, {"nozzle_uid": "N-1", "encoder_id": "E-1"})])
    store.writer.flush()
    store.close()
    for encoder, expect_alarm in (("E-1", False), ("E-2", True)):
        sink, store = make_sink(tmp_path)  # the collector restarted
        sink.handle([Identity(1, 1, {"nozzle_uid": "N-1", "encoder_id": encoder})])
        changed = [a for a in committed(store, "alarm") if a["code"] == "COMPONENT_CHANGED"]
        assert bool(changed) is expect_alarm, (encoder, changed)
        store.writer.flush()
        store.writer.flush()
    store.close()
    assert changed[0]["detail"] == {
        "changed": ["encoder_id"],
        "before": {"encoder_id": "E-1"},
        "after": {"encoder_id": "E-2"},
    }
    assert changed[0]["source"] == "p01.a1.n1"
