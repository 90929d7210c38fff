"""GilbarcoPoller: polling with the echo, reading a sale, store first, link state.

Replies are the real layouts (protocols.md §4; the FCC's offsets are tested
frame by frame in test_gilbarco_messages.py); the pump answers as a loop
does: the echo of our command first (§4), except where a test says not.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest

from protocols.base import PollDriver
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale
from protocols.gilbarco.codes import nibble_pump, status_byte
from protocols.gilbarco.driver import GilbarcoPoller
from protocols.gilbarco.messages import (
    Decimals,
    GradeTotals,
    SaleParts,
    TotalsData,
    TransactionData,
    encode_frame,
    running_words,
    sale_of,
    totals_body,
    transaction_body,
)
from protocols.gilbarco.reading import MAX_PARKS, MAX_READ_ATTEMPTS
from tests.test_gilbarco_messages import CAPTURED_TXN

EPOCH = datetime(2026, 5, 1, 12, 0, 0)
E = TypeVar("E", NozzleStatus, Sale, PumpLink, ProtocolError)

TOT_DATA = TotalsData(
    (GradeTotals(1, 111, 222, 785, 785), GradeTotals(2, 10_002_000, 80_000_000, 836, 836))
)
TOT = encode_frame(totals_body(TOT_DATA))


def txn_data(pump: int) -> TransactionData:
    return TransactionData(pump=pump, grade=2, price=836, volume=2000, money=16_720)


def txn(pump: int) -> bytes:
    return encode_frame(transaction_body(txn_data(pump)))


TXN = txn(1)
BAD_LRC = TXN[:-2] + bytes([TXN[-2] ^ 0x01, 0xF0])


class Clock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def st_byte(status: int, pump: int) -> bytes:
    return bytes([status_byte(status, pump)])


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def errors(events: list[Event]) -> list[str]:
    return [e.kind for e in events if isinstance(e, ProtocolError)]


def expected_sale(address: int, ended_at: datetime, dp: Decimals | None = None) -> Sale:
    grade = TOT_DATA.of(2)
    assert grade is not None
    wire = txn(address)
    return sale_of(
        address, SaleParts(txn_data(address), grade, wire + TOT), ended_at, dp or Decimals()
    )


def turn(driver: GilbarcoPoller, want: bytes, reply: bytes, *, echo: bool = True) -> list[Event]:
    """One request (checked), the loop's echo and the reply; a timeout if that
    did not complete it."""
    assert driver.next_request() == want
    events = driver.receive_data((want if echo else b"") + reply)
    if driver.awaiting_response:
        events += driver.response_timeout()
    return events


def read_sale(driver: GilbarcoPoller, pump: int, end: int = 0xA) -> list[Event]:
    """Status ``end`` twice, then 4 twice and 5 twice: the events of the last reply."""
    nib = pump & 0x0F
    turn(driver, bytes([nib]), st_byte(end, pump))
    turn(driver, bytes([nib]), st_byte(end, pump))
    assert turn(driver, bytes([0x40 | nib]), txn(pump)) == []
    assert turn(driver, bytes([0x40 | nib]), txn(pump)) == []
    assert turn(driver, bytes([0x50 | nib]), TOT) == []
    return turn(driver, bytes([0x50 | nib]), TOT)


# ---------------------------------------------------------------- polling


def test_is_a_poll_driver() -> None:
    driver: PollDriver = GilbarcoPoller([1])
    assert driver.name == "gilbarco"
    assert frozenset({0x0, 0x4, 0x5, 0x6}) == driver.ALLOWED_COMMANDS


def test_round_robin_status_polls_pump_16_is_nibble_0() -> None:
    driver = GilbarcoPoller([1, 2, 16])
    got = []
    for _ in range(6):
        request = driver.next_request()
        assert request is not None and driver.awaiting_response
        got.append(request)
        driver.receive_data(request + st_byte(6, nibble_pump(request[0])))
        assert not driver.awaiting_response
    assert got == [b"\x01", b"\x02", b"\x00"] * 2
    assert driver.counters["echo"] == 6 and driver.counters["status_rx"] == 6


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0x6, NozzleState.IDLE),
        (0x7, NozzleState.LIFTED),
        (0x8, NozzleState.LIFTED),  # authorised after a lift (lischn001.c:770)
        (0xA, NozzleState.IDLE),
        (0xB, NozzleState.IDLE),
        (0xC, NozzleState.ABNORMAL),
    ],
)
def test_status_to_nozzle_state(status: int, state: NozzleState) -> None:
    driver = GilbarcoPoller([3])
    assert turn(driver, b"\x03", st_byte(status, 3)) == [
        PumpLink(3, online=True),
        NozzleStatus(3, 0, state),  # per pump: nozzle 0
    ]


def test_the_echo_is_optional() -> None:
    """Behind the FCC's IO board no echo reaches the driver (lischn001.c:2051-2056)."""
    driver = GilbarcoPoller([1])
    assert turn(driver, b"\x01", b"\x71", echo=False)[1:] == [
        NozzleStatus(1, 0, NozzleState.LIFTED)
    ]
    assert driver.counters["echo"] == 0


