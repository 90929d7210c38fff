"""buffer.writer: append, or keep it pending and retry (store first for every record).

Real SQLite files. A full store is SQLite's own SQLITE_FULL (``PRAGMA
max_page_count`` at the pages in use; tests/test_store_disk_full.py does
the same with a real ENOSPC on a tmpfs).
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from pathlib import Path

from buffer.capacity import CapacityPolicy
from buffer.commits import NewOrder, NewRecord, Outcome, Result
from buffer.store import OrderStore
from buffer.writer import FAULT_CODE, RecordWriter


def fill(store: OrderStore) -> None:
    """Cap the file at the pages it has and use up their free room: commits now fail."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    writer = RecordWriter(store)
    i = 0
    while writer.flush():
        writer.submit(NewRecord("pad", f"pad{i}", {"x": "x" * 500}), lambda o: None)
        i += 1


def unfill(store: OrderStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


def alarm(n: int) -> NewRecord:
    body = {"code": "PORT_OFFLINE", "state": "raised", "n": n}
    return NewRecord("alarm", f"p01:PORT_OFFLINE:raised:{n}", body)


def test_what_is_queued_is_committed_together_and_only_then_decided(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    writer = RecordWriter(store)
    woken: list[int] = []
    writer.on_commit = lambda: woken.append(1)
    seen: list[tuple[str, Result]] = []
    for n in range(3):
        assert writer.submit(alarm(n), lambda o, n=n: seen.append((f"a{n}", o.result)))
    assert writer.submit(
        NewOrder("n1", {"order_no": "1"}, "1"), lambda o: seen.append(("o", o.result))
    )
    assert seen == [] and list(store.records("alarm")) == [], "nothing before the commit"
    assert writer.flush()
    assert seen == [("a0", Result.STORED), ("a1", Result.STORED), ("a2", Result.STORED),
                    ("o", Result.STORED)]  # fmt: skip
    assert (writer.commits, writer.records_stored, woken) == (1, 4, [1])


def test_a_refused_commit_keeps_records_in_order_hands_back_a_pumps_sale_and_says_so_once(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    writer = RecordWriter(store)
    fill(store)
    seen: list[tuple[str, Result]] = []

    def note(name: str) -> object:
        return lambda o: seen.append((name, o.result))

    assert writer.submit(alarm(1), note("raise"))
    sale = NewOrder("n1", {"order_no": "7"}, "7")
    assert writer.submit(sale, note("sale"), source_keeps=True)
    assert not writer.flush() and not writer.flush()  # two refused commits
    assert seen == [("sale", Result.REFUSED)], "the pump keeps its sale: handed back at once"
    assert writer.faulty and writer.queued == 1 and writer.refused_commits == 2
    assert writer.submit(alarm(2), note("clear"))
    unfill(store)
    assert writer.flush()
    assert seen[1:] == [("raise", Result.STORED), ("clear", Result.STORED)]
    alarms = [(a["code"], a["state"]) for a in store.records("alarm")]
    assert alarms == [
        (FAULT_CODE, "raised"), (FAULT_CODE, "cleared"), ("PORT_OFFLINE", "raised"),
        ("PORT_OFFLINE", "raised"),
    ]  # fmt: skip
    [raised] = [a for a in store.records("alarm") if a["code"] == FAULT_CODE][:1]
    detail = raised["detail"]
    assert (detail["refused_commits"], detail["handed_back"], detail["not_taken"]) == (2, 1, 0)
    assert "full" in detail["error"]
    assert not writer.faulty and list(store.orders()) == []


def test_a_full_queue_takes_nothing_more_and_the_fault_counts_it(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    writer = RecordWriter(store, max_queued=3)
    fill(store)
    assert writer.submit_all([alarm(1), alarm(2)], lambda out: None)
    assert not writer.flush()
    assert not writer.submit_all([alarm(3), alarm(4)], lambda out: None)  # 4 > 3: none taken
    assert writer.submit(alarm(3), lambda o: None)
    assert not writer.has_room(1) and writer.not_taken == 2
    unfill(store)
    assert writer.flush()
    [raised] = [
        a for a in store.records("alarm") if a["rid"].startswith("store:STORE_FAULT:raised")
    ]
    assert raised["detail"]["not_taken"] == 2


def test_a_failing_callback_is_logged_and_the_others_still_run(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    writer = RecordWriter(store)
    seen: list[Outcome] = []

    def boom(o: Outcome) -> None:
        raise RuntimeError("bug in a caller")

    writer.submit(alarm(1), boom)
    writer.submit(alarm(2), seen.append)
    assert writer.flush()
    assert writer.callback_errors == 1 and [o.result for o in seen] == [Result.STORED]


def test_the_task_commits_waits_and_evicts_off_the_submit(tmp_path: Path) -> None:
    policy = CapacityPolicy(max_records=200, retain_per_nozzle=5, max_bytes=10**9)
    store = OrderStore(tmp_path / "s.sqlite", policy)
    for i in range(250):  # over the cap: the store evicts only when the writer steps
        store.commit([NewRecord("tank", f"t{i}", {"v": str(i)})])
    store.mark_published(store.unsent(0, 1000))
    assert store._count == 250
    writer = RecordWriter(store)

    async def main() -> Outcome:
        task = asyncio.get_running_loop().create_task(writer.run())
        try:
            outcome = await writer.stored(alarm(1))
            while store.over_capacity():
                await asyncio.sleep(0.01)
            return outcome
        finally:
            task.cancel()

    outcome = asyncio.run(main())
    assert outcome.result is Result.STORED
    assert store._count < 200 and store.evicted_acknowledged >= 50
    assert [a["code"] for a in store.records("alarm")] == ["PORT_OFFLINE"]


# -- one door, and its answer used ------------------------------------------------

#: The daemon's packages: none of them may write the store but through the writer.
DAEMON_PACKAGES = ("collector", "uplink", "config", "protocols", "records")

#: OrderStore's direct appends (tests, benches and tools use them; the daemon never).
DIRECT_APPENDS = frozenset({"append_record", "append_order", "append_orders"})


def _calls(tree: ast.AST) -> Iterator[tuple[ast.Call, bool]]:
    """Every call, and whether its value is thrown away (a bare statement)."""
    discarded = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, id(node) in discarded


def test_the_daemon_appends_only_through_the_writer_and_never_ignores_its_answer() -> None:
    """Store first is one mechanism: a record reaches SQLite through the store's
    writer, and whether the writer took it decides what the caller's state does.
    A direct append, a ``commit(items)``, or a ``submit`` whose answer is
    dropped is found here, by file and line."""
    root = Path(__file__).resolve().parent.parent
    found: list[str] = []
    for package in DAEMON_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for call, discarded in _calls(tree):
                name = call.func.attr if isinstance(call.func, ast.Attribute) else None
                where = f"{path.relative_to(root)}:{call.lineno}"
                if name in DIRECT_APPENDS or (name == "commit" and call.args):
                    found.append(f"{where}: {name}() writes the store past its writer")
                if name in ("submit", "submit_all") and discarded:
                    found.append(f"{where}: {name}()'s answer (taken or not) is dropped")
    assert found == []
