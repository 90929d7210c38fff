"""DartPoller: conversation, sequencing, events, sales, link state, D20."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand, PollDriver
from protocols.dart.driver import MAX_RETRIES, DartPoller
from protocols.dart.framer import Frame, FrameDecoder, Transaction, encode_frame
from protocols.dart.messages import (
    Cd1,
    Cd101,
    Dc1,
    Dc2,
    Dc3,
    Dc5,
    Dc9,
    Dc101,
    build,
    parse_request,
)
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

H = bytes.fromhex
E = TypeVar("E", NozzleStatus, Sale, PumpLink, ProtocolError, Totals, DeviceAlarm, Identity)
SEEN = datetime(2026, 11, 22, 8, 15, 2)


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def errors(events: list[Event]) -> list[str]:
    return [e.kind for e in events if isinstance(e, ProtocolError)]


def request(driver: DartPoller) -> Frame:
    wire = driver.next_request()
    assert wire is not None
    decoder = FrameDecoder()
    items = decoder.receive_data(wire) + decoder.flush()
    assert len(items) == 1 and isinstance(items[0], Frame), items
    return items[0]


def status_reply(status: int, nozzle: int = 1, out: bool = False, price: int = 785) -> list:
    return [build(Dc1(status)), build(Dc3(price, nozzle, out))]


class Pump:
    """A scripted pump: ACKs commands, answers them at the next POLL."""

    def __init__(self, adr: int = 0x50) -> None:
        self.adr, self.seq = adr, 0
        self.answers: dict[object, list[Transaction]] = {}
        self.command: tuple[object, ...] | None = None
        self.commands: list[tuple[object, ...]] = []

    def reply(self, frame: Frame) -> Frame | None:
        if frame.kind == "data":
            self.command = tuple(parse_request(t, d) for t, d in frame.transactions)
            self.commands.append(self.command)
            return Frame.ack(self.adr, frame.seq)
        if frame.kind == "poll":
            if self.command is None:
                return Frame.eot(self.adr, self.seq)
            items = [t for c in self.command for t in self.answers.get(c, [])]
            self.command, self.seq = None, (self.seq + 1) % 16
            return Frame.data(self.adr, self.seq, items)
        return None


def run(driver: DartPoller, pumps: dict[int, Pump], turns: int) -> list[Event]:
    events: list[Event] = []
    for _ in range(turns):
        frame = request(driver)
        pump = pumps.get(frame.adr)
        answer = pump.reply(frame) if pump else None
        if answer is not None and driver.awaiting_response:
            events += driver.receive_data(encode_frame(answer))
        if driver.awaiting_response:
            events += driver.response_timeout()
    return events


def completed_pump(volume_total: int = 10602985) -> Pump:
    pump = Pump()
    pump.answers = {
        Cd1(0): [*status_reply(5, nozzle=2, price=836), build(Dc9("0123456789"))],
        Cd1(4): [build(Dc1(5)), build(Dc2(1234, 10316)), build(Dc3(836, 2, False))],
        Cd101(2): [build(Dc101(2, volume_total, 73069068, 5))],
    }
    return pump


def make(**kwargs: object) -> DartPoller:
    return DartPoller([1], clock=lambda: SEEN, **kwargs)  # type: ignore[arg-type]


def test_is_a_poll_driver() -> None:
    driver: PollDriver = DartPoller([1])
    assert driver.name == "dart"
    assert {0x01, 0x65} == driver.ALLOWED_COMMANDS
    assert {0x00, 0x04} == DartPoller.ALLOWED_DCC


def test_first_requests_exact_bytes() -> None:
    driver = DartPoller([1, 32])
    assert driver.next_request() == H("50 30 01 01 00 9F 5C 03 FA")  # CD1 00 to pump 1
    assert driver.awaiting_response
    assert driver.receive_data(H("50 C0 FA")) == [PumpLink(1, online=True)]
    assert not driver.awaiting_response
    assert driver.next_request() == H("50 20 FA")  # POLL
    reply = Frame.data(0x50, 5, status_reply(1))
    events = driver.receive_data(encode_frame(reply))
    assert events == [NozzleStatus(1, 1, NozzleState.IDLE, price=Decimal("7.85"))]
    assert driver.next_request() == H("50 C5 FA")  # ACK with the pump's seq
    assert not driver.awaiting_response
    assert request(driver) == Frame.data(0x6F, 0, [(1, b"\x00")])  # next: pump 32
    c = driver.counters
    assert (c["frames"], c["frames_rx"], c["requests"], c["timeouts"]) == (2, 2, 4, 0)


@pytest.mark.parametrize(
    ("status", "out", "state"),
    [
        (0, False, NozzleState.ABNORMAL),
        (1, False, NozzleState.IDLE),
        (1, True, NozzleState.LIFTED),
        (2, True, NozzleState.LIFTED),
        (2, False, NozzleState.IDLE),
        (4, True, NozzleState.FUELLING),
        (5, False, NozzleState.IDLE),
        (6, True, NozzleState.LIFTED),
        (7, False, NozzleState.ABNORMAL),
        (8, True, NozzleState.FUELLING),
    ],
)
def test_state_mapping(status: int, out: bool, state: NozzleState) -> None:
    pump = Pump()
    pump.answers = {Cd1(0): status_reply(status, nozzle=3, out=out), Cd1(4): []}
    events = run(make(), {0x50: pump}, 3)
    assert only(events, NozzleStatus) == [NozzleStatus(1, 3, state, price=Decimal("7.85"))]


def test_live_fill_reports_volume_and_amount() -> None:
    pump = Pump()
    pump.answers = {
        Cd1(0): status_reply(4, nozzle=2, out=True),
        Cd1(4): [build(Dc1(4)), build(Dc2(1250, 981)), build(Dc3(785, 2, True))],
    }
    driver = make()
    events = run(driver, {0x50: pump}, 6)
    fuelling = NozzleState.FUELLING
    live = NozzleStatus(1, 2, fuelling, Decimal("12.50"), Decimal("9.81"), Decimal("7.85"))
    assert only(events, NozzleStatus) == [NozzleStatus(1, 2, fuelling, price=Decimal("7.85")), live]
    assert pump.commands == [(Cd1(0),), (Cd1(4),)]
    assert not only(events, Sale)
    # The next status answer (no DC2) repeats the last live values; then fresh ones.
    pump.answers[Cd1(4)] = [build(Dc1(4)), build(Dc2(1500, 1178)), build(Dc3(785, 2, True))]
    events = run(driver, {0x50: pump}, 6)
    assert only(events, NozzleStatus) == [
        live,
        NozzleStatus(1, 2, fuelling, Decimal("15.00"), Decimal("11.78"), Decimal("7.85")),
    ]
    pump.answers[Cd1(0)] = status_reply(5, nozzle=2)
    events = run(driver, {0x50: pump}, 3)
    assert only(events, NozzleStatus) == [
        NozzleStatus(1, 2, NozzleState.IDLE, price=Decimal("7.85"))
    ]


EXPECTED_SALE = Sale(
    address=1,
    nozzle=2,
    order_no="10602985",
    ended_at=SEEN,
    grade="1095",
    price=Decimal("8.36"),
    volume=Decimal("12.34"),
    amount=Decimal("103.16"),
    totalizer_volume_end=Decimal("106029.85"),
    totalizer_amount_end=Decimal("730690.68"),
    key="2:10602985",
    raw=H("02 08 00001234 00010316 03 04 000836 02 65 10 02 0010602985 0073069068 0000000005"),
)


def test_completed_fill_is_one_sale_read_in_one_frame() -> None:
    pump = completed_pump()
    driver = make(grades={2: "1095"})
    events = run(driver, {0x50: pump}, 6)
    assert pump.commands == [(Cd1(0),), (Cd1(4), Cd101(2))]
    assert only(events, Sale) == [EXPECTED_SALE]
    assert only(events, Identity) == [Identity(1, None, {"pump_id": "0123456789"})]
    assert not only(events, Totals)


def test_sale_repeats_until_committed_with_the_same_key_and_time() -> None:
    pump = completed_pump()
    times = iter([datetime(2026, 1, 1, 0, 0, n) for n in range(60)])
    driver = DartPoller([1], clock=lambda: next(times))
    first = only(run(driver, {0x50: pump}, 6), Sale)
    again = only(run(driver, {0x50: pump}, 6), Sale)
    assert len(first) == 1 and again == first
    assert first[0].ended_at == datetime(2026, 1, 1)
    driver.sale_committed(first[0])
    assert only(run(driver, {0x50: pump}, 12), Sale) == []
    # The next fill on that nozzle has a new totalizer: a new sale, a new time.
    pump.answers[Cd101(2)] = [build(Dc101(2, 10604000, 73079068, 6))]
    new = only(run(driver, {0x50: pump}, 6), Sale)
    assert [(s.key, s.order_no) for s in new] == [("2:10604000", "10604000")]
    assert new[0].ended_at > first[0].ended_at


def test_no_sale_when_the_final_answer_no_longer_shows_the_fill() -> None:
    pump = completed_pump()
    pump.answers[Cd1(4)] = [build(Dc1(2)), build(Dc2(0, 0)), build(Dc3(836, 2, True))]
    events = run(make(), {0x50: pump}, 6)
    assert not only(events, Sale)
    assert only(events, Totals) == [Totals(1, 2, Decimal("106029.85"), Decimal("730690.68"))]


def test_no_sale_when_the_nozzle_changed() -> None:
    pump = completed_pump()
    pump.answers[Cd1(4)] = [build(Dc1(5)), build(Dc2(1, 1)), build(Dc3(836, 3, False))]
    events = run(make(), {0x50: pump}, 6)
    assert not only(events, Sale) and len(only(events, Totals)) == 1


def test_decimals_are_configuration() -> None:
    driver = make(volume_decimals=3, amount_decimals=1, price_decimals=3)
    sale = only(run(driver, {0x50: completed_pump()}, 6), Sale)[0]
    assert (sale.volume, sale.amount, sale.price) == (
        Decimal("1.234"),
        Decimal("1031.6"),
        Decimal("0.836"),
    )
    assert sale.totalizer_volume_end == Decimal("10602.985") and sale.grade == ""


def test_our_sequence_cycles_and_restarts_after_nak() -> None:
    driver = make()
    seqs = []
    for _ in range(18):
        frame = request(driver)
        assert frame.kind == "data"
        seqs.append(frame.seq)
        driver.receive_data(encode_frame(Frame.ack(0x50, frame.seq)))
        assert request(driver).kind == "poll"
        driver.receive_data(encode_frame(Frame.data(0x50, 0, status_reply(1))))
        assert request(driver) == Frame.ack(0x50, 0)
    assert seqs == [n % 16 for n in range(18)]
    frame = request(driver)
    assert frame.seq == 2
    driver.receive_data(encode_frame(Frame.nak(0x50, 2)))
    assert driver.counters["naks"] == 1
    assert request(driver) == Frame.data(0x50, 0, [(1, b"\x00")])  # again, as seq 0
    driver.receive_data(encode_frame(Frame.ack(0x50, 0)))
    request(driver)  # POLL
    driver.receive_data(encode_frame(Frame.data(0x50, 1, status_reply(1))))
    request(driver)  # ACK
    assert request(driver).seq == 1


def test_wrong_ack_eot_while_waiting_for_ack_are_unexpected() -> None:
    driver = make()
    frame = request(driver)
    for wrong in (Frame.ack(0x50, frame.seq + 1), Frame.eot(0x50, 0), Frame.poll(0x50)):
        assert errors(driver.receive_data(encode_frame(wrong))) == ["unexpected"]
        assert driver.awaiting_response
    driver.receive_data(encode_frame(Frame.ack(0x50, frame.seq)))
    assert not driver.awaiting_response


def test_a_data_answer_without_ack_is_taken_as_both() -> None:
    driver = make()
    frame = request(driver)
    events = driver.receive_data(encode_frame(Frame.data(0x50, 9, status_reply(1))))
    assert len(only(events, NozzleStatus)) == 1
    assert request(driver) == Frame.ack(0x50, 9)
    assert request(driver).seq == frame.seq + 1  # the next cycle


def test_repeated_pump_frame_is_acknowledged_again() -> None:
    driver = make()
    request(driver)
    reply = encode_frame(Frame.data(0x50, 4, status_reply(1)))
    driver.receive_data(reply)
    assert request(driver) == Frame.ack(0x50, 4)
    request(driver)  # the next cycle's command: the pump missed our ACK and repeats
    driver.receive_data(reply)
    assert request(driver) == Frame.ack(0x50, 4)


def test_eot_polls_again_then_gives_up() -> None:
    driver = make()
    frame = request(driver)
    driver.receive_data(encode_frame(Frame.ack(0x50, frame.seq)))
    for _ in range(MAX_RETRIES + 1):
        assert request(driver).kind == "poll"
        assert driver.receive_data(encode_frame(Frame.eot(0x50, 0))) == []
    assert driver.counters["eots"] == MAX_RETRIES + 1
    assert request(driver).kind == "data"  # a new cycle


def test_unsolicited_data_is_acked_then_polled_again() -> None:
    driver = make()
    frame = request(driver)
    driver.receive_data(encode_frame(Frame.ack(0x50, frame.seq)))
    request(driver)
    alarm = Frame.data(0x50, 1, [build(Dc5(64))])
    events = driver.receive_data(encode_frame(alarm))
    assert events == [DeviceAlarm(1, None, "METERING_OUT_OF_TOLERANCE", 64, active=True)]
    assert request(driver) == Frame.ack(0x50, 1)
    assert request(driver).kind == "poll"


def test_alarms_raised_once_and_cleared_by_a_status_answer() -> None:
    pump = Pump()
    pump.answers = {Cd1(0): [*status_reply(1), build(Dc5(64)), build(Dc5(9))]}
    driver = make()
    events = run(driver, {0x50: pump}, 6)
    assert only(events, DeviceAlarm) == [
        DeviceAlarm(1, None, "DISPENSER_ERROR_9", 9, active=True),
        DeviceAlarm(1, None, "METERING_OUT_OF_TOLERANCE", 64, active=True),
    ]
    pump.answers = {Cd1(0): [*status_reply(1), build(Dc5(64))]}
    events = run(driver, {0x50: pump}, 3)
    assert only(events, DeviceAlarm) == [DeviceAlarm(1, None, "DISPENSER_ERROR_9", 9, False)]


def test_other_nozzles_go_idle_and_abnormal_is_pump_wide() -> None:
    pump = Pump()
    driver = make()
    pump.answers = {Cd1(0): status_reply(1, nozzle=1, out=True)}
    run(driver, {0x50: pump}, 3)
    pump.answers = {Cd1(0): status_reply(2, nozzle=3, out=True)}
    events = only(run(driver, {0x50: pump}, 3), NozzleStatus)
    assert [(e.nozzle, e.state) for e in events] == [
        (1, NozzleState.IDLE),
        (3, NozzleState.LIFTED),
    ]
    pump.answers = {Cd1(0): status_reply(7, nozzle=3)}
    events = only(run(driver, {0x50: pump}, 3), NozzleStatus)
    assert [(e.nozzle, e.state) for e in events] == [
        (1, NozzleState.ABNORMAL),
        (3, NozzleState.ABNORMAL),
    ]


def test_nothing_before_a_nozzle_is_named() -> None:
    pump = Pump()
    pump.answers = {Cd1(0): [build(Dc1(1)), build(Dc3(785, 0, False))]}
    assert not only(run(make(), {0x50: pump}, 3), NozzleStatus)


def test_offline_after_n_timeouts_then_back_online() -> None:
    driver = DartPoller([1], offline_after=3)
    sent = [driver.next_request() for _ in range(1)]
    events = driver.response_timeout()
    assert errors(events) == ["timeout"] and not only(events, PumpLink)
    sent.append(driver.next_request())  # the same frame, same seq
    assert sent[0] == sent[1]
    driver.response_timeout()
    driver.next_request()
    assert only(driver.response_timeout(), PumpLink) == [PumpLink(1, online=False)]
    for _ in range(3):  # offline: one attempt per cycle, no new PumpLink
        assert request(driver).kind == "data"
        assert not only(driver.response_timeout(), PumpLink)
    assert driver.counters["timeouts"] == 6
    frame = request(driver)
    events = driver.receive_data(encode_frame(Frame.ack(0x50, frame.seq)))
    assert events == [PumpLink(1, online=True)]
    assert driver.response_timeout() == []  # nothing outstanding: nothing happens


def test_echo_and_other_addresses_are_unexpected() -> None:
    driver = DartPoller([1, 2])
    wire = driver.next_request()
    assert wire is not None
    assert errors(driver.receive_data(wire)) == ["unexpected"]  # our own request echoed
    assert errors(driver.receive_data(encode_frame(Frame.ack(0x51, 0)))) == ["unexpected"]
    assert driver.counters["unexpected"] == 2 and driver.awaiting_response
    driver.response_timeout()
    assert errors(driver.receive_data(encode_frame(Frame.ack(0x50, 0)))) == ["unexpected"]


def test_response_behind_noise_is_still_found() -> None:
    driver = make()
    frame = request(driver)
    noise = H("55 31 01 02 00")  # a bogus start: it ends at the ACK's SF, without ETX
    ack = encode_frame(Frame.ack(0x50, frame.seq))
    events = driver.receive_data(noise + ack)
    assert errors(events) == ["bad_escape"] and only(events, PumpLink) == [PumpLink(1, True)]
    assert not driver.awaiting_response and request(driver).kind == "poll"


def test_response_cut_short_is_truncated_at_the_deadline() -> None:
    driver = make()
    request(driver)
    reply = encode_frame(Frame.data(0x50, 0, status_reply(1)))
    assert driver.receive_data(reply[:-1]) == []
    assert errors(driver.response_timeout()) == ["truncated", "timeout"]
    assert request(driver).kind == "data"  # the same command again


def test_bad_transaction_is_reported_and_the_rest_used() -> None:
    driver = make()
    request(driver)
    reply = Frame.data(0x50, 0, [(1, b"\x03"), (2, b"\x00"), (0x40, b""), *status_reply(1)])
    events = driver.receive_data(encode_frame(reply))
    assert errors(events) == ["bad_message", "bad_message"]
    assert len(only(events, NozzleStatus)) == 1 and driver.counters["unknown_trans"] == 1


def test_constructor_checks() -> None:
    for bad in ([], [0], [33], [1, 1]):
        with pytest.raises(ValueError):
            DartPoller(bad)
    with pytest.raises(ValueError):
        DartPoller([1], offline_after=0)
    with pytest.raises(ValueError):
        DartPoller([1], volume_decimals=10)


@pytest.mark.parametrize(
    "transactions",
    [
        [(0x01, H("06"))],  # CD1 authorise
        [(0x01, H("08"))],  # CD1 stop
        [(0x01, H("05"))],  # CD1 reset
        [(0x01, H("0A"))],  # CD1 switch off
        [(0x01, H("03"))],  # CD1 return identity: not in our subset
        [(0x01, H("0000"))],  # CD1 with two bytes
        [(0x02, H("0123"))],  # CD2 allowed nozzles
        [(0x03, H("00001000"))],  # CD3 preset volume
        [(0x04, H("00001000"))],  # CD4 preset amount
        [(0x05, H("000785"))],  # CD5 price update
        [(0x65, H("00"))],  # CD101 counter 0
        [(0x65, H("10"))],  # CD101 counter 16
        [(0x65, H("0100"))],  # CD101 with two bytes
        [(0x01, H("00")), (0x01, H("06"))],  # a good one does not excuse a bad one
    ],
)
def test_emitting_anything_else_is_forbidden(transactions: list[Transaction]) -> None:
    with pytest.raises(ForbiddenCommand):
        DartPoller([1])._emit(Frame.data(0x50, 0, transactions))


def test_emitting_to_a_foreign_address_is_forbidden() -> None:
    with pytest.raises(ForbiddenCommand):
        DartPoller([1])._emit(Frame.poll(0x51))


@given(st.integers(0, 255), st.binary(max_size=6))
def test_no_other_transaction_can_leave(trans: int, data: bytes) -> None:
    driver = DartPoller([1])
    request = parse_request(trans, data)
    allowed = (isinstance(request, Cd1) and request.dcc in (0, 4)) or (
        isinstance(request, Cd101) and 1 <= request.counter <= 15
    )
    if allowed:
        assert driver._emit(Frame.data(0x50, 0, [(trans, data)]))
    else:
        with pytest.raises(ForbiddenCommand):
            driver._emit(Frame.data(0x50, 0, [(trans, data)]))


# ---------------------------------------------------------------- D20, property


def check_request(wire: bytes | None, addresses: tuple[int, ...] = (0x50, 0x51)) -> Frame:
    """A request as D20 allows it: one link frame, or DATA with CD1 00/04 and CD101 only."""
    assert wire is not None
    decoder = FrameDecoder()
    items = decoder.receive_data(wire) + decoder.flush()
    assert len(items) == 1 and isinstance(items[0], Frame), items
    frame = items[0]
    assert frame.adr in addresses
    if frame.kind != "data":
        assert frame.kind in ("poll", "ack", "nak", "eot") and not frame.transactions
        return frame
    for trans, data in frame.transactions:
        assert trans in DartPoller.ALLOWED_COMMANDS and len(data) == 1
        message = parse_request(trans, data)
        assert message in (Cd1(0), Cd1(4)) or (
            isinstance(message, Cd101) and 1 <= message.counter <= 15
        )
    return frame


replies = st.one_of(
    st.builds(lambda s: build(Dc1(s)), st.integers(0, 8)),
    st.builds(lambda v, a: build(Dc2(v, a)), st.integers(0, 99), st.integers(0, 99)),
    st.builds(lambda n, o: build(Dc3(785, n, o)), st.integers(0, 15), st.booleans()),
    st.builds(lambda c: build(Dc5(c)), st.integers(0, 255)),
    st.builds(lambda n, v: build(Dc101(n, v, v, 0)), st.integers(0, 16), st.integers(0, 99)),
    st.tuples(st.integers(0, 255), st.binary(max_size=17)),
)
pump_frames = st.one_of(
    st.builds(
        Frame.data,
        st.sampled_from([0x50, 0x51, 0x52]),
        st.integers(0, 15),
        st.lists(replies, min_size=1, max_size=5),
    ),
    st.builds(Frame.ack, st.sampled_from([0x50, 0x51]), st.integers(0, 15)),
    st.builds(Frame.nak, st.sampled_from([0x50, 0x51]), st.integers(0, 15)),
    st.builds(Frame.eot, st.sampled_from([0x50, 0x51]), st.integers(0, 15)),
    st.builds(Frame.poll, st.sampled_from([0x50, 0x51])),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), pump_frames),
        st.tuples(st.just("bytes"), st.binary(max_size=60)),
        st.tuples(st.just("request"), st.none()),
        st.tuples(st.just("timeout"), st.none()),
        st.tuples(st.just("commit"), st.integers(0, 5)),
        st.tuples(st.just("foreign"), st.tuples(st.integers(0, 40), st.text(max_size=8))),
    ),
    max_size=60,
)


@settings(max_examples=1000)
@given(operations)
def test_d20_only_allowed_requests_ever_leave(ops: list[tuple[str, object]]) -> None:
    driver = DartPoller([1, 2], clock=lambda: SEEN)
    sales: list[Sale] = []
    for op, arg in [*ops, *[("request", None)] * 4]:
        events: list[Event] = []
        if op == "request":
            if driver.awaiting_response:
                events = driver.response_timeout()
            check_request(driver.next_request())
        elif op == "frame":
            assert isinstance(arg, Frame)
            events = driver.receive_data(encode_frame(arg))
        elif op == "bytes":
            assert isinstance(arg, bytes)
            events = driver.receive_data(arg)
        elif op == "timeout":
            events = driver.response_timeout()
        elif op == "commit" and sales:
            assert isinstance(arg, int)
            driver.sale_committed(sales[arg % len(sales)])
        elif op == "foreign":
            assert isinstance(arg, tuple)
            driver.sale_committed(replace(EXPECTED_SALE, address=arg[0], key=arg[1]))
        sales += only(events, Sale)
        for sale in only(events, Sale):
            assert sale.address in (1, 2) and 1 <= sale.nozzle <= 15


# ---------------------------------------------------------------- fuzz: mutated conversations


def wire_of(message: Dc2 | Dc3 | Dc101) -> bytes:
    trans, data = build(message)
    return bytes([trans, len(data)]) + data


# Per pump ADR: phases 0 idle, 1 filling, 2 and 3 a completed fill (nozzle, price, volume,
# amount, volume total, amount total). Pump 2 sells twice on the same nozzle.
FILLS = {
    0x50: {2: (2, 836, 1234, 10316, 10602985, 73069068), 3: (1, 785, 500, 3925, 5000000, 1)},
    0x51: {2: (1, 752, 4000, 30080, 777, 888), 3: (1, 752, 2000, 15040, 2777, 15928)},
}


def phase_answers(adr: int, phase: int) -> dict[object, list[Transaction]]:
    if phase in (0, 1):
        status, out = (1, False) if phase == 0 else (4, True)
        nozio = build(Dc3(785, 1, out))
        return {
            Cd1(0): [build(Dc1(status)), nozio, build(Dc9("0000000042"))],
            Cd1(4): [build(Dc1(status)), build(Dc2(100, 79)), nozio],
            Cd101(1): [build(Dc101(1, 123, 456, 7))],
        }
    nozzle, price, volume, amount, v_tot, a_tot = FILLS[adr][phase]
    nozio = build(Dc3(price, nozzle, False))
    return {
        Cd1(0): [build(Dc1(5)), nozio, build(Dc5(64))],
        Cd1(4): [build(Dc1(5)), build(Dc2(volume, amount)), nozio],
        Cd101(nozzle): [build(Dc101(nozzle, v_tot, a_tot, 9))],
    }


ANSWERS = {(adr, phase): phase_answers(adr, phase) for adr in FILLS for phase in range(4)}
LEGIT = {
    Sale(
        address=adr - 0x4F,
        nozzle=nozzle,
        order_no=str(v_tot),
        ended_at=SEEN,
        grade="",
        price=Decimal(price).scaleb(-2),
        volume=Decimal(volume).scaleb(-2),
        amount=Decimal(amount).scaleb(-2),
        totalizer_volume_end=Decimal(v_tot).scaleb(-2),
        totalizer_amount_end=Decimal(a_tot).scaleb(-2),
        key=f"{nozzle}:{v_tot}",
        raw=wire_of(Dc2(volume, amount))
        + wire_of(Dc3(price, nozzle, False))
        + wire_of(Dc101(nozzle, v_tot, a_tot, 9)),
    )
    for adr, fills in FILLS.items()
    for nozzle, price, volume, amount, v_tot, a_tot in fills.values()
}
_REQUESTS: dict[bytes, Frame] = {}
_REPLIES: dict[tuple[int, int, tuple[object, ...], int], bytes] = {}


class FuzzPump:
    """A fast scripted pump in one of four phases; it repeats what is not ACKed."""

    def __init__(self, adr: int) -> None:
        self.adr, self.phase, self.seq = adr, 2, 0
        self.command: tuple[object, ...] | None = None
        self.unacked: tuple[int, bytes] | None = None

    def reply(self, frame: Frame) -> bytes:
        kind = frame.kind
        if kind == "data":
            self.command = tuple(parse_request(t, d) for t, d in frame.transactions)
            self.unacked = None
            return bytes((self.adr, 0xC0 | frame.seq, 0xFA))  # ACK
        if kind == "ack":
            if self.unacked is not None and self.unacked[0] == frame.seq:
                self.unacked = None
            return b""
        if self.unacked is not None:
            return self.unacked[1]
        if self.command is None:
            return bytes((self.adr, 0x70 | self.seq, 0xFA))  # EOT
        key = (self.adr, self.phase, self.command, self.seq)
        if key not in _REPLIES:
            answers = ANSWERS[self.adr, self.phase]
            items = [t for c in self.command for t in answers.get(c, [])]
            _REPLIES[key] = encode_frame(Frame.data(self.adr, self.seq, items or [(0x40, b"")]))
        self.unacked, self.command = (self.seq, _REPLIES[key]), None
        self.seq = (self.seq + 1) % 16
        return self.unacked[1]


def mutate(op: int, a: int, b: int, wire: bytes, noise: bytes) -> list[bytes]:
    """The chunks the driver receives for ``wire`` under mutation ``op``."""
    n = len(wire)
    if op == 6 and n:
        i = a % n
        return [wire[:i] + bytes([wire[i] ^ (1 << (b % 8))]) + wire[i + 1 :]]
    if op == 7 and n:
        return [wire[: a % n] + wire[a % n + 1 :]]
    if op == 8:
        return [wire[: a % (n + 1)] + bytes([b]) + wire[a % (n + 1) :]]
    if op == 9:
        return [wire[: a % (n + 1)]]
    if op == 10:
        return [noise[a % NOISE_LEN : a % NOISE_LEN + b % 16] + wire]
    if op == 11:
        return [wire[: a % (n + 1)], wire[a % (n + 1) :]]
    if op == 12:
        return []
    return [wire]


#: A fuzz example: 2 bytes of initial phases, OPS operations of 2 bytes, then noise.
OPS = 16
NOISE_LEN = 16
EXAMPLE_LEN = 2 + 2 * OPS + NOISE_LEN


@settings(max_examples=35_000, deadline=None)
@given(st.binary(min_size=EXAMPLE_LEN, max_size=EXAMPLE_LEN))
def test_fuzz_mutated_conversations_never_raise_nor_invent_a_sale(data: bytes) -> None:
    """Random and mutated byte streams: no exception, only the pump's own sales, D20.

    ``data`` is one generated byte string of a fixed length (Hypothesis draws
    that ~8× faster than a list of tuples, or bytes of a varying length, which
    keeps 35 000 examples within a minute): the pumps' initial phases (zero
    bytes: a completed fill), operations ``(op, a, b)`` packed in two bytes
    (``b`` shares bits with ``a``: cheaper to draw), and noise. Ops 0–12
    are turns whose answer is delivered clean (0–5) or mutated
    (:func:`mutate`); 13 changes a pump's phase; 14 commits a sale seen; 15
    feeds noise alone (and sometimes a deadline).
    """
    end = 2 + 2 * OPS
    rest, noise = data[2:end], data[end:]
    driver = DartPoller([1, 2], clock=lambda: SEEN)
    pumps = {0x50: FuzzPump(0x50), 0x51: FuzzPump(0x51)}
    for adr, byte in zip(pumps, data[:2], strict=False):
        pumps[adr].phase = (2 + byte) % 4
    sales: list[Sale] = []
    for i in range(0, len(rest) - 1, 2):
        op, a = rest[i] & 15, rest[i + 1]
        b = (rest[i] >> 4) | (a << 4 & 0xF0)
        events: list[Event] = []
        if op == 13:
            pumps[0x50 + a % 2].phase = b % 4
        elif op == 14 and sales:
            driver.sale_committed(sales[a % len(sales)])
        elif op == 15:
            events = driver.receive_data(noise[a % NOISE_LEN : a % NOISE_LEN + b % 24])
            if b % 3 == 0:
                events += driver.response_timeout()
        elif op < 13:
            wire = driver.next_request()
            assert wire is not None
            frame = _REQUESTS.get(wire) or _REQUESTS.setdefault(wire, check_request(wire))
            answer = pumps[frame.adr].reply(frame)
            for chunk in mutate(op, a, b, answer, noise):
                events += driver.receive_data(chunk)
            if driver.awaiting_response:
                events += driver.response_timeout()
        new = only(events, Sale)
        assert all(sale in LEGIT for sale in new), new
        sales += new
    event("a sale was read" if sales else "no sale read")
