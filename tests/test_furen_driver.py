"""FurenPoller: the FCC driver's frames (fangym0335/first src/lischn009.c) read to
their documented values, the sale rule, the status behind its option, link
state, and the read-only allow-list (SPEC D20)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand
from protocols.events import (
    Event,
    NozzleState,
    NozzleStatus,
    ProtocolError,
    PumpLink,
    Sale,
    Totals,
)
from protocols.furen.driver import FurenPoller
from protocols.furen.framer import Frame, FrameDecoder, encode_frame
from protocols.furen.messages import (
    SaleRecord,
    TotalsReply,
    build_record,
    build_status_reply,
    build_totals,
    parse_record,
    parse_status,
    parse_totals,
)
from tests.test_furen_framer import SALE_REPLY, fcc_frame

NOW = datetime(2008, 8, 20, 10, 30, 0)

#: 58's answer as GetGunTotal / InitPumpTotal read it (lischn009.c:1088-1092,
#: :1111, :1930, :1947): 19 bytes, volume total [7..11] 1234.56 L, amount total
#: [12..16] 98765.43 yuan; nozzle 1 echoed in [3] (:1137).
TOTALS_REPLY = fcc_frame(0xFA, 0x00, 0x00, 0xF0, 0x00, 0x0B, 0x58,
                         0x00, 0x00, 0x12, 0x34, 0x56, 0x00, 0x09, 0x87, 0x65, 0x43)  # fmt: skip
#: Status answers (lischn009.c:1544-1586): idle; nozzle 2 lifted ([2] 01,
#: [3] F1, [7] 00); nozzle 2 fuelling, 12.34 L and 96.87 yuan so far ([7..12],
#: DoBusy :1343-1357); the power-up transients the FCC skips: 5A 01 with
#: [7] 01 (:1562-1563) and 5D 01 01 (:1570-1571).
IDLE = fcc_frame(0xFA, 0x00, 0x00, 0x00, 0x00, 0x02, 0x5A, 0x00)
LIFTED_2 = fcc_frame(0xFA, 0x00, 0x01, 0xF1, 0x00, 0x02, 0x5A, 0x00)
STOPPED_2 = fcc_frame(0xFA, 0x00, 0x01, 0xF1, 0x00, 0x02, 0x5A, 0xFF)
FUELLING_2 = fcc_frame(0xFA, 0x00, 0x01, 0xF1, 0x00, 0x07, 0x5B, 0x00, 0x12, 0x34, 0x00, 0x96, 0x87)
TRANSIENT = fcc_frame(0xFA, 0x00, 0x01, 0xF1, 0x00, 0x02, 0x5A, 0x01)
POWER_UP = fcc_frame(0xFA, 0x00, 0x00, 0x00, 0x00, 0x03, 0x5D, 0x01, 0x01)


def poller(**options: object) -> FurenPoller:
    """A driver on a fixed clock; the requests ``ask`` skips do not take it offline."""
    options.setdefault("offline_after", 100)
    return FurenPoller([1], clock=lambda: NOW, **options)  # type: ignore[arg-type]


def request_of(wire: bytes) -> Frame:
    [frame] = FrameDecoder().receive_data(wire)
    assert isinstance(frame, Frame)
    return frame


def ask(driver: FurenPoller, command: int, nozzle: int) -> None:
    """Step the driver until its request is ``command`` about ``nozzle``
    (0: the status), answering the others with silence."""
    for _ in range(40):
        request = request_of(driver.next_request() or b"")
        if request.command == command and (request.nozzle_byte or 0) == nozzle:
            return
        driver.response_timeout()
    raise AssertionError(f"the driver never asked {command:02X} of nozzle {nozzle}")


def sales(events: list[Event]) -> list[Sale]:
    return [e for e in events if isinstance(e, Sale)]


def test_the_fccs_sale_record_reads_to_its_documented_values() -> None:
    driver = poller(grades={"2": "1092"})
    ask(driver, 0x56, 2)
    first = driver.receive_data(SALE_REPLY)
    assert PumpLink(1, online=True) in first and sales(first) == []  # one read: not yet
    ask(driver, 0x56, 2)
    [sale] = sales(driver.receive_data(SALE_REPLY))
    assert sale == Sale(
        address=1,
        nozzle=2,
        order_no="123456",
        ended_at=NOW,
        grade="1092",
        price=Decimal("7.85"),
        volume=Decimal("25.00"),
        amount=Decimal("196.25"),
        totalizer_volume_end=Decimal("1234.56"),
        totalizer_amount_end=Decimal("98765.43"),
        key="2:123456",
        raw=SALE_REPLY[6:-2],
    )
    # Not committed: offered again at the next stable read; committed: never.
    ask(driver, 0x56, 2)
    assert [s.key for s in sales(driver.receive_data(SALE_REPLY))] == ["2:123456"]
    driver.sale_committed(sale)
    for _ in range(3):
        ask(driver, 0x56, 2)
        assert sales(driver.receive_data(SALE_REPLY)) == []


def test_the_fccs_totals_answer_reads_to_its_documented_values() -> None:
    driver = poller()
    ask(driver, 0x58, 1)
    events = driver.receive_data(TOTALS_REPLY)
    assert Totals(1, 1, Decimal("1234.56"), Decimal("98765.43")) in events


def test_status_answers_read_as_the_fcc_reads_them() -> None:
    driver = poller(status_with_clock=True)
    seen: list[NozzleStatus] = []
    for answer in (IDLE, LIFTED_2, TRANSIENT, FUELLING_2, STOPPED_2, IDLE):
        ask(driver, 0x30, 0)
        seen += [e for e in driver.receive_data(answer) if isinstance(e, NozzleStatus)]
    assert seen == [
        NozzleStatus(1, 1, NozzleState.IDLE),
        NozzleStatus(1, 2, NozzleState.IDLE),
        NozzleStatus(1, 2, NozzleState.LIFTED),  # the transient changes nothing
        NozzleStatus(1, 2, NozzleState.FUELLING, Decimal("12.34"), Decimal("96.87")),
        NozzleStatus(1, 2, NozzleState.LIFTED),  # FF: stopped, nozzle still out
        NozzleStatus(1, 2, NozzleState.IDLE),
    ]
    assert driver.counters["status_transients"] == 1
    # 5D 01 01 at power-up is no status answer: unexpected, still waiting.
    ask(driver, 0x30, 0)
    [error] = driver.receive_data(POWER_UP)
    assert isinstance(error, ProtocolError) and error.kind == "unexpected"
    assert driver.awaiting_response


def test_the_status_request_carries_the_clock_and_is_off_by_default() -> None:
    driver = poller(status_with_clock=True)
    wire = b""
    while not wire.startswith(bytes.fromhex("FA 00 00 00")):
        wire = driver.next_request() or b""
        driver.response_timeout()
    # lischn009.c:1504-1515, the time as getlocaltime() writes it.
    assert wire == bytes.fromhex("FA 00 00 00 00 08 30 20 08 08 20 10 30 00 9A BB")
    plain = poller()
    commands = {request_of(plain.next_request() or b"").command for _ in range(300)}
    assert commands == {0x56, 0x58}
    with pytest.raises(ForbiddenCommand, match="clock"):
        plain._emit(Frame(0, 0, 0, bytes.fromhex("3020080820103000")))


#: Nozzle 2 fuelling with 25.00 L so far: the volume of SALE_REPLY.
FUELLING_2_AT_25 = fcc_frame(0xFA, 0x00, 0x01, 0xF1, 0x00, 0x07, 0x5B,
                             0x00, 0x25, 0x00, 0x01, 0x96, 0x25)  # fmt: skip


def test_a_record_with_the_volume_of_the_fill_going_on_is_held() -> None:
    driver = poller(status_with_clock=True)
    ask(driver, 0x30, 0)
    driver.receive_data(FUELLING_2_AT_25)  # the record may be this fill, paused
    for _ in range(3):
        ask(driver, 0x56, 2)
        assert sales(driver.receive_data(SALE_REPLY)) == []
    # Fuelling at another volume: the record is not that fill, it counts —
    # the two reads before a sale go on across the fill.
    ask(driver, 0x30, 0)
    driver.receive_data(FUELLING_2)
    ask(driver, 0x56, 2)
    assert sales(driver.receive_data(SALE_REPLY)) == []
    ask(driver, 0x30, 0)
    driver.receive_data(LIFTED_2)
    ask(driver, 0x56, 2)
    assert [s.key for s in sales(driver.receive_data(SALE_REPLY))] == ["2:123456"]


def test_a_record_that_moves_or_is_empty_is_no_sale() -> None:
    driver = poller()
    moving = fcc_frame(*SALE_REPLY[:8], 0x26, *SALE_REPLY[9:-2])  # volume 26.00, then 25.00
    for answer in (moving, SALE_REPLY):
        ask(driver, 0x56, 2)
        assert sales(driver.receive_data(answer)) == []
    empty = fcc_frame(0xFA, 0x00, 0x00, 0xF0, 0x00, 0x13, 0x56, *bytes(8), *SALE_REPLY[15:-2])
    for _ in range(3):
        ask(driver, 0x56, 1)
        assert sales(driver.receive_data(empty)) == []


def test_a_reply_for_another_nozzle_or_of_another_length_is_not_the_answer() -> None:
    driver = poller()
    ask(driver, 0x56, 1)
    for wrong in (SALE_REPLY, TOTALS_REPLY):  # nozzle 2's record; a totals answer
        [error] = driver.receive_data(wrong)
        assert isinstance(error, ProtocolError) and error.kind == "unexpected"
    assert driver.awaiting_response
    # A single-nozzle pump puts an undefined byte in [3]: not checked.
    single = poller(nozzles=1)
    ask(single, 0x56, 1)
    assert not any(isinstance(e, ProtocolError) for e in single.receive_data(SALE_REPLY))


def test_offline_after_missed_answers_and_back() -> None:
    driver = poller(offline_after=2)
    events: list[Event] = []
    for _ in range(3):
        driver.next_request()
        events += driver.response_timeout()
    assert [e for e in events if isinstance(e, PumpLink)] == [PumpLink(1, online=False)]
    ask(driver, 0x56, 2)
    assert PumpLink(1, online=True) in driver.receive_data(SALE_REPLY)
    # Back online: the totals of every nozzle are read next.
    assert request_of(driver.next_request() or b"").data == b"\x58"


def test_turns_read_totals_first_then_each_nozzles_record() -> None:
    driver = poller(totals_every=2)
    turns = []
    for _ in range(12):
        request = request_of(driver.next_request() or b"")
        turns.append(f"{request.command:02X}/{request.nozzle_byte}")
        driver.response_timeout()
    assert turns == ["58/1", "58/2", "56/1", "56/2", "56/1", "56/2",
                     "58/1", "58/2", "56/1", "56/2", "56/1", "56/2"]  # fmt: skip
    status = poller(status_with_clock=True, nozzles=1)
    turns = []
    for _ in range(5):
        request = request_of(status.next_request() or b"")
        turns.append(f"{request.command:02X}")
        status.response_timeout()
    assert turns == ["58", "30", "56", "30", "56"]


def record_with_an_fa() -> Frame:
    """Nozzle 1's record for the first volume whose frame has an FA after its start."""
    data = bytearray(request_of(SALE_REPLY).data)
    for volume in range(1, 1000):
        data[1:4] = bytes.fromhex(f"{volume:06d}")
        frame = Frame(0, 0, 0xF0, bytes(data))
        if b"\xfa" in encode_frame(frame)[1:]:
            return frame
    raise AssertionError("no such record")  # pragma: no cover


