"""The link against the books (collector/station/reconcile.py, collector/station/books.py):
recorded Sinopec line traffic, both sides, through the monitor and the
reconciler, with the clock passed in (docs/alarms.md, "The link against the
books").

The line is written from protocols.md §2: frames ``FA | dst | src | ctrl |
LEN | data | CRC``, the POS at 0xE0 (the master range), the 32 record's 95
bytes (POS_TTC, TIME, AMN, NZN, G_CODE, VOL, PRC, V_TOT …); the 3C
confirmation is our documented layout (protocols/sinopec/messages.py),
short (POS_TTC) or with the booked amount and volume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from buffer.store import OrderStore
from collector.station.books import PortBooks
from collector.station.nozzles import NozzleTable
from collector.station.reconcile import (
    CONFIRM_MISMATCH,
    LINK_BYPASSED,
    NAME_WAIT_S,
    ORDER_COUNT_IMBALANCE,
    SALE_UNCONFIRMED,
    BooksSettings,
    Finding,
    Reconciler,
)
from collector.station.sink import PortSink
from protocols.events import Confirmation, Sale
from protocols.sinopec.framer import Frame, encode_frame
from protocols.sinopec.messages import (
    RealtimeEntry,
    TransactionRecord,
    build_confirm,
    build_confirm_values,
    build_realtime,
    build_record,
)
from protocols.sinopec.monitor import SinopecMonitor

CST = timezone(timedelta(hours=8))
POS = 0xE0  # the POS side's first address (protocols.md §2, "Addresses")
#: protocols.md §2's computed example, a 30 poll, CRC verified there.
EXAMPLE_POLL = bytes.fromhex("FA 00 01 01 00 01 30 B8 3D")
START = datetime(2026, 12, 7, 0, 0, 5, tzinfo=CST)
SETTINGS = BooksSettings(
    confirm_within_s=30, count_window_s=3600, pos_silent_after_s=60, start_grace_s=0
)


@dataclass(frozen=True)
class Chunk:
    at: float  # seconds after START
    from_pos: bool
    data: bytes


def record(ttc: int, nozzle: int, v_tot: int) -> TransactionRecord:
    at = (START + timedelta(seconds=ttc)).replace(tzinfo=None)
    vol, prc = 1000 + ttc % 500, 789
    return TransactionRecord(
        pos_ttc=ttc, time=at, nzn=nozzle, g_code="1092", vol=vol, prc=prc,
        amn=vol * prc // 100, v_tot=v_tot,
    )  # fmt: skip


def line(
    sales: int,
    *,
    skip: frozenset[int] = frozenset(),
    amount_off: frozenset[int] = frozenset(),
    every_s: float = 10.0,
    values: bool = True,
) -> Iterator[Chunk]:
    """A POS reading and confirming ``sales`` sales of pump 1 (two nozzles);
    numbers in ``skip`` are read and never confirmed, those in ``amount_off``
    confirmed with one yuan more."""
    v_tot = {1: 1_000_000, 2: 2_000_000}  # each nozzle's totalizer, 0.01 L
    ctrl = 0
    for n in range(1, sales + 1):
        t = n * every_s
        nozzle = 1 + n % 2
        v_tot[nozzle] += 1000 + n % 500  # the sale's volume (record())
        rec = record(n, nozzle, v_tot[nozzle])
        ctrl = (ctrl + 1) % 0x40
        yield Chunk(t, True, EXAMPLE_POLL if n == 1 else poll(ctrl))
        # The pump answers in two reads, as a line delivers it.
        wire = encode_frame(Frame(POS, 1, ctrl, build_record(rec)))
        yield Chunk(t + 0.05, False, wire[:40])
        yield Chunk(t + 0.06, False, wire[40:])
        if n in skip:
            continue
        amn = rec.amn + (100 if n in amount_off else 0)
        data = build_confirm_values(n, amn, rec.vol) if values else build_confirm(n)
        ctrl = (ctrl + 1) % 0x40
        yield Chunk(t + 0.1, True, encode_frame(Frame(1, POS, ctrl, data)))
        idle = build_realtime([RealtimeEntry(0, 1), RealtimeEntry(0, 2)])
        yield Chunk(t + 0.15, False, encode_frame(Frame(POS, 1, ctrl, idle)))


def poll(ctrl: int) -> bytes:
    return encode_frame(Frame(1, POS, ctrl, b"\x30"))


def reconcile(chunks: Iterator[Chunk], until: float) -> tuple[list[Finding], Reconciler]:
    """The monitor and the reconciler alone, relay-style (one decoder per side)."""
    monitor = SinopecMonitor([1])
    rec = Reconciler(3, SETTINGS, 0.0, START)
    findings: list[Finding] = []
    frames = 0
    for chunk in chunks:
        wall = START + timedelta(seconds=chunk.at)
        if chunk.from_pos:
            events = monitor.receive_request(chunk.data)
        else:
            events = monitor.receive_response(chunk.data)
        if monitor.master_frames != frames:
            frames = monitor.master_frames
            findings += rec.pos_active(chunk.at)
        for e in events:
            if isinstance(e, Sale):
                nozzle = f"p03.a1.n{e.nozzle}"
                findings += rec.sale(nozzle, e, chunk.at, wall)
                assert e.counter is not None  # the store commits its order at once
                findings += rec.order_stored(1, e.counter, e.key, f"{nozzle}:{e.counter}")
            elif isinstance(e, Confirmation):
                findings += rec.confirmation(e, chunk.at, wall)
        findings += rec.tick(chunk.at, wall)
    findings += rec.tick(until, START + timedelta(seconds=until))
    return findings, rec


def test_a_thousand_clean_sales_give_no_finding() -> None:
    # 1000 sales 10 s apart: nearly 3 h, so two window ends pass as well.
    findings, rec = reconcile(line(1000), until=3 * 3600 + 120)
    assert findings == []
    assert rec.counters["sales"] == rec.counters["confirmations"] == 1000
    assert not rec._windows, "every window was balanced and closed"


def test_short_confirmations_are_matched_by_number_alone() -> None:
    findings, rec = reconcile(line(50, values=False), until=1200)
    assert findings == [] and rec.counters["confirmations"] == 50


def test_one_skip_in_twenty_and_a_different_amount() -> None:
    skip = frozenset(range(20, 201, 20))  # one in 20
    off = frozenset({7, 77})
    findings, _ = reconcile(line(200, skip=skip, amount_off=off), until=3600 + 120)
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        by_code.setdefault(f.code, []).append(f)
    assert sorted(by_code) == [CONFIRM_MISMATCH, ORDER_COUNT_IMBALANCE, SALE_UNCONFIRMED]
    unconfirmed = by_code[SALE_UNCONFIRMED]
    assert sorted(f.detail["pos_ttc"] for f in unconfirmed) == sorted(skip)
    first = next(f for f in unconfirmed if f.detail["pos_ttc"] == 20)
    rec20 = record(20, 1, 0)
    assert first.source == "p03.a1.n1"
    assert first.detail["amount"] == format(rec20.amn / 100, ".2f")
    assert first.detail["order_key"].startswith("p03.a1.n1/20:")
    assert float(first.detail["waited_s"]) >= SETTINGS.confirm_within_s
    mismatches = by_code[CONFIRM_MISMATCH]
    assert sorted(f.detail["pos_ttc"] for f in mismatches) == [7, 77]
    seven = next(f for f in mismatches if f.detail["pos_ttc"] == 7)
    dispensed = record(7, 2, 0).amn
    assert seven.detail["differs"] == {
        "amount": {"dispenser": f"{dispensed / 100:.2f}", "pos": f"{(dispensed + 100) / 100:.2f}"}
    }
    # Sales 1..200 at 10 s from 00:00:05: 00:00-01:00 holds 1..359 → 1..200;
    # the skipped ones split between the two nozzles (even numbers: nozzle 1).
    imbalance = by_code[ORDER_COUNT_IMBALANCE]
    assert [(f.source, f.detail["dispenser"] - f.detail["pos_confirmed"]) for f in imbalance] == [
        ("p03.a1.n1", 10)
    ]
    assert imbalance[0].detail["from"] == "2026-12-07T00:00:00+08:00"


def test_a_confirmation_of_a_number_never_reported() -> None:
    chunks = list(line(5))
    ghost = encode_frame(Frame(1, POS, 9, build_confirm_values(999, 5000, 600)))
    chunks.append(Chunk(60.0, True, ghost))
    chunks.append(Chunk(60.5, True, ghost))  # the POS repeats it: one finding
    findings, _ = reconcile(iter(chunks), until=200)
    (f,) = findings
    assert (f.code, f.source) == (CONFIRM_MISMATCH, "p03.a1")
    assert f.detail["reason"] == "never_reported" and f.detail["pos_ttc"] == 999


def test_a_late_confirmation_is_counted_in_the_day() -> None:
    rec = Reconciler(3, SETTINGS, 0.0, START)
    sale = record_sale_of(1)
    assert rec.sale("p03.a1.n1", sale, 1.0, START) == []
    assert rec.order_stored(1, 1, sale.key, "p03.a1.n1:1") == []
    (late,) = rec.tick(40.0, START + timedelta(seconds=40))
    assert late.code == SALE_UNCONFIRMED
    assert rec.confirmation(Confirmation(1, 1), 50.0, START) == []
    assert rec.counters["late"] == 1
    assert rec.tick(3700.0, START + timedelta(seconds=3700)) == []  # balanced


def test_a_finding_waits_for_its_order_to_be_stored() -> None:
    """On a tap the confirmation can come before the writer committed the order."""
    rec = Reconciler(3, SETTINGS, 0.0, START)
    one, two = record_sale_of(1), record_sale_of(2)
    assert rec.sale("p03.a1.n1", one, 1.0, START) == []
    assert rec.confirmation(Confirmation(1, 1, one.amount + 1, one.volume), 1.1, START) == []
    (mismatch,) = rec.order_stored(1, 1, one.key, "p03.a1.n1:1")
    assert (mismatch.code, mismatch.detail["order"]) == (CONFIRM_MISMATCH, "p03.a1.n1:1")
    # One the store never names (it refused the order) goes unnamed, late.
    assert rec.sale("p03.a1.n1", two, 2.0, START) == []
    assert rec.confirmation(Confirmation(1, 2, two.amount + 1, two.volume), 2.1, START) == []
    assert rec.tick(2.1 + NAME_WAIT_S - 0.5, START) == []
    (unnamed,) = rec.tick(2.1 + NAME_WAIT_S, START)
    assert (unnamed.code, unnamed.detail["order"], unnamed.detail["pos_ttc"]) == (
        CONFIRM_MISMATCH, None, 2
    )  # fmt: skip
    assert rec.counters["unnamed"] == 1


def record_sale_of(n: int) -> Sale:
    from protocols.sinopec.messages import record_sale

    return record_sale(record(n, 1, 1_000_000 + n), 1)


def test_link_bypassed_when_the_pos_is_silent_and_sales_go_on() -> None:
    rec = Reconciler(3, SETTINGS, 0.0, START)
    assert rec.pos_active(10.0) == []
    assert rec.sale("p03.a1.n1", record_sale_of(1), 30.0, START) == []  # POS silent 20 s
    (raised,) = rec.sale("p03.a1.n1", record_sale_of(2), 80.0, START)
    assert (raised.code, raised.source, raised.raised) == (LINK_BYPASSED, "p03", True)
    assert raised.detail["pos_silent_s"] == "70.0" and raised.detail["sales_while_silent"] == 1
    assert rec.tick(81.0, START) != []  # not taken yet: asked again
    rec.bypass_taken(True)
    assert [f.code for f in rec.tick(82.0, START) if f.code == LINK_BYPASSED] == []
    (cleared,) = rec.pos_active(90.0)
    assert (cleared.code, cleared.raised) == (LINK_BYPASSED, False)


# ---------------------------------------------------------------- through the store


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.t)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[OrderStore]:
    s = OrderStore(tmp_path / "store.sqlite")
    yield s
    s.close()


def alarms(store: OrderStore) -> list[dict[str, Any]]:
    assert store.writer.flush()
    return list(store.records("alarm"))


def test_findings_are_stored_alarms_naming_the_order(store: OrderStore) -> None:
    clock = Clock()
    monitor = SinopecMonitor([1])
    sink = PortSink(number=3, store=store, nozzles=NozzleTable(), station="S", tz=CST,
                    on_commit=lambda: None)  # fmt: skip
    sink.books = PortBooks(sink, monitor, SETTINGS, clock=clock, wall=clock.wall)
    for chunk in line(40, skip=frozenset({20, 40}), amount_off=frozenset({7})):
        clock.t = chunk.at
        parse = monitor.receive_request if chunk.from_pos else monitor.receive_response
        assert sink.parse_guarded(parse, chunk.data, "RELAY_PARSER_FAILED")
        assert store.writer.flush()  # the daemon's writer task, meanwhile
        sink.books.tick()
    clock.t = 3600 + 60
    sink.books.tick()
    found = alarms(store)
    orders = {o["order_no"]: o for o in store.orders()}
    assert len(orders) == 40
    got = sorted((a["code"], a["source"], a["detail"].get("pos_ttc")) for a in found)
    assert got == [
        (CONFIRM_MISMATCH, "p03.a1.n2", 7),
        (ORDER_COUNT_IMBALANCE, "p03.a1.n1", None),
        (SALE_UNCONFIRMED, "p03.a1.n1", 20),
        (SALE_UNCONFIRMED, "p03.a1.n1", 40),
    ]
    for a in found:
        if a["code"] in (SALE_UNCONFIRMED, CONFIRM_MISMATCH):
            order = orders[str(a["detail"]["pos_ttc"])]
            assert a["detail"]["order"] == order["rid"]
            assert a["detail"]["amount"] == order["amount"]
            assert a["state"] == "raised"
    assert sink.books.findings == {
        CONFIRM_MISMATCH: 1, ORDER_COUNT_IMBALANCE: 1, SALE_UNCONFIRMED: 2
    }  # fmt: skip
    # A finding handed again (a retry) is stored once: its rid is the fact's.
    last = next(a for a in found if a["code"] == SALE_UNCONFIRMED)
    body = {k: v for k, v in last.items() if k != "rid"}
    sink.books._hand(last["rid"], body)
    assert len(alarms(store)) == len(found)


def test_link_bypassed_is_a_stored_state_restored_after_a_restart(store: OrderStore) -> None:
    clock = Clock()
    monitor = SinopecMonitor([1])

    def port() -> PortSink:
        sink = PortSink(number=3, store=store, nozzles=NozzleTable(), station="S", tz=CST,
                        on_commit=lambda: None)  # fmt: skip
        sink.books = PortBooks(sink, monitor, SETTINGS, clock=clock, wall=clock.wall)
        return sink

    sink = port()
    # Another master sells through the pump (its frames reach the dispenser
    # side only); the POS's side stays silent past the threshold.
    clock.t = 100.0
    wire = encode_frame(Frame(POS, 1, 1, build_record(record(1, 1, 1_000_500))))
    sink.parse_guarded(monitor.receive_response, wire, "RELAY_PARSER_FAILED")
    assert [(a["code"], a["state"]) for a in alarms(store)] == [(LINK_BYPASSED, "raised")]
    sink = port()  # a restart: the raise is read back, not raised again
    assert sink.books is not None and sink.books.reconciler.bypassed
    clock.t = 101.0
    sink.parse_guarded(monitor.receive_request, poll(2), "RELAY_PARSER_FAILED")
    codes = [(a["code"], a["state"]) for a in alarms(store)]
    assert codes == [(LINK_BYPASSED, "raised"), (LINK_BYPASSED, "cleared")]
