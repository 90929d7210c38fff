"""Ours or not (buffer/schema.py): a store carries its application_id; a file at
the store's path that is not one of ours is refused and never touched, a
damaged store of ours is moved aside, a store of a newer schema is refused
by the daemon and by every reader, and a damaged page is one line and exit 4
in the technician commands, never a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from buffer.schema import APPLICATION_ID, SCHEMA_VERSION, NotOurStore, StoreError
from buffer.store import OrderStore
from collector.tools import storeview
from hil.stack import ROOT
from tests.store_edit import damage_pages


def fields(order_no: str) -> dict[str, object]:
    return {"order_no": order_no, "volume": "10.00", "station": "S1", "flags": []}


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_new_store_says_it_is_ours_in_its_header(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    store.close()
    header = (tmp_path / "s.sqlite").read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == APPLICATION_ID  # as file(1) reads it
    assert int.from_bytes(header[60:64], "big") == SCHEMA_VERSION


def test_a_store_of_ours_from_before_application_id_gets_it_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    assert store.append_order("p01.a1.n1", fields("1"), source_key="1") is not None
    store._db.execute("PRAGMA application_id=0")  # as every store was before
    store.close()
    reopened = OrderStore(path)
    assert reopened._db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert [o["order_no"] for o in reopened.orders("p01.a1.n1")] == ["1"]
    assert reopened.moved_aside is None
    reopened.close()


@pytest.mark.parametrize("kind", ["text", "other database", "other application"])
def test_a_file_that_is_not_ours_is_refused_and_left_exactly_as_it_is(
    tmp_path: Path, kind: str
) -> None:
    """The daemon never renames, writes or journals a file it did not create."""
    path = tmp_path / "s.sqlite"
    if kind == "text":
        path.write_text('[device]\nid = "gw-1"\n' * 50)  # e.g. the config file itself
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE photos (name TEXT)")
        db.execute("INSERT INTO photos VALUES ('x')")
        if kind == "other application":
            db.execute("PRAGMA application_id=1234")
        db.commit()
        db.close()
    before = path.read_bytes()
    with pytest.raises(NotOurStore, match="not a collector store"):
        OrderStore(path)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["s.sqlite"], "no -wal, -shm or .corrupt-* beside it"


def test_an_empty_file_or_a_store_killed_before_its_schema_is_new(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    OrderStore(empty).close()
    half = tmp_path / "half.sqlite"
    db = sqlite3.connect(half)
    db.execute("PRAGMA journal_mode=WAL")  # what a kill right after the switch leaves
    db.close()
    store = OrderStore(half)
    assert store.moved_aside is None and store.append_record("tank", "t1", {}) is not None
    store.close()


def test_a_damaged_store_of_ours_is_moved_aside_and_alarmed(tmp_path: Path) -> None:
    """D6: a damaged store is kept for recovery, a fresh one runs, the platform is told."""
    path = tmp_path / "s.sqlite"
    damaged = damage_pages(path)
    store = OrderStore(path)
    assert store.moved_aside is not None and store.moved_aside.read_bytes() == damaged
    [alarm] = store.unsent(0, 10)
    assert alarm.kind == "alarm" and alarm.body["code"] == "STORE_CORRUPT"
    assert alarm.body["detail"]["moved_to"] == str(store.moved_aside)
    assert store.append_order("n1", fields("1"), source_key="1") is not None
    store.close()


def _future(path: Path) -> None:
    store = OrderStore(path)
    store.append_order("p01.a1.n1", fields("1"), source_key="1")
    store._db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    store.close()


def test_a_store_of_a_newer_schema_is_refused_by_the_daemon_and_every_reader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    _future(path)
    before = path.read_bytes()
    reason = f"store schema {SCHEMA_VERSION + 1} is newer than the {SCHEMA_VERSION} this release"
    with pytest.raises(StoreError, match=reason):
        OrderStore(path)
    with pytest.raises(storeview.StoreUnavailable, match=reason):
        storeview.open_readonly(path)
    for args in (["orders"], ["export"], ["buffer"], ["verify"]):
        done = cli(*args, "--store", str(path))
        assert done.returncode == 4, (args, done.stderr)
        lines = [line for line in done.stderr.splitlines() if "not running" not in line]
        assert len(lines) == 1 and reason in lines[0], (args, done.stderr)
    demo = str(ROOT / "config" / "demo.toml")
    check = cli("config", "check", demo, "--set", f"store.path={path}")
    assert (check.returncode, check.stdout) == (2, f"store.path: {path}: {reason} reads\n")
    assert path.read_bytes() == before


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``forecourt …`` with no collector running (a socket nobody listens on)."""
    extra = [] if args[0] in ("config", "verify", "export") else ["--socket", "/nonexistent.sock"]
    return subprocess.run(
        [sys.executable, "-m", "collector", *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _damaged_tail(path: Path) -> None:
    """A store whose first pages read but whose newest rows are garbage."""
    from buffer.schema import PAGE_SIZE

    store = OrderStore(path)
    for i in range(400):
        store.append_order("p01.a1.n1", {**fields(str(i)), "pad": "x" * 60}, source_key=str(i))
    store.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - 3 * PAGE_SIZE)
        f.write(b"\xa5" * (3 * PAGE_SIZE))


@pytest.mark.parametrize("command", ["orders", "export", "buffer", "alarms", "status"])
def test_damaged_pages_are_one_line_and_exit_4(tmp_path: Path, command: str) -> None:
    """A sqlite3.DatabaseError traceback before: now the store and the reason."""
    path = tmp_path / "s.sqlite"
    _damaged_tail(path)
    done = cli(command, "--store", str(path))
    assert done.returncode == 4, done.stderr
    lines = [line for line in done.stderr.splitlines() if "not running" not in line]
    assert lines == [lines[0]] and lines[0].startswith(f"forecourt: {path}: "), done.stderr
    assert "malformed" in lines[0] or "not a database" in lines[0]


def test_readers_take_a_store_of_ours_and_refuse_another_file(tmp_path: Path) -> None:
    ours = tmp_path / "s.sqlite"
    OrderStore(ours).close()
    storeview.open_readonly(ours).close()
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE records (id INTEGER)")  # a table of the same name
    db.commit()
    db.close()
    with pytest.raises(storeview.StoreUnavailable, match="not a collector store"):
        storeview.open_readonly(other)
