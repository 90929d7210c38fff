"""Every order carries its nozzle's GB/T 9081 unique ID once it is known (SPEC D13),
and a changed ID raises NOZZLE_UID_CHANGED (SPEC A6), store first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from buffer.store import OrderStore, StoreError
from collector.station.nozzles import NozzleTable
from collector.station.sink import PortSink
from collector.tools.storeview import StoreUnavailable, open_readonly
from collector.tools.storeview import orders as stored_orders
from hil import stack
from hil.stack import Proc
from protocols.events import Identity, Sale

CST = timezone(timedelta(hours=8))
DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"


def sale(order_no: int, nozzle: int = 1) -> Sale:
    volume = Decimal("10.00")
    return Sale(
        address=1, nozzle=nozzle, order_no=str(order_no), ended_at=datetime(2026, 11, 22, 8),
        grade="1092", price=Decimal("7.85"), volume=volume, amount=Decimal("78.50"),
        totalizer_volume_end=volume * order_no, totalizer_amount_end=None, key=f"k{order_no}",
    )  # fmt: skip


def make_sink(store: OrderStore) -> PortSink:
    return PortSink(
        number=1, store=store, nozzles=NozzleTable(), station="S", tz=CST, on_commit=lambda: None
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OrderStore]:
    opened = OrderStore(tmp_path / "s.sqlite")
    yield opened
    opened.close()


def uids(store: OrderStore, nozzle: str = "p01.a1.n1") -> list[str | None]:
    assert store.writer.flush(), "the sink's records are committed"
    return [o["nozzle_uid"] for o in store.orders(nozzle)]


def alarms(store: OrderStore, code: str) -> list[dict[str, Any]]:
    assert store.writer.flush(), "the sink's records are committed"
    return [a for a in store.records("alarm") if a["code"] == code]


def test_orders_carry_the_uid_once_read_and_null_before(store: OrderStore) -> None:
    sink = make_sink(store)
    sink.handle([sale(1)])  # before any identity read: null
    sink.handle([Identity(1, None, {"mainboard_id": "MB-1"})])  # pump-wide: no nozzle uid
    sink.handle([sale(2)])
    sink.handle([Identity(1, 1, {"nozzle_uid": "U-1"})])
    sink.handle([sale(3), sale(4, nozzle=2)])
    assert uids(store) == [None, None, "U-1"]
    assert uids(store, "p01.a1.n2") == [None]  # nozzle 2's identity was never read
    assert alarms(store, "NOZZLE_UID_CHANGED") == []  # a first read is no change


def test_a_changed_uid_raises_nozzle_uid_changed_and_orders_follow(store: OrderStore) -> None:
    sink = make_sink(store)
    sink.handle([Identity(1, 1, {"nozzle_uid": "U-1"}), sale(1)])
    sink.handle([Identity(1, 1, {"nozzle_uid": "U-2"}), sale(2)])
    sink.handle([Identity(1, 1, {"nozzle_uid": "U-2"}), sale(3)])  # the same again: nothing
    [changed] = alarms(store, "NOZZLE_UID_CHANGED")
    assert (changed["source"], changed["state"]) == ("p01.a1.n1", "raised")
    assert changed["detail"] == {"before": "U-1", "after": "U-2"}
    assert alarms(store, "COMPONENT_CHANGED") == []  # the uid has its own alarm
    assert uids(store) == ["U-1", "U-2", "U-2"]
    assert store.writer.flush()
    snapshots = [r["components"] for r in store.records("nozzle") if r["components"]]
    assert snapshots == [{"nozzle_uid": "U-1"}, {"nozzle_uid": "U-2"}]


def test_after_a_restart_the_first_order_keeps_the_stored_uid(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    make_sink(store).handle([Identity(1, 1, {"nozzle_uid": "U-1"}), sale(1)])
    assert store.writer.flush()  # what a clean stop does
    store.close()
    store = OrderStore(tmp_path / "s.sqlite")  # the collector restarted
    try:
        sink = make_sink(store)
        sink.handle([sale(2)])  # no identity read yet since the start
        assert uids(store) == ["U-1", "U-1"]
        sink.handle([Identity(1, 1, {"nozzle_uid": "U-9"})])  # swapped while it was off
        [changed] = alarms(store, "NOZZLE_UID_CHANGED")
        assert changed["detail"] == {"before": "U-1", "after": "U-9"}
    finally:
        store.close()


def test_a_change_seen_while_the_store_refuses_is_stored_before_the_next_order(
    store: OrderStore,
) -> None:
    """Store first: while the store refuses (a real SQLITE_FULL), the change and
    the sale after it wait in the writer's queue, in order; once there is room
    the alarm and the new identity are committed before the order that carries
    the new uid, and nothing is lost."""
    sink = make_sink(store)
    sink.handle([Identity(1, 1, {"nozzle_uid": "U-1"})])
    assert store.writer.flush()
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # a real SQLITE_FULL ...
    for n, pad in enumerate((500, 0)):  # ... once the free room is used up
        with pytest.raises(StoreError, match="full"):
            for i in range(10_000):
                store.append_order("p09.a9.n9", {"pad": "x" * pad}, source_key=f"{n}:{i}")
    sink.handle([Identity(1, 1, {"nozzle_uid": "U-2"}), sale(1)])
    assert not store.writer.flush(), "the store refuses: the records stay queued"
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert [a["detail"] for a in alarms(store, "NOZZLE_UID_CHANGED")] == [
        {"before": "U-1", "after": "U-2"}
    ]
    assert uids(store) == ["U-2"]
    ids = dict(
        store._db.execute(
            "SELECT kind, max(id) FROM records WHERE kind IN ('alarm', 'order') GROUP BY kind"
        ).fetchall()
    )
    assert ids["alarm"] < ids["order"], "the alarm is committed before the order"


# --- end to end: the simulator swaps a nozzle, the real daemon reports it ---------


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def read_store(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    """Orders (oldest first, with their store ``id``) and (id, alarm) pairs."""
    try:
        db = open_readonly(path)
    except StoreUnavailable:
        return [], []
    try:
        orders = list(reversed(stored_orders(db, limit=100)))
        rows = db.execute("SELECT id, body_text(body) FROM records WHERE kind='alarm'")
        return orders, [(rid, json.loads(text)) for rid, text in rows.fetchall()]
    finally:
        db.close()


def test_a_nozzle_swapped_in_the_simulator_reaches_the_orders_and_the_alarm(
    tmp_path: Path, procs: list[Proc]
) -> None:
    link, store = tmp_path / "pump", tmp_path / "store.sqlite"
    # The swap comes 5 s into about 10 s of sales: the collector, started after
    # the pump, must have read the nozzle's identity once before it (its
    # start takes 1-4 s on a busy test machine; at 2 s it sometimes had not).
    fault = ["--fault", "at=5:component=nozzle_uid:pump=1:nozzle=1"]
    sim = stack.dispenser(
        tmp_path, link, orders=16, nozzles=1, rate=1.5, seed=3, fill_seconds=0.2, extra=fault
    )
    procs.append(sim)
    overrides = [
        f"store.path={store}",
        f"ports.0.device={link}",
        "ports.0.poll_interval_ms=20",
        "ports.0.sinopec.info_every=5",
        f"uplink.port={stack.free_port()}",  # nobody listens: everything stays in the store
    ]
    procs.append(stack.collector(tmp_path, DEMO_CONFIG, overrides))
    sim.wait_lines(lambda line: "order_no" in line, 16, 60)

    def swapped() -> bool:
        orders, raised = read_store(store)
        return len(orders) == 16 and any(a["code"] == "NOZZLE_UID_CHANGED" for _, a in raised)

    stack.wait_until(swapped, 60, "16 orders and NOZZLE_UID_CHANGED in the store")
    notes = [json.loads(line) for line in (tmp_path / "dispenser.log").read_text().splitlines()]
    [new_uid] = [n["value"] for n in notes if n.get("component") == "nozzle_uid"]
    orders, raised = read_store(store)
    [(alarm_id, alarm)] = [(i, a) for i, a in raised if a["code"] == "NOZZLE_UID_CHANGED"]
    old_uid = alarm["detail"]["before"]
    assert alarm["source"] == "p01.a1.n1" and alarm["detail"]["after"] == new_uid != old_uid
    before = [o["nozzle_uid"] for o in orders if o["id"] < alarm_id]
    after = [o["nozzle_uid"] for o in orders if o["id"] > alarm_id]
    assert before and after, f"sales on both sides of the swap: {len(before)}, {len(after)}"
    assert set(before) <= {old_uid, None} and old_uid in before
    assert set(after) == {new_uid}
