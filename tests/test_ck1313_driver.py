"""Ck1313Poller against replies laid out as ``fangym0335/first src/lischn006.c`` reads them.

:class:`SourcePump` answers with the byte positions the FCC checks and
copies (cited there), not with our own builder; byte 1's low nibble is
never checked by the FCC, so it sends 0 there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand, PollDriver
from protocols.ck1313.driver import TOTALS_EVERY, Ck1313Poller
from protocols.ck1313.framer import checksum
from protocols.events import (
    Event,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)

EPOCH = datetime(2026, 5, 1, 8, 0, 0)


def bcd(value: int, width: int) -> bytes:
    return bytes.fromhex(f"{value:0{2 * width}d}")


@dataclass
class SourcePump:
    """One fuelling point answering the four read-only queries, source layout."""

    address: int = 1
    status: int = 0x80  # lischn006.c:31-33: 80 hung up, 00 lifted, 20 fuelling
    volume_total: int = 1234567890  # 0012345678.90 L
    amount_total: int = 9876543210
    volume: int = 2500  # 25.00 L
    amount: int = 19625  # 196.25 yuan
    price: int = 785  # 7.85 yuan/L

    def frame(self, payload: bytes, command: int) -> bytes:
        head = bytes([0xF5, (0x9 + self.address) << 4, *payload, command])
        return head + bytes([checksum(head)])

    def answer(self, request: bytes) -> bytes:
        command = request[2]
        if command == 0xD5:  # 5 bytes, status at [2] (lischn006.c:1532, :1562)
            return self.frame(bytes([self.status]), 0xD5)
        if command == 0xC5:  # 14 bytes: [2..6] volume, [7..11] amount (:1051, :1124-1130)
            return self.frame(bcd(self.volume_total, 5) + bcd(self.amount_total, 5), 0xC5)
        if command == 0xD9:  # 10 bytes: [2..4] volume, [5..7] amount (:1336, :1180-1188)
            return self.frame(bcd(self.volume, 3) + bcd(self.amount, 3), 0xD9)
        if command == 0xB6:  # 6 bytes: [2..3] price (:1774, :1169-1171)
            return self.frame(bcd(self.price, 2), 0xB6)
        raise AssertionError(f"the driver asked {command:02X}")

    def fill(self, volume: int, price: int | None = None) -> None:
        """A sale: the pump's totals move and it shows the sale."""
        self.price = price or self.price
        self.volume, self.amount = volume, (volume * self.price + 50) // 100
        self.volume_total += self.volume
        self.amount_total += self.amount


class Clock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make(addresses: list[int] | None = None, **options: int) -> Ck1313Poller:
    return Ck1313Poller(addresses or [1], clock=Clock(), **options)


def turn(
    driver: Ck1313Poller, pumps: dict[int, SourcePump], reply: bytes | None = None
) -> list[Event]:
    request = driver.next_request()
    assert request is not None
    address = (request[1] >> 4) - 0x9
    events = driver.receive_data(pumps[address].answer(request) if reply is None else reply)
    if driver.awaiting_response:
        events += driver.response_timeout()
    return events


def run(driver: Ck1313Poller, pumps: dict[int, SourcePump], turns: int) -> list[Event]:
    events: list[Event] = []
    for _ in range(turns):
        events += turn(driver, pumps)
    return events


