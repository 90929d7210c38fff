"""buffer capacity, group commit, resend and migration (SPEC D4, D5, D6, A9)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from buffer.capacity import CapacityPolicy
from buffer.commits import NewRecord
from buffer.migrate import downgrade_to_v2
from buffer.store import SIZE_CHECK_EVERY, OrderStore, StoreError
from records.chain import verify_chain


def fields(order_no: str) -> dict[str, object]:
    return {"order_no": order_no, "volume": "10.00"}


def test_group_commit_is_one_transaction_and_dedupes(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    out = store.append_orders(
        [("n1", fields("1"), "k1"), ("n2", fields("2"), "k2"), ("n1", fields("1"), "k1")]
    )
    assert [r.rid if r else None for r in out] == ["n1:1", "n2:1", None]
    # Each order is decided on its own: a float is refused (and alarmed), the
    # other order of the batch is stored — one bad record never holds back a good one.
    with pytest.raises(StoreError, match="refusing order"):
        store.append_orders([("n1", fields("3"), "k3"), ("n1", {"volume": 1.5}, "k4")])
    assert [o["nseq"] for o in store.orders("n1")] == [1, 2]
    [refused] = [a for a in store.records("alarm") if a["code"] == "RECORD_REFUSED"]
    assert refused["detail"]["reason"] == "body" and refused["detail"]["key"] == "n1/k4"


def test_overflow_alarms_in_one_millisecond_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D4: every BUFFER_OVERFLOW is its own record, even when two
    eviction passes commit within one millisecond (found as a CI flake: the
    second alarm's rid collided and its count was dropped as a duplicate)."""
    import buffer.store

    monkeypatch.setattr(buffer.store, "_now_ms", lambda: 1_700_000_000_000)
    policy = CapacityPolicy(max_records=100, retain_per_nozzle=20, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for i in range(50):
        store.append_order("n1", fields(str(i)), source_key=f"a{i}")
    for i in range(120):
        store.append_record("tank", f"t{i}", {"level": str(i)})
    alarms = [r for r in store.records("alarm") if r["code"] == "BUFFER_OVERFLOW"]
    assert len(alarms) > 1
    assert len({a["rid"] for a in alarms}) == len(alarms)
    assert sum(a["detail"]["evicted_unsent"] for a in alarms) == store.evicted_unsent > 0


def test_eviction_takes_acknowledged_oldest_first_and_keeps_d4(tmp_path: Path) -> None:
    policy = CapacityPolicy(max_records=100, retain_per_nozzle=20, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for i in range(60):
        store.append_order("n1", fields(str(i)), source_key=f"a{i}")
    for i in range(40):
        store.append_order("n2", fields(str(i)), source_key=f"b{i}")
    store.mark_published(store.unsent(0, 1000))
    store.append_record("tank", "t1", {"level": "1"})  # the 101st record
    # target = 99: the two oldest acknowledged records (n1:1, n1:2) go, nothing unsent.
    assert [o["nseq"] for o in store.orders("n1")][:2] == [3, 4]
    assert store.evicted_acknowledged == 2 and store.evicted_unsent == 0
    assert [r.kind for r in store.unsent(0, 10)] == ["tank"]  # no overflow alarm


def test_unsent_over_the_cap_go_oldest_first_counted_in_an_alarm(tmp_path: Path) -> None:
    policy = CapacityPolicy(max_records=100, retain_per_nozzle=20, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for i in range(50):
        store.append_order("n1", fields(str(i)), source_key=f"a{i}")
    store.mark_published(store.unsent(0, 10))  # n1:1..10 acknowledged
    for i in range(51):
        store.append_record("tank", f"t{i}", {"level": str(i)})
    # 101 records, target 99: 2 go, both acknowledged (n1:1, n1:2). Nothing unsent lost.
    assert store.evicted_unsent == 0
    for i in range(51, 111):
        store.append_record("tank", f"t{i}", {"level": str(i)})
    # Each pass evicts down to 99; acknowledged n1:3..10 go first (8), then the
    # oldest unsent non-retained: n1:11..30 (20 orders; n1:31..50 are D4-retained),
    # then the oldest tank records. Exactly those, and the alarms count them all.
    orders = [o["nseq"] for o in store.orders("n1")]
    assert orders == list(range(31, 51))
    alarms = [r for r in store.records("alarm") if r["code"] == "BUFFER_OVERFLOW"]
    counted = sum(a["detail"]["evicted_unsent"] for a in alarms)
    assert counted == store.evicted_unsent > 0
    assert store.evicted_acknowledged == 10
    total = sqlite3.connect(store.path).execute("SELECT count(*) FROM records").fetchone()[0]
    assert total <= 100
    # The chain continues from the retained head: the next order links to n1:50.
    nxt = store.append_order("n1", fields("x"), source_key="x")
    assert nxt is not None and nxt.body["nseq"] == 51
    assert verify_chain(store.orders("n1")) is None


def test_resend_selects_exactly_and_survives_an_older_ack(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    for i in range(1, 6):
        store.append_order("n1", fields(str(i)), source_key=f"a{i}")
        store.append_order("n2", fields(str(i)), source_key=f"b{i}")
    inflight = store.unsent(0, 100)  # read before the resend request
    store.mark_published(inflight[:4])  # n1:1 n2:1 n1:2 n2:2 acknowledged
    assert store.request_resend(nozzle="n1", from_nseq=2, to_nseq=4) == 3
    store.mark_published(inflight[4:])  # the old copies' PUBACK arrives late
    again = store.unsent(0, 100)
    assert [r.rid for r in again] == ["n1:2", "n1:3", "n1:4"]  # per-nozzle order kept
    assert all(r.resent > 0 for r in again)
    store.mark_published(again)
    assert store.unsent(0, 100) == []
    assert store.request_resend(since=0, until="2999-01-01T00:00:00+00:00") == 10
    assert store.request_resend(nozzle="n2", since="2999-01-01T00:00:00+08:00") == 0
    with pytest.raises(ValueError):
        store.request_resend(since="2026-01-01T00:00:00")  # no offset: refused


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    store.append_order("n1", fields("1"), source_key="a1")
    store.close()
    downgrade_to_v2(path)  # v1 was v2 without the resend generation
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE records DROP COLUMN resent")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = OrderStore(path)
    assert store.request_resend(nozzle="n1") == 1
    assert [r.rid for r in store.unsent(0, 10)] == ["n1:1"]


def test_the_byte_cap_evicts_acknowledged_records(tmp_path: Path) -> None:
    """A9 on a 256 MB flash: the pages in use stay near max_bytes."""
    policy = CapacityPolicy(max_records=1_000_000, retain_per_nozzle=20, max_bytes=400_000)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for i in range(3000):
        pad = os.urandom(250).hex()  # 500 B that do not compress (bodies are deflated)
        store.append_order(f"n{i % 4}", {"order_no": str(i), "pad": pad}, source_key=str(i))
        store.mark_published(store.unsent(0, 10))
    assert store.evicted_acknowledged > 1000 and store.evicted_unsent == 0
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    free = store._db.execute("PRAGMA freelist_count").fetchone()[0]
    assert (pages - free) * 4096 < 400_000 + SIZE_CHECK_EVERY * 1200
    assert [o["nseq"] for o in store.orders("n0")][-1] == 750  # newest kept


def test_retained_orders_over_the_cap_are_kept_and_not_searched_after_every_commit(
    tmp_path: Path,
) -> None:
    """D4 wins over the cap: when nothing may go, the store says so once and
    looks again only after the hysteresis (1 %), not at every commit (each
    search reads the whole table)."""
    policy = CapacityPolicy(max_records=200, retain_per_nozzle=100, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for n in range(3):
        store.append_orders([(f"n{n}", fields(str(i)), f"{n}:{i}") for i in range(100)])
    assert store._count == 300 and store.evicted_acknowledged == store.evicted_unsent == 0
    assert not store.over_capacity(), "nothing may go: not searched again at once"
    store.append_order("n0", fields("x"), source_key="x")
    store.append_order("n0", fields("y"), source_key="y")  # 1 % of 200 more
    assert store.evicted_unsent == 2, "searched again: n0's two oldest are no longer retained"


def test_eviction_sweeps_past_retained_orders_at_the_head_in_bounded_steps(
    tmp_path: Path,
) -> None:
    """The oldest rows are retained orders (a quiet nozzle's newest 2000 can be
    the table's oldest months): each step looks at a bounded window and the
    sweep goes on past them to what may go, keeping every retained order."""
    from buffer.capacity import EXAMINE

    retained = EXAMINE + 50
    policy = CapacityPolicy(max_records=retained + 200, retain_per_nozzle=retained, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    store.append_orders([("n1", fields(str(i)), str(i)) for i in range(retained)])
    for i in range(250):
        store.commit([NewRecord("tank", f"t{i}", {"v": str(i)})])
    store.mark_published(store.unsent(0, 10_000))
    steps = 1
    while store.evict_step():
        steps += 1
    assert steps >= 2, "more than one window to get past the retained orders"
    assert len(list(store.orders("n1"))) == retained
    assert store.evicted_acknowledged >= 50 and store._count <= policy.max_records
    assert next(r["rid"] for r in store.records("tank")) != "t0", "the oldest went first"
