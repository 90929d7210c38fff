"""SinopecPoller: requests, responses, confirmation after commit, link state, D20."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand, PollDriver
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale
from protocols.sinopec.driver import SinopecPoller
from protocols.sinopec.framer import Frame, FrameDecoder, encode_frame
from protocols.sinopec.messages import (
    ST_IDLE,
    ST_NOZZLE,
    RealtimeEntry,
    TransactionRecord,
    build_realtime,
    build_record,
)

MASTER = 0xE0
E = TypeVar("E", NozzleStatus, Sale, PumpLink, ProtocolError)


def record(pos_ttc: int = 1000, nzn: int = 1, v_tot: int = 10_000_000) -> bytes:
    return build_record(
        TransactionRecord(
            pos_ttc=pos_ttc,
            time=datetime(2026, 11, 22, 8, 15, 2),
            nzn=nzn,
            g_code="1095",
            vol=2000,
            prc=836,
            amn=16720,
            v_tot=v_tot,
        )
    )


REALTIME = build_realtime(
    [RealtimeEntry(ST_IDLE, 1), RealtimeEntry(ST_NOZZLE, 2, amn=785, vol=100, prc=785)]
)


def request_frame(wire: bytes) -> Frame:
    items = FrameDecoder().receive_data(wire)
    assert len(items) == 1 and isinstance(items[0], Frame), items
    return items[0]


def answer(request: bytes, data: bytes, *, src: int | None = None, bump: int = 0) -> bytes:
    """The pump's reply to ``request``: same frame number (+ bump), caller bit flipped."""
    req = request_frame(request)
    ctrl = ((req.frame_no + bump) & 0x3F) | ((req.ctrl & 0x40) ^ 0x40)
    return encode_frame(
        Frame(dst=req.src, src=req.dst if src is None else src, ctrl=ctrl, data=data)
    )


def sale_of(address: int, order_no: str) -> Sale:
    """A committed sale as some other component might hand it over."""
    one = Decimal("1.00")
    return Sale(
        address=address,
        nozzle=1,
        order_no=order_no,
        ended_at=datetime(2026, 1, 1),
        grade="1092",
        price=one,
        volume=one,
        amount=one,
        totalizer_volume_end=one,
        totalizer_amount_end=None,
        key=f"{order_no}:x",
    )


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def test_is_a_poll_driver() -> None:
    driver: PollDriver = SinopecPoller([1])
    assert driver.name == "sinopec"
    allowed = driver.ALLOWED_COMMANDS
    assert allowed == {0x30, 0x32}


def test_first_request_is_a_poll() -> None:
    driver = SinopecPoller([1])
    assert not driver.awaiting_response
    wire = driver.next_request()
    assert wire is not None
    assert request_frame(wire) == Frame(dst=1, src=MASTER, ctrl=0x40, data=b"\x30")
    assert driver.awaiting_response


def test_caller_bit_polarity_and_frame_numbers_wrap() -> None:
    driver = SinopecPoller([1], caller_bit_set=False, master_address=0xF0)
    numbers = []
    for _ in range(70):
        wire = driver.next_request()
        assert wire is not None
        frame = request_frame(wire)
        assert frame.ctrl & 0xC0 == 0 and frame.src == 0xF0
        numbers.append(frame.frame_no)
        driver.receive_data(answer(wire, REALTIME))
    assert numbers == [n % 64 for n in range(70)]


def test_realtime_response() -> None:
    driver = SinopecPoller([1])
    wire = driver.next_request()
    assert wire is not None
    events = driver.receive_data(answer(wire, REALTIME))
    assert not driver.awaiting_response
    assert events == [
        PumpLink(1, online=True),
        NozzleStatus(1, 1, NozzleState.IDLE),
        NozzleStatus(1, 2, NozzleState.FUELLING, Decimal("1.00"), Decimal("7.85"), Decimal("7.85")),
    ]
    c = driver.counters
    assert (c["frames"], c["frames_rx"], c["requests"], c["timeouts"]) == (1, 1, 1, 0)


def test_response_split_into_single_bytes() -> None:
    driver = SinopecPoller([1])
    wire = driver.next_request()
    assert wire is not None
    events: list[Event] = []
    for byte in answer(wire, record()):
        assert driver.awaiting_response
        events += driver.receive_data(bytes([byte]))
    assert not driver.awaiting_response
    assert len(only(events, Sale)) == 1


