"""A full disk (issue #6, SPEC D6): a real ENOSPC from a 512 KiB tmpfs (the
tests run as root). Commits fail with StoreError — so nothing is confirmed that
was not committed — the store stays sound, and once space returns the next
commit carries a STORE_FULL alarm counting the refused commits."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer.store import OrderStore, StoreError
from uplink.chain import verify_chain


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
    committed: list[str] = []
    refused = 0
    pad = "x" * 900
    for i in range(2000):
        try:
            if store.append_order("n1", {"order_no": str(i), "pad": pad}, source_key=str(i)):
                committed.append(str(i))
        except StoreError as exc:
            assert "full" in str(exc) or "disk" in str(exc), exc
            refused += 1
            if refused == 5:
                break
    assert refused == 5 and store.full_failures == 5 and committed
    filler.unlink()
    again = store.append_order("n1", {"order_no": "after", "pad": ""}, source_key="after")
    assert again is not None and again.body["nseq"] == len(committed) + 1
    [alarm] = [a for a in store.records("alarm") if a["code"] == "STORE_FULL"]
    assert alarm["detail"]["refused_commits"] == 5
    store.close()
    reopened = OrderStore(small_disk / "s.sqlite")
    assert reopened.moved_aside is None  # sound after ENOSPC
    orders = list(reopened.orders("n1"))
    assert [o["order_no"] for o in orders] == [*committed, "after"]  # exactly the committed
    assert verify_chain(orders) is None
    reopened.close()