def test_the_escaped_option_reads_and_sends_doubled_fas() -> None:
    frame = record_with_an_fa()
    for escaped in (False, True):
        driver = poller(escaped=escaped, sale_reads=1)
        ask(driver, 0x56, 1)
        assert FrameDecoder(escaped=escaped).receive_data(driver.next_request() or b"")
        driver.response_timeout()
        ask(driver, 0x56, 1)
        [sale] = sales(driver.receive_data(encode_frame(frame, escaped=escaped)))
        assert sale.nozzle == 1 and sale.key == "1:123456"
    # The escaped driver doubles what it sends: its 58 of nozzle n goes out
    # as the escaped encoding of that frame.
    sent = [FurenPoller([1], nozzles=8, escaped=True).next_request() for _ in range(1)]
    assert sent == [encode_frame(Frame(0, 0, 0xF0, b"\x58"), escaped=True)]


def test_one_line_one_fuelling_point() -> None:
    for addresses in ([2], [1, 2], []):
        with pytest.raises(ValueError, match="one fuelling point"):
            FurenPoller(addresses)
    with pytest.raises(ValueError, match="nozzles"):
        FurenPoller([1], nozzles=9)


# ---------------------------------------------------------------- D20

#: Everything the FCC sends that changes the pump (lischn009.c:822-836, :1716-
#: 1733, :1971-1989, :1283-1295, :1221-1233), and the price read we do not use.
FORBIDDEN = [
    Frame(0, 0, 0xF0, bytes.fromhex("51 0785 01")),
    Frame(0, 0, 0xF0, bytes.fromhex("59 000100 01")),
    Frame(0, 0, 0xF0, bytes.fromhex("60 000100 01")),
    Frame(0, 0, 0x00, bytes.fromhex("5D 01 01")),
    Frame(0, 0, 0x00, bytes.fromhex("61 01")),
    Frame(0, 0, 0x00, bytes.fromhex("62 01")),
    Frame(0, 0, 0xF0, bytes.fromhex("50")),
    Frame(0, 0, 0xF0, bytes.fromhex("56 01")),  # an allowed code, a write's shape
]


