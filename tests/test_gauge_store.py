"""The store methods the gauge task uses: append_record, order_volume_since, records."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from buffer.store import OrderStore


def order(volume: str) -> dict[str, object]:
    return {"volume": volume, "amount": "1.00", "price": "7.85"}


def test_append_record_is_idempotent_and_published_in_order(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    first = store.append_record("tank", "1:202603010800", {"tank": 1, "volume_l": "100.00"})
    assert first is not None and first.body == {
        "rid": "1:202603010800",
        "tank": 1,
        "volume_l": "100.00",
    }
    again = store.append_record("tank", "1:202603010800", {"tank": 1, "volume_l": "999.00"})
    assert again is None, "the same report read twice is stored once"
    other = store.append_record("alarm", "1:202603010800", {"code": "X"})
    assert other is not None, "rids are unique per kind"
    assert [(r.kind, r.rid) for r in store.unsent(0, 10)] == [
        ("tank", "1:202603010800"),
        ("alarm", "1:202603010800"),
    ]
    assert list(store.records("tank")) == [first.body]
    store.close()
    reopened = OrderStore(tmp_path / "s.sqlite")
    assert reopened.unsent_counts() == {"tank": 1, "alarm": 1}
    reopened.close()


def test_order_volume_since_sums_the_mapped_nozzles_exactly(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    store.append_order("p01.a1.n1", order("10.01"), source_key="a")
    time.sleep(0.01)
    since = time.time_ns() // 1_000_000
    store.append_order("p01.a1.n1", order("20.02"), source_key="b")
    store.append_order("p01.a1.n2", order("0.10"), source_key="c")
    store.append_order("p01.a1.n3", order("5.00"), source_key="d")
    assert store.order_volume_since(["p01.a1.n1", "p01.a1.n2"], since) == Decimal("20.12")
    assert store.order_volume_since(["p01.a1.n1"], 0) == Decimal("30.03")
    assert store.order_volume_since([], 0) == 0
    store.close()
