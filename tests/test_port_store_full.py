"""A sale the store cannot commit is not confirmed to the dispenser (store first, D6)."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest

from buffer.store import OrderStore, StoreError
from collector.station.nozzles import NozzleTable
from collector.station.port import LineSettings, PollPort
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


def test_a_sale_is_confirmed_only_once_its_commit_is_done(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    driver = SinopecPoller([1])
    port, woken = make_port(store, driver)
    port._handle([sale_of(7)])  # type: ignore[list-item]  # in the read callback
    assert next_command(driver) == CMD_POLL, "handed to the writer, not committed yet"
    port._handle([sale_of(7)])  # type: ignore[list-item]  # offered again meanwhile: one record
    assert store.writer.flush()  # the writer's task, between two callbacks
    assert [o["order_no"] for o in store.orders("p01.a1.n1")] == ["7"] and woken == [1]
    assert next_command(driver) == CMD_CONFIRM


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
    assert not store.writer.flush(), "the store refuses the commit"
    assert port.stats.errors == {"store": 1}, "handed back to the pump at once"
    assert woken == [] and len(list(store.orders())) == before and store.writer.queued == 0
    assert next_command(driver) == CMD_POLL, "not confirmed: the pump keeps the record"
    # Room again: the same record, offered again, is stored and confirmed.
    store._db.execute("PRAGMA max_page_count = 1073741823")
    port._handle([sale_of(7)])  # type: ignore[list-item]
    assert store.writer.flush()
    assert [o["order_no"] for o in store.orders("p01.a1.n1")] == ["7"] and woken == [1]
    assert next_command(driver) == CMD_CONFIRM
    faults = [(a["code"], a["state"]) for a in store.records("alarm")]
    assert faults == [("STORE_FAULT", "raised"), ("STORE_FAULT", "cleared")]


def test_a_collision_on_another_unique_index_is_no_confirmation(tmp_path: Path) -> None:
    """The order's nseq is taken behind the store's back (its cached chain head
    is stale): the insert fails on (nozzle, nseq), not on the sale's key. That
    is an error — the pump is not told the sale is safe — and the sale, offered
    again, is stored with the next free nseq and confirmed then."""
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    driver = SinopecPoller([1])
    port, _woken = make_port(store, driver)
    port._handle([sale_of(1)])  # type: ignore[list-item]
    assert store.writer.flush() and list(driver._unconfirmed[1]) == [1]  # to be confirmed
    other = OrderStore(path)
    other.append_order("p01.a1.n1", {"order_no": "x"}, source_key="elsewhere")
    other.close()
    port._handle([sale_of(2)])  # type: ignore[list-item]
    assert store.writer.flush()
    assert port.stats.errors == {"store": 1}
    assert list(driver._unconfirmed[1]) == [1], "an error, not a confirmation"
    [refused] = [a for a in store.records("alarm") if a["code"] == "RECORD_REFUSED"]
    assert refused["detail"]["reason"] == "constraint"
    port._handle([sale_of(2)])  # type: ignore[list-item]
    assert store.writer.flush() and list(driver._unconfirmed[1]) == [1, 2]
    assert [o["nseq"] for o in store.orders("p01.a1.n1")] == [1, 2, 3]