def test_data_error_and_send_data_change_nothing() -> None:
    driver = GilbarcoPoller([1])
    assert turn(driver, b"\x01", b"\x01") == [PumpLink(1, True)]  # echo, then status 0
    assert turn(driver, b"\x01", b"\xd1") == []
    assert driver.counters["data_errors"] == 1 and driver.counters["status_rx"] == 2


def test_busy_then_the_running_display() -> None:
    driver = GilbarcoPoller([1, 2], money_decimals=2)
    assert turn(driver, b"\x01", b"\x91")[1:] == [NozzleStatus(1, 0, NozzleState.FUELLING)]
    assert driver.mid_exchange  # 6p right after, not a poll interval later
    assert turn(driver, b"\x61", running_words(1250)) == [
        NozzleStatus(1, 0, NozzleState.FUELLING, amount=Decimal("12.50"))
    ]
    assert not driver.mid_exchange and driver.next_request() == b"\x02"
    assert driver.counters["running_rx"] == 1


def test_other_pumps_status_is_unexpected_and_we_keep_waiting() -> None:
    driver = GilbarcoPoller([1, 2])
    assert driver.next_request() == b"\x01"
    assert errors(driver.receive_data(b"\x01\x72")) == ["unexpected"]
    assert driver.awaiting_response
    assert only(driver.receive_data(b"\x71"), NozzleStatus) == [
        NozzleStatus(1, 0, NozzleState.LIFTED)
    ]


def test_bytes_nobody_asked_for_are_unexpected() -> None:
    driver = GilbarcoPoller([1])
    assert errors(driver.receive_data(b"\x61")) == ["unexpected"]
    assert errors(turn(driver, b"\x01", b"\x61\x61")) == ["unexpected"]
    assert driver.counters["unexpected"] == 2


def test_port_task_moving_on_without_a_timeout() -> None:
    driver = GilbarcoPoller([1, 2])
    assert driver.next_request() == b"\x01"
    assert driver.next_request() == b"\x02"  # no error, nothing counted as a miss
    assert only(driver.receive_data(b"\x02\x62"), PumpLink) == [PumpLink(2, True)]


def test_the_captured_frame_is_read_as_pump_2s() -> None:
    """The published capture (test_gilbarco_messages.py) names pump 2 in its
    pump data; asked of pump 2 it is read, asked of pump 1 it is not ours."""
    for pump, kinds in ((2, []), (1, ["bad_message"])):
        driver = GilbarcoPoller([pump])
        turn(driver, bytes([pump]), st_byte(0xA, pump))
        turn(driver, bytes([pump]), st_byte(0xA, pump))
        assert errors(turn(driver, bytes([0x40 | pump]), CAPTURED_TXN)) == kinds


# ---------------------------------------------------------------- reading a sale


def test_read_sequence_and_the_sale() -> None:
    clock = Clock()
    driver = GilbarcoPoller([1, 2], clock=clock)
    assert turn(driver, b"\x01", b"\xa1") == [
        PumpLink(1, True),
        NozzleStatus(1, 0, NozzleState.IDLE),
    ]
    clock.advance(1)
    turn(driver, b"\x02", b"\x62")  # one end status is not enough: round robin goes on
    turn(driver, b"\x01", b"\xa1")  # the second in a row: read at once
    for request, reply in ((b"\x41", TXN), (b"\x41", TXN), (b"\x51", TOT)):
        assert turn(driver, request, reply) == []  # each step until two readings agree
    (sale,) = turn(driver, b"\x51", TOT)
    assert sale == expected_sale(1, EPOCH)  # ended_at: when the end was first seen
    assert isinstance(sale, Sale)
    assert (sale.order_no, sale.key, sale.nozzle, sale.grade) == ("10002000", "2:10002000", 2, "2")
    assert (sale.price, sale.volume, sale.amount) == (
        Decimal("8.36"),
        Decimal("20.00"),
        Decimal("167.20"),
    )
    assert (sale.totalizer_volume_end, sale.totalizer_amount_end) == (
        Decimal("100020.00"),
        Decimal("800000.00"),
    )
    assert sale.raw == TXN + TOT
    c = driver.counters
    assert (c["requests"], c["frames"], c["reads"], c["sales"], c["echo"]) == (7, 4, 1, 1, 7)
    assert turn(driver, b"\x02", b"\x62") == [NozzleStatus(2, 0, NozzleState.IDLE)]


