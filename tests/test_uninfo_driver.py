"""The Changkong Uninfo poll driver (protocols/uninfo/driver.py, reading.py).

Replies are laid out as ``fangym0335/first src/lischn011.c`` reads them
(tests/uninfo_source.py). The pump answers through :class:`Pump`, a dict
of what it says to each command.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale, Totals
from protocols.uninfo.driver import UninfoPoller
from protocols.uninfo.messages import GradeTotals, SaleRecord
from protocols.uninfo.reading import attribute
from tests.uninfo_source import fcc_display, fcc_sale, fcc_totals

CLOCK = datetime(2026, 3, 1, 9, 30)
T1 = (1, 9_282_232, 72_866_521, 785)
T2 = (2, 10_722_328, 88_155_177, 836)
#: Nozzle 2 sold 25.00 L at 8.36: its totals after.
T2_AFTER = (2, 10_724_828, 88_176_077, 836)
RECORD = fcc_sale(3, 836, 2500, 20900)


class Pump:
    """Pump 3's answers by command nibble; ``state`` is its status."""

    def __init__(self, state: int = 1, *, totals: bytes = b"", record: bytes = b"") -> None:
        self.state = state
        self.answers = {0xB: totals, 0xC: record, 0x8: fcc_display(1234, 567)}
        self.heard: list[int] = []

    def __call__(self, request: bytes) -> bytes:
        [byte] = request
        self.heard.append(byte)
        if byte >> 4 == 0xA:
            return bytes([self.state << 4 | (byte & 0x0F)])
        return self.answers[byte >> 4]


def poller(**options: object) -> UninfoPoller:
    return UninfoPoller([3], clock=lambda: CLOCK, **options)  # type: ignore[arg-type]


def step(driver: UninfoPoller, pump: Callable[[bytes], bytes]) -> list[Event]:
    request = driver.next_request()
    assert request is not None
    reply = pump(request)
    return driver.receive_data(reply) if reply else driver.response_timeout()


def turn(driver: UninfoPoller, pump: Pump) -> list[Event]:
    events = step(driver, pump)
    while driver.mid_exchange:
        events += step(driver, pump)
    return events


def sales(events: list[Event]) -> list[Sale]:
    return [e for e in events if isinstance(e, Sale)]


def test_the_fccs_replies_read_to_their_documented_values() -> None:
    pump = Pump(totals=fcc_totals([T1]), record=fcc_sale(3, 785, 2500, 19625))
    driver = poller(grades={"1": "1092"})
    events = turn(driver, pump)
    assert [bytes([b]) for b in pump.heard] == [
        b"\xa3",
        b"\xb3",
        b"\xb3",
        b"\xc3",
        b"\xc3",
        b"\xa3",
    ]
    assert events[0] == PumpLink(3, online=True)
    assert Totals(3, 1, Decimal("92822.32"), Decimal("728665.21")) in events
    [sale] = sales(events)
    assert sale == Sale(
        address=3,
        nozzle=1,
        order_no="9282232",
        ended_at=CLOCK,
        grade="1092",
        price=Decimal("7.85"),
        volume=Decimal("25.00"),
        amount=Decimal("196.25"),
        totalizer_volume_end=Decimal("92822.32"),
        totalizer_amount_end=Decimal("728665.21"),
        key="1:9282232",
        raw=fcc_sale(3, 785, 2500, 19625),
    )
    driver.sale_committed(sale)
    pump.heard.clear()
    assert sales(turn(driver, pump)) == [] and pump.heard == [0xA3]  # nothing due


def test_a_fill_on_nozzle_2_is_its_sale_paired_with_the_totals_after_it() -> None:
    pump = Pump(totals=fcc_totals([T1, T2]), record=fcc_sale(3, 785, 0, 0))
    driver = poller()
    assert sales(turn(driver, pump)) == []  # an empty record: no sale, accounted
    pump.state = 4
    events = turn(driver, pump)  # fuelling: the running display
    live = NozzleStatus(
        3, 2, NozzleState.FUELLING, Decimal("5.67"), Decimal("12.34"), Decimal("8.36")
    )
    assert live in events
    pump.state = 6
    pump.answers.update({0xB: fcc_totals([T1, T2_AFTER]), 0xC: RECORD})
    [sale] = sales(turn(driver, pump))
    assert (sale.nozzle, sale.key, sale.volume) == (2, "2:10724828", Decimal("25.00"))
    assert sale.totalizer_amount_end == Decimal("881760.77")


def test_a_sale_not_committed_is_read_and_emitted_again_alike() -> None:
    pump = Pump(totals=fcc_totals([T1, T2_AFTER]), record=RECORD)
    driver = poller()
    [first] = sales(turn(driver, pump))
    [again] = sales(turn(driver, pump))
    assert again == first
    driver.sale_committed(again)
    assert sales(turn(driver, pump)) == []


