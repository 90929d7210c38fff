"""A full disk (SPEC D6): a real ENOSPC from a 512 KiB tmpfs (the tests run as
root). Commits are refused — a pump's sale is handed back (never confirmed
unless committed), an alarm stays queued — the store stays sound, and once
space returns the first commit carries STORE_FAULT raised and cleared, counting
the refused commits, before what was queued, in order."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buffer.commits import NewOrder, NewRecord, Outcome, Result
from buffer.store import OrderStore
from buffer.writer import RecordWriter
from records.chain import verify_chain


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_disk_full_refuses_alarms_and_recovers(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 128 * 1024)  # freed later: "space returns"
    store = OrderStore(small_disk / "s.sqlite")
    writer = RecordWriter(store)
    committed: list[str] = []
    handed_back = 0
    pad = "x" * 900

    def keep(order_no: str) -> Callable[[Outcome], None]:
        def then(outcome: Outcome) -> None:
            nonlocal handed_back
            if outcome.result is Result.STORED:
                committed.append(order_no)
            else:
                assert outcome.result is Result.REFUSED
                assert "full" in outcome.detail or "disk" in outcome.detail, outcome.detail
                handed_back += 1

        return then

    for i in range(2000):
        sale = NewOrder("n1", {"order_no": str(i), "pad": pad}, str(i))
        assert writer.submit(sale, keep(str(i)), source_keeps=True)
        if not writer.flush():
            break
    held = NewRecord(
        "alarm", "p01:PORT_OFFLINE:raised:1", {"code": "PORT_OFFLINE", "state": "raised"}
    )
    assert writer.submit(held, lambda o: None)
    for _ in range(4):
        assert not writer.flush()
    assert handed_back == 1 and writer.refused_commits == 5 and committed and writer.queued == 1
    filler.unlink()
    assert writer.submit(NewOrder("n1", {"order_no": "after", "pad": ""}, "after"), keep("after"))
    assert writer.flush() and not writer.faulty
    assert committed[-1] == "after"
    alarms = [(a["code"], a["state"]) for a in store.records("alarm")]
    assert alarms == [
        ("STORE_FAULT", "raised"),
        ("STORE_FAULT", "cleared"),
        ("PORT_OFFLINE", "raised"),
    ]
    [raised] = [a for a in store.records("alarm")][:1]
    assert raised["detail"]["refused_commits"] == 5 and raised["detail"]["handed_back"] == 1
    store.close()
    reopened = OrderStore(small_disk / "s.sqlite")
    assert reopened.moved_aside is None  # sound after ENOSPC
    orders = list(reopened.orders("n1"))
    assert [o["order_no"] for o in orders] == committed  # exactly the committed
    assert verify_chain(orders) is None
    reopened.close()