def test_one_corrupted_end_status_starts_no_read() -> None:
    driver = GilbarcoPoller([1])
    for reply in (b"\x91", b"\xb1", b"\x91", b"\xa1", b"\xd1", b"\x91"):
        turn(driver, b"\x01", reply)
        if reply == b"\x91":
            turn(driver, b"\x61", running_words(0))
    assert driver.counters["reads"] == 0
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x01", b"\xd1")  # D: changes nothing, breaks nothing
    turn(driver, b"\x01", b"\xb1")
    assert driver.next_request() == b"\x41"


def test_off_after_a_fill_is_read_too() -> None:
    """Some pumps skip the end status: 9 then 6 (the FCC reads then too,
    lischn001.c:676-686)."""
    clock = Clock()
    driver = GilbarcoPoller([1], clock=clock)
    turn(driver, b"\x01", b"\x91")
    turn(driver, b"\x61", running_words(100))
    clock.advance(2)
    turn(driver, b"\x01", b"\x61")
    turn(driver, b"\x01", b"\x61")
    for request, reply in ((b"\x41", TXN), (b"\x41", TXN), (b"\x51", TOT)):
        assert turn(driver, request, reply) == []
    assert only(turn(driver, b"\x51", TOT), Sale) == [expected_sale(1, clock.now)]
    for _ in range(3):  # read once: 6 goes on without reads
        turn(driver, b"\x01", b"\x61")
    assert driver.counters["reads"] == 1


def test_store_first_re_emits_the_same_sale_until_committed() -> None:
    clock = Clock()
    driver = GilbarcoPoller([1], clock=clock)
    first = only(read_sale(driver, 1), Sale)
    clock.advance(5)
    turn(driver, b"\x01", b"\xb1")  # B, not committed: read again
    for request, reply in ((b"\x41", TXN), (b"\x41", TXN), (b"\x51", TOT)):
        turn(driver, request, reply)
    again = only(turn(driver, b"\x51", TOT), Sale)
    assert first == again == [expected_sale(1, EPOCH)]
    driver.sale_committed(again[0])
    driver.sale_committed(again[0])
    for _ in range(3):  # B, committed: no more reads
        assert turn(driver, b"\x01", b"\xb1") == [NozzleStatus(1, 0, NozzleState.IDLE)]
    turn(driver, b"\x01", b"\xa1")  # A always reads, but a committed key emits nothing
    for request, reply in ((b"\x41", TXN), (b"\x41", TXN), (b"\x51", TOT), (b"\x51", TOT)):
        assert turn(driver, request, reply) == []
    assert driver.counters["rereads"] == 1 and driver.counters["sales"] == 2


def test_new_end_after_a_fill_is_read_even_as_b() -> None:
    clock = Clock()
    driver = GilbarcoPoller([1], clock=clock)
    driver.sale_committed(only(read_sale(driver, 1), Sale)[0])
    turn(driver, b"\x01", b"\x91")  # fuelling again
    turn(driver, b"\x61", running_words(5))
    clock.advance(60)
    assert read_sale(driver, 1, end=0xB) == []  # same key (this test pump's data): nothing
    assert driver.counters["rereads"] == 1


def test_readings_that_differ_do_not_count() -> None:
    other = encode_frame(transaction_body(dataclasses.replace(txn_data(1), volume=2001)))
    driver = GilbarcoPoller([1])
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x01", b"\xa1")
    assert turn(driver, b"\x41", other) == []  # e.g. an error the LRC missed
    assert errors(turn(driver, b"\x41", TXN)) == ["bad_message"]  # unlike the last
    assert turn(driver, b"\x41", TXN) == []  # two alike: the next step
    assert turn(driver, b"\x51", TOT) == []
    moved = TotalsData((GradeTotals(1, 999, 999), TOT_DATA.grades[1]))  # hose 1 sold meanwhile
    assert only(turn(driver, b"\x51", encode_frame(totals_body(moved))), Sale)
    assert driver.counters["bad_readings"] == 1


@pytest.mark.parametrize(
    ("step", "reply", "kind"),
    [
        (4, BAD_LRC, "bad_lrc"),
        (4, TOT, "bad_message"),  # totals where the transaction was asked
        (4, txn(2), "bad_message"),  # another pump's transaction
        (5, TXN, "bad_message"),  # a transaction where totals were asked
        (5, encode_frame(totals_body(TotalsData((GradeTotals(1, 5, 6),)))), "bad_message"),
        (5, TOT[:9], "truncated"),  # then the deadline
    ],
)
def test_spoilt_replies_retried_parked_then_given_up(step: int, reply: bytes, kind: str) -> None:
    driver = GilbarcoPoller([1, 2])
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x02", b"\x62")
    turn(driver, b"\x01", b"\xa1")
    if step == 5:
        turn(driver, b"\x41", TXN)
        turn(driver, b"\x41", TXN)
    request = bytes([step << 4 | 1])
    for park in range(MAX_PARKS):
        for _ in range(MAX_READ_ATTEMPTS):
            assert errors(turn(driver, request, reply))[0] == kind
        # Parked: pump 2's turn, then the read goes on with no status poll to pump 1.
        assert turn(driver, b"\x02", b"\x62")[-1] == NozzleStatus(2, 0, NozzleState.IDLE)
        assert driver.counters["reads_parked"] == min(park + 1, MAX_PARKS - 1)
    assert driver.counters["reads_failed"] == 1
    assert driver.next_request() == b"\x01"  # given up: status polls again