def test_wrong_frame_number_or_address_is_unexpected_and_keeps_waiting() -> None:
    driver = SinopecPoller([1, 2])
    wire = driver.next_request()
    assert wire is not None
    late = driver.receive_data(answer(wire, record(), bump=1))
    stranger = driver.receive_data(answer(wire, record(), src=2))
    echo = driver.receive_data(wire)  # our own request heard back on a two-wire line
    for events in (late, stranger, echo):
        assert [e.kind for e in events if isinstance(e, ProtocolError)] == ["unexpected"]
        assert not only(events, Sale)
    assert driver.awaiting_response
    events = driver.receive_data(answer(wire, record()))
    assert len(only(events, Sale)) == 1 and not driver.awaiting_response
    assert driver.counters["unexpected"] == 3
    assert [e.kind for e in driver.receive_data(answer(wire, REALTIME))] == ["unexpected"]


def test_sale_confirmed_only_after_commit() -> None:
    driver = SinopecPoller([1])
    wire = driver.next_request()
    assert wire is not None
    sales = only(driver.receive_data(answer(wire, record(pos_ttc=4242))), Sale)
    assert len(sales) == 1
    sale = sales[0]
    assert isinstance(sale, Sale) and sale.order_no == "4242" and sale.key == "4242:10000000"
    # Not committed yet: the pump is polled again (and offers the record again).
    wire = driver.next_request()
    assert wire is not None and request_frame(wire).data == b"\x30"
    driver.receive_data(answer(wire, record(pos_ttc=4242)))
    driver.sale_committed(sale)
    driver.sale_committed(sale)  # committed twice (a duplicate): confirmed once
    wire = driver.next_request()
    assert wire is not None
    assert request_frame(wire).data == b"\x32\x00\x00\x10\x92"
    # Confirmation lost: sent again next turn.
    assert only(driver.response_timeout(), ProtocolError)[0].kind == "timeout"
    wire = driver.next_request()
    assert wire is not None and request_frame(wire).data == b"\x32\x00\x00\x10\x92"
    assert only(driver.receive_data(answer(wire, REALTIME)), NozzleStatus)
    wire = driver.next_request()
    assert wire is not None and request_frame(wire).data == b"\x30"


def test_round_robin_and_confirmations_per_address() -> None:
    driver = SinopecPoller([1, 2, 3])
    got = []
    for turn in range(6):
        wire = driver.next_request()
        assert wire is not None
        frame = request_frame(wire)
        got.append((frame.dst, frame.command))
        if turn == 1:
            sale = only(driver.receive_data(answer(wire, record(pos_ttc=7))), Sale)[0]
            assert isinstance(sale, Sale) and sale.address == 2
            driver.sale_committed(sale)
        else:
            driver.receive_data(answer(wire, REALTIME))
    assert got == [(1, 0x30), (2, 0x30), (3, 0x30), (1, 0x30), (2, 0x32), (3, 0x30)]


def test_foreign_sales_are_not_confirmed() -> None:
    driver = SinopecPoller([1])
    for order_no, address in [("x1", 1), ("12", 9), ("99999999999", 1), ("١٢", 1)]:
        driver.sale_committed(sale_of(address, order_no))
    wire = driver.next_request()
    assert wire is not None and request_frame(wire).data == b"\x30"


def test_offline_after_n_timeouts_then_back_online() -> None:
    driver = SinopecPoller([1], offline_after=3)
    links: list[Event] = []
    for _ in range(5):
        assert driver.next_request() is not None
        events = driver.response_timeout()
        assert [e.kind for e in events if isinstance(e, ProtocolError)] == ["timeout"]
        links += only(events, PumpLink)
        assert not driver.awaiting_response
    assert links == [PumpLink(1, online=False)]
    assert driver.counters["timeouts"] == 5
    wire = driver.next_request()
    assert wire is not None
    assert only(driver.receive_data(answer(wire, REALTIME)), PumpLink) == [PumpLink(1, True)]
    # Misses are counted again from zero.
    for _ in range(2):
        assert driver.next_request() is not None
        assert not only(driver.response_timeout(), PumpLink)
    assert driver.response_timeout() == []  # nothing outstanding: nothing happens


def test_response_hidden_behind_noise_is_found_at_the_deadline() -> None:
    driver = SinopecPoller([1])
    wire = driver.next_request()
    assert wire is not None
    noise = bytes.fromhex("FA 05 01 02 00 99 AA FA")  # a bogus start (LEN 99) that swallows
    assert not only(driver.receive_data(noise + answer(wire, REALTIME)), NozzleStatus)
    events = driver.response_timeout()
    assert only(events, NozzleStatus) and not driver.awaiting_response
    assert "timeout" not in [e.kind for e in events if isinstance(e, ProtocolError)]


