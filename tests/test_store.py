"""buffer.store: committed before anything else sees it; nseq, chain, seq (D4–D6, F2)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from buffer.store import SEQ_BLOCK, OrderStore, StoreError
from records.chain import GENESIS, record_hash, verify_chain
from tests.store_edit import edit_order_text


def fields(order_no: str, volume: str = "10.00") -> dict[str, object]:
    return {"order_no": order_no, "volume": volume, "station": "S1", "flags": []}


def test_orders_get_nseq_rid_and_a_chain_per_nozzle(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    a1 = store.append_order("p01.a1.n1", fields("100"), source_key="100:1")
    b1 = store.append_order("p01.a1.n2", fields("200"), source_key="200:1")
    a2 = store.append_order("p01.a1.n1", fields("101"), source_key="101:1")
    assert a1 and b1 and a2
    assert (a1.rid, b1.rid, a2.rid) == ("p01.a1.n1:1", "p01.a1.n2:1", "p01.a1.n1:2")
    assert a1.body["prev"] == GENESIS and b1.body["prev"] == GENESIS
    assert a2.body["prev"] == a1.body["h"]
    assert a2.body["h"] == record_hash(a2.body)
    assert verify_chain(store.orders("p01.a1.n1")) is None
    store.close()


def test_the_same_dispenser_record_is_stored_once(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    assert store.append_order("p01.a1.n1", fields("100"), source_key="100:1") is not None
    assert store.append_order("p01.a1.n1", fields("100"), source_key="100:1") is None
    # The same key on another nozzle is another record.
    assert store.append_order("p01.a1.n2", fields("100"), source_key="100:1") is not None
    assert len(list(store.orders())) == 2


def test_unsent_in_publish_order_until_marked_sent(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    for i in range(5):
        store.append_order(f"p01.a1.n{i % 2 + 1}", fields(str(i)), source_key=str(i))
    unsent = store.unsent(0, 100)
    assert [r.body["order_no"] for r in unsent] == ["0", "1", "2", "3", "4"]
    assert [r.body["order_no"] for r in store.unsent(unsent[1].id, 2)] == ["2", "3"]
    store.mark_published([unsent[0], unsent[2]])
    assert [r.body["order_no"] for r in store.unsent(0, 100)] == ["1", "3", "4"]
    assert store.unsent_counts() == {"order": 3}


def test_marks_are_commits_a_killed_process_keeps(tmp_path: Path) -> None:
    """PUBACK marks commit without an fsync of their own (synchronous=NORMAL,
    docs/performance.md profile) but are still commits: a SIGKILLed writer
    (page cache kept, as on any crash short of power loss) leaves them marked."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "s.sqlite"
    script = f"""
import time
from pathlib import Path
from buffer.store import OrderStore
store = OrderStore(Path({str(path)!r}))
for i in range(3):
    store.append_order("p01.a1.n1", {{"order_no": str(i), "flags": []}}, source_key=str(i))
unsent = store.unsent_page(0, 10)
store.mark_published(unsent[:2])
print("marked", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "marked"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    store = OrderStore(path)
    assert [r.rid for r in store.unsent(0, 10)] == ["p01.a1.n1:3"]


def test_after_a_mark_every_record_commits_with_fsync_again(tmp_path: Path) -> None:
    """synchronous goes back to FULL after a mark, also after a mark that failed
    (a technician's shell holding the write lock), so no record loses its fsync."""
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    store.append_order("p01.a1.n1", fields("1"), source_key="1")
    store.append_order("p01.a1.n1", fields("2"), source_key="2")
    first, second = store.unsent_page(0, 10)
    full = 2  # PRAGMA synchronous: 1 NORMAL, 2 FULL
    store.mark_published([first])
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == full
    shell = sqlite3.connect(path)
    shell.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="mark records sent"):
            store.mark_published([second])
    finally:
        shell.rollback()
        shell.close()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == full
    assert [r.rid for r in store.unsent(0, 10)] == ["p01.a1.n1:2"]


