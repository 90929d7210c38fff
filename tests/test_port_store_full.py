"""A sale the store cannot commit is not confirmed to the dispenser (store first, D6)."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest

from buffer.store import OrderStore, StoreError
from collector.nozzles import NozzleTable
from collector.port import LineSettings, PollPort
from protocols.sinopec.driver import SinopecPoller
from protocols.sinopec.framer import decode
from protocols.sinopec.messages import CMD_CONFIRM, CMD_POLL, TransactionRecord, record_sale

CST = timezone(timedelta(hours=8))


def make_port(store: OrderStore, driver: SinopecPoller) -> tuple[PollPort, list[int]]:
    woken: list[int] = []
    port = PollPort(
        number=1, line=LineSettings("/dev/null", 9600, 8, "N", 1), driver=driver, store=store,
        nozzles=NozzleTable(), station="S", tz=CST, poll_interval_s=0.1,
        response_timeout_s=0.1, on_commit=lambda: woken.append(1),
    )  # fmt: skip
    return port, woken


def sale_of(pos_ttc: int) -> object:
    from datetime import datetime

    record = TransactionRecord(
        pos_ttc=pos_ttc, time=datetime(2026, 11, 22, 8, 0, 0), nzn=1, g_code="1092",
        vol=1000, prc=785, amn=7850, v_tot=100_000 + pos_ttc,
    )  # fmt: skip
    return record_sale(record, 1)


def next_command(driver: SinopecPoller) -> int:
    wire = driver.next_request()
    assert wire is not None
    frame, _ = decode(wire)
    driver.response_timeout()
    return frame.command  # type: ignore[union-attr]


def test_store_full_means_no_confirmation_and_no_crash(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    driver = SinopecPoller([1])
    port, woken = make_port(store, driver)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # a real SQLITE_FULL ...
    for n, pad in enumerate((500, 0)):  # ... once the free room is used up, to the byte
        with pytest.raises(StoreError, match="full"):
            for i in range(10_000):
                store.append_order("p09.a9.n9", {"pad": "x" * pad}, source_key=f"{n}:{i}")
    before = len(list(store.orders()))
    port._handle([sale_of(7)])  # type: ignore[list-item]
    assert port.stats.errors == {"store": 1}
    assert woken == [] and len(list(store.orders())) == before
    assert next_command(driver) == CMD_POLL, "not confirmed: the pump keeps the record"
    # Room again: the same record, offered again, is stored and confirmed.
    store._db.execute("PRAGMA max_page_count = 1073741823")
    port._handle([sale_of(7)])  # type: ignore[list-item]
    assert [o["order_no"] for o in store.orders("p01.a1.n1")] == ["7"] and woken == [1]
    assert next_command(driver) == CMD_CONFIRM
