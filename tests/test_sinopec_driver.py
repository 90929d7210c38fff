"""SinopecPoller: requests, responses, confirmation after commit, link state, D20."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand, PollDriver
from protocols.events import (
    DeviceAlarm,
    Event,
    Identity,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)
from protocols.sinopec.driver import UNSUPPORTED_AFTER, SinopecPoller
from protocols.sinopec.extensions import (
    InfoReading,
    TotalsReading,
    build_errors,
    build_info,
    build_totals,
)
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
E = TypeVar("E", NozzleStatus, Sale, PumpLink, ProtocolError, Totals, Identity, DeviceAlarm)
READS = (0x38, 0x3A, 0x3B)
REQUEST_LEN = {0x30: 1, 0x38: 2, 0x3A: 2, 0x3B: 1, 0x3C: 5}  # the D20 allow-list, exact


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


def next_turn(driver: SinopecPoller) -> bytes:
    """The next poll or confirmation; reads queued before it are answered with a 31."""
    while True:
        wire = driver.next_request()
        assert wire is not None
        if request_frame(wire).command not in READS:
            return wire
        driver.receive_data(answer(wire, REALTIME))


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
    assert allowed == {0x30, 0x38, 0x3A, 0x3B, 0x3C}
    assert 0x32 not in allowed, "a master never sends a record-shaped 32 (3C confirms)"


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
    wire = next_turn(driver)
    sales = only(driver.receive_data(answer(wire, record(pos_ttc=4242))), Sale)
    assert len(sales) == 1
    sale = sales[0]
    assert isinstance(sale, Sale) and sale.order_no == "4242" and sale.key == "4242:10000000"
    # Not committed yet: the pump is polled again (and offers the record again).
    wire = next_turn(driver)
    assert request_frame(wire).data == b"\x30"
    driver.receive_data(answer(wire, record(pos_ttc=4242)))
    driver.sale_committed(sale)
    driver.sale_committed(sale)  # committed twice (a duplicate): confirmed once
    wire = next_turn(driver)
    assert request_frame(wire).data == b"\x3c\x00\x00\x10\x92"
    # Confirmation lost: sent again next turn.
    assert only(driver.response_timeout(), ProtocolError)[0].kind == "timeout"
    wire = next_turn(driver)
    assert request_frame(wire).data == b"\x3c\x00\x00\x10\x92"
    # Any valid answer acknowledges it (here the same 31 as before: no events).
    assert driver.receive_data(answer(wire, REALTIME)) == []
    wire = next_turn(driver)
    assert request_frame(wire).data == b"\x30"


def test_an_unchanged_report_is_not_parsed_again_until_the_pump_returns() -> None:
    driver = SinopecPoller([1], offline_after=1)
    wire = next_turn(driver)
    assert only(driver.receive_data(answer(wire, REALTIME)), NozzleStatus)
    wire = next_turn(driver)
    assert driver.receive_data(answer(wire, REALTIME)) == []
    assert driver.counters["unchanged_reports"] >= 1
    moved = build_realtime([RealtimeEntry(ST_NOZZLE, 1, amn=785, vol=100, prc=785)])
    wire = next_turn(driver)
    states = only(driver.receive_data(answer(wire, moved)), NozzleStatus)
    assert [(s.nozzle, s.state) for s in states] == [(1, NozzleState.FUELLING)]
    # Offline and back: the same report is news again (the nozzles were offline).
    next_turn(driver)
    assert only(driver.response_timeout(), PumpLink) == [PumpLink(1, online=False)]
    wire = next_turn(driver)
    events = driver.receive_data(answer(wire, moved))
    assert only(events, PumpLink) == [PumpLink(1, online=True)]
    assert [s.state for s in only(events, NozzleStatus)] == [NozzleState.FUELLING]


def test_round_robin_and_confirmations_per_address() -> None:
    driver = SinopecPoller([1, 2, 3])
    got = []
    for turn in range(12):
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
    # Each pump: a poll, then the link-up reads one between two polls; pump 2's
    # committed sale is confirmed first (3C before any read).
    assert got == [
        (1, 0x30), (2, 0x30), (3, 0x30),
        (1, 0x3B), (2, 0x3C), (3, 0x3B),
        (1, 0x30), (2, 0x3B), (3, 0x30),
        (1, 0x3A), (2, 0x30), (3, 0x3A),
    ]  # fmt: skip


def test_foreign_sales_are_not_confirmed() -> None:
    driver = SinopecPoller([1])
    for order_no, address in [("x1", 1), ("12", 9), ("99999999999", 1), ("١٢", 1)]:
        driver.sale_committed(sale_of(address, order_no))
    for _ in range(3):
        wire = next_turn(driver)
        assert request_frame(wire).data == b"\x30"
        driver.receive_data(answer(wire, REALTIME))


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
        next_turn(driver)
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
    "data",
    [
        b"\x33", b"\x31", b"\x36\x00", b"\x30\x00", b"\x32", record(), b"\x3c\x00",
        b"\x32\x00\x00\x10\x92", b"\x38", b"\x38\x01\x00", b"\x3a", b"\x3b\x00", b"\x34\x01",
    ],
)  # fmt: skip
def test_emitting_anything_else_is_forbidden(data: bytes) -> None:
    driver = SinopecPoller([1])
    with pytest.raises(ForbiddenCommand):
        driver._emit(Frame(dst=1, src=MASTER, ctrl=0x40, data=data))


@given(
    st.binary(min_size=1, max_size=40).filter(lambda d: d[0] not in (0x30, 0x38, 0x3A, 0x3B, 0x3C))
)
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
    for every in ("totals_every", "info_every", "errors_every"):
        with pytest.raises(ValueError):
            SinopecPoller([1], **{every: 0})


# ---------------------------------------------------------------- D20, property

ADDRESSES = [1, 2]
payloads = st.one_of(
    st.binary(min_size=1, max_size=120),
    st.just(REALTIME),
    st.builds(
        lambda n, v: build_totals(TotalsReading(n, v, v)), st.integers(0, 9), st.integers(0, 99)
    ),
    st.builds(lambda c: build_errors([(0, c)]), st.integers(0, 99)),
    st.just(build_info(InfoReading(0, {"mcu_id": "M1"}))),
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
    """A request as D20 allows it: one frame, a read or a 3C confirmation, to a pump."""
    assert wire is not None
    decoder = FrameDecoder()
    items = decoder.receive_data(wire) + decoder.flush()
    assert len(items) == 1, items
    frame = items[0]
    assert isinstance(frame, Frame)
    assert frame.command in SinopecPoller.ALLOWED_COMMANDS
    assert frame.src == MASTER and frame.dst in ADDRESSES
    assert len(frame.data) == REQUEST_LEN[frame.command]
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
            confirms += check_request(last).command == 0x3C
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


# ---------------------------------------------------------------- reads: 38, 3A, 3B

TWO_NOZZLES = build_realtime([RealtimeEntry(ST_IDLE, 1), RealtimeEntry(ST_IDLE, 2)])


def pump_answer(data: bytes) -> bytes:
    """What a pump with two nozzles, no errors, answers (data of the request)."""
    command = data[0]
    if command == 0x38:
        return build_totals(TotalsReading(data[1], 1_000_000 + data[1], 8_000_000 + data[1]))
    if command == 0x3A:
        parts = {"mcu_id": "MCU-7"} if data[1] == 0 else {"nozzle_uid": f"UID-{data[1]}"}
        return build_info(InfoReading(data[1], parts))
    if command == 0x3B:
        return build_errors([])
    return TWO_NOZZLES


def run(driver: SinopecPoller, turns: int, reply: object = pump_answer) -> list[tuple[int, bytes]]:
    """``turns`` requests, each answered by ``reply(data)``; (dst, data) of each request."""
    sent = []
    for _ in range(turns):
        wire = driver.next_request()
        assert wire is not None
        frame = request_frame(wire)
        sent.append((frame.dst, frame.data))
        assert callable(reply)
        driver.receive_data(answer(wire, reply(frame.data)))
    return sent


def test_reads_on_link_up_then_every_n_polls() -> None:
    driver = SinopecPoller([1], totals_every=4, info_every=8, errors_every=2)
    sent = [data.hex() for _, data in run(driver, 26)]
    assert sent == [
        "30",  # poll 1. Online: 3B, pump-wide 3A; the 31 shows nozzles 1, 2: their 3A, 38
        "3b", "30", "3a00", "30", "3a01", "30", "3801", "30", "3a02", "30", "3802",
        # polls 2, 4, 6 queued a 3B behind those (once: a read is queued at most once)
        "30", "3b",
        # poll 8: all 3A, 38 per nozzle, 3B; poll 10, 12: 3B again (still queued once)
        "30", "3b", "30", "3a00", "30", "3a01", "30", "3a02", "30", "3801", "30", "3802",
    ]  # fmt: skip


def test_at_most_one_read_between_two_polls_and_confirmations_first() -> None:
    driver = SinopecPoller([1])
    run(driver, 1)  # online: four reads queued
    wire = driver.next_request()
    assert wire is not None
    assert request_frame(wire).data == b"\x3b"
    sale = only(driver.receive_data(answer(wire, record(pos_ttc=5))), Sale)[0]
    driver.sale_committed(sale)
    assert [d.hex() for _, d in run(driver, 4)] == ["3c00000005", "3a00", "30", "3a01"]


def test_totals_and_identities() -> None:
    driver = SinopecPoller([3])
    events: list[Event] = []
    for _ in range(12):
        wire = driver.next_request()
        assert wire is not None
        events += driver.receive_data(answer(wire, pump_answer(request_frame(wire).data)))
    assert only(events, Totals) == [
        Totals(3, 1, Decimal("10000.01"), Decimal("80000.01")),
        Totals(3, 2, Decimal("10000.02"), Decimal("80000.02")),
    ]
    assert only(events, Identity) == [
        Identity(3, None, {"mcu_id": "MCU-7"}),
        Identity(3, 1, {"nozzle_uid": "UID-1"}),
        Identity(3, 2, {"nozzle_uid": "UID-2"}),
    ]
    assert not only(events, DeviceAlarm) and not only(events, ProtocolError)


def errors_run(answers: list[bytes]) -> list[list[Event]]:
    """A pump answering its successive 3B with ``answers``: the events of each."""
    driver = SinopecPoller([2], errors_every=1, info_every=10**6, totals_every=10**6)
    out: list[list[Event]] = []
    while len(out) < len(answers):
        wire = driver.next_request()
        assert wire is not None
        data = request_frame(wire).data
        reply = answers[len(out)] if data == b"\x3b" else pump_answer(data)
        events = driver.receive_data(answer(wire, reply))
        if data == b"\x3b":
            out.append([e for e in events if not isinstance(e, PumpLink)])
    return out


def alarm(nozzle: int | None, code: str, raw: int, active: bool) -> DeviceAlarm:
    return DeviceAlarm(2, nozzle, code, raw, active)


def test_error_info_is_diffed_into_raised_and_cleared_alarms() -> None:
    answers = [[], [(0, 64)], [(0, 64)], [(0, 64), (1, 61), (0, 7)], [(1, 61)], []]
    got = errors_run([build_errors(a) for a in answers])
    assert got == [
        [],
        [alarm(None, "METERING_OUT_OF_TOLERANCE", 64, True)],
        [],  # still active: nothing new
        [alarm(None, "DISPENSER_ERROR_7", 7, True), alarm(1, "SECURITY_AUTH_ERROR", 61, True)],
        [
            alarm(None, "DISPENSER_ERROR_7", 7, False),
            alarm(None, "METERING_OUT_OF_TOLERANCE", 64, False),
        ],
        [alarm(1, "SECURITY_AUTH_ERROR", 61, False)],
    ]


def test_alarms_active_at_first_read_are_raised_and_bad_answers_change_nothing() -> None:
    answers = [
        build_errors([(0, 65), (0, 63), (0, 65)]),  # a repeated entry counts once
        b"\x3b\x01\x00\x6a",  # code 6A is not BCD
        b"\x3b\x02\x00\x65",  # COUNT 2, one entry
        build_errors([(0, 65)]),
    ]
    got = errors_run(answers)
    assert got[0] == [
        alarm(None, "BOARD_NOT_INITIALISED", 63, True),
        alarm(None, "ENCODER_FAULT", 65, True),
    ]
    for bad in got[1:3]:
        assert [(type(e).__name__, getattr(e, "kind", "")) for e in bad] == [
            ("ProtocolError", "bad_message")
        ]
    assert got[3] == [alarm(None, "BOARD_NOT_INITIALISED", 63, False)]


def test_unanswered_reads_do_not_take_the_pump_offline_and_stop_after_n() -> None:
    driver = SinopecPoller([1], errors_every=1, info_every=1, totals_every=1, offline_after=2)
    links: list[Event] = []
    sent: list[int] = []
    for _ in range(60):
        wire = driver.next_request()
        assert wire is not None
        data = request_frame(wire).data
        sent.append(data[0])
        if data[0] in READS:  # a pump without the vendor extension: silence
            links += only(driver.response_timeout(), PumpLink)
        else:
            links += only(driver.receive_data(answer(wire, TWO_NOZZLES)), PumpLink)
    assert links == [PumpLink(1, online=True)]
    # Each read command is dropped after UNSUPPORTED_AFTER misses (whatever NZN).
    assert [sent.count(command) for command in READS] == [UNSUPPORTED_AFTER] * 3
    assert sent[-20:] == [0x30] * 20


def test_reads_are_asked_again_after_the_pump_comes_back() -> None:
    driver = SinopecPoller([1], offline_after=1)
    run(driver, 1)
    assert driver.next_request() is not None
    assert only(driver.response_timeout(), PumpLink) == []  # a missed read: still online
    wire = driver.next_request()
    assert wire is not None and request_frame(wire).data == b"\x30"
    assert only(driver.response_timeout(), PumpLink) == [PumpLink(1, online=False)]
    wire = driver.next_request()  # reads were dropped with the link: a poll
    assert wire is not None and request_frame(wire).data == b"\x30"
    driver.receive_data(answer(wire, TWO_NOZZLES))
    assert [d.hex() for _, d in run(driver, 6)] == ["3b", "30", "3a00", "30", "3a01", "30"]
