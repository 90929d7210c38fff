"""Store queries of the technician tools on a real store file, read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from buffer.store import OrderStore
from collector.tools import storeview


def test_tanks_alarms_buffer_read_only(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = OrderStore(path)
    for at in range(3):
        for tank in (2, 1):
            body = {"tank": tank, "at": f"t{at}", "volume_l": f"{1000 + at}.0"}
            store.append_record("tank", f"{tank}:{at}", body)
    a = store.append_record("alarm", "a1", {"source": "atg", "code": "LEAK", "state": "raised"})
    store.append_record("alarm", "b1", {"source": "p01", "code": "PULSER", "state": "raised"})
    store.append_record("alarm", "b2", {"source": "p01", "code": "PULSER", "state": "cleared"})
    assert a is not None
    store.mark_published([a])

    db = storeview.open_readonly(path)
    tanks = storeview.latest_tanks(db)
    assert [(t["tank"], t["at"]) for t in tanks] == [(1, "t2"), (2, "t2")]
    active = storeview.active_alarms(db)
    assert [(x["source"], x["code"]) for x in active] == [("atg", "LEAK")]
    assert [x["state"] for x in storeview.alarms(db, limit=2)] == ["cleared", "raised"]
    buffer = storeview.buffer(db, path)
    assert buffer["kinds"] == {
        "alarm": {"stored": 3, "unsent": 2},
        "tank": {"stored": 6, "unsent": 6},
    }
    assert buffer["unsent"] == storeview.unsent_total(db) == 8
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("DELETE FROM records")
    db.close()
    store.close()


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(storeview.StoreUnavailable, match="no such store file"):
        storeview.open_readonly(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()