def only(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def expected_sale(pump: SourcePump, ended_at: datetime) -> Sale:
    return Sale(
        address=pump.address,
        nozzle=1,
        order_no=f"{pump.volume_total:010d}",
        ended_at=ended_at,
        grade="",
        price=Decimal(pump.price).scaleb(-2),
        volume=Decimal(pump.volume).scaleb(-2),
        amount=Decimal(pump.amount).scaleb(-2),
        totalizer_volume_end=Decimal(pump.volume_total).scaleb(-2),
        totalizer_amount_end=Decimal(pump.amount_total).scaleb(-2),
        key=f"{pump.volume_total:010d}:{pump.amount_total:010d}",
    )


def strip(sale: Sale) -> Sale:
    return dataclasses.replace(sale, raw=b"", ended_at=EPOCH)


# ---------------------------------------------------------------- polling


def test_is_a_poll_driver_with_four_read_only_queries() -> None:
    driver: PollDriver = make()
    assert driver.name == "ck1313"
    assert frozenset({0xD5, 0xD9, 0xC5, 0xB6}) == driver.ALLOWED_COMMANDS


def test_round_robin_status_queries_are_the_fccs_bytes() -> None:
    """F5, 0x02 | 0x90 + 16·phyfp, D5, check (lischn006.c:116-117, :1525-1530)."""
    driver = make([1, 2])
    pumps = {1: SourcePump(1), 2: SourcePump(2)}
    got = []
    for _ in range(2):
        request = driver.next_request()
        assert request is not None
        got.append(request.hex(" ").upper())
        driver.receive_data(pumps[(request[1] >> 4) - 9].answer(request))
    assert got == ["F5 A2 D5 02", "F5 B2 D5 12"]


def test_link_up_reads_the_sale_the_pump_shows_thrice_then_reports_it() -> None:
    """At start the last sale shown is read (C5, D9, B6 until three agree: no
    earlier totals to check it against) and offered with its totals as key;
    the store deduplicates it if it has it."""
    driver = make()
    pump = SourcePump()
    events = turn(driver, {1: pump})
    assert events == [PumpLink(1, True), NozzleStatus(1, 1, NozzleState.IDLE)]
    asked = []
    for _ in range(9):
        request = driver.next_request()
        assert request is not None and driver.mid_exchange
        asked.append(request[2])
        events += driver.receive_data(pump.answer(request))
    assert asked == [0xC5, 0xD9, 0xB6] * 3
    assert not driver.mid_exchange
    assert only(events, Totals) == [Totals(1, 1, Decimal("12345678.90"), Decimal("98765432.10"))]
    (sale,) = only(events, Sale)
    assert strip(sale) == expected_sale(pump, EPOCH)
    assert sale.key == "1234567890:9876543210" and sale.order_no == "1234567890"
    assert len(sale.raw) == 14 + 10 + 6


def test_after_a_settled_sale_two_readings_checked_by_the_totals_suffice() -> None:
    driver = make()
    pump = SourcePump()
    settle(driver, {1: pump})
    pump.status = 0x20
    turn(driver, {1: pump})
    pump.fill(1234)
    pump.status = 0x80
    events = run(driver, {1: pump}, 7)  # status, then C5 D9 B6 twice
    assert [s.volume for s in only(events, Sale)] == [Decimal("12.34")]


def settle(driver: Ck1313Poller, pumps: dict[int, SourcePump]) -> list[Sale]:
    """Poll until the driver reads nothing more; commit every sale."""
    sales: list[Sale] = []
    for _ in range(40):
        for sale in only(turn(driver, pumps), Sale):
            sales.append(sale)
            driver.sale_committed(sale)
    return sales


def test_a_fill_ending_is_read_at_once_and_offered_until_committed() -> None:
    driver = make()
    pump = SourcePump()
    pumps = {1: pump}
    settle(driver, pumps)  # start-up: the sale shown is read and committed
    pump.status = 0x20
    assert only(turn(driver, pumps), NozzleStatus) == [NozzleStatus(1, 1, NozzleState.FUELLING)]
    pump.fill(4000)
    pump.status = 0x80
    events = run(driver, pumps, 7)  # status (idle: the end), then C5 D9 B6 C5 D9 B6
    (sale,) = only(events, Sale)
    assert strip(sale) == expected_sale(pump, EPOCH)
    assert sale.ended_at == driver._clock.now  # type: ignore[attr-defined]
    # Not committed (the store refused it): found again at the next totals check.
    again = only(run(driver, pumps, TOTALS_EVERY + 8), Sale)
    assert again and all(s is sale for s in again)
    driver.sale_committed(sale)
    # Committed: the next idle status checks totals once (C5) and finds nothing new.
    assert only(run(driver, pumps, TOTALS_EVERY + 8), Sale) == []
    assert driver.counters["rereads"] >= 1


def test_two_equal_sales_get_two_keys_and_one_sale_read_twice_gets_one() -> None:
    """The key is the totals after the sale (protocols/totalsale.py)."""
    driver = make()
    pump = SourcePump()
    pumps = {1: pump}
    settle(driver, pumps)
    keys = []
    for _ in range(2):
        pump.status = 0x20
        turn(driver, pumps)
        pump.fill(3000, 800)  # the same volume and amount twice
        pump.status = 0x80
        sales = settle(driver, pumps)
        assert len(sales) == 1 and sales[0].volume == Decimal("30.00")
        keys.append(sales[0].key)
    assert keys[0] != keys[1]
    # A new driver (a restart) reads the last sale again: the same key.
    restarted = settle(make(), pumps)
    assert [s.key for s in restarted] == [keys[1]]


def flipped_sale_reply(pump: SourcePump) -> bytes:
    """The D9 reply with bit 7 of its first byte flipped: the check cannot see it."""
    reply = bytearray(pump.answer(b"\xf5\xa2\xd9\x00"))
    reply[2] ^= 0x80  # volume 002500 → 802500, check unchanged
    assert checksum(bytes(reply[:-1])) == reply[-1]
    return bytes(reply)


def test_readings_that_disagree_are_not_believed() -> None:
    """A D9 flipped in bit 7 passes the check (framer doc): it differs from the
    other readings, so the sale reported is the one the pump said three times."""
    driver = make()
    pump = SourcePump()
    turn(driver, {1: pump})  # link up
    events: list[Event] = []
    for i in range(12):
        events += turn(driver, {1: pump}, flipped_sale_reply(pump) if i == 1 else None)
    (sale,) = only(events, Sale)
    assert sale.volume == Decimal("25.00")


def test_the_same_flip_twice_in_a_row_is_not_believed_either() -> None:
    """Two equal readings whose totals difference is not their sale need a third."""
    driver = make()
    pump = SourcePump()
    settle(driver, {1: pump})
    pump.status = 0x20
    turn(driver, {1: pump})
    pump.fill(2500)
    pump.status = 0x80
    turn(driver, {1: pump})  # the end: a read follows
    events: list[Event] = []
    for i in range(12):  # readings 1 and 2 carry the same flip; 3 and 4 are clean
        events += turn(driver, {1: pump}, flipped_sale_reply(pump) if i in (1, 4) else None)
    assert [s.volume for s in only(events, Sale)] == [Decimal("25.00")]


def test_readings_that_never_agree_give_up() -> None:
    driver = make()
    pump = SourcePump()
    turn(driver, {1: pump})
    events: list[Event] = []
    for i in range(18):  # every D9 different: six readings, none alike
        request = driver.next_request()
        assert request is not None
        if request[2] == 0xD9:
            pump.volume, pump.amount = 1000 + i, 2000 + i
        events += driver.receive_data(pump.answer(request))
    assert only(events, Sale) == []
    assert "no readings of its last sale agree" in only(events, ProtocolError)[0].detail
    assert driver.counters["reads_failed"] == 1


def test_totals_moved_without_a_sale_shown() -> None:
    driver = make()
    pump = SourcePump()
    settle(driver, {1: pump})
    pump.volume_total += 500
    pump.volume = pump.amount = 0
    pump.status = 0x20
    turn(driver, {1: pump})
    pump.status = 0x80
    events = run(driver, {1: pump}, 10)  # status, then three readings (nothing checks them)
    assert only(events, Sale) == []
    assert any("no sale shown" in e.detail for e in only(events, ProtocolError))


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0x80, NozzleState.IDLE),
        (0x88, NozzleState.IDLE),  # bit 08: host control (lischn006.c:173)
        (0x00, NozzleState.LIFTED),
        (0x08, NozzleState.LIFTED),
        (0x20, NozzleState.FUELLING),
        (0xA0, NozzleState.IDLE),  # authorised, nozzle hung up (messages doc)
    ],
)
def test_status_byte_to_nozzle_state(status: int, state: NozzleState) -> None:
    driver = make(totals_every=1000)
    pump = SourcePump(status=status)
    events = turn(driver, {1: pump})
    assert only(events, NozzleStatus) == [NozzleStatus(1, 1, state)]
    if state is not NozzleState.IDLE:
        assert only(turn(driver, {1: pump}), NozzleStatus) == []  # unchanged: not repeated


