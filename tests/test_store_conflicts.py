"""buffer.store: every conflict is named, and "already stored" means the same record.

A real SQLite file each. Orders are "the same sale" only on the nozzle and
the dispenser's own key, with the dispenser's fields equal; any other unique
index that refuses a row is an error, never a confirmation (D6).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from buffer.capacity import CapacityPolicy
from buffer.commits import Forget, NewOrder, NewRecord, Result
from buffer.migrate import downgrade_to_v2
from buffer.store import OrderStore, RecordRefused


def sale(order_no: str, volume: str = "10.00", **more: object) -> dict[str, object]:
    return {"order_no": order_no, "volume": volume, "price": "7.85", "flags": [], **more}


def refusals(store: OrderStore) -> list[dict[str, object]]:
    return [a for a in store.records("alarm") if a["code"] == "RECORD_REFUSED"]


def test_the_same_sale_offered_again_is_a_duplicate_whatever_the_collector_added(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    assert store.append_order(
        "n1", sale("7", started_at="2026-01-01T08:00:00+08:00"), source_key="7"
    )
    # Offered again after a restart: no started_at seen, flags checked against itself.
    again = sale("7", flags=["TOTALIZER_GAP"], started_at=None)
    assert store.append_order("n1", again, source_key="7") is None
    assert refusals(store) == [] and len(list(store.orders("n1"))) == 1


def test_a_different_sale_under_the_same_key_is_a_conflict_kept_in_an_alarm(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    store.append_order("n1", sale("7"), source_key="7")
    for _ in range(2):  # the pump offers it again: one alarm, not one per offer
        with pytest.raises(RecordRefused) as caught:
            store.append_order("n1", sale("7", volume="99.00"), source_key="7")
        assert caught.value.outcome.result is Result.CONFLICT and caught.value.outcome.kept
    [alarm] = refusals(store)
    detail = alarm["detail"]
    assert isinstance(detail, dict)
    assert (detail["reason"], detail["key"], detail["stored_rid"]) == ("conflict", "n1/7", "n1:1")
    assert detail["record"]["volume"] == "99.00", "the refused sale is kept whole"
    assert [o["volume"] for o in store.orders("n1")] == ["10.00"]


def test_a_unique_index_other_than_the_key_is_an_error_not_a_confirmation(
    tmp_path: Path,
) -> None:
    """The chain head cached by the store is stale (a row written behind its
    back): the insert hits (nozzle, nseq), not the source key. That is an error
    — nothing stored, not "already stored" — and the next try reads the head."""
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    store.append_order("n1", sale("1"), source_key="1")
    other = OrderStore(path)  # a second writer: what the cache cannot know
    other.append_order("n1", sale("2"), source_key="2")
    other.close()
    [outcome] = store.commit([NewOrder("n1", sale("3"), "3")])
    assert outcome.result is Result.ERROR and not outcome.kept
    assert "UNIQUE" in outcome.detail
    assert [o["order_no"] for o in store.orders("n1")] == ["1", "2"]
    [alarm] = refusals(store)
    assert alarm["detail"]["reason"] == "constraint"  # type: ignore[index]
    [again] = store.commit([NewOrder("n1", sale("3"), "3")])
    assert again.result is Result.STORED and again.record is not None
    assert again.record.body["nseq"] == 3


def test_records_conflict_on_their_rid_except_a_snapshot_of_the_same_minute(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    body = {"code": "X", "state": "raised", "source": "p01", "at": "t", "detail": {}}
    assert store.append_record("alarm", "p01:X:raised:1", body)
    assert store.append_record("alarm", "p01:X:raised:1", dict(body)) is None  # same record
    with pytest.raises(RecordRefused, match="different record"):
        store.append_record("alarm", "p01:X:raised:1", {**body, "detail": {"n": 1}})
    # A tank rid names a console minute: its first reading is the record.
    assert store.append_record("tank", "1:202611220815", {"volume_l": "100.00"})
    assert store.append_record("tank", "1:202611220815", {"volume_l": "99.50"}) is None
    assert [a["detail"]["key"] for a in refusals(store)] == ["p01:X:raised:1"]  # type: ignore[index]


def test_conflict_targets_hold_in_a_store_migrated_from_v2(tmp_path: Path) -> None:
    """A v2 store keeps UNIQUE (kind, rid) over every row and spells out order
    rids: the named targets still say "already stored" only for the key."""
    path = tmp_path / "s.sqlite"
    OrderStore(path).close()
    downgrade_to_v2(path)
    store = OrderStore(path)
    assert store.append_order("n1", sale("1"), source_key="1")
    assert store.append_order("n1", sale("1"), source_key="1") is None
    with pytest.raises(RecordRefused):
        store.append_order("n1", sale("1", volume="5.00"), source_key="1")
    assert store.append_record("tank", "t", {"v": "1"}) and not store.append_record(
        "tank", "t", {"v": "1"}
    )


def test_an_eviction_that_fails_after_the_commit_leaves_the_record_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import buffer.eviction

    policy = CapacityPolicy(max_records=5, retain_per_nozzle=1, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for i in range(5):
        store.append_order("n1", sale(str(i)), source_key=str(i))

    def failing(*args: object, **kwargs: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(buffer.eviction, "evict", failing)
    stored = store.append_order("n1", sale("5"), source_key="5")  # the 6th: over the cap
    assert stored is not None and stored.body["nseq"] == 6
    assert store.eviction_errors == 1 and "disk I/O error" in store.last_eviction_error
    assert len(list(store.orders("n1"))) == 6


def test_counts_are_kept_without_counting_the_table(tmp_path: Path) -> None:
    """Unsent counts and the record count follow appends, marks, resends,
    evictions and local records exactly (the heartbeat reads them every beat)."""
    policy = CapacityPolicy(max_records=40, retain_per_nozzle=5, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)

    def recount() -> tuple[dict[str, int], int]:
        db = store._db
        rows = db.execute(
            "SELECT kind, count(*) FROM records WHERE sent_ms IS NULL GROUP BY kind"
        ).fetchall()
        return dict(rows), db.execute("SELECT count(*) FROM records").fetchone()[0]

    for i in range(30):
        store.append_order(f"n{i % 3}", sale(str(i)), source_key=str(i))
        store.append_record("nozzle", f"s{i}", {"state": "idle"})
    store.mark_published(store.unsent(0, 25))
    assert store.request_resend(nozzle="n1") > 0
    store.commit([NewRecord("detected", "d1", {"tank": 1}, local=True)])
    for i in range(20):
        store.append_record("tank", f"t{i}", {"v": str(i)})
    assert store.evicted_acknowledged and store.evicted_unsent
    assert (store.unsent_counts(), store._count) == recount()
    assert "detected" not in store.unsent_counts()
    [gone] = store.commit([Forget("detected", "d1")])
    assert gone.result is Result.STORED
    assert (store.unsent_counts(), store._count) == recount()
    store.close()
    reopened = OrderStore(tmp_path / "s.sqlite", policy)
    assert (reopened.unsent_counts(), reopened._count) == (store.unsent_counts(), store._count)


def test_a_local_record_is_never_published_nor_evicted(tmp_path: Path) -> None:
    policy = CapacityPolicy(max_records=10, retain_per_nozzle=1, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    store.commit([NewRecord("detected", "d1", {"tank": 1}, local=True)])
    for i in range(30):
        store.append_record("tank", f"t{i}", {"v": str(i)})
        store.mark_published(store.unsent(0, 100))
    assert [r["rid"] for r in store.records("detected")] == ["d1"]
    assert all(r.kind != "detected" for r in store.unsent(0, 100))