def test_retry_succeeds_and_keeps_the_first_sighting() -> None:
    clock = Clock()
    driver = GilbarcoPoller([1, 2], clock=clock)
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x02", b"\x62")
    turn(driver, b"\x01", b"\xa1")
    assert errors(turn(driver, b"\x41", b"")) == ["timeout"]  # only the echo: the read stops
    turn(driver, b"\x02", b"\x62")
    clock.advance(3)
    turn(driver, b"\x01", b"\xa1")
    assert errors(turn(driver, b"\x41", TXN[:10])) == ["truncated", "timeout"]  # spoilt: retried
    assert errors(turn(driver, b"\x41", b"\xe3" + TXN)) == ["garbage"]
    turn(driver, b"\x41", TXN)
    turn(driver, b"\x51", TOT)
    assert driver.next_request() == b"\x51"
    assert driver.receive_data(b"\x51" + TOT[:7]) == [] and driver.awaiting_response
    assert driver.receive_data(TOT[7:]) == [expected_sale(1, EPOCH)]
    assert not driver.awaiting_response


def test_reply_split_into_single_bytes() -> None:
    driver = GilbarcoPoller([1])
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x01", b"\xa1")
    assert driver.next_request() == b"\x41"
    for byte in b"\x41" + TXN:
        assert driver.awaiting_response
        assert driver.receive_data(bytes([byte])) == []
    assert not driver.awaiting_response


def test_bytes_after_a_reply_are_unexpected() -> None:
    driver = GilbarcoPoller([1])
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x01", b"\xa1")
    assert errors(turn(driver, b"\x41", TXN + b"\xe3\xf6")) == ["unexpected"]
    assert errors(turn(driver, b"\x41", TXN + TXN[:5])) == []
    assert driver.next_request() == b"\x51"
    assert driver.counters["stale_bytes"] == 5  # dropped at the next request
    assert driver.counters["unexpected"] == 1


def test_decimal_places_and_pump_16() -> None:
    dp = dict(volume_decimals=3, money_decimals=1, price_decimals=3, volume_total_decimals=1)
    driver = GilbarcoPoller([16], **dp, money_total_decimals=0)
    (sale,) = only(read_sale(driver, 16), Sale)
    assert (sale.address, sale.price, sale.volume, sale.amount) == (
        16,
        Decimal("0.836"),
        Decimal("2.000"),
        Decimal("1672.0"),
    )
    assert (sale.totalizer_volume_end, sale.totalizer_amount_end) == (
        Decimal("1000200.0"),
        Decimal("80000000"),
    )


# ---------------------------------------------------------------- link


def test_offline_after_n_silent_requests_then_back_online() -> None:
    driver = GilbarcoPoller([1], offline_after=3)
    links: list[PumpLink] = []
    for _ in range(5):
        events = turn(driver, b"\x01", b"")  # the echo only: nobody answered
        assert errors(events) == ["timeout"]
        links += only(events, PumpLink)
    assert links == [PumpLink(1, online=False)] and driver.counters["timeouts"] == 5
    assert errors(turn(driver, b"\x01", b"\xe7")) == ["unexpected", "timeout"]  # not a reply
    assert only(turn(driver, b"\x01", b"\x61"), PumpLink) == [PumpLink(1, online=True)]
    for _ in range(2):  # misses count from zero again
        assert not only(turn(driver, b"\x01", b""), PumpLink)
    assert driver.response_timeout() == []  # nothing outstanding: nothing happens


def test_a_spoilt_reply_is_not_a_miss() -> None:
    driver = GilbarcoPoller([1], offline_after=1)
    turn(driver, b"\x01", b"\xa1")
    turn(driver, b"\x01", b"\xa1")
    assert errors(turn(driver, b"\x41", TXN[:5])) == ["truncated", "timeout"]
    assert only(turn(driver, b"\x41", b""), PumpLink) == [PumpLink(1, online=False)]


def test_constructor_checks() -> None:
    for bad in ([], [0], [17], [1, 1]):
        with pytest.raises(ValueError):
            GilbarcoPoller(bad)
    with pytest.raises(ValueError):
        GilbarcoPoller([1], offline_after=0)
    with pytest.raises(ValueError):
        GilbarcoPoller([1], volume_decimals=5)