def test_offline_after_misses_online_again_and_read() -> None:
    driver = make(offline_after=2)
    pump = SourcePump()
    settle(driver, {1: pump})
    events = turn(driver, {1: pump}, b"") + turn(driver, {1: pump}, b"")
    assert only(events, PumpLink) == [PumpLink(1, False)]
    events = turn(driver, {1: pump})
    assert only(events, PumpLink) == [PumpLink(1, True)]
    request = driver.next_request()
    assert request is not None and request[2] == 0xC5  # back: totals first


def test_other_pumps_frames_and_our_echo() -> None:
    driver = make([1, 2])
    one, two = SourcePump(1), SourcePump(2)
    request = driver.next_request()
    assert request is not None
    events = driver.receive_data(request)  # our request heard back
    assert events == [] and driver.awaiting_response and driver.counters["echo"] == 1
    events = driver.receive_data(two.answer(b"\xf5\xb2\xd5\x00"))
    assert [e.kind for e in only(events, ProtocolError)] == ["unexpected"]
    events = driver.receive_data(one.answer(request))
    assert PumpLink(1, True) in events and not driver.awaiting_response


def test_a_sale_reply_carrying_another_command_is_spoilt_and_the_reading_restarts() -> None:
    """D9 must sit at [8] (lischn006.c:1354); a spoilt reply starts the reading
    again from C5, so a reading is always consecutive good replies."""
    driver = make()
    pump = SourcePump()
    turn(driver, {1: pump})
    turn(driver, {1: pump})  # C5
    wrong = pump.frame(bcd(2500, 3) + bcd(19625, 3), 0xC3)
    events = turn(driver, {1: pump}, wrong)
    assert [e.kind for e in only(events, ProtocolError)] == ["bad_message"]
    request = driver.next_request()
    assert request is not None and request[2] == 0xC5