@pytest.mark.parametrize("frame", FORBIDDEN)
def test_emitting_a_command_that_changes_the_pump_is_forbidden(frame: Frame) -> None:
    with pytest.raises(ForbiddenCommand):
        poller(status_with_clock=True)._emit(frame)


answers = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([SALE_REPLY, TOTALS_REPLY, IDLE, LIFTED_2, FUELLING_2, TRANSIENT, POWER_UP]),
    st.sampled_from([SALE_REPLY, TOTALS_REPLY]).map(lambda w: w[:-1] + bytes([w[-1] ^ 1])),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), answers),
        st.tuples(st.just("bytes"), answers),
        st.tuples(st.just("timeout"), st.none()),
        st.tuples(st.just("commit"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.booleans(), st.booleans())
def test_d20_only_allowed_commands_ever_leave(
    ops: list[tuple[str, object]], status: bool, escaped: bool
) -> None:
    driver = FurenPoller([1], status_with_clock=status, escaped=escaped, clock=lambda: NOW)
    found: list[Sale] = []
    for op, arg in ops:
        events: list[Event] = []
        if op == "turn":
            wire = driver.next_request()
            assert wire is not None
            [request] = FrameDecoder(escaped=escaped).receive_data(wire)
            assert isinstance(request, Frame)
            assert request.command in FurenPoller.ALLOWED_COMMANDS
            assert request.command != 0x30 or status
            assert len(request.data) == (8 if request.command == 0x30 else 1)
        if op in ("turn", "bytes"):
            assert isinstance(arg, bytes)
            events = driver.receive_data(arg)
        elif op == "timeout":
            events = driver.response_timeout()
        elif op == "commit" and found:
            driver.sale_committed(found[-1])
        found += sales(events)
    # The only sale these answers hold is the FCC's record of nozzle 2.
    assert all(s.key == "2:123456" and s.volume == Decimal("25.00") for s in found)


# ---------------------------------------------------------------- messages

bcd3 = st.integers(0, 999_999)
bcd2 = st.integers(0, 9_999)
bcd5 = st.integers(0, 9_999_999_999)


@settings(max_examples=100, deadline=None)
@given(bcd3, bcd3, bcd2, bcd5, bcd5, st.integers(0, 7), st.booleans())
def test_replies_build_then_parse_round_trip(
    volume: int, amount: int, price: int, vtot: int, atot: int, lnz: int, fuelling: bool
) -> None:
    record = SaleRecord(volume, amount, price, vtot, atot)
    wire = encode_frame(build_record(record, ctrl=0xF0 | lnz))
    assert len(wire) == 27  # lischn009.c:1170
    assert parse_record(request_of(wire).data) == record
    totals = TotalsReply(vtot, atot)
    wire = encode_frame(build_totals(totals, ctrl=0xF0 | lnz))
    assert len(wire) == 19  # lischn009.c:1111
    assert parse_totals(request_of(wire).data) == totals
    status = request_of(
        encode_frame(
            build_status_reply(
                nozzle_byte=0xF0 | lnz, out=True, fuelling=fuelling, volume=volume, amount=amount
            )
        )
    )
    reply = parse_status(status)
    assert not isinstance(reply, ProtocolError)
    assert (reply.fuelling, reply.out, status.nozzle_byte) == (fuelling, True, lnz + 1)
    if fuelling:
        assert (reply.volume, reply.amount) == (volume, amount)