def test_a_mark_commits_without_its_own_fsync_and_full_comes_back_after(
    tmp_path: Path,
) -> None:
    """The statements of one PUBACK mark, as SQLite runs them: NORMAL around
    the mark's transaction only (no FULL inside it: that would fsync the mark,
    the cost the NORMAL exists to save), then FULL again."""
    store = OrderStore(tmp_path / "s.sqlite")
    store.append_order("p01.a1.n1", fields("1"), source_key="1")
    (record,) = store.unsent_page(0, 10)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.mark_published([record])
    store._db.set_trace_callback(None)
    kinds = [
        s.split()[0] + (" " + s.split()[1] if s.startswith("PRAGMA") else "") for s in statements
    ]
    assert kinds == [
        "PRAGMA synchronous=NORMAL",
        "BEGIN",
        "UPDATE",
        "COMMIT",
        "PRAGMA synchronous=FULL",
    ], statements


def test_a_mark_that_left_its_transaction_open_never_lets_a_record_skip_fsync(
    tmp_path: Path,
) -> None:
    """A mark's COMMIT and ROLLBACK both failing leave the transaction open: the
    mark cannot restore FULL then (SQLite refuses the PRAGMA inside a
    transaction, which would hide the real error). Once that transaction is
    gone, the next record's commit restores FULL before it begins."""
    store = OrderStore(tmp_path / "s.sqlite")
    full = 2  # PRAGMA synchronous: 1 NORMAL, 2 FULL
    with store._no_fsync():
        store._db.execute("BEGIN IMMEDIATE")  # as a COMMIT + ROLLBACK failure leaves it
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    store._db.execute("ROLLBACK")
    store.append_order("p01.a1.n1", fields("1"), source_key="1")
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == full


def test_everything_survives_reopen_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    first = store.append_order("p01.a1.n1", fields("1"), source_key="1")
    assert first is not None
    store.close()
    store = OrderStore(path)
    second = store.append_order("p01.a1.n1", fields("2"), source_key="2")
    assert second is not None
    assert second.body["nseq"] == 2 and second.body["prev"] == first.body["h"]
    assert [r.rid for r in store.unsent(0, 10)] == ["p01.a1.n1:1", "p01.a1.n1:2"]


def test_envelope_seq_strictly_increases_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    seqs = [store.next_seq() for _ in range(SEQ_BLOCK + 3)]
    assert seqs == list(range(1, SEQ_BLOCK + 4))
    # No close(): as after a crash, the reserved block is skipped, never reused.
    again = OrderStore(path)
    assert again.next_seq() == 2 * SEQ_BLOCK + 1


def test_a_row_edited_behind_our_back_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    for i in range(3):
        store.append_order("p01.a1.n1", fields(str(i)), source_key=str(i))
    with sqlite3.connect(path) as db:
        edit_order_text(db, "p01.a1.n1", 2, '"volume":"10.00"', '"volume":"1.00"')
    broken = verify_chain(store.orders("p01.a1.n1"))
    assert broken is not None and broken.rid == "p01.a1.n1:2"


def test_an_unwritable_store_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot open store"):
        OrderStore(blocker / "s.sqlite")


def test_what_could_never_be_published_is_refused_at_the_door(tmp_path: Path) -> None:
    """Floats (and NaN) cannot be sealed (decimal strings only): refusing them here
    keeps one bad record from blocking the uplink forever."""
    store = OrderStore(tmp_path / "s.sqlite")
    with pytest.raises(StoreError, match="refusing tank t1"):
        store.append_record("tank", "t1", {"level": 1.5})
    with pytest.raises(StoreError, match="refusing order"):
        store.append_order("p01.a1.n1", {"volume": float("nan")}, source_key="k")
    # Nothing but the two refusals, each said once by the store (RECORD_REFUSED).
    refused = store.unsent(0, 10)
    assert [(r.kind, r.body["code"], r.body["detail"]["reason"]) for r in refused] == [
        ("alarm", "RECORD_REFUSED", "body")
    ] * 2
    assert [r.body["detail"]["key"] for r in refused] == ["t1", "p01.a1.n1/k"]
    assert store.append_record("tank", "t1", {"level": "1.5"}) is not None


def test_a_full_store_says_full_and_recovers(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="full"):
        for i in range(10_000):
            store.append_order("p01.a1.n1", {"pad": "x" * 500}, source_key=str(i))
    assert not store._db.in_transaction, "no transaction left open after the failure"
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert store.append_order("p01.a1.n1", {"pad": "y"}, source_key="after") is not None
