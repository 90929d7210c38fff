"""LanfengPoller against replies laid out as ``fangym0335/first src/lischn017.c`` reads them.

:class:`SourcePump` answers with the byte positions the FCC reads (cited
there), not with our own builder; the bytes the FCC never reads carry
arbitrary values, to show nothing relies on them.
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
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale, Totals
from protocols.lanfeng.driver import LanfengPoller
from protocols.lanfeng.framer import check_of
from protocols.totalpoll import TOTALS_EVERY

EPOCH = datetime(2026, 5, 1, 8, 0, 0)


def bcd(value: int, width: int) -> bytes:
    return bytes.fromhex(f"{value:0{2 * width}d}")


@dataclass
class SourcePump:
    """One Lanfeng pump answering the three read-only queries, source layout."""

    address: int = 1
    state: int = 0x41  # lischn017.c:23-26: 41 idle, C1 lifted, C2 fuelling (bit 40: host control)
    volume_total: int = 123456789012  # 1234567890.12 L
    amount_total: int = 987654321098
    volume: int = 2500  # 25.00 L
    amount: int = 19625  # 196.25 yuan
    price: int = 785  # 7.85 yuan/L

    def frame(self, body: bytes) -> bytes:
        return bytes([self.address]) + body + bytes([check_of(body)])

    def answer(self, request: bytes) -> bytes:
        command = request[2]
        if command == 0xB8:  # price [2..3], amount [4..6], volume [7..9], state [10] (:955-972)
            body = b"\x5a" + bcd(self.price, 2) + bcd(self.amount, 3) + bcd(self.volume, 3)
            return self.frame(body + bytes([self.state]))
        if command in (0xAD, 0xAC):  # totals [5..10] (:923, :934); [1..4] unread
            total = self.volume_total if command == 0xAD else self.amount_total
            return self.frame(b"\x11\x22\x33\x44" + bcd(total, 6))
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


def make(addresses: list[int] | None = None, **options: int) -> LanfengPoller:
    return LanfengPoller(addresses or [1], clock=Clock(), **options)


def turn(
    driver: LanfengPoller, pumps: dict[int, SourcePump], reply: bytes | None = None
) -> list[Event]:
    request = driver.next_request()
    assert request is not None
    events = driver.receive_data(pumps[request[0]].answer(request) if reply is None else reply)
    if driver.awaiting_response:
        events += driver.response_timeout()
    return events


def run(driver: LanfengPoller, pumps: dict[int, SourcePump], turns: int) -> list[Event]:
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
        order_no=f"{pump.volume_total:012d}",
        ended_at=ended_at,
        grade="",
        price=Decimal(pump.price).scaleb(-2),
        volume=Decimal(pump.volume).scaleb(-2),
        amount=Decimal(pump.amount).scaleb(-2),
        totalizer_volume_end=Decimal(pump.volume_total).scaleb(-2),
        totalizer_amount_end=Decimal(pump.amount_total).scaleb(-2),
        key=f"{pump.volume_total:012d}:{pump.amount_total:012d}",
    )


def strip(sale: Sale) -> Sale:
    return dataclasses.replace(sale, raw=b"", ended_at=EPOCH)


def settle(driver: LanfengPoller, pumps: dict[int, SourcePump]) -> list[Sale]:
    """Poll until the driver reads nothing more; commit every sale."""
    sales: list[Sale] = []
    for _ in range(40):
        for sale in only(turn(driver, pumps), Sale):
            sales.append(sale)
            driver.sale_committed(sale)
    return sales


def test_is_a_poll_driver_with_three_read_only_queries() -> None:
    driver: PollDriver = make()
    assert driver.name == "lanfeng"
    assert frozenset({0xB8, 0xAD, 0xAC}) == driver.ALLOWED_COMMANDS


def test_status_queries_are_the_fccs_bytes() -> None:
    """addr, 00, B8, eight 00, LF_not (lischn017.c:1391-1403)."""
    driver = make([1, 2])
    got = []
    for _ in range(2):
        request = driver.next_request()
        assert request is not None
        got.append(request.hex(" ").upper())
        driver.receive_data(SourcePump(request[0]).answer(request))
    assert got == ["01 00 B8 00 00 00 00 00 00 00 00 48", "02 00 B8 00 00 00 00 00 00 00 00 48"]


def test_link_up_reads_the_sale_shown_thrice_then_reports_it() -> None:
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
    assert asked == [0xAD, 0xAC, 0xB8] * 3
    assert only(events, Totals) == [
        Totals(1, 1, Decimal("1234567890.12"), Decimal("9876543210.98"))
    ]
    (sale,) = only(events, Sale)
    assert strip(sale) == expected_sale(pump, EPOCH)
    assert sale.key == "123456789012:987654321098" and len(sale.raw) == 3 * 12


def test_fuelling_reports_the_running_fill_and_the_end_is_read() -> None:
    driver = make()
    pump = SourcePump()
    pumps = {1: pump}
    settle(driver, pumps)
    pump.state, pump.volume, pump.amount = 0xC2, 1000, 7850
    assert only(turn(driver, pumps), NozzleStatus) == [
        NozzleStatus(
            1, 1, NozzleState.FUELLING, Decimal("10.00"), Decimal("78.50"), Decimal("7.85")
        )
    ]
    pump.state = 0x41
    pump.fill(3000)
    events = run(driver, pumps, 7)  # B8 (the end), then AD AC B8 twice (checked by the totals)
    (sale,) = only(events, Sale)
    assert strip(sale) == expected_sale(pump, EPOCH)
    again = only(run(driver, pumps, TOTALS_EVERY + 8), Sale)
    assert again and all(s is sale for s in again)  # not committed: offered again
    driver.sale_committed(sale)
    assert only(run(driver, pumps, TOTALS_EVERY + 8), Sale) == []


def test_a_pump_busy_again_during_a_reading_abandons_it() -> None:
    driver = make()
    pump = SourcePump()
    settle(driver, {1: pump})
    pump.state = 0xC2
    turn(driver, {1: pump})
    pump.state = 0x41
    pump.fill(3000)
    turn(driver, {1: pump})  # the end
    turn(driver, {1: pump})  # AD
    turn(driver, {1: pump})  # AC
    pump.state = 0xC1  # the next customer lifts before the B8 step
    events = turn(driver, {1: pump})
    assert only(events, Sale) == [] and not driver.mid_exchange
    assert only(events, NozzleStatus) == [NozzleStatus(1, 1, NozzleState.LIFTED)]


@pytest.mark.parametrize(
    ("state", "nozzle"),
    [
        (0x41, NozzleState.IDLE),
        (0x01, NozzleState.IDLE),  # the same without host control (bit 40 masked)
        (0xC1, NozzleState.LIFTED),
        (0x81, NozzleState.LIFTED),
        (0xC2, NozzleState.FUELLING),
        (0x82, NozzleState.FUELLING),
    ],
)
def test_state_byte_to_nozzle_state_and_never_host_control(state: int, nozzle: NozzleState) -> None:
    """The FCC sends A0 whenever bit 40 is clear (lischn017.c:1428-1434): we never do."""
    driver = make(totals_every=1000)
    pump = SourcePump(state=state)
    events = turn(driver, {1: pump})
    assert [e.state for e in only(events, NozzleStatus)] == [nozzle]
    for _ in range(12):
        request = driver.next_request()
        assert request is not None and request[2] in (0xB8, 0xAD, 0xAC)
        driver.receive_data(pump.answer(request))


def test_an_unknown_state_is_a_spoilt_reply() -> None:
    driver = make()
    events = turn(driver, {1: SourcePump(state=0x07)})
    assert PumpLink(1, True) in events
    assert "state 07" in only(events, ProtocolError)[0].detail


def test_other_pumps_frames_and_our_echo() -> None:
    driver = make([1, 2])
    request = driver.next_request()
    assert request is not None
    assert driver.receive_data(request) == [] and driver.counters["echo"] == 1
    events = driver.receive_data(SourcePump(2).answer(request))
    assert [e.kind for e in only(events, ProtocolError)] == ["unexpected"]
    events = driver.receive_data(SourcePump(1).answer(request))
    assert PumpLink(1, True) in events and not driver.awaiting_response


def test_offline_after_misses_and_back() -> None:
    driver = make(offline_after=2)
    pump = SourcePump()
    settle(driver, {1: pump})
    events = turn(driver, {1: pump}, b"") + turn(driver, {1: pump}, b"")
    assert only(events, PumpLink) == [PumpLink(1, False)]
    assert only(turn(driver, {1: pump}), PumpLink) == [PumpLink(1, True)]
    request = driver.next_request()
    assert request is not None and request[2] == 0xAD


def test_addresses_beyond_a_nibble_are_refused() -> None:
    for bad in ([0], [16], [1, 1], []):
        with pytest.raises(ValueError):
            LanfengPoller(bad)


@pytest.mark.parametrize("command", [c for c in range(256) if c not in (0xB8, 0xAD, 0xAC)])
def test_emitting_anything_else_is_forbidden(command: int) -> None:
    with pytest.raises(ForbiddenCommand):
        make()._emit(command, 1)


def test_emitting_to_a_pump_not_polled_is_forbidden() -> None:
    driver = make([1, 2])
    for pump in (0, 3, 15):
        with pytest.raises(ForbiddenCommand):
            driver._emit(0xB8, pump)


replies = st.one_of(
    st.binary(max_size=30),
    st.builds(
        lambda state, cmd, cut: SourcePump(state=state).answer(bytes([1, 0, cmd]))[:cut],
        st.integers(0, 255),
        st.sampled_from([0xB8, 0xAD, 0xAC]),
        st.integers(0, 13),
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
    """Arbitrary input in any order: every request is a query of ALLOWED_COMMANDS,
    eight zero data bytes, to a polled pump."""
    driver = make([1, 2], offline_after=1, totals_every=1)
    sales: list[Sale] = []
    for op, arg in ops:
        events: list[Event] = []
        if op in ("turn", "request"):
            request = driver.next_request()
            assert request is not None and len(request) == 12
            assert request[0] in (1, 2) and request[1] == 0 and request[3:11] == bytes(8)
            assert request[2] in LanfengPoller.ALLOWED_COMMANDS
            assert request[11] == check_of(request[1:11])
        if op in ("turn", "bytes"):
            assert isinstance(arg, bytes)
            events = driver.receive_data(arg)
        elif op == "timeout":
            events = driver.response_timeout()
        elif op == "commit" and sales:
            driver.sale_committed(sales[-1])
        sales += only(events, Sale)
