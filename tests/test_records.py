"""collector.station.records: the order body's exact shape (D1, platform-interface.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from collector.station.records import iso, nozzle_key, order_fields
from protocols.events import Sale

CST = timezone(timedelta(hours=8))


def sale(**overrides: object) -> Sale:
    values: dict[str, object] = dict(
        address=1, nozzle=2, order_no="123", ended_at=datetime(2026, 11, 22, 8, 15, 2),
        grade="1092", price=Decimal("7.85"), volume=Decimal("30.12"),
        amount=Decimal("236.44"), totalizer_volume_end=Decimal("100030.12"),
        totalizer_amount_end=None, key="123:10003012",
    )  # fmt: skip
    values.update(overrides)
    return Sale(**values)  # type: ignore[arg-type]


def test_nozzle_key() -> None:
    assert nozzle_key(3, 1, 2) == "p03.a1.n2"
    assert nozzle_key(32, 12, 4) == "p32.a12.n4"


def test_order_fields_are_decimal_strings_and_offset_times() -> None:
    started = datetime(2026, 11, 22, 0, 14, 40, 120000, tzinfo=UTC)
    body = order_fields(sale(), station="S-1", tz=CST, started_at=started)
    assert body == {
        "nozzle_uid": None,
        "order_no": "123",
        "station": "S-1",
        "grade": "1092",
        "price": "7.85",
        "volume": "30.12",
        "amount": "236.44",
        "totalizer_volume_start": "100000.00",
        "totalizer_volume_end": "100030.12",
        "totalizer_amount_start": None,
        "totalizer_amount_end": None,
        "started_at": "2026-11-22T08:14:40.120+08:00",
        "ended_at": "2026-11-22T08:15:02.000+08:00",
        "flags": [],
    }


def test_amount_totalizer_start_is_derived_when_present() -> None:
    body = order_fields(
        sale(totalizer_amount_end=Decimal("5000.00")), station="S", tz=CST, started_at=None
    )
    assert body["totalizer_amount_start"] == "4763.56"
    assert body["started_at"] is None


def test_a_sale_without_totalizer_has_null_totalizers_and_no_continuity_finding() -> None:
    """A passive monitor whose controller read no totals (protocols/udc): the
    order carries null totalizers and the A1 check has nothing to compare."""
    from collector.station.edge import EdgeSettings, check_order

    body = order_fields(sale(totalizer_volume_end=None), station="S", tz=CST, started_at=None)
    assert (body["totalizer_volume_start"], body["totalizer_volume_end"]) == (None, None)
    previous = order_fields(sale(), station="S", tz=CST, started_at=None)
    assert check_order(body, previous, EdgeSettings()) == []


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        iso(datetime(2026, 1, 1))


def test_a_lift_after_the_sale_ended_is_not_its_start() -> None:
    """A sale the dispenser kept through a restart, read after the nozzle's
    next lift: that lift began the next fill (seen in the torture runs)."""
    from datetime import UTC, datetime

    from collector.station.nozzles import NozzleTable
    from protocols.events import NozzleState, NozzleStatus

    table = NozzleTable()
    lifted = datetime(2026, 3, 1, 4, 47, 18, tzinfo=UTC)
    table.update("p01.a1.n1", NozzleStatus(1, 1, NozzleState.LIFTED), now=lifted)
    old_sale_end = datetime(2026, 3, 1, 12, 47, 0, tzinfo=CST)  # 18 s before the lift
    assert table.take_started_at("p01.a1.n1", old_sale_end) is None
    this_sale_end = datetime(2026, 3, 1, 12, 47, 18, tzinfo=CST)  # truncated: within 1 s
    assert table.take_started_at("p01.a1.n1", this_sale_end) == lifted, "kept for its own sale"
    assert table.take_started_at("p01.a1.n1", this_sale_end) is None, "taken once"