def test_a_fill_starting_before_the_records_reads_end_makes_no_sale() -> None:
    pump = Pump(totals=fcc_totals([T1]), record=fcc_sale(3, 785, 2500, 19625))
    driver = poller()
    for _ in range(5):
        step(driver, pump)  # A, B, B, C, C
    pump.state = 4
    assert sales(step(driver, pump)) == []  # the confirming status says fuelling
    assert not driver.mid_exchange


def test_reads_that_never_agree_count_nothing() -> None:
    """A record whose reads keep differing (a fill that moves it, a line that
    garbles it alike in no two reads) is no sale after its tries."""
    records = [fcc_sale(3, 785, 2500 + k, 19625 + k) for k in range(10)]
    pump = Pump(totals=fcc_totals([T1]), record=records[0])
    driver = poller()
    events: list[Event] = []
    for _ in range(3):
        events += step(driver, pump)  # A, B, B
    for record in records:
        if not driver.mid_exchange:
            break
        pump.answers[0xC] = record
        events += step(driver, pump)
    assert sales(events) == [] and not driver.mid_exchange
    assert driver.counters["records_moving"] == 1


def test_attribution_rules() -> None:
    before = {1: GradeTotals(*T1), 2: GradeTotals(*T2)}
    record = SaleRecord(3, 836, 2500, 20900)
    after = (GradeTotals(*T1), GradeTotals(*T2_AFTER))
    assert attribute(record, before, after) == GradeTotals(*T2_AFTER)  # grew by its volume
    missed = (GradeTotals(*T1), GradeTotals(2, 10_730_000, 88_200_000, 836))
    assert attribute(record, before, missed) == missed[1]  # the one that grew
    both = (GradeTotals(1, 9_290_000, 72_900_000, 785), missed[1])
    assert attribute(record, before, both) == missed[1]  # of those, the one at its price
    assert attribute(record, None, after) == GradeTotals(*T2_AFTER)  # first read: its price
    same = (GradeTotals(1, 5, 6, 836), GradeTotals(2, 7, 8, 836))
    assert isinstance(attribute(record, None, same), str)


def test_a_record_of_no_known_nozzle_is_reported_once_and_accounted() -> None:
    same_price = fcc_totals([(1, 5, 6, 836), (2, 7, 8, 836)])
    pump = Pump(totals=same_price, record=RECORD)
    driver = poller()
    [error] = [e for e in turn(driver, pump) if isinstance(e, ProtocolError)]
    assert error.kind == "bad_message" and "no known nozzle" in error.detail
    pump.heard.clear()
    assert turn(driver, pump) == [] and pump.heard == [0xA3]


def test_offline_after_missed_answers_and_back() -> None:
    driver = poller(offline_after=2)
    step(driver, Pump(totals=fcc_totals([T1]), record=fcc_sale(3, 785, 0, 0)))
    events = [e for _ in range(2) for e in step(driver, lambda _: b"")]
    assert PumpLink(3, online=False) in events
    assert PumpLink(3, online=True) in step(driver, Pump())


def test_with_echo_each_request_comes_back_first() -> None:
    pump = Pump(totals=fcc_totals([T1]), record=fcc_sale(3, 785, 2500, 19625))
    driver = poller(echo=True)
    events = turn(driver, lambda r: r + pump(r))  # type: ignore[arg-type]
    assert len(sales(events)) == 1 and driver.counters["echoes"] == 6


def test_emitting_a_command_that_changes_the_pump_is_forbidden() -> None:
    driver = poller()
    for command in (0x9, 0x7, 0xD):
        with pytest.raises(ForbiddenCommand):
            driver._emit(command, 3)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("state"), st.sampled_from([0, 1, 2, 3, 4, 5, 6])),
        st.tuples(st.just("bytes"), st.binary(max_size=90)),
        st.tuples(st.just("answer"), st.just(b"")),
        st.tuples(st.just("timeout"), st.just(b"")),
        st.tuples(st.just("commit"), st.just(b"")),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.booleans())
def test_d20_only_allowed_commands_ever_leave(ops: list[tuple[str, object]], echo: bool) -> None:
    """Whatever comes back, every byte the driver writes is one read request of
    a configured pump; the only sale is the one the pump's record holds."""
    pump = Pump(totals=fcc_totals([T1, T2_AFTER]), record=RECORD)
    driver = poller(echo=echo)
    found: list[Sale] = []
    for op, arg in ops:
        if op == "state":
            assert isinstance(arg, int)
            pump.state = arg
            continue
        request = driver.next_request()
        assert request is not None and len(request) == 1
        assert request[0] >> 4 in UninfoPoller.ALLOWED_COMMANDS and request[0] & 0x0F == 3
        if op == "bytes":
            assert isinstance(arg, bytes)
            events = driver.receive_data(arg)
        elif op == "answer":
            events = driver.receive_data((request if echo else b"") + pump(request))
        elif op == "timeout":
            events = driver.response_timeout()
        else:
            events = driver.response_timeout()
            if found:
                driver.sale_committed(found[-1])
        found += sales(events)
    assert all(s.key == "2:10724828" and s.volume == Decimal("25.00") for s in found)