def test_decimals_are_options() -> None:
    driver = make(volume_decimals=3, amount_decimals=2, price_decimals=3)
    (sale,) = settle(driver, {1: SourcePump()})
    assert (sale.volume, sale.price, sale.totalizer_volume_end) == (
        Decimal("2.500"),
        Decimal("0.785"),
        Decimal("1234567.890"),
    )


def test_addresses_beyond_a_nibble_are_refused() -> None:
    for bad in ([0], [7], [1, 1], []):
        with pytest.raises(ValueError):
            Ck1313Poller(bad)


# ---------------------------------------------------------------- D20


@pytest.mark.parametrize("command", [c for c in range(256) if c not in (0xD5, 0xD9, 0xC5, 0xB6)])
def test_emitting_anything_else_is_forbidden(command: int) -> None:
    with pytest.raises(ForbiddenCommand):
        make()._emit(command, 1)


def test_emitting_to_a_pump_not_polled_is_forbidden() -> None:
    driver = make([1, 2])
    for pump in (0, 3, 6, 9):
        with pytest.raises(ForbiddenCommand):
            driver._emit(0xD5, pump)


replies = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda status, cmd, flip: SourcePump(status=status).answer(bytes([0xF5, 0xA2, cmd]))[:flip],
        st.integers(0, 255),
        st.sampled_from([0xD5, 0xD9, 0xC5, 0xB6]),
        st.integers(0, 15),
    ),
)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("turn"), replies),
            st.tuples(st.just("bytes"), replies),
            st.tuples(st.just("timeout"), st.none()),
            st.tuples(st.just("request"), st.none()),
            st.tuples(st.just("commit"), st.none()),
        ),
        max_size=50,
    )
)
def test_d20_only_allowed_commands_ever_leave(ops: list[tuple[str, object]]) -> None:
    """Arbitrary input in any order: every request is a bare 4-byte query of
    ALLOWED_COMMANDS to a polled pump."""
    driver = make([1, 2], offline_after=1, totals_every=1)
    sales: list[Sale] = []
    for op, arg in ops:
        events: list[Event] = []
        if op in ("turn", "request"):
            request = driver.next_request()
            assert request is not None and len(request) == 4
            assert request[0] == 0xF5 and request[1] in (0xA2, 0xB2)
            assert request[2] in Ck1313Poller.ALLOWED_COMMANDS
            assert request[3] == checksum(request[:3])
        if op in ("turn", "bytes"):
            assert isinstance(arg, bytes)
            events = driver.receive_data(arg)
        elif op == "timeout":
            events = driver.response_timeout()
        elif op == "commit" and sales:
            driver.sale_committed(sales[-1])
        sales += only(events, Sale)