@pytest.mark.parametrize(
    "data", [b"\x33", b"\x31", b"\x36\x00", b"\x30\x00", b"\x32", record(), b"\x3c\x00"]
)
def test_emitting_anything_else_is_forbidden(data: bytes) -> None:
    driver = SinopecPoller([1])
    with pytest.raises(ForbiddenCommand):
        driver._emit(Frame(dst=1, src=MASTER, ctrl=0x40, data=data))


@given(st.binary(min_size=1, max_size=40).filter(lambda d: d[0] not in (0x30, 0x32)))
def test_no_other_command_can_leave(data: bytes) -> None:
    with pytest.raises(ForbiddenCommand):
        SinopecPoller([1])._emit(Frame(dst=1, src=MASTER, ctrl=0, data=data))


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        SinopecPoller([])
    with pytest.raises(ValueError):
        SinopecPoller([0xFA])
    with pytest.raises(ValueError):
        SinopecPoller([1], offline_after=0)


# ---------------------------------------------------------------- D20, property

ADDRESSES = [1, 2]
payloads = st.one_of(
    st.binary(min_size=1, max_size=120),
    st.just(REALTIME),
    st.builds(record, st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 2**32 - 1)),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("bytes"), st.binary(max_size=300)),
        st.tuples(
            st.just("frame"),
            st.builds(
                Frame,
                dst=st.sampled_from([MASTER, 1, 2, 0x00]),
                src=st.sampled_from([1, 2, 3, MASTER]),
                ctrl=st.integers(0, 255),
                data=payloads,
            ),
        ),
        st.tuples(st.just("reply"), payloads),
        st.tuples(st.just("turn"), payloads),  # request, reply, commit what came
        st.tuples(st.just("commit"), st.integers(0, 20)),
        st.tuples(st.just("foreign_commit"), st.tuples(st.integers(0, 255), st.text(max_size=12))),
        st.tuples(st.just("timeout"), st.none()),
        st.tuples(st.just("request"), st.none()),
    ),
    max_size=40,
)


def check_request(wire: bytes | None) -> Frame:
    """A request as D20 allows it: one frame, 30 poll or 32 confirmation, to a pump."""
    assert wire is not None
    decoder = FrameDecoder()
    items = decoder.receive_data(wire) + decoder.flush()
    assert len(items) == 1, items
    frame = items[0]
    assert isinstance(frame, Frame)
    assert frame.command in SinopecPoller.ALLOWED_COMMANDS
    assert frame.src == MASTER and frame.dst in ADDRESSES
    assert len(frame.data) == (1 if frame.command == 0x30 else 5)
    return frame


@settings(max_examples=500)
@given(operations)
def test_d20_only_allowed_commands_ever_leave(ops: list[tuple[str, object]]) -> None:
    driver = SinopecPoller(ADDRESSES, master_address=MASTER)
    sales: list[Sale] = []
    last: bytes | None = None
    confirms = 0

    def take(events: list[Event]) -> None:
        sales.extend(e for e in events if isinstance(e, Sale))

    for op, arg in [*ops, *[("turn", REALTIME)] * 3]:
        if op in ("request", "turn"):
            last = driver.next_request()
            confirms += check_request(last).command == 0x32
        if op == "bytes":
            assert isinstance(arg, bytes)
            take(driver.receive_data(arg))
        elif op == "frame":
            assert isinstance(arg, Frame)
            take(driver.receive_data(encode_frame(arg)))
        elif op in ("reply", "turn") and last is not None:
            assert isinstance(arg, bytes)
            take(driver.receive_data(answer(last, arg)))
            if op == "turn" and sales:
                driver.sale_committed(sales[-1])
        elif op == "commit" and sales:
            assert isinstance(arg, int)
            driver.sale_committed(sales[arg % len(sales)])
        elif op == "foreign_commit":
            assert isinstance(arg, tuple)
            address, order_no = arg
            driver.sale_committed(sale_of(address, order_no))
        elif op == "timeout":
            take(driver.response_timeout())
    event("confirmations sent" if confirms else "no confirmation sent")
    assert set(driver.counters) >= {"frames", "bad_crc", "garbage_bytes", "timeouts", "requests"}
